"""Components for testing the conformance suite: correct ones, and deliberately broken ones, each breaking
exactly one rule of the component contracts so a test can assert the exact message the suite gives."""

from __future__ import annotations

import copy
import random
import types
from typing import Any

import torch
from torch import nn

from xai_plugins import hookimpl
from xai_plugins.conformance.invariance import fold_batchnorm
from xai_plugins.registry import Component, Registry

PAPER = "Tester, A Test Component, Nowhere 2024"


# ---------------------------------------------------------------- canonizers


def _conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv name, bn name) for every Conv2d directly followed by a BatchNorm2d among siblings."""
    pairs = []
    for parent in model.modules():
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            if isinstance(parent._modules[first], nn.Conv2d) and isinstance(parent._modules[second], nn.BatchNorm2d):
                pairs.append((parent, first, second))
    return pairs


class MergeBatchNorm:
    """Folds each BatchNorm2d into the Conv2d registered just before it, by swapping modules (correct)."""

    def __init__(self) -> None:
        self.saved: list[tuple[nn.Module, str, nn.Module]] = []

    def apply(self, model: nn.Module) -> list[Any]:
        if not isinstance(model, nn.Module):
            raise TypeError(f"apply() needs a torch.nn.Module model, got {type(model).__name__}")
        try:
            for parent, conv_name, bn_name in _conv_bn_pairs(model):
                conv, bn = parent._modules[conv_name], parent._modules[bn_name]
                self.saved += [(parent, conv_name, conv), (parent, bn_name, bn)]
                self._swap(parent, conv_name, fold_batchnorm(conv, bn))
                self._swap(parent, bn_name, nn.Identity())
        except BaseException:
            self.remove()
            raise
        return [self]

    def _swap(self, parent: nn.Module, name: str, module: nn.Module) -> None:
        setattr(parent, name, module)

    def remove(self) -> None:
        while self.saved:
            parent, name, module = self.saved.pop()
            setattr(parent, name, module)

    def copy(self) -> MergeBatchNorm:
        return type(self)()


class FunctionChangingCanonizer(MergeBatchNorm):
    """Broken: also doubles the classifier's weight while applied (changes the function)."""

    def apply(self, model: nn.Module) -> list[Any]:
        handles = super().apply(model)
        doubled = copy.deepcopy(model.fc)
        doubled.weight.data.mul_(2)
        self.saved.append((model, "fc", model.fc))
        model.fc = doubled
        return handles


class HookLeakingCanonizer(MergeBatchNorm):
    """Broken: registers a forward hook on the classifier that remove() forgets."""

    def apply(self, model: nn.Module) -> list[Any]:
        model.fc.register_forward_hook(lambda m, a, o: None)
        return super().apply(model)


class NonAtomicCanonizer(MergeBatchNorm):
    """Broken: does not undo what it already changed when apply fails halfway."""

    def apply(self, model: nn.Module) -> list[Any]:
        if not isinstance(model, nn.Module):
            raise TypeError(f"apply() needs a torch.nn.Module model, got {type(model).__name__}")
        for parent, conv_name, bn_name in _conv_bn_pairs(model):
            conv, bn = parent._modules[conv_name], parent._modules[bn_name]
            self.saved += [(parent, conv_name, conv), (parent, bn_name, bn)]
            self._swap(parent, conv_name, fold_batchnorm(conv, bn))
            self._swap(parent, bn_name, nn.Identity())
        return [self]


class DirectWriteNonAtomicCanonizer(NonAtomicCanonizer):
    """Broken like NonAtomicCanonizer, but edits the module dictionaries directly (no ``__setattr__``), as
    canonizers that record their own edits do."""

    def _swap(self, parent: nn.Module, name: str, module: nn.Module) -> None:
        parent._modules[name] = module

    def remove(self) -> None:
        while self.saved:
            parent, name, module = self.saved.pop()
            parent._modules[name] = module


