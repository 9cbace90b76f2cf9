"""Lazy package exports: names are imported from their submodule on first access.

Keeps ``import xai_plugins.<family>`` (and plugin discovery) cheap, and lets a host adapter import only the
family a user touches.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str], submodules: Sequence[str] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Return ``(__getattr__, __dir__, __all__)`` for a package whose ``exports`` map names to submodules."""
    names = sorted([*exports, *submodules])

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__, names
