"""Training recipes and checkpoints: save/load round trip, shipped checkpoints load strictly, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from xai_plugins.evaluation import training as T

pytest.importorskip("torchvision")
pytest.importorskip("safetensors")


def test_round_trip_of_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = T.build_model("densenet").eval()
    path = T.save_checkpoint(model, "densenet", {"test_accuracy": 0.5}, tmp_path)
    assert path.name == "densenet.safetensors" and T.available_checkpoints(tmp_path) == ["densenet"]
    loaded = T.load_checkpoint("densenet", tmp_path)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model(x), loaded(x)) and not loaded.training
    assert T.checkpoint_record("densenet", tmp_path) == {"test_accuracy": 0.5}


@pytest.mark.parametrize("name", T.available_checkpoints())
def test_shipped_checkpoints_load_and_match_their_recipe(name):
    model = T.load_checkpoint(name)
    record = json.loads((T.CHECKPOINT_DIR / f"{name}.json").read_text())
    recipe = T.RECIPES[name]
    assert record["recipe"]["samples"] == recipe.samples and record["recipe"]["builder"] == recipe.builder
    assert record["recipe"]["builder_kwargs"] == json.loads(json.dumps(recipe.builder_kwargs))
    assert record["test_accuracy"] > 0.2  # well above chance (0.1)
    x = T.prepare_input(name, torch.rand(2, 3, 32, 32))
    assert model(x).shape == (2, 10)


def test_shipped_checkpoints_are_small():
    total = sum(p.stat().st_size for p in T.CHECKPOINT_DIR.glob("*.safetensors"))
    assert total < 4_000_000


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(KeyError, match="no training recipe named 'vgg'; known recipes: resnet"):
        T.build_model("vgg")
    with pytest.raises(FileNotFoundError, match="python -m xai_plugins.evaluation.train_checkpoints resnet"):
        T.load_checkpoint("resnet", tmp_path)


def test_training_is_seeded(monkeypatch):
    """Two runs of a (shortened) recipe give bitwise the same weights."""
    tiny = T.Recipe("tiny", "xai_plugins.evaluation.models:small_densenet", "test", samples=64, batch_size=32,
                    test_samples=16)
    monkeypatch.setitem(T.RECIPES, "tiny", tiny)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, rec = T.train("tiny", progress=False)
        b, _ = T.train("tiny", progress=False)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert 0 <= rec["test_accuracy"] <= 1 and rec["trainable_parameters"] == rec["parameters"]
