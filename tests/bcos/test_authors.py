"""Our B-cos models against the authors' ``bcos`` package (B-cos v2): their state dicts load into ours, and
logits and explanations are then equal.

Every architecture both have is built by the authors' own builder (``pretrained=False``, their uncentered batch
norm, float64), calibrated, given random norm weights, saved to a file, and loaded with ``create_model`` /
``load_weights``. In float64 the two implementations agree to ~1e-14; the bound 1e-6 (relative to the largest
value) leaves room for different summation orders without hiding a wrong weight (which gives O(1) errors).
Widths are reduced where the builders allow it (stem width, growth): the depth, block structure and key layout
are the registered ones. Skips without the ``bcos`` package (it is installed in CI).
"""

from __future__ import annotations

import functools
import importlib

import pytest
import torch
from torch import nn

from xai_plugins.bcos import authors, contributions, create_model, encode_input, load_weights
from xai_plugins.bcos.explain import logit_bias
from xai_plugins.bcos.zoo import MODELS

bcos_modules = pytest.importorskip("bcos.modules")

NUM_CLASSES = 10
TOLERANCE = 1e-6

CONVNEXT_DEPTHS = {"atto": (2, 2, 6, 2), "tiny": (3, 3, 9, 3), "small": (3, 3, 27, 3), "base": (3, 3, 27, 3),
                   "large": (3, 3, 27, 3)}
DENSE_BLOCKS = {121: (6, 12, 24, 16), 161: (6, 12, 36, 24), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}

CASES: dict[str, tuple[dict, dict, int]] = {
    # name: (our kwargs, the authors' kwargs, image size); "blocks" means the authors' BcosDenseNet class with
    # those blocks at growth 8 (their densenet161/169/201 builders fix the growth), "classifier_width" means
    # their VGG with its 4096-wide classifier rebuilt from their layers at that width (for memory)
    "bcos_resnet18": ({}, {}, 32),
    "bcos_resnet34": ({"width": 16}, {"inplanes": 16}, 64),
    "bcos_resnet50": ({"width": 16}, {"inplanes": 16}, 64),
    "bcos_resnet101": ({"width": 8}, {"inplanes": 8}, 64),
    "bcos_resnet152": ({"width": 8}, {"inplanes": 8}, 64),
    "bcos_resnext50_32x4d": ({"width": 16}, {"inplanes": 16}, 64),
    "bcos_wide_resnet50_2": ({"width": 8}, {"inplanes": 8}, 64),
    **{f"bcos_vgg{d}": ({"classifier_width": 64}, {"classifier_width": 64}, 32) for d in (11, 13, 16, 19)},
    **{f"bcos_densenet{d}": ({"growth": 8, "init_features": 16}, {"blocks": blocks}, 64)
       for d, blocks in DENSE_BLOCKS.items()},
    # ConvNeXt: the authors' BcosConvNeXt class at widths 8-32 with the size's depths, their default norm
    # (centered position norm, eps 1e-6) as in their "_pn" checkpoints
    **{f"bcos_convnext_{size}": ({"widths": (8, 16, 24, 32)}, {"convnext": depths}, 32)
       for size, depths in CONVNEXT_DEPTHS.items()},
}


def test_every_model_with_an_authors_counterpart_is_compared():
    """Every CNN here; the ViTs are compared in test_vit.py."""
    assert {n for n, e in MODELS.items() if e.authors_builder and "vit" not in n} == set(CASES)


def authors_builder(name: str):
    module, _, attr = MODELS[name].authors_builder.partition(":")
    return getattr(importlib.import_module(module), attr)


