"""canonizers_for and the plugin registration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xai_plugins
from xai_plugins.canonizers import Canonizer, CanonizerConflictWarning, canonizers_for
from xai_plugins.canonizers.plugin import PAPER
from xai_plugins.registry import Registry

tvm = pytest.importorskip("torchvision.models")

ARCHITECTURES = ("vgg", "resnet", "densenet", "efficientnet", "mobilenet_v2", "mobilenet_v3", "regnet",
                 "relation_network")


def test_unsupported_model_error_lists_families_and_how_to_register(only_builtin_canonizers) -> None:
    with pytest.raises(ValueError) as info:
        canonizers_for(nn.Sequential(nn.Conv2d(3, 3, 1), nn.GroupNorm(1, 3)).eval())  # no graph canonization
    message = str(info.value)
    assert message.startswith("no canonizer is known for torch.nn.modules.container.Sequential or any of its "
                              "submodules")
    for label in ("VGG", "ResNet, ResNeXt, Wide ResNet", "DenseNet", "EfficientNet B0-B7 and V2", "MobileNetV2",
                  "MobileNetV3", "RegNet", "Relation Network"):
        assert label in message
    assert "xai_register_canonizers" in message and "model_types=" in message and "MergeBatchNorm()" in message
    with pytest.raises(TypeError, match="expects a torch.nn.Module, got str"):
        canonizers_for("resnet18")


def test_subclass_of_a_supported_family_is_matched() -> None:
    class MyResNet(tvm.ResNet):
        pass

    from torchvision.models.resnet import BasicBlock

    model = MyResNet(BasicBlock, [1, 1, 1, 1], num_classes=3)
    assert type(canonizers_for(model)[0]).__name__ == "ResNetCanonizer"


def test_registered_third_party_canonizer_is_picked_by_model_type(monkeypatch) -> None:
    class Tiny(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    class TinyCanonizer(Canonizer):
        def canonize(self, model: nn.Module) -> None:
            self.claim(model)

    class Plugin:
        @xai_plugins.hookimpl
        def xai_register_canonizers(self, register) -> None:
            register("tiny", TinyCanonizer, summary="tiny", paper="me", model_types=(f"{__name__}.Tiny",))

    Tiny.__qualname__ = "Tiny"
    registry = Registry()
    registry.register_plugin(Plugin(), "tiny_plugin")
    monkeypatch.setattr("xai_plugins.registry._registry", registry)
    assert isinstance(canonizers_for(Tiny())[0], TinyCanonizer)


def test_every_canonizer_is_registered_with_metadata(only_builtin_canonizers) -> None:
    components = {c.name: c for c in xai_plugins.list_components("canonizer") if c.plugin == "canonizers"}
    for name in (*ARCHITECTURES, "merge_batchnorm", "merge_batchnorm_preceding", "merge_batchnorm_following"):
        component = components[name]
        assert component.paper == PAPER and component.summary and component.extra["family"] == "canonizers"
        assert isinstance(component.target, str)
        canonizer = component.load()()
        assert callable(canonizer.apply) and callable(canonizer.remove) and callable(canonizer.copy)
    for name in ARCHITECTURES:
        assert components[name].model_types
    assert xai_plugins.describe("model", "relation_network").plugin == "canonizers"


def test_plugin_module_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = ("import sys, xai_plugins.canonizers.plugin, xai_plugins.canonizers; "
            "print(any(m in sys.modules for m in ('torchvision', 'zennit', 'captum', 'matplotlib')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def _registry_with(monkeypatch: pytest.MonkeyPatch, *plugins: tuple[str, object]) -> None:
    from xai_plugins.canonizers import plugin

    registry = Registry()
    registry.register_plugin(plugin, "canonizers")
    for name, instance in plugins:
        registry.register_plugin(instance, name)
    monkeypatch.setattr("xai_plugins.registry._registry", registry)


class _Claiming(Canonizer):
    def canonize(self, model: nn.Module) -> None:
        self.claim(model)


def _plugin(name: str, model_types: tuple[str, ...]) -> object:
    class Plugin:
        @xai_plugins.hookimpl
        def xai_register_canonizers(self, register) -> None:
            register(name, _Claiming, summary=name, paper="me", model_types=model_types)

    return Plugin()


class Tiny(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Vision(nn.Module):
    """Stands in for a ViT: a model no canonizer knows (its LayerNorm also stops the graph canonizer)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x))


