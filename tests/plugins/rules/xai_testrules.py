"""A canonizer plugin whose canonizer puts a module type of its own (``PluginAdd``) into the model, for issue 22's
LRP-rule extension point. ``rules_declaring`` declares that type's Zennit and Captum rules (``host_rules``, as
import strings: the plugin imports no host); ``rules_bare`` declares none, which the conformance suite's
``host_rules`` check must name."""

from torch import Tensor, nn

import xai_plugins
from xai_plugins.canonizers import Canonizer

PAPER = "none (test plugin)"


class TwoPath(nn.Module):
    """Two convolutions whose outputs ``forward`` adds with ``+``: LRP needs that sum made explicit."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.relu, self.pool, self.flat, self.fc = nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flat(self.pool(self.relu(self.a(x) + self.b(x)))))


class BareTwoPath(TwoPath):
    """The same model under the type the bare canonizer declares."""


class PluginAdd(nn.Module):
    """The plugin's own explicit sum."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


def _explicit_forward(self: TwoPath, x: Tensor) -> Tensor:
    return self.fc(self.flat(self.pool(self.relu(self.plugin_add(self.a(x), self.b(x))))))


class BareCanonizer(Canonizer):
    """Makes the sum explicit and declares no rule for it."""

    def canonize(self, model: nn.Module) -> None:
        self.set_child(model, "plugin_add", PluginAdd())
        self.override_forward(model, _explicit_forward)


class DeclaringCanonizer(BareCanonizer):
    """The same canonization, with the rules of ``PluginAdd`` in both hosts."""

    host_rules = {
        "zennit": {"xai_testrules:PluginAdd": "xai_testrules:zennit_sum_rule"},
        "captum": {"xai_testrules:PluginAdd": "captum.attr._utils.lrp_rules:EpsilonRule"},
    }


def zennit_sum_rule(module: nn.Module):
    """Zennit rule factory for ``PluginAdd``: relevance split in proportion to the summands."""
    from xai_plugins_zennit.rules import SumRule

    return SumRule()


def two_path(seed: int = 0) -> TwoPath:
    """The example model: random convolutions, zero biases (so a bias-free LRP composite conserves exactly)."""
    return _bias_free(TwoPath, seed)


def bare_two_path(seed: int = 0) -> BareTwoPath:
    return _bias_free(BareTwoPath, seed)


def _bias_free(cls, seed: int):
    import torch

    torch.manual_seed(seed)
    model = cls()
    with torch.no_grad():
        for layer in (model.a, model.b, model.fc):
            layer.bias.zero_()
    return model.eval()


@xai_plugins.hookimpl
def xai_register_canonizers(register):
    register("rules_declaring", "xai_testrules:DeclaringCanonizer", summary="explicit sum with its rules",
             paper=PAPER, model_types=("xai_testrules.TwoPath",), example_model="xai_testrules:two_path",
             example_input_shape=(2, 3, 8, 8))
    register("rules_bare", "xai_testrules:BareCanonizer", summary="explicit sum without rules", paper=PAPER,
             model_types=("xai_testrules.BareTwoPath",), example_model="xai_testrules:bare_two_path",
             example_input_shape=(2, 3, 8, 8))
