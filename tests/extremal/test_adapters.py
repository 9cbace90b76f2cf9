"""The registered attributors and the Captum and Zennit adapters."""

from __future__ import annotations

import pytest
import torch

import xai_plugins
from tests.extremal.conftest import SmallNet, assert_same, snapshot

FAST = dict(step=4, sigma=8, max_iter=6)


def test_registered_attributors_follow_the_contract(small_net):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for name in ("extremal_perturbation", "channel_extremal_perturbation"):
        attributor = xai_plugins.get("attributor", name)
        before = snapshot(small_net)
        for target in (1, [1, 2], torch.tensor([1, 2])):
            out = attributor(small_net, images, target, max_iter=4, seed=0)
            assert out.shape == images.shape and torch.isfinite(out).all()
        again = attributor(small_net, images, [1, 2], max_iter=4, seed=0)
        assert torch.equal(out, again)
        assert_same(small_net, before)
    assert xai_plugins.describe("attributor", "extremal_perturbation").paper.startswith("Fong, Patrick and Vedaldi")


def test_channel_attribution_uses_the_given_layer(small_net):
    attributor = xai_plugins.get("attributor", "channel_extremal_perturbation")
    out = attributor(small_net, torch.rand(1, 3, 16, 16), 0, layer=small_net.conv1, area=0.5, max_iter=4)
    assert out.shape == (1, 3, 16, 16) and out.max().item() == pytest.approx(1.0)


