"""Fixtures that put the test plugin packages under ``tests/plugins`` on ``sys.path`` with a ``.dist-info``.

The ``.dist-info`` is written from each package's own ``pyproject.toml``, exactly what an install would
produce for entry points, so discovery goes through ``importlib.metadata`` as it does for a real install.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tomllib

import xai_plugins

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
OTHER_PLUGINS = "canonizers,bcos,extremal,explainfix,example"
"""Plugins installed in the environment that these tests block, so that they see only the test plugins."""


def _install(root: Path, package: str) -> None:
    meta = tomllib.loads((PLUGINS / package / "pyproject.toml").read_text())["project"]
    dist = root / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = ["[xai_plugins]"] + [f"{k} = {v}" for k, v in meta["entry-points"]["xai_plugins"].items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def install_plugins(tmp_path, monkeypatch):
    """Return a function that installs the named test plugin packages for this test only."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XAI_PLUGINS_BLOCK", OTHER_PLUGINS)
    xai_plugins.reset_registry()

    def install(*packages: str) -> None:
        for package in packages:
            _install(site, package)
            monkeypatch.syspath_prepend(str(PLUGINS / package))
        xai_plugins.reset_registry()

    yield install
    for name in [m for m in sys.modules if m.startswith("xai_test")]:
        del sys.modules[name]
    xai_plugins.reset_registry()
    from xai_plugins import registry

    registry._WARNED.difference_update({"testimporterror", "testhookerror", "testmisspelled", "testzduplicate"})
