"""Every command has a reference page, docs/commands/<command>.md, whose "## Options" table holds exactly
the options and arguments of its `--help`: an option added, renamed or removed in the code and not on
the page (or the other way round) fails here.

A row's first cell names options (``--out PATH``, ``-o``, ``--n-train/--n-valid/--n-test N``) or an
argument by its metavar (``DATASET``, ``KEY=VALUE``, ``RUN_DIR ...``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.core import TyperArgument
from typer.main import get_command

from mvae_cli.cli.app import app

PAGES = Path(__file__).resolve().parents[2] / "docs" / "commands"
COMMANDS = get_command(app).commands
_WORD = re.compile(r"[A-Z][A-Z0-9_]*(?:=[A-Z][A-Z0-9_]*)?")


def in_help(command) -> tuple[set[str], set[str]]:
    """``(options, argument words)`` of a command: every flag spelling, and the upper-case words of each
    argument's metavar (``SWEEP_DIR | RUN_DIR...`` -> SWEEP_DIR, RUN_DIR); ``--help`` left out."""
    options, arguments = set(), set()
    for param in command.params:
        if isinstance(param, TyperArgument):
            arguments |= set(_WORD.findall(param.metavar or param.name.upper()))
        else:
            options |= {*param.opts, *param.secondary_opts}
    return options, arguments


def on_page(text: str) -> tuple[set[str], set[str]]:
    """``(options, argument words)`` named in the first cells of the page's "## Options" table."""
    body = text.split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("|")][2:]
    options, arguments = set(), set()
    for row in rows:
        first = re.split(r"(?<!\\)\|", row.strip("|"))[0]
        for code in re.findall(r"`([^`]+)`", first):
            if code.startswith("-"):
                options |= set(re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", code))
            else:
                arguments |= set(_WORD.findall(code.split()[0]))
    return options, arguments


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_reference_page_holds_exactly_the_options_of_the_help(name):
    page = PAGES / f"{name}.md"
    assert page.is_file(), f"mvae {name} has no reference page {page}"
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"# `mvae {name}`")
    (help_options, help_arguments), (page_options, page_arguments) = in_help(COMMANDS[name]), on_page(text)
    assert {"missing from the page": sorted(help_options - page_options),
            "not in --help": sorted(page_options - help_options)} == {"missing from the page": [], "not in --help": []}
    assert page_arguments == help_arguments


def test_every_page_is_a_command():
    assert {p.stem for p in PAGES.glob("*.md")} == set(COMMANDS)


def test_the_parsers_read_flags_arguments_and_combined_rows():
    page = "\n".join(["# `mvae x`", "", "## Options", "", "| option | meaning |", "| --- | --- |",
                      "| `DATASET` | a |", "| `--out PATH`, `-o` | b |", "| `--n-train/--n-valid N` | c |",
                      "| `--baseline/--no-baseline` | d, not `--ignored` |", "| `RUN_DIR ...` | e |",
                      "| `KEY=VALUE` | f |", "", "## Next", "", "| `--elsewhere` | g |"])
    assert on_page(page) == ({"--out", "-o", "--n-train", "--n-valid", "--baseline", "--no-baseline"},
                             {"DATASET", "RUN_DIR", "KEY=VALUE"})
    options, arguments = in_help(COMMANDS["report"])
    assert {"--out", "--tolerance", "--variance-factor"} == options and arguments == {"SWEEP_DIR", "RUN_DIR"}
