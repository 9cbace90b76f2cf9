"""The example third-party plugin of ``docs/examples`` (installed with ``pip install -e`` from
``requirements-test.txt``, as a user would) passes its own tests: the conformance suite and every host path."""

from __future__ import annotations

from pathlib import Path

import pytest

import xai_plugins

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "xai-plugins-example"


def test_example_plugin_is_installed_through_its_entry_point():
    records = {p.name: p for p in xai_plugins.plugins()}
    assert records["example"].status == "loaded"
    assert records["example"].distribution == "xai-plugins-example"
    assert sorted(records["example"].components) == [
        "attributor:example_gxi", "canonizer:example_sequential_bn", "initializer:example_gaussian",
        "model:example_tiny_convnet"]


def test_example_plugin_own_tests_pass(tmp_path):
    code = pytest.main([str(EXAMPLE / "tests"), "-q", "-p", "no:cacheprovider", "--rootdir", str(EXAMPLE),
                        "-c", str(EXAMPLE / "pyproject.toml")])
    assert code == pytest.ExitCode.OK
