"""Training recipes for the benchmark models and loading of their shipped checkpoints.

Every recipe trains on freshly drawn :class:`~xai_plugins.evaluation.dataset.DigitsOnCanvas` items (one pass,
no item seen twice) with Adam and a cosine schedule, seeded, in a few CPU minutes. ``python -m
xai_plugins.evaluation.train_checkpoints`` runs the recipes and writes the checkpoints shipped in
``xai_plugins/evaluation/checkpoints/`` (``<name>.safetensors`` plus ``<name>.json`` with the recipe and the
test accuracy).
"""

from __future__ import annotations

import importlib
import json
import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xai_plugins.evaluation.dataset import NUM_CLASSES, DigitsOnCanvas
from xai_plugins.evaluation.textured import TexturedCanvas
from xai_plugins.model_state import explaining

CHECKPOINT_DIR = Path(__file__).with_name("checkpoints")


@dataclass(frozen=True)
class Recipe:
    """How one benchmark model is built and trained.

    ``builder`` is ``"module:function"`` called with ``builder_kwargs``; ``prepare`` (optional, same form)
    turns the fitted model's input images into what it expects (the 6-channel B-cos encoding); ``fix``
    (optional) is called on the fresh model before training (ExplainFix's fixed spatial filters). ``loss`` is
    ``"ce"`` (cross-entropy) or ``"bce"`` (one-vs-all binary cross-entropy, as B-cos networks are trained).
    ``dataset`` names the ground-truth dataset of :data:`DATASETS` it is trained and evaluated on.
    """

    name: str
    builder: str
    summary: str
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    prepare: str | None = None
    fix: str | None = None
    fix_kwargs: dict[str, Any] = field(default_factory=dict)
    samples: int = 24000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    image_size: int = 32
    test_samples: int = 1000
    loss: str = "ce"
    dataset: str = "digits"


DATASETS: dict[str, type[DigitsOnCanvas]] = {"digits": DigitsOnCanvas, "textured": TexturedCanvas}
"""The ground-truth datasets by name: digits on a dark canvas, and the same digits on textured backgrounds."""


def make_dataset(name: str, length: int, *, split: str, seed: int, **kwargs: Any) -> DigitsOnCanvas:
    """Dataset ``name`` of :data:`DATASETS` (its own canvas size unless ``size=`` is given)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name](length, split=split, seed=seed, **kwargs)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("resnet", "xai_plugins.evaluation.models:small_resnet",
           "torchvision ResNet (BasicBlock, widths 16-64) with BatchNorm"),
    Recipe("densenet", "xai_plugins.evaluation.models:small_densenet",
           "torchvision DenseNet (growth 8, blocks 2-2-2) with BatchNorm"),
    Recipe("efficientnet", "xai_plugins.evaluation.models:small_efficientnet",
           "torchvision EfficientNet (4 MBConv stages, squeeze-excitation) with BatchNorm"),
    Recipe("bcos", "xai_plugins.bcos:create_model", "B-cos CNN (b=2) on the 6-channel [x, 1-x] encoding",
           builder_kwargs={"name": "bcos_simple_cnn", "num_classes": NUM_CLASSES, "widths": (16, 32, 64, 64),
                           "max_out": 2, "logit_temperature": 0.1},
           prepare="xai_plugins.bcos:encode_input", loss="bce", weight_decay=0.0),
    Recipe("explainfix", "xai_plugins.evaluation.models:small_efficientnet",
           "the EfficientNet above with fixed DCT-steered spatial filters (ExplainFix): only 1x1 convolutions, "
           "BatchNorm and the classifier learn",
           fix="xai_plugins.explainfix:fix_spatial_filters", fix_kwargs={"method": "dct_steered", "seed": 0}),
    Recipe("resnet_textured", "xai_plugins.evaluation.models:small_resnet",
           "the ResNet above trained on TexturedCanvas (48 px, textured backgrounds)", dataset="textured",
           image_size=48, samples=72000),
    Recipe("densenet_textured", "xai_plugins.evaluation.models:small_densenet",
           "a wider, deeper DenseNet (growth 16, blocks 3-3-3, 32 stem channels, bottleneck 4) trained on "
           "TexturedCanvas (48 px, textured backgrounds)",
           builder_kwargs={"growth_rate": 16, "block_config": (3, 3, 3), "num_init_features": 32, "bn_size": 4},
           dataset="textured", image_size=48, samples=72000),
    Recipe("efficientnet_textured", "xai_plugins.evaluation.models:small_efficientnet",
           "the EfficientNet above trained on TexturedCanvas (48 px, textured backgrounds)", dataset="textured",
           image_size=48, samples=72000),
)}


def _resolve(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise KeyError(f"no training recipe named {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def build_model(name: str) -> nn.Module:
    """The untrained architecture of recipe ``name`` (nothing is fixed or loaded)."""
    recipe = _recipe(name)
    kwargs = dict(recipe.builder_kwargs)
    if recipe.builder.endswith(":create_model"):
        return _resolve(recipe.builder)(kwargs.pop("name"), **kwargs)
    return _resolve(recipe.builder)(**kwargs)


def prepare_input(name: str, images: Tensor) -> Tensor:
    """Images ``(N, 3, H, W)`` in [0, 1] as recipe ``name``'s model takes them."""
    recipe = _recipe(name)
    return _resolve(recipe.prepare)(images) if recipe.prepare else images


