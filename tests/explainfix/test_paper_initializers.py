"""The paper's initializers against their defining formulas, the fitted (per-layer) ones and partial fixing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xai_plugins.explainfix import dct_basis, fix_spatial_filters, spatial_convs
from xai_plugins.explainfix.basis import basis_frequencies
from xai_plugins.explainfix.guided import dct2_steered, guided_steered, svd_steered
from xai_plugins.explainfix.initializers import (
    dct2_fill0,
    ghaar,
    ghaar2_ms,
    ghaar4_ms,
    ghaar4_s2,
    ghaar_r_ms,
    haar,
    psine,
    psine_r_ms,
)

from .models import TinyResNet, assert_unchanged, snapshot

pytestmark = pytest.mark.filterwarnings("ignore::xai_plugins.registry.PluginWarning")

F32 = 1e-5  # float32 evaluation of cosines and sums of a few terms of magnitude <= a few: ~100 ulps


def _coeffs(weight: torch.Tensor) -> torch.Tensor:
    kernel = tuple(weight.shape[2:])
    nb = math.prod(kernel)
    return weight.reshape(-1, nb).double() @ dct_basis(kernel, torch.float64).reshape(nb, nb).T


def _authors_ghaar2d(m: int, h: float, v: float, d: float, f: float) -> torch.Tensor:
    """The authors' 2-D generalised Haar: sin(x f + pi/2) terms on x = linspace(0, pi, m)."""
    x = torch.linspace(0, math.pi, m, dtype=torch.float64)
    wave, flat = torch.sin(x * f + math.pi / 2), torch.sin(0 * x + math.pi / 2)
    return h * torch.outer(wave, flat) + v * torch.outer(flat, wave) + d * torch.outer(wave, wave)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(2, 7))
def test_ghaar_is_the_unscaled_generalised_haar_formula(seed, k):
    shape = (3, 2, k, k)
    weight = ghaar(shape, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    freq = torch.rand(6, generator=g) * 2 * (k - 1)
    w = torch.rand(6, 3, generator=g) * 2 - 1
    for j in range(6):
        ref = _authors_ghaar2d(k, *w[j].double().tolist(), float(freq[j]))
        assert torch.allclose(weight.reshape(6, k, k)[j].double(), ref, atol=F32 * 4)
    unit = ghaar(shape, torch.Generator().manual_seed(seed), normalize=True)
    norms = weight.reshape(6, -1).norm(dim=1, keepdim=True)
    assert torch.allclose(unit.reshape(6, -1) * norms, weight.reshape(6, -1), atol=F32 * 4)


def test_haar_frequency_range_grows_with_the_filter_index():
    weight = haar((4, 5, 3, 3), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    w = torch.rand(20, 3, generator=g) * 2 - 1
    freq = torch.rand(20, generator=g) * torch.arange(1, 21)
    for j in range(20):
        ref = _authors_ghaar2d(3, *w[j].double().tolist(), float(freq[j]))
        assert torch.allclose(weight.reshape(20, 3, 3)[j].double(), ref / ref.norm(), atol=F32)


def _authors_psine(m: int, d: int, terms: int, fmax: float, f, t, p, w) -> torch.Tensor:
    x = torch.linspace(0, math.pi, m, dtype=torch.float64)
    total = torch.zeros((m,) * d, dtype=torch.float64)
    for ell in range(terms):
        term = torch.ones((), dtype=torch.float64)
        for axis in range(d):
            term = term[..., None] * torch.sin(x * f[ell, axis] * fmax + t[ell, axis])
        total = total + w[ell] * term ** p[ell]
    total = (total - total.min()) / (total.max() - total.min()) * 2 - 1
    return total / total.norm()


def test_psine_uses_the_papers_term_count_and_formula():
    n, k = 300, 5
    weight = psine((n, 1, k, k), torch.Generator().manual_seed(1)).reshape(n, k, k)
    g = torch.Generator().manual_seed(1)
    terms = 3 + torch.floor(2 ** (torch.rand(n, generator=g) * 6))
    width = 3 + 2 ** 6
    fmax = 1 + 4 * torch.rand(n, 1, 1, generator=g)
    freq = torch.rand(n, width, 2, generator=g)
    phase = torch.rand(n, width, 2, generator=g) * 2 * math.pi
    power = torch.round(torch.rand(n, width, generator=g) * ((terms[:, None] - 1) / 2 - 1).clamp_min(0) + 1)
    raw = torch.rand(n, width, generator=g)
    assert terms.max() > 16 and terms.min() >= 3 and terms.max() <= 66
    for j in range(0, n, 15):
        L = int(terms[j])
        w = raw[j, :L] / raw[j, :L].sum() * 2 - 1
        ref = _authors_psine(k, 2, L, float(fmax[j]), freq[j].double(), phase[j].double(), power[j], w.double())
        assert torch.allclose(weight[j].double(), ref, atol=1e-4), j  # powers up to 32 of float32 sines


def test_ghaar4_s2_steers_the_frequency_0_and_2_basis_filters():
    weight = ghaar4_s2((16, 8, 5, 5), torch.Generator().manual_seed(0))
    freqs = basis_frequencies((5, 5))
    allowed = torch.isin(freqs, torch.tensor([0, 2])).all(1)
    coeffs = _coeffs(weight)
    assert allowed.sum() == 4
    assert coeffs[:, ~allowed].abs().max() < F32 and coeffs[:, allowed].abs().min() > 0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), kernel=st.sampled_from([(3, 3), (5, 5), (3, 5), (7,), (3, 3, 3)]))