class RefusingCanonizer(MergeBatchNorm):
    """Refuses to canonize a model that is already canonized, with a clear error (correct)."""

    def apply(self, model: nn.Module) -> list[Any]:
        if getattr(model, "_test_canonized", False):
            raise RuntimeError("model is already canonized; remove the other canonizer first")
        handles = super().apply(model)
        object.__setattr__(model, "_test_canonized", True)
        return handles

    def remove(self) -> None:
        roots = {id(parent): parent for parent, _, _ in self.saved}
        super().remove()
        for root in roots.values():
            root.__dict__.pop("_test_canonized", None)


class ChangeThenRefuseCanonizer(RefusingCanonizer):
    """Broken: refuses a second apply only after zeroing the classifier's bias."""

    def apply(self, model: nn.Module) -> list[Any]:
        if getattr(model, "_test_canonized", False):
            with torch.no_grad():
                model.fc.bias.zero_()
        return super().apply(model)


class NoCopyCanonizer(MergeBatchNorm):
    """Broken: copy() returns itself."""

    def copy(self) -> NoCopyCanonizer:
        return self


# ---------------------------------------------------------------- attributors


def _targets(target: Any, n: int, classes: int) -> torch.Tensor:
    t = torch.as_tensor(target).long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"got {t.numel()} targets for a batch of {n}; pass one int or one per sample")
    if (t < 0).any() or (t >= classes).any():
        raise ValueError(f"target {t.tolist()} is out of range for a model with {classes} classes")
    return t


def gradient_x_input(model: nn.Module, inputs: Any, target: Any, **kwargs: Any) -> Any:
    """Gradient times input of the target logit (correct: eval mode for the call, everything restored)."""
    if isinstance(inputs, tuple):
        return (gradient_x_input(model, inputs[0], target),)
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        x = inputs.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = model(x)
            t = _targets(target, x.shape[0], out.shape[1])
            (grad,) = torch.autograd.grad(out.gather(1, t[:, None]).sum(), x)
    finally:
        for m, mode in modes.items():
            m.training = mode
    return (grad * inputs).detach()


def training_mode_attributor(model: nn.Module, inputs: Any, target: Any) -> torch.Tensor:
    """Broken: leaves the model in training mode."""
    result = gradient_x_input(model, inputs, target)
    model.train()
    return result


def unfreezing_attributor(model: nn.Module, inputs: Any, target: Any) -> torch.Tensor:
    """Broken: sets requires_grad on every parameter and never restores it."""
    for p in model.parameters():
        p.requires_grad_(True)
    return gradient_x_input(model, inputs, target)


def no_cleanup_on_error_attributor(model: nn.Module, inputs: Any, target: Any) -> torch.Tensor:
    """Broken: freezes the parameters during the call and restores them only when nothing goes wrong."""
    saved = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    result = gradient_x_input(model, inputs, target)
    for p, req in zip(model.parameters(), saved):
        p.requires_grad_(req)
    return result


def unchecked_target_attributor(model: nn.Module, inputs: Any, target: Any) -> torch.Tensor:
    """Broken: indexes the output with the target without checking its range."""
    x = inputs.detach().clone().requires_grad_(True)
    out = model(x)
    t = torch.as_tensor(target).long().reshape(-1).expand(x.shape[0])
    picked = out[torch.arange(x.shape[0]), t]
    (grad,) = torch.autograd.grad(picked.sum(), x)
    return (grad * inputs).detach()


def batch_normalised_attributor(model: nn.Module, inputs: Any, target: Any) -> torch.Tensor:
    """Broken: scales by the maximum over the whole batch, so a sample's result depends on the others."""
    result = gradient_x_input(model, inputs, target)
    return result / result.abs().max()


def unseeded_attributor(model: nn.Module, inputs: Any, target: Any) -> torch.Tensor:
    """Broken: adds noise from an RNG that ignores torch's seed."""
    result = gradient_x_input(model, inputs, target)
    rng = random.Random()
    return result + rng.random() * 1e-3


