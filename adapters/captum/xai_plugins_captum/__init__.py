"""xai-plugins components as native Captum objects.

Names are loaded lazily from the submodule of their family, so importing this package is cheap and a
family's adapter only imports what it needs.
"""

from __future__ import annotations

from xai_plugins._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "canonized": "xai_plugins_captum.canonizers",
    "CANONIZED_RULES": "xai_plugins_captum.canonizers",
    "missing_rules": "xai_plugins_captum.canonizers",
    "ExtremalPerturbation": "xai_plugins_captum.extremal",
    "LayerExtremalPerturbation": "xai_plugins_captum.extremal",
    "BcosAttribution": "xai_plugins_captum.bcos",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
