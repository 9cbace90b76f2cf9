"""Metrics: hand-made cases with known answers, and cross-checks against Quantus where it has the metric."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from xai_plugins.evaluation import metrics as M


@pytest.fixture(scope="module")
def quantus():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("quantus")


def _case():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(4, 1, 8, 8, generator=gen)
    m = torch.zeros(4, 1, 8, 8)
    m[:, :, 2:5, 1:6] = 1
    m[1] = 0
    m[1, :, 5:8, 5:8] = 1
    return a, m


def _q(quantus, cls, **kw):
    kw.setdefault("disable_warnings", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(**kw)


class LinearNet(nn.Module):
    """f(x) = w . x per class: every attribution method with a zero baseline is exact on it."""

    def __init__(self, d: int, classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(d, classes, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.linspace(-1, 1, classes * d).reshape(classes, d))

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_relevance_mass_accuracy_by_hand():
    a = torch.zeros(1, 1, 4, 4)
    a[0, 0, 0, 0] = 3.0
    a[0, 0, 3, 3] = 1.0
    a[0, 0, 1, 1] = -5.0
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, :2, :2] = 1
    assert M.relevance_mass_accuracy(a, m).item() == pytest.approx(0.75)
    assert M.relevance_mass_accuracy(a, m, positive=False).item() == pytest.approx((3 - 5) / (3 + 1 - 5))


def test_localisation_matches_quantus(quantus):
    a, m = _case()
    x = torch.zeros_like(a).numpy()
    y = np.zeros(4, dtype=int)
    kw = dict(model=None, x_batch=x, y_batch=y, a_batch=a.numpy(), s_batch=m.numpy())
    q_rma = _q(quantus, quantus.RelevanceMassAccuracy, abs=False, normalise=False)(**kw)
    q_rra = _q(quantus, quantus.RelevanceRankAccuracy, abs=False, normalise=False)(**kw)
    q_pg = _q(quantus, quantus.PointingGame, abs=False, normalise=False)(**kw)
    np.testing.assert_allclose(M.relevance_mass_accuracy(a, m).numpy(), q_rma, rtol=1e-5)
    np.testing.assert_allclose(M.relevance_rank_accuracy(a, m).numpy(), q_rra, rtol=1e-6)
    np.testing.assert_allclose(M.pointing_game(a, m).numpy(), np.asarray(q_pg, dtype=float))


def test_rank_accuracy_and_pointing_game_by_hand():
    a = torch.arange(16.0).reshape(1, 1, 4, 4)
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 3, 2:] = 1  # the two largest values
    assert M.relevance_rank_accuracy(a, m).item() == 1.0
    assert M.pointing_game(a, m).item() == 1.0
    m2 = torch.zeros(1, 1, 4, 4)
    m2[0, 0, 0, :2] = 1
    assert M.relevance_rank_accuracy(a, m2).item() == 0.0
    assert M.pointing_game(a, m2).item() == 0.0
    m3 = torch.zeros(1, 1, 4, 4)
    m3[0, 0, 1, 3] = 1  # one pixel above the maximum at (3, 3): hit within tolerance 2
    assert M.pointing_game(a, m3).item() == 0.0
    assert M.pointing_game(a, m3, tolerance=2).item() == 1.0
    assert math.isnan(M.pointing_game(a, torch.zeros_like(m)).item())


def test_sparseness_and_complexity_match_quantus(quantus):
    a, _ = _case()
    a = a - 0.3
    x = torch.zeros_like(a).numpy()
    y = np.zeros(4, dtype=int)
    kw = dict(model=None, x_batch=x, y_batch=y, a_batch=a.numpy().copy())
    q_sp = _q(quantus, quantus.Sparseness, abs=True, normalise=False)(**kw)
    kw["a_batch"] = a.numpy().copy()
    q_cx = _q(quantus, quantus.Complexity, abs=True, normalise=False)(**kw)
    np.testing.assert_allclose(M.sparseness(a).numpy(), q_sp, rtol=1e-5)
    np.testing.assert_allclose(M.complexity(a).numpy(), q_cx, rtol=1e-5)


def test_sparseness_and_complexity_extremes():
    one_hot = torch.zeros(1, 1, 10, 10)
    one_hot[0, 0, 3, 3] = 1
    flat = torch.ones(1, 1, 10, 10)
    assert M.sparseness(one_hot).item() == pytest.approx(0.99, abs=1e-3)
    assert M.sparseness(flat).item() == pytest.approx(0.0, abs=1e-6)
    assert M.complexity(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    assert M.complexity(flat).item() == pytest.approx(math.log(100), rel=1e-6)


def test_pixel_flipping_matches_quantus(quantus):
    torch.manual_seed(0)
    model = LinearNet(36).eval()
    x = torch.rand(3, 1, 6, 6)
    y = torch.tensor([0, 1, 2])
    a = torch.rand(3, 1, 6, 6)
    ours = M.pixel_flipping(model, x, y, a, pixels_per_step=4)
    metric = _q(quantus, quantus.PixelFlipping, features_in_step=4, abs=False, normalise=False,
                perturb_baseline=0.0)
    theirs = np.asarray(metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                               device="cpu", softmax=False))
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-5)
    assert ours.shape == (3, 9)
    assert torch.allclose(ours[:, -1], torch.zeros(3), atol=1e-6)  # everything black: w . 0 = 0
    auc = M.area_under_curve(ours)
    np.testing.assert_allclose(auc.numpy(), np.trapezoid(theirs, axis=1), rtol=1e-4)


def test_region_perturbation_matches_quantus(quantus):
    torch.manual_seed(1)
    model = LinearNet(64).eval()
    x = torch.rand(2, 1, 8, 8)
    y = torch.tensor([0, 2])
    a = torch.rand(2, 1, 8, 8)
    ours = M.region_perturbation(model, x, y, a, patch_size=2, regions=5)
    metric = _q(quantus, quantus.RegionPerturbation, patch_size=2, regions_evaluation=5, abs=False,
                normalise=False, perturb_baseline=0.0, order="morf")
    theirs = np.asarray(metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                               device="cpu", softmax=False))
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-5)


def test_max_sensitivity_matches_quantus(quantus):
    torch.manual_seed(2)
    model = LinearNet(16).eval()
    x = torch.rand(3, 1, 4, 4)
    y = torch.tensor([0, 1, 2])

    def explain(inp, target):
        w = model.fc.weight[target].reshape(inp.shape)
        return (inp * w).detach()

    deltas = [torch.full_like(x, 0.05), torch.linspace(-0.1, 0.1, 48).reshape(3, 1, 4, 4)]
    it = iter(deltas)
    ours = M.max_sensitivity(explain, x, y, samples=2, perturb=lambda inp: inp + next(it))

    q_it = iter(d.numpy().reshape(3, -1) for d in deltas)

    def q_perturb(arr, indices, **kw):
        return arr + next(q_it)

    def q_explain(model, inputs, targets, **kw):
        return explain(torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()

    metric = _q(quantus, quantus.MaxSensitivity, nr_samples=2, perturb_func=q_perturb, abs=False,
                normalise=False, return_nan_when_prediction_changes=False)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, device="cpu",
                    explain_func=q_explain, softmax=False)
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), rtol=1e-5)


def test_completeness_of_input_times_gradient_on_linear_model():
    """Quantus' Completeness only returns exact float equality, so this checks the gap by hand."""
    model = LinearNet(16).eval()
    x = torch.rand(2, 1, 4, 4)
    y = torch.tensor([1, 2])
    a = x * model.fc.weight[y].reshape(2, 1, 4, 4)
    gap = M.completeness_gap(model, x, y, a, baseline=0.0)
    assert torch.allclose(gap, torch.zeros(2), atol=1e-5)
    assert torch.allclose(M.relative_completeness_gap(model, x, y, a), torch.zeros(2), atol=1e-5)
    assert torch.allclose(M.completeness_gap(model, x, y, 2 * a), a.flatten(1).sum(1), atol=1e-5)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="masks of shape"):
        M.relevance_mass_accuracy(torch.rand(1, 3, 4, 4), torch.ones(1, 1, 5, 5))
    with pytest.raises(ValueError, match="patch_size=3 must divide"):
        M.region_perturbation(LinearNet(16), torch.rand(1, 1, 4, 4), 0, torch.rand(1, 1, 4, 4), patch_size=3)
    with pytest.raises(ValueError, match="attributions must be"):
        M.pixel_relevance(torch.rand(4, 4))


