"""The ground-truth dataset: deterministic, any size, masks where the digit is, clear errors."""

from __future__ import annotations

import pytest
import torch

from xai_plugins.evaluation.dataset import DigitsOnCanvas, _split_indices


def test_items_are_deterministic_and_independent_of_length():
    a = DigitsOnCanvas(10, seed=3)
    b = DigitsOnCanvas(50, seed=3)
    for i in (0, 7, 9):
        xa, ya, ma = a[i]
        xb, yb, mb = b[i]
        assert torch.equal(xa, xb) and ya == yb and torch.equal(ma, mb)
    assert not torch.equal(a[0][0], DigitsOnCanvas(10, seed=4)[0][0])


def test_shapes_ranges_and_mask_on_the_digit():
    data = DigitsOnCanvas(16, size=48, scales=(2, 3))
    x, y, m = data.tensors()
    assert x.shape == (16, 3, 48, 48) and m.shape == (16, 1, 48, 48) and y.shape == (16,)
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    assert set(y.tolist()) <= set(range(10))
    side = m.flatten(1).sum(1).sqrt()
    assert all(float(s) in (16.0, 24.0) for s in side)  # the box of an 8x8 digit upscaled 2x or 3x
    # the digit is drawn in the box: the box is brighter than the rest of the canvas on average
    inside = (x * m).sum((1, 2, 3)) / (3 * m.sum((1, 2, 3)))
    outside = (x * (1 - m)).sum((1, 2, 3)) / (3 * (1 - m).sum((1, 2, 3)))
    assert bool((inside > outside).all())


def test_stroke_masks_lie_inside_box_masks():
    box = DigitsOnCanvas(8, mask="box").tensors()[2]
    stroke = DigitsOnCanvas(8, mask="stroke").tensors()[2]
    assert bool((stroke <= box).all()) and 0 < float(stroke.sum()) < float(box.sum())


def test_train_and_test_use_disjoint_digits():
    train, test = set(_split_indices("train").tolist()), set(_split_indices("test").tolist())
    assert not train & test and len(train) + len(test) == 1797


def test_dataloader_batches():
    loader = torch.utils.data.DataLoader(DigitsOnCanvas(10), batch_size=4)
    x, y, m = next(iter(loader))
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,) and m.shape == (4, 1, 32, 32)


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "val"}, "split must be one of"),
    ({"mask": "blob"}, "mask must be 'box' or 'stroke'"),
    ({"size": 16}, r"must be >= 1 and fit the canvas: 8 \* max\(scales\) <= size=16"),
    ({"length": -1}, "length must be >= 0"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DigitsOnCanvas(**{"length": 4, **kwargs})


def test_index_out_of_range():
    with pytest.raises(IndexError, match="out of range"):
        DigitsOnCanvas(3)[3]
