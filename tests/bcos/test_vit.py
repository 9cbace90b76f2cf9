"""B-cos Simple ViT / ViT-C against the authors' ``bcos`` package, and their completeness with the positional
embedding's contribution accounted for. Skips the comparisons without ``bcos`` (and its ``einops``)."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn

from xai_plugins.bcos import authors, contributions, create_model, encode_input
from xai_plugins.bcos.vit import positional_contribution

SMALL = {"dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64}


def authors_vit(patch_size: int, conv_stem: list[int] | None, num_classes: int = 10) -> nn.Module:
    pytest.importorskip("einops")
    modules = pytest.importorskip("bcos.modules")
    from bcos.models.vit import SimpleViT
    from bcos.modules.common import BcosSequential

    norms = modules.norms
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # they warn when their builders are called directly
        body = SimpleViT(image_size=32, patch_size=patch_size, num_classes=num_classes, dim=32, depth=2, heads=2,
                         mlp_dim=64, channels=6, linear_layer=functools.partial(modules.BcosLinear, b=2),
                         norm_layer=norms.NoBias(norms.DetachableLayerNorm), act_layer=nn.Identity,
                         norm2d_layer=norms.NoBias(norms.DetachableGNLayerNorm2d),
                         conv2d_layer=functools.partial(modules.BcosConv2d, b=2), conv_stem=conv_stem)
    return BcosSequential(body, modules.LogitLayer(logit_bias=-torch.log(torch.tensor(9.0)).item()))


@torch.no_grad()
def randomise(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.dim() == 1:
            p.copy_(0.5 + torch.rand(p.shape, generator=generator, dtype=p.dtype))
    return model.eval()


@pytest.mark.parametrize("variant", ["patch8", "conv_stem"])
def test_vit_equals_the_authors(variant):
    torch.manual_seed(0)
    stem = [8, 16] if variant == "conv_stem" else None
    patch = 8 if stem is None else 2  # 4 x 4 tokens either way (the stem strides by 4)
    reference = randomise(authors_vit(patch, stem).double(), 1)
    name = "bcos_simple_vit_ti_patch16_224" if stem is None else "bcos_vitc_ti_patch1_14"
    kwargs = {**SMALL, "patch_size": patch} if stem is None else {**SMALL, "stem": (8, 16)}
    model = create_model(name, num_classes=10, **kwargs, **({"patch_size": patch} if stem else {})).double()
    model.load_state_dict(authors.from_authors_state_dict(reference.state_dict()))
    model.eval()
    x6 = encode_input(torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        expected = reference(x6)
        got = model(x6)
    assert (got - expected).abs().max() <= 1e-6 * expected.abs().max()
    target = expected.argmax(1)
    x = x6.clone().requires_grad_(True)
    with reference.explanation_mode():
        (w_ref,) = torch.autograd.grad(reference(x).gather(1, target[:, None]).sum(), x)
    result = contributions(model, x6, target)
    assert (result.dynamic_weights - w_ref).abs().max() <= 1e-6 * w_ref.abs().max()
    # completeness once the positional embedding's own contribution is counted
    pe = positional_contribution(model, x6, target)
    explained = result.explained_logits - result.logit_bias
    total = result.contributions.flatten(1).sum(1) + pe
    assert (total - explained).abs().max() <= 1e-9 * explained.abs().max()
    assert pe.abs().max() > 1e-6 * explained.abs().max(), "the embedding contributes; the test would be vacuous"


@pytest.mark.parametrize("name", ["bcos_simple_vit_s_patch16_224", "bcos_vitc_b_patch1_14", "bcos_vitc_l_patch1_14"])
def test_full_size_vit_layouts_equal_the_authors(name):
    pytest.importorskip("einops")
    modules = pytest.importorskip("bcos.modules")
    import importlib

    from bcos.modules.common import BcosSequential

    from xai_plugins.bcos.zoo import MODELS

    norms = modules.norms
    module, _, attr = MODELS[name].authors_builder.partition(":")
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = getattr(importlib.import_module(module), attr)(
            num_classes=1000, channels=6, linear_layer=modules.BcosLinear,
            norm_layer=norms.NoBias(norms.DetachableLayerNorm), act_layer=nn.Identity,
            norm2d_layer=norms.NoBias(norms.DetachableGNLayerNorm2d), conv2d_layer=modules.BcosConv2d)
        theirs = BcosSequential(body, modules.LogitLayer(logit_bias=0.0))
        ours = create_model(name, num_classes=1000)
    mapped = {k: tuple(v.shape) for k, v in authors.from_authors_state_dict(theirs.state_dict()).items()}
    assert mapped == {k: tuple(v.shape) for k, v in ours.state_dict().items()}


def test_vit_encodes_images_and_names_a_wrong_channel_count():
    torch.manual_seed(0)
    model = create_model("bcos_simple_vit_ti_patch16_224", num_classes=4, patch_size=8, **SMALL).double().eval()
    images = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    result = contributions(model, images, 1)
    assert result.encoded and result.contributions.shape == (1, 6, 16, 16)
    with pytest.raises(ValueError, match=r"the B-cos ViT expects 6 input channels.*encode_input"):
        model(images)
