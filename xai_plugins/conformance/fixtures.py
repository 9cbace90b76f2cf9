"""Example models and inputs for checking a component, taken from its registration metadata.

A check needs something to run a component on. It takes it from these ``extra`` keys of ``register(...)``
(all optional; see ``docs/conformance.md``):

``example_model``
    ``"package.module:factory"``, ``"model:NAME"`` (a registered model builder) or a callable; returns an
    ``nn.Module`` with random weights and downloads nothing.
``example_model_kwargs``
    keyword arguments for that factory (default ``{}``; ``{"num_classes": 10}`` for torchvision builders).
``example_input_shape``
    the input batch shape, e.g. ``(2, 3, 32, 32)``; use a batch of at least 2 and a small image.
``input_channels``
    channel count of the default input shape (default 3), e.g. 6 for B-cos models.
``example_kwargs``
    keyword arguments the suite passes when it calls the component (e.g. ``{"max_iter": 40}`` to keep an
    optimisation short).
``tolerance``
    relative tolerance of the component's numeric checks (default 1e-5 for canonizers, 1e-4 otherwise).

Without ``example_model``, a canonizer or attributor limited to ``model_types`` is checked on the torchvision
builder of each named class (``torchvision.models.ResNet`` -> ``resnet18``, weights=None; DenseNet in a small
configuration, see :data:`SMALL_CONFIGS`), and a model-agnostic
one on :class:`~xai_plugins.conformance.examples.ReferenceNet`.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xai_plugins.conformance.examples import randomize_batchnorm, reference_net
from xai_plugins.conformance.results import CheckSkipped
from xai_plugins.registry import Component

MAX_MODEL_TYPES = 4

TORCHVISION_BUILDERS: dict[str, str] = {
    "ResNet": "resnet18",
    "VGG": "vgg11_bn",
    "EfficientNet": "efficientnet_b0",
    "MobileNetV2": "mobilenet_v2",
    "MobileNetV3": "mobilenet_v3_small",
    "RegNet": "regnet_x_400mf",
    "SqueezeNet": "squeezenet1_1",
    "AlexNet": "alexnet",
    "ShuffleNetV2": "shufflenet_v2_x0_5",
    "MNASNet": "mnasnet0_5",
    "ConvNeXt": "convnext_tiny",
    "GoogLeNet": "googlenet",
}
"""torchvision class name -> the smallest builder of that class, used when no ``example_model`` is given."""

SMALL_CONFIGS: dict[str, dict[str, Any]] = {
    "DenseNet": {"growth_rate": 8, "block_config": (2, 2, 2, 2), "num_init_features": 16},
}
"""torchvision classes checked on a small configuration of the same class (same structure, a fraction of the
cost): DenseNet-121 takes minutes per canonizer check on a loaded 2-core CPU, this one seconds."""

_BUILDER_KWARGS: dict[str, dict[str, Any]] = {"googlenet": {"aux_logits": False, "init_weights": True}}

DEFAULT_SPATIAL = 32
CACHE_SIZE = 3
_MODEL_CACHE: dict[Any, nn.Module] = {}


@dataclass
class Example:
    """A model (eval mode, random weights, randomised BatchNorm statistics) and an input batch for it."""

    label: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    cache_key: Any = None
    seed: int = 0

    def model(self) -> nn.Module:
        """A fresh model, identical on every call (built once, then deep-copied)."""
        def build() -> nn.Module:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = self.factory()
            if not isinstance(model, nn.Module):
                raise TypeError(f"example model factory for {self.label} returned {type(model).__name__}, "
                                "not a torch.nn.Module")
            return randomize_batchnorm(model, torch.Generator().manual_seed(self.seed + 1)).eval()

        return cached_model((self.cache_key, self.seed), build)

    def inputs(self, seed: int = 0) -> torch.Tensor:
        """A random input batch of ``input_shape`` (values in [0, 1))."""
        return torch.rand(self.input_shape, generator=torch.Generator().manual_seed(1000 + seed))


def cached_model(key: Any, build: Callable[[], nn.Module]) -> nn.Module:
    """A deep copy of the model ``build()`` made for ``key`` (the last few are kept: building large models
    costs more than copying them)."""
    if key is None:
        return build()
    if key not in _MODEL_CACHE:
        model = build()
        while len(_MODEL_CACHE) >= CACHE_SIZE:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = model
    return copy.deepcopy(_MODEL_CACHE[key])


def load_object(spec: Any) -> Any:
    """Resolve ``"module:attr"`` (or ``"model:NAME"`` for a registered model builder); other objects as is."""
    if not isinstance(spec, str):
        return spec
    prefix, sep, rest = spec.partition(":")
    if not sep:
        raise ValueError(f"expected 'package.module:attribute' or 'model:NAME', got {spec!r}")
    if prefix == "model":
        from xai_plugins import get

        return get("model", rest)
    obj: Any = importlib.import_module(prefix)
    for part in rest.split("."):
        obj = getattr(obj, part)
    return obj


def _torchvision_factory(type_name: str, num_classes: int) -> tuple[str, Callable[[], nn.Module]] | None:
    module, _, cls_name = type_name.rpartition(".")
    if not module.startswith("torchvision"):
        return None
    import torchvision.models as tvm

    if cls_name in SMALL_CONFIGS:
        kwargs = {**SMALL_CONFIGS[cls_name], "num_classes": num_classes}
        cls = getattr(tvm, cls_name)
        return f"torchvision.models.{cls_name}(**{SMALL_CONFIGS[cls_name]})", lambda: cls(**kwargs)
    builder = TORCHVISION_BUILDERS.get(cls_name)

    if builder is None:
        candidates = sorted((n for n in tvm.list_models(module=tvm) if n.startswith(cls_name.lower())), key=len)
        if not candidates:
            return None
        builder = candidates[0]
    kwargs = {"weights": None, "num_classes": num_classes, **_BUILDER_KWARGS.get(builder, {})}
    return f"torchvision.models.{builder}", lambda: tvm.get_model(builder, **kwargs)


def examples_for(component: Component, *, num_classes: int = 10) -> list[Example]:
    """The example models and inputs to check ``component`` on, from its metadata (see the module doc)."""
    extra = component.extra
    channels = int(extra.get("input_channels", 3))
    shape = tuple(extra.get("example_input_shape", ()))
    if "example_model" in extra:
        spec = extra["example_model"]
        kwargs = dict(extra.get("example_model_kwargs", {}))
        label = spec if isinstance(spec, str) else getattr(spec, "__qualname__", repr(spec))
        key = (spec if isinstance(spec, str) else id(spec), repr(sorted(kwargs.items())))
        return [Example(label, lambda: load_object(spec)(**kwargs),
                        shape or (2, channels, DEFAULT_SPATIAL, DEFAULT_SPATIAL), key)]
    if not component.model_types:
        return [Example("ReferenceNet", lambda: reference_net(channels, num_classes), shape or (2, channels, 16, 16),
                        ("ReferenceNet", channels, num_classes))]
    found: list[Example] = []
    missing: list[str] = []
    for type_name in component.model_types[:MAX_MODEL_TYPES]:
        made = _torchvision_factory(type_name, num_classes)
        if made is None:
            missing.append(type_name)
            continue
        label, factory = made
        found.append(Example(label, factory, shape or (2, channels, DEFAULT_SPATIAL, DEFAULT_SPATIAL),
                             (label, num_classes)))
    if not found:
        raise CheckSkipped(
            f"no example model for model_types {', '.join(missing)}: pass example_model='package.module:factory' "
            "(or 'model:NAME') to register() so the suite can build one")
    return found


def call_kwargs(component: Component) -> dict[str, Any]:
    """Keyword arguments the suite passes when calling the component (``extra['example_kwargs']``)."""
    return dict(component.extra.get("example_kwargs", {}))


def tolerance(component: Component, default: float) -> float:
    """The component's declared relative tolerance, or ``default``."""
    return float(component.extra.get("tolerance", default))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run with the global RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
