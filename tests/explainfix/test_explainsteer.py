"""ExplainSteer: spectra values, model left untouched, non-square kernels, sigmoid heads, the plot."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from tests.support.batchnorm import randomize_batchnorm
from xai_plugins.explainfix import dct_basis, explain_steer, fix_spatial_filters, plot_spectra, spatial_convs
from xai_plugins.explainfix.saliency import default_objective, spatial_filter_saliency

from .models import Net1d, Net3d, NoSpatial, TinyResNet, assert_unchanged, snapshot

pytestmark = pytest.mark.filterwarnings("ignore::xai_plugins.registry.PluginWarning")


def _loader(n=2, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, size, size, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(n)]


def test_basis_filters_give_one_hot_spectra():
    conv = nn.Conv2d(2, 3, (3, 5), bias=False)
    basis = dct_basis((3, 5))
    with torch.no_grad():
        conv.weight.copy_(2.0 * basis[7].expand(3, 2, 3, 5))
    result = explain_steer(nn.Sequential(conv))
    layer = result.layers[0]
    expected = torch.zeros(15)
    expected[7] = 2.0
    assert torch.allclose(layer.basis, expected, atol=1e-5)
    # basis 7 has row frequency 1 and column frequency 2: e_1 holds e^(1/2) at those indices (the square
    # root lifts float32 round-off of the zero coefficients to about 1e-3)
    root = math.sqrt(2.0)
    assert torch.allclose(layer.axes[0], torch.tensor([0.0, root, 0.0]), atol=2e-3)
    assert torch.allclose(layer.axes[1], torch.tensor([0.0, 0.0, root, 0.0, 0.0]), atol=2e-3)
    assert torch.allclose(layer.frequency, torch.tensor([0.0, root, root, 0.0, 0.0]), atol=4e-3)
    # frequency vector (1/3, 2/5): angle atan2(1/3, 2/5) = 39.8 degrees, the middle of three bins
    assert torch.allclose(layer.orientation, torch.tensor([0.0, 2.0, 0.0]), atol=1e-5)


def test_energy_equals_the_mean_absolute_dct_coefficient():
    torch.manual_seed(0)
    model = TinyResNet()
    result = explain_steer(model)
    assert result.names == [n for n, _ in spatial_convs(model)]
    for layer, (_, conv) in zip(result, spatial_convs(model)):
        nb = math.prod(layer.kernel_shape)
        coeffs = conv.weight.detach().reshape(-1, nb) @ dct_basis(layer.kernel_shape).reshape(nb, nb).T
        assert torch.allclose(layer.basis, coeffs.abs().mean(0), rtol=1e-5, atol=1e-7)
        assert sorted(layer.basis_by_frequency.tolist()) == sorted(layer.basis.tolist())


def test_saliency_weights_filters_by_their_absolute_gradient():
    torch.manual_seed(0)
    model = randomize_batchnorm(TinyResNet()).eval()
    loader = _loader()
    result = explain_steer(model, loader)
    assert result.saliency and result.num_samples == 8
    grads = {n: torch.zeros_like(c.weight) for n, c in spatial_convs(model)}
    for x, y in loader:
        model.zero_grad()
        default_objective(model(x), y).backward()
        for n, c in spatial_convs(model):
            grads[n] += c.weight.grad.abs()
    for layer, (name, conv) in zip(result, spatial_convs(model)):
        w = grads[name].flatten(2).sum(2).reshape(-1)
        nb = math.prod(layer.kernel_shape)
        coeffs = (conv.weight.detach().reshape(-1, nb) @ dct_basis(layer.kernel_shape).reshape(nb, nb).T).abs()
        assert torch.allclose(layer.basis, (w / w.sum()) @ coeffs, rtol=1e-4, atol=1e-7)
    for raw, (name, conv) in zip(result.unnormalized(), spatial_convs(model)):  # the paper's, unnormalised
        w = grads[name].flatten(2).sum(2).reshape(-1)
        kernel = raw.kernel_shape
        nb, d = math.prod(kernel), len(kernel)
        coeffs = (conv.weight.detach().reshape(-1, nb) @ dct_basis(kernel).reshape(nb, nb).T).abs()
        e_d = w @ coeffs
        assert torch.allclose(raw.basis, e_d, rtol=1e-4, atol=1e-7)
        e_1 = [torch.zeros(n) for n in kernel]        # the authors' back-projection, term by term
        for j, freq in enumerate(itertools.product(*(range(n) for n in kernel))):
            for axis, k in enumerate(freq):
                e_1[axis][k] += e_d[j] ** (1 / d)
        for axis in range(d):
            assert torch.allclose(raw.axes[axis], e_1[axis], rtol=1e-4, atol=1e-6)


def _authors_diagonal_order(n: int) -> list[int]:
    """The authors' diagonal traversal with edges first, for a square n x n kernel (their key formula)."""
    top = 2 * 2 * (n - 1)
    z = 2 * (torch.arange(n)[:, None] + torch.arange(n)[None, :])
    key = z * top / 2 - torch.flip((z - top / 2).abs(), dims=[1])
    return torch.argsort(key.reshape(-1), stable=True).tolist()


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 11])
def test_basis_by_frequency_follows_the_papers_diagonal_traversal(n):
    from xai_plugins.explainfix import frequency_order

    assert frequency_order((n, n)).tolist() == _authors_diagonal_order(n)


