"""Apply/remove life cycle: atomic apply, bitwise restore, repeated apply/remove, conflicts, copy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.canonizers.helpers import assert_same, randomize_batchnorm, snapshot
from xai_plugins.canonizers import canonizers_for
from xai_plugins.canonizers.base import Canonizer
from xai_plugins.canonizers.batchnorm import MergeBatchNorm, merge_preceding

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


def test_reserved_room_is_disjoint_handed_out_once_and_only_without_autograd() -> None:
    """``reserve``/``new_like`` give each reserved tensor its own slice of one block, once per apply."""
    editor = Canonizer()
    first, second = torch.randn(4, 3), torch.randn(2, 5, 1, 1)
    editor.reserve([first, second])
    with torch.no_grad():
        room_first, room_second = editor.new_like(first), editor.new_like(second)
        assert editor.new_like(first) is None and editor.new_like(torch.randn(3)) is None
    assert room_first.shape == first.shape and room_second.shape == second.shape
    assert room_first.untyped_storage().data_ptr() == room_second.untyped_storage().data_ptr()
    start_first, start_second = room_first.data_ptr(), room_second.data_ptr()
    assert start_second >= start_first + first.numel() * first.element_size()
    assert start_first % 64 == 0 and start_second % 64 == 0
    editor.reserve([first])
    assert editor.new_like(first) is None  # autograd is recording: out= would not be differentiable


def _storages(model: nn.Module) -> set[int]:
    """Where the weights live (merged weights share the reserved block; biases are allocated one by one)."""
    return {p.untyped_storage().data_ptr() for name, p in model.named_parameters() if name.endswith("weight")}


def test_spare_block_is_reused_only_when_no_tensor_uses_it() -> None:
    """The merged weights of the next apply go into the block the last one used (no page faults), unless a
    merged weight is still referenced after remove: then that weight keeps its values and a new block is used."""
    from xai_plugins.canonizers import base, release_spare_blocks

    torch.manual_seed(0)
    model = randomize_batchnorm(tvm.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16,
                                             bn_size=2, num_classes=10), seed=3)
    own = _storages(model)
    canonizer = canonizers_for(model)[0]
    canonizer.apply(model)
    first = _storages(model) - own
    canonizer.remove()
    canonizer.apply(model)
    assert len(first) == 1 and _storages(model) - own == first  # the merged weights: the same block again
    kept = model.features.denseblock1.denselayer1.conv1.weight
    values = kept.detach().clone()
    canonizer.remove()
    canonizer.apply(model)
    assert not (_storages(model) - own) & first  # the old block is still used by `kept`: a new one
    canonizer.remove()
    assert torch.equal(kept, values)
    release_spare_blocks()
    assert not base._SPARE
