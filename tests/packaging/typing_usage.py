"""Type-checked by ``make test`` (mypy, never imported by pytest): the lazy exports resolve to their real
definitions for type checkers and editors, not to ``Any`` through the packages' ``__getattr__``."""

from __future__ import annotations

import torch
from torch import nn
from typing_extensions import assert_type

import xai_plugins_captum
import xai_plugins_zennit
from xai_plugins import bcos, extremal
from xai_plugins.extremal.spatial import ExtremalResult
from xai_plugins_captum.extremal import ExtremalPerturbation as CaptumExtremal
from xai_plugins_zennit.extremal import ExtremalPerturbation as ZennitExtremal


def lazy_exports_have_their_types(model: nn.Module, images: torch.Tensor) -> None:
    assert_type(xai_plugins_captum.ExtremalPerturbation, type[CaptumExtremal])
    assert_type(xai_plugins_zennit.ExtremalPerturbation, type[ZennitExtremal])
    assert_type(extremal.extremal_perturbation(model, images, target=[0]), ExtremalResult)
    assert_type(bcos.create_model("bcos_resnet18"), nn.Module)
    with xai_plugins_captum.canonized(model):
        pass
