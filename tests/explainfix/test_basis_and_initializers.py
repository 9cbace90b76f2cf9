"""The DCT-II basis and the registered initializers."""

from __future__ import annotations

import math

import pytest
import torch

import xai_plugins
from xai_plugins.explainfix import GuidedSteering, dct_basis, frequency_order
from xai_plugins.explainfix.basis import basis_frequencies
from xai_plugins.explainfix.initializers import dct_basis_init, dct_steered, ghaar, guided_steered, psine

from .models import TinyResNet

# other families' plugins may still be in progress; their load failures are not this family's concern
pytestmark = pytest.mark.filterwarnings("ignore::xai_plugins.registry.PluginWarning")

SHAPES = [(3,), (5,), (3, 3), (7, 7), (3, 5), (1, 3), (2, 3, 4), (3, 3, 3)]
WEIGHT_SHAPES = [(8, 4, 3, 3), (6, 1, 3, 3), (4, 3, 3, 5), (4, 2, 5), (2, 2, 3, 3, 3)]
PLAIN = {"dct_basis": dct_basis_init, "dct_steered": dct_steered, "ghaar": ghaar, "psine": psine}


@pytest.mark.parametrize("shape", SHAPES)
def test_basis_is_orthonormal_and_complete(shape):
    basis = dct_basis(shape, torch.float64)
    n = math.prod(shape)
    assert basis.shape == (n, *shape)
    flat = basis.reshape(n, n)
    assert torch.allclose(flat @ flat.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    filters = torch.randn(5, n, dtype=torch.float64)
    assert torch.allclose((filters @ flat.T) @ flat, filters, atol=1e-12)


def test_basis_rows_are_separable_cosines_in_raster_order():
    basis = dct_basis((2, 3), torch.float64)
    rows = dct_basis((2,), torch.float64)
    cols = dct_basis((3,), torch.float64)
    for j, (kr, kc) in enumerate(basis_frequencies((2, 3)).tolist()):
        assert torch.allclose(basis[j], torch.outer(rows[kr], cols[kc]))
    assert torch.allclose(basis[0], torch.full((2, 3), 1 / math.sqrt(6), dtype=torch.float64))


def test_frequency_order_goes_from_low_to_high():
    assert frequency_order((3, 3)).tolist()[:3] in ([0, 1, 3], [0, 3, 1])
    assert frequency_order((3, 3)).tolist()[-1] == 8
    assert sorted(frequency_order((3, 5)).tolist()) == list(range(15))


def test_all_five_initializers_are_registered():
    names = {c.name for c in xai_plugins.list_components("initializer")}
    assert {"dct_basis", "dct_steered", "ghaar", "psine", "guided_steered"} <= names
    assert xai_plugins.describe("initializer", "guided_steered").extra["factory"] is True
    assert xai_plugins.get("initializer", "dct_steered") is dct_steered


@pytest.mark.parametrize("name", sorted(PLAIN))
@pytest.mark.parametrize("shape", WEIGHT_SHAPES)
def test_initializer_shapes_and_seeds(name, shape):
    init = PLAIN[name]
    first = init(shape, generator=torch.Generator().manual_seed(3))
    again = init(shape, generator=torch.Generator().manual_seed(3))
    other = init(shape, generator=torch.Generator().manual_seed(4))
    assert first.shape == shape and first.dtype == torch.float32 and torch.isfinite(first).all()
    assert torch.equal(first, again)
    if name != "dct_basis":  # a few basis permutations can repeat across seeds on tiny banks
        assert not torch.equal(first, other)


def test_dct_basis_init_uses_basis_filters_spread_over_inputs():
    weight = dct_basis_init((4, 9, 3, 3), generator=torch.Generator().manual_seed(0))
    coeffs = weight.reshape(-1, 9) @ dct_basis((3, 3)).reshape(9, 9).T
    assert torch.allclose(coeffs.abs().max(1).values, torch.ones(36), atol=1e-5)
    assert torch.allclose(coeffs.abs().sum(1), torch.ones(36), atol=1e-5)
    for o in range(4):  # each output channel sees all 9 basis filters once
        assert sorted(coeffs[o * 9:(o + 1) * 9].abs().argmax(1).tolist()) == list(range(9))


def test_dct_steered_lives_in_the_low_frequency_span():
    weight = dct_steered((16, 8, 5, 5), generator=torch.Generator().manual_seed(0))
    coeffs = (weight.reshape(-1, 25) @ dct_basis((5, 5)).reshape(25, 25).T).reshape(-1, 5, 5)
    assert coeffs[:, 2:, :].abs().max() < 1e-5 and coeffs[:, :, 2:].abs().max() < 1e-5
    assert coeffs[:, :2, :2].abs().min() > 0


@pytest.mark.parametrize("init", [lambda shape, generator: ghaar(shape, generator, normalize=True), psine])
def test_normalised_ghaar_and_psine_filters_have_unit_norm(init):
    weight = init((8, 4, 3, 3), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(weight.reshape(32, -1).norm(dim=1), torch.ones(32), atol=1e-5)


def test_guided_steering_reproduces_the_statistics_it_was_fitted_to():
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(9, 9, generator=g, dtype=torch.float64)
    source = (torch.randn(4000, 9, generator=g, dtype=torch.float64) @ mixing + 0.5).float()
    init = guided_steered(source.reshape(1000, 4, 3, 3))
    sample = init((1000, 40, 3, 3), generator=torch.Generator().manual_seed(1)).reshape(-1, 9).double()
    assert torch.allclose(sample.mean(0), source.double().mean(0), atol=0.1)
    h2 = 4000 ** (-2 / 13)  # a kernel density estimate with Scott's bandwidth inflates the covariance by 1 + h^2
    expected = torch.cov(source.double().T) * (1 + h2)
    assert (torch.cov(sample.T) - expected).norm() / expected.norm() < 0.05


def test_guided_steering_from_a_model_and_unknown_kernel_error():
    init = guided_steered(TinyResNet())
    assert isinstance(init, GuidedSteering)
    assert init((4, 4, 3, 5), generator=torch.Generator().manual_seed(0)).shape == (4, 4, 3, 5)
    with pytest.raises(ValueError, match="GuidedSteering was fitted to kernels 3x3, 3x5, not 7x7"):
        init((4, 4, 7, 7))


@pytest.mark.parametrize("shape", [(8,), (4, 4), (4, 4, 1, 1)])
def test_initializers_reject_shapes_that_are_not_spatial_filter_banks(shape):
    with pytest.raises(ValueError, match="shape|spatial"):
        dct_steered(shape)


@pytest.mark.parametrize("shape", [0, -3, (3, 0), ()])
def test_dct_basis_rejects_empty_or_non_positive_shapes(shape):
    with pytest.raises(ValueError, match="a kernel shape needs one or more positive sizes"):
        dct_basis(shape)
