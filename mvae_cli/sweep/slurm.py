"""``mvae sweep --backend slurm``: the points of a sweep as one Slurm job array, through submitit.

Each array task runs exactly the local code path of its point (:func:`~mvae_cli.sweep.runner.run_point`:
train, resuming from ``last.pt`` when there is one, then evaluate into the run directory on the
shared filesystem), or of its stack: the points that train together as one stacked model are one
task (:class:`StackTask`). A task that is preempted or reaches its time limit is requeued by submitit
(:class:`PointTask` is checkpointable) and resumes from its last checkpoint.

The driver submits only the points that are neither finished nor already queued (job ids are
kept in ``SWEEP_DIR/slurm/jobs.json``), then polls: it reports each point's epochs from its
``metrics.jsonl`` and aggregates every point as it ends, as the local runner does. ``collect``
aggregates what has finished without submitting anything. Submitit's own files (the sbatch
scripts, each task's stdout/stderr and pickled result) are under ``SWEEP_DIR/slurm/``.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from mvae_cli.atomic import read_json, write_json
from mvae_cli.errors import UserError
from mvae_cli.sweep.grid import Point, Sweep
from mvae_cli.sweep.runner import (PointStatus, Progress, SweepBook, SweepReport, attempt_point, attempt_stack,
                                   plan, prepare_datasets)
from mvae_cli.sweep.stacks import stack_units

JOBS_FILE = "jobs.json"
_ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "UNKNOWN")


def require_submitit():
    try:
        import submitit
    except ImportError:
        raise UserError("--backend slurm needs submitit: pip install 'mvae-cli[slurm]'") from None
    return submitit


class PointTask:
    """One point's array task: ``(status, evaluation, error, traceback)`` as the local runner's.

    Submitit calls :meth:`checkpoint` on preemption or timeout and requeues what it returns:
    the same task, which resumes the run from ``last.pt``.
    """

    def __init__(self, trainer=None):
        self.trainer = trainer  # the runner's Trainer with the caller's hooks (None: the engine alone)

    def __call__(self, point: Point, run_dir: str) -> tuple:
        return attempt_point(point, Path(run_dir), self.trainer, None, lambda event, **info: None)

    def checkpoint(self, point: Point, run_dir: str):
        return require_submitit().helpers.DelayedSubmission(PointTask(self.trainer), point, run_dir)


class StackTask:
    """The array task of points that train together as one stack (:mod:`~mvae_cli.sweep.stacks`): one
    outcome per point, as :func:`~mvae_cli.sweep.runner.attempt_stack` gives them; requeued as a whole
    on preemption, each run resuming from its own ``last.pt``."""

    def __init__(self, trainer=None):
        self.trainer = trainer

    def __call__(self, points: list[Point], run_dirs: list[str]) -> list[tuple]:
        return attempt_stack(points, [Path(d) for d in run_dirs], self.trainer, None, lambda event, **info: None,
                             lambda i, outcome: None)

    def checkpoint(self, points: list[Point], run_dirs: list[str]):
        return require_submitit().helpers.DelayedSubmission(StackTask(self.trainer), points, run_dirs)


def executor_for(sweep: Sweep, folder: Path, n_tasks: int):
    """A submitit Slurm executor with the recipe's ``slurm:`` resources (one array task per point)."""
    submitit = require_submitit()
    s = sweep.recipe.slurm
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm")
    params = {"timeout_min": s.time_min, "gpus_per_node": s.gpus, "cpus_per_task": s.cpus, "mem_gb": s.mem_gb,
              "nodes": 1, "tasks_per_node": 1, "name": f"mvae-{Path(sweep.source).stem}",
              "slurm_array_parallelism": s.parallel or n_tasks}
    if s.partition:
        params["slurm_partition"] = s.partition
    if s.account:
        params["slurm_account"] = s.account
    executor.update_parameters(**params)
    return executor


def _jobs(folder: Path) -> dict[str, str]:
    return read_json(folder / JOBS_FILE) or {}


def _active(job, queued: set[str] | None) -> bool:
    """Whether an earlier call's task is still queued or running: squeue's answer (``queued``) when it
    gave one (a cluster without accounting has no sacct, so submitit's state would never say done),
    else submitit's state."""
    if queued is not None:
        return str(job.job_id) in queued
    try:
        return job.state.split()[0].upper() in _ACTIVE
    except Exception:  # sacct/squeue unavailable for a moment: assume it still runs
        return True


def _epochs_done(run_dir: Path) -> int:
    try:
        return sum(1 for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip())
    except OSError:
        return 0


