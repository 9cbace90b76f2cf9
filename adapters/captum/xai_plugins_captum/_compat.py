"""The one place where this adapter touches Captum internals (names Captum does not export publicly).

The LRP bridge needs Captum's rule base classes and its list of layers LRP passes relevance through
unchanged. These live in private modules, so the supported Captum releases
are bounded in ``pyproject.toml`` and checked here on import: an unsupported release fails with one message
naming the range, instead of an ``ImportError`` deep inside an attribution.
"""

from __future__ import annotations

from importlib import metadata

SUPPORTED_CAPTUM = ((0, 9), (0, 10))  # [lower, upper) as (major, minor), as in pyproject.toml


def _release(text: str) -> tuple[int, int]:
    parts = [int("".join(ch for ch in part if ch.isdigit()) or 0) for part in text.split(".")[:2]]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def check_captum_version(version: str) -> None:
    """Raise ``ImportError`` naming the supported range unless Captum ``version`` is in it."""
    low, high = SUPPORTED_CAPTUM
    if not low <= _release(version) < high:
        raise ImportError(f"xai-plugins-captum supports captum >={low[0]}.{low[1]},<{high[0]}.{high[1]} (it uses "
                          f"Captum internals that change between releases); found captum {version}. Install a "
                          f"supported release: pip install 'captum>={low[0]}.{low[1]},<{high[0]}.{high[1]}'")


check_captum_version(metadata.version("captum"))

from captum.attr._core.lrp import SUPPORTED_NON_LINEAR_LAYERS  # noqa: E402
from captum.attr._utils.lrp_rules import EpsilonRule, PropagationRule  # noqa: E402

__all__ = ["SUPPORTED_NON_LINEAR_LAYERS", "EpsilonRule", "PropagationRule", "check_captum_version"]
