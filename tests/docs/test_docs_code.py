"""Every ```python block in ``docs/`` runs as written. A page's blocks run in order in one fresh interpreter
from a scratch directory, sharing their names as a reader's session does (a later block may use the model an
earlier one built). Plugin-author fragments (hook implementations for a user's own package) are compiled, so
their syntax is checked. The README's blocks are run by ``tests/test_readme.py``.

Pages in ``SLOW_PAGES`` cost CPU minutes as written; they run only with ``XAI_PLUGINS_RUN_SLOW_DOCS=1``
(CI time stays small) and are compiled otherwise. ``INCOMPLETE`` lists the blocks that still use names no
block on their page defines (a user's data set or loader); such a block must fail with exactly that
``NameError``, and the test fails as soon as it runs, so the list only shrinks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if "```python" in p.read_text())
INCOMPLETE: dict[tuple[str, int], str] = {
    ("bcos.md", 2): "train_dataset",
    ("conformance.md", 1): "register",
    ("explainfix.md", 0): "loader",
}
SLOW_PAGES = {"extremal.md": "ResNet-50 at 224x224, 4 images x 3 areas x up to 30 iterations per block: many CPU "
                             "minutes"}
SLOW_ENV = "XAI_PLUGINS_RUN_SLOW_DOCS"

RUNNER = r"""
import json, sys, traceback
import torch
torch.manual_seed(0)
torch.set_num_threads(1)
blocks = json.loads(sys.stdin.read())
namespace = {"__name__": "__docs__"}
results = []
for index, (code, fragment) in enumerate(blocks):
    try:
        compiled = compile(code, f"block {index}", "exec")
        if not fragment:
            exec(compiled, namespace)
        results.append([index, "ok", ""])
    except BaseException as exc:
        results.append([index, "error", f"{type(exc).__name__}: {exc}"])
print("RESULTS" + json.dumps(results))
"""


def is_fragment(block: str) -> bool:
    """A plugin author's hook implementation, meant for their own package."""
    return "hookimpl" in block


def blocks_of(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_docs_have_code_blocks():
    assert sum(len(blocks_of(p)) for p in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_page_blocks_run_in_order(page, tmp_path):
    blocks = blocks_of(page)
    if page.name in SLOW_PAGES and not os.environ.get(SLOW_ENV):
        for index, block in enumerate(blocks):
            compile(block, f"{page.name} block {index}", "exec")
        pytest.skip(f"{SLOW_PAGES[page.name]}; compiled only (set {SLOW_ENV}=1 to run)")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", RUNNER], capture_output=True, text=True,
                          timeout=3600, cwd=tmp_path, input=json.dumps([[b, is_fragment(b)] for b in blocks]))
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS")), None)
    assert line, proc.stderr[-3000:]
    problems = []
    for index, status, message in json.loads(line[len("RESULTS"):]):
        known = INCOMPLETE.get((page.name, index))
        if known is None and status != "ok":
            problems.append(f"{page.name} block {index}: {message}")
        elif known is not None and status == "ok":
            problems.append(f"{page.name} block {index} runs now: remove it from INCOMPLETE")
        elif known is not None and message != f"NameError: name '{known}' is not defined":
            problems.append(f"{page.name} block {index}: {message} (expected only the missing {known!r})")
    assert not problems, "\n".join(problems)
