"""The example plugin's components used through Captum, Zennit, ``create_model`` and ``fix_spatial_filters``,
exactly as a user gets them after ``pip install xai-plugins-example`` (the plugin itself holds no host code)."""

import torch
from captum.attr import GradientAttribution, InputXGradient, NoiseTunnel
from xai_plugins_example.canonizers import SequentialMergeBatchNorm
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat

import xai_plugins
from xai_plugins.explainfix import fix_spatial_filters
from xai_plugins_captum import attribution
from xai_plugins_zennit import attributor, canonizers_for

EPS = torch.finfo(torch.float32).eps


def _close(a, b, factor=64):
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-30)
    assert (a - b).abs().max().item() <= factor * EPS * scale


def _model():
    torch.manual_seed(0)
    model = xai_plugins.create_model("example_tiny_convnet", num_classes=5).eval()
    for bn in (model[1], model[4]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return model


def test_create_model_builds_the_registered_model():
    assert "example_tiny_convnet" in xai_plugins.list_models("example_*")
    model = _model()
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 5)


def test_attributor_as_a_captum_attribution_and_in_noise_tunnel():
    model, x = _model(), torch.rand(3, 3, 16, 16)
    ours = attribution("example_gxi")(model)
    assert isinstance(ours, GradientAttribution) and ours.multiplies_by_inputs
    _close(ours.attribute(x, target=[0, 2, 4]), InputXGradient(model).attribute(x, target=[0, 2, 4]))
    smooth = []
    for method in (ours, InputXGradient(model)):
        torch.manual_seed(1)
        smooth.append(NoiseTunnel(method).attribute(x, nt_type="smoothgrad", nt_samples=4, stdevs=0.1, target=1))
    _close(*smooth, factor=256)


def test_attributor_as_a_zennit_attributor():
    model, x = _model(), torch.rand(2, 3, 16, 16)
    selection = torch.eye(5)[[3, 1]]
    _, relevance = attributor("example_gxi")(model)(x, selection)
    _, grad = Gradient(model)(x, selection)
    _close(relevance, grad * x)


def test_canonizer_is_picked_by_model_type_for_a_zennit_composite():
    model, x = _model(), torch.rand(2, 3, 16, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    canonizers = canonizers_for(model)
    assert len(canonizers) == 1
    canonizers[0].apply(model)
    try:
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    finally:
        canonizers[0].remove()
    assert isinstance(xai_plugins.get("canonizer", "example_sequential_bn")(), SequentialMergeBatchNorm)
    with Gradient(model, EpsilonPlusFlat(canonizers=canonizers_for(model))) as explain:
        output, relevance = explain(x, torch.eye(5)[[0, 0]])
    _close(output, model(x), factor=1024)
    assert relevance.shape == x.shape and torch.isfinite(relevance).all()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model[1], torch.nn.BatchNorm2d)


def test_fix_spatial_filters_with_the_example_initializer():
    model = _model()
    report = fix_spatial_filters(model, "example_gaussian", seed=3)
    assert report.layers == ["0", "3"]
    for conv in (model[0], model[3]):
        norms = conv.weight.detach().flatten(2).norm(dim=-1)
        _close(norms, torch.ones_like(norms))
        assert not conv.weight.requires_grad
    again = _model()
    fix_spatial_filters(again, "example_gaussian", seed=3)
    assert torch.equal(again[0].weight, model[0].weight)


def test_model_attributor_and_canonizer_through_the_explain_command(tmp_path):
    """``xai-plugins explain`` (the installed console script) builds the registered model from local weights and
    explains an image with the registered attributor, and with LRP, whose canonizer comes from this plugin."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    from PIL import Image
    from safetensors.torch import save_file

    model = _model()
    weights, image = tmp_path / "tiny.safetensors", tmp_path / "image.png"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    Image.fromarray((np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)).save(image)
    beside = Path(sys.executable).parent / "xai-plugins"  # the environment running these tests
    command = str(beside) if beside.is_file() else shutil.which("xai-plugins")
    assert command is not None, "the xai-plugins console script is not installed"
    for method in ("example_gxi", "lrp"):
        output = tmp_path / f"{method}.png"
        result = subprocess.run([command, "explain", "--model", "registry:example_tiny_convnet", "--weights",
                                 str(weights), "--image", str(image), "--size", "16", "--method", method,
                                 "--target", "2", "-o", str(output)], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        assert "explained class 2" in result.stdout
        assert output.stat().st_size > 0
