"""`mvae --help` and every subcommand's help render cleanly under the installed typer.

The checker looks for the defects typer 0.29's rich help produced before: help text eaten as
rich markup (``[default: …]`` vanished, leaving "Sweep directory ."), ``<bool>`` on flags,
``<list[str]>`` on KEY=VALUE lists, and hard-wrapped docstrings printed as ragged lines. It is
shown to catch each of them on a small app built with typer's defaults.
"""

from __future__ import annotations

import inspect
import re

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from mvae_cli.cli.app import app

WIDTH = 400  # wide enough that no paragraph of ours needs wrapping
_BOX = re.compile(r"[│╭╮╰╯─]")


def _flat(text: str) -> str:
    return " ".join(text.split())


def help_defects(application: typer.Typer, args: list[str]) -> list[str]:
    """Render ``args --help`` on a wide terminal and list what is wrong with it."""
    result = CliRunner().invoke(application, [*args, "--help"], env={"TERMINAL_WIDTH": str(WIDTH), "COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    out = result.output
    lines = [_flat(_BOX.sub(" ", line)) for line in out.splitlines()]
    flat = " ".join(line for line in lines if line)
    command = get_command(application)
    for name in args:
        command = command.commands[name]
    defects = []
    if "<bool>" in out:
        defects.append("a flag shows <bool>")
    if "<list[" in out:
        defects.append("a list argument shows <list[...]>")
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    if "[[" in usage:
        defects.append(f"the usage line nests brackets: {usage.strip()!r}")
    for param in command.params:
        text = _flat(getattr(param, "help", None) or "")
        if text and text not in flat:
            defects.append(f"help of {param.name} is not shown as written (eaten as markup?): {text!r}")
    for paragraph in inspect.cleandoc(command.help or "").split("\n\n"):
        text = _flat(paragraph)
        if text and not any(text in line for line in lines):
            defects.append(f"paragraph not on one line of a {WIDTH}-column terminal (ragged): {text[:40]!r}")
    return defects


@pytest.mark.parametrize("args", [[], ["prepare"], ["info"], ["train"], ["eval"], ["sweep"], ["plot"], ["report"],
                                  ["recipes"]],
                         ids=lambda args: " ".join(["mvae", *args]))
def test_help_renders_cleanly(args):
    assert help_defects(app, args) == []


def test_every_command_is_checked():
    assert set(get_command(app).commands) == {"prepare", "info", "train", "eval", "sweep", "plot", "report", "recipes"}


def _broken_app() -> typer.Typer:
    broken = typer.Typer(add_completion=False)

    @broken.command()
    def run(
        overrides: list[str] = typer.Argument(None, metavar="[KEY=VALUE]...", help="Overrides."),
        out: str = typer.Option(None, help="Sweep directory [default: sweeps/<stem>]."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Train nothing."),
    ) -> None:
        """Run it.

        A second paragraph, hard-wrapped in the source
        so that it would show as ragged lines.
        """

    @broken.command()
    def other() -> None:
        """Another command, so that `run` is a subcommand."""

    return broken


def test_the_checker_catches_each_defect():
    defects = "\n".join(help_defects(_broken_app(), ["run"]))
    assert "<bool>" in defects
    assert "<list[" in defects
    assert "eaten as markup" in defects and "sweeps/<stem>" in defects
    assert "ragged" in defects and "A second paragraph" in defects
    assert "nests brackets" in defects
