"""The graph canonizer keeps the module hierarchy: every module the trace went through is called as a module while
canonized, with the original arguments and result, so hooks on blocks and stages fire once per call with the
original values; what cannot be kept is listed in the table (``flat``: not called; ``shifted``: called with a value
a BatchNorm merge changes; ``split``: a fused norm-and-activation module whose hook sees the norm alone)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tests.canonizers.graph_models import build
from tests.support.batchnorm import calibrate_batchnorm, randomize_batchnorm
from tests.support.canonizers import assert_same
from xai_plugins.canonizers import graph
from xai_plugins.canonizers.graph import GraphCanonizer, explain_canonization
from xai_plugins.conformance.state import snapshot

pytest.importorskip("torchvision")
TOLERANCE = 1e-5
SIZE = 64
HIERARCHY_MODELS = ("torchvision:resnet18", "torchvision:densenet121", "torchvision:efficientnet_b0",
                    "torchvision:mobilenet_v3_small", "timm:resnet18", "timm:efficientnet_b0",
                    "timm:hrnet_w18_small", "timm:rexnet_100")
"""The issue's six, HRNet (modules taking and returning lists of tensors) and ReXNet (timm activation modules
traced through, which get an explicit child)."""


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value.detach().clone()]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [tensor for item in value for tensor in _tensors(item)]
    return []


def _containers(model: nn.Module) -> set[str]:
    """The names of the modules with children (the model included)."""
    return {name for name, module in model.named_modules() if next(module.children(), None) is not None}


def _calls(model: nn.Module, x: torch.Tensor,
           names: set[str]) -> dict[str, list[tuple[list[torch.Tensor], list[torch.Tensor]]]]:
    """Module name → ``(arguments, result)`` of every call of each module named: the arguments as a forward
    pre-hook sees them, the result as a forward hook does (HRNet's modules overwrite their argument list)."""
    seen: dict[str, list[tuple[list[torch.Tensor], list[torch.Tensor]]]] = {}
    arguments: dict[str, list[list[torch.Tensor]]] = {}

    def pre_hook(name: str):
        def record(module: nn.Module, args: tuple) -> None:
            arguments.setdefault(name, []).append(_tensors(args))
        return record

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: Any) -> None:
            seen.setdefault(name, []).append((arguments[name].pop(), _tensors(output)))
        return record

    modules = [(name, module) for name, module in model.named_modules() if name in names]
    handles = [module.register_forward_pre_hook(pre_hook(name)) for name, module in modules]
    handles += [module.register_forward_hook(hook(name)) for name, module in modules]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _relative(output: torch.Tensor, reference: torch.Tensor) -> float:
    scale = float(reference.abs().max())
    error = float((output.double() - reference.double()).abs().max())
    return error / scale if scale > 0 else error


def _differences(before: dict, after: dict, names: set[str]) -> list[str]:
    found = []
    for name in sorted(names):
        for (args, output), (new_args, new_output) in zip(before[name], after[name]):
            pairs = list(zip(args + output, new_args + new_output))
            if len(args) != len(new_args) or len(output) != len(new_output):
                found.append(f"{name}: other number of tensors")
            elif any(a.shape != b.shape or _relative(b, a) > TOLERANCE for a, b in pairs):
                found.append(f"{name}: {max(_relative(b, a) for a, b in pairs if a.shape == b.shape):.1e}")
    return found


def _rows(model: nn.Module, action: str) -> set[str]:
    return {row.module for row in explain_canonization(model) if row.action == action}


def _calls_without_and_with_the_canonizer(model: nn.Module, x: torch.Tensor, names: set[str]) -> tuple[dict, dict]:
    """The recorded calls of ``names`` (see ``_calls``) on ``model`` as it is, then under ``GraphCanonizer()``,
    which is removed again."""
    before = _calls(model, x, names)
    canonizer = GraphCanonizer()
    canonizer.apply(model)
    try:
        return before, _calls(model, x, names)
    finally:
        canonizer.remove()


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("spec", HIERARCHY_MODELS)
def test_hooks_on_every_container_fire_once_per_call_with_the_original_values(spec: str) -> None:
    """In float64, so that the merges' float32 rounding (calibrated EfficientNets amplify it beyond 1e-5 in
    float32, as the canonizer's verification allows) cannot hide or fake a wrong value."""
    model = calibrate_batchnorm(build(spec), SIZE).double()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    flat, listed = _rows(model, "flat"), _rows(model, "shifted") | _rows(model, "split")
    names = _containers(model)
    state = snapshot(model)
    before, after = _calls_without_and_with_the_canonizer(model, x, names)
    assert_same(state, snapshot(model))
    assert not [name for name, module in model.named_modules() if "forward" in module.__dict__]
    assert flat == set(), f"{spec}: modules left flat: {sorted(flat)}"
    assert set(after) == set(before), f"missing: {set(before) - set(after)}, new: {set(after) - set(before)}"
    assert {name: len(calls) for name, calls in after.items()} == {name: len(calls) for name, calls in before.items()}
    assert _differences(before, after, set(before) - listed) == []


