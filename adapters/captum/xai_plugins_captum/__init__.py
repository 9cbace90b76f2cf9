"""xai-plugins components as native Captum objects.

Names are loaded lazily from the submodule of their family, so importing this package is cheap and a
family's adapter only imports what it needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "canonized": "xai_plugins_captum.canonizers",
    "CANONIZED_RULES": "xai_plugins_captum.canonizers",
    "ExtremalPerturbation": "xai_plugins_captum.extremal",
    "LayerExtremalPerturbation": "xai_plugins_captum.extremal",
    "BcosAttribution": "xai_plugins_captum.bcos",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'xai_plugins_captum' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
