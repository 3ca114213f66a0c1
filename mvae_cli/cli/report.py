"""``mvae report SWEEP_DIR``: the MVAE paper's tables (1–5) from a sweep's results, beside the paper's values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report_command(
    sweep_dir: Annotated[Path, typer.Argument(help="A directory written by `mvae sweep` (it has results.json).")],
    tolerance: Annotated[float, typer.Option(
        "--tolerance", min=0.0, metavar="NATS",
        help="Flag a log-likelihood further than this from the paper's.")] = 0.5,
    variance_factor: Annotated[float, typer.Option(
        "--variance-factor", min=1.0, metavar="X",
        help="Flag a variance of the log weights more than X times above or below the paper's.")] = 2.0,
) -> None:
    """Write SWEEP_DIR/report.md, report.csv and paper.csv: the MVAE paper's Tables 1–5 from a sweep, beside the paper's.

    Tables: parameter counts (1), log-likelihoods (2–3), variances of the log weights (4–5); rows models,
    columns datasets or grid values, mean ± 95% CI over seeds.

    Every figure the paper publishes is set beside ours with the difference and a flag beyond the tolerance.
    The Markdown is printed too; the exit code is 0 even when figures are flagged.
    """
    from mvae_cli.cli.progress import console
    from mvae_cli.sweep.report import write_report
    from mvae_cli.sweep.results import read_results

    grid_keys, rows = read_results(sweep_dir)
    paths, markdown, _ = write_report(sweep_dir, grid_keys, rows, tolerance=tolerance, variance_factor=variance_factor)
    typer.echo(markdown)
    for path in paths:
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""
    app.command("report")(report_command)
