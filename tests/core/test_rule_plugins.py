"""Issue 22's extension point for LRP rules, with a canonizer plugin installed through its entry point
(``tests/plugins/rules``): a canonizer that adds a module type of its own declares that type's Zennit and Captum
rules (``host_rules``), both adapters use them when ``canonizers_for`` picks the canonizer, the conformance
suite names a canonizer that declares none, and Captum's ``canonized`` refuses it leaving the model untouched."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import xai_plugins
from tests.support.canonizers import assert_restored
from xai_plugins.cli import main
from xai_plugins.conformance.state import snapshot

pytest.importorskip("zennit")
pytest.importorskip("captum")
from captum.attr import LRP  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import EpsilonPlusFlat  # noqa: E402

import xai_plugins_captum  # noqa: E402
import xai_plugins_zennit  # noqa: E402

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def rules(install_plugins):
    install_plugins("rules")
    assert xai_plugins.describe("canonizer", "rules_declaring").plugin == "testrules"


@SETTINGS
@given(seed=st.integers(0, 2**16), target=st.integers(0, 2))
@example(seed=0, target=1)
def test_declared_rules_conserve_in_zennit_and_captum(rules, seed: int, target: int) -> None:
    """Bias-free model, so a bias-free composite conserves: Σ relevance = logit up to the epsilon rules'
    ε/|z| (ε = 1e-6 in Zennit's and the adapter's dense rule): inputs of order 100 give logits of order 1 or more,
    so 1e-4 bounds that loss and float32 rounding with room to spare."""
    from xai_testrules import DeclaringCanonizer, two_path

    model = two_path(seed)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 100
    with torch.no_grad():
        logit = model(x)[0, target]
    if abs(float(logit)) < 1e-2:  # a dead ReLU layer: nothing to conserve
        return
    before = snapshot(model)
    (zennit_canonizer,) = xai_plugins_zennit.canonizers_for(model)
    assert type(zennit_canonizer.canonizer) is DeclaringCanonizer
    composite = EpsilonPlusFlat(zero_params="bias", canonizers=[zennit_canonizer])
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, torch.eye(3)[[target]] * logit)
    assert abs(float(relevance.sum() / logit) - 1) <= 1e-4
    with xai_plugins_captum.canonized(model) as canonized:  # canonizers_for(model) picks the plugin's canonizer
        assert "plugin_add" in canonized._modules
        attribution = LRP(model).attribute(x, target=target).detach()
    assert abs(float(attribution.sum() / logit) - 1) <= 1e-4
    assert_restored(before, model)


def test_conformance_names_the_module_type_without_rules(rules, capsys) -> None:
    assert main(["check", "testrules", "--check", "host_rules", "--json"]) == 1
    results = {r["component"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert results["canonizer:rules_declaring"]["status"] == "pass"
    failure = results["canonizer:rules_bare"]
    assert failure["status"] == "fail"
    assert failure["message"] == ("on xai_testrules:bare_two_path the canonizer adds module types without a "
                                  "xai_plugins_zennit rule: xai_testrules.PluginAdd; declare their rules in the "
                                  "canonizer's host_rules (see docs/plugin-authors.md)")
    from xai_testrules import BareCanonizer, DeclaringCanonizer, bare_two_path, two_path

    for adapter in (xai_plugins_zennit, xai_plugins_captum):
        assert adapter.missing_rules(BareCanonizer(), bare_two_path()) == ["xai_testrules.PluginAdd"]
        assert adapter.missing_rules(DeclaringCanonizer(), two_path()) == []


def test_captum_refuses_the_undeclared_module_and_leaves_the_model(rules) -> None:
    from xai_testrules import bare_two_path

    model = bare_two_path()
    before = snapshot(model)
    with pytest.raises(TypeError) as info, xai_plugins_captum.canonized(model):
        pass
    assert "plugin_add (xai_testrules.PluginAdd)" in str(info.value) and "host_rules" in str(info.value)
    assert_restored(before, model)
