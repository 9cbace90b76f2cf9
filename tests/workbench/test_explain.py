"""``xai-plugins explain`` on a user's own model: every ``--model`` form, the loud warning for random weights,
one-line errors naming the flag and the fix (usage errors exit 2, a non-finite attribution exits 1), B-cos
input encoding, and the figure's colour scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

import xai_plugins
from xai_plugins import cli
from xai_plugins_workbench.demo_cli import NO_WEIGHTS_WARNING
from xai_plugins_workbench.explain import (
    ExplainUsageError,
    Explanation,
    attribute,
    load_weights,
    parse_model_spec,
)
from xai_plugins_workbench.explain_figure import DIVERGING, SEQUENTIAL, colour_scale

torchvision = pytest.importorskip("torchvision")
pytest.importorskip("zennit")
pytest.importorskip("captum")

CLASSES = 3


def tiny_model(num_classes: int = CLASSES) -> nn.Module:
    """A user's own builder, importable as tests.workbench.test_explain:tiny_model."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes)).eval()


class NanModel(nn.Module):
    """A model whose gradient is NaN: the attribution must be refused, not drawn as a blank image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x.mean((2, 3)) - 2.0).nan_to_num(0.0)[:, :2].repeat(1, 2)


def nan_model() -> nn.Module:
    return NanModel()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from PIL import Image
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("explain")
    model = torchvision.models.resnet18(weights=None, num_classes=CLASSES).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(d / "r18.safetensors"))
    torch.save(state, d / "r18.pt")
    torch.save(model, d / "whole.pt")
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(d / "img.png")
    (d / "not_an_image.png").write_bytes(b"not a png")
    return d


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(["explain", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("xai-plugins: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_explain_with_weights_does_not_warn_and_leaves_the_file_model_exact(files, tmp_path, capsys):
    out = tmp_path / "out.png"
    code, stdout, err = run(["--model", "torchvision:resnet18", "--weights", str(files / "r18.safetensors"),
                             "--image", str(files / "img.png"), "--size", "32", "--target", "1", "-o", str(out)],
                            capsys)
    assert code == 0, err
    assert "explained class 1" in stdout and out.stat().st_size > 1000
    assert "RANDOM" not in err


def test_explain_without_weights_warns_loudly(files, tmp_path, capsys):
    code, _, err = run(["--model", "torchvision:resnet18", "--image", str(files / "img.png"), "--size", "32",
                        "--method", "gradient", "-o", str(tmp_path / "o.png")], capsys)
    assert code == 0
    assert NO_WEIGHTS_WARNING in err and "RANDOM weights" in err


@pytest.mark.parametrize(("argv", "flag", "fix"), [
    (["--model", "resnet50"], "--model", "torchvision:NAME"),
    (["--model", "torchvision:no_such_net"], "--model torchvision:no_such_net", "list_models"),
    (["--model", "registry:no_such_model"], "--model registry:no_such_model", "registered:"),
    (["--model", "no_such_package.mod:build"], "--model no_such_package.mod:build", "importable"),
    (["--model", "missing_file.pt"], "--model", "check the path"),
    (["--method", "lime"], "--method 'lime'", "registered attributor"),
    (["--weights", "{d}/nothing.pt"], "--weights", "saved state dict"),
    (["--weights", "{d}/whole.pt"], "--weights", "torch.save(model.state_dict(), path)"),
    (["--model", "torchvision:resnet34", "--weights", "{d}/r18.pt"], "--weights do not fit", "architecture"),
    (["--target", "3", "--weights", "{d}/r18.pt"], "--target 3 is out of range", "omit --target"),
    (["--image", "{d}/not_an_image.png"], "--image", "Pillow"),
    (["--image", "{d}/none.png"], "--image", "no such file"),
])
def test_explain_errors_are_one_line_naming_flag_and_fix_and_exit_2(files, tmp_path, capsys, argv, flag, fix):
    base = {"--model": "torchvision:resnet18", "--image": str(files / "img.png")}
    argv = [a.format(d=files) for a in argv]
    for key, value in base.items():
        if key not in argv:
            argv += [key, value]
    code, _, err = run([*argv, "--size", "16", "-o", str(tmp_path / "o.png")], capsys)
    line = one_line_error(err)
    assert code == 2, err
    assert flag in line and fix in line, line
    assert not (tmp_path / "o.png").exists()


def test_usage_errors_are_found_before_the_model_is_built(files, tmp_path, capsys, monkeypatch):
    from xai_plugins_workbench import explain

    def never(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(explain, "_build", never)
    for argv in (["--method", "lime"], ["--image", str(files / "none.png")],
                 ["--weights", str(files / "whole.pt")], ["--model", "resnet50"]):
        full = ["--model", "torchvision:resnet18", "--image", str(files / "img.png"), *argv]
        code, _, err = run([*full, "-o", str(tmp_path / "o.png")], capsys)
        assert code == 2 and "the model was built" not in err, err


def test_a_missing_optional_dependency_is_named_before_any_work(files, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real(name, *a))
    code, _, err = run(["--model", "timm:resnet18", "--image", str(files / "img.png"), "-o",
                        str(tmp_path / "o.png")], capsys)
    assert code == 2 and "--model timm:NAME needs timm, which is not installed; pip install timm" in err


def test_negative_target_is_an_argparse_usage_error(files, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["explain", "--model", "torchvision:resnet18", "--image", str(files / "img.png"),
                  "--target", "-1"])
    assert exc.value.code == 2 and "--target" in capsys.readouterr().err


@settings(max_examples=25, deadline=None)
@given(cut=st.floats(0.0, 0.999))
@example(cut=0.0)
@example(cut=0.5)
def test_any_truncated_weights_file_is_one_clear_usage_error(files, tmp_path_factory, cut):
    for name in ("r18.pt", "r18.safetensors"):
        data = (files / name).read_bytes()
        path = tmp_path_factory.mktemp("cut") / name
        path.write_bytes(data[:int(len(data) * cut)])
        with pytest.raises(ExplainUsageError, match=r"^--weights .*(torch\.save|save_file)") as exc:
            load_weights(path)
        assert "\n" not in str(exc.value)


def test_every_model_form_builds_and_explains(files, tmp_path, capsys):
    script = tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.trace(tiny_model(), torch.rand(1, 3, 16, 16)), str(script))
    for model, extra in (("torchvision:resnet18", ["--weights", str(files / "r18.pt")]),
                         ("timm:resnet18", ["--num-classes", "3"]),
                         ("tests.workbench.test_explain:tiny_model", []),
                         (str(script), []),
                         ("registry:bcos_simple_cnn", ["--method", "bcos_contributions"])):
        if model.startswith("timm:"):
            pytest.importorskip("timm")
        code, stdout, err = run(["--model", model, "--method", "gradient", *extra, "--image",
                                 str(files / "img.png"), "--size", "16", "-o", str(tmp_path / "o.png")], capsys)
        assert code == 0, (model, err)
        assert "explained class" in stdout
        assert ("RANDOM" in err) == (model != str(script) and "--weights" not in extra), (model, err)


def test_weights_with_a_holding_model_form_are_refused(files, tmp_path, capsys):
    script = tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.trace(tiny_model(), torch.rand(1, 3, 16, 16)), str(script))
    code, _, err = run(["--model", str(script), "--weights", str(files / "r18.pt"), "--image",
                        str(files / "img.png"), "-o", str(tmp_path / "o.png")], capsys)
    assert code == 2 and "drop --weights" in one_line_error(err)


def test_bcos_model_gets_its_declared_input_encoding(files, tmp_path, capsys):
    """Built by the user's own import path (not the registry), the B-cos network is recognised through the
    declared model_types and gets the 6-channel encoding; the contributions sum to the logit minus bias."""
    from xai_plugins import bcos
    from xai_plugins_workbench.explain import input_encoding, load_image, prepare_inputs

    model = bcos.create_model("bcos_simple_cnn", num_classes=CLASSES).eval()
    spec = parse_model_spec("xai_plugins.bcos.simple_cnn:bcos_simple_cnn")
    image = load_image(files / "img.png", 16)
    inputs, _, _ = prepare_inputs(image, "auto", input_encoding(model, spec))
    assert inputs.shape[1] == 6 and torch.equal(inputs, bcos.encode_input(image))
    attr = attribute(model, inputs, 1, "bcos_contributions")
    res = bcos.contributions(model, inputs, [1])
    logit = res.logits[0, 1] - bcos.logit_bias(model)
    assert torch.allclose(attr.sum(), logit, rtol=1e-4, atol=1e-5)
    with pytest.raises(ExplainUsageError, match="--normalize imagenet does not apply"):
        prepare_inputs(image, "imagenet", input_encoding(model, spec))
    assert input_encoding(torchvision.models.resnet18(weights=None)) is None


def test_nan_attribution_is_an_error_exit_1(files, tmp_path, capsys):
    code, _, err = run(["--model", "tests.workbench.test_explain:nan_model", "--image", str(files / "img.png"),
                        "--size", "16", "--method", "gradient", "--normalize", "none", "-o",
                        str(tmp_path / "o.png")], capsys)
    line = one_line_error(err)
    assert code == 1 and "non-finite" in line and "--method gradient" in line
    assert not (tmp_path / "o.png").exists()


def test_figure_title_names_composite_and_canonizers(files, tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    titles = []
    original = matplotlib.figure.Figure.suptitle
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle",
                        lambda self, t, **kw: titles.append(t) or original(self, t, **kw))
    code, _, err = run(["--model", "torchvision:resnet18", "--weights", str(files / "r18.pt"), "--image",
                        str(files / "img.png"), "--size", "32", "--composite", "epsilon_plus_flat", "-o",
                        str(tmp_path / "o.png")], capsys)
    assert code == 0, err
    assert "epsilon_plus_flat" in titles[0] and "ResNetCanonizer" in titles[0], titles


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=4, max_size=64))
@example(values=[0.0, 0.0, 0.0, 0.0])
@example(values=[-1.0, 0.0, 0.0, 0.0])
def test_colour_scale_is_sequential_for_masks_and_symmetric_for_signed_maps(values):
    heat = np.asarray(values, dtype=np.float32).reshape(-1, 1)
    cmap, vmin, vmax = colour_scale(heat)
    if heat.min() >= 0:
        assert cmap == SEQUENTIAL and vmin == 0.0 and vmax > 0
    else:
        assert cmap == DIVERGING and vmin == -vmax and vmax > 0


def test_save_figure_has_colour_bar_and_overlay(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xai_plugins_workbench.explain_figure import save_figure

    explanation = Explanation(torch.rand(1, 3, 8, 8), torch.randn(1, 3, 8, 8), 1, 2)
    created = []
    original = plt.subplots
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt, "subplots", lambda *a, **k: created.append(original(*a, **k)) or created[-1])
        save_figure(explanation, tmp_path / "f.png", "title")
    fig, axes = created[0]
    assert len(fig.axes) == 4  # input, attribution, overlay, colour bar
    assert len(axes[2].images) == 2 and axes[2].images[1].get_alpha() == pytest.approx(0.6)
    assert (tmp_path / "f.png").stat().st_size > 1000


class ThirdPartyPlugin:
    """A plugin as a third party writes it: a model builder and an attributor, registered by import string."""

    @staticmethod
    @xai_plugins.hookimpl
    def xai_register_models(register) -> None:
        register("user_tiny", "tests.workbench.test_explain:tiny_model", summary="a user's tiny CNN",
                 paper="none")

    @staticmethod
    @xai_plugins.hookimpl
    def xai_register_attributors(register) -> None:
        register("user_gradient", "tests.workbench.test_explain:user_gradient", summary="plain gradient",
                 paper="none")


def user_gradient(model, inputs, target):
    x = inputs.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    return grad


def test_third_party_model_and_attributor_through_the_registry(files, tmp_path, capsys):

    xai_plugins.reset_registry()
    try:
        xai_plugins.get_registry().register_plugin(ThirdPartyPlugin(), name="user_plugin")
        code, stdout, err = run(["--model", "registry:user_tiny", "--method", "user_gradient", "--image",
                                 str(files / "img.png"), "--size", "16", "--target", "2", "-o",
                                 str(tmp_path / "o.png")], capsys)
        assert code == 0, err
        assert "explained class 2" in stdout and "RANDOM weights" in err
        code, _, err = run(["--model", "registry:user_tiny", "--method", "example_gxi", "--image",
                            str(files / "img.png"), "--size", "16", "--target", str(CLASSES), "-o",
                            str(tmp_path / "o.png")], capsys)
        assert code == 2 and f"--target {CLASSES} is out of range: the model has {CLASSES} classes" in err
    finally:
        xai_plugins.reset_registry()
