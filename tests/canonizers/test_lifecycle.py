"""Apply/remove life cycle: atomic apply, bitwise restore, repeated apply/remove, conflicts, copy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.support.batchnorm import randomize_batchnorm
from tests.support.canonizers import assert_same
from xai_plugins.canonizers import canonizers_for
from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.batchnorm import MergeBatchNorm, merge_preceding
from xai_plugins.conformance.state import snapshot

tvm = pytest.importorskip("torchvision.models")


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(tvm.resnet18(num_classes=10), seed=0)


def test_failure_halfway_leaves_model_untouched() -> None:
    model = _resnet()
    model.layer3[1].bn2 = nn.BatchNorm2d(256, track_running_stats=False).eval()
    before = snapshot(model)
    canonizer = canonizers_for(model)[0]
    with pytest.raises(ValueError, match="no running statistics"):
        canonizer.apply(model)
    assert_same(before, snapshot(model))
    assert not canonizer.applied
    canonizer.remove()
    assert_same(before, snapshot(model))


def test_channel_mismatch_is_refused_atomically() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 5, 1), nn.BatchNorm2d(4)).eval()
    before = snapshot(model)

    class Wrong(Canonizer):
        def canonize(self, model: nn.Module) -> None:
            merge_preceding(self, (model, "0"), (model, "1"))
            merge_preceding(self, (model, "2"), (model, "3"))

    with pytest.raises(ValueError, match=r"BatchNorm2d\(4\) into Conv2d with 5 output channels"):
        Wrong().apply(model)
    assert_same(before, snapshot(model))


def test_apply_twice_and_remove_twice_are_safe() -> None:
    model = _resnet()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
    before = snapshot(model)
    canonizer = canonizers_for(model)[0]
    first = canonizer.apply(model)
    canonized = snapshot(model)
    second = canonizer.apply(model)
    assert first == second
    assert_same(canonized, snapshot(model))
    canonizer.remove()
    canonizer.remove()
    first[0].remove()
    assert_same(before, snapshot(model))
    with torch.no_grad():
        assert torch.equal(model(x), reference)
    canonizer.apply(model)
    canonizer.remove()
    assert_same(before, snapshot(model))


def test_second_canonizer_on_same_model_is_refused() -> None:
    model = _resnet()
    first = canonizers_for(model)[0]
    first.apply(model)
    canonized = snapshot(model)
    with pytest.raises(RuntimeError, match="already canonized by ResNetCanonizer"):
        canonizers_for(model)[0].apply(model)
    assert_same(canonized, snapshot(model))
    first.remove()


def test_one_instance_one_model_and_copy() -> None:
    model, other = _resnet(), _resnet()
    canonizer = canonizers_for(model)[0]
    canonizer.apply(model)
    with pytest.raises(RuntimeError, match="already applied to another model"):
        canonizer.apply(other)
    clone = canonizer.copy()
    assert type(clone) is type(canonizer) and not clone.applied
    clone.apply(other)
    clone.remove()
    canonizer.remove()


def test_restore_keeps_requires_grad_training_and_user_hooks() -> None:
    model = _resnet()
    model.layer1[0].conv1.weight.requires_grad_(False)
    model.layer2.train()
    handle = model.layer1[0].register_forward_hook(lambda module, inputs, output: None)
    before = snapshot(model)
    canonizer = MergeBatchNorm()
    canonizer.apply(model)
    assert model.layer1[0].conv1.weight.requires_grad is False
    canonizer.remove()
    assert_same(before, snapshot(model))
    handle.remove()


def test_wrong_model_type_is_refused() -> None:
    from xai_plugins.canonizers import DenseNetCanonizer

    model = _resnet()
    before = snapshot(model)
    with pytest.raises(TypeError, match="DenseNetCanonizer canonizes torchvision DenseNet models, got ResNet"):
        DenseNetCanonizer().apply(model)
    assert_same(before, snapshot(model))
    with pytest.raises(TypeError, match="expects a torch.nn.Module"):
        DenseNetCanonizer().apply("resnet")
