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


@pytest.fixture(scope="module")
def densenet(randomise_bn):
    from xai_plugins.evaluation.training import build_model

    torch.manual_seed(0)
    model = build_model("densenet").eval()
    randomise_bn(model, 1)
    return model


def test_untangled_densenet_methods_conserve_and_differ_from_the_threshold_variant(densenet):
    """The untangled DenseNet canonization (``lrp_zennit_untangled``, ``lrp_captum_untangled``) explains the
    same model as the threshold canonizer, conserves with gamma 0, restores the model, and only applies to the
    DenseNet recipes."""
    from xai_plugins_workbench.methods import METHODS

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    before = _snapshot(densenet)
    logits = densenet(x).detach()[:, 4]
    gammas = {"low": 0.0, "mid": 0.0, "high": 0.0}
    untangled = zennit_lrp(densenet, x, 4, LrpConfig(gammas=gammas, untangled=True))
    threshold = zennit_lrp(densenet, x, 4, LrpConfig(gammas=gammas))
    captum = METHODS["lrp_captum_untangled"].fn(densenet, x, torch.tensor([4, 4]))
    _same(before, _snapshot(densenet))
    assert untangled.shape == x.shape and torch.isfinite(untangled).all()
    assert torch.allclose(captum.flatten(1).sum(1), logits, rtol=0.02)
    assert not torch.allclose(untangled, threshold)
    for name in ("lrp_zennit_untangled", "lrp_captum_untangled"):
        assert [r for r in ("resnet", "densenet", "densenet_textured", "bcos") if METHODS[name].applies_to(r)] == \
            ["densenet", "densenet_textured"]


def test_convolutions_a_canonizer_adds_get_the_rule_of_their_original(densenet):
    """The untangled canonizer copies producing convolutions (``xai_conv2.N`` beside ``conv2``); the composite
    gives each copy the Gamma rule of the layer group of the convolution it copies."""
    from zennit.rules import Gamma

    from xai_plugins_workbench.lrp import zennit_composite

    _, groups = conv_groups(densenet)
    composite = zennit_composite(densenet, LrpConfig(), (1, 3, 32, 32))
    conv = torch.nn.Conv2d(8, 8, 3)
    for original in ("features.denseblock1.denselayer1.conv2", "features.denseblock3.denselayer1.conv2"):
        copy = composite.module_map({}, original.replace("conv2", "xai_conv2.1"), conv)
        assert isinstance(copy, Gamma) and copy is composite.module_map({}, original, conv)
        assert groups[original] in ("low", "high")
