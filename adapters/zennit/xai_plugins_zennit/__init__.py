"""xai-plugins components as native Zennit objects: canonizers, rules, composites and attributors.

Names are loaded lazily from the submodule of their family, so importing this package is cheap.
"""

from __future__ import annotations

from xai_plugins._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "attributor": "xai_plugins_zennit.bridge",
    "RegisteredAttributor": "xai_plugins_zennit.bridge",
    "canonizers_for": "xai_plugins_zennit.canonizers",
    "ExtremalPerturbation": "xai_plugins_zennit.extremal",
    "BcosExplanation": "xai_plugins_zennit.bcos",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
