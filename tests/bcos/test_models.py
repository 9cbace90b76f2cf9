"""Registered B-cos models: completeness of the contributions, restored state, weights I/O, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import xai_plugins.bcos.plugin as bcos_plugin
from tests.bcos.conftest import assert_same_state, calibrate, model_state
from xai_plugins.bcos import contributions, create_model, encode_input, load_weights, save_weights
from xai_plugins.bcos.explain import bcos_contributions
from xai_plugins.bcos.factory import MODEL_BUILDERS, builder
from xai_plugins.bcos.zoo import MODELS
from xai_plugins.registry import Registry

SMALL = {
    "bcos_resnet18": {},
    "bcos_resnet34": {},
    "bcos_resnet50": {"width": 16},
    "bcos_resnet101": {"width": 8},
    "bcos_resnet152": {"width": 8},
    "bcos_resnext50_32x4d": {"width": 16},
    "bcos_wide_resnet50_2": {"width": 8},
    **{f"bcos_vgg{d}": {"classifier_width": 64} for d in (11, 13, 16, 19)},
    **{f"bcos_densenet{d}": {"growth": 8, "init_features": 16} for d in (121, 161, 169, 201)},
    **{f"bcos_convnext_{size}": {"widths": (8, 16, 24, 32)} for size in ("atto", "tiny", "small", "base", "large")},
    **{f"bcos_simple_vit_{s}_patch16_224": {"dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64}
       for s in "ti s b l".split()},
    **{f"bcos_vitc_{s}_patch1_14": {"dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64, "stem": (8, 16)}
       for s in "ti s b l".split()},
    "bcos_simple_cnn": {},
}
"""Smaller widths for the slowest builders; the structure (depth, layer types) is the registered one."""


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = Registry()
    registry.register_plugin(bcos_plugin, "bcos")
    return registry


def registered_models() -> list[str]:
    registry = Registry()
    registry.register_plugin(bcos_plugin, "bcos")
    return [c.name for c in registry.components("model")]


def test_plugin_registers_the_models_and_the_attributor(registry):
    assert [c.name for c in registry.components("model")] == sorted(SMALL) == sorted(MODELS)
    for name, entry in MODELS.items():
        assert registry.component("model", name).load() is builder(name)
        assert entry.target == MODEL_BUILDERS[name]
    attributor = registry.component("attributor", "bcos_contributions")
    assert attributor.load() is bcos_contributions
    assert "Böhle" in attributor.paper


@pytest.mark.parametrize("name", [n for n in registered_models() if MODELS[n].complete])
def test_completeness_for_every_registered_model(registry, name):
    """Σ contributions = logit - logit bias within 1e-4 relative, for the most decided class.

    Float32, except for the VGGs: at random initialisation their logits (~1e-5) are sums over the input that cancel
    by a factor ~1e4, beyond what float32 resolves to 1e-4 relative; it is checked in float64 instead.
    """
    torch.manual_seed(0)
    dtype = torch.float64 if name.startswith("bcos_vgg") else torch.float32
    model = registry.component("model", name).load()(num_classes=7, **SMALL.get(name, {})).to(dtype)
    x6 = encode_input(torch.rand(2, 3, 32, 32, dtype=dtype))
    calibrate(model, x6)
    with torch.no_grad():
        logits = model(x6)
    target = (logits - model.logit_layer.bias).abs().argmax(1)
    before = model_state(model)
    result = contributions(model, x6, target)
    assert_same_state(before, model_state(model))
    explained = result.explained_logits - result.logit_bias
    assert explained.abs().min() > 0, "logits equal to the bias cannot test completeness"
    torch.testing.assert_close(result.contributions.flatten(1).sum(1), explained, rtol=1e-4, atol=0)
    assert result.logit_bias == pytest.approx(-torch.log(torch.tensor(6.0)).item())
    torch.testing.assert_close(result.logits, logits)


@pytest.mark.parametrize("name", ["bcos_resnet18", "bcos_simple_cnn"])
def test_completeness_is_exact_in_float64(name):
    """In double precision the identity holds to rounding for every class, not just within 1e-4."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **SMALL.get(name, {})).double()
    x6 = encode_input(torch.rand(2, 3, 32, 32, dtype=torch.float64))
    calibrate(model, x6)
    for target in range(5):
        result = contributions(model, x6, target)
        explained = result.explained_logits - result.logit_bias
        torch.testing.assert_close(result.contributions.flatten(1).sum(1), explained, rtol=1e-9, atol=1e-15)


def test_contributions_result_unpacks_and_defaults_to_prediction():
    torch.manual_seed(0)
    model = calibrate(create_model("bcos_simple_cnn", num_classes=4), encode_input(torch.rand(4, 3, 16, 16)))
    x6 = encode_input(torch.rand(2, 3, 16, 16))
    result = contributions(model, x6)
    contribs, weights, logits = result
    assert torch.equal(result.target, logits.argmax(1))
    torch.testing.assert_close(contribs, weights * x6)
    assert result.contribution_map.shape == (2, 16, 16)
    assert result.delta.abs().max() < 1e-4 * result.explained_logits.abs().max()


