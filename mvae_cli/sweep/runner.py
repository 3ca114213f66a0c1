"""Run a sweep: train every grid point with the one engine, evaluate it, aggregate — resumably.

```
SWEEP_DIR/sweep.json          the recipe, the points and their status
SWEEP_DIR/runs/<point>/       a normal run directory per point, plus its eval.json (and eval_examples.npz)
SWEEP_DIR/results.{json,csv}  one row per finished run      (see sweep.results)
SWEEP_DIR/summary.csv         per grid point over seeds
```

A point whose run finished training and whose ``eval.json`` matches the recipe's eval
settings is reused; any other point is handed to ``train`` (which resumes an interrupted
run from ``last.pt``) and then evaluated. A failing point is recorded with its error and
the sweep goes on. The tables are rewritten atomically after every point.

The library never prints: it reports through ``progress(event, **info)``:

- ``prepare`` (path): a dataset file is being built (before any point; a dataset that
  cannot be built stops the sweep with a UserError, see :func:`prepare_datasets`);
- ``point`` (point, index, total, reused): a point starts (or is reused from disk);
- ``start``, ``step``, ``epoch`` (point, and the training engine's fields);
- ``evaluate`` (point, done, total): its evaluation starts (total None) and advances, in examples;
  (point, stage): a part after the likelihoods starts (the paired-only classifier, coherence, ...);
- ``done`` (point, status, error): it finished or failed;
- ``note`` (text): how the points train (which train together as one stack, a stack split to fit
  memory, which train one by one and why).

Points that share an architecture train together as one stacked model (:mod:`~mvae_cli.sweep.stacks`,
:mod:`~mvae_cli.engine.stack`); each keeps its own run directory, exactly as when it trains alone.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mvae_cli.atomic import read_json, write_json
from mvae_cli.data.prepare import ensure_dataset
from mvae_cli.engine.data import shared_splits
from mvae_cli.engine.hooks import HookFactory
from mvae_cli.engine.launch import train_on_ranks
from mvae_cli.engine.stack import train_stack
from mvae_cli.engine.run import is_run_dir, read_config
from mvae_cli.errors import UserError
from mvae_cli.eval_config import stale_settings
from mvae_cli.evaluate.fair import image_vaes_for, train_image_vaes
from mvae_cli.evaluate.run_eval import evaluate_run, precompute_baselines
from mvae_cli.recipe import Recipe, recipe_to_dict
from mvae_cli.sweep.grid import Point, Sweep
from mvae_cli.sweep.stacks import stack_units
from mvae_cli.tables.results import build_row, write_tables

Progress = Callable[..., None]
SWEEP_JSON = "sweep.json"
_STEP_INTERVAL_S = 0.25  # workers forward at most this many step events per second (besides the last)


@dataclass
class PointStatus:
    """Where one point stands: ``pending``, ``running``, ``finished`` or ``failed``."""

    point: Point
    run_dir: Path
    status: str = "pending"
    reused: bool = False  # finished by an earlier invocation, not trained or evaluated now
    error: str | None = None
    traceback: str | None = None


@dataclass
class SweepReport:
    out: Path
    points: list[PointStatus]
    rows: list[dict]

    @property
    def failed(self) -> list[PointStatus]:
        return [p for p in self.points if p.status == "failed"]


def run_dir_of(out: Path, point: Point) -> Path:
    return Path(out) / "runs" / point.name


def is_finished(run_dir: Path, recipe: Recipe) -> bool:
    """Whether ``run_dir`` holds this recipe's run, trained to the end and evaluated as it asks."""
    info, evaluation = read_json(run_dir / "run.json"), read_json(run_dir / "eval.json")
    if not is_run_dir(run_dir) or info is None or evaluation is None:
        return False
    if info.get("status") != "finished" or info.get("epochs_done", 0) < recipe.epochs:
        return False
    try:
        # How a point ran (ranks, trackers, cluster resources) does not change what it computed.
        how = {"nproc": 1, "trackers": [], "slurm": None}
        if dataclasses.replace(read_config(run_dir), **how) != dataclasses.replace(recipe, **how):
            return False
    except UserError:
        return False
    if recipe.eval.baseline and evaluation.get("chance") and "vae_probe" not in evaluation:
        return False  # evaluated before the fair baselines (mvae_cli.evaluate.fair) existed: evaluated again
    return not stale_settings(evaluation, recipe.eval)  # eval.json records the settings it was computed with


