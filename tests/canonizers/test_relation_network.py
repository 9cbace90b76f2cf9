"""The reference Relation Network and its canonizer: builder, exact canonization, restore, and conservation
of Zennit's EpsilonPlusFlat relevance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.support.batchnorm import batchnorms, randomize_batchnorm
from tests.support.canonizers import assert_same
from xai_plugins.canonizers.modules import Sum
from xai_plugins.canonizers.relation_network import RelationNetwork, RelationNetworkCanonizer, relation_network
from xai_plugins.conformance.state import snapshot

QUESTION = 11
SIZE = 32
CHANNELS = 24
PAIRS = (SIZE // 16) ** 4
"""Four stride-2 layers turn a 32x32 image into a 2x2 grid: 4 objects, 16 ordered pairs."""


def build(question_dim: int = QUESTION, seed: int = 0, zero_dense_biases: bool = False) -> RelationNetwork:
    torch.manual_seed(seed)
    model = relation_network(num_classes=10, question_dim=question_dim, channels=CHANNELS)
    randomize_batchnorm(model, seed=seed, negative_gamma=False)
    if zero_dense_biases:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Linear):
                    module.bias.zero_()
    return model.eval()


def inputs(question_dim: int = QUESTION, batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, SIZE, SIZE, generator=g)
    if question_dim == 0:
        return (image,)
    return image, torch.randn(batch, question_dim, generator=g)


def test_builder_shapes_and_defaults() -> None:
    model = relation_network()
    assert isinstance(model, RelationNetwork) and model.question_dim == 0
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert model.objects(torch.randn(2, 3, 64, 64)).shape == (2, 16, 24 + 2)
    vqa = relation_network(num_classes=29, question_dim=QUESTION, channels=8, g_width=32, f_width=16)
    assert vqa(*inputs()).shape == (2, 29)
    assert vqa.relations(*inputs()).shape == (2, PAIRS, 32)


def test_object_coordinates_tag_the_grid_cells() -> None:
    coordinates = RelationNetwork.object_coordinates(torch.zeros(1, 5, 2, 3))
    expected = torch.tensor([[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    assert torch.equal(coordinates, expected)


def test_bad_inputs_get_errors_that_say_how_to_call() -> None:
    image, question = inputs()
    with pytest.raises(ValueError, match=r"question must have shape \(batch, 11\) = \(2, 11\), got None"):
        build()(image)
    with pytest.raises(ValueError, match=r"built with question_dim=0; call it as model\(image\)"):
        build(question_dim=0)(image, question)
    with pytest.raises(ValueError, match=r"image must have shape \(batch, 3, height, width\), got \(2, 4, 32, 32\)"):
        build(question_dim=0)(torch.randn(2, 4, SIZE, SIZE))
    with pytest.raises(ValueError, match="question_dim=-1 must be >= 0"):
        relation_network(question_dim=-1)


@pytest.mark.parametrize("question_dim", [0, QUESTION])
def test_canonizer_keeps_function_and_restores_bitwise(question_dim: int) -> None:
    model = build(question_dim)
    x = inputs(question_dim)
    with torch.no_grad():
        expected = model(*x)
    before = snapshot(model)
    canonizer = RelationNetworkCanonizer()
    handles = canonizer.apply(model)
    try:
        assert isinstance(model.xai_pair_sum, Sum)
        features = torch.randn(2, CHANNELS, 4, 4)
        for bn in batchnorms(model):
            assert torch.equal(bn(features), features)
        with torch.no_grad():
            canonical = model(*x)
        assert (canonical - expected).abs().max() <= 1e-5 * expected.abs().max()
        assert canonizer.apply(model) == handles
    finally:
        for handle in handles:
            handle.remove()
    canonizer.remove()
    assert_same(before, snapshot(model))
    with torch.no_grad():
        assert torch.equal(model(*x), expected)


def test_canonizer_refuses_other_models_untouched() -> None:
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = snapshot(other)
    with pytest.raises(TypeError, match="canonizes xai_plugins RelationNetwork models, got Sequential"):
        RelationNetworkCanonizer().apply(other)
    assert_same(before, snapshot(other))


def test_canonizers_for_picks_it() -> None:
    from xai_plugins.canonizers import canonizers_for

    (canonizer,) = canonizers_for(build())
    assert isinstance(canonizer, RelationNetworkCanonizer)
    assert isinstance(canonizer.copy(), RelationNetworkCanonizer)


def test_registered_as_canonizer_and_model() -> None:
    import xai_plugins

    assert xai_plugins.get("canonizer", "relation_network") is RelationNetworkCanonizer
    assert xai_plugins.get("model", "relation_network") is relation_network


def zennit_relevance_ratio(model: RelationNetwork, x: tuple[torch.Tensor, ...], canonizers: list) -> torch.Tensor:
    """EpsilonPlusFlat(zero_params='bias') relevance started at the target logit, summed over everything the
    relevance can reach (image, question, and the coordinate tags of the objects), divided by the logit."""
    from zennit.composites import EpsilonPlusFlat

    x = tuple(t.clone().requires_grad_(True) for t in x)
    captured: list[torch.Tensor] = []
    # Registered before the composite's hooks, so it sees the pairs tensor itself, whose gradient under the
    # composite is the relevance of each pair feature (object features, coordinate tags, question).
    handle = model.g[0].register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        composite = EpsilonPlusFlat(zero_params="bias", canonizers=canonizers)
        with composite.context(model) as hooked:
            output = hooked(*x)
            rows = torch.arange(len(output))
            target = output.argmax(1)
            start = torch.zeros_like(output)
            start[rows, target] = output[rows, target]
            *relevance, pair_relevance = torch.autograd.grad(output, (*x, captured[0]), start)
    finally:
        handle.remove()
    coordinate_columns = [CHANNELS, CHANNELS + 1, 2 * CHANNELS + 2, 2 * CHANNELS + 3]
    total = sum(r.sum() for r in relevance) + pair_relevance[..., coordinate_columns].sum()
    return total / output[rows, target].sum().detach()


@pytest.mark.parametrize("question_dim", [0, QUESTION])
def test_zennit_epsilon_plus_flat_conserves_with_canonizer(question_dim: int) -> None:
    pytest.importorskip("zennit")
    from xai_plugins_zennit import canonizers_for

    # The epsilon rule with zero_params='bias' divides by bias-free outputs; at random initialisation the
    # dense biases are as large as the weighted sums, so those denominators vanish while units are active.
    # Zero dense biases isolate what the canonizer is responsible for: BatchNorm and the sum over pairs.
    model = build(question_dim, zero_dense_biases=True)
    x = inputs(question_dim)
    before = snapshot(model)
    ratio = zennit_relevance_ratio(model, x, canonizers_for(model))
    assert abs(float(ratio) - 1.0) <= 0.01
    assert_same(before, snapshot(model))

    # Without the canonizer the gradient of the functional sum hands every pair the full relevance.
    stock = zennit_relevance_ratio(model, x, [])
    assert abs(float(stock) / PAIRS - 1.0) <= 0.01