def test_attributor_targets_batches_and_determinism():
    torch.manual_seed(0)
    model = calibrate(create_model("bcos_simple_cnn", num_classes=5), encode_input(torch.rand(4, 3, 16, 16)))
    x6 = encode_input(torch.rand(3, 3, 16, 16))
    by_int = bcos_contributions(model, x6, 2)
    by_list = bcos_contributions(model, x6, [2, 2, 2])
    by_tensor = bcos_contributions(model, x6, torch.tensor([2, 2, 2]))
    assert by_int.shape == x6.shape
    assert torch.equal(by_int, by_list) and torch.equal(by_int, by_tensor)
    single = bcos_contributions(model, x6[1:2], 2)
    torch.testing.assert_close(single[0], by_int[1], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="out of range"):
        bcos_contributions(model, x6, 5)
    with pytest.raises(ValueError, match="got 2 targets for a batch of 3"):
        bcos_contributions(model, x6, [0, 1])
    with pytest.raises(TypeError, match="takes no options"):
        bcos_contributions(model, x6, 0, baseline=0)


def test_training_mode_model_left_unchanged():
    torch.manual_seed(0)
    model = create_model("bcos_simple_cnn", num_classes=3).train()
    model.features[0].weight.requires_grad_(False)
    handle = model.classifier.register_forward_hook(lambda *args: None)
    x6 = encode_input(torch.rand(2, 3, 16, 16))
    before = model_state(model)
    bcos_contributions(model, x6, 1)
    assert_same_state(before, model_state(model))
    with pytest.raises(ValueError, match="expects 6 input channels"):
        bcos_contributions(model, torch.rand(2, 4, 16, 16), 1)
    assert_same_state(before, model_state(model))
    handle.remove()


def test_three_channel_input_error_for_models():
    model = create_model("bcos_resnet18", num_classes=3).eval()
    with pytest.raises(ValueError, match=r"call xai_plugins.bcos.encode_input\(x\) first"):
        model(torch.rand(1, 3, 32, 32))


def test_b_below_one_rejected_by_builders():
    with pytest.raises(ValueError, match=r"b must be a finite number >= 1"):
        create_model("bcos_simple_cnn", b=0.5)


def test_unknown_model_name_lists_available():
    with pytest.raises(ValueError, match="unknown B-cos model 'bcos_vit'; available: bcos_resnet18"):
        create_model("bcos_vit")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_and_load_weights(tmp_path, suffix):
    torch.manual_seed(0)
    model = calibrate(create_model("bcos_simple_cnn", num_classes=4), encode_input(torch.rand(4, 3, 16, 16)))
    path = tmp_path / f"weights{suffix}"
    save_weights(model, path)
    torch.manual_seed(1)
    loaded = create_model("bcos_simple_cnn", num_classes=4, weights=path).eval()
    x6 = encode_input(torch.rand(2, 3, 16, 16))
    with torch.no_grad():
        assert torch.equal(model(x6), loaded(x6))
    with pytest.raises(FileNotFoundError, match="never download"):
        load_weights(loaded, tmp_path / "missing.pt")


def test_attributor_refuses_a_standard_cnn_and_leaves_it_untouched():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 5))
    before = model_state(model)
    with pytest.raises(TypeError, match=r"need a B-cos network.*create_model.*to_bcos.*standard models"):
        bcos_contributions(model, torch.rand(2, 3, 8, 8), 1)
    with pytest.raises(TypeError, match="need a B-cos network"):
        contributions(model, torch.rand(2, 3, 8, 8), 1)
    assert_same_state(before, model_state(model))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.sampled_from([8, 12, 16]), batch=st.integers(1, 3))
def test_three_channel_images_are_encoded_for_the_user(seed, size, batch):
    """For any images, the attributor on 3 channels equals the contributions of encode_input(images) with the
    x and 1 - x contributions added per channel; their sum is still logit - logit bias (float64: 1e-9)."""
    torch.manual_seed(seed)
    model = create_model("bcos_simple_cnn", num_classes=4, widths=(8, 8, 8)).double().eval()
    images = torch.rand(batch, 3, size, size, dtype=torch.float64)
    result = contributions(model, images, 2)
    reference = contributions(model, encode_input(images), 2)
    assert result.encoded and not reference.encoded
    assert torch.equal(result.inputs, encode_input(images))
    torch.testing.assert_close(result.contributions, reference.contributions, rtol=0, atol=0)
    folded = bcos_contributions(model, images, 2)
    assert folded.shape == images.shape
    torch.testing.assert_close(folded, reference.contributions[:, :3] + reference.contributions[:, 3:])
    explained = reference.explained_logits - reference.logit_bias
    scale = explained.abs().max().item()
    assert (folded.flatten(1).sum(1) - explained).abs().max().item() <= 1e-9 * scale + 1e-300
