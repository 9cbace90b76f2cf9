"""The defaults ``docs/extremal.md`` states are those of ``extremal_perturbation``.

In the page's method table a keyword written with a number (`` `max_iter=30` ``) states that keyword's default;
options written with other values (`` `exact_area=False` ``) are alternatives and not checked. The quick start's
"default budget" is checked too, since a reader sizes their run by it.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from xai_plugins.extremal import extremal_perturbation

PAGE = Path(__file__).resolve().parents[2] / "docs" / "extremal.md"
DEFAULTS = {name: p.default for name, p in inspect.signature(extremal_perturbation).parameters.items()
            if p.default is not inspect.Parameter.empty}
NUMBER_CLAIM = re.compile(r"`([a-z_]+)=(-?[0-9][0-9.e+-]*)`")


def method_table(text: str) -> str:
    section = text.split("## The method, as implemented", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_the_method_table_states_the_function_defaults():
    claims = [(name, float(value)) for name, value in NUMBER_CLAIM.findall(method_table(PAGE.read_text()))
              if name in DEFAULTS]
    assert {name for name, _ in claims} >= {"max_iter", "regul_weight", "final_regul_weight", "tol", "patience"}
    wrong = [(name, value, DEFAULTS[name]) for name, value in claims if value != DEFAULTS[name]]
    assert not wrong, f"docs/extremal.md states defaults the function does not have (name, page, code): {wrong}"


def test_the_quick_start_states_the_default_budget():
    stated = re.search(r"default budget \(`max_iter=([0-9]+)`\)", PAGE.read_text())
    assert stated, "the quick start no longer states the default budget as `max_iter=N`"
    assert int(stated.group(1)) == DEFAULTS["max_iter"]
