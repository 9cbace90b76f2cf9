"""Rules a canonizer brings for its own explicit modules, per host: the extension point of issue 22.

A canonizer that puts a module type of its own into the model (a custom gate, say) declares the rules of that type
for each host as a class attribute, which the Zennit and Captum adapters read::

    class MyCanonizer(Canonizer):
        host_rules = {
            "zennit": {"my_package.modules:MyGate": "my_package.lrp:zennit_gate_rule"},   # factory(module) -> Hook
            "captum": {"my_package.modules:MyGate": "my_package.lrp:CaptumGateRule"},     # factory() -> rule
        }

Types and factories may be import strings ``"package.module:name"``, so declaring them imports neither host. The
adapters' ``missing_rules(canonizer, model)`` checks that every module type a canonizer adds has a rule in that
host (the conformance check).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["HOSTS", "host_rules"]

HOSTS = ("zennit", "captum")


def _resolve(target: Any) -> Any:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        if not attr:
            raise ValueError(f"host_rules entry {target!r} is not an import string 'package.module:name'")
        return getattr(importlib.import_module(module), attr)
    return target


def host_rules(canonizer: Any, host: str) -> list[tuple[type, Any]]:
    """``(module type, rule factory)`` pairs that ``canonizer`` declares for ``host`` (empty if none)."""
    if host not in HOSTS:
        raise ValueError(f"unknown host {host!r}; host_rules are declared for {', '.join(HOSTS)}")
    declared = getattr(canonizer, "host_rules", None) or {}
    if not isinstance(declared, dict) or not all(isinstance(v, dict) for v in declared.values()):
        raise TypeError(f"{type(canonizer).__name__}.host_rules must be a dict {{host: {{module type: rule "
                        f"factory}}}}, got {declared!r}")
    unknown = set(declared) - set(HOSTS)
    if unknown:
        raise ValueError(f"{type(canonizer).__name__}.host_rules names unknown hosts {sorted(unknown)}; use "
                         f"{', '.join(HOSTS)}")
    return [(_resolve(kind), _resolve(factory)) for kind, factory in (declared.get(host) or {}).items()]
