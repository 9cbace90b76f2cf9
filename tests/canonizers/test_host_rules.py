"""Issue 22's extension point: a canonizer that adds its own module type declares that type's Zennit and Captum
rules (``host_rules``); both adapters read them, and ``missing_rules`` (the conformance check) finds every added
type without a rule in a host."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from tests.support.batchnorm import BatchNormDraw, apply
from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.host_rules import host_rules

tvm = pytest.importorskip("torchvision.models")
pytest.importorskip("zennit")
pytest.importorskip("captum")
from captum.attr import LRP  # noqa: E402
from captum.attr._utils.lrp_rules import EpsilonRule  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import EpsilonPlusFlat  # noqa: E402

import xai_plugins_captum  # noqa: E402
import xai_plugins_zennit  # noqa: E402
from xai_plugins_zennit.rules import SumRule  # noqa: E402


class TwoPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.relu, self.pool, self.flat, self.fc = nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flat(self.pool(self.relu(self.a(x) + self.b(x)))))


class PluginAdd(nn.Module):
    """A plugin's own explicit module (not the core's Sum)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


def _two_path_forward(self: TwoPath, x: Tensor) -> Tensor:
    return self.fc(self.flat(self.pool(self.relu(self.xai_add(self.a(x), self.b(x))))))


class BareCanonizer(Canonizer):
    def canonize(self, model: nn.Module) -> None:
        self.set_child(model, "xai_add", PluginAdd())
        self.override_forward(model, _two_path_forward)


class DeclaringCanonizer(BareCanonizer):
    host_rules = {
        "zennit": {PluginAdd: lambda module: SumRule()},
        "captum": {"tests.canonizers.test_host_rules:PluginAdd": EpsilonRule},
    }


def _model() -> TwoPath:
    torch.manual_seed(0)
    model = TwoPath().eval()
    with torch.no_grad():
        model.a.bias.zero_()
        model.b.bias.zero_()
        model.fc.bias.zero_()
    return model


def test_missing_rules_names_the_undeclared_module_in_both_hosts() -> None:
    name = "tests.canonizers.test_host_rules.PluginAdd"
    assert xai_plugins_zennit.missing_rules(BareCanonizer(), _model()) == [name]
    assert xai_plugins_captum.missing_rules(BareCanonizer(), _model()) == [name]
    assert xai_plugins_zennit.missing_rules(DeclaringCanonizer(), _model()) == []
    assert xai_plugins_captum.missing_rules(DeclaringCanonizer(), _model()) == []


def test_canonized_refuses_an_undeclared_module_and_says_how_to_declare_it() -> None:
    model = _model()
    with pytest.raises(TypeError, match="host_rules"), xai_plugins_captum.canonized(model, [BareCanonizer()]):
        pass
    assert "xai_add" not in model._modules


def test_declared_rules_conserve_in_zennit_and_captum() -> None:
    model = _model()
    x = torch.rand(1, 3, 8, 8) * 100  # logit of order 1: epsilon rules (ε = 1e-6) then lose below 1e-5
    with torch.no_grad():
        logit = model(x)[0, 1]
    composite = EpsilonPlusFlat(zero_params="bias", canonizers=[xai_plugins_zennit.for_zennit(DeclaringCanonizer())])
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, torch.eye(3)[[1]] * logit)
    assert abs(float(relevance.sum() / logit) - 1) <= 1e-4
    with xai_plugins_captum.canonized(model, [DeclaringCanonizer()]):
        attribution = LRP(model).attribute(x, target=1)
    assert abs(float(attribution.sum() / logit) - 1) <= 1e-4


def test_host_rules_refuses_malformed_declarations() -> None:
    class Unknown(BareCanonizer):
        host_rules = {"tensorflow": {}}

    class NotADict(BareCanonizer):
        host_rules = [("zennit", {})]

    with pytest.raises(ValueError, match="unknown hosts"):
        host_rules(Unknown(), "zennit")
    with pytest.raises(TypeError, match="must be a dict"):
        host_rules(NotADict(), "captum")


FAMILIES = {
    "resnet18": lambda: tvm.resnet18(num_classes=10),
    "densenet": lambda: tvm.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, num_classes=10),
    "efficientnet_b0": lambda: tvm.efficientnet_b0(num_classes=10),
    "mobilenet_v2": lambda: tvm.mobilenet_v2(num_classes=10, width_mult=0.5),
    "mobilenet_v3_small": lambda: tvm.mobilenet_v3_small(num_classes=10),
    "regnet_y_400mf": lambda: tvm.regnet_y_400mf(num_classes=10),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_builtin_canonizers_have_a_rule_for_every_module_they_add(name: str) -> None:
    from xai_plugins.canonizers import canonizers_for

    model = apply(FAMILIES[name](), BatchNormDraw(seed=2), input_shape=(2, 3, 32, 32))
    for canonizer in canonizers_for(model):
        assert xai_plugins_zennit.missing_rules(canonizer, model) == []
        assert xai_plugins_captum.missing_rules(canonizer, model) == []


def test_host_extension_entry_is_loaded_once_its_host_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core imports an adapter from the entry-point group xai_plugins.host_extensions only once the host it is
    named after is imported, so a core canonizer handed to Zennit gets its rules without importing the adapter."""
    from xai_plugins.canonizers import base

    loaded: list[str] = []

    class Entry:
        def __init__(self, name: str) -> None:
            self.name = name

        def load(self) -> None:
            loaded.append(self.name)

    monkeypatch.setattr(base, "_host_entries", [Entry("zennit"), Entry("a_host_nobody_imported")])
    base._load_host_extensions()
    base._load_host_extensions()
    assert loaded == ["zennit"]
    assert [entry.name for entry in base._host_entries] == ["a_host_nobody_imported"]
