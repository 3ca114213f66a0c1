import json

import pytest
import yaml

from mvae_cli.atomic import write_json
from mvae_cli.sweep.grid import load_sweep
from mvae_cli.tables.results import read_results
from mvae_cli.sweep.runner import run_sweep
from tests.sweep.fakes import calls, fake_accuracy, fake_evaluate, fake_train


def _sweep(tmp_path, supervision=(0.1, 1.0), seeds=(0, 1), overrides=()):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"epochs": 2, "eval": {"particles": 5, "prior_samples": 10},
                                    "grid": {"supervision": list(supervision), "seed": list(seeds)}}, sort_keys=False))
    return load_sweep(path, list(overrides))


def _run(sweep, out, **kw):
    events = []
    report = run_sweep(sweep, out, trainer=fake_train, evaluator=fake_evaluate,
                      progress=lambda event, **info: events.append((event, info)), **kw)
    return report, events


def test_every_point_is_trained_evaluated_and_tabulated(tmp_path):
    out = tmp_path / "out"
    report, events = _run(_sweep(tmp_path), out)
    assert [s.status for s in report.points] == ["finished"] * 4 and not report.failed
    assert sorted(calls(out)) == sorted(["supervision=0.1,seed=0", "supervision=0.1,seed=1",
                                         "supervision=1.0,seed=0", "supervision=1.0,seed=1"])
    grid, rows = read_results(out)
    assert grid == ["supervision", "seed"]
    expected = [fake_accuracy(f, s) for f in (0.1, 1.0) for s in (0, 1)]
    assert [r["accuracy.mean"] for r in rows] == pytest.approx(expected)
    assert all((out / "runs" / r["point"] / "eval.json").is_file() for r in rows)
    assert [e for e, _ in events].count("done") == 4
    assert ("evaluate", {"point": "supervision=0.1,seed=0", "done": 10, "total": 10}) in events
    info = json.loads((out / "sweep.json").read_text())
    assert [p["status"] for p in info["points"]] == ["finished"] * 4 and info["recipe"]["grid"]["seed"] == [0, 1]


def test_rerun_skips_finished_points_and_resumes_the_others(tmp_path):
    out = tmp_path / "out"
    _run(_sweep(tmp_path), out)
    assert len(calls(out)) == 4
    # An interrupted point: training never finished; another lost only its evaluation.
    interrupted, unevaluated = out / "runs" / "supervision=0.1,seed=1", out / "runs" / "supervision=1.0,seed=0"
    info = json.loads((interrupted / "run.json").read_text())
    write_json(interrupted / "run.json", {**info, "status": "training", "epochs_done": 1})
    (unevaluated / "eval.json").unlink()
    report, _ = _run(_sweep(tmp_path), out)
    assert calls(out)[4:] == ["supervision=0.1,seed=1", "supervision=1.0,seed=0"]
    assert [s.reused for s in report.points] == [True, False, False, True]
    assert len(report.rows) == 4
    # Changing the eval settings re-evaluates every point; more epochs retrain (resume) every point.
    _run(_sweep(tmp_path, overrides=["eval.particles=7"]), out)
    assert len(calls(out)) == 10
    assert json.loads((interrupted / "eval.json").read_text())["particles"] == 7
    report, _ = _run(_sweep(tmp_path, overrides=["eval.particles=7"]), out)
    assert len(calls(out)) == 10 and all(s.reused for s in report.points)


def test_a_failing_point_does_not_stop_the_others(tmp_path):
    out = tmp_path / "out"
    report, events = _run(_sweep(tmp_path, supervision=(0.1, 0.5, 1.0), seeds=(0,)), out)
    assert [s.status for s in report.points] == ["finished", "failed", "finished"]
    assert [s.point.name for s in report.failed] == ["supervision=0.5,seed=0"]
    assert "RuntimeError: the fake trainer fails at supervision 0.5" == report.failed[0].error
    assert [r["point"] for r in read_results(out)[1]] == ["supervision=0.1,seed=0", "supervision=1.0,seed=0"]
    saved = json.loads((out / "sweep.json").read_text())["points"][1]
    assert saved["status"] == "failed" and "fake_train" in saved["traceback"]


def test_jobs_run_points_in_worker_processes(tmp_path):
    out = tmp_path / "out"
    report, events = _run(_sweep(tmp_path, supervision=(0.1, 0.5, 1.0), seeds=(0,)), out, jobs=2)
    assert [s.status for s in report.points] == ["finished", "failed", "finished"]
    assert sorted(calls(out)) == ["supervision=0.1,seed=0", "supervision=0.5,seed=0", "supervision=1.0,seed=0"]
    assert {info["point"] for event, info in events if event == "start"} == {
        "supervision=0.1,seed=0", "supervision=1.0,seed=0"}
    assert [r["accuracy.mean"] for r in report.rows] == pytest.approx([fake_accuracy(0.1, 0), fake_accuracy(1.0, 0)])


def test_a_point_evaluated_before_the_fair_baselines_is_evaluated_again(tmp_path):
    out = tmp_path / "out"
    _run(_sweep(tmp_path, supervision=(0.1,), seeds=(0,)), out)
    run = out / "runs" / "supervision=0.1,seed=0"
    evaluation = json.loads((run / "eval.json").read_text())
    # an eval.json with chance and the paired-only classifier, but from before the fair baselines
    write_json(run / "eval.json", {**evaluation, "chance": {"label": 0.1, "mean": 0.1}})
    evaluated = []
    report = run_sweep(_sweep(tmp_path, supervision=(0.1,), seeds=(0,)), out, trainer=fake_train,
                       evaluator=lambda *a, **k: evaluated.append(1) or {**fake_evaluate(*a, **k), "vae_probe": {}},
                       progress=lambda event, **info: None)
    assert evaluated == [1] and not report.points[0].reused
    # with the fair baselines in it (or without chance: nothing to compare) the point is kept
    write_json(run / "eval.json", {**evaluation, "chance": {"label": 0.1}, "vae_probe": {"label": 0.5}})
    assert run_sweep(_sweep(tmp_path, supervision=(0.1,), seeds=(0,)), out, trainer=fake_train,
                     evaluator=fake_evaluate, progress=lambda event, **info: None).points[0].reused
