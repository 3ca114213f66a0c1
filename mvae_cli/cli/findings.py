"""Warnings as every command prints them: one entry per kind of finding, then each remedy once.

The library finds (:mod:`mvae_cli.evaluate.collapse`); this prints, on stderr, each entry wrapped
at words under a hanging indent, so that at 80 columns and in a file every line starts either
with ``warning``/``remedy`` or with the indent of the entry it continues.
"""

from __future__ import annotations

import re
import textwrap
from typing import Iterable

from rich.console import Console
from rich.text import Text

from mvae_cli.evaluate.collapse import Finding, grouped_lines, remedy_lines

LABEL_WIDTH = 8  # "warning " / "remedy  ": the hanging indent of every entry
_KEEP = re.compile(r"q\(z \| [^)]*\)")  # a posterior's name is never broken across lines


def findings_text(findings: Iterable[Finding], width: int = 80, note: str = "") -> list[str]:
    """The entries, each wrapped at words to ``width`` under a hanging indent; empty without findings.

    Args:
        note: a line above the entries (a sweep's: what the brackets hold).
    """
    findings = list(findings)
    lines = grouped_lines(findings)
    if not lines:
        return []
    entries = ([("note", note)] if note else []) + [("warning", line) for line in lines]
    entries += [("remedy", line) for line in remedy_lines(findings)]
    indent = " " * LABEL_WIDTH
    return [textwrap.fill(_KEEP.sub(lambda m: m.group(0).replace(" ", "\xa0"), text), width=max(width, 40),
                          initial_indent=label.ljust(LABEL_WIDTH), subsequent_indent=indent, break_long_words=False,
                          break_on_hyphens=False).replace("\xa0", " ")
            for label, text in entries]


def print_findings(findings: Iterable[Finding], console: Console | None = None, note: str = "") -> None:
    """Print :func:`findings_text` (to stderr unless a console is given); nothing without findings."""
    console = console or Console(stderr=True)
    for entry in findings_text(findings, console.width, note):
        label = entry.split(" ", 1)[0]
        text = Text(entry)
        text.stylize({"remedy": "cyan", "note": "bold"}.get(label, "yellow"), 0, len(label))
        console.print(text, soft_wrap=True)  # wrapped above, at words