def test_multiscale_steering_uses_R_distinct_basis_filters_per_filter(seed, kernel):
    nb = math.prod(kernel)
    shape = (6, 5, *kernel)
    for init, expected in ((ghaar2_ms, 2), (ghaar4_ms, 4), (ghaar_r_ms, None)):  # psine_r_ms: test below
        weight = init(shape, torch.Generator().manual_seed(seed))
        active = (_coeffs(weight).abs() > 1e-6).sum(1)
        if expected is None:  # one R per layer, 2 ** U(0, log2 nb) rounded
            u = torch.rand(1, generator=torch.Generator().manual_seed(seed)).item()
            expected = int(round(2 ** (u * math.log2(nb))))
        assert (active == min(expected, nb)).all(), init.__name__


def test_psine_r_ms_is_polynomial_steering_of_random_basis_subsets():
    shape, nb = (50, 4, 5, 5), 25
    weight = psine_r_ms(shape, torch.Generator().manual_seed(2), terms=9)
    g = torch.Generator().manual_seed(2)
    idx = torch.argsort(torch.rand(200, nb, generator=g), dim=1)[:, :9]
    w = torch.randn(200, 9, generator=g)
    p = torch.randint(1, 5, (200, 9), generator=g)       # [1, max(2, floor(1 + (9 - 1) / 2))) = [1, 5)
    coeffs = torch.zeros(200, nb).scatter_(1, idx, w ** p)
    assert torch.allclose(_coeffs(weight).float(), coeffs, atol=F32 * 10)


@pytest.mark.parametrize("shape", [(12, 3, 3, 3), (5, 2, 3, 3), (9, 1, 3, 3), (10, 4, 5)])
def test_dct2_fill0_puts_one_complete_basis_per_input(shape):
    weight = dct2_fill0(shape, torch.Generator().manual_seed(0))
    kernel = shape[2:]
    nb, out = math.prod(kernel), shape[0]
    basis = dct_basis(kernel).reshape(nb, -1)
    for i in range(shape[1]):
        filters = weight[:, i].reshape(out, -1)
        nonzero = filters.abs().sum(1) > 0
        assert int(nonzero.sum()) == min(out, nb)
        assert torch.allclose(filters[nonzero] @ basis.T, torch.eye(nb)[:min(out, nb)].index_select(
            0, (filters[nonzero] @ basis.T).abs().argmax(1)), atol=F32)
        assert sorted((filters[nonzero] @ basis.T).abs().argmax(1).tolist()) == list(range(min(out, nb)))


