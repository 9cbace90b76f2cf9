"""The example plugin passes the xai-plugins conformance suite (run as plain functions here; the same checks
run as pytest tests with ``pytest -p xai_plugins.conformance --xai-plugin example``)."""

import pytest

import xai_plugins
from xai_plugins.conformance import FAIL, run_checks


@pytest.mark.parametrize(("kind", "name"), [("attributor", "example_gxi"), ("canonizer", "example_sequential_bn"),
                                           ("model", "example_tiny_convnet"), ("initializer", "example_gaussian")])
def test_component_passes_the_conformance_suite(kind, name):
    failures = [str(r) for r in run_checks(xai_plugins.describe(kind, name)) if r.status == FAIL]
    assert failures == []


def test_registered_by_the_example_plugin():
    comp = xai_plugins.describe("canonizer", "example_sequential_bn")
    assert (comp.plugin, comp.distribution) == ("example", "xai-plugins-example")
