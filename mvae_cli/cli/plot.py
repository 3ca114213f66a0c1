"""``mvae plot SWEEP_DIR|RUN_DIR``: the figures of a study, or the training curves of one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mvae_cli.atomic import check_folder
from mvae_cli.errors import UserError

FORMATS = ("png", "pdf")


def plot_command(
    path: Annotated[Optional[Path], typer.Argument(
        metavar="SWEEP_DIR|RUN_DIR", help="A sweep directory (with results.json) or a run directory (with metrics.jsonl) "
                                          "(default: the most recent one under sweeps/ or runs/).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", metavar="DIR", help="Folder for the figures (default: <directory>/figures).")] = None,
    fmt: Annotated[str, typer.Option("--format", metavar="png|pdf", help="png or pdf.")] = "png",
) -> None:
    """Draw figures into files (each with its numbers as CSV next to it); nothing is shown on screen.

    A sweep: eval figures against the grid key that varies, mean and 95% band over seeds
    (accuracy against supervision as in the paper's Fig. 4, keep-prob as Fig. 5, k as Fig. 3), one line per
    model when the sweep varies model.name (or any second grid key).

    A run of any model: loss, validation ELBO, its objective's terms, the latent diagnostics and β against epoch,
    and its sample grid;
    with two or more image modalities (the transforms study) also each transformation decoded from the original
    and the original reconstructed from each (the paper's Figs. 7–10), on 8 test examples.
    """
    from mvae_cli.cli.progress import console

    if fmt not in FORMATS:
        raise UserError(f"--format must be png or pdf, got {fmt!r}")
    if path is None:
        path = latest_output()
        console.print(f"plotting {path} (the most recent sweep or run)", highlight=False)
    if not path.is_dir():
        raise UserError(f"{path} is not a directory: give a sweep directory or a run directory")
    out = out or path / "figures"
    check_folder(out, "--out")
    if (path / "results.json").exists() or (path / "sweep.json").exists():
        from mvae_cli.figures.study import plot_sweep
        from mvae_cli.tables.results import read_results

        grid_keys, rows = read_results(path)
        written = plot_sweep(grid_keys, rows, out, fmt)
    elif (path / "metrics.jsonl").exists():
        from mvae_cli.figures.curves import plot_run
        from mvae_cli.figures.transforms import plot_run_transforms

        written = plot_run(path, out, fmt)
        try:
            written += plot_run_transforms(path, out, fmt)
        except UserError as error:  # the curves stand on their own
            console.print(f"[yellow]no transform figures:[/] {error}")
    else:
        raise UserError(f"{path} holds no results: give a sweep directory (with results.json, from `mvae sweep`) "
                        "or a run directory (with metrics.jsonl, from `mvae train`)")
    if not written:
        raise UserError(f"{path} has no evaluation figures to plot")
    for file in written:
        console.print(f"wrote {file}")


def latest_output(sweeps: Path = Path("sweeps"), runs: Path = Path("runs")) -> Path:
    """The most recently written sweep (``sweeps/*/results.json``) or run (under ``runs/``).

    Raises:
        UserError: neither exists.
    """
    from mvae_cli.engine.run import latest_run

    found = [(p.stat().st_mtime, p.parent) for p in sweeps.glob("*/results.json")]
    try:
        run = latest_run(runs)
        found.append(((run / "run.json").stat().st_mtime, run))
    except UserError:
        pass
    if not found:
        raise UserError(f"no sweep under {sweeps}/ and no run under {runs}/: give a directory, "
                        "or make one with `mvae sweep` or `mvae train`")
    return max(found)[1]


def register(app: typer.Typer) -> None:
    """Add the ``plot`` command to ``app``."""
    app.command("plot")(plot_command)