@torch.no_grad()
def accuracy(model: nn.Module, name: str, dataset: DigitsOnCanvas, batch_size: int = 250) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on ``dataset``."""
    correct = 0
    with explaining(model, warn=False, freeze=False):
        for start in range(0, len(dataset), batch_size):
            x, y, _ = dataset.tensors(range(start, min(start + batch_size, len(dataset))))
            correct += int((model(prepare_input(name, x)).argmax(1) == y).sum())
    return correct / max(len(dataset), 1)


def train(name: str, *, progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Train recipe ``name`` from its seed; returns the model (in eval mode) and a record with the accuracy."""
    recipe = _recipe(name)
    torch.manual_seed(recipe.seed)
    model = build_model(name)
    fix_report = None
    if recipe.fix:
        fix_report = _resolve(recipe.fix)(model, **recipe.fix_kwargs)
    data = make_dataset(recipe.dataset, recipe.samples, split="train", seed=recipe.seed, size=recipe.image_size)
    loader = torch.utils.data.DataLoader(data, batch_size=recipe.batch_size, shuffle=False,
                                         generator=torch.Generator().manual_seed(recipe.seed))
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = math.ceil(len(data) / recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=recipe.lr, total_steps=steps,
                                                   pct_start=0.15)
    loss_fn = _bce if recipe.loss == "bce" else nn.functional.cross_entropy
    model.train()
    bar = _progress(loader, progress, f"train {name}", steps)
    for x, y, _ in bar:
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(model(prepare_input(name, x)), y)
        loss.backward()
        optimiser.step()
        schedule.step()
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    test = make_dataset(recipe.dataset, recipe.test_samples, split="test", seed=recipe.seed + 1,
                        size=recipe.image_size)
    record = {
        "recipe": asdict(recipe),
        "test_accuracy": accuracy(model, name, test),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in params),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if fix_report is not None:
        record["fix_report"] = str(fix_report)
    return model, record


def _bce(logits: Tensor, labels: Tensor) -> Tensor:
    return nn.functional.binary_cross_entropy_with_logits(
        logits, nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype))


def _progress(iterable: Any, enabled: bool, desc: str, total: int) -> Any:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False)


def save_checkpoint(model: nn.Module, name: str, record: dict[str, Any], directory: Path | None = None) -> Path:
    """Write ``<name>.safetensors`` (the state dict) and ``<name>.json`` (the record); returns the first."""
    from safetensors.torch import save_file

    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    path = directory / f"{name}.safetensors"
    save_file(state, str(path), metadata={"recipe": name})
    (directory / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def checkpoint_record(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The JSON record stored beside checkpoint ``name`` (recipe, accuracy, versions)."""
    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    return json.loads((directory / f"{name}.json").read_text())


def available_checkpoints(directory: Path | None = None) -> list[str]:
    """Names of the recipes whose checkpoint exists in ``directory`` (the shipped ones by default)."""
    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    return [n for n in RECIPES if (directory / f"{n}.safetensors").is_file()]


def load_checkpoint(name: str, directory: Path | None = None) -> nn.Module:
    """Recipe ``name``'s model with its checkpoint loaded, in eval mode (strict: every tensor must match)."""
    from safetensors.torch import load_file

    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    path = directory / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {path}; create it with: python -m "
                                f"xai_plugins.evaluation.train_checkpoints {name}")
    model = build_model(name)
    recipe = _recipe(name)
    if recipe.fix:
        _resolve(recipe.fix)(model, **recipe.fix_kwargs)
    model.load_state_dict(load_file(str(path)))
    return model.eval()
