"""B-cosification: to_bcos of torchvision ResNet, VGG and DenseNet, bias removal, fine-tuning, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.bcos.conftest import assert_same_state, calibrate, model_state
from xai_plugins.bcos import BcosConv2d, BcosLinear, contributions, encode_input, set_b, to_bcos
from xai_plugins.bcos.convert import Bcosified
from xai_plugins.bcos.norms import BatchNormUncentered2d
from xai_plugins.bcos.train import bcosify_finetune

torchvision = pytest.importorskip("torchvision")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def randomise_norms(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics and affine parameters, so the equivalence test means something."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
    return model.eval()


def small_vgg() -> nn.Module:
    model = torchvision.models.vgg11_bn(num_classes=10)
    model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 64), nn.ReLU(True), nn.Dropout(),
                                     nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 10))
    return model


BUILDERS = {
    "resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "resnet50": lambda: torchvision.models.resnet50(num_classes=10),
    "vgg11_bn": small_vgg,
    "densenet121": lambda: torchvision.models.densenet121(num_classes=10),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_b1_conversion_reproduces_outputs(name):
    torch.manual_seed(0)
    model = randomise_norms(BUILDERS[name]())
    before = model_state(model)
    converted = to_bcos(model, b=1, mean=MEAN, std=STD, variant="folded").eval()
    assert_same_state(before, model_state(model))
    assert not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in converted.modules())
    x = torch.rand(2, 3, 32, 32)
    normalised = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model(normalised)
        got = converted(encode_input(x))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_b1_conversion_without_normalisation():
    torch.manual_seed(0)
    model = randomise_norms(torchvision.models.resnet18(num_classes=5))
    converted = to_bcos(model, variant="folded").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(converted(encode_input(x)), expected, rtol=1e-5,
                                   atol=1e-5 * expected.abs().max().item())
    first = converted.conv1
    assert isinstance(first, BcosConv2d) and first.in_channels == 6 and first.b == 1.0
    assert torch.equal(first.weight[:, 3:], torch.zeros_like(first.weight[:, 3:]))


def test_removing_biases_makes_contributions_complete():
    torch.manual_seed(0)
    model = randomise_norms(torchvision.models.resnet18(num_classes=6))
    converted = to_bcos(model, b=2, mean=MEAN, std=STD, remove_biases=True, variant="folded").double()
    assert isinstance(converted, Bcosified)
    assert all(m.bias is None for m in converted.modules() if isinstance(m, (BcosConv2d, BcosLinear)))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    x6 = encode_input(torch.rand(2, 3, 32, 32, dtype=torch.float64))
    converted.eval()
    result = contributions(converted, x6, [0, 5])
    explained = result.explained_logits - result.logit_bias
    torch.testing.assert_close(result.contributions.flatten(1).sum(1), explained, rtol=1e-6, atol=0)
    assert result.logit_bias == pytest.approx(-torch.log(torch.tensor(5.0)).item())


def test_unsupported_architecture_lists_supported_and_leaves_model_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    before = model_state(model)
    with pytest.raises(TypeError) as info:
        to_bcos(model)
    assert str(info.value) == (
        "to_bcos cannot convert a torch.nn.modules.container.Sequential; supported architectures are "
        "torchvision's ResNet (resnet18/34/50/101/152, ResNeXt, Wide ResNet); VGG (vgg11..vgg19, with or without "
        "batch norm); DenseNet (densenet121/161/169/201)")
    assert_same_state(before, model_state(model))


def test_b_below_one_rejected_and_model_untouched():
    model = torchvision.models.resnet18(num_classes=3)
    before = model_state(model)
    with pytest.raises(ValueError, match=r"b must be a finite number >= 1 .* got b = 0.5"):
        to_bcos(model, b=0.5)
    with pytest.raises(ValueError, match="one value per input channel"):
        to_bcos(model, mean=(0.5, 0.5), std=STD)
    assert_same_state(before, model_state(model))
    converted = to_bcos(model)
    with pytest.raises(ValueError, match=r"b must be a finite number >= 1"):
        set_b(converted, 0.9)
    assert {m.b for m in converted.modules() if isinstance(m, (BcosConv2d, BcosLinear))} == {1.0}


def test_bcosify_finetune_raises_b_and_stays_complete():
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    converted = to_bcos(torchvision.models.resnet18(num_classes=4), remove_biases=True, variant="folded")
    data = TensorDataset(torch.rand(16, 3, 16, 16), torch.randint(0, 4, (16,)))
    calibrate(converted, encode_input(data.tensors[0]))
    losses = bcosify_finetune(converted, data, epochs=1, b=2.0, b_warmup_fraction=0.5, batch_size=8)
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses)).all()
    assert {m.b for m in converted.modules() if isinstance(m, (BcosConv2d, BcosLinear))} == {2.0}
    assert not converted.training
    converted.double()
    result = contributions(converted, encode_input(data.tensors[0][:2].double()), 1)
    explained = result.explained_logits - result.logit_bias
    torch.testing.assert_close(result.contributions.flatten(1).sum(1), explained, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_remove_biases_keeps_dtype_and_runs_in_it(dtype):
    """Every floating tensor of the converted model has the original's dtype, the uncentered norms hold the
    original running variances and scales exactly, and the model runs (and explains) in that dtype."""
    torch.manual_seed(0)
    model = randomise_norms(torchvision.models.resnet18(num_classes=4)).to(dtype)
    converted = to_bcos(model, b=2, mean=MEAN, std=STD, remove_biases=True, variant="folded").eval()
    dtypes = {t.dtype for t in [*converted.parameters(), *converted.buffers()] if t.is_floating_point()}
    assert dtypes == {dtype}
    originals = dict(model.named_modules())
    for name, module in converted.model.named_modules():  # the folded variant keeps the module names
        if isinstance(module, BatchNormUncentered2d):
            assert torch.equal(module.running_var, originals[name].running_var)
            assert torch.equal(module.weight, originals[name].weight)
    x6 = encode_input(torch.rand(1, 3, 32, 32, dtype=dtype))
    with torch.no_grad():
        assert converted(x6).dtype == dtype
    result = contributions(converted, x6, 0)
    assert result.contributions.dtype == dtype
    if dtype == torch.float64:
        scale = result.explained_logits.abs().max().item()
        assert result.delta.abs().max().item() <= 1e-9 * scale


def test_remove_biases_keeps_device():
    """Built on the meta device (no memory), the converted model's tensors stay on it."""
    with torch.device("meta"):
        model = torchvision.models.resnet18(num_classes=4)
    converted = to_bcos(model, b=2, remove_biases=True)
    assert {t.device.type for t in [*converted.parameters(), *converted.buffers()]} == {"meta"}


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "densenet121"])
def test_paper_variant_is_the_original_up_to_its_average_pooling(name):
    """The paper's input handling ([x̃, -x̃] read with [W, -W] / 2) and a ResNet's classifier moved before
    pooling are exact at b = 1: with the max poolings of the original also made average poolings, outputs
    are equal."""
    torch.manual_seed(0)
    model = randomise_norms(BUILDERS[name]())
    before = model_state(model)
    converted = to_bcos(model, b=1, mean=MEAN, std=STD).eval()
    assert_same_state(before, model_state(model))
    assert not any(isinstance(m, nn.MaxPool2d) for m in converted.modules())
    first = next(m for m in converted.modules() if isinstance(m, BcosConv2d))
    torch.testing.assert_close(first.weight[:, 3:], -first.weight[:, :3])
    reference = copy.deepcopy(model)
    for module_name, module in list(reference.named_modules()):
        if isinstance(module, nn.MaxPool2d):
            parent, _, child = module_name.rpartition(".")
            setattr(reference.get_submodule(parent) if parent else reference, child,
                    nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode))
    x = torch.rand(2, 3, 32, 32)
    normalised = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference(normalised)
        got = converted(encode_input(x))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    if name == "resnet18":
        assert isinstance(converted[1].fc, nn.Identity)
        assert isinstance(converted[1].avgpool[0], BcosConv2d) and converted[1].avgpool[0].kernel_size == (1, 1)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant must be one of 'paper', 'folded'"):
        to_bcos(torchvision.models.resnet18(num_classes=3), variant="theirs")
