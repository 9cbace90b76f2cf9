"""xai-plugins components as native Zennit objects: canonizers, rules, composites and attributors.

Names are loaded lazily from the submodule of their family, so importing this package is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "canonizers_for": "xai_plugins_zennit.canonizers",
    "ExtremalPerturbation": "xai_plugins_zennit.extremal",
    "BcosExplanation": "xai_plugins_zennit.bcos",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'xai_plugins_zennit' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
