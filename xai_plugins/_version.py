"""The installed version of a distribution of this project.

Each distribution declares its version once, in its ``pyproject.toml``; the packages' ``__version__`` is read
from the installed metadata so that no second copy can drift. A source tree on ``sys.path`` that was never
installed reports ``0+unknown``.
"""

from __future__ import annotations

from importlib import metadata


def distribution_version(distribution: str) -> str:
    """The version of the installed ``distribution`` (``"0+unknown"`` when it is not installed)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "0+unknown"
