"""Command output fits the terminal: tables wrap their widest columns, text wraps under its indent, no word is
lost or reordered."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from xai_plugins.cli import main
from xai_plugins.cli_output import GAP, MIN_COLUMN, table, wrap

WORD = st.text(alphabet="abcdefghij_-.:0123456789", min_size=1, max_size=30)
CELL = st.lists(WORD, min_size=0, max_size=8).map(" ".join)


def _words(text: str) -> list[str]:
    return text.split()


def _narrowest(headers: list[str], rows: list[list[str]]) -> int:
    """The width of the table with every column at its floor (the narrowest form :func:`table` makes)."""
    natural = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return sum(min(n, max(len(h), MIN_COLUMN)) for n, h in zip(natural, headers)) + len(GAP) * (len(headers) - 1)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), columns=st.integers(1, 5), width=st.integers(20, 160))
@example(data=None, columns=4, width=60)
def test_table_fits_the_width_and_keeps_every_word_of_every_cell(data, columns, width):
    if data is None:  # the list table at COLUMNS=60, with a long summary
        headers = ["name", "plugin", "distribution", "summary"]
        rows = [["densenet_untangled", "canonizers", "xai-plugins 0.1.0", "torchvision DenseNet, the paper's "
                 "untangling variant: each BN slice merged into its own conv copy " * 2]]
    else:
        headers = data.draw(st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=12),
                                     min_size=columns, max_size=columns))
        rows = data.draw(st.lists(st.lists(CELL, min_size=columns, max_size=columns), max_size=6))
    lines = table(rows, headers, width=width).splitlines()
    assert max(len(line) for line in lines) <= max(width, _narrowest(headers, rows))
    # the dashes under the header give each column's span; reading a column's spans top to bottom gives
    # back its words in order
    starts, ends, position = [], [], 0
    for dashes in lines[1].split(GAP):
        starts.append(position)
        ends.append(position + len(dashes))
        position += len(dashes) + len(GAP)
    header_lines = lines[: lines.index(lines[1])]
    body = lines[len(header_lines) + 1:]
    for i, header in enumerate(headers):
        assert _words(" ".join(line[starts[i]:ends[i]] for line in header_lines)) == _words(header)
    column_text = [" ".join(line[starts[i]:ends[i]] for line in body) for i in range(columns)]
    for i in range(columns):
        expected = [w for row in rows for w in _words(row[i])]
        got = "".join(column_text[i].split())
        assert got == "".join(expected)  # long words may be broken across lines, never changed


@settings(max_examples=150, deadline=None)
@given(text=st.lists(st.tuples(st.integers(0, 4), CELL), max_size=6), width=st.integers(20, 120),
       indent=st.sampled_from(["", "  "]), hanging=st.sampled_from(["", "    ", " " * 14]))
def test_wrap_fits_the_width_and_keeps_the_words_and_indents(text, width, indent, hanging):
    source = "\n".join(" " * lead + body for lead, body in text)
    out = wrap(source, width=width, indent=indent, hanging=hanging)
    deepest = max((lead for lead, _ in text), default=0)
    assert all(len(line) <= max(width, len(indent) + deepest + len(hanging) + MIN_COLUMN)
               for line in out.splitlines())
    assert "".join(out.split()) == "".join(source.split())
    assert all(line.startswith(indent) for line in out.splitlines() if line)


@pytest.mark.parametrize("argv", [["list"], ["plugins"], ["info", "resnet"], ["check", "example"],
                                  ["canonize", "--model", "torchvision:resnet18"]])
def test_commands_fit_a_60_column_terminal(argv, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "60")
    main(argv)
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(len(line) for line in lines) <= 60
