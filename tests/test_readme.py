"""The README's Python quick starts run as written (every ```python block that is not a plugin-author fragment).

The Zennit quick starts also run in the second pass of ``make test`` on zennit 1.0.0
(``tests/test_readme.py::test_readme_zennit_quick_start_runs``); after each, the relevance must be finite, non-zero
and shaped like the input, and where the block says ``relevance.sum() ≈ the logit`` sum to it within 1 %.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "hookimpl" not in b]
ZENNIT = [index for index, block in enumerate(BLOCKS) if "from zennit" in block]
OTHERS = [index for index in range(len(BLOCKS)) if index not in ZENNIT]
ZENNIT_CHECK = """
from importlib.metadata import version
assert torch.isfinite(relevance).all() and relevance.shape == x.shape and relevance.abs().sum() > 0
ratio = float(relevance.sum() / out.max())
assert abs(ratio - 1) <= 0.01 or not CLAIMS_CONSERVATION, ratio
print("zennit", version("zennit"), "ratio", ratio)
"""
"""Appended to each Zennit quick start. Where the block claims ``relevance.sum() ≈ the logit`` the ratio must be
within 1 %; the timm block makes no such claim (at initial statistics its network barely depends on the input,
and Epsilon's stabiliser takes a share of a small logit)."""


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "ignore", "-c", "import torch; torch.manual_seed(0)\n" + code],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def test_readme_has_quick_starts():
    assert len(BLOCKS) >= 4 and len(ZENNIT) >= 2


@pytest.mark.parametrize("index", OTHERS)
def test_readme_block_runs(index, tmp_path):
    out = _run(BLOCKS[index], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.parametrize("index", ZENNIT)
def test_readme_zennit_quick_start_runs(index, tmp_path):
    claims = "relevance.sum() ≈" in BLOCKS[index]
    out = _run(f"CLAIMS_CONSERVATION = {claims}\n" + BLOCKS[index] + ZENNIT_CHECK, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    print(out.stdout.splitlines()[-1])