def plan(sweep: Sweep, out: Path) -> list[PointStatus]:
    """Every point with its run directory; those already finished are marked reused."""
    statuses = []
    for point in sweep.points:
        run_dir = run_dir_of(out, point)
        done = is_finished(run_dir, point.recipe)
        statuses.append(PointStatus(point, run_dir, "finished" if done else "pending", reused=done))
    return statuses


@dataclass(frozen=True)
class Trainer:
    """The engine's ``train`` on the recipe's ranks with the caller's hooks (``hooks()`` makes a
    fresh list per run); picklable, so it reaches worker processes and Slurm tasks."""

    hooks: HookFactory | None = None

    def __call__(self, recipe: Recipe, run_dir: Path, progress: Progress):
        return train_on_ranks(recipe, run_dir, progress=progress, hooks=self.hooks() if self.hooks else ())

    def stack(self, recipes: list[Recipe], run_dirs: list[Path], progress: list[Progress]) -> list:
        """The runs trained together as one stack (:func:`~mvae_cli.engine.stack.train_stack`): per run,
        its result or the exception that ended it."""
        return train_stack(recipes, run_dirs, progress, [self.hooks() if self.hooks else () for _ in recipes])


_default_trainer = Trainer()


_default_evaluator = evaluate_run  # evaluator(run_dir, recipe.eval, device=, progress=, stage=) -> eval.json's mapping


def run_point(point: Point, run_dir: Path, trainer=None, evaluator=None, progress: Progress | None = None) -> dict:
    """Train (or resume) one point and evaluate it with the recipe's eval settings.

    Returns:
        The evaluation mapping (as written to ``run_dir/eval.json``).
    """
    trainer = trainer or _default_trainer
    report = progress or (lambda event, **info: None)
    trainer(point.recipe, run_dir, lambda event, **info: report(event, point=point.name, **info))
    return evaluate_point(point, run_dir, evaluator, report)


def evaluate_point(point: Point, run_dir: Path, evaluator=None, progress: Progress | None = None) -> dict:
    """Evaluate a trained point with the recipe's eval settings (``run_dir/eval.json``'s mapping)."""
    evaluator = evaluator or _default_evaluator
    report = progress or (lambda event, **info: None)
    recipe, name = point.recipe, point.name
    report("evaluate", point=name, done=0, total=None)
    return evaluator(run_dir, recipe.eval, device=recipe.device,
                     progress=lambda done, total: report("evaluate", point=name, done=done, total=total),
                     stage=lambda what: report("evaluate", point=name, stage=what))


def attempt_point(point: Point, run_dir: Path, trainer, evaluator, progress: Progress) -> tuple:
    """:func:`run_point`, its failure caught: what every backend (processes here, Slurm tasks) records.

    Returns:
        ``("finished", evaluation, None, None)`` or ``("failed", None, message, traceback)``; the
        traceback only for a bug (not for a UserError).
    """
    try:
        return "finished", run_point(point, run_dir, trainer, evaluator, progress), None, None
    except UserError as error:
        return "failed", None, str(error), None
    except Exception as error:  # a bug in one point must not end the study; keep its traceback
        return "failed", None, f"{type(error).__name__}: {error}", traceback.format_exc()


def _failure(error: BaseException) -> tuple:
    if isinstance(error, UserError):
        return "failed", None, str(error), None
    return ("failed", None, f"{type(error).__name__}: {error}",
            "".join(traceback.format_exception(type(error), error, error.__traceback__)))


def attempt_stack(points: list[Point], run_dirs: list[Path], trainer, evaluator, progress: Progress,
                  finished: Callable[[int, tuple], None]) -> list[tuple]:
    """Train ``points`` as one stack, then evaluate each that trained; as :func:`attempt_point`, one
    outcome per point, each also handed to ``finished(i, outcome)`` as soon as it is known."""
    failed, later = train_stack_unit(points, run_dirs, trainer, evaluator, progress)
    outcomes: dict[int, tuple] = {}
    with shared_splits():  # the evaluations read the dataset's splits once
        for i in ready_first(len(points), later):
            outcomes[i] = failed[i] or evaluate_trained(points[i], run_dirs[i], evaluator, progress, wait=i in later)
            finished(i, outcomes[i])
    return [outcomes[i] for i in range(len(points))]


