"""`mvae eval` on a real (tiny) run: eval.json, the printed table, and one-line errors for bad input."""

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from mvae_cli.data.format import read_dataset, write_dataset
from mvae_cli.engine.loop import train
from mvae_cli.engine.run import load_trained
from mvae_cli.eval_config import EvalConfig
from mvae_cli.evaluate.estimator import prior_noise
from mvae_cli.evaluate.run_eval import evaluate_run
from mvae_cli.recipe import resolve_recipe
from tests.helpers import make_dataset

runner = CliRunner()
KEYS = ["particles", "prior_samples", "split", "checkpoint", "n_examples", "x", "y", "seconds",
        "seconds_by_part",
        "log_px", "log_pxy", "log_px_given_y", "var_log_w", "accuracy", "not_defined", "latent", "latent_warnings",
        "chance", "baseline", "baseline_rows", "coherence", "probe", "paired_probe", "vae_probe"]
FAST = ["--particles", "20", "--prior-samples", "100", "--limit", "30"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = make_dataset(root / "tiny.h5", sizes=(300, 60, 60))
    run = root / "run"
    train(resolve_recipe(None, [f"data.path={data}", "epochs=1", "model.hidden=32", "model.latent_dim=4"]), run)
    return run


def _fails(args, *phrases):
    result = runner.invoke(app, ["eval", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert len(result.output.strip().splitlines()) == 1, result.output
    for phrase in phrases:
        assert phrase in text, result.output


def test_eval_writes_eval_json_and_prints_the_table(run_dir):
    result = runner.invoke(app, ["eval", str(run_dir), *FAST])
    assert result.exit_code == 0, result.output
    assert "x = image · y = label" in result.output and "log p(x|y)" in result.output and "accuracy" in result.output
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert list(evaluation) == KEYS
    assert evaluation["x"] == "image" and evaluation["y"] == ["label"] and evaluation["n_examples"] == 30
    parts = evaluation["seconds_by_part"]
    assert list(parts) == ["likelihoods", "latent_diagnostics", "baseline", "coherence_and_probe", "fair_baselines"]
    assert all(s >= 0 for s in parts.values()) and sum(parts.values()) <= evaluation["seconds"]
    for key in ("log_px", "log_pxy", "log_px_given_y"):
        assert set(evaluation[key]) == {"image", "image+label", "label"}  # label: Eq. 7's q(z|y)
        for figure in evaluation[key].values():
            assert set(figure) == {"mean", "se", "ess"} and 1.0 <= figure["ess"] <= 20.0 and figure["se"] > 0
    assert set(evaluation["var_log_w"]) == {"marginal", "joint", "conditional"}
    # the conditional log weights are the joint ones shifted by log p̂(y): the same variance
    for name, value in evaluation["var_log_w"]["joint"].items():
        assert evaluation["var_log_w"]["conditional"][name] == pytest.approx(value, rel=1e-5)
    assert set(evaluation["accuracy"]) == {"label", "mean"} and 0 <= evaluation["accuracy"]["mean"] <= 1
    assert evaluation["not_defined"] == {}  # the MVAE defines every figure
    # beside the model: a classifier on the paired rows (all 300, the run is fully paired) and chance
    assert evaluation["baseline_rows"] == {"label": 300} and 0 <= evaluation["baseline"]["label"] <= 1
    with read_dataset(json.loads((run_dir / "run.json").read_text())["dataset"]["abspath"]) as dataset:
        labels = dataset.load("test")["label"][:30]
    assert evaluation["chance"]["label"] == pytest.approx(np.bincount(labels).max() / 30)
    assert "paired rows only" in result.output and "chance" in result.output
    # the tables (stdout) fit 80 columns, and so do the warnings and progress lines (stderr)
    assert max(len(line) for line in result.stdout.splitlines() if "wrote" not in line) <= 80
    assert max((len(line) for line in result.stderr.splitlines()), default=0) <= 80


def test_conditional_is_joint_minus_log_p_y_from_the_shared_prior_samples(run_dir):
    evaluation = evaluate_run(run_dir, EvalConfig(particles=10, prior_samples=300, limit=40, seed=3, baseline=False),
                              device="cpu")
    _, info, model = load_trained(run_dir, "best", "cpu")
    with read_dataset(info["dataset"]["abspath"]) as dataset:
        labels = torch.from_numpy(dataset.load("test")["label"][:40]).long()
    with torch.no_grad():  # log p(y) = log (1/S) Σ_s p(y | z_s), z_s ~ p(z), by plain code
        log_softmax = torch.log_softmax(model.decode("label", prior_noise(3, 300, model.latent_dim)), dim=-1)
        log_py = torch.logsumexp(log_softmax[:, labels], dim=0) - np.log(300)
    for name in ("image", "image+label", "label"):
        assert evaluation["log_px_given_y"][name]["mean"] == pytest.approx(
            evaluation["log_pxy"][name]["mean"] - float(log_py.mean()), abs=1e-4)


def test_the_figures_do_not_depend_on_batch_size_or_memory(run_dir):
    config = EvalConfig(particles=30, prior_samples=200, limit=20, seed=5, baseline=False)
    a = evaluate_run(run_dir, config, device="cpu")
    b = evaluate_run(run_dir, config, device="cpu", batch_size=3, max_memory="100KB")
    for key in ("log_px", "log_pxy", "log_px_given_y"):
        for name, figure in a[key].items():
            assert b[key][name] == pytest.approx(figure, rel=1e-6, abs=1e-5)
    for kind, values in a["var_log_w"].items():
        assert b["var_log_w"][kind] == pytest.approx(values, rel=1e-5)
    assert b["accuracy"] == a["accuracy"]


def test_explicit_x_and_y_and_the_default_run(run_dir, tmp_path, monkeypatch):
    evaluation = evaluate_run(run_dir, EvalConfig(particles=5, prior_samples=20, limit=8, x="label", y=["image"],
                                                  baseline=False), device="cpu")
    assert evaluation["x"] == "label" and evaluation["y"] == ["image"]
    assert set(evaluation["log_px"]) == {"label", "label+image", "image"} and evaluation["accuracy"] == {}
    monkeypatch.chdir(tmp_path)  # RUN_DIR defaults to the newest run under runs/
    shutil.copytree(run_dir, tmp_path / "runs" / "only")
    result = runner.invoke(app, ["eval", *FAST, "--split", "valid", "--checkpoint", "last"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "runs" / "only" / "eval.json").read_text())["split"] == "valid"


def test_not_a_run_directory(tmp_path):
    _fails([str(tmp_path)], "is not a run directory")


def test_missing_checkpoint(run_dir, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.yaml", "run.json"):
        shutil.copy(run_dir / name, partial / name)
    _fails([str(partial)], "has no best.pt")


@pytest.mark.parametrize("args,phrases", [
    (["--x", "sound"], ["unknown modality 'sound'", "known: image, label"]),
    (["--y", "label,smell"], ["unknown modality 'smell'", "known: image, label"]),
    (["--y", "image"], ["must not contain x"]),
    # the options are the recipe's eval section: the same checks, the same one-line errors
    (["--particles", "0"], ["--particles must lie in [1, ∞), got 0"]),
    (["--prior-samples", "0"], ["--prior-samples must lie in [1, ∞), got 0"]),
    (["--limit", "0"], ["--limit must lie in [1, ∞), got 0"]),
    (["--split", "train"], ["--split must be one of test, valid, got 'train'"]),
    (["--checkpoint", "worst"], ["--checkpoint must be one of best, last, got 'worst'"]),
    (["--precision", "fp16"], ["--precision must be one of fp32, bf16, got 'fp16'"]),
    (["--batch-size", "0"], ["--batch-size must be at least 1"]),
    (["--max-memory", "lots"], ["is not a size"]),
    (["--device", "tpu"], ["unknown device"]),
])
def test_bad_options(run_dir, args, phrases):
    _fails([str(run_dir), *args], *phrases)


def test_a_split_the_file_lacks(run_dir, tmp_path):
    with read_dataset(json.loads((run_dir / "run.json").read_text())["dataset"]["abspath"]) as dataset:
        arrays = {split: dataset.load(split) for split in ("train", "test")}
        specs = dataset.specs
    write_dataset(tmp_path / "no_valid.h5", "no-valid", specs, arrays, seed=0)
    moved = tmp_path / "run"
    shutil.copytree(run_dir, moved)
    info = json.loads((moved / "run.json").read_text())
    info["dataset"] = {**info["dataset"], "path": str(tmp_path / "no_valid.h5"), "abspath": str(tmp_path / "no_valid.h5"),
                       "fingerprint": None}  # another file on purpose: not the changed-dataset error
    (moved / "run.json").write_text(json.dumps(info))
    _fails([str(moved), "--split", "valid"], "has no 'valid' split", "it has: train, test")


def test_a_run_directory_of_an_earlier_version_still_evaluates(run_dir, tmp_path):
    # Before model.name and the objective's own settings: `objective: mvae` and a top-level k.
    import yaml

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    config = yaml.safe_load((old / "config.yaml").read_text())
    assert config["model"].pop("name") == "mvae"
    config["k"] = config.pop("objective")["k"]
    config["objective"] = "mvae"
    (old / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    info = json.loads((old / "run.json").read_text())
    info.pop("model")
    (old / "run.json").write_text(json.dumps(info))
    config = EvalConfig(particles=5, prior_samples=20, limit=6)
    before, after = evaluate_run(run_dir, config, device="cpu"), evaluate_run(old, config, device="cpu")
    assert after["log_pxy"] == before["log_pxy"] and after["accuracy"] == before["accuracy"]


def test_the_probed_class_is_read_from_run_json(run_dir, tmp_path):
    from mvae_cli.cli.evaluate import _class_name

    assert _class_name(run_dir) == "label"
    assert _class_name(tmp_path) is None  # no run.json: no probe diagnosis, never a traceback


def test_a_second_evaluation_with_the_same_mask_reuses_the_paired_only_classifier(run_dir, monkeypatch):
    import mvae_cli.evaluate.baseline as baseline

    info = json.loads((run_dir / "run.json").read_text())
    baseline.baselines_path(info["dataset"]["path"]).unlink(missing_ok=True)
    first = runner.invoke(app, ["eval", str(run_dir), *FAST])
    assert first.exit_code == 0, first.output
    before = json.loads((run_dir / "eval.json").read_text())

    def no_training(*args, **kwargs):
        raise AssertionError("the paired-only classifier was trained again")

    monkeypatch.setattr(baseline, "train_classifier_groups", no_training)
    again = runner.invoke(app, ["eval", str(run_dir), *FAST])
    assert again.exit_code == 0, again.output
    after = json.loads((run_dir / "eval.json").read_text())
    assert after["baseline"] == before["baseline"] and after["chance"] == before["chance"]
    assert after["baseline_rows"] == before["baseline_rows"]
    # scored on other test rows, it is trained again
    other = runner.invoke(app, ["eval", str(run_dir), "--particles", "20", "--prior-samples", "100", "--limit", "31"])
    assert other.exit_code == 1 and "trained again" in str(other.exception)


def test_every_figure_is_also_saved_per_example_and_averages_to_eval_json(run_dir):
    result = runner.invoke(app, ["eval", str(run_dir), *FAST])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((run_dir / "eval.json").read_text())
    with np.load(run_dir / "eval_examples.npz") as examples:
        assert str(examples["split"]) == "test" and int(examples["n_examples"]) == 30
        keys = set(examples.files) - {"split", "n_examples"}
        assert {"log_px.image", "log_pxy.image+label", "log_px_given_y.image",
                "var_log_w.joint.image+label"} <= keys
        for key in keys:
            values = examples[key]
            assert values.shape == (30,)
            figure, *path = key.split(".")
            stored = evaluation[figure]
            for part in path:
                stored = stored[part]
            mean = stored["mean"] if isinstance(stored, dict) else stored
            se = stored["se"] if isinstance(stored, dict) else None
            assert values.mean() == pytest.approx(mean, rel=1e-9, abs=1e-9), key
            if se is not None:
                assert values.std(ddof=1) / np.sqrt(30) == pytest.approx(se, rel=1e-9), key
    from mvae_cli.sweep.report import run_examples  # what `mvae report` pairs models with

    assert set(run_examples(run_dir)) == keys and run_examples(run_dir.parent) is None
