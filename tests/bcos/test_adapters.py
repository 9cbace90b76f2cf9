"""Captum and Zennit adapters for B-cos explanations."""

from __future__ import annotations

import pytest
import torch

from tests.bcos.conftest import assert_same_state, calibrate, model_state
from xai_plugins.bcos import contributions, create_model, encode_input, explanation_mode

captum_attr = pytest.importorskip("captum.attr")
zennit_attribution = pytest.importorskip("zennit.attribution")


@pytest.fixture(scope="module")
def model_and_inputs():
    torch.manual_seed(0)
    model = create_model("bcos_simple_cnn", num_classes=5)
    calibrate(model, encode_input(torch.rand(8, 3, 16, 16)))
    return model, encode_input(torch.rand(3, 3, 16, 16))


def test_captum_bcos_attribution_equals_core_and_input_x_gradient(model_and_inputs):
    from xai_plugins_captum import BcosAttribution

    model, x6 = model_and_inputs
    before = model_state(model)
    attribution = BcosAttribution(model)
    attr, delta = attribution.attribute(x6, target=[0, 2, 4], return_convergence_delta=True)
    assert_same_state(before, model_state(model))
    core = contributions(model, x6, [0, 2, 4])
    torch.testing.assert_close(attr, core.contributions)
    torch.testing.assert_close(delta, core.delta, rtol=0, atol=1e-4 * core.explained_logits.abs().max().item())
    assert delta.abs().max() <= 1e-4 * (core.explained_logits - core.logit_bias).abs().max()
    assert attribution.has_convergence_delta() and attribution.multiplies_by_inputs
    with explanation_mode(model):
        ixg = captum_attr.InputXGradient(model).attribute(x6.clone().requires_grad_(), target=[0, 2, 4])
    torch.testing.assert_close(attr, ixg)
    assert not x6.requires_grad


def test_captum_tuple_inputs_and_metrics(model_and_inputs):
    from captum.metrics import infidelity

    from xai_plugins_captum import BcosAttribution

    model, x6 = model_and_inputs
    attribution = BcosAttribution(model)
    (attr,) = attribution.attribute((x6,), target=1)
    assert attr.shape == x6.shape

    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.01
        return noise, inputs - noise

    torch.manual_seed(0)
    score = infidelity(model, perturb, x6, attribution.attribute(x6, target=1), target=1)
    assert score.shape == (3,) and torch.isfinite(score).all()


def test_zennit_gradient_with_bcos_composite_yields_dynamic_weights(model_and_inputs):
    from xai_plugins_zennit import BcosExplanation

    model, x6 = model_and_inputs
    before = model_state(model)
    composite = BcosExplanation()
    targets = torch.tensor([3, 1, 0])
    with zennit_attribution.Gradient(model, composite) as attributor:
        output, weights = attributor(x6, torch.eye(5)[targets])
        assert all(m.explanation for m in model.modules() if hasattr(m, "set_explanation_mode"))
    assert_same_state(before, model_state(model))
    core = contributions(model, x6, targets)
    torch.testing.assert_close(weights, core.dynamic_weights)
    torch.testing.assert_close(output, core.logits)
    torch.testing.assert_close((weights * x6).flatten(1).sum(1), core.explained_logits - core.logit_bias,
                               rtol=1e-4, atol=0)


def test_zennit_composite_restores_on_error(model_and_inputs):
    from xai_plugins_zennit import BcosExplanation

    model, _ = model_and_inputs
    before = model_state(model)
    composite = BcosExplanation()
    with pytest.raises(ValueError, match="encode_input"):
        with composite.context(model) as modified:
            modified(torch.rand(1, 3, 16, 16))
    assert_same_state(before, model_state(model))


def standard_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 5)).eval()


def test_adapters_refuse_a_model_that_is_not_a_bcos_network():
    """Input x gradient of a standard CNN is not a B-cos explanation: every way in says so, model untouched."""
    from xai_plugins_captum import BcosAttribution
    from xai_plugins_zennit import BcosExplanation

    model = standard_cnn()
    before = model_state(model)
    with pytest.raises(TypeError, match=r"BcosAttribution need a B-cos network, got a .*Sequential.*to_bcos"):
        BcosAttribution(model)
    with pytest.raises(TypeError, match=r"BcosExplanation need a B-cos network"):
        with zennit_attribution.Gradient(model, BcosExplanation()):
            pass
    assert_same_state(before, model_state(model))


def test_captum_encodes_three_channel_images_for_the_user(model_and_inputs):
    """Images given to a 6-channel model are encoded; the attributions are shaped like the images and are the
    core contributions of the encoded input folded per channel, with the same delta."""
    from xai_plugins_captum import BcosAttribution

    model, x6 = model_and_inputs
    images = x6[:, :3]
    attr, delta = BcosAttribution(model).attribute(images, target=[0, 2, 4], return_convergence_delta=True)
    encoded, encoded_delta = BcosAttribution(model).attribute(x6, target=[0, 2, 4], return_convergence_delta=True)
    assert attr.shape == images.shape
    torch.testing.assert_close(attr, encoded[:, :3] + encoded[:, 3:])
    torch.testing.assert_close(delta, encoded_delta)
    assert not images.requires_grad


def test_captum_class_is_the_registered_attributor_through_the_bridge(model_and_inputs):
    """``BcosAttribution`` is a thin subclass of the Captum bridge over the registered ``bcos_contributions``: the
    bridge class of that name gives the same attributions and deltas."""
    import xai_plugins
    from xai_plugins_captum import BcosAttribution, attribution
    from xai_plugins_captum.bridge import RegisteredAttribution

    model, x6 = model_and_inputs
    ours = BcosAttribution(model)
    assert isinstance(ours, RegisteredAttribution)
    assert ours.component is xai_plugins.describe("attributor", "bcos_contributions")
    attr, delta = ours.attribute(x6, target=[1, 2, 3], return_convergence_delta=True)
    bridged, bridged_delta = attribution("bcos_contributions")(model).attribute(x6, target=[1, 2, 3],
                                                                               return_convergence_delta=True)
    assert torch.equal(attr, bridged) and torch.equal(delta, bridged_delta)
    with pytest.raises(ValueError, match="BcosAttribution needs a target"):
        ours.attribute(x6)