def train_stack_unit(points: list[Point], run_dirs: list[Path], trainer, evaluator,
                     progress: Progress) -> tuple[list[tuple | None], list[int]]:
    """Train ``points`` as one stack, then the paired-only classifiers of those that trained, as one
    stack a level (where not cached).

    Returns:
        Per point, its failure's outcome (as :func:`attempt_point` gives it) or None where it trained;
        and the points whose classifiers another process is training (a stack beside this one, on
        the same masks): they are best evaluated last, by when those are mostly done.
    """
    trainer = trainer or _default_trainer
    forward = [lambda event, name=p.name, **info: progress(event, point=name, **info) for p in points]
    try:
        results = trainer.stack([p.recipe for p in points], run_dirs, forward)
    except Exception as error:  # the stack as a whole (a bug): every point failed with it
        results = [error] * len(points)
    trained = [i for i, result in enumerate(results) if not isinstance(result, BaseException)]
    deferred: list = []
    if evaluator is None and len(trained) > 1:  # the real evaluation: the runs' paired-only classifiers at once
        progress("note", text=f"training the paired-only classifiers of these {len(trained)} runs together "
                              "(each seed of a level beside the others), where not cached")
        try:
            precompute_baselines([run_dirs[i] for i in trained], [points[i].recipe.eval for i in trained],
                                 points[trained[0]].recipe.device,
                                 stage=lambda what: progress("note", text=f"{what} ({len(trained)} runs together)"),
                                 deferred=deferred)
        except Exception:  # noqa: BLE001 -- each evaluation then trains its own and reports what is wrong
            pass
    later = [i for i in trained if Path(run_dirs[i]) in {Path(d) for d in deferred}]
    return [_failure(r) if isinstance(r, BaseException) else None for r in results], later


def ready_first(n: int, later: list[int]) -> list[int]:
    """The order to evaluate a stack's ``n`` points in: those whose classifiers are ready, then ``later``."""
    return [i for i in range(n) if i not in later] + later


def _worker_failed(error: BaseException) -> tuple:
    return "failed", None, f"worker process failed: {type(error).__name__}: {error}", None


def evaluate_trained(point: Point, run_dir: Path, evaluator, progress: Progress, wait: bool = False) -> tuple:
    """Evaluate a point its stack trained (:func:`train_stack_unit`); ``wait``: first wait for the
    paired-only classifiers of its level, which another process is training (then found cached)."""
    if wait and evaluator is None:
        try:
            precompute_baselines([run_dir], [point.recipe.eval], point.recipe.device)
        except Exception:  # noqa: BLE001 -- the evaluation then trains its own and reports what is wrong
            pass
    try:
        return "finished", evaluate_point(point, run_dir, evaluator, progress), None, None
    except Exception as error:  # noqa: BLE001 -- one point's evaluation does not end the others
        return _failure(error)


def _attempt_unit(unit: list[Point], run_dirs: list[Path], trainer, evaluator, progress: Progress,
                  finished: Callable[[int, tuple], None]) -> list[tuple]:
    if len(unit) == 1:
        outcome = attempt_point(unit[0], run_dirs[0], trainer, evaluator, progress)
        finished(0, outcome)
        return [outcome]
    return attempt_stack(unit, run_dirs, trainer, evaluator, progress, finished)


# --- worker processes (--jobs N) -------------------------------------------------------------

_worker_events = None


def _init_worker(threads: int, gpus, events, parent: int) -> None:
    global _worker_events
    _worker_events = events
    # Ctrl-C reaches the whole process group: the parent handles it and ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    if gpus is not None:  # before anything touches CUDA in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get()
    import torch

    torch.set_num_threads(threads)


def _exit_with_parent(parent: int) -> None:
    """End this worker when the sweep's process is gone (killed with -9): no orphan trains on."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _forwarder() -> Progress:
    """Progress events to the sweep's process, a run's step lines at most every _STEP_INTERVAL_S."""
    last: dict[str, float] = {}

    def forward(event: str, **info) -> None:
        if event == "step" and info["step"] != info["steps"]:
            now = time.monotonic()
            if now - last.get(info.get("point"), 0.0) < _STEP_INTERVAL_S:
                return
            last[info.get("point")] = now
        _worker_events.put((event, info))
    return forward


def _work(unit: list[Point], run_dirs: list[Path], trainer, evaluator, indices: list[int], total: int) -> list[tuple]:
    """A point alone, trained and evaluated."""
    forward = _forwarder()
    for point, index in zip(unit, indices):
        forward("point", point=point.name, index=index, total=total, reused=False)
    return _attempt_unit(unit, run_dirs, trainer, evaluator, forward, lambda i, outcome: None)


def _work_stack(unit: list[Point], run_dirs: list[Path], trainer, evaluator, indices: list[int], total: int):
    """A stack trained (:func:`train_stack_unit`); its evaluations are tasks of their own."""
    forward = _forwarder()
    for point, index in zip(unit, indices):
        forward("point", point=point.name, index=index, total=total, reused=False)
    return train_stack_unit(unit, run_dirs, trainer, evaluator, forward)


def _work_evaluate(point: Point, run_dir: Path, evaluator, wait: bool) -> tuple:
    return evaluate_trained(point, run_dir, evaluator, _forwarder(), wait)


def _gpu_ids() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries; empty without several."""
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # a broken CUDA install is the same as none here
        return []
    if count < 2:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(count)]
    return ids[:count]


