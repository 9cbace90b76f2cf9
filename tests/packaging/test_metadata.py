"""Metadata of the four distributions: PEP 639 license with the LICENSE file, classifiers, the same (real) URLs,
a readme each, one version per release across them (the extras and pins name that same version), ``py.typed``
in every package, and the lazy exports mirrored in ``TYPE_CHECKING`` imports so type checkers see them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {
    "xai-plugins": (ROOT, "xai_plugins"),
    "xai-plugins-captum": (ROOT / "adapters" / "captum", "xai_plugins_captum"),
    "xai-plugins-zennit": (ROOT / "adapters" / "zennit", "xai_plugins_zennit"),
    "xai-plugins-workbench": (ROOT / "workbench", "xai_plugins_workbench"),
}
LAZY_INITS = sorted(p for p in ROOT.glob("**/__init__.py") if ".venv" not in p.parts and "lazy_exports(" in
                    p.read_text())


def project(name: str) -> dict:
    return tomllib.loads((DISTRIBUTIONS[name][0] / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_distribution_metadata_is_complete(name):
    meta = project(name)
    directory, package = DISTRIBUTIONS[name]
    assert meta["name"] == name
    assert meta["license"] == "BSD-3-Clause" and meta["license-files"] == ["LICENSE"]
    assert (directory / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()
    assert not any(c.startswith("License ::") for c in meta["classifiers"])  # PEP 639: the expression only
    assert "Typing :: Typed" in meta["classifiers"]
    readme = directory / meta["readme"]
    assert readme.is_file() and len(readme.read_text()) > 200
    assert (directory / package / "py.typed").is_file()
    assert not re.search(r"\]\((?!https?://|#)[^)]+\)", readme.read_text()), "relative links break on the index"


PROJECT_URLS: dict[str, str] = {}
"""The project's public addresses. No public repository or documentation site exists yet, so there are none:
invented addresses are dead links on the index page. Add the real ones here and to every pyproject together."""


def test_project_urls_are_the_same_in_every_distribution_and_none_is_invented():
    for name, (directory, _) in DISTRIBUTIONS.items():
        assert project(name).get("urls", {}) == PROJECT_URLS, name
        own = re.findall(r"https?://[^\s)\"']*xai-plugins[^\s)\"']*", (directory / project(name)["readme"]).read_text())
        assert all(any(url.startswith(u) for u in PROJECT_URLS.values()) for url in own), (name, own)
    mkdocs = (ROOT / "mkdocs.yml").read_text()
    assert all(url in PROJECT_URLS.values() for url in re.findall(r"^(?:repo|site)_url: (\S+)", mkdocs, flags=re.M))


def test_one_version_across_distributions_pins_and_extras():
    version = project("xai-plugins")["version"]
    pins = []
    for name in DISTRIBUTIONS:
        meta = project(name)
        assert meta["version"] == version, name
        deps = list(meta.get("dependencies", []))
        for extra in meta.get("optional-dependencies", {}).values():
            deps += extra
        pins += [d for d in deps if re.match(r"xai-plugins(-\w+)?[\[=<>~ ]", d)]
    assert pins and all(p.endswith(f"=={version}") for p in pins), pins


def test_extras_install_the_adapter_distributions():
    extras = project("xai-plugins")["optional-dependencies"]
    assert extras["captum"] == [f"xai-plugins-captum=={project('xai-plugins')['version']}"]
    assert extras["zennit"] == [f"xai-plugins-zennit=={project('xai-plugins')['version']}"]
    assert extras["workbench"] == [f"xai-plugins-workbench=={project('xai-plugins')['version']}"]
    assert {d.split("==")[0] for d in extras["all"]} == {"xai-plugins-captum", "xai-plugins-zennit",
                                                          "xai-plugins-workbench"}


def test_captum_is_bounded_because_its_internals_are_used():
    deps = project("xai-plugins-captum")["dependencies"]
    captum = next(d for d in deps if d.startswith("captum"))
    assert re.fullmatch(r"captum>=0\.9\.0,<0\.10", captum)
    private = [p for p in (ROOT / "adapters" / "captum" / "xai_plugins_captum").glob("*.py")
               if re.search(r"^\s*from captum\.(\w+\.)*_", p.read_text(), flags=re.M)]
    assert [p.name for p in private] == ["_compat.py"]


def test_captum_version_check_names_the_range():
    from xai_plugins_captum._compat import check_captum_version

    for good in ("0.9.0", "0.9.1", "0.9.10.dev0"):
        check_captum_version(good)
    for bad in ("0.8.0", "0.10.0", "1.0"):
        with pytest.raises(ImportError, match=r"supports captum >=0\.9,<0\.10 .* found captum " + re.escape(bad)):
            check_captum_version(bad)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_version_attribute_matches_metadata(name):
    import importlib
    from importlib import metadata

    module = importlib.import_module(DISTRIBUTIONS[name][1])
    assert module.__version__ == metadata.version(name)


@pytest.mark.parametrize("init", LAZY_INITS, ids=lambda p: str(p.relative_to(ROOT)))
def test_type_checking_imports_mirror_the_lazy_exports(init):
    tree = ast.parse(init.read_text())
    exports = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                   and getattr(n.targets[0] if isinstance(n, ast.Assign) else n.target, "id", "") == "_EXPORTS")
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    imported = {(node.module, alias.name) for node in guarded.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert {(module, name) for name, module in exports.items()} <= imported
