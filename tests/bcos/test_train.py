"""Training helpers: the B-cos CNN reaches the accuracy of the same standard CNN on digits."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import Dataset

from xai_plugins.bcos.train import (
    PAPER_RECIPE,
    Recipe,
    _loss_fn,
    _lr_factor,
    bcosify_finetune,
    compare_on_digits,
    fit,
    train_digits,
)


def test_bcos_cnn_within_two_points_of_standard_cnn_on_digits():
    results = compare_on_digits()
    bcos, standard = results["bcos"].test_accuracy, results["standard"].test_accuracy
    assert standard > 95, f"the standard CNN should learn digits, got {standard:.2f}%"
    assert bcos >= standard - 2, f"B-cos {bcos:.2f}% vs standard {standard:.2f}%"


class TinyStripes(Dataset):
    """Any torch Dataset works: 3×12×12 images in [0, 1], class = whether the stripe is horizontal."""

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=generator)
        self.images = torch.rand(n, 3, 12, 12, generator=generator) * 0.2
        for i, label in enumerate(self.labels):
            row = int(torch.randint(2, 10, (1,), generator=generator))
            if label:
                self.images[i, :, row] = 1.0
            else:
                self.images[i, :, :, row] = 1.0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


def test_train_digits_accepts_any_dataset_and_is_seeded():
    from xai_plugins.bcos.simple_cnn import BcosSimpleCNN

    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = BcosSimpleCNN(num_classes=2, widths=(8, 16), logit_temperature=0.1)
        runs.append(train_digits(model, train_set=TinyStripes(96, 0), test_set=TinyStripes(48, 1), epochs=3,
                                 batch_size=16))
    assert runs[0].losses == runs[1].losses
    assert runs[0].test_accuracy == runs[1].test_accuracy >= 75
    assert not runs[0].model.training


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), classes=st.integers(2, 12), batch=st.integers(1, 6))
def test_uniform_off_label_loss_is_the_authors(seed, classes, batch):
    """BCE with off-label targets 1/C: equal to the formula, and to the bcos package's loss when installed."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=generator, dtype=torch.float64) * 3
    labels = torch.randint(0, classes, (batch,), generator=generator)
    got = _loss_fn(True, "uniform_off_bce")(logits, labels)
    targets = torch.full((batch, classes), 1.0 / classes, dtype=torch.float64)
    targets[torch.arange(batch), labels] = 1.0
    p = torch.sigmoid(logits)
    expected = -(targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    losses = pytest.importorskip("bcos.modules.losses")
    torch.testing.assert_close(got, losses.UniformOffLabelsBCEWithLogitsLoss()(logits, labels), rtol=1e-12,
                               atol=1e-14)


@settings(max_examples=30, deadline=None)
@given(epochs=st.integers(1, 12), steps=st.integers(1, 9), warmup=st.integers(0, 3))
def test_per_epoch_cosine_schedule(epochs, steps, warmup):
    """Constant within each epoch; linear warm-up from 1 %, then half a cosine over the remaining epochs."""
    recipe = Recipe(schedule="epoch", warmup_epochs=warmup)
    for epoch in range(epochs):
        factors = {_lr_factor(recipe, epoch * steps + i, steps, epochs) for i in range(steps)}
        assert len(factors) == 1
        (factor,) = factors
        if epoch < warmup:
            assert factor == pytest.approx(0.01 + 0.99 * epoch / warmup)
        else:
            assert factor == pytest.approx(0.5 * (1 + math.cos(math.pi * (epoch - warmup) / max(1, epochs - warmup))))
    assert _lr_factor(recipe, 0, steps, epochs) == (0.01 if warmup else 1.0)


def test_paper_recipe_trains_seeded_and_clips():
    """Uniform off-label BCE, per-epoch cosine, AGC and augmentation together: seeded runs are identical, and
    the clipping is active (a huge learning-rate-free gradient is clipped to clip_factor x the weight norm)."""
    from xai_plugins.bcos.simple_cnn import BcosSimpleCNN

    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = BcosSimpleCNN(num_classes=2, widths=(8, 16), logit_temperature=0.1)
        runs.append(fit(model, TinyStripes(64, 0), epochs=2, lr=3e-3, batch_size=16, recipe=PAPER_RECIPE))
    assert runs[0] == runs[1] and all(math.isfinite(v) for v in runs[0])
    layer = torch.nn.Linear(4, 4)
    layer.weight.grad = torch.full_like(layer.weight, 1e6)
    from timm.utils.agc import adaptive_clip_grad

    adaptive_clip_grad([layer.weight], clip_factor=0.01)
    rows = torch.linalg.vector_norm(layer.weight.detach(), dim=1).clamp_min(1e-3)
    assert (torch.linalg.vector_norm(layer.weight.grad, dim=1) <= 0.01 * rows * (1 + 1e-5)).all()


def test_unknown_recipe_is_refused():
    from xai_plugins.bcos.simple_cnn import BcosSimpleCNN

    with pytest.raises(ValueError, match="recipe must be one of 'paper', 'ours'"):
        bcosify_finetune(BcosSimpleCNN(num_classes=2), TinyStripes(8, 0), recipe="theirs")
