"""Channel extremal perturbations: the kept channels are those the logit depends on."""

from __future__ import annotations

import torch

from xai_plugins.extremal import channel_extremal_perturbation


class ChannelModel(torch.nn.Module):
    """Logit 0 reads channels 1 and 6 of an 8-channel feature map, logit 1 reads channel 3."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Conv2d(3, 8, 1, bias=False)
        with torch.no_grad():
            self.features.weight.fill_(0.1)
            self.features.weight[:, :, 0, 0] += torch.arange(8.0)[:, None] * 0.01

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.features(x)).mean(dim=(2, 3))
        return torch.stack([10 * (h[:, 1] + h[:, 6]), 10 * h[:, 3]], dim=1)


def test_channel_masks_keep_the_channels_the_logit_reads():
    model = ChannelModel().eval()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    result = channel_extremal_perturbation(model, images, [0, 1], model.features, areas=(0.25, 0.125), seed=0)
    assert result.masks.shape == (2, 2, 8)
    assert result.layer_shape == (2, 8, 8, 8)
    assert set(result.masks[0, 0].topk(2).indices.tolist()) == {1, 6}
    assert result.masks[1, 1].argmax().item() == 3
    assert (result.areas_achieved - torch.tensor([0.25, 0.125])).abs().max() <= 0.02


def test_channel_batch_equals_single_runs():
    model = ChannelModel().eval()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    batch = channel_extremal_perturbation(model, images, [0, 1], model.features, areas=(0.25,), max_iter=20)
    for i in range(2):
        single = channel_extremal_perturbation(model, images[i:i + 1], [0, 1][i], model.features, areas=(0.25,),
                                               max_iter=20)
        assert torch.allclose(batch.masks[i], single.masks[0], atol=1e-5)


def test_channel_and_input_masks_share_one_loop_and_one_reward_convention():
    from xai_plugins.extremal import channels, optimiser, spatial

    assert channels.optimise is optimiser.optimise and spatial.optimise is optimiser.optimise
    assert channels.reward_scale_of_rows is spatial.reward_scale_of_rows is optimiser.reward_scale_of_rows
    model = ChannelModel().eval()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    kwargs = dict(areas=(0.25,), max_iter=20, seed=0)
    plain = channel_extremal_perturbation(model, images, [0, 1], model.features, **kwargs)
    scaled = channel_extremal_perturbation(lambda x: 1000 * model(x), images, [0, 1], model.features, **kwargs)
    assert torch.allclose(plain.masks, scaled.masks, atol=1e-4)  # divided by the reward span, as input masks
    fixed = channel_extremal_perturbation(lambda x: 1000 * model(x), images, [0, 1], model.features,
                                          reward_scale=1.0, **kwargs)
    assert not torch.allclose(plain.masks, fixed.masks, atol=1e-2)
