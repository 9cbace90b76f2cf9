"""LRP through Zennit and Captum: canonization matters on a BatchNorm model, the model is left as it was."""

from __future__ import annotations

import pytest
import torch

from xai_plugins.evaluation.training import load_checkpoint
from xai_plugins_workbench.lrp import LrpConfig, captum_lrp, conv_groups, zennit_lrp

pytest.importorskip("zennit")
pytest.importorskip("captum")


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, model.training,
            [(m._forward_hooks.copy(), m._forward_pre_hooks.copy(), m._backward_hooks.copy()) for m in model.modules()],
            [sorted(vars(m)) for m in model.modules()])


def _same(a, b):
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1] == b[1]
    assert [tuple(len(h) for h in hooks) for hooks in a[2]] == [tuple(len(h) for h in hooks) for hooks in b[2]]
    assert a[3] == b[3]


@pytest.fixture(scope="module")
def resnet(checkpoint_dir):
    return load_checkpoint("resnet", checkpoint_dir)


def test_layer_groups_cover_every_convolution_after_the_first(resnet):
    first, groups = conv_groups(resnet)
    convs = [n for n, m in resnet.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert first == convs[0] == "conv1"
    assert list(groups) == convs[1:]
    assert set(groups.values()) == {"low", "mid", "high"}
    order = ["low", "mid", "high"]
    assert [order.index(g) for g in groups.values()] == sorted(order.index(g) for g in groups.values())


def test_zennit_canonized_conserves_and_plain_does_not(resnet):
    """With gamma 0 everywhere and zero-bias ZBox, canonized LRP on a BN ResNet sums to the logit; without
    canonization the skipped BatchNorms break conservation by a large factor."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    before = _snapshot(resnet)
    logits = resnet(x).detach()[:, 3]
    config = LrpConfig(gammas={"low": 0.0, "mid": 0.0, "high": 0.0})
    canonized = zennit_lrp(resnet, x, 3, config)
    plain = zennit_lrp(resnet, x, 3, LrpConfig(gammas=config.gammas, canonize=False))
    _same(before, _snapshot(resnet))
    assert canonized.shape == x.shape
    ratio_c = (canonized.flatten(1).sum(1) / logits)
    ratio_p = (plain.flatten(1).sum(1) / logits)
    assert torch.isfinite(ratio_c).all()
    assert float((ratio_p - 1).abs().max()) > 5 * float((ratio_c - 1).abs().max())


def test_captum_lrp_restores_the_model_and_canonization_conserves(resnet):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    before = _snapshot(resnet)
    logits = resnet(x).detach()[:, 2]
    canonized = captum_lrp(resnet, x, torch.tensor([2, 2]), canonize=True)
    plain = captum_lrp(resnet, x, 2, canonize=False)
    _same(before, _snapshot(resnet))
    assert torch.allclose(canonized.flatten(1).sum(1), logits, rtol=0.02)
    assert not torch.allclose(plain.flatten(1).sum(1), logits, rtol=0.5)
