"""``mvae report SWEEP_DIR`` or ``mvae report RUN_DIR... --out DIR``: the MVAE paper's tables (1–5) from a
sweep's results or from runs trained one by one, beside the paper's values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report_command(
    paths: Annotated[list[Path], typer.Argument(
        metavar="SWEEP_DIR | RUN_DIR...",
        help="A directory written by `mvae sweep` (it has results.json), or run directories trained with "
             "`mvae train` and evaluated with `mvae eval`.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", metavar="DIR",
        help="Where report.md, report.csv, paper.csv and the figures go (default: the sweep directory; needed "
             "with run directories).")] = None,
    tolerance: Annotated[float, typer.Option(
        "--tolerance", min=0.0, metavar="NATS",
        help="Flag a log-likelihood further than this from the paper's.")] = 0.5,
    variance_factor: Annotated[float, typer.Option(
        "--variance-factor", min=1.0, metavar="X",
        help="Flag a variance of the log weights more than X times above or below the paper's.")] = 2.0,
) -> None:
    """Write report.md, report.csv and paper.csv: the MVAE paper's Tables 1–5 from a sweep, beside the paper's.

    Given run directories instead of a sweep (`mvae report full-mvae full-jmvae --out report/`), each run is keyed
    by its model, its dataset (the name its data file records), any recipe key or eval setting the runs do not
    share, and its seed: only seeds are averaged.

    Tables: parameter counts (1), log-likelihoods (2–3), variances of the log weights (4–5); rows models (any
    model of the table), columns datasets or grid values, mean ± 95% CI over seeds.

    Every figure the paper publishes (its models mvae, jmvae, vae, cvae and bivcca, fully paired) is set beside ours
    with the difference and a flag beyond the tolerance, drawn as paper.png; other models have rows of their own.

    Runs that differ in supervision, keep_prob or k are also drawn as the paper's Fig. 4, 5 or 3 (with the
    paired-only classifier and chance beside the accuracy). The Markdown is printed too; the exit code is 0 even
    when figures are flagged.
    """
    from mvae_cli.cli.progress import console
    from mvae_cli.errors import UserError
    from mvae_cli.figures.paper import plot_report
    from mvae_cli.sweep.report import runs_results, write_report
    from mvae_cli.tables.results import RESULTS_JSON, read_results

    if len(paths) == 1 and not (paths[0] / "run.json").is_file():
        sweep_dir, run_dirs = paths[0], None
        if not (sweep_dir / RESULTS_JSON).is_file():
            raise UserError(f"{sweep_dir} is neither a sweep (no {RESULTS_JSON}: run the study with `mvae sweep` "
                            f"first) nor a run directory (no run.json)")
        grid_keys, rows = read_results(sweep_dir)
    else:
        sweep_dir = None
        if out is None:
            raise UserError("reporting run directories needs --out DIR: where report.md, report.csv and "
                            "paper.csv are written")
        sweeps = [str(p) for p in paths if (p / RESULTS_JSON).is_file()]
        if sweeps:
            raise UserError(f"{sweeps[0]} is a sweep: report it alone (`mvae report {sweeps[0]}`), not among runs")
        grid_keys, rows = runs_results(paths)
        run_dirs = paths
    paths_written, markdown, compared = write_report(sweep_dir, grid_keys, rows, tolerance=tolerance,
                                                     variance_factor=variance_factor, run_dirs=run_dirs, out=out)
    paths_written += plot_report(compared, grid_keys, rows, sweep_dir if out is None else out, tolerance,
                                 variance_factor)
    typer.echo(markdown)
    for path in paths_written:
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""
    app.command("report")(report_command)