# --- the sweep ------------------------------------------------------------------------------------


class SweepBook:
    """Statuses and rows of a sweep, written to disk after every change (``results.*``, ``summary.csv``,
    ``sweep.json``); shared by the local runner and the Slurm driver.

    Args:
        sweep, out: the sweep and its directory.
        statuses: every point's status, in the sweep's order (:func:`plan`).
        jobs: recorded in ``sweep.json`` (0 on Slurm).
    """

    def __init__(self, sweep: Sweep, out: Path, statuses: list[PointStatus], jobs: int):
        self.sweep, self.out, self.statuses, self.jobs = sweep, out, statuses, jobs
        self.rows: dict[str, dict] = {}

    def keep_reused(self) -> None:
        """Take the rows of the points finished by an earlier invocation from their run directories."""
        for status in self.statuses:
            if status.reused:
                self.rows[status.point.name] = build_row(
                    status.point.name, status.point.values, status.point.recipe.seed,
                    read_json(status.run_dir / "eval.json"), read_json(status.run_dir / "run.json"))

    def record(self, status: PointStatus, evaluation: dict | None) -> None:
        if evaluation is not None:
            info = read_json(status.run_dir / "run.json") or {}
            point = status.point
            self.rows[point.name] = build_row(point.name, point.values, point.recipe.seed, evaluation, info)
        else:
            self.rows.pop(status.point.name, None)
        self.write()

    def ordered_rows(self) -> list[dict]:
        return [self.rows[s.point.name] for s in self.statuses if s.point.name in self.rows]

    def write(self) -> None:
        write_tables(self.out, self.sweep.grid_keys, self.ordered_rows())
        write_json(self.out / SWEEP_JSON, {
            "source": self.sweep.source, "overrides": self.sweep.overrides, "jobs": self.jobs,
            "grid": self.sweep.grid_keys, "recipe": recipe_to_dict(self.sweep.recipe),
            "points": [{"name": s.point.name, "values": s.point.values, "run_dir": str(s.run_dir),
                        "status": s.status, "error": s.error, "traceback": s.traceback} for s in self.statuses],
        })


def prepare_datasets(statuses: list[PointStatus], progress: Progress | None = None) -> list[Path]:
    """Build each dataset file the points still to run need and lack, once, before any point
    starts (so no worker races to write it).

    Returns:
        The files built.

    Raises:
        UserError: a dataset cannot be built (e.g. CelebA is neither given nor downloadable);
            the message says how to get the data. No point has run, and nothing of the
            sweep is written.
    """
    report = progress or (lambda event, **info: None)
    built = []
    for status in statuses:
        recipe = status.point.recipe
        path = recipe.data.resolved_path()
        if status.status != "pending" or path in built or path.exists():
            continue
        report("prepare", path=str(path))
        try:
            ensure_dataset(recipe.data)
        except UserError as error:
            hint = " (in a recipe, --source DIR is data.source=DIR)" if "--source" in str(error) else ""
            raise UserError(f"cannot prepare {path}, so no point of the sweep ran: {error}{hint}") from None
        built.append(path)
    return built