class TwoInputNet(torch.nn.Module):
    """Adds the logits of an RGB image and a one-channel image of the same size, plus an offset argument."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rgb = SmallNet()
        self.depth = torch.nn.Sequential(torch.nn.Conv2d(1, 5, 3), torch.nn.AdaptiveAvgPool2d(1),
                                         torch.nn.Flatten())

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        out = self.rgb(rgb) + self.depth(depth)
        return out if offset is None else out + offset


def test_captum_attribute_conventions(small_net):
    captum_ep = pytest.importorskip("xai_plugins_captum").ExtremalPerturbation
    from captum.attr import PerturbationAttribution

    explainer = captum_ep(small_net)
    assert isinstance(explainer, PerturbationAttribution)
    images = torch.rand(2, 3, 16, 16)
    before = snapshot(small_net)
    for target in (0, [0, 3], torch.tensor([0, 3])):
        out = explainer.attribute(images, target=target, areas=(0.1, 0.2), **FAST)
        assert out.shape == images.shape and torch.isfinite(out).all()
    offset = torch.randn(2, 5)
    out = explainer.attribute(images, target=1, additional_forward_args=(offset,), **FAST)
    assert out.shape == images.shape
    assert_same(small_net, before)

    two = TwoInputNet().eval()
    depth = torch.rand(2, 1, 16, 16)
    rgb_attr, depth_attr = captum_ep(two).attribute((images, depth), target=[1, 2], additional_forward_args=offset,
                                                    **FAST)
    assert rgb_attr.shape == images.shape and depth_attr.shape == depth.shape
    assert torch.equal(rgb_attr[:, :1], depth_attr)


def test_captum_noise_tunnel_and_metrics(small_net):
    captum_ep = pytest.importorskip("xai_plugins_captum").ExtremalPerturbation
    from captum.attr import NoiseTunnel
    from captum.metrics import infidelity, sensitivity_max

    explainer = captum_ep(small_net)
    images = torch.rand(2, 3, 16, 16)
    smooth = NoiseTunnel(explainer).attribute(images, nt_samples=2, nt_type="smoothgrad", stdevs=0.05,
                                              target=[0, 1], **FAST)
    assert smooth.shape == images.shape and torch.isfinite(smooth).all()

    with torch.no_grad():
        sens = sensitivity_max(explainer.attribute, images, target=[0, 1], n_perturb_samples=2, **FAST)
    assert sens.shape == (2,) and torch.isfinite(sens).all()

    attributions = explainer.attribute(images, target=[0, 1], **FAST)

    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.01
        return noise, inputs - noise

    infid = infidelity(small_net, perturb, images, attributions, target=[0, 1], n_perturb_samples=2)
    assert infid.shape == (2,) and torch.isfinite(infid).all()


def test_captum_bad_input_messages(small_net):
    captum_ep = pytest.importorskip("xai_plugins_captum").ExtremalPerturbation
    explainer = captum_ep(small_net)
    with pytest.raises(ValueError, match="ExtremalPerturbation expects images of shape \\(N, C, H, W\\); got an "
                                         "input of shape \\(2, 48\\)"):
        explainer.attribute(torch.rand(2, 48), target=0)
    with pytest.raises(ValueError, match="tuple targets for multi-dimensional outputs are not supported"):
        explainer.attribute(torch.rand(2, 3, 8, 8), target=(0, 1))
    with pytest.raises(ValueError, match="ExtremalPerturbation needs a target"):
        explainer.attribute(torch.rand(2, 3, 8, 8))


def test_captum_layer_extremal_perturbation(small_net):
    layer_ep = pytest.importorskip("xai_plugins_captum").LayerExtremalPerturbation
    from captum.attr import LayerAttribution

    explainer = layer_ep(small_net, small_net.conv2)
    assert isinstance(explainer, LayerAttribution)
    images = torch.rand(2, 3, 16, 16)
    before = snapshot(small_net)
    out = explainer.attribute(images, target=[0, 2], areas=(0.25,), max_iter=6)
    assert out.shape == (2, 8, 16, 16) and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, out[:, :, :1, :1].expand_as(out))  # one value per channel
    offset = torch.randn(2, 5)
    out = layer_ep(small_net, small_net.conv1).attribute(images, target=1, additional_forward_args=offset,
                                                         max_iter=4)
    assert out.shape == (2, 6, 16, 16)
    assert_same(small_net, before)


def test_zennit_attributor(small_net):
    zennit_ep = pytest.importorskip("xai_plugins_zennit").ExtremalPerturbation
    from zennit.attribution import Attributor

    images = torch.rand(2, 3, 16, 16)
    before = snapshot(small_net)
    with zennit_ep(small_net, areas=(0.1, 0.3), seed=0, **FAST) as attributor:
        assert isinstance(attributor, Attributor)
        output, relevance = attributor(images, torch.eye(5)[[1, 4]])
    assert output.shape == (2, 5) and relevance.shape == images.shape and torch.isfinite(relevance).all()
    from xai_plugins.extremal import extremal_perturbation

    direct = extremal_perturbation(small_net, images, [1, 4], areas=(0.1, 0.3), seed=0, **FAST)
    assert torch.allclose(relevance, direct.saliency().expand_as(images))
    _, predicted = zennit_ep(small_net, **FAST)(images)
    assert predicted.shape == images.shape
    assert_same(small_net, before)


def test_registered_attributors_accept_tuples(small_net):
    images = torch.rand(2, 3, 16, 16)
    for name in ("extremal_perturbation", "channel_extremal_perturbation"):
        attributor = xai_plugins.get("attributor", name)
        plain = attributor(small_net, images, [0, 1], max_iter=4, seed=0)
        (as_tuple,) = attributor(small_net, (images,), [0, 1], max_iter=4, seed=0)
        assert torch.equal(plain, as_tuple)
    two = TwoInputNet().eval()
    rgb, depth = xai_plugins.get("attributor", "extremal_perturbation")(
        two, (images, torch.rand(2, 1, 16, 16)), 1, max_iter=4)
    assert rgb.shape == images.shape and depth.shape == (2, 1, 16, 16)


def test_captum_layer_extremal_perturbation_to_layer_input(small_net):
    layer_ep = pytest.importorskip("xai_plugins_captum").LayerExtremalPerturbation
    from xai_plugins.extremal import channel_extremal_perturbation

    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    before = snapshot(small_net)
    out = layer_ep(small_net, small_net.conv2).attribute(images, target=[0, 2], areas=(0.5,), max_iter=6, seed=0,
                                                         attribute_to_layer_input=True)
    assert out.shape == (2, 6, 16, 16)  # conv2's input has the 6 channels of bn, not conv2's 8 output channels
    direct = channel_extremal_perturbation(small_net, images, [0, 2], small_net.conv2, areas=(0.5,), max_iter=6,
                                           seed=0, layer_input=True)
    assert direct.layer_shape == (2, 6, 16, 16)
    assert torch.equal(out, direct.masks.sum(dim=1)[:, :, None, None].expand(2, 6, 16, 16))
    # masking conv2's input is masking bn's output through relu: the same optimisation on the bn layer
    on_bn = channel_extremal_perturbation(small_net, images, [0, 2], small_net.bn, areas=(0.5,), max_iter=6, seed=0)
    assert torch.allclose(direct.masks, on_bn.masks, atol=1e-6)
    assert_same(small_net, before)


def test_registered_attributors_take_areas_like_the_adapters(small_net):
    images = torch.rand(2, 3, 16, 16)
    attributor = xai_plugins.get("attributor", "extremal_perturbation")
    by_areas = attributor(small_net, images, [0, 1], areas=(0.2,), max_iter=4, seed=0)
    by_alias = attributor(small_net, images, [0, 1], area=(0.2,), max_iter=4, seed=0)
    assert torch.equal(by_areas, by_alias)
    with pytest.raises(TypeError, match="pass the mask areas once, as areas="):
        attributor(small_net, images, 0, areas=0.2, area=0.2, max_iter=2)


def test_host_classes_are_the_registered_attributor_through_the_bridges(small_net):
    """The Captum and Zennit classes are thin subclasses of the generic bridges: the same numbers as the registered
    attributor and as the bridge class of its name, also with extra forward arguments that follow the rows."""
    captum_adapter = pytest.importorskip("xai_plugins_captum")
    zennit_adapter = pytest.importorskip("xai_plugins_zennit")
    from xai_plugins.extremal import extremal_perturbation
    from xai_plugins_captum.bridge import RegisteredAttribution
    from xai_plugins_zennit.bridge import RegisteredAttributor

    registered = xai_plugins.describe("attributor", "extremal_perturbation")
    captum_ep = captum_adapter.ExtremalPerturbation(small_net)
    assert isinstance(captum_ep, RegisteredAttribution) and captum_ep.component is registered
    assert not captum_ep.has_convergence_delta() and not captum_ep.multiplies_by_inputs
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    options = dict(areas=(0.1, 0.2), seed=0, **FAST)
    core = extremal_perturbation(small_net, images, [1, 3], **options).saliency().expand_as(images)
    assert torch.equal(captum_ep.attribute(images, target=[1, 3], **options), core)
    assert torch.equal(captum_adapter.attribution("extremal_perturbation")(small_net).attribute(
        images, target=[1, 3], **options), core)
    assert torch.equal(xai_plugins.get("attributor", "extremal_perturbation")(small_net, images, [1, 3], **options),
                       core)
    two, depth, offset = TwoInputNet().eval(), torch.rand(2, 1, 16, 16), torch.randn(2, 5)
    joined = torch.cat([images, depth], dim=1)
    direct = extremal_perturbation(lambda x, o: two(x[:, :3], x[:, 3:], o), joined, [1, 3],
                                   additional_forward_args=(offset,), **options).saliency()
    rgb, one = captum_adapter.ExtremalPerturbation(two).attribute((images, depth), target=[1, 3],
                                                                  additional_forward_args=offset, **options)
    assert torch.equal(rgb, direct.expand_as(images)) and torch.equal(one, direct)
    zennit_ep = zennit_adapter.ExtremalPerturbation(small_net, **options)
    assert isinstance(zennit_ep, RegisteredAttributor) and zennit_ep.component is registered
    _, relevance = zennit_ep(images, torch.eye(5)[[1, 3]])
    assert torch.equal(relevance, core)


def test_captum_class_refuses_a_convergence_delta(small_net):
    captum_ep = pytest.importorskip("xai_plugins_captum").ExtremalPerturbation
    from xai_plugins.errors import HostMetadataError

    with pytest.raises(HostMetadataError, match="'extremal_perturbation' of plugin 'extremal' has no convergence "
                                                "delta"):
        captum_ep(small_net).attribute(torch.rand(1, 3, 8, 8), target=0, return_convergence_delta=True)
