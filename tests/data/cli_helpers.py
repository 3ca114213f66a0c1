"""Driving `mvae` in-process for the data tests: run a command, expect one-line user errors."""

from __future__ import annotations

from typer.testing import CliRunner

from mvae_cli.cli.app import app


def invoke(*args):
    """Run ``mvae ARGS...`` in-process; returns click's Result (``exit_code``, ``stdout``, ``stderr``)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def expect_user_error(result, *fragments: str) -> str:
    """Assert exit code 2 with one ``Error: ...`` line holding every fragment; returns that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def row(stdout: str, first: str) -> list[str]:
    """The cells after ``first`` on the summary line that starts with it."""
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0] == first:
            return cells[1:]
    raise AssertionError(f"no row {first!r} in:\n{stdout}")