@pytest.mark.parametrize("declared", ["torch.nn.Module", "torch.nn.Sequential", "torch.nn.modules.module.Module",
                                      "torch.nn.ModuleList"])
def test_container_model_types_never_capture_selection(monkeypatch, declared: str) -> None:
    _registry_with(monkeypatch, ("greedy_plugin", _plugin("greedy", (declared,))))
    with pytest.raises(ValueError) as info:
        canonizers_for(Vision())
    assert f"'greedy' of plugin 'greedy_plugin' declares {declared}" in str(info.value)
    assert "Ignored as too generic" in str(info.value)
    (plain,) = canonizers_for(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)))
    assert type(plain).__name__ == "GraphCanonizer"  # the graph canonizer, never the greedy plugin's
    wrapped = canonizers_for(nn.Sequential(nn.Identity(), tvm.resnet18(num_classes=3)))
    assert [type(c.canonizer).__name__ for c in wrapped] == ["ResNetCanonizer"]


def test_specific_subclass_of_a_container_is_still_matched(monkeypatch) -> None:
    class Stack(nn.Sequential):
        pass

    Stack.__qualname__ = "Stack"
    _registry_with(monkeypatch, ("stack_plugin", _plugin("stack", (f"{__name__}.Stack",))))
    assert isinstance(canonizers_for(Stack(nn.Identity()))[0], _Claiming)


def test_two_plugins_for_one_type_warn_and_pick_deterministically(monkeypatch) -> None:
    Tiny.__qualname__ = "Tiny"
    declared = (f"{__name__}.Tiny",)
    for order in [("b_plugin", "a_plugin"), ("a_plugin", "b_plugin")]:
        _registry_with(monkeypatch, *[(name, _plugin(f"tiny_{name[0]}", declared)) for name in order])
        with pytest.warns(CanonizerConflictWarning) as caught:
            chosen = canonizers_for(Tiny())
        message = str(caught[0].message)
        assert "'tiny_a' of plugin 'a_plugin', 'tiny_b' of plugin 'b_plugin'" in message
        assert "canonizers_for picks 'tiny_a'" in message
        assert isinstance(chosen[0], _Claiming)


def test_builtin_wins_over_a_plugin_declaring_the_same_family(monkeypatch) -> None:
    _registry_with(monkeypatch, ("resnet_plugin", _plugin("my_resnet", ("torchvision.models.ResNet",))))
    with pytest.warns(CanonizerConflictWarning, match="'resnet' of plugin 'canonizers', 'my_resnet' of plugin "
                                                      "'resnet_plugin'; canonizers_for picks 'resnet'"):
        chosen = canonizers_for(tvm.resnet18(num_classes=3))
    assert type(chosen[0]).__name__ == "ResNetCanonizer"


def test_variant_registered_for_a_family_does_not_conflict(only_builtin_canonizers) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", CanonizerConflictWarning)
        chosen = canonizers_for(tvm.DenseNet(growth_rate=8, block_config=(1, 1), num_init_features=8))
    assert type(chosen[0]).__name__ == "DenseNetCanonizer"


def test_families_derive_from_the_one_table(only_builtin_canonizers) -> None:
    from xai_plugins.canonizers import FAMILIES
    from xai_plugins.canonizers.families import BUILTIN_CANONIZERS

    table = {entry.name: entry for entry in BUILTIN_CANONIZERS}
    assert [family.name for family in FAMILIES] == list(ARCHITECTURES)
    registered = {c.name: c for c in xai_plugins.list_components("canonizer") if c.plugin == "canonizers"}
    assert set(registered) == set(table)
    for name, entry in table.items():
        component = registered[name]
        assert component.target == entry.target and component.summary == entry.summary
        assert component.model_types == ((entry.model_type,) if entry.model_type else ())
    for family in FAMILIES:
        assert not hasattr(family.load(), "family")  # no second copy of the table on the classes


def test_a_builtin_name_is_registered_once() -> None:
    from xai_plugins.canonizers.families import BUILTIN_CANONIZERS

    names = [entry.name for entry in BUILTIN_CANONIZERS]
    assert len(names) == len(set(names))
    for entry in BUILTIN_CANONIZERS:
        assert entry.load().__name__ == entry.target.partition(":")[2]
