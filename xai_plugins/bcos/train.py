"""Training helpers: B-cos vs. standard CNN on small digits, and B-cosification fine-tuning.

:func:`train_digits` trains any model on a torch ``Dataset`` of ``(image, label)`` pairs with images in
[0, 1] (default: scikit-learn's 8×8 digits, upsampled); B-cos models get ``encode_input(image)``. B-cos models
are trained with binary cross-entropy on one-hot targets, as in the B-cos papers (the logit bias sets the
initial sigmoid outputs to 1/C), standard models with cross-entropy.
:func:`compare_on_digits` trains the small B-cos CNN and the same standard CNN under one recipe.
:func:`bcosify_finetune` is the fine-tuning step of B-cosification (Arya et al., NeurIPS 2024).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from xai_plugins.bcos.convert import set_b
from xai_plugins.bcos.encoding import encode_input
from xai_plugins.bcos.layers import BcosConv2d, BcosLinear
from xai_plugins.bcos.simple_cnn import BcosSimpleCNN, StandardSimpleCNN

DIGITS_LOGIT_TEMPERATURE = 0.1
"""Logit temperature of the B-cos CNN in the digits recipe."""


@dataclass
class TrainResult:
    """What a training run produced: the trained model, its test accuracy (in %) and the loss per epoch."""

    model: nn.Module
    test_accuracy: float
    losses: list[float] = field(default_factory=list)


def digits_datasets(size: int = 32, test_fraction: float = 0.25, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 8×8 digits as RGB images of ``size``×``size`` in [0, 1] (bilinear upsampling), split
    into a train and a test set by a seeded permutation (the data ships with scikit-learn; nothing downloads)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    images = images.expand(-1, 3, -1, -1).contiguous()
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(labels) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return TensorDataset(images[train], labels[train]), TensorDataset(images[test], labels[test])


def is_bcos_model(model: nn.Module) -> bool:
    """Whether ``model`` contains B-cos layers (and so expects encoded inputs)."""
    return any(isinstance(m, (BcosConv2d, BcosLinear)) for m in model.modules())


@dataclass(frozen=True)
class Recipe:
    """How :func:`fit` trains.

    Attributes:
        loss: ``"bce"`` (binary cross-entropy on one-hot targets) or ``"uniform_off_bce"`` (the B-cos papers':
            off-label targets ``1 / C`` instead of 0); standard models always use cross-entropy.
        schedule: cosine learning-rate decay per ``"step"`` or per ``"epoch"`` (constant within an epoch).
        warmup_epochs: linear warm-up from 1 % of the learning rate over this many epochs (epoch schedule).
        clip_factor: adaptive gradient clipping (Brock et al. 2021; timm's ``adaptive_clip_grad``) with this
            factor, or ``None`` for none.
        augment: called on each batch of images in [0, 1] before encoding (``None``: no augmentation).
    """

    loss: str = "bce"
    schedule: str = "step"
    warmup_epochs: int = 0
    clip_factor: float | None = None
    augment: Callable[[Tensor], Tensor] | None = None


OUR_RECIPE = Recipe()
"""This project's B-cos training: BCE on one-hot targets, cosine decay per step, no clipping or augmentation."""


def paper_augmentation(images: Tensor) -> Tensor:
    """Random resized crop (scale 0.25–1, aspect 3/4–4/3) and horizontal flip of each image of a batch, the
    standard ImageNet training augmentation of the B-cos papers at the batch's own size (torchvision)."""
    from torchvision.transforms import v2

    size = images.shape[-2:]
    transform = v2.Compose([v2.RandomResizedCrop(size, scale=(0.25, 1.0), antialias=True),
                            v2.RandomHorizontalFlip()])
    return torch.stack([transform(image) for image in images])


PAPER_RECIPE = Recipe(loss="uniform_off_bce", schedule="epoch", warmup_epochs=0, clip_factor=0.01,
                      augment=paper_augmentation)
"""The recipe of the B-cos v2 / B-cosification training code: uniform off-label BCE, cosine decay per epoch,
adaptive gradient clipping (factor 0.01), random resized crops and flips (warm-up is 5 of 90 ImageNet epochs
there; set ``warmup_epochs`` for long runs)."""

RECIPES = {"paper": PAPER_RECIPE, "ours": OUR_RECIPE}


def _loss_fn(bcos: bool, kind: str = "bce") -> Callable[[Tensor, Tensor], Tensor]:
    if not bcos:
        return F.cross_entropy
    if kind not in ("bce", "uniform_off_bce"):
        raise ValueError(f"loss must be 'bce' or 'uniform_off_bce', got {kind!r}")
    off = kind == "uniform_off_bce"

    def bce(logits: Tensor, labels: Tensor) -> Tensor:
        targets = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        if off:
            targets = targets.clamp(min=1.0 / logits.shape[1])
        return F.binary_cross_entropy_with_logits(logits, targets)

    return bce


def _lr_factor(recipe: Recipe, step: int, steps_per_epoch: int, epochs: int) -> float:
    if recipe.schedule == "step":
        total = max(1, epochs * steps_per_epoch)
        return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    if recipe.schedule != "epoch":
        raise ValueError(f"schedule must be 'step' or 'epoch', got {recipe.schedule!r}")
    epoch = step // max(1, steps_per_epoch)
    if epoch < recipe.warmup_epochs:
        return 0.01 + 0.99 * epoch / recipe.warmup_epochs
    decay = max(1, epochs - recipe.warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * (epoch - recipe.warmup_epochs) / decay))