def test_explain_steer_leaves_the_model_exactly_as_it_was():
    model = TinyResNet()
    fix_spatial_filters(model, "dct_steered")
    model.block1.conv1.weight.requires_grad_(True)  # a mix of frozen and trainable spatial filters
    model.fc.weight.requires_grad_(False)
    model.train()
    model.bn.eval()
    before = snapshot(model)
    explain_steer(model, _loader())
    spatial_filter_saliency(model, _loader())
    assert_unchanged(model, before)
    assert all(p.grad is None for p in model.parameters())


def test_model_is_restored_when_the_objective_fails():
    model = TinyResNet().train()
    before = snapshot(model)

    def broken(output, target):
        raise RuntimeError("objective failed")

    with pytest.raises(RuntimeError, match="objective failed"):
        explain_steer(model, _loader(), objective=broken)
    assert_unchanged(model, before)


def test_frozen_filters_still_get_saliency():
    model = TinyResNet()
    fix_spatial_filters(model, "dct_steered")
    saliency = spatial_filter_saliency(model, _loader(1))
    assert all(g.sum() > 0 for g in saliency.gradient)


def test_models_ending_in_sigmoid_and_multilabel_targets():
    torch.manual_seed(0)
    model = TinyResNet(num_classes=3, sigmoid=True)
    x = torch.randn(4, 3, 8, 8)
    multilabel = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    for loader in ([(x, multilabel)], [(x, torch.tensor([0, 1, 2, 0]))], [x]):
        result = explain_steer(model, loader)
        for layer in result:
            assert torch.isfinite(layer.basis).all() and layer.basis.sum() > 0


def test_1d_and_3d_kernels():
    r1 = explain_steer(Net1d(), [(torch.randn(2, 2, 16), torch.tensor([0, 2]))])
    assert [layer.kernel_shape for layer in r1] == [(5,), (3,)]
    assert all(layer.orientation is None for layer in r1)
    r3 = explain_steer(Net3d())
    assert r3.layers[0].basis.shape == (27,) and len(r3.layers[0].axes) == 3


def test_clear_errors():
    with pytest.raises(ValueError, match="NoSpatial has no spatial convolution"):
        explain_steer(NoSpatial())
    with pytest.raises(ValueError, match="cannot match targets of shape"):
        explain_steer(TinyResNet(), [(torch.randn(2, 3, 8, 8), torch.zeros(2, 5))])
    with pytest.raises(ValueError, match="the loader yielded no batches"):
        explain_steer(TinyResNet(), [])


def test_plot_spectra_writes_a_png(tmp_path):
    result = explain_steer(TinyResNet(), _loader(1))
    path = tmp_path / "spectra.png"
    fig = plot_spectra(result, path, log=True)
    assert path.stat().st_size > 10_000
    assert len(fig.axes) >= 5