def test_a_module_the_rewrite_does_not_touch_keeps_its_own_forward() -> None:
    """ResNet's downsample (conv, BatchNorm merged into it) runs its own ``nn.Sequential`` forward; the block
    around it (its sum became a ``Sum``) a generated one, which calls the ``Sum`` and the downsample as modules;
    nothing is left on any module after ``remove``."""
    model = randomize_batchnorm(build("torchvision:resnet18"))
    canonizer = GraphCanonizer()
    canonizer.apply(model)
    try:
        block = model.layer2[0]
        assert "forward" not in block.downsample.__dict__
        assert "forward" in block.__dict__ and "forward" in model.layer2.__dict__
        fired: list[str] = []
        handles = [module.register_forward_hook(lambda *_, name=name: fired.append(name))
                   for name, module in (("sum", block.xai_sum), ("downsample", block.downsample))]
        with torch.no_grad():
            model(torch.randn(1, 3, SIZE, SIZE))
        for handle in handles:
            handle.remove()
        assert sorted(fired) == ["downsample", "sum"]
    finally:
        canonizer.remove()
    assert not [name for name, module in model.named_modules() if "forward" in module.__dict__]


def test_the_folded_hierarchy_is_part_of_the_cached_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second model of the same structure gets the plan from the cache (no trace) and its own blocks called."""
    traces = []
    real = graph.trace
    monkeypatch.setattr(graph, "trace", lambda model: traces.append(1) or real(model))
    graph._PLANS.clear()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    for seed in (0, 1):
        torch.manual_seed(seed)
        import torchvision

        model = randomize_batchnorm(torchvision.models.resnet18(num_classes=10).eval(), seed=seed)
        before, after = _calls_without_and_with_the_canonizer(model, x, _containers(model))
        assert set(after) == set(before) and _differences(before, after, set(before)) == []
    assert len(traces) == 1


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)) + x)


class _SharedBlock(nn.Module):
    """A stem, one residual block called twice (shared weights), a head."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block = _Residual(width)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.block(self.stem(x))))


def test_a_shared_block_is_listed_as_flat_and_the_model_still_canonized() -> None:
    model = randomize_batchnorm(_SharedBlock())
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    table = explain_canonization(model, (1, 3, 12, 12))
    flat = [row for row in table if row.action == "flat"]
    assert [row.module for row in flat] == ["block"] and "called 2 times" in flat[0].detail
    assert "hooks do not fire" in flat[0].detail and "flat" in str(table)
    with torch.no_grad():
        reference = model(x)
    names = _containers(model)
    before, state = _calls(model, x, names), snapshot(model)
    canonizer = GraphCanonizer(input_shape=(1, 3, 12, 12))
    canonizer.apply(model)
    try:
        with torch.no_grad():
            output = model(x)
        after = _calls(model, x, names)
        assert any(type(module).__name__ == "Sum" for module in model.modules())
    finally:
        canonizer.remove()
    assert _relative(output, reference) <= TOLERANCE
    assert set(before) - set(after) == {"block"}
    assert _differences(before, after, set(after)) == []
    assert_same(state, snapshot(model))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_captum_layer_attributions_on_a_stage() -> None:
    """Inside ``canonized(model, [GraphCanonizer()])``, ``LayerGradCam`` and ``LayerActivation`` on ResNet-18's
    ``layer4`` see its call (the values of the original model), and the LRP relevance of ``layer4``'s output
    (``LayerLRP`` on the leaf it feeds, at that leaf's input: Captum's ``LayerLRP`` reads the relevance from a
    leaf's rule) has the stage's output shape and sums to the target logit within 0.01."""
    pytest.importorskip("captum")
    from captum.attr import LayerActivation, LayerGradCam, LayerLRP

    from xai_plugins_captum import canonized

    model = calibrate_batchnorm(build("torchvision:resnet18"), SIZE)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = model(x)
    target = int(output.argmax())
    activation = LayerActivation(model, model.layer4).attribute(x)
    gradcam = LayerGradCam(model, model.layer4).attribute(x, target=target)
    with canonized(model, canonizers=[GraphCanonizer()]):
        canonical_activation = LayerActivation(model, model.layer4).attribute(x)
        canonical_gradcam = LayerGradCam(model, model.layer4).attribute(x, target=target)
        relevance = LayerLRP(model, model.avgpool).attribute(x, target=target, attribute_to_layer_input=True)
    assert canonical_activation.shape == activation.shape == (1, 512, 2, 2)
    assert _relative(canonical_activation, activation) <= TOLERANCE
    assert canonical_gradcam.shape == gradcam.shape and _relative(canonical_gradcam, gradcam) <= 1e-4
    assert relevance.shape == activation.shape
    assert abs(float(relevance.sum()) / float(output[0, target]) - 1) <= 0.01