def fit(model: nn.Module, train_set: Dataset, *, epochs: int, lr: float, batch_size: int = 64, seed: int = 0,
        encode: bool | None = None, weight_decay: float = 0.0,
        on_step: Callable[[int, int], None] | None = None, recipe: Recipe = OUR_RECIPE,
        on_epoch: Callable[[int], None] | None = None) -> list[float]:
    """Train ``model`` in place with Adam and a cosine learning-rate schedule; returns the mean loss per epoch.

    ``encode`` (default: whether the model has B-cos layers) applies ``encode_input`` and the B-cos loss.
    ``recipe`` sets the loss, schedule, clipping and augmentation (:class:`Recipe`). ``on_step(step,
    total_steps)`` is called before every optimisation step, ``on_epoch(epoch)`` after every epoch (the model
    is in training mode again afterwards).
    """
    encode = is_bcos_model(model) if encode is None else encode
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(loader)
    total = max(1, epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: _lr_factor(recipe, step, steps_per_epoch, epochs))
    clip: Callable[..., Any] | None = None
    if recipe.clip_factor is not None:
        from timm.utils.agc import adaptive_clip_grad

        clip = adaptive_clip_grad
    loss_fn = _loss_fn(encode, recipe.loss)
    model.train()
    losses, step = [], 0
    for epoch in range(epochs):
        running, count = 0.0, 0
        for images, labels in loader:
            if on_step is not None:
                on_step(step, total)
            if recipe.augment is not None:
                images = recipe.augment(images)
            inputs = encode_input(images) if encode else images
            loss = loss_fn(model(inputs), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                clip(params, clip_factor=recipe.clip_factor)
            optimiser.step()
            schedule.step()
            step += 1
            running += loss.item() * len(labels)
            count += len(labels)
        losses.append(running / max(count, 1))
        if on_epoch is not None:
            on_epoch(epoch)
            model.train()
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, dataset: Dataset, encode: bool | None = None, batch_size: int = 256) -> float:
    """Top-1 accuracy in % of ``model`` (put in eval mode) on ``dataset``."""
    encode = is_bcos_model(model) if encode is None else encode
    model.eval()
    correct = total = 0
    for images, labels in DataLoader(dataset, batch_size=batch_size):
        logits = model(encode_input(images) if encode else images)
        correct += (logits.argmax(1) == labels).sum().item()
        total += len(labels)
    return 100.0 * correct / max(total, 1)


