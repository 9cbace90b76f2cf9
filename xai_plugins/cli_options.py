"""The option names every ``xai-plugins`` subcommand shares, so that one word means one thing everywhere.

- ``-o/--output FILE``: the one file a command writes (a figure, a JSON report).
- ``--output-dir DIR``: the directory a command writes several files into (created if missing).
- ``--no-progress``: no progress bars.
- ``--model SOURCE:NAME``: ``torchvision:NAME``, ``timm:NAME`` and, where a command explains models from files
  too, the further forms it lists in its help.

Spellings used by earlier releases (``--out``, ``-o``/``--output`` for a directory, ``--quiet``) are accepted as
hidden aliases that print one deprecation line naming the current option.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["DeprecatedAlias", "add_no_progress", "add_output_dir", "add_output_file"]


class DeprecatedAlias(argparse.Action):
    """An option spelling kept for old command lines: stores like the current option and says which one that is.

    Hidden from ``--help``; the warning goes to stderr so that output meant for a pipe stays clean.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, replacement: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"xai-plugins: warning: {option_string} is deprecated; use {self.replacement}", file=sys.stderr)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def add_output_file(parser: argparse.ArgumentParser, default: object, help: str,
                    type: Callable[[str], Any] = str) -> None:
    """``-o/--output FILE`` (dest ``output``); ``--out`` is its deprecated alias."""
    parser.add_argument("-o", "--output", default=default, type=type, metavar="FILE", help=help)
    parser.add_argument("--out", dest="output", type=type, action=DeprecatedAlias, replacement="-o/--output")


def add_output_dir(parser: argparse.ArgumentParser, default: object, help: str,
                   type: Callable[[str], Any] = str) -> None:
    """``--output-dir DIR`` (dest ``output_dir``); ``-o``, ``--out`` and ``--output`` are deprecated aliases."""
    parser.add_argument("--output-dir", default=default, type=type, metavar="DIR", help=help)
    parser.add_argument("-o", "--out", "--output", dest="output_dir", type=type, action=DeprecatedAlias,
                        replacement="--output-dir")


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` (dest ``no_progress``); ``--quiet`` is its deprecated alias."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--quiet", dest="no_progress", action=DeprecatedAlias, nargs=0, default=False,
                        replacement="--no-progress")