def run_on_slurm(sweep: Sweep, out: str | Path, *, progress: Progress | None = None, collect: bool = False,
                 poll_s: float = 10.0, trainer=None, stack: bool = True) -> SweepReport:
    """Submit the unfinished points of ``sweep`` as a Slurm job array, wait, aggregate under ``out``.

    Args:
        sweep: from :func:`mvae_cli.sweep.grid.load_sweep`; ``sweep.recipe.slurm`` holds the resources.
        out: the sweep directory, on a filesystem the nodes share.
        progress: the local runner's events (``point``, ``start``, ``step`` per epoch, ``done``).
        collect: aggregate what has finished; submit nothing and do not wait.
        poll_s: seconds between looks at the queue.
        trainer: the runner's :class:`~mvae_cli.sweep.runner.Trainer`; with it (and ``stack``) the
            points that stack are one task each stack (:class:`StackTask`).

    Returns:
        Every point's status (``pending`` for queued or not yet submitted under ``collect``) and the rows.

    Raises:
        UserError: submitit is not installed, sbatch is missing, or a dataset cannot be built.
    """
    out = Path(out)
    report = progress or (lambda event, **info: None)
    statuses = plan(sweep, out)
    book = SweepBook(sweep, out, statuses, jobs=0)
    book.keep_reused()
    if collect:
        book.write()
        return SweepReport(out, statuses, book.ordered_rows())
    submitit = require_submitit()
    prepare_datasets(statuses, report)  # once, here, so no two tasks race to write it
    book.write()
    folder = (out / "slurm").resolve()
    recorded = _jobs(folder)
    watched: dict[str, tuple[PointStatus, object]] = {}
    to_submit = []
    earlier = [recorded[s.point.name] for s in statuses if not s.reused and s.point.name in recorded]
    queued = in_queue([str(j) for j in earlier]) if earlier else set()
    for index, status in enumerate(statuses):
        report("point", point=status.point.name, index=index, total=len(statuses), reused=status.reused)
        if status.reused:
            report("done", point=status.point.name, status="finished", error=None)
            continue
        job_id = recorded.get(status.point.name)
        job = submitit.SlurmJob(folder=str(folder / "%j"), job_id=job_id) if job_id else None
        if job is not None and _active(job, queued):
            watched[status.point.name] = (status, job)  # still queued or running from an earlier call
        else:
            to_submit.append(status)
    if to_submit:
        # the points of one architecture as one task (within the task's memory, slurm.mem_gb)
        units = (stack_units(to_submit, lambda st: st.point.recipe, 1, lambda text: report("note", text=text),
                             budget=int(sweep.recipe.slurm.mem_gb * 2**30 * 0.5))
                 if stack and hasattr(trainer, "stack") else [[st] for st in to_submit])
        executor = executor_for(sweep, folder, len(units))
        try:
            with executor.batch():
                jobs = [executor.submit(PointTask(trainer), unit[0].point, str(unit[0].run_dir.resolve()))
                        if len(unit) == 1 else
                        executor.submit(StackTask(trainer), [st.point for st in unit],
                                        [str(st.run_dir.resolve()) for st in unit]) for unit in units]
        except (FileNotFoundError, submitit.core.utils.FailedJobError) as error:
            raise UserError(f"could not submit to Slurm ({str(error).splitlines()[0]}); is sbatch on PATH?") from None
        for unit, job in zip(units, jobs):
            for i, status in enumerate(unit):
                watched[status.point.name] = (status, job, None if len(unit) == 1 else i)
                recorded[status.point.name] = job.job_id
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / JOBS_FILE, recorded)
    for status, *_ in watched.values():
        status.status = "running"
    book.write()
    _wait(watched, book, report, poll_s)
    return SweepReport(out, statuses, book.ordered_rows())


def in_queue(job_ids: list[str]) -> set[str] | None:
    """The jobs of ``job_ids`` that ``squeue`` still lists (pending, running, requeued), or None
    when squeue cannot be asked. Array tasks are listed as ``<array>_<task>``."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(job_ids)], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {line.strip() for line in out.stdout.splitlines() if line.strip()} if out.returncode == 0 else set()


def _wait(watched: dict, book: SweepBook, report: Progress, poll_s: float, gone_polls: int = 3) -> None:
    shown: dict[str, int] = {}
    gone: dict[str, int] = {}  # polls for which a task without a result was missing from the queue
    while watched:
        queued = in_queue(list({str(entry[1].job_id) for entry in watched.values()}))
        for name, (status, job, *place) in list(watched.items()):
            epochs = _epochs_done(status.run_dir)
            if epochs and name not in shown:
                info = read_json(status.run_dir / "run.json") or {}
                report("start", point=name, epochs=status.point.recipe.epochs, start_epoch=0, steps_per_epoch=1,
                       n_examples=info.get("mask", {}).get("n_shown", 0), device="slurm", resumed=False)
            if epochs and shown.get(name) != epochs:
                shown[name] = epochs
                report("step", point=name, epoch=epochs - 1, step=1, steps=1, loss=_last_loss(status.run_dir),
                       examples_per_s=0.0)
            if not job.done():
                # Without accounting (sacct), submitit never learns that a killed task ended.
                gone[name] = gone.get(name, 0) + 1 if queued is not None and str(job.job_id) not in queued else 0
                if gone[name] < gone_polls:
                    continue
                outcome = ("failed", None, f"Slurm job {job.job_id} left the queue without a result "
                           f"(killed or cancelled?); run the sweep again to resume it", None)
            else:
                try:
                    outcome = job.result()
                    if place and place[0] is not None:  # a stack's task: one outcome per point
                        outcome = outcome[place[0]]
                except Exception as error:  # the task died (killed, out of memory, node failure)
                    outcome = ("failed", None, f"Slurm job {job.job_id} failed: {str(error).splitlines()[0][:300]}", None)
            status.status, evaluation, status.error, status.traceback = outcome
            book.record(status, evaluation)
            report("done", point=name, status=status.status, error=status.error)
            del watched[name]
        if watched:
            time.sleep(poll_s)


def _last_loss(run_dir: Path) -> float:
    try:
        return float(json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["loss"])
    except (OSError, ValueError, IndexError, KeyError):
        return float("nan")
