"""Which points of a sweep train together (mvae_cli.sweep.stacks), and the runner's stacked path."""

from __future__ import annotations

import pytest
import yaml

from mvae_cli.sweep.grid import load_sweep
from mvae_cli.sweep.runner import run_sweep
from mvae_cli.sweep.stacks import stack_units
from tests.helpers import make_dataset
from tests.sweep.fakes import FakeStackTrainer, calls, fake_accuracy, fake_evaluate, stack_calls


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def _sweep(tmp_path, data_path, grid, overrides=()):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": str(data_path)}, "epochs": 2, "model": {"hidden": 16, "latent_dim": 4},
                                    "eval": {"particles": 5, "prior_samples": 10}, "grid": grid}, sort_keys=False))
    return load_sweep(path, list(overrides))


def _run(sweep, out, **kw):
    events = []
    report = run_sweep(sweep, out, trainer=FakeStackTrainer(), evaluator=fake_evaluate,
                       progress=lambda event, **info: events.append((event, info)), **kw)
    return report, events


def test_points_of_one_architecture_form_one_unit(tmp_path, data_path):
    sweep = _sweep(tmp_path, data_path, {"supervision": [0.1, 1.0], "seed": [0, 1, 2]})
    notes = []
    units = stack_units(sweep.points, lambda p: p.recipe, note=notes.append)
    assert [len(u) for u in units] == [6]
    assert notes == ["6 runs train together as one stacked model (--no-stack: one by one)"]
    assert [len(u) for u in stack_units(sweep.points, lambda p: p.recipe, jobs=4)] == [2, 2, 2]  # one piece per job
    notes.clear()
    small = stack_units(sweep.points, lambda p: p.recipe, note=notes.append, budget=1)
    assert [len(u) for u in small] == [1] * 6 and "split into 6 stacks of at most 1" in notes[0]


def test_architectures_and_models_that_differ_do_not_stack(tmp_path, data_path):
    sweep = _sweep(tmp_path, data_path, {"model.hidden": [8, 16], "seed": [0, 1]})
    assert sorted(len(u) for u in stack_units(sweep.points, lambda p: p.recipe)) == [2, 2]
    notes = []
    mixed = _sweep(tmp_path, data_path, {"model.name": ["mvae", "mmvae"], "seed": [0, 1]})
    units = stack_units(mixed.points, lambda p: p.recipe, note=notes.append)
    assert sorted(len(u) for u in units) == [1, 1, 2]
    assert any("train one by one: the mmvae objective does not stack yet" in n for n in notes)


def test_the_sweep_trains_a_stack_and_records_every_point(tmp_path, data_path):
    out = tmp_path / "out"
    report, events = _run(_sweep(tmp_path, data_path, {"supervision": [0.1, 0.5, 1.0], "seed": [0]}), out)
    assert stack_calls(out) == [["supervision=0.1,seed=0", "supervision=0.5,seed=0", "supervision=1.0,seed=0"]]
    assert [s.status for s in report.points] == ["finished", "failed", "finished"]  # 0.5: the fake fails it
    assert "fake trainer fails" in report.failed[0].error
    assert [r["accuracy.mean"] for r in report.rows] == pytest.approx([fake_accuracy(0.1, 0), fake_accuracy(1.0, 0)])
    assert any(e == "note" and "3 runs train together" in i["text"] for e, i in events)
    assert [e for e, _ in events].count("done") == 3


def test_no_stack_trains_one_by_one(tmp_path, data_path):
    out = tmp_path / "out"
    report, events = _run(_sweep(tmp_path, data_path, {"supervision": [0.1, 1.0], "seed": [0]}), out, stack=False)
    assert stack_calls(out) == [] and sorted(calls(out)) == ["supervision=0.1,seed=0", "supervision=1.0,seed=0"]
    assert not report.failed and not any(e == "note" for e, _ in events)


def test_jobs_spread_stacks_over_processes(tmp_path, data_path):
    out = tmp_path / "out"
    report, _ = _run(_sweep(tmp_path, data_path, {"supervision": [0.1, 1.0], "seed": [0, 1]}), out, jobs=2)
    assert sorted(len(s) for s in stack_calls(out)) == [2, 2]
    assert not report.failed and len(report.rows) == 4


def test_runs_of_other_epoch_lengths_are_units_of_their_own(tmp_path, data_path):
    sweep = _sweep(tmp_path, data_path, {"supervision": [0.1, 1.0], "seed": [0, 1]}, ["paired_share=0.25"])
    assert sorted(len(u) for u in stack_units(sweep.points, lambda p: p.recipe)) == [2, 2]  # a level each
    keep = _sweep(tmp_path, data_path, {"keep_prob": [0.5, 0.8], "seed": [0, 1]})
    assert sorted(len(u) for u in stack_units(keep.points, lambda p: p.recipe)) == [2, 2]


def test_a_stack_evaluates_first_the_runs_whose_classifiers_are_ready(tmp_path, monkeypatch):
    """The paired-only classifiers of one level are trained by the process beside (its lock is held):
    this stack evaluates its other runs meanwhile, then waits for that level and evaluates its runs."""
    from types import SimpleNamespace

    from mvae_cli.sweep import runner

    class Trainer:
        def stack(self, recipes, run_dirs, progress):
            return [None] * len(recipes)

    calls = []

    def precompute(run_dirs, configs, device, stage=None, deferred=None):
        calls.append(("precompute", [d.name for d in run_dirs], deferred is not None))
        if deferred is not None:
            deferred.append(run_dirs[0])  # p0's level: held by the other process
        return 0

    monkeypatch.setattr(runner, "precompute_baselines", precompute)
    monkeypatch.setattr(runner, "evaluate_point",
                        lambda point, run_dir, evaluator, progress: calls.append(("evaluate", run_dir.name)) or run_dir.name)
    points = [SimpleNamespace(name=f"p{i}", recipe=SimpleNamespace(eval=None, device="cpu")) for i in range(3)]
    finished = []
    outcomes = runner.attempt_stack(points, [tmp_path / p.name for p in points], Trainer(), None,
                                    lambda event, **info: None, lambda i, outcome: finished.append(i))
    assert calls == [("precompute", ["p0", "p1", "p2"], True), ("evaluate", "p1"), ("evaluate", "p2"),
                     ("precompute", ["p0"], False), ("evaluate", "p0")]
    assert finished == [1, 2, 0] and [o[1] for o in outcomes] == ["p0", "p1", "p2"]


def test_a_stack_whose_worker_dies_fails_its_points_and_the_sweep_ends(tmp_path, data_path):
    from tests.sweep.fakes import DyingStackTrainer

    out = tmp_path / "out"
    report = run_sweep(_sweep(tmp_path, data_path, {"supervision": [0.1, 1.0], "seed": [0, 1]}), out,
                       trainer=DyingStackTrainer(), evaluator=fake_evaluate, jobs=2)
    # A dead worker breaks the pool: the other stack's points finish or fail with it (as it happens
    # to stand), and the sweep still ends with every point recorded.
    assert {s.status for s in report.points} <= {"finished", "failed"}
    dead = [s for s in report.points if "supervision=1.0" in s.point.name]
    assert [s.status for s in dead] == ["failed", "failed"]
    assert all("worker process failed" in s.error for s in report.failed)
