"""canonizers_for and the built-in plugin registration.

Third-party canonizer plugins, installed through their entry points: tests/core/test_canonizer_plugins.py.
"""

from __future__ import annotations

import pytest
from torch import nn

import xai_plugins
from xai_plugins.canonizers import CanonizerConflictWarning, canonizers_for
from xai_plugins.canonizers.plugin import PAPER

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