def test_grid_pointing_game_by_its_definition() -> None:
    from xai_plugins.evaluation.metrics import grid_images, grid_pointing_game

    images = torch.rand(9, 3, 4, 4)
    labels = torch.tensor([0, 0, 1, 2, 3, 3, 1, 4, 5])
    grids, cell_labels = grid_images(images, labels, grid=2)
    assert grids.shape == (2, 3, 8, 8)
    assert [row.tolist() for row in cell_labels] == [[0, 1, 2, 3], [0, 3, 1, 4]]
    assert torch.equal(grids[0, :, :4, 4:], images[2]) and torch.equal(grids[1, :, 4:, :4], images[6])
    for cell in range(4):
        inside = torch.zeros(1, 1, 8, 8)
        inside[0, 0, 4 * (cell // 2):4 * (cell // 2) + 4, 4 * (cell % 2):4 * (cell % 2) + 4] = 1.0
        assert float(grid_pointing_game(inside - 0.5 * (1 - inside), cell, grid=2)) == 1.0
    uniform = torch.ones(3, 1, 9, 9)
    assert torch.allclose(grid_pointing_game(uniform, [0, 4, 8], grid=3), torch.full((3,), 1 / 9))
    assert torch.isnan(grid_pointing_game(-uniform, 0, grid=3)).all()
    with pytest.raises(ValueError, match="divisible by 2"):
        grid_pointing_game(torch.ones(1, 1, 5, 5), 0, grid=2)