def authors_model(name: str, kwargs: dict, norm: object | None = None) -> nn.Module:
    """The authors' network for one of our model names, as their training config builds it (b = 2)."""
    norms = bcos_modules.norms
    norm = norms.NoBias(norms.BatchNormUncentered2d) if norm is None else norm
    conv = functools.partial(bcos_modules.BcosConv2d, b=2, max_out=1)
    kwargs = dict(kwargs)
    if "convnext" in kwargs:
        from bcos.models.convnext import BcosConvNeXt, CNBlockConfig

        widths = (8, 16, 24, 32)
        setting = [CNBlockConfig(w, widths[i + 1] if i < 3 else None, d)
                   for i, (w, d) in enumerate(zip(widths, kwargs.pop("convnext")))]
        return BcosConvNeXt(setting, num_classes=NUM_CLASSES, conv_layer=conv)
    if "blocks" in kwargs:
        from bcos.models.densenet import BcosDenseNet

        return BcosDenseNet(8, kwargs.pop("blocks"), 16, num_classes=NUM_CLASSES, norm_layer=norm, conv_layer=conv)
    width = kwargs.pop("classifier_width", None)
    if width is None:
        return authors_builder(name)(num_classes=NUM_CLASSES, norm_layer=norm, conv_layer=conv, **kwargs)
    from bcos.models.vgg import cfgs, make_layers

    with torch.device("meta"):  # skips initialising the 4096-wide classifier that is replaced below
        model = authors_builder(name)(num_classes=NUM_CLASSES, norm_layer=norm, conv_layer=conv, **kwargs)
    layout = {"bcos_vgg11": "A", "bcos_vgg13": "B", "bcos_vgg16": "D", "bcos_vgg19": "E"}[name]
    model.features = make_layers(cfgs[layout], norm_layer=norm, conv_layer=conv)
    model.classifier = nn.Sequential(conv(512, width, kernel_size=7, padding=3), conv(width, width),
                                     conv(width, NUM_CLASSES))
    return model


@pytest.mark.parametrize("name", sorted(CASES))
def test_full_size_layouts_equal_the_authors(name):
    """At the published sizes (built on the meta device, no memory), every key and shape of the authors'
    state dict, mapped, is one of ours and vice versa."""
    norms = bcos_modules.norms
    conv = functools.partial(bcos_modules.BcosConv2d, b=2, max_out=1)
    norm = {} if "convnext" in name else {"norm_layer": norms.NoBias(norms.BatchNormUncentered2d)}
    with torch.device("meta"):
        theirs = authors_builder(name)(num_classes=1000, conv_layer=conv, **norm)
        ours = create_model(name, num_classes=1000)
    for m in theirs.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = None  # zeros in every real checkpoint; the meta device cannot check that
    mapped = {k: tuple(v.shape) for k, v in authors.from_authors_state_dict(theirs.state_dict()).items()}
    assert mapped == {k: tuple(v.shape) for k, v in ours.state_dict().items()}


@torch.no_grad()
def calibrate_and_randomise(model: nn.Module, x: torch.Tensor, seed: int) -> nn.Module:
    """Running variances from one batch (so deep nets do not shrink to zero) and random norm weights (so a
    mis-mapped norm cannot go unnoticed)."""
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.momentum = 1.0
    model.train()(x)
    for m in norms:
        m.momentum = 0.1
    for name, p in model.named_parameters():  # norm weights and ConvNeXt layer scales (1e-6 at init)
        if p.dim() == 1 or name.endswith("layer_scale"):
            p.copy_(0.5 + torch.rand(p.shape, generator=generator, dtype=p.dtype))
    return model.eval()


