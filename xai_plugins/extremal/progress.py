"""A tqdm progress bar for long optimisations, or a silent stand-in (tqdm is an optional dependency)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class _Silent:
    def update(self, n: int = 1) -> None:
        """Do nothing."""

    def set_postfix(self, **kwargs: Any) -> None:
        """Do nothing."""


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool, description: str) -> Iterator[Any]:
    """A tqdm bar over ``total`` iterations when ``enabled``, else an object with the same two methods."""
    if not enabled:
        yield _Silent()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError("progress=True needs tqdm; install it with 'pip install tqdm' or pass "
                          "progress=False") from exc
    bar = tqdm(total=total, desc=description, leave=False)
    try:
        yield bar
    finally:
        bar.close()
