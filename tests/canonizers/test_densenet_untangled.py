"""DenseNetUntangledCanonizer (the paper's untangling variant): function, restore, atomicity, conservation."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import xai_plugins
from tests.support.batchnorm import calibrate_batchnorm, randomize_batchnorm
from xai_plugins.canonizers import Canonizer, DenseNetUntangledCanonizer, canonizers_for
from xai_plugins.canonizers.modules import Concat, ThresholdReLU
from xai_plugins.conformance.state import diff_states, snapshot

tvm = pytest.importorskip("torchvision.models")
from torchvision.models.densenet import DenseNet  # noqa: E402


def small(growth: int = 8, blocks: tuple[int, ...] = (2, 3, 2), init: int = 16) -> nn.Module:
    return DenseNet(growth_rate=growth, block_config=blocks, num_init_features=init, num_classes=5)


def relative_change(model: nn.Module, x: torch.Tensor, canonizer: Canonizer) -> float:
    with torch.no_grad():
        reference = model(x)
        canonizer.apply(model)
        try:
            out = model(x)
        finally:
            canonizer.remove()
    return ((out - reference).abs().max() / reference.abs().max()).item()


def test_densenet121_function_unchanged_structure_and_restore() -> None:
    torch.manual_seed(0)
    model = calibrate_batchnorm(tvm.densenet121(num_classes=10), size=32, seed=0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
    before = snapshot(model)
    convs_before = sum(isinstance(m, nn.Conv2d) for m in model.modules())

    canonizer = DenseNetUntangledCanonizer()
    handles = canonizer.apply(model)
    assert canonizer.apply(model) == handles  # applying the same instance twice is a no-op
    calls: dict[int, int] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o: calls.__setitem__(id(mod), calls.get(id(mod), 0) + 1))
             for m in model.modules()]
    with torch.no_grad():
        canonized = model(x)
    for hook in hooks:
        hook.remove()
    error = ((canonized - reference).abs().max() / reference.abs().max()).item()
    assert error <= 1e-5, f"relative output change {error:.2e}"
    assert max(calls.values()) == 1, "a module is called twice"
    # 6/12/24/16 layers: n(n-1)/2 new conv2 copies per block, 12 + 24 + 16 transition copies
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) - convs_before == 15 + 66 + 276 + 120 + 52
    assert sum(isinstance(m, ThresholdReLU) for m in model.modules()) == 7  # the stem's slices: 6 layers + transition
    assert any(isinstance(m, Concat) for m in model.modules())
    for bn in (m for m in model.modules() if isinstance(m, _BatchNorm)):
        probe = torch.randn(1, bn.num_features, 2, 2)
        assert torch.equal(bn(probe), probe), "BatchNorm left with an effect"

    for handle in handles:
        handle.remove()
    canonizer.remove()  # removing twice is safe
    assert diff_states(before, snapshot(model)) == []
    with torch.no_grad():
        assert torch.equal(model(x), reference)


@pytest.mark.parametrize("config", [
    {"blocks": (2, 3, 2)},
    {"blocks": (3,)},                                   # one block: norm5's stem slice goes into the classifier
    {"growth": 12, "blocks": (2, 2, 2, 2), "init": 24},  # DenseNet-161's growth/stem ratio, fewer layers
])
@pytest.mark.parametrize("seed", [0, 1])
def test_negative_and_zero_gamma(config: dict, seed: int) -> None:
    torch.manual_seed(seed)
    model = randomize_batchnorm(small(**config), seed=seed)
    x = torch.randn(2, 3, 32, 32)
    before = snapshot(model)
    assert relative_change(model, x, DenseNetUntangledCanonizer()) <= 1e-5
    assert diff_states(before, snapshot(model)) == []


def test_gradient_unchanged_and_inplace_relus_restored() -> None:
    """Plain autograd works through the canonized model (its ReLUs on split views are made out of place)."""
    torch.manual_seed(0)
    model = randomize_batchnorm(small(), seed=2)
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    model(x)[0, 1].backward()
    reference, x.grad = x.grad, None
    canonizer = DenseNetUntangledCanonizer()
    canonizer.apply(model)
    model(x)[0, 1].backward()
    canonizer.remove()
    assert torch.allclose(x.grad, reference, rtol=1e-4, atol=1e-5 * reference.abs().max().item())
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


@pytest.mark.parametrize("editor", ["set_child", "swap_parameter", "override_forward", "set_attribute"])
def test_apply_is_atomic(monkeypatch: pytest.MonkeyPatch, editor: str) -> None:
    """A failure at an early, middle or late edit leaves the model exactly as it was."""
    torch.manual_seed(0)
    model = randomize_batchnorm(small(), seed=0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
    before = snapshot(model)
    original = getattr(Canonizer, editor)
    count = {"calls": 0}

    def counting(self, *args, **kwargs):
        count["calls"] += 1
        if count["calls"] == count.get("fail_at"):
            raise RuntimeError("injected failure")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Canonizer, editor, counting)
    counted = DenseNetUntangledCanonizer()
    counted.apply(model)
    counted.remove()
    total = count["calls"]
    assert total > 1
    for fail_at in sorted({1, total // 2, total}):
        count.update(calls=0, fail_at=fail_at)
        canonizer = DenseNetUntangledCanonizer()
        with pytest.raises(RuntimeError, match="injected failure"):
            canonizer.apply(model)
        assert diff_states(before, snapshot(model)) == [], f"{editor} call {fail_at} of {total}"
        assert not canonizer.applied
        with torch.no_grad():
            assert torch.equal(model(x), reference)


def test_refuses_other_models_and_modified_densenets() -> None:
    with pytest.raises(TypeError, match="DenseNetUntangledCanonizer canonizes torchvision DenseNet models, got ResNet"):
        DenseNetUntangledCanonizer().apply(tvm.resnet18(num_classes=3))
    with pytest.raises(TypeError, match="nn.Module"):
        DenseNetUntangledCanonizer().apply("densenet")
    model = small()
    model.features.transition1.pool = nn.MaxPool2d(2)
    before = snapshot(model)
    with pytest.raises(ValueError, match="transition1.pool is MaxPool2d, expected AvgPool2d"):
        DenseNetUntangledCanonizer().apply(model)
    assert diff_states(before, snapshot(model)) == []


def test_threshold_variant_stays_default_and_both_refuse_each_other() -> None:
    model = small().eval()
    (default,) = canonizers_for(model)
    assert type(default).__name__ == "DenseNetCanonizer"
    default.apply(model)
    canonized = snapshot(model)
    with pytest.raises(RuntimeError, match="already canonized by DenseNetCanonizer"):
        DenseNetUntangledCanonizer().apply(model)
    assert diff_states(canonized, snapshot(model)) == []
    default.remove()
    component = xai_plugins.describe("canonizer", "densenet_untangled")
    assert component.load() is DenseNetUntangledCanonizer
    assert component.model_types == ("torchvision.models.DenseNet",)
    assert component.extra["architecture"] == "densenet" and component.extra["variant"] == "untangled"


# -- conservation with Zennit -----------------------------------------------------------------------------------

def _ratio(model: nn.Module, size: int, canonizers: list) -> float:
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        output = model(x)
    target = output.argmax(1)
    start = torch.zeros_like(output)
    start[0, target] = 1.0
    with Gradient(model, EpsilonPlusFlat(zero_params="bias", canonizers=canonizers)) as attributor:
        _, relevance = attributor(x, start * output)
    assert torch.isfinite(relevance).all()
    return (relevance.sum() / output[0, target]).item()


def test_conservation_zennit() -> None:
    """EpsilonPlusFlat(zero_params='bias'), relevance started at one-hot × output, 48×48, DenseNet-121.

    Measured (2026-11-22): initial statistics 0.9999965; randomised (calibrate_batchnorm, seed 1) 0.9999996 with
    the adapter's rules (``for_zennit``: ThresholdReLU → pass-through), 0.99998 with the bare canonizer in the composite
    (the stem's threshold ReLUs then drop the relevance of clamped inputs). Bounds: 1 ± 0.01 for initial
    statistics, 1 ± 1e-3 for the randomised ones.
    """
    pytest.importorskip("zennit")
    from xai_plugins_zennit.canonizers import for_zennit

    torch.manual_seed(0)
    model = tvm.densenet121(num_classes=10).eval()
    ratio = _ratio(model, 48, [for_zennit(DenseNetUntangledCanonizer())])
    assert abs(ratio - 1) <= 0.01, f"initial statistics: relevance sum / logit = {ratio:.5f}"

    model = calibrate_batchnorm(model, size=48, seed=1)
    before = snapshot(model)
    ratio = _ratio(model, 48, [for_zennit(DenseNetUntangledCanonizer())])
    assert abs(ratio - 1) <= 1e-3, f"randomised statistics: relevance sum / logit = {ratio:.5f}"
    bare = _ratio(model, 48, [DenseNetUntangledCanonizer()])  # the core canonizer works in a composite as it is
    assert abs(bare - 1) <= 1e-3, f"bare canonizer: relevance sum / logit = {bare:.5f}"
    assert diff_states(before, snapshot(model)) == []


def test_captum_lrp_inside_canonized() -> None:
    """The Captum adapter accepts the canonizer explicitly: LRP conserves and the model is restored."""
    pytest.importorskip("captum")
    from captum.attr import LRP

    from xai_plugins_captum import canonized

    torch.manual_seed(0)
    model = calibrate_batchnorm(small(blocks=(2, 2, 2)), size=32, seed=0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        logit = model(x)[0, 2]
    before = snapshot(model)
    with canonized(model, canonizers=[DenseNetUntangledCanonizer()]):
        _, delta = LRP(model).attribute(x.clone().requires_grad_(), target=2, return_convergence_delta=True)
    assert abs(delta.item()) <= 1e-3 * abs(logit.item())
    assert diff_states(before, snapshot(model)) == []
