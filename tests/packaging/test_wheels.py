"""The path of a user who installs from the index: the four wheels are built, and the README's install lines
run with pip in a fresh virtual environment (no ``--system-site-packages``, none of this checkout on the path);
then the README's quick starts run there.

The environment reaches no index: pip installs from a directory holding the four wheels, and the third-party
distributions the tests already use (torch, Captum, Zennit, ...) are linked in from the running environment,
so that pip finds them installed and the test stays offline and a few minutes long. What it proves is the
project's own part: the wheels build, their metadata resolves, each extra installs its adapter distribution,
and the installed packages (not this checkout) run the quick starts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SOURCES = {"xai-plugins": ROOT, "xai-plugins-captum": ROOT / "adapters" / "captum",
           "xai-plugins-zennit": ROOT / "adapters" / "zennit", "xai-plugins-workbench": ROOT / "workbench"}
OURS = re.compile(r"^(xai_plugins|__editable__|_+editable_+xai|pip\b|pip-)", re.I)
EXTRAS = {"captum": {"xai-plugins", "xai-plugins-captum"}, "zennit": {"xai-plugins", "xai-plugins-zennit"},
          "workbench": {"xai-plugins", "xai-plugins-workbench", "xai-plugins-captum", "xai-plugins-zennit"},
          "all": set(SOURCES)}

pytestmark = pytest.mark.packaging


def _copy_source(name: str, dest: Path) -> Path:
    """A copy of one distribution's sources (so that building leaves no build/ or egg-info in the checkout)."""
    src = SOURCES[name]
    target = dest / name
    target.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".venv", "out")
    for entry in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(src / entry, target / entry)
    package = name.replace("-", "_")
    shutil.copytree(src / package, target / package, ignore=ignore)
    return target


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheels")
    house = work / "wheelhouse"
    for name in SOURCES:
        source = _copy_source(name, work / "src")
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
              "-w", str(house), str(source)])
    return house


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory) -> Path:
    """A new venv with its own pip, and the running environment's third-party distributions linked in."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if OURS.match(entry.name) or entry.name.endswith(".pth") or (site / entry.name).exists():
            continue
        (site / entry.name).symlink_to(entry)
    return python


def _install_lines() -> list[str]:
    section = README.read_text().split("## Install", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip().startswith("pip install")]


def _requirement(line: str) -> str:
    match = re.fullmatch(r'pip install "([^"]+)"', line)
    assert match, f"README install line {line!r} is not of the form pip install \"xai-plugins[EXTRA]\""
    return match.group(1)


def test_readme_install_lines_cover_every_extra():
    extras = {re.search(r"\[(\w+)\]", _requirement(line)).group(1) for line in _install_lines()}
    assert extras == set(EXTRAS)


def test_each_extra_installs_its_adapter_distributions(wheelhouse, fresh_python):
    for line in _install_lines():
        requirement = _requirement(line)
        extra = re.search(r"\[(\w+)\]", requirement).group(1)
        report = json.loads(_run([str(fresh_python), "-m", "pip", "install", "--dry-run", "--quiet", "--report",
                                  "-", "--no-index", "--find-links", str(wheelhouse), requirement]).stdout)
        installed = {item["metadata"]["name"] for item in report["install"]}
        assert installed == EXTRAS[extra], (line, installed)


def test_readme_install_line_and_quick_starts_run_from_the_wheels(wheelhouse, fresh_python, tmp_path):
    line = _install_lines()[0]
    assert _requirement(line) == "xai-plugins[all]"
    _run([str(fresh_python), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheelhouse),
          _requirement(line)])
    where = _run([str(fresh_python), "-c", "import xai_plugins, xai_plugins_captum, xai_plugins_zennit, "
                  "xai_plugins_workbench as w; print(xai_plugins.__file__, w.__file__, w.__version__)"],
                 cwd=tmp_path).stdout.split()
    assert all(str(ROOT) not in path for path in where[:2]) and where[2] != "0+unknown", where
    for marker in ("xai_plugins", "xai_plugins_captum", "xai_plugins_zennit", "xai_plugins_workbench"):
        typed = _run([str(fresh_python), "-c", f"import {marker}, pathlib; "
                      f"print((pathlib.Path({marker}.__file__).parent / 'py.typed').is_file())"], cwd=tmp_path)
        assert typed.stdout.strip() == "True", marker
    cli = _run([str(fresh_python), "-m", "xai_plugins.cli", "list", "--kind", "attributor"], cwd=tmp_path).stdout
    assert "extremal_perturbation" in cli and "bcos_contributions" in cli
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "hookimpl" not in b]
    script = "import torch\n" + "".join(
        f"torch.manual_seed(0)\nexec(compile({block!r}, 'README block {i}', 'exec'), {{}})\n"
        for i, block in enumerate(blocks))
    _run([str(fresh_python), "-W", "ignore", "-c", script], cwd=tmp_path)


EXAMPLE = ROOT / "docs" / "examples" / "xai-plugins-example"


def test_example_plugin_installed_with_pip_passes_its_own_tests(wheelhouse, fresh_python, tmp_path):
    """Issue 17's "done when", as a plugin author's user gets it: the example plugin of docs/examples is installed
    with pip (not a path hack) into the fresh environment beside the wheels, and its own tests, which use its
    components through Captum (incl. NoiseTunnel), Zennit, create_model, fix_spatial_filters and the explain
    command, pass there."""
    _run([str(fresh_python), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheelhouse),
          "xai-plugins[all]"])
    source = tmp_path / "example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    built = tmp_path / "built"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
          str(built), str(source)])
    (wheel,) = built.glob("xai_plugins_example-*.whl")
    _run([str(fresh_python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)])
    where = _run([str(fresh_python), "-c", "import xai_plugins, xai_plugins_example as e; "
                  "print(xai_plugins.__file__, e.__file__)"], cwd=tmp_path).stdout.split()
    assert all(str(ROOT) not in path and str(source) not in path for path in where), where
    shutil.rmtree(source / "xai_plugins_example")  # the tests must import the installed package
    _run([str(fresh_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", str(source / "tests"),
          "--rootdir", str(source), "-c", str(source / "pyproject.toml")], cwd=tmp_path)