def train_digits(model: nn.Module | None = None, *, train_set: Dataset | None = None,
                 test_set: Dataset | None = None, size: int = 16, epochs: int = 6, lr: float = 3e-3,
                 batch_size: int = 16, seed: int = 0, encode: bool | None = None) -> TrainResult:
    """Train ``model`` (default: the B-cos CNN of :func:`compare_on_digits`) on digits or the given datasets.

    Any datasets of ``(image, label)`` with images ``(3, H, W)`` in [0, 1] work; without them scikit-learn's
    digits upsampled to ``size``×``size`` are used. Seeded: the same arguments give the same model.
    """
    torch.manual_seed(seed)
    if train_set is None or test_set is None:
        default_train, default_test = digits_datasets(size, seed=seed)
        train_set = default_train if train_set is None else train_set
        test_set = default_test if test_set is None else test_set
    if model is None:
        model = BcosSimpleCNN(num_classes=10, widths=(16, 32, 64), max_out=2,
                              logit_temperature=DIGITS_LOGIT_TEMPERATURE)
    losses = fit(model, train_set, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, encode=encode)
    return TrainResult(model, accuracy(model, test_set, encode), losses)


def compare_on_digits(size: int = 16, epochs: int = 6, lr: float = 3e-3, seed: int = 0, batch_size: int = 16,
                      widths: tuple[int, ...] = (16, 32, 64), b: float = 2.0, max_out: int = 2,
                      logit_temperature: float = DIGITS_LOGIT_TEMPERATURE) -> dict[str, TrainResult]:
    """Train the small B-cos CNN and the same standard CNN with one recipe; results by ``"bcos"``/``"standard"``.

    Same widths, data, optimiser (Adam, cosine schedule), batches, epochs and seed for both. The B-cos model
    (b = 2) uses two MaxOut units per channel and divides its logits by ``logit_temperature`` (0.1): its
    dynamic-linear logits are bounded by the input norm, and sharper logits let the binary cross-entropy
    converge in as few epochs as the standard network needs.
    """
    train_set, test_set = digits_datasets(size, seed=seed)
    results = {}
    for name in ("bcos", "standard"):
        torch.manual_seed(seed)
        model = (BcosSimpleCNN(10, widths=widths, b=b, max_out=max_out, logit_temperature=logit_temperature)
                 if name == "bcos"
                 else StandardSimpleCNN(10, widths=widths))
        results[name] = train_digits(model, train_set=train_set, test_set=test_set, epochs=epochs, lr=lr, seed=seed,
                                     batch_size=batch_size)
    return results


def bcosify_finetune(model: nn.Module, train_set: Dataset, *, epochs: int = 1, b: float = 2.0,
                     b_warmup_fraction: float = 0.0, lr: float = 1e-4, batch_size: int = 64,
                     seed: int = 0, recipe: str | Recipe = "paper",
                     on_epoch: Callable[[int], None] | None = None) -> list[float]:
    """Fine-tune a model converted with ``to_bcos(..., remove_biases=True)`` into an interpretable B-cos model.

    Sets the alignment exponent to ``b`` (2 in the paper) — directly, or raised linearly from its current value
    over the first ``b_warmup_fraction`` of the steps — and trains with Adam on encoded inputs. ``recipe``:
    ``"paper"`` (:data:`PAPER_RECIPE`: uniform off-label BCE, per-epoch cosine schedule, adaptive gradient
    clipping, random resized crops and flips; needs timm and torchvision), ``"ours"`` (:data:`OUR_RECIPE`) or a
    :class:`Recipe`. Returns the mean loss per epoch; the model is trained in place and left in eval mode.
    """
    if isinstance(recipe, str):
        try:
            recipe = RECIPES[recipe]
        except KeyError:
            raise ValueError(f"recipe must be one of {', '.join(map(repr, RECIPES))} or a Recipe, "
                             f"got {recipe!r}") from None
    start = next((m.b for m in model.modules() if isinstance(m, (BcosConv2d, BcosLinear))), None)
    if start is None:
        raise TypeError("bcosify_finetune needs a model with B-cos layers; convert it with xai_plugins.bcos.to_bcos")
    set_b(model, b if b_warmup_fraction <= 0 else start)

    def raise_b(step: int, total: int) -> None:
        if b_warmup_fraction > 0:
            progress = min(1.0, step / max(1.0, b_warmup_fraction * total))
            set_b(model, start + (b - start) * progress)

    losses = fit(model, train_set, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, encode=True,
                 on_step=raise_b, recipe=recipe, on_epoch=on_epoch)
    set_b(model, b)
    return losses


