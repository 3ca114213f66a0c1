"""``mvae report SWEEP_DIR``: the MVAE paper's tables (1–5) from a sweep's results, as Markdown and CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report_command(
    sweep_dir: Annotated[Path, typer.Argument(help="A directory written by `mvae sweep` (it has results.json).")],
) -> None:
    """Write SWEEP_DIR/report.md and report.csv: parameter counts (Table 1), log-likelihoods (Tables 2–3) and
    variances of the log weights (Tables 4–5); rows models, columns datasets or grid values, mean ± 95% CI
    over seeds. The Markdown is printed too."""
    from mvae_cli.cli.progress import console
    from mvae_cli.sweep.report import write_report
    from mvae_cli.sweep.results import read_results

    grid_keys, rows = read_results(sweep_dir)
    md, table, markdown = write_report(sweep_dir, grid_keys, rows)
    typer.echo(markdown)
    console.print(f"wrote {md}")
    console.print(f"wrote {table}")


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""
    app.command("report")(report_command)