def run_sweep(sweep: Sweep, out: str | Path, *, jobs: int = 1, progress: Progress | None = None,
              trainer=None, evaluator=None, stack: bool = True) -> SweepReport:
    """Train, evaluate and aggregate every point of ``sweep`` under ``out``.

    Args:
        sweep: from :func:`mvae_cli.sweep.grid.load_sweep`.
        out: the sweep directory.
        jobs: points run at once; above 1, each in its own process (spawned), with
            ``cpu_count // jobs`` torch threads and, with several GPUs, its own GPU.
        progress: ``progress(event, **info)``; see the module docstring.
        trainer: ``trainer(recipe, run_dir, progress)``; default the engine's ``train``.
        evaluator: ``evaluator(run_dir, recipe.eval, device=, progress=, stage=) -> dict``; default
            :func:`~mvae_cli.evaluate.run_eval.evaluate_run`.
        stack: train the points that share an architecture as one stack (:mod:`~mvae_cli.sweep.stacks`;
            a trainer with a ``stack`` method, as :class:`Trainer`); False: one by one.

    Returns:
        Every point's status and the results rows.

    Raises:
        UserError: ``jobs`` below 1, or a dataset that cannot be built (:func:`prepare_datasets`):
            raised before any point runs or anything is written under ``out``.
    """
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    out = Path(out)
    report = progress or (lambda event, **info: None)
    statuses = plan(sweep, out)
    book = SweepBook(sweep, out, statuses, jobs)
    book.keep_reused()
    prepare_datasets(statuses, report)
    book.write()
    for index, status in enumerate(statuses):
        if status.reused:
            report("point", point=status.point.name, index=index, total=len(statuses), reused=True)
            report("done", point=status.point.name, status="finished", error=None)
    todo = [s for s in statuses if s.status == "pending"]

    def finish(status: PointStatus, outcome: tuple) -> None:
        status.status, evaluation, status.error, status.traceback = outcome
        book.record(status, evaluation)
        report("done", point=status.point.name, status=status.status, error=status.error)

    if stack and evaluator is None and todo:  # the fair baselines' image-only VAEs, one stack per schedule
        vaes = image_vaes_for([s.point.recipe for s in todo])
        if vaes:
            train_image_vaes(vaes, lambda text: report("note", text=text))
    if stack and hasattr(trainer or _default_trainer, "stack") and len(todo) > 1:
        units = stack_units(todo, lambda s: s.point.recipe, jobs, lambda text: report("note", text=text))
    else:
        units = [[s] for s in todo]
    if jobs == 1 or len(units) <= 1:
        for unit in units:
            for status in unit:
                status.status = "running"
                report("point", point=status.point.name, index=statuses.index(status), total=len(statuses), reused=False)
            _attempt_unit([s.point for s in unit], [s.run_dir for s in unit], trainer, evaluator, report,
                          lambda i, outcome, unit=unit: finish(unit[i], outcome))
    else:
        _run_in_processes(units, statuses, min(jobs, len(units)), trainer, evaluator, report, finish)
    return SweepReport(out, statuses, book.ordered_rows())


def _run_in_processes(units: list[list[PointStatus]], statuses: list[PointStatus], jobs: int, trainer, evaluator,
                      report: Progress, finish: Callable[[PointStatus, tuple], None]) -> None:
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    gpus = None
    ids = _gpu_ids()
    if ids:
        gpus = context.Queue()
        for worker in range(jobs):
            gpus.put(ids[worker % len(ids)])
    threads = max(1, (os.cpu_count() or 1) // jobs)

    def drain() -> None:
        while True:
            try:
                event, info = events.get_nowait()
            except queue.Empty:
                return
            report(event, **info)

    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                               initargs=(threads, gpus, events, os.getpid()))
    try:
        # A point alone is one task (trained, then evaluated); a stack is one task that trains it, and
        # each of its points' evaluations is then a task of its own, so that a process done with its
        # own stack evaluates the points of another (the slowest stack's evaluations are shared out).
        futures = {}
        for unit in units:
            work = _work if len(unit) == 1 else _work_stack
            future = pool.submit(work, [s.point for s in unit], [s.run_dir for s in unit], trainer, evaluator,
                                 [statuses.index(s) for s in unit], len(statuses))
            futures[future] = ("unit" if len(unit) == 1 else "stack", unit)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            drain()
            for future in done:
                kind, unit = futures[future]
                try:
                    value = future.result()
                except Exception as error:  # the worker process died (killed, out of memory)
                    for status in unit:
                        finish(status, _worker_failed(error))
                    continue
                if kind == "unit":
                    outcomes = value
                elif kind == "evaluation":
                    outcomes = [value]
                else:  # a stack trained: its points' evaluations (those of a level held elsewhere last)
                    failed, later = value
                    outcomes = []
                    for i in ready_first(len(unit), later):
                        if failed[i] is not None:
                            finish(unit[i], failed[i])
                            continue
                        try:
                            task = pool.submit(_work_evaluate, unit[i].point, unit[i].run_dir, evaluator, i in later)
                        except RuntimeError as error:  # the pool broke: a worker process died (BrokenProcessPool)
                            finish(unit[i], _worker_failed(error))
                            continue
                        futures[task] = ("evaluation", [unit[i]])
                        pending.add(task)
                for status, outcome in zip(unit, outcomes):
                    finish(status, outcome)
    except BaseException:
        # Ctrl-C or SIGTERM: shutdown() alone would wait for every running point to finish training.
        # Python 3.14 has pool.terminate_workers(); before it, the processes are only reachable here.
        for process in list((pool._processes or {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    drain()  # the workers have exited, so everything they sent is readable now