@dataclass
class BcosificationRun:
    """Accuracy (in %) of a B-cosified model after each fine-tuning epoch (index 0: before fine-tuning)."""

    variant: str
    recipe: str
    accuracy_per_epoch: list[float]


def compare_bcosification(epochs: int = 3, pretrain_epochs: int = 3, size: int = 32, lr: float = 1e-3,
                          batch_size: int = 32, seed: int = 0,
                          runs: tuple[tuple[str, str], ...] = (("paper", "paper"), ("folded", "ours")),
                          ) -> tuple[float, list[BcosificationRun]]:
    """Accuracy recovered per epoch of B-cosification fine-tuning on the digits, per (variant, recipe).

    A torchvision ResNet-18 is trained on the digits (cross-entropy, ``pretrain_epochs``), then each run
    converts a copy with ``to_bcos(b=2, remove_biases=True, variant=...)`` and fine-tunes it with ``recipe``
    (same data order, learning rate and seed), measuring test accuracy after every epoch. Returns the standard
    model's accuracy and the runs.
    """
    import copy

    import torchvision

    from xai_plugins.bcos.convert import to_bcos

    train_set, test_set = digits_datasets(size, seed=seed)
    torch.manual_seed(seed)
    standard = torchvision.models.resnet18(num_classes=10)
    fit(standard, train_set, epochs=pretrain_epochs, lr=lr, batch_size=batch_size, seed=seed, encode=False)
    standard_accuracy = accuracy(standard, test_set, encode=False)
    results = []
    for variant, recipe in runs:
        torch.manual_seed(seed)
        model = to_bcos(copy.deepcopy(standard), b=2, remove_biases=True, variant=variant)
        curve = [accuracy(model, test_set, encode=True)]

        def record(_: int, m: nn.Module = model, c: list[float] = curve) -> None:
            c.append(accuracy(m, test_set, encode=True))

        bcosify_finetune(model, train_set, epochs=epochs, b=2.0, lr=lr, batch_size=batch_size, seed=seed,
                         recipe=recipe, on_epoch=record)
        results.append(BcosificationRun(variant, recipe, curve))
    return standard_accuracy, results


def main(argv: list[str] | None = None) -> None:
    """``python -m xai_plugins.bcos.train``: the digits comparison (or, with ``--bcosify``, the B-cosification
    comparison), printed as accuracies in %."""
    import argparse

    parser = argparse.ArgumentParser(description="B-cos CNN vs. the same standard CNN on scikit-learn's digits")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bcosify", action="store_true",
                        help="instead: accuracy per epoch of B-cosifying a digits ResNet-18, paper vs ours")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.bcosify:
        for seed in args.seeds:
            standard, runs = compare_bcosification(epochs=args.epochs, seed=seed)
            print(f"seed {seed}: standard ResNet-18 {standard:.2f}%")
            for run in runs:
                curve = "  ".join(f"{a:.2f}" for a in run.accuracy_per_epoch)
                print(f"  variant={run.variant:<6} recipe={run.recipe:<5} accuracy per epoch (0 = converted): {curve}")
        return
    for seed in args.seeds:
        results = compare_on_digits(size=args.size, epochs=args.epochs, lr=args.lr, seed=seed,
                                    batch_size=args.batch_size)
        bcos, standard = results["bcos"].test_accuracy, results["standard"].test_accuracy
        print(f"seed {seed}: B-cos CNN {bcos:.2f}%  standard CNN {standard:.2f}%  gap {standard - bcos:+.2f} points")


if __name__ == "__main__":
    main()
