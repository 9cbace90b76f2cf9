"""Captum adapter: ``canonized(model)`` makes Captum's LRP and LayerLRP conservative on torchvision models and
restores the model exactly afterwards."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.support.batchnorm import calibrate_batchnorm
from tests.support.canonizers import assert_same
from xai_plugins.conformance.state import snapshot

pytest.importorskip("captum")
tvm = pytest.importorskip("torchvision.models")
from captum.attr import LRP, LayerLRP  # noqa: E402
from captum.attr._utils.lrp_rules import EpsilonRule  # noqa: E402

from xai_plugins_captum import CANONIZED_RULES, canonized  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

SIZE = 32
DELTA_TOLERANCE = 0.01
"""|convergence delta| / |logit| allowed inside ``canonized`` (the issue's target)."""


def full_snapshot(model: nn.Module) -> tuple:
    """The conformance snapshot plus what Captum touches beyond it: state-dict pre-hooks, and whether
    ``rule``/``activations`` are set."""
    captum = [(name, dict(m._state_dict_pre_hooks), "rule" in m.__dict__, "activations" in m.__dict__)
              for name, m in model.named_modules()]
    return snapshot(model), captum


def assert_same_full(before: tuple, after: tuple) -> None:
    assert_same(before[0], after[0])
    assert before[1] == after[1]


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return calibrate_batchnorm(getattr(tvm, name)(weights=None), SIZE)


def image(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    return build("resnet18")


@pytest.mark.parametrize(
    "name",
    ["resnet18", "densenet121", "efficientnet_b0", "efficientnet_v2_s", "mobilenet_v2", "mobilenet_v3_small",
     "regnet_y_400mf"],
)
def test_lrp_conserves_inside_canonized_and_model_is_restored(name: str) -> None:
    model = build(name)
    x = image()
    with torch.no_grad():
        output = model(x)
    target = int(output.argmax())
    logit = output[0, target]
    before = full_snapshot(model)

    with canonized(model) as canonical:
        assert canonical is model
        attribution, delta = LRP(model).attribute(x, target=target, return_convergence_delta=True)

    assert attribution.shape == x.shape
    assert torch.isfinite(attribution).all()
    assert abs(float(delta.detach())) <= DELTA_TOLERANCE * abs(float(logit))
    assert_same_full(before, full_snapshot(model))
    with torch.no_grad():
        assert torch.equal(model(x), output)


def test_stock_captum_lrp_fails_on_these_models(resnet18: nn.Module) -> None:
    x = image()
    with torch.no_grad():
        output = resnet18(x)
    target = int(output.argmax())
    _, delta = LRP(resnet18).attribute(x, target=target, return_convergence_delta=True)
    assert abs(float(delta.detach())) > 10 * abs(float(output[0, target]))
    with pytest.raises(TypeError, match="SiLU"):
        LRP(build("efficientnet_b0")).attribute(x, target=0)


def test_repeated_calls_in_one_block_agree(resnet18: nn.Module) -> None:
    x = image(2)
    with canonized(resnet18):
        first = LRP(resnet18).attribute(x, target=3)
        second = LRP(resnet18).attribute(x, target=3)
    assert torch.equal(first, second)


def test_layer_lrp_on_the_stem_conserves(resnet18: nn.Module) -> None:
    x = image(3)
    with torch.no_grad():
        logit = resnet18(x)[0, 5]
    before = full_snapshot(resnet18)
    with canonized(resnet18):
        relevance, delta = LayerLRP(resnet18, resnet18.conv1).attribute(x, target=5, return_convergence_delta=True)
    assert relevance.shape == (1, 64, SIZE // 2, SIZE // 2)
    assert torch.isfinite(relevance).all()
    assert abs(float(relevance.detach().sum()) - float(logit)) <= DELTA_TOLERANCE * abs(float(logit))
    assert abs(float(delta.detach())) <= DELTA_TOLERANCE * abs(float(logit))
    assert_same_full(before, full_snapshot(resnet18))


@pytest.mark.parametrize("graph", [False, True], ids=["family", "graph"])
def test_layer_lrp_on_a_stage_reports_its_output_and_input_relevance(resnet18: nn.Module, graph: bool) -> None:
    """``LayerLRP(model, model.layer4)``, a module with children, under the family and the graph canonizer: the
    relevance at its output is the tensor the leaf it feeds receives (``avgpool``'s input) and sums to the logit;
    the relevance at its input sums to the logit too (every path passes the stage); the model is restored."""
    from xai_plugins.canonizers.graph import GraphCanonizer

    x = image(4)
    with torch.no_grad():
        logit = float(resnet18(x)[0, 2])
    before = full_snapshot(resnet18)
    with canonized(resnet18, canonizers=[GraphCanonizer()] if graph else None):
        output = LayerLRP(resnet18, resnet18.layer4).attribute(x, target=2)
        fed = LayerLRP(resnet18, resnet18.avgpool).attribute(x, target=2, attribute_to_layer_input=True)
        entering = LayerLRP(resnet18, resnet18.layer4).attribute(x, target=2, attribute_to_layer_input=True)
    assert output.shape == (1, 512, 1, 1)  # layer4's output at 32 x 32; assert_close also compares the shapes
    torch.testing.assert_close(output, fed, rtol=1e-6, atol=1e-6 * float(fed.abs().max()))
    for relevance in (output, entering):
        assert abs(float(relevance.detach().sum()) - logit) <= DELTA_TOLERANCE * abs(logit)
    assert_same_full(before, full_snapshot(resnet18))


class _WithUnusedBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, 2)
        self.unused = nn.Sequential(nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_layer_lrp_on_a_module_that_was_not_called_names_it() -> None:
    model = _WithUnusedBlock().eval()
    with canonized(model, canonizers=[]):
        with pytest.raises(RuntimeError, match="module 'unused' was not called"):
            LayerLRP(model, model.unused).attribute(image(), target=0)


def test_model_is_restored_when_the_block_raises(resnet18: nn.Module) -> None:
    before = full_snapshot(resnet18)
    with pytest.raises(RuntimeError, match="inside the block"):
        with canonized(resnet18):
            LRP(resnet18).attribute(image(), target=0)
            raise RuntimeError("inside the block")
    assert_same_full(before, full_snapshot(resnet18))


def test_user_rules_are_kept_and_put_back(resnet18: nn.Module) -> None:
    own = EpsilonRule(epsilon=0.25)
    resnet18.fc.rule = own
    try:
        with canonized(resnet18):
            assert resnet18.fc.rule is own
            LRP(resnet18).attribute(image(), target=0)
        assert resnet18.fc.__dict__["rule"] is own
    finally:
        del resnet18.fc.rule


def test_unsupported_leaf_is_named_and_model_untouched() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Softmax(dim=1))
    before = full_snapshot(model)
    with pytest.raises(TypeError) as error:
        with canonized(model, canonizers=[]):
            pass
    message = str(error.value)
    assert "1 (torch.nn.modules.activation.Softmax)" in message
    assert "CANONIZED_RULES" in message and "module.rule" in message
    assert_same_full(before, full_snapshot(model))


def test_failing_canonizer_undoes_the_ones_before() -> None:
    class Broken:
        def apply(self, model: nn.Module) -> list:
            raise RuntimeError("broken canonizer")

        def remove(self) -> None:
            raise AssertionError("a canonizer that failed to apply must not be removed")

    model = build("resnet18")
    before = full_snapshot(model)
    from xai_plugins.canonizers import canonizers_for

    with pytest.raises(RuntimeError, match="broken canonizer"):
        with canonized(model, canonizers=[*canonizers_for(model), Broken()]):
            pass
    assert_same_full(before, full_snapshot(model))


class Unknown(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.norm = nn.LayerNorm(2)  # the graph canonizer cannot canonize it either

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(x))


def test_unknown_model_gets_the_core_error() -> None:
    with pytest.raises(ValueError, match="no canonizer is known for tests.canonizers.test_captum_canonized.Unknown"):
        with canonized(Unknown()):
            pass
    with pytest.raises(TypeError, match="expects a torch.nn.Module"):
        with canonized("resnet18"):  # type: ignore[arg-type]
            pass


def test_rules_cover_every_explicit_module() -> None:
    from xai_plugins.canonizers import modules

    for cls in (modules.Sum, modules.Concat, modules.Gate, modules.ThresholdReLU, modules.PositionalBiasConv2d):
        assert any(base in CANONIZED_RULES for base in cls.__mro__), cls
