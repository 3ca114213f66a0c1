"""``mvae sweep RECIPE``: train and evaluate every grid point of a study, then aggregate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mvae_cli.errors import Interrupted, UserError


class SweepDisplay:
    """Renders the runner's progress events: points done / total, and one bar per running point
    over all of its training steps (epochs × steps per epoch)."""

    def __init__(self, progress, total: int):
        self.progress = progress
        self.overall = progress.add_task("points", total=total, status="")
        self.tasks: dict[str, int] = {}
        self.epochs: dict[str, tuple[int, int]] = {}  # point -> (epochs, steps per epoch)
        self.finished: set[str] = set()

    def _task(self, point: str) -> int:
        if point not in self.tasks:
            self.tasks[point] = self.progress.add_task(point, total=None, status="starting")
        return self.tasks[point]

    def __call__(self, event: str, **info) -> None:
        console = self.progress.console
        point = info.get("point")
        if event == "prepare":
            console.print(f"preparing the dataset {info['path']} (once for the whole sweep)")
            return
        if point in self.finished and event != "done":
            return  # a late event from a worker
        if event == "point" and not info.get("reused"):
            self._task(point)
        elif event == "start":
            epochs, steps = info["epochs"], info["steps_per_epoch"]
            self.epochs[point] = (epochs, steps)
            note = f", resuming after epoch {info['start_epoch']}" if info.get("resumed") else ""
            self.progress.update(self._task(point), total=epochs * steps, completed=info["start_epoch"] * steps,
                                 status=f"{info['n_examples']:,} examples{note}")
        elif event == "step" and point in self.epochs:
            epochs, steps = self.epochs[point]
            self.progress.update(self._task(point), completed=info["epoch"] * steps + info["step"],
                                 status=f"epoch {info['epoch'] + 1}/{epochs}  loss {info['loss']:.2f}")
        elif event == "evaluate":
            done = f" {info['done']:,}/{info['total']:,} examples" if info.get("total") else ""
            self.progress.update(self._task(point), status=f"evaluating{done}")
        elif event == "done":
            self.finished.add(point)
            if point in self.tasks:
                self.progress.remove_task(self.tasks.pop(point))
            self.progress.advance(self.overall)
            if info["status"] == "failed":
                console.print(f"[red]✗[/] {point}: {info['error']}")
            else:
                console.print(f"[green]✓[/] {point}")


def _fmt(value) -> str:
    return "" if value is None or value != value else f"{value:.4g}"


def _checkpoint_epoch(path: Path) -> int | str:
    """The epoch a checkpoint holds: what a resume starts from (run.json is only final at the end)."""
    from mvae_cli.engine.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path)["epoch"]
    except (UserError, KeyError, TypeError):
        return "? (last.pt is damaged: the point will be refused)"


def _print_dry_run(statuses, console) -> None:
    from rich.table import Table

    table = Table(title=f"{len(statuses)} points (nothing trained: --dry-run)", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("run directory", overflow="fold")
    table.add_column("state", no_wrap=True)
    for i, status in enumerate(statuses, 1):
        state = "finished (kept)" if status.reused else "to train"
        last = status.run_dir / "last.pt"
        if not status.reused and last.is_file():
            state = f"resumes after epoch {_checkpoint_epoch(last)}"
        table.add_row(str(i), str(status.run_dir), state)
    console.print(table)


# Summary columns: (family, which proposal, heading); the paper's proposals (Tables 2–3).
_SHOWN = (("accuracy", None, "accuracy"), ("baseline", None, "paired\nonly"), ("chance", None, "chance"),
          ("log_px", "first", "log p(x)"),
          ("log_pxy", "last", "log p(x,y)"), ("log_px_given_y", "last", "log p(x|y)"))


def _summary_columns(figures: list[str]) -> list[tuple[str, str]]:
    """``(column, heading)``: mean accuracy, the paired-only classifier and chance, log p(x) under
    q(z|x), the others under q(z|x,y) (the table's title says so)."""
    shown = []
    for family, which, heading in _SHOWN:
        if which is None:
            column = f"{family}.mean" if f"{family}.mean" in figures else None
        else:
            candidates = [f for f in figures if f.startswith(family + ".") and f.endswith(".mean")]
            if which == "last":  # q(z|x,y): the proposal given the most modalities (not q(z|y), listed after it)
                candidates = sorted(candidates, key=lambda f: f.split(".")[1].count("+"))
            column = (candidates[0] if which == "first" else candidates[-1]) if candidates else None
        if column:
            shown.append((column, heading))
    return shown


def _print_summary(report, grid_keys: list[str], console) -> None:
    from rich import box
    from rich.table import Table

    from mvae_cli.tables.results import figure_columns, summary_rows

    if not report.rows:
        return
    groups = [k for k in grid_keys if k != "seed"]
    shown = _summary_columns(figure_columns(grid_keys, report.rows))
    if not shown:
        return
    stats = summary_rows(report.rows, groups, [column for column, _ in shown])
    table = Table(title="summary: mean ± 95% CI over seeds; accuracy of y from x beside a classifier trained on "
                        "the paired rows only and chance; log p(x) under q(z|x), log p(x,y) and log p(x|y) under "
                        "q(z|x,y), in nats (all figures in summary.csv)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for key in groups:
        table.add_column(key)
    table.add_column("runs", justify="right")
    for _, heading in shown:  # "accuracy" unbroken at 80 columns; the rest may fold
        table.add_column(heading, justify="right", overflow="fold", min_width=8 if heading == "accuracy" else None)
    for i in range(0, len(stats), len(shown)):
        chunk = stats[i:i + len(shown)]
        cells = [f"{_fmt(s['mean'])} ± {_fmt(s['ci95'])}" if s["count"] > 1 else _fmt(s["mean"]) for s in chunk]
        table.add_row(*[str(chunk[0][k]) for k in groups], str(chunk[0]["count"]), *cells)
    console.print(table)


def _print_warnings(rows: list[dict], grid_keys: list[str], console) -> None:
    """Per grid point (means over seeds): an inactive latent (eval.json's ``latent``), a y predicted at
    chance, or worse than by the paired-only classifier."""
    from mvae_cli.evaluate.collapse import REMEDIES, accuracy_warnings
    from mvae_cli.evaluate.diagnostics import warnings_from_flat
    from mvae_cli.tables.results import figure_columns, summary_rows

    groups = [k for k in grid_keys if k != "seed"]
    figures = [f for f in figure_columns(grid_keys, rows)
               if f.split(".", 1)[0] in ("accuracy", "chance", "baseline", "latent", "probe")]
    by_point: dict[str, dict[str, dict[str, float]]] = {}
    for s in summary_rows(rows, groups, figures):
        point = ",".join(f"{k}={s[k]}" for k in groups) or "every run"
        family, name = s["figure"].split(".", 1)
        by_point.setdefault(point, {}).setdefault(family, {})[name] = s["mean"]
    needs_remedies = False
    for point, tables in by_point.items():
        lines = warnings_from_flat({f"latent.{k}": v for k, v in tables.get("latent", {}).items()})
        if tables.get("chance"):
            # One input modality and one predicted class (MNIST's image → label): the probe reads that class.
            probe, accuracy = tables.get("probe", {}), tables.get("accuracy", {})
            predicted = [k for k in accuracy if k != "mean" and "/" not in k]
            x = next(iter(probe)) if len(probe) == 1 else "x"
            probed = predicted[0] if len(probe) == 1 and len(predicted) == 1 else None
            lines += accuracy_warnings(accuracy, tables["chance"], tables.get("baseline"), x, probe, probed)
        for line in lines:
            remedied = line.endswith(f"; {REMEDIES}")
            shown = line[: -len(f"; {REMEDIES}")] if remedied else line
            needs_remedies = needs_remedies or remedied
            console.print(f"[yellow]warning[/] ({point}, mean over seeds): {shown}", highlight=False, soft_wrap=True)
    if needs_remedies:  # once for the whole study, not on every line
        console.print(f"[yellow]for the warnings above[/], {REMEDIES}", highlight=False, soft_wrap=True)


def _draw_figures(grid_keys: list[str], rows: list[dict], out: Path) -> Path | str:
    """The study's figures, drawn as the sweep ends (as `mvae plot SWEEP_DIR` would)."""
    from mvae_cli.figures.study import plot_sweep

    if not rows:
        return "none (no finished point)"
    plot_sweep(grid_keys, rows, out / "figures", "png")
    return out / "figures"


def _check_devices(sweep) -> None:
    """Device and precision of every point, checked once up front rather than failing point by point."""
    from mvae_cli.engine.device import autocast, select_device

    for recipe in {(p.recipe.device, p.recipe.precision): p.recipe for p in sweep.points}.values():
        autocast(select_device(recipe.device), recipe.precision)


def _check_modalities(sweep) -> None:
    """Modality names in the recipe (model.weights, eval.x, eval.y) against each dataset that exists."""
    from mvae_cli.data.format import read_dataset
    from mvae_cli.engine.run import check_modality_keys

    names: dict[Path, list[str]] = {}
    for point in sweep.points:
        path = point.recipe.data.resolved_path()
        if path not in names and path.is_file():
            with read_dataset(path) as dataset:
                names[path] = dataset.modality_names
        if path in names:
            try:
                check_modality_keys(point.recipe, names[path])
            except UserError as error:
                raise UserError(f"grid point {point.name}: {error}") from None


def sweep_command(
    recipe: Annotated[Path, typer.Argument(metavar="RECIPE", help="A sweep recipe: a training recipe plus grid: and eval:.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        metavar="KEY=VALUE", help="Overrides for every point, e.g. epochs=1 eval.particles=100.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", metavar="DIR", help="Sweep directory (default: sweeps/<recipe file stem>).")] = None,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", metavar="N", help="Points trained at once, each in its own process (and GPU, when there are several).")] = 1,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List the points and their run directories; train nothing.")] = False,
    backend: Annotated[str, typer.Option(
        "--backend", metavar="local|slurm", help="local (processes on this machine, --jobs) or slurm (a job array through submitit).")] = "local",
    collect: Annotated[bool, typer.Option(
        "--collect", help="Aggregate the points that have finished (e.g. on Slurm); run and submit nothing.")] = False,
    partition: Annotated[Optional[str], typer.Option("--partition", metavar="NAME", help="Slurm partition (recipe: slurm.partition).")] = None,
    account: Annotated[Optional[str], typer.Option("--account", metavar="NAME", help="Slurm account (recipe: slurm.account).")] = None,
    time_min: Annotated[Optional[int], typer.Option(
        "--time-min", metavar="MIN", help="Slurm time limit per point in minutes; past it a point is requeued and resumes.")] = None,
    gpus: Annotated[Optional[int], typer.Option("--gpus", metavar="N", help="GPUs per point on Slurm (recipe default: 1).")] = None,
    cpus: Annotated[Optional[int], typer.Option("--cpus", metavar="N", help="CPUs per point on Slurm (recipe default: 4).")] = None,
    mem_gb: Annotated[Optional[float], typer.Option("--mem-gb", metavar="GB", help="Memory per point on Slurm, GB (default: 16).")] = None,
    tracker: Annotated[Optional[list[str]], typer.Option(
        "--tracker", metavar="tensorboard|mlflow", help="Also log every run to tensorboard or mlflow (repeatable), grouped by sweep.")] = None,
) -> None:
    """Train and evaluate every grid point of a study recipe, then write results.csv and summary.csv.

    Run it again to resume: finished points are kept, interrupted ones continue from their
    last checkpoint. A failing point is reported and the others go on (exit code 1 at the end).
    """
    from mvae_cli.cli.progress import console, make_progress
    from mvae_cli.sweep.grid import load_sweep
    from mvae_cli.atomic import check_folder
    from mvae_cli.sweep.revision import check_revision
    from mvae_cli.sweep.runner import plan, prepare_datasets, run_sweep

    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if backend not in ("local", "slurm"):
        raise UserError(f"--backend must be local or slurm, got {backend!r}")
    given = {"partition": partition, "account": account, "time_min": time_min, "gpus": gpus, "cpus": cpus,
             "mem_gb": mem_gb}
    extra = [f"slurm.{key}={value}" for key, value in given.items() if value is not None]
    if tracker:
        extra.append(f"trackers=[{','.join(tracker)}]")
    sweep = load_sweep(recipe, [*(overrides or []), *extra])
    out = out or Path("sweeps") / recipe.stem
    check_folder(out, "the sweep directory")
    check_revision(sweep, out)
    if backend == "local":  # a Slurm job's devices are the cluster's, not this machine's
        _check_devices(sweep)
    if backend == "slurm" and not (collect or dry_run):
        from mvae_cli.sweep.slurm import require_submitit

        require_submitit()  # before any dataset is prepared
    if collect:
        from mvae_cli.sweep.slurm import run_on_slurm

        report = run_on_slurm(sweep, out, collect=True)
        done = sum(s.status == "finished" for s in report.points)
        console.print(f"collected {done} of {len(report.points)} finished points into {out / 'results.csv'}")
        _print_summary(report, sweep.grid_keys, console)
        if report.rows:
            console.print(f"figures: {_draw_figures(sweep.grid_keys, report.rows, out)}")
        return
    if dry_run:
        _check_modalities(sweep)
        _print_dry_run(plan(sweep, out), console)
        return
    # Data first: a dataset that cannot be built is one error line, before anything is written.
    with console.status("checking the datasets") as spinner:
        built = prepare_datasets(plan(sweep, out), lambda event, **info: spinner.update(
            f"preparing the dataset {info['path']} (once for the whole sweep)"))
    for path in built:
        console.print(f"prepared the dataset {path}")
    _check_modalities(sweep)
    console.print(f"sweep [bold]{recipe}[/]: {len(sweep.points)} points over {', '.join(sweep.grid_keys)} → {out}")
    display = None
    try:
        with make_progress() as progress:
            display = SweepDisplay(progress, len(sweep.points))
            if backend == "slurm":
                from mvae_cli.sweep.slurm import run_on_slurm

                report = run_on_slurm(sweep, out, progress=display)
            else:
                report = run_sweep(sweep, out, jobs=jobs, progress=display)
    except KeyboardInterrupt:
        done = len(display.finished) if display is not None else 0
        raise Interrupted(f"{done} of {len(sweep.points)} points of {out} are done (results.csv holds them); "
                          f"run the same command again to resume the others") from None
    reused = sum(s.reused for s in report.points)
    if reused:
        console.print(f"{reused} point(s) were finished already and kept")
    _print_summary(report, sweep.grid_keys, console)
    _print_warnings(report.rows, sweep.grid_keys, console)
    figures = _draw_figures(sweep.grid_keys, report.rows, out)
    console.print(f"results: {out / 'results.csv'}  summary: {out / 'summary.csv'}  "
                  f"figures: {figures} (redraw with `mvae plot {out}`)")
    if report.failed:
        console.print(f"[red]{len(report.failed)} of {len(report.points)} points failed:[/]")
        for status in report.failed:
            console.print(f"  {status.point.name}: {status.error}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` command to ``app``."""
    app.command("sweep")(sweep_command)
