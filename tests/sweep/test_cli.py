"""End to end through the CLI: a tiny shapes dataset, the real engine and the real evaluator."""

import csv
import json

import pytest
import yaml
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from mvae_cli.data.prepare import prepare_dataset

# The paired-only classifiers (5 per point here) are checked in tests/evaluate and on the custom dataset.
TINY = ["epochs=1", "model.hidden=32", "model.latent_dim=8", "eval.particles=5", "eval.prior_samples=10",
        "eval.baseline=false"]
ATTRIBUTES = ("shape", "colour", "size", "xpos", "ypos")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "shapes.h5"
    return prepare_dataset("shapes", path, sizes={"train": 300, "valid": 100, "test": 100})


def _recipe(tmp_path, shapes, grid, name="study"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": str(shapes)}, "batch_size": 100, "grid": grid},
                                   sort_keys=False))
    return path


def _read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_sweep_trains_evaluates_aggregates_resumes_and_plots(tmp_path, shapes):
    recipe = _recipe(tmp_path, shapes, {"supervision": [0.1, 1.0], "seed": [0, 1]})
    out = tmp_path / "sweep"
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(recipe), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output

    # not a terminal: every epoch and every part of each evaluation is a line of the log
    for part in ("training on 300 examples", "epoch 1/1  loss", "evaluating: likelihoods of 100 examples",
                 "evaluating: coherence and latent probe"):
        assert f"supervision=0.1,seed=1  {part}" in result.output, part
    assert "4 points over supervision, seed" in " ".join(result.output.split())
    drawn = out / "figures" / "accuracy_vs_supervision.png"
    assert drawn.stat().st_size > 5000  # the sweep draws its figures as it ends
    for stem in ("likelihoods", "coherence", "probe"):
        assert (out / "figures" / f"{stem}_vs_supervision.png").stat().st_size > 5000
    drawn.unlink()
    rows = _read_csv(out / "results.csv")
    assert [r["point"] for r in rows] == ["supervision=0.1,seed=0", "supervision=0.1,seed=1",
                                          "supervision=1.0,seed=0", "supervision=1.0,seed=1"]
    for row in rows:
        accuracies = [float(row[f"accuracy.{a}"]) for a in ATTRIBUTES]
        assert all(0.0 <= a <= 1.0 for a in accuracies)
        assert float(row["accuracy.mean"]) == pytest.approx(sum(accuracies) / 5)
        assert float(row["log_px.image.mean"]) < 0 and float(row["train_seconds"]) > 0
        run = out / "runs" / row["point"]
        assert json.loads((run / "run.json").read_text())["status"] == "finished"
        evaluation = json.loads((run / "eval.json").read_text())
        assert (evaluation["particles"], evaluation["n_examples"]) == (5, 100)
        assert float(row["eval_seconds"]) == pytest.approx(evaluation["seconds"])
        assert row["n_examples"] == "100" and "baseline.shape" not in row
    summary = {(r["supervision"], r["figure"]): r for r in _read_csv(out / "summary.csv")}
    acc = summary[("1.0", "accuracy.mean")]
    values = [float(r["accuracy.mean"]) for r in rows[2:]]
    assert acc["count"] == "2" and float(acc["mean"]) == pytest.approx(sum(values) / 2)
    assert float(acc["ci95"]) == pytest.approx(12.706205 * abs(values[0] - values[1]) / 2, rel=1e-6)

    stamps = {r["point"]: (out / "runs" / r["point"] / "eval.json").stat().st_mtime_ns for r in rows}
    result = runner.invoke(app, ["sweep", str(recipe), "--out", str(out), *TINY])
    assert result.exit_code == 0 and "4 points were finished already" in result.output
    assert stamps == {r["point"]: (out / "runs" / r["point"] / "eval.json").stat().st_mtime_ns for r in rows}

    result = runner.invoke(app, ["sweep", str(recipe), "--out", str(out), "--dry-run", *TINY, "epochs=2"])
    assert result.exit_code == 0 and result.output.count("resumes after epoch 1") == 4

    result = runner.invoke(app, ["plot", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "figures" / "accuracy_vs_supervision.png").stat().st_size > 5000
    result = runner.invoke(app, ["plot", str(out / "runs" / "supervision=0.1,seed=0")])
    assert result.exit_code == 0 and (out / "runs" / "supervision=0.1,seed=0" / "figures" / "curves.png").is_file()


def test_a_failing_point_does_not_stop_the_others_and_exits_1(tmp_path, shapes):
    # A learning rate of 1e30 diverges in training: only running the point discovers it. (A bad
    # modality name, in eval.x for instance, is refused before any point runs: see test_drill.)
    recipe = _recipe(tmp_path, shapes, {"lr": [1.0e30, 0.002]})
    result = CliRunner().invoke(app, ["sweep", str(recipe), "--out", str(tmp_path / "s"), *TINY])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "1 of 2 points failed" in text and "lr=1e+30: the loss became" in text
    rows = _read_csv(tmp_path / "s" / "results.csv")
    assert [r["point"] for r in rows] == ["lr=0.002"]
    assert 0 <= float(rows[0]["accuracy.shape"]) <= 1


@pytest.mark.parametrize("grid, message", [
    (None, "has no grid"),
    ({"supervison": [0.1]}, "unknown recipe key 'supervison'"),
    ({"supervision": [0.1, 2.0]}, "supervision=2.0"),
])
def test_bad_recipes_are_one_line_and_exit_2(tmp_path, shapes, grid, message):
    recipe = _recipe(tmp_path, shapes, grid)
    result = CliRunner().invoke(app, ["sweep", str(recipe), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_the_summary_shows_the_joint_proposal_not_q_z_given_y():
    from mvae_cli.cli.study_tables import summary_columns

    figures = ["accuracy.mean", "log_px.image.mean", "log_px.image+label.mean", "log_px.label.mean",
               "log_pxy.image.mean", "log_pxy.image+label.mean", "log_pxy.label.mean",
               "log_px_given_y.image.mean", "log_px_given_y.image+label.mean", "log_px_given_y.label.mean"]
    shown = dict(summary_columns(figures))
    assert shown["log_px.image.mean"] == "log p(x)\nq(z|x)"
    assert shown["log_pxy.image+label.mean"] == "log p(x,y)\nq(z|x,y)"  # Eq. 7's q(z|y) comes last in eval.json
    assert shown["log_px_given_y.image+label.mean"] == "log p(x|y)\nq(z|x,y)"
