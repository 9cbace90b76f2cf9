"""Shared fixtures: untrained benchmark checkpoints in a temporary directory (the tests check plumbing,
state restoration and numbers that hold for any weights, not accuracy)."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from xai_plugins.evaluation.training import RECIPES, build_model, save_checkpoint


def _randomise_bn(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)


@pytest.fixture(scope="session")
def randomise_bn():
    """The BatchNorm draw of these checkpoints, ``randomise_bn(model, seed)``, for tests that build a model."""
    return _randomise_bn


def _checkpoints(directory, names) -> None:
    for name in names:
        torch.manual_seed(0)
        model = build_model(name).eval()
        _randomise_bn(model, 0)
        save_checkpoint(model, name, {"recipe": asdict(RECIPES[name]), "test_accuracy": 0.1,
                                      "parameters": sum(p.numel() for p in model.parameters())}, directory)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    """ResNet and B-cos checkpoints with random weights (and random BatchNorm statistics)."""
    directory = tmp_path_factory.mktemp("checkpoints")
    _checkpoints(directory, ("resnet", "bcos"))
    return directory


@pytest.fixture(scope="session")
def textured_checkpoint_dir(tmp_path_factory):
    """The TexturedCanvas ResNet and the (digits) B-cos checkpoints, random weights as above."""
    directory = tmp_path_factory.mktemp("textured_checkpoints")
    _checkpoints(directory, ("resnet_textured", "bcos"))
    return directory
