"""``xai_plugins.create_model`` / ``list_models`` over registered builders and ``fix_spatial_filters`` with a
registered initializer, both with an installed third-party plugin; weights only from local files."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import xai_plugins
from xai_plugins.explainfix.fixing import fix_spatial_filters
from xai_plugins.models import WeightsError


@pytest.fixture
def bridged(install_plugins):
    install_plugins("bridged")


def test_list_models_filters_by_pattern(bridged):
    assert xai_plugins.list_models() == ["bridged_mlp", "bridged_not_a_module"]
    assert xai_plugins.list_models("*mlp") == ["bridged_mlp"]
    assert xai_plugins.list_models("bcos_*") == []


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_create_model_with_local_weights_reproduces_the_saved_model(bridged, tmp_path, suffix):
    source = xai_plugins.create_model("bridged_mlp", hidden=5)
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    loaded = xai_plugins.create_model("bridged_mlp", weights=path, hidden=5)
    x = torch.randn(3, 6)
    assert torch.equal(loaded(x), source(x))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_weights_of_another_architecture_are_one_line(bridged, tmp_path):
    path = tmp_path / "other.pt"
    torch.save(nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 4), nn.Linear(4, 4)).state_dict(), path)
    with pytest.raises(WeightsError) as exc:
        xai_plugins.create_model("bridged_mlp", weights=path)
    message = str(exc.value)
    assert "\n" not in message
    assert message.endswith("does not fit model 'bridged_mlp' with default arguments: unexpected 2 (3.weight, "
                            "3.bias); wrong shape 3 (0.weight, 0.bias, 2.weight); were they saved from this model "
                            "with these arguments?")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x80\x04K\x01."])
def test_malformed_weights_are_one_line(bridged, tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as exc:
        xai_plugins.create_model("bridged_mlp", weights=path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_pickled_code_is_refused(bridged, tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    path = tmp_path / "payload.pt"
    path.write_bytes(pickle.dumps({"0.weight": Payload()}))
    with pytest.raises(WeightsError, match="cannot read weights from .*payload.pt: UnpicklingError"):
        xai_plugins.create_model("bridged_mlp", weights=path)


def test_missing_file_and_unknown_name(bridged, tmp_path):
    with pytest.raises(WeightsError, match="no weights file at .*nowhere.pt; weights are never downloaded"):
        xai_plugins.create_model("bridged_mlp", weights=tmp_path / "nowhere.pt")
    with pytest.raises(xai_plugins.ComponentNotFoundError, match="no model named 'mlp' is registered; registered "
                                                                 "models: bridged_mlp, bridged_not_a_module"):
        xai_plugins.create_model("mlp")


def test_builder_that_returns_no_module(bridged):
    with pytest.raises(xai_plugins.ComponentContractError, match="model 'bridged_not_a_module' of plugin "
                                                                 "'testbridged' returned str, not a torch.nn.Module"):
        xai_plugins.create_model("bridged_not_a_module")


def _convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, (3, 5)))


def test_fix_spatial_filters_with_a_third_party_initializer(bridged):
    model = _convnet()
    report = fix_spatial_filters(model, "bridged_box")
    assert report.layers == ["0", "3"]
    for conv in (model[0], model[3]):
        size = conv.weight[0, 0].numel()
        assert torch.equal(conv.weight, torch.full_like(conv.weight, 1.0 / size ** 0.5))
        assert not conv.weight.requires_grad
    assert model[2].weight.requires_grad  # 1x1 convolutions are not spatial


def test_non_finite_initializer_is_refused_and_the_model_left_unchanged(bridged):
    model = _convnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(xai_plugins.ComponentContractError) as exc:
        fix_spatial_filters(model, "bridged_nan_init")
    assert str(exc.value) == ("initializer 'bridged_nan_init' of plugin 'testbridged' returned non-finite values "
                              "(NaN or inf) for weight shape (4, 3, 3, 3); the model is left unchanged")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