class _TwoScales(torch.nn.Module):
    """Two 3x3 layers whose filters differ in scale and direction, plus a rank-deficient depthwise layer."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.nn.Conv2d(20, 30, 3)
        self.b = torch.nn.Conv2d(30, 20, 3)
        self.c = torch.nn.Conv2d(20, 20, 3, groups=20)
        with torch.no_grad():
            self.a.weight.copy_(torch.randn(30, 20, 3, 3, generator=g) * 3 + 1)
            self.b.weight.copy_(torch.randn(20, 30, 3, 3, generator=g) * 0.1 - 0.5)
            span = torch.randn(2, 9, generator=g)         # 20 filters in a 2-dimensional subspace
            self.c.weight.copy_((torch.randn(20, 2, generator=g) @ span).reshape(20, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(self.a(x)))


@pytest.mark.parametrize("factory", [guided_steered, svd_steered, dct2_steered])
def test_fitted_initializers_follow_each_source_layer(factory):
    source, target = _TwoScales(), _TwoScales()
    fix_spatial_filters(target, factory(source), seed=0)
    for (name, s), (_, t) in zip(spatial_convs(source), spatial_convs(target)):
        sf, tf = s.weight.detach().reshape(-1, 9).double(), t.weight.detach().reshape(-1, 9).double()
        n = len(sf)
        # mean within a few standard errors; per-element spread within 25 % (n >= 20 samples)
        assert ((tf.mean(0) - sf.mean(0)).abs() <= 5 * sf.std(0) / n ** 0.5 + F32).all(), name
        if factory is guided_steered:    # kernel density estimate: covariance (1 + h^2) C, h = n^(-1/(k+4))
            expected = sf.std(0) * (1 + n ** (-2 / 13)) ** 0.5
        else:
            expected = sf.std(0) if factory is dct2_steered else None
        if expected is not None and n >= 400:
            assert torch.allclose(tf.std(0), expected, rtol=0.25), name


@pytest.mark.parametrize("factory", [guided_steered, svd_steered])
def test_fitted_initializers_stay_in_a_rank_deficient_sources_span(factory):
    source = _TwoScales()
    # guided steering estimates each layer on its own; SVD steering shares the basis of all filters of a
    # kernel shape, so it keeps a layer's span only when fitted to that layer alone
    init, layer = (factory(source), 2) if factory is guided_steered else (factory(source.c.weight), 0)
    span = source.c.weight.detach().reshape(20, 9).double()
    sample = init((40, 1, 3, 3), torch.Generator().manual_seed(0), layer=layer).reshape(-1, 9).double()
    q = torch.linalg.qr(span.T).Q[:, :2]
    assert ((sample - sample @ q @ q.T).norm(dim=1) <= 1e-5 * sample.norm(dim=1).max()).all()
    single = factory(torch.ones(1, 1, 3, 3))
    assert torch.allclose(single((3, 2, 3, 3), torch.Generator().manual_seed(0)), torch.ones(3, 2, 3, 3))


def test_partial_fixing_by_index_list_and_share():
    model = TinyResNet()
    convs = spatial_convs(model)
    before = {n: (c.weight.detach().clone(), c.weight.requires_grad) for n, c in convs}
    report = fix_spatial_filters(model, "dct_steered", seed=0, layers=[1, -1])
    assert report.layers == [convs[1][0], convs[-1][0]]
    for i, (name, conv) in enumerate(convs):
        fixed = i in (1, len(convs) - 1)
        assert conv.weight.requires_grad is not fixed
        assert torch.equal(conv.weight, before[name][0]) is not fixed
    half = fix_spatial_filters(TinyResNet(), "dct_steered", seed=3, layers=0.5)
    assert len(half.layers) == round(0.5 * len(convs))
    assert fix_spatial_filters(TinyResNet(), "dct_steered", seed=3, layers=0.5).layers == half.layers
    assert fix_spatial_filters(TinyResNet(), "dct_steered", layers=2).layers == [convs[2][0]]


@pytest.mark.parametrize("layers,match", [(99, r"layer indices \[99\] are not spatial layers of the model; it has 8"),
                                          (0.0, r"a share of layers must be in \(0, 1\]"),
                                          (True, "not a bool")])
def test_partial_fixing_refuses_bad_layers_and_leaves_the_model(layers, match):
    model = TinyResNet()
    before = snapshot(model)
    with pytest.raises((ValueError, TypeError), match=match):
        fix_spatial_filters(model, "dct_steered", layers=layers)
    assert_unchanged(model, before)
