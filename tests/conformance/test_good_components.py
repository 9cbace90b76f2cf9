"""Correct components pass every check; the building blocks (state diff, invariance pairs) are right."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conformance import components as C
from xai_plugins.conformance import PAIRS, PASS, SKIP, checks_for, run_checks
from xai_plugins.conformance.invariance import pair_difference, pair_function_gap
from xai_plugins.conformance.state import diff_states, relative_difference, snapshot

GOOD = [
    ("canonizer", C.MergeBatchNorm, {}),
    ("attributor", C.gradient_x_input, {}),
    ("model", C.checked_cnn, {}),
    ("initializer", C.scaled_normal, {}),
]


@pytest.mark.parametrize(("kind", "obj", "extra"), GOOD, ids=[g[0] for g in GOOD])
def test_correct_component_passes_every_check(kind, obj, extra):
    results = run_checks(C.component(kind, "good", obj, **extra))
    assert [r.check for r in results] == list(checks_for(kind))
    assert [str(r) for r in results if r.status not in (PASS, SKIP)] == []
    skipped = [r.check for r in results if r.status == SKIP]
    assert skipped == (["completeness"] if kind == "model" else [])


def test_canonizer_checks_run_on_torchvision_model_types():
    comp = C.component("canonizer", "good", C.MergeBatchNorm, model_types=("torchvision.models.ResNet",))
    (result,) = run_checks(comp, only=["function_unchanged"])
    assert result.status == PASS and result.measured < 1e-5


def test_every_invariance_pair_computes_the_same_function():
    for pair in PAIRS:
        assert pair_function_gap(pair) < 1e-6, pair.name


def test_invariance_pairs_really_differ_in_structure():
    a, b = next(p for p in PAIRS if p.name == "batchnorm_folded").models()
    assert any(isinstance(m, nn.BatchNorm2d) for m in a.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in b.modules())
    a, b = next(p for p in PAIRS if p.name == "fx_traced").models()
    assert isinstance(b, torch.fx.GraphModule)


def test_gradient_x_input_is_implementation_invariant_to_float_precision():
    worst = max(pair_difference(C.gradient_x_input, pair) for pair in PAIRS)
    assert worst < 1e-4


def test_state_diff_names_every_kind_of_change():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).eval()
    before = snapshot(model)
    with torch.no_grad():
        model[0].weight.add_(0.25)
    model[1].running_mean.add_(1.0)
    model[0].bias.requires_grad_(False)
    model[1].train()
    model[2].register_forward_pre_hook(lambda m, a: None)
    model[2].inplace = True
    model[0].forward = lambda x: x
    assert diff_states(before, snapshot(model)) == [
        "parameter '0.weight' changed: max abs diff 0.25",
        "requires_grad of '0.bias' changed: True -> False",
        "buffer '1.running_mean' changed: max abs diff 1",
        "left 1 module(s) in training mode (was eval), e.g. '1'",
        "hooks on '2' changed: forward_pre_hooks 0 -> 1",
        "attribute 'forward' was left set on module '0'",
        "attribute 'inplace' of module '2' changed: False -> True",
    ]


def test_state_diff_sees_replaced_modules_and_parameters():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    before = snapshot(model)
    model[1] = nn.ReLU()
    model[0].weight = nn.Parameter(model[0].weight.detach().clone())
    assert diff_states(before, snapshot(model)) == [
        "module '1' was replaced (the same type, another object)",
        "parameter '0.weight' was replaced by another Parameter object (same values)",
    ]


def test_relative_difference():
    a = torch.tensor([1.0, -4.0])
    assert relative_difference(a, a.clone()) == 0.0
    assert relative_difference(a, torch.tensor([1.0, -3.0])) == 0.25
    assert relative_difference(a, torch.ones(3)) == float("inf")
