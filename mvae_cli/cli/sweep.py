"""``mvae sweep RECIPE``: train and evaluate every grid point of a study, then aggregate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mvae_cli.errors import Interrupted, UserError


class SweepDisplay:
    """Renders the runner's progress events: points done / total, and one bar per running point
    over all of its training steps (epochs × steps per epoch), its status the epoch or the part of
    its evaluation that runs.

    In a file or a pipe, where no bar shows, every finished epoch and every part of an evaluation
    is also a line (``<point>  epoch 2/5 …``), so a log never sits silent for a whole point.
    """

    def __init__(self, progress, total: int):
        self.progress = progress
        self.overall = progress.add_task("points", total=total, status=f"0/{total} done")
        self.total = total
        self.tasks: dict[str, int] = {}
        self.epochs: dict[str, tuple[int, int]] = {}  # point -> (epochs, steps per epoch)
        self.finished: set[str] = set()
        self.logged = not progress.console.is_terminal

    def _task(self, point: str) -> int:
        if point not in self.tasks:
            self.tasks[point] = self.progress.add_task(point, total=None, status="starting")
        return self.tasks[point]

    def _log(self, point: str, text: str) -> None:
        if self.logged:
            self.progress.console.print(f"{point}  {text}", highlight=False)

    def __call__(self, event: str, **info) -> None:
        console = self.progress.console
        point = info.get("point")
        if event == "prepare":
            console.print(f"preparing the dataset {info['path']} (once for the whole sweep)")
            return
        if event == "note":
            console.print(info["text"], highlight=False)
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
            self._log(point, f"training on {info['n_examples']:,} examples{note}")
        elif event == "step" and point in self.epochs:
            epochs, steps = self.epochs[point]
            self.progress.update(self._task(point), completed=info["epoch"] * steps + info["step"],
                                 status=f"epoch {info['epoch'] + 1}/{epochs}  loss {info['loss']:.2f}")
        elif event == "epoch" and point in self.epochs:
            self._log(point, f"epoch {info['epoch']}/{self.epochs[point][0]}  loss {info['loss']:.1f}  "
                             f"valid ELBO {info['valid_elbo']:.1f}  {info['seconds']:.1f} s")
        elif event == "evaluate":
            if info.get("stage"):
                status = info["stage"]
                self._log(point, f"evaluating: {status}")
            else:
                status = "eval" + (f" {info['done']:,}/{info['total']:,}" if info.get("total") else "uating")
                if info.get("done") == 0 and info.get("total"):
                    self._log(point, f"evaluating: likelihoods of {info['total']:,} examples")
            self.progress.update(self._task(point), status=status)
        elif event == "done":
            self.finished.add(point)
            if point in self.tasks:
                self.progress.remove_task(self.tasks.pop(point))
            self.progress.advance(self.overall)
            self.progress.update(self.overall, status=f"{len(self.finished)}/{self.total} done")
            if info["status"] == "failed":
                console.print(f"[red]✗[/] {point}: {info['error']}")
            else:
                console.print(f"[green]✓[/] {point}")


def _checkpoint_epoch(path: Path) -> int | str:
    """The epoch a checkpoint holds: what a resume starts from (run.json is only final at the end)."""
    from mvae_cli.engine.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path)["epoch"]
    except (UserError, KeyError, TypeError):
        return "? (last.pt is damaged: the point will be refused)"


def _print_dry_run(statuses, console) -> None:
    from rich.table import Table

    from mvae_cli.cli.progress import plural

    table = Table(title=f"{plural(len(statuses), 'point')} (nothing trained: --dry-run)", title_justify="left")
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
    recipe: Annotated[Path, typer.Argument(metavar="RECIPE", help="A sweep recipe file (a training recipe plus grid: and "
                                           "eval:), or the name of a shipped one, e.g. quickstart (`mvae recipes` lists them).")],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        metavar="KEY=VALUE", help="Overrides for every point, e.g. epochs=1 eval.particles=100.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", metavar="DIR", help="Sweep directory (default: sweeps/<recipe file stem>).")] = None,
    jobs: Annotated[Optional[int], typer.Option(
        "--jobs", "-j", metavar="N", help="Stacks (or points that do not stack) trained at once, each in its own process "
        "(and GPU, when there are several) (default: the recipe's `jobs`, else 1).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List the points and their run directories; train nothing.")] = False,
    stack: Annotated[bool, typer.Option(
        "--stack/--no-stack", help="Train the points that share an architecture together as one stacked model, "
                                    "each with its own run directory (default); --no-stack: one by one.")] = True,
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
    """Run a study: train and evaluate every grid point of a recipe, then write results.csv, summary.csv and its figures.

    Each point is one run of the recipe's model (model.name: any model of the table; a grid over model.name compares
    them), trained as `mvae train` does and evaluated as `mvae eval` does; the dataset is prepared first when it is
    missing.

    Run it again to resume: finished points are kept, interrupted ones continue from their last checkpoint.
    A failing point is reported and the others go on (exit code 1 at the end).
    """
    from mvae_cli.cli.progress import console, make_progress, plural
    from mvae_cli.cli.recipes import recipe_path
    from mvae_cli.cli.study_tables import print_summary, print_warnings
    from mvae_cli.sweep.grid import load_sweep
    from mvae_cli.atomic import check_folder
    from mvae_cli.sweep.revision import check_revision
    from mvae_cli.cli.hooks import training_hooks
    from mvae_cli.sweep.runner import Trainer, plan, prepare_datasets, run_sweep

    recipe = recipe_path(recipe)  # a file, or a shipped recipe's name
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if backend not in ("local", "slurm"):
        raise UserError(f"--backend must be local or slurm, got {backend!r}")
    given = {"partition": partition, "account": account, "time_min": time_min, "gpus": gpus, "cpus": cpus,
             "mem_gb": mem_gb}
    extra = [f"slurm.{key}={value}" for key, value in given.items() if value is not None]
    if tracker:
        extra.append(f"trackers=[{','.join(tracker)}]")
    sweep = load_sweep(recipe, [*(overrides or []), *extra])
    jobs = sweep.recipe.jobs if jobs is None else jobs
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

        report = run_on_slurm(sweep, out, collect=True, trainer=Trainer(training_hooks))
        done = sum(s.status == "finished" for s in report.points)
        console.print(f"collected {done} of {plural(len(report.points), 'finished point')} into {out / 'results.csv'}")
        print_summary(report.rows, sweep.grid_keys, console)
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
    console.print(f"sweep [bold]{recipe}[/]: {plural(len(sweep.points), 'point')} over {', '.join(sweep.grid_keys)} → {out}")
    display = None
    try:
        with make_progress() as progress:
            display = SweepDisplay(progress, len(sweep.points))
            if backend == "slurm":
                from mvae_cli.sweep.slurm import run_on_slurm

                report = run_on_slurm(sweep, out, progress=display, trainer=Trainer(training_hooks), stack=stack)
            else:
                report = run_sweep(sweep, out, jobs=jobs, progress=display, trainer=Trainer(training_hooks), stack=stack)
    except KeyboardInterrupt:
        done = len(display.finished) if display is not None else 0
        raise Interrupted(f"{done} of {plural(len(sweep.points), 'point')} of {out} are done (results.csv holds them); "
                          f"run the same command again to resume the others") from None
    reused = sum(s.reused for s in report.points)
    if reused:
        console.print(f"{plural(reused, 'point')} {'was' if reused == 1 else 'were'} finished already and kept")
    print_summary(report.rows, sweep.grid_keys, console)
    print_warnings(report.rows, sweep.grid_keys, console)
    figures = _draw_figures(sweep.grid_keys, report.rows, out)
    console.print(f"results: {out / 'results.csv'}  summary: {out / 'summary.csv'}  "
                  f"figures: {figures} (redraw with `mvae plot {out}`)")
    if report.failed:
        console.print(f"[red]{len(report.failed)} of {plural(len(report.points), 'point')} failed:[/]")
        for status in report.failed:
            console.print(f"  {status.point.name}: {status.error}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` command to ``app``."""
    app.command("sweep")(sweep_command)
