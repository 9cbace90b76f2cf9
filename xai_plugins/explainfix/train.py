"""The ExplainFix accuracy experiment: learned vs fixed DCT-steered spatial filters vs fixed and pruned.

Run ``python -m xai_plugins.explainfix.train`` (see ``--help``). Data: scikit-learn's digits upsampled to
``--size`` pixels (three identical channels, fixed stratified 80/20 split), or ``--dataset canvas`` for the
project's DigitsOnCanvas; any map-style Dataset of ``(image, label, ...)`` works with :func:`run_experiment`.
The three models start from the same random initialisation; the fixed one has its spatial filters replaced
by ``dct_steered`` filters and frozen; the pruned one is the fixed model after ChannelPrune of
``--prune-fraction`` of its spatial filters (saliency from training batches), fine-tuned as in the paper.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable, Sequence, Sized
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from xai_plugins.explainfix.fixing import fix_spatial_filters
from xai_plugins.explainfix.pruning import prune_spatial_filters
from xai_plugins.model_state import explaining

__all__ = ["build_resnet", "digits_datasets", "evaluate", "main", "run_experiment", "train_epochs"]


def digits_datasets(size: int = 32, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 1797 digits, bilinearly upsampled to ``size`` x ``size``, as (train, test) datasets."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = ((images - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
    labels = torch.tensor(data.target, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = torch.nonzero(labels == c).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        cut = int(round(0.2 * len(idx)))
        test_idx.append(idx[:cut])
        train_idx.append(idx[cut:])
    tr, te = torch.cat(train_idx), torch.cat(test_idx)
    return TensorDataset(images[tr], labels[tr]), TensorDataset(images[te], labels[te])


def build_resnet(arch: str = "resnet18", num_classes: int = 10) -> nn.Module:
    """A torchvision ResNet built with ``weights=None`` (nothing downloaded)."""
    import torchvision

    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def _xy(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return batch[0], torch.as_tensor(batch[1])


def train_epochs(model: nn.Module, loader: DataLoader, epochs: int, lr: float = 1e-3,
                 weight_decay: float = 1e-4, log: Callable[[str], Any] = lambda s: None) -> list[float]:
    """Train the trainable parameters with AdamW and a cosine schedule; returns the mean loss per epoch."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, epochs * len(loader)))
    losses = []
    model.train()
    for epoch in range(epochs):
        total, count = 0.0, 0
        for batch in loader:
            x, y = _xy(batch)
            loss = nn.functional.cross_entropy(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total, count = total + loss.item() * len(y), count + len(y)
        losses.append(total / max(count, 1))
        log(f"  epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}")
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader) -> float:
    """Top-1 accuracy in percent (eval mode; the mode is restored)."""
    correct = total = 0
    with explaining(model, freeze=False, warn=False):
        for batch in loader:
            x, y = _xy(batch)
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return 100.0 * correct / max(total, 1)


def _size(dataset: Dataset[Any]) -> int:
    """Items of a map-style data set (``len``; a data set without one is a TypeError)."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{type(dataset).__name__} has no length; pass a map-style data set")
    return len(dataset)


def run_experiment(train_set: Dataset, test_set: Dataset, *, arch: str | Callable[[], nn.Module] = "resnet18",
                   num_classes: int = 10,
                   epochs: int = 6, finetune_epochs: int = 2, prune_fraction: float = 0.9,
                   batch_size: int = 64, lr: float = 3e-3, seed: int = 0, saliency_batches: int = 8,
                   streams: bool = False, log=print) -> dict[str, Any]:
    """Train learned, fixed and fixed-then-pruned models; returns accuracies, parameter counts and times.

    ``arch`` is a torchvision ResNet name or a builder ``() -> nn.Module``; ``streams`` is passed to
    :func:`~.pruning.prune_spatial_filters`.
    """
    torch.manual_seed(seed)
    base = arch() if callable(arch) else build_resnet(arch, num_classes)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    test_loader = DataLoader(test_set, batch_size=256)
    name = arch if isinstance(arch, str) else type(base).__name__
    results: dict[str, Any] = {"arch": name, "epochs": epochs, "finetune_epochs": finetune_epochs,
                               "prune_fraction": prune_fraction, "seed": seed,
                               "train_size": _size(train_set), "test_size": _size(test_set), "streams": streams}

    learned = copy.deepcopy(base)
    start = time.perf_counter()
    train_epochs(learned, loader, epochs, lr, log=log)
    results["learned"] = {"accuracy": evaluate(learned, test_loader), "seconds": time.perf_counter() - start,
                          "trainable": sum(p.numel() for p in learned.parameters() if p.requires_grad),
                          "parameters": sum(p.numel() for p in learned.parameters())}
    log(f"learned: {results['learned']}")

    fixed = copy.deepcopy(base)
    report = fix_spatial_filters(fixed, "dct_steered", seed=seed)
    log(str(report))
    start = time.perf_counter()
    train_epochs(fixed, loader, epochs, lr, log=log)
    results["fixed"] = {"accuracy": evaluate(fixed, test_loader), "seconds": time.perf_counter() - start,
                        "trainable": report.trainable_after, "parameters": report.total_parameters}
    log(f"fixed: {results['fixed']}")

    saliency_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                                 generator=torch.Generator().manual_seed(seed + 1))
    pruned = prune_spatial_filters(fixed, prune_fraction, saliency_loader, max_batches=saliency_batches,
                                   streams=streams)
    log(str(pruned))
    before = evaluate(pruned.pruned, test_loader)
    start = time.perf_counter()
    train_epochs(pruned.pruned, loader, finetune_epochs, lr, log=log)
    results["pruned"] = {"accuracy_before_finetune": before, "accuracy": evaluate(pruned.pruned, test_loader),
                         "seconds": time.perf_counter() - start,
                         "parameters": pruned.parameters_after,
                         "trainable": sum(p.numel() for p in pruned.pruned.parameters() if p.requires_grad),
                         "zeroed_filters": pruned.zeroed_filters, "total_filters": pruned.total_filters,
                         "max_relative_error": pruned.max_relative_error}
    log(f"pruned: {results['pruned']}")
    results["fixed_gap"] = results["learned"]["accuracy"] - results["fixed"]["accuracy"]
    results["pruned_gap"] = results["learned"]["accuracy"] - results["pruned"]["accuracy"]
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the experiment and print (and optionally save) the results as JSON."""
    p = argparse.ArgumentParser(prog="python -m xai_plugins.explainfix.train", description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet18", help="torchvision ResNet builder (default: resnet18)")
    p.add_argument("--dataset", choices=("digits", "canvas"), default="digits")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (default: 32)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--prune-fraction", type=float, default=0.9)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=None, help="use only this many training images")
    p.add_argument("--streams", action="store_true", help="prune with streams=True (cut residual-stream channels)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_set: Dataset[Any]
    test_set: Dataset[Any]
    if args.dataset == "digits":
        train_set, test_set = digits_datasets(args.size, args.seed)
    else:
        from xai_plugins.evaluation.dataset import DigitsOnCanvas

        train_set = DigitsOnCanvas(4000, split="train", seed=args.seed, size=args.size)
        test_set = DigitsOnCanvas(1000, split="test", seed=args.seed, size=args.size)
    if args.train_size is not None:
        train_set = Subset(train_set, range(min(args.train_size, _size(train_set))))
    results = run_experiment(train_set, test_set, arch=args.arch, epochs=args.epochs,
                             finetune_epochs=args.finetune_epochs, prune_fraction=args.prune_fraction,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed, streams=args.streams,
                             log=lambda s: print(s, file=sys.stderr, flush=True))
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
