"""`mvae train model.name=X` then `mvae eval` for every model of the registry, through the CLI."""

import json

import pytest
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from tests.helpers import make_dataset

runner = CliRunner()
SMALL = ["epochs=1", "model.hidden=16", "model.latent_dim=4", "batch_size=64"]
EVAL = ["--particles", "8", "--prior-samples", "50", "--limit", "20"]
# what each model leaves undefined in eval.json (proposals: image, image+label, label)
UNDEFINED = {
    "mvae": set(),
    "mvae-q": set(),
    "jmvae": set(),
    "cvae": {f"{key}.{p}" for key in ("log_px", "log_pxy") for p in ("image", "image+label", "label")}
            | {"log_px_given_y.image", "log_px_given_y.label", "accuracy"},
    "mmvae": set(),
    "mopoe": set(),
    "mmjsd": set(),
    "bivcca": {f"{key}.image+label" for key in ("log_px", "log_pxy", "log_px_given_y")},
    "vae": {f"{key}.{p}" for key in ("log_px", "log_pxy", "log_px_given_y") for p in ("image", "image+label", "label")}
           - {"log_px.image"} | {"accuracy"},
}


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n != "bivcca" else n for n in UNDEFINED])
def test_train_and_eval_every_model(data_path, tmp_path, name):
    out = tmp_path / name
    result = runner.invoke(app, ["train", "--data", str(data_path), "--supervision", "0.5", "--out", str(out),
                                 f"model.name={name}", *SMALL])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    assert info["model"]["name"] == name and 0 < info["model"]["parameters"]["inference"] < \
        info["model"]["parameters"]["total"]
    result = runner.invoke(app, ["eval", str(out), *EVAL])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((out / "eval.json").read_text())
    assert set(evaluation["not_defined"]) == UNDEFINED[name]
    for key in ("log_px", "log_pxy", "log_px_given_y"):
        for proposal, figure in evaluation[key].items():
            if f"{key}.{proposal}" in UNDEFINED[name]:
                assert figure is None and evaluation["not_defined"][f"{key}.{proposal}"]
            else:
                assert figure["mean"] < 0 and figure["se"] >= 0
    assert (evaluation["accuracy"] is None) == (name in ("vae", "cvae"))
    # coherence and the probe, with classifiers cached beside the dataset (trained once)
    cache = data_path.with_name(data_path.name + ".classifiers.pt")
    assert cache.is_file() and 0 <= evaluation["coherence"]["classifier_accuracy"]["image"] <= 1
    coherence, probe = evaluation["coherence"], evaluation["probe"]
    assert all(0 <= share <= 1 for share in coherence["cross_by_size"].values())
    assert (coherence["joint"] is None) == (name in ("vae", "cvae"))  # they do not generate both modalities
    assert all(0 <= share <= 1 for share in probe.values())
    assert ("image" in probe) == (name != "cvae")
    stamp = cache.stat().st_mtime_ns
    assert runner.invoke(app, ["eval", str(out), *EVAL]).exit_code == 0 and cache.stat().st_mtime_ns == stamp


def test_the_mmvae_with_laplace_posteriors_and_likelihood_trains_and_evaluates(data_path, tmp_path):
    out = tmp_path / "laplace"
    result = runner.invoke(app, ["train", "--data", str(data_path), "--supervision", "0.5", "--out", str(out),
                                 "model.name=mmvae", "model.posterior=laplace", "model.likelihoods.image=laplace",
                                 *SMALL])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(out), *EVAL])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((out / "eval.json").read_text())
    assert all(f["mean"] < 0 for f in evaluation["log_px"].values())
    assert evaluation["latent"]["image"]["kl"] > 0  # the KL to the Laplace prior, in closed form
    refused = runner.invoke(app, ["train", "--data", str(data_path), "--out", str(tmp_path / "no"),
                                  "model.name=mvae", "model.posterior=laplace", *SMALL])
    assert refused.exit_code == 2 and "model.posterior=laplace is for mmvae" in refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "no").exists()
