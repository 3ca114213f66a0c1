import csv
import json
import math

import pytest

from mvae_cli.tables.results import build_row, flatten_eval, read_results, summary_rows, write_tables
from mvae_cli.tables.stats import summarize, t_quantile_975
from mvae_cli.errors import UserError
from tests.sweep.fakes import fake_evaluate


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423),
                                          (31, 2.0395), (60, 2.0003), (120, 1.9799), (10_000, 1.9602)])
def test_t_quantile_matches_student_t(df, expected):
    assert t_quantile_975(df) == pytest.approx(expected, abs=1e-4)


def test_summary_of_three_values_by_hand():
    s = summarize([1.0, 2.0, 6.0])
    assert s.mean == pytest.approx(3.0)
    assert s.std == pytest.approx(math.sqrt(7.0))  # ((4 + 1 + 9) / 2) ** 0.5
    assert s.ci95 == pytest.approx(4.302653 * math.sqrt(7.0) / math.sqrt(3))
    assert s.count == 3


def test_summary_leaves_out_missing_values_and_needs_two_for_spread():
    s = summarize([0.5, None, float("nan")])
    assert (s.mean, s.count) == (0.5, 1) and math.isnan(s.std) and math.isnan(s.ci95)
    assert summarize([]).count == 0


def _read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _eval(tmp_path, supervision, seed):
    from mvae_cli.engine.run import write_config
    from mvae_cli.eval_config import EvalConfig
    from mvae_cli.recipe import recipe_from_dict

    run = tmp_path / f"s{supervision}-{seed}"
    run.mkdir()
    write_config(run, recipe_from_dict({"supervision": supervision, "seed": seed}))
    return fake_evaluate(run, EvalConfig(particles=5, prior_samples=10))


def test_flatten_eval_names_every_figure(tmp_path):
    flat = flatten_eval(_eval(tmp_path, 0.1, 0))
    assert flat["log_px.image.mean"] == -100.0 and flat["log_px.image.se"] == 0.1
    assert flat["var_log_w.joint.image+label"] == 2.0
    assert flat["accuracy.label"] == pytest.approx(0.54) and flat["accuracy.mean"] == pytest.approx(0.54)
    assert not {"particles", "n_examples", "seconds"} & set(flat)


def test_tables_aggregate_over_seeds(tmp_path):
    rows = []
    for supervision in (0.1, 1.0):
        for seed in (0, 1, 2):
            evaluation = _eval(tmp_path, supervision, seed)
            rows.append(build_row(f"supervision={supervision},seed={seed}", {"supervision": supervision, "seed": seed},
                                  seed, evaluation, {"train_seconds": 10.0 + seed, "best_valid_elbo": -5.0}))
    out = tmp_path / "sweep"
    write_tables(out, ["supervision", "seed"], rows)

    results = _read_csv(out / "results.csv")
    assert len(results) == 6
    assert float(results[4]["accuracy.mean"]) == pytest.approx(0.5 + 0.4 + 0.01)
    assert results[0]["eval_seconds"] == "3.0" and results[2]["train_seconds"] == "12.0"
    assert list(results[0])[:3] == ["point", "supervision", "seed"]

    summary = {(r["supervision"], r["figure"]): r for r in _read_csv(out / "summary.csv")}
    acc = summary[("1.0", "accuracy.mean")]
    # accuracies 0.90, 0.91, 0.92: mean 0.91, std 0.01, CI t(2) * 0.01 / sqrt(3)
    assert float(acc["mean"]) == pytest.approx(0.91)
    assert float(acc["std"]) == pytest.approx(0.01)
    assert float(acc["ci95"]) == pytest.approx(4.302653 * 0.01 / math.sqrt(3))
    assert acc["count"] == "3"
    logpx = summary[("0.1", "log_px.image.mean")]  # -100, -101, -102
    assert float(logpx["mean"]) == pytest.approx(-101.0) and float(logpx["std"]) == pytest.approx(1.0)
    assert float(summary[("0.1", "train_seconds")]["mean"]) == pytest.approx(11.0)
    assert ("0.1", "seed") not in summary and len({k[0] for k in summary}) == 2

    grid, again = read_results(out)
    assert grid == ["supervision", "seed"] and again == json.loads(json.dumps(rows))


def test_summary_rows_without_seed_in_the_grid_have_no_spread():
    rows = [{"point": "k=0", "k": 0, "seed": 0, "v": 1.0}, {"point": "k=1", "k": 1, "seed": 0, "v": 3.0}]
    stats = summary_rows(rows, ["k"], ["v"])
    assert [(s["k"], s["mean"], s["count"]) for s in stats] == [(0, 1.0, 1), (1, 3.0, 1)]
    assert math.isnan(stats[0]["std"])


def test_read_results_refuses_a_folder_without_results(tmp_path):
    with pytest.raises(UserError, match="no results.json"):
        read_results(tmp_path)
    write_tables(tmp_path, ["seed"], [])
    with pytest.raises(UserError, match="no results yet"):
        read_results(tmp_path)
