"""``mvae sweep --backend slurm`` through submitit.

The test marked ``slurm`` runs a real sweep on a Slurm cluster (``scripts/slurm_local.sh``
brings up a one-node one on localhost); it is skipped where ``sbatch`` or submitit is absent.
"""

import builtins
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from mvae_cli.errors import UserError
from mvae_cli.sweep.grid import load_sweep
from tests.helpers import make_dataset


def _sweep_recipe(tmp_path, data):
    recipe = {"data": {"path": str(data)}, "epochs": 2, "batch_size": 50,
              "model": {"latent_dim": 4, "hidden": 16},
              "eval": {"particles": 10, "prior_samples": 20, "limit": 30},
              "slurm": {"gpus": 0, "cpus": 1, "mem_gb": 1, "time_min": 10},
              "grid": {"supervision": [0.5, 1.0]}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _need_a_cluster():
    if shutil.which("sbatch") is None:
        pytest.skip("no sbatch: bring up a cluster with scripts/slurm_local.sh")
    pytest.importorskip("submitit")


def test_missing_submitit_is_one_line_saying_what_to_install(tmp_path, monkeypatch):
    from mvae_cli.sweep.slurm import run_on_slurm

    real = builtins.__import__

    def no_submitit(name, *args, **kwargs):
        if name == "submitit":
            raise ImportError("No module named 'submitit'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    sweep = load_sweep(_sweep_recipe(tmp_path, make_dataset(tmp_path / "tiny.h5")))
    with pytest.raises(UserError, match=r"^--backend slurm needs submitit: pip install 'mvae-cli\[slurm\]'$"):
        run_on_slurm(sweep, tmp_path / "out")
    assert not (tmp_path / "out" / "slurm").exists()


def test_a_preempted_task_requeues_itself_with_the_same_point(tmp_path):
    pytest.importorskip("submitit")
    from mvae_cli.sweep.slurm import PointTask

    point = load_sweep(_sweep_recipe(tmp_path, tmp_path / "tiny.h5")).points[0]
    again = PointTask().checkpoint(point, "/shared/runs/x")
    assert isinstance(again.function, PointTask) and again.args == (point, "/shared/runs/x")


@pytest.mark.slurm
def test_a_sweep_runs_on_slurm_end_to_end(tmp_path):
    _need_a_cluster()
    from mvae_cli.sweep.slurm import run_on_slurm

    recipe = _sweep_recipe(tmp_path, make_dataset(tmp_path / "tiny.h5"))
    out = tmp_path / "out"
    events = []
    report = run_on_slurm(load_sweep(recipe), out, poll_s=1,
                          progress=lambda event, **info: events.append((event, info.get("point"))))
    assert [p.status for p in report.points] == ["finished", "finished"], [p.error for p in report.points]
    assert len(report.rows) == 2 and all(r["accuracy.label"] >= 0 for r in report.rows)
    for status in report.points:
        evaluation = json.loads((status.run_dir / "eval.json").read_text())
        assert evaluation["particles"] == 10 and evaluation["n_examples"] == 30
        assert json.loads((status.run_dir / "run.json").read_text())["epochs_done"] == 2
    jobs = json.loads((out / "slurm" / "jobs.json").read_text())
    assert sorted(jobs) == ["supervision=0.5", "supervision=1.0"]
    assert len({job.split("_")[0] for job in jobs.values()}) == 1  # one job array
    assert ("done", "supervision=0.5") in events and ("done", "supervision=1.0") in events

    again = run_on_slurm(load_sweep(recipe), out, poll_s=1)  # nothing left to submit
    assert all(p.reused for p in again.points)
    assert json.loads((out / "slurm" / "jobs.json").read_text()) == jobs

    cli = subprocess.run([sys.executable, "-m", "mvae_cli", "sweep", str(recipe), "--out", str(out), "--collect"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert cli.returncode == 0, cli.stderr
    assert "collected 2 of 2 finished points" in cli.stdout + cli.stderr


def test_a_task_that_leaves_the_queue_without_a_result_fails_instead_of_hanging(tmp_path, monkeypatch):
    from mvae_cli.sweep import slurm
    from mvae_cli.sweep.runner import SweepBook, plan

    sweep = load_sweep(_sweep_recipe(tmp_path, tmp_path / "tiny.h5"))
    statuses = plan(sweep, tmp_path / "out")

    class Killed:  # what submitit shows for a cancelled task when sacct is unavailable
        job_id = "7_0"

        def done(self):
            return False

    queue = iter([{"7_0"}, set(), set(), set()])
    monkeypatch.setattr(slurm, "in_queue", lambda ids: next(queue))
    events = []
    slurm._wait({"p": (statuses[0], Killed())}, SweepBook(sweep, tmp_path / "out", statuses, 0),
                lambda event, **info: events.append((event, info.get("status"))), poll_s=0)
    assert statuses[0].status == "failed" and "left the queue without a result" in statuses[0].error
    assert events == [("done", "failed")]


def test_an_earlier_task_is_waited_for_only_while_squeue_lists_it():
    # Without accounting (no sacct) submitit's state never says a task ended: a point whose task
    # failed was watched again on the next call instead of being resubmitted.
    from mvae_cli.sweep.slurm import _active

    class Job:
        job_id = "7_0"

        @property
        def state(self):
            raise RuntimeError("sacct: Slurm accounting storage is disabled")

    assert _active(Job(), {"7_0", "8_1"}) and not _active(Job(), set()) and not _active(Job(), {"7_1"})
    assert _active(Job(), None)  # squeue unreachable for a moment and no state: assume it still runs


def test_a_stack_is_one_task_and_each_point_reads_its_own_outcome(tmp_path):
    from mvae_cli.sweep import slurm
    from mvae_cli.sweep.runner import SweepBook, plan

    sweep = load_sweep(_sweep_recipe(tmp_path, tmp_path / "tiny.h5"))
    statuses = plan(sweep, tmp_path / "out")

    class Done:  # a finished stack task: one outcome per point
        job_id = "9_0"

        def done(self):
            return True

        def result(self):
            return [("failed", None, "the first point diverged", None), ("failed", None, "the second too", None)]

    job = Done()
    events = []
    slurm._wait({s.point.name: (s, job, i) for i, s in enumerate(statuses)},
                SweepBook(sweep, tmp_path / "out", statuses, 0),
                lambda event, **info: events.append((event, info.get("error"))), poll_s=0)
    assert [s.error for s in statuses] == ["the first point diverged", "the second too"]
    assert events == [("done", "the first point diverged"), ("done", "the second too")]


def test_a_preempted_stack_requeues_itself_with_the_same_points(tmp_path):
    pytest.importorskip("submitit")
    from mvae_cli.sweep.slurm import StackTask

    points = load_sweep(_sweep_recipe(tmp_path, tmp_path / "tiny.h5")).points
    again = StackTask().checkpoint(points, ["/shared/runs/a", "/shared/runs/b"])
    assert isinstance(again.function, StackTask) and again.args == (points, ["/shared/runs/a", "/shared/runs/b"])


@pytest.mark.slurm
def test_a_stack_runs_on_slurm_as_one_task(tmp_path):
    _need_a_cluster()
    from mvae_cli.sweep.runner import Trainer
    from mvae_cli.sweep.slurm import run_on_slurm

    recipe = _sweep_recipe(tmp_path, make_dataset(tmp_path / "tiny.h5"))
    out = tmp_path / "out"
    events = []
    report = run_on_slurm(load_sweep(recipe), out, poll_s=1, trainer=Trainer(),
                          progress=lambda event, **info: events.append((event, info.get("text"))))
    assert [p.status for p in report.points] == ["finished", "finished"], [p.error for p in report.points]
    jobs = json.loads((out / "slurm" / "jobs.json").read_text())
    assert len(set(jobs.values())) == 1  # both points in one task
    assert ("note", "2 runs train together as one stacked model (--no-stack: one by one)") in events
    for status in report.points:
        assert json.loads((status.run_dir / "run.json").read_text())["epochs_done"] == 2
        assert (status.run_dir / "eval.json").is_file()
