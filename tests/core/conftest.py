"""Fixtures that put the test plugin packages under ``tests/plugins`` on ``sys.path`` with a ``.dist-info``.

The ``.dist-info`` is written from each package's own ``pyproject.toml``, exactly what an install would
produce for entry points, so discovery goes through ``importlib.metadata`` as it does for a real install.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import tomllib

import xai_plugins

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
OTHER_PLUGINS = "canonizers,bcos,extremal,explainfix,example,workbench"
"""Plugins installed in the environment that these tests block, so that they see only the test plugins."""


def _install(root: Path, package: str) -> None:
    meta = tomllib.loads((PLUGINS / package / "pyproject.toml").read_text())["project"]
    dist = root / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = ["[xai_plugins]"] + [f"{k} = {v}" for k, v in meta["entry-points"]["xai_plugins"].items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")


class Installer:
    """Installs test plugin packages for one test, in this process and for the subprocesses it starts."""

    def __init__(self, site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.site = site
        self.monkeypatch = monkeypatch
        self.paths = [str(site)]

    def __call__(self, *packages: str) -> None:
        for package in packages:
            _install(self.site, package)
            self.monkeypatch.syspath_prepend(str(PLUGINS / package))
            self.paths.append(str(PLUGINS / package))
        xai_plugins.reset_registry()

    def env(self, **variables: str) -> dict[str, str]:
        """The environment of a subprocess that sees the installed test plugins (and only those)."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([*self.paths, *sys.path]), **variables)
        return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def install_plugins(tmp_path, monkeypatch):
    """An :class:`Installer`: ``install_plugins("good", ...)`` installs the named test plugin packages."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XAI_PLUGINS_BLOCK", OTHER_PLUGINS)
    xai_plugins.reset_registry()
    yield Installer(site, monkeypatch)
    for name in [m for m in sys.modules if m.startswith("xai_test")]:
        del sys.modules[name]
    xai_plugins.reset_registry()
    from xai_plugins import registry

    registry._WARNED.difference_update({name for name in registry._WARNED if name.startswith("test")})
