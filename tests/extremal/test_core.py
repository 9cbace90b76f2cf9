"""Building blocks against the paper's definitions, batching, determinism and state restoration."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.extremal.conftest import SmallNet, assert_same, snapshot
from xai_plugins.extremal import channel_extremal_perturbation, extremal_perturbation
from xai_plugins.extremal.masks import SmoothMaskGenerator
from xai_plugins.extremal.optimiser import area_penalty, area_reference
from xai_plugins.extremal.perturbation import apply_pyramid, build_pyramid, gaussian_blur
from xai_plugins.extremal.rewards import contrastive_reward, simple_reward

FAST = dict(step=4, sigma=8, max_iter=12)


def test_generator_matches_reference_implementation():
    reference = pytest.importorskip("torchray.attribution.extremal_perturbation")
    params = torch.rand(2, 1, 8, 9, generator=torch.Generator().manual_seed(1))
    ours = SmoothMaskGenerator((50, 61), step=7, sigma=21).generate(params[:, 0])
    theirs, _ = reference.MaskGenerator((50, 61), 7, 21).generate(params)
    assert (ours - theirs[:, 0]).abs().max() < 1e-5


def test_generator_gradient_is_exact():
    generator = SmoothMaskGenerator((9, 10), step=3, sigma=3, dtype=torch.float64)
    params = torch.rand(1, *generator.param_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: generator.generate(p, margin=2), (params,))


def test_pyramid_levels_and_interpolation():
    images = torch.rand(2, 3, 20, 24)
    pyramid = build_pyramid(images, 8, "blur", 20.0)
    assert torch.equal(pyramid[:, -1], images)
    assert torch.allclose(pyramid[:, 0], gaussian_blur(images, 20.0))
    rows = torch.tensor([1, 0])
    assert torch.allclose(apply_pyramid(pyramid, torch.ones(2, 20, 24), rows), images[rows])
    assert torch.allclose(apply_pyramid(pyramid, torch.zeros(2, 20, 24), rows), pyramid[rows, 0])
    fade = build_pyramid(images, 5, "fade")
    mask = torch.rand(2, 20, 24)
    assert torch.allclose(apply_pyramid(fade, mask, torch.arange(2)), images * mask[:, None], atol=1e-6)


def test_area_penalty_is_zero_exactly_for_binary_masks_of_the_area():
    reference = area_reference((0.25,), 16, 16, torch.device("cpu"), torch.float32)
    mask = torch.zeros(1, 4, 4)
    mask[0, 1, :] = 1
    assert area_penalty(mask, reference).item() == 0
    assert area_penalty(mask * 0.5, reference).item() == pytest.approx(4 * 0.25 / 16)


def test_rewards_use_per_sample_targets_and_average_extra_dimensions():
    outputs = torch.tensor([[1.0, 3.0, 2.0], [5.0, 0.0, 4.0]])
    targets = torch.tensor([2, 0])
    assert simple_reward(outputs, targets).tolist() == [2.0, 5.0]
    assert contrastive_reward(outputs, targets).tolist() == [-1.0, 1.0]
    spatial = outputs[:, :, None, None].expand(2, 3, 2, 2)
    assert simple_reward(spatial, targets).tolist() == [2.0, 5.0]


def test_batch_equals_single_runs(small_net):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    targets = [0, 3, 1]
    batch = extremal_perturbation(small_net, images, targets, areas=(0.1, 0.3), seed=0, **FAST)
    for i in range(3):
        single = extremal_perturbation(small_net, images[i:i + 1], targets[i], areas=(0.1, 0.3), seed=0, **FAST)
        assert torch.allclose(batch.masks[i], single.masks[0], atol=1e-4)
        assert torch.allclose(batch.rewards[i], single.rewards[0], rtol=1e-4, atol=1e-5)
        assert batch.iterations[i] == single.iterations[0]


def test_deterministic_and_target_forms_agree(small_net):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    a = extremal_perturbation(small_net, images, [1, 1], seed=5, **FAST)
    b = extremal_perturbation(small_net, images, torch.tensor([1, 1]), seed=5, **FAST)
    c = extremal_perturbation(small_net, images, 1, seed=5, **FAST)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.masks, c.masks)


def test_early_stopping_drops_converged_samples(small_net):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    result = extremal_perturbation(small_net, images, 0, tol=1.0, area_tol=1.0, patience=2, step=4, sigma=8,
                                   max_iter=50)
    assert result.converged.all()
    assert (result.iterations == 3).all()


@pytest.mark.parametrize("variant", ["preserve", "delete", "dual"])
def test_variants_and_options_give_masks_in_range(small_net, variant):
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    result = extremal_perturbation(small_net, images, 2, areas=(0.2,), variant=variant, reward="contrastive",
                                   smooth=0.05, resize=(16, 20), **FAST)
    assert result.masks.shape == (1, 1, 1, 16, 20)
    assert result.masks.min() >= 0 and result.masks.max() <= 1
    assert torch.isfinite(result.rewards).all()


def test_any_number_of_channels_and_input_size():
    model = torch.nn.Sequential(torch.nn.Conv2d(5, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    images = torch.rand(2, 5, 23, 41)
    result = extremal_perturbation(model, images, [0, 3], areas=(0.1,), **FAST)
    assert result.masks.shape == (2, 1, 1, 23, 41)


def test_model_state_restored_and_training_mode_warns():
    torch.manual_seed(0)
    model = SmallNet().train()
    model.conv1.weight.requires_grad_(False)
    model.conv2.register_forward_hook(lambda *args: None)
    before = snapshot(model)
    with pytest.warns(UserWarning, match="the model is in training mode; it is explained in eval mode"):
        extremal_perturbation(model, torch.rand(1, 3, 16, 16), 0, **FAST)
    assert_same(model, before)


def test_model_state_restored_on_error(small_net):
    calls = []

    def hook(module, args, output):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")

    handle = small_net.fc.register_forward_hook(hook)
    before = snapshot(small_net)
    with pytest.raises(RuntimeError, match="boom"):
        extremal_perturbation(small_net, torch.rand(1, 3, 16, 16), 0, **FAST)
    assert_same(small_net, before)
    calls.clear()
    with pytest.raises(RuntimeError, match="boom"):
        channel_extremal_perturbation(small_net, torch.rand(1, 3, 16, 16), 0, small_net.conv2, max_iter=10)
    assert_same(small_net, before)
    handle.remove()


def test_progress_bar(small_net, capsys):
    extremal_perturbation(small_net, torch.rand(1, 3, 16, 16), 0, progress=True, **FAST)
    assert "extremal perturbation" in capsys.readouterr().err


def test_area_domain_extended_follows_the_reference_convention(small_net):
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    image = extremal_perturbation(small_net, images, 0, areas=(0.2,), step=4, sigma=8, max_iter=40)
    extended = extremal_perturbation(small_net, images, 0, areas=(0.2,), step=4, sigma=8, max_iter=40,
                                     area_domain="extended")
    assert extended.areas_achieved.item() > image.areas_achieved.item() + 0.05  # counts the margin too
    with pytest.raises(ValueError, match="area_domain must be 'image' or 'extended'; got 'full'"):
        extremal_perturbation(small_net, images, 0, area_domain="full", max_iter=2)



@pytest.mark.parametrize("size", [(32, 32), (23, 41), (48, 40)])
def test_exact_area_meets_each_requested_area(small_net, size):
    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(7))
    areas = (0.05, 0.1, 0.2, 0.4)
    result = extremal_perturbation(small_net, images, [0, 2], areas=areas, seed=0, **FAST)
    assert torch.allclose(result.areas_achieved, result.masks.mean(dim=(2, 3, 4)), atol=1e-6)
    assert (result.areas_achieved - result.areas_achieved.new_tensor(areas)).abs().max() <= 1e-3


def test_masks_do_not_depend_on_the_scale_of_the_scores(small_net):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(11))
    kwargs = dict(areas=(0.1, 0.3), seed=0, exact_area=False, **FAST)
    plain = extremal_perturbation(small_net, images, [0, 1], **kwargs)
    scaled = extremal_perturbation(lambda x: 1000 * small_net(x), images, [0, 1], **kwargs)
    assert torch.allclose(plain.masks, scaled.masks, atol=1e-4)
    assert torch.allclose(1000 * plain.rewards, scaled.rewards, rtol=1e-4)
    fixed = extremal_perturbation(lambda x: 1000 * small_net(x), images, [0, 1], reward_scale=20.0, **kwargs)
    assert not torch.allclose(plain.masks, fixed.masks, atol=1e-2)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), height=st.integers(5, 30), width=st.integers(5, 30), step=st.integers(1, 5),
       sigma=st.floats(1.0, 8.0), margin=st.integers(0, 6), block=st.sampled_from([1, 97, 4096, 1 << 30]),
       seed=st.integers(0, 2**16))
def test_generator_does_not_depend_on_its_block_size(batch, height, width, step, sigma, margin, block,
                                                     seed):
    """The smooth max runs over blocks of cell rows; every block size gives the same masks and gradients,
    because each value is computed by the same operations (exact equality, not a tolerance)."""
    import xai_plugins.extremal.masks as masks_module

    generator = SmoothMaskGenerator((height, width), step=step, sigma=sigma)
    params = torch.rand(batch, *generator.param_shape, generator=torch.Generator().manual_seed(seed))
    weights = torch.rand(batch, height + 2 * margin, width + 2 * margin, generator=torch.Generator().manual_seed(1))

    def run(elements: int) -> tuple[torch.Tensor, torch.Tensor]:
        saved = masks_module.CHUNK_ELEMENTS
        masks_module.CHUNK_ELEMENTS = elements
        try:
            p = params.clone().requires_grad_(True)
            mask = generator.generate(p, margin)
            (grad,) = torch.autograd.grad((mask * weights).sum(), p)
        finally:
            masks_module.CHUNK_ELEMENTS = saved
        return mask.detach(), grad

    mask, grad = run(block)
    whole_mask, whole_grad = run(1 << 40)
    assert torch.equal(mask, whole_mask)
    assert torch.equal(grad, whole_grad)