def guided_backprop(model: nn.Module, inputs: Any, target: Any) -> Any:
    """Guided backpropagation through hooks on ReLU modules: breaks implementation invariance (a functional
    ``F.relu`` gets no hook)."""
    handles = [m.register_full_backward_hook(lambda mod, gin, gout: (gin[0].clamp(min=0),))
               for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        return gradient_x_input(model, inputs, target)
    finally:
        for h in handles:
            h.remove()


# ---------------------------------------------------------------- models and initializers


class PlainCNN(nn.Module):
    """A CNN that does not check its input."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


class CheckedCNN(PlainCNN):
    """A CNN that rejects a wrong channel count with a clear error (correct)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got {tuple(x.shape)}: 3 channels (RGB) are needed")
        return super().forward(x)


def checked_cnn(num_classes: int = 10) -> CheckedCNN:
    """A small CNN with input validation."""
    return CheckedCNN(num_classes)


def plain_cnn(num_classes: int = 10) -> PlainCNN:
    """A small CNN without input validation (broken: torch's own error surfaces)."""
    return PlainCNN(num_classes)


def downloading_builder(num_classes: int = 10) -> nn.Module:
    """Broken: fetches weights from the internet."""
    model = PlainCNN(num_classes)
    model.load_state_dict(torch.hub.load_state_dict_from_url("https://example.invalid/weights.pth"))
    return model


def _check_shape(shape: Any) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) < 3:
        raise ValueError(f"shape {shape} is not a filter bank (out, in/groups, *kernel)")
    return shape


def scaled_normal(shape: Any, generator: torch.Generator | None = None) -> torch.Tensor:
    """Normal filters scaled by 1/sqrt(fan-in) (correct)."""
    shape = _check_shape(shape)
    fan_in = torch.tensor(shape[1:]).prod().item()
    return torch.randn(shape, generator=generator) / fan_in ** 0.5


def unseeded_normal(shape: Any, generator: torch.Generator | None = None) -> torch.Tensor:
    """Broken: ignores the generator."""
    return torch.randn(_check_shape(shape), generator=torch.Generator().manual_seed(random.randrange(2**31)))


def forgetful_fixer(model: nn.Module, init: Any) -> None:
    """Broken fixer: writes the filters but does not freeze them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1):
                m.weight.copy_(init(tuple(m.weight.shape)))


# ---------------------------------------------------------------- registries


def component(kind: str, name: str, obj: Any, **extra: Any) -> Component:
    """A registry record for ``obj`` with complete metadata (overridable through ``extra``)."""
    summary = extra.pop("summary", f"{name} (test component)")
    paper = extra.pop("paper", PAPER)
    model_types = tuple(extra.pop("model_types", ()))
    if kind == "attributor":
        extra.setdefault("attribution_kind", "gradient")
    return Component(kind, name, obj, summary, paper, model_types, "testplugin", "xai-plugins-test", "0.0", extra)


def plugin(**by_kind: dict[str, Any]) -> types.SimpleNamespace:
    """A plugin object registering ``{name: obj}`` per kind (``canonizer=..., attributor=...``)."""
    hooks = {}
    for kind, hook in (("canonizer", "xai_register_canonizers"), ("model", "xai_register_models"),
                       ("attributor", "xai_register_attributors"), ("initializer", "xai_register_initializers")):
        if kind in by_kind:
            def impl(register: Any, _items: dict[str, Any] = by_kind[kind], _kind: str = kind) -> None:
                for name, obj in _items.items():
                    kind_extra = {"attribution_kind": "gradient"} if _kind == "attributor" else {}
                    register(name, obj, summary=f"{name} (test {_kind})", paper=PAPER, **kind_extra)
            impl.__name__ = hook
            hooks[hook] = hookimpl(impl)
    return types.SimpleNamespace(**hooks)


def registry_with(**plugins: types.SimpleNamespace) -> Registry:
    """A fresh registry holding only the given plugin objects, by name."""
    registry = Registry()
    for name, obj in plugins.items():
        registry.register_plugin(obj, name, distribution=f"xai-plugins-{name}", version="0.0")
    return registry
