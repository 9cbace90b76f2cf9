"""Text output of the ``xai-plugins`` commands, fitted to the terminal: tables whose widest columns wrap, and
paragraphs wrapped under a hanging indent.

The width is ``shutil.get_terminal_size().columns`` (which honours ``COLUMNS``, and is 80 when the output is not
a terminal). No line is wider than the width unless the table's narrowest readable form is wider still (each
column keeps at least its header or :data:`MIN_COLUMN` characters); wrapping only breaks lines, so the words of
every cell are kept in order.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence

__all__ = ["MIN_COLUMN", "MIN_TEXT_COLUMN", "fit_widths", "table", "terminal_width", "wrap"]

MIN_COLUMN = 8
"""Columns are not narrowed below this many characters (or their header, if shorter)."""

MIN_TEXT_COLUMN = 24
"""The last column is narrowed to this many characters before any other column is."""

GAP = "  "
"""Between two columns."""


def terminal_width() -> int:
    """Columns of the terminal the command writes to (``COLUMNS`` if set, 80 without a terminal)."""
    return shutil.get_terminal_size().columns


def fit_widths(natural: Sequence[int], floors: Sequence[int], width: int) -> list[int]:
    """Column widths that fit ``width`` with :data:`GAP` between them. The last column (free text: a summary,
    a message) is narrowed first, down to :data:`MIN_TEXT_COLUMN`; then the widest column, one character at a
    time, never below its floor (so short columns stay whole and long text wraps)."""
    widths = list(natural)
    available = width - len(GAP) * (len(widths) - 1)
    last = len(widths) - 1
    widths[last] = max(min(widths[last], available - sum(widths[:last])), min(widths[last], MIN_TEXT_COLUMN),
                       floors[last])
    while sum(widths) > available:
        shrinkable = [i for i, w in enumerate(widths) if w > floors[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: (widths[i], i))
        widths[widest] -= 1
    return widths


def _cell_lines(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]


def table(rows: Sequence[Sequence[object]], headers: Sequence[str], width: int | None = None,
          indent: str = "") -> str:
    """``rows`` under ``headers`` as aligned columns, each line prefixed by ``indent``, fitted to ``width``
    (default: :func:`terminal_width`); a cell too long for its column continues on the next lines."""
    width = terminal_width() if width is None else width
    cells = [[" ".join(str(x).split()) for x in row] for row in (headers, *rows)]
    natural = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    floors = [min(n, max(len(h), MIN_COLUMN)) for n, h in zip(natural, headers)]
    widths = fit_widths(natural, floors, width - len(indent))
    lines = []
    for n, row in enumerate(cells):
        wrapped = [_cell_lines(cell, w) for cell, w in zip(row, widths)]
        for k in range(max(len(c) for c in wrapped)):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(wrapped, widths)]
            lines.append((indent + GAP.join(parts)).rstrip())
        if n == 0:
            lines.append((indent + GAP.join("-" * w for w in widths)).rstrip())
    return "\n".join(lines)


def wrap(text: str, width: int | None = None, indent: str = "", hanging: str = "") -> str:
    """``text`` wrapped to ``width`` (default: :func:`terminal_width`), line by line: every line starts with
    ``indent`` and keeps its own leading spaces, continuation lines get ``hanging`` more. Blank lines are kept,
    so paragraphs and indented code stay recognisable. A line indented so deep that fewer than
    :data:`MIN_COLUMN` characters would be left gets that many past its indents."""
    width = terminal_width() if width is None else width
    out = []
    for line in text.splitlines() or [""]:
        own = indent + line[: len(line) - len(line.lstrip())]
        body = line.strip()
        if not body:
            out.append("")
            continue
        out.extend(textwrap.wrap(body, max(width, len(own + hanging) + MIN_COLUMN),
                                 initial_indent=own, subsequent_indent=own + hanging,
                                 break_long_words=True, break_on_hyphens=False))
    return "\n".join(out)
