"""How every table of the CLI is laid out, so that it fits 80 columns and reads the same in a file.

A table has no rich title (a title wraps to the table's own width, not the terminal's): its
title is a line of text above it, wrapped at words, and its notes lines below it. Label columns
wrap at words when the terminal is narrow; number columns never wrap, never cut (no ellipsis):
a number is read whole or the table is laid out differently. Figures go through
:mod:`mvae_cli.tables.rounding`.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text


def new_table() -> Table:
    """An empty table in the house style: a rule under the header, no outer padding, no title."""
    return Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)


def label_column(table: Table, header: str) -> None:
    """A column of names: folded at words when space runs out, never cut."""
    table.add_column(header, overflow="fold", no_wrap=False)


def number_column(table: Table, header: str, cells: list[str] | None = None) -> None:
    """A column of numbers: right-aligned, never wrapped nor cut; as wide as its widest cell."""
    widest = max((len(c) for c in cells or []), default=0)
    table.add_column(header, justify="right", no_wrap=True, overflow="fold",
                     min_width=max(widest, *(len(part) for part in header.split("\n"))))


def add_row(table: Table, cells: list[str]) -> None:
    """A row of plain text: brackets in a cell (``Var[log w]``) are not rich markup."""
    table.add_row(*(Text(cell) for cell in cells))


def titled(title: str, table: Table, notes: list[str] = ()) -> RenderableType:
    """``title`` above ``table`` and ``notes`` below it, each wrapped at words to the console's width."""
    parts: list[RenderableType] = [Text(title, style="bold")]
    parts.append(table)
    parts += [Text(note, style="dim") for note in notes if note]
    return Group(*parts, Text(""))
