"""Every ```python block in ``docs/`` runs as written. A page's blocks run in order in one fresh interpreter
from a scratch directory, sharing their names as a reader's session does (a later block may use the model an
earlier one built). A plugin author's hook implementation runs too: defining it must work with the imports the
page shows. The README's blocks are run by ``tests/test_readme.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if "```python" in p.read_text())

RUNNER = r"""
import json, sys, traceback
import torch
torch.manual_seed(0)
torch.set_num_threads(1)
blocks = json.loads(sys.stdin.read())
namespace = {"__name__": "__docs__"}
results = []
for index, code in enumerate(blocks):
    try:
        exec(compile(code, f"block {index}", "exec"), namespace)
        results.append([index, "ok", ""])
    except BaseException as exc:
        results.append([index, "error", f"{type(exc).__name__}: {exc}"])
print("RESULTS" + json.dumps(results))
"""


def blocks_of(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_docs_have_code_blocks():
    assert sum(len(blocks_of(p)) for p in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_page_blocks_run_in_order(page, tmp_path):
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", RUNNER], capture_output=True, text=True,
                          timeout=3600, cwd=tmp_path, input=json.dumps(blocks_of(page)))
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS")), None)
    assert line, proc.stderr[-3000:]
    problems = [f"{page.name} block {index}: {message}"
                for index, status, message in json.loads(line[len("RESULTS"):]) if status != "ok"]
    assert not problems, "\n".join(problems)
