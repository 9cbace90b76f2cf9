"""xai-plugins components as native Captum objects.

Names are loaded lazily from the submodule of their family, so importing this package is cheap and a
family's adapter only imports what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_plugins._lazy import lazy_exports
from xai_plugins._version import distribution_version

__version__ = distribution_version("xai-plugins-captum")

_EXPORTS: dict[str, str] = {
    "attribution": "xai_plugins_captum.bridge",
    "RegisteredAttribution": "xai_plugins_captum.bridge",
    "canonized": "xai_plugins_captum.canonizers",
    "CANONIZED_RULES": "xai_plugins_captum.canonizers",
    "missing_rules": "xai_plugins_captum.canonizers",
    "ExtremalPerturbation": "xai_plugins_captum.extremal",
    "LayerExtremalPerturbation": "xai_plugins_captum.extremal",
    "BcosAttribution": "xai_plugins_captum.bcos",
}

if TYPE_CHECKING:  # the lazy exports, visible to type checkers and editors
    from xai_plugins_captum.bcos import BcosAttribution  # noqa: F401
    from xai_plugins_captum.bridge import RegisteredAttribution, attribution  # noqa: F401
    from xai_plugins_captum.canonizers import CANONIZED_RULES, canonized, missing_rules  # noqa: F401
    from xai_plugins_captum.extremal import ExtremalPerturbation, LayerExtremalPerturbation  # noqa: F401

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