def authors_explanation(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and W(x)[target] the authors' way: the input gradient inside their explanation mode."""
    x = x.detach().clone().requires_grad_(True)
    with model.explanation_mode():
        logits = model(x)
        (weights,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)
    return logits.detach(), weights


def assert_equal(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    error = (got - expected).abs().max().item() / expected.abs().max().item()
    assert error <= TOLERANCE, f"{what}: relative error {error:.3g} > {TOLERANCE:g}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_authors_state_dict_loads_and_gives_the_same_logits_and_explanations(name, tmp_path):
    ours_kwargs, their_kwargs, size = CASES[name]
    torch.manual_seed(0)
    images = torch.rand(2, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x6 = encode_input(images)
    reference = authors_model(name, their_kwargs).double()
    calibrate_and_randomise(reference, x6, seed=2)
    path = tmp_path / "authors.pth"
    torch.save(reference.state_dict(), path)

    model = create_model(name, num_classes=NUM_CLASSES, **ours_kwargs).double()
    load_weights(model, path)
    model.eval()
    with torch.no_grad():
        expected_logits = reference(x6)
        assert_equal(model(x6), expected_logits, "logits")
    assert logit_bias(model) == pytest.approx(reference.logit_layer.logit_bias, abs=1e-15)
    target = (expected_logits - logit_bias(model)).abs().argmax(1)
    _, expected_weights = authors_explanation(reference, x6, target)
    result = contributions(model, x6, target)
    assert_equal(result.dynamic_weights, expected_weights, "dynamic weights W(x)")
    assert_equal(result.contributions, x6 * expected_weights, "contributions")
    scale = result.explained_logits.abs().max().item()
    assert result.delta.abs().max().item() <= 1e-9 * scale


def test_float32_checkpoint_loads_through_create_model(tmp_path):
    """The common path: a float32 checkpoint file straight into ``create_model(name, weights=FILE)``. Float32
    rounding differs between the implementations, so both are compared with the exact (float64) result of the
    authors' network: ours must be as close to it as the authors' own float32 model is (within a factor 4)."""
    torch.manual_seed(0)
    x6 = encode_input(torch.rand(2, 3, 32, 32))
    reference = calibrate_and_randomise(authors_model("bcos_resnet18", {}), x6, seed=3)
    path = tmp_path / "resnet_18.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("bcos_resnet18", num_classes=NUM_CLASSES, weights=path).eval()
    with torch.no_grad():
        ours, theirs = model(x6).double(), reference(x6).double()
        exact = reference.double()(x6.double())
    ours_error, their_error = (ours - exact).abs().max().item(), (theirs - exact).abs().max().item()
    assert ours_error <= 4 * their_error + 1e-7 * exact.abs().max().item(), (ours_error, their_error)


def test_lightning_checkpoint_is_unwrapped():
    reference = authors_model("bcos_resnet18", {"inplanes": 8})
    state = {"state_dict": {f"model.{k}": v for k, v in reference.state_dict().items()}, "epoch": 3}
    converted = authors.from_authors_state_dict(state)
    model = create_model("bcos_resnet18", num_classes=NUM_CLASSES, width=8)
    model.load_state_dict(converted)
    assert "conv1.weight" in converted and not any("linear" in k or "running_mean" in k for k in converted)


def test_centered_or_biased_checkpoints_are_refused_with_the_reason():
    reference = authors_model("bcos_resnet18", {"inplanes": 8})
    state = reference.state_dict()
    state["bn1.running_mean"] = torch.full_like(state["bn1.running_mean"], 0.5)
    with pytest.raises(ValueError, match=r"bn1.running_mean is non-zero: .*centered"):
        authors.from_authors_state_dict(state)
    state = reference.state_dict()
    state["bn1.bias"] = torch.zeros(8)
    with pytest.raises(ValueError, match=r"bn1.bias: this checkpoint has a bias"):
        authors.from_authors_state_dict(state)


def test_wrong_architecture_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(authors_model("bcos_resnet34", {"inplanes": 8}).state_dict(), path)
    model = create_model("bcos_resnet18", num_classes=NUM_CLASSES, width=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = r"(?s)resnet34.pth do not fit this BcosResNet \(model left unchanged\).*not in the model: layer1.2"
    with pytest.raises(RuntimeError, match=expected):
        load_weights(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_centered_position_norm_models_equal_the_authors_default():
    """The authors' builders default to a centered, bias-free position norm; ``norm="position_centered"``
    gives the same network (state dicts load, outputs and explanations equal)."""
    norms = bcos_modules.norms
    torch.manual_seed(0)
    reference = authors_model("bcos_resnet18", {"inplanes": 16}, norms.NoBias(norms.DetachablePositionNorm2d))
    reference = reference.double().eval()
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=generator, dtype=torch.float64))
    model = create_model("bcos_resnet18", num_classes=NUM_CLASSES, width=16, norm="position_centered").double()
    model.load_state_dict(authors.from_authors_state_dict(reference.state_dict()))
    model.eval()
    x6 = encode_input(torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=generator))
    with torch.no_grad():
        expected_logits = reference(x6)
        assert_equal(model(x6), expected_logits, "logits")
    target = (expected_logits - logit_bias(model)).abs().argmax(1)
    _, expected_weights = authors_explanation(reference, x6, target)
    result = contributions(model, x6, target)
    assert_equal(result.dynamic_weights, expected_weights, "dynamic weights W(x)")
    assert result.delta.abs().max().item() <= 1e-9 * result.explained_logits.abs().max().item()
