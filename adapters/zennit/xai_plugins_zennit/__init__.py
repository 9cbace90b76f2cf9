"""xai-plugins components as native Zennit objects: canonizers, rules, composites and attributors.

Names are loaded lazily from the submodule of their family, so importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xai_plugins._lazy import lazy_exports
from xai_plugins._version import distribution_version

__version__ = distribution_version("xai-plugins-zennit")

_EXPORTS: dict[str, str] = {
    "attributor": "xai_plugins_zennit.bridge",
    "RegisteredAttributor": "xai_plugins_zennit.bridge",
    "canonizers_for": "xai_plugins_zennit.canonizers",
    "for_zennit": "xai_plugins_zennit.canonizers",
    "missing_rules": "xai_plugins_zennit.canonizers",
    "ExtremalPerturbation": "xai_plugins_zennit.extremal",
    "BcosExplanation": "xai_plugins_zennit.bcos",
}

if TYPE_CHECKING:  # the lazy exports, visible to type checkers and editors
    from xai_plugins_zennit.bcos import BcosExplanation  # noqa: F401
    from xai_plugins_zennit.bridge import RegisteredAttributor, attributor  # noqa: F401
    from xai_plugins_zennit.canonizers import canonizers_for, for_zennit, missing_rules  # noqa: F401
    from xai_plugins_zennit.extremal import ExtremalPerturbation  # noqa: F401

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
