"""canonizers_for and the plugin registration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xai_plugins
from xai_plugins.canonizers import Canonizer, canonizers_for
from xai_plugins.canonizers.plugin import PAPER
from xai_plugins.registry import Registry

tvm = pytest.importorskip("torchvision.models")

ARCHITECTURES = ("vgg", "resnet", "densenet", "efficientnet", "mobilenet_v2", "mobilenet_v3", "regnet",
                 "relation_network")


def test_unsupported_model_error_lists_families_and_how_to_register(only_builtin_canonizers) -> None:
    with pytest.raises(ValueError) as info:
        canonizers_for(nn.Sequential(nn.Conv2d(3, 3, 1), nn.GroupNorm(1, 3)).eval())  # no graph canonization
    message = str(info.value)
    assert message.startswith("no canonizer is known for torch.nn.modules.container.Sequential")
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
