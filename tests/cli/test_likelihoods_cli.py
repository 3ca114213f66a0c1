"""`mvae train` then `mvae eval` with each likelihood (recipe key model.likelihoods) and with data.binarize."""

import json
import math

import pytest
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from tests.helpers import make_dataset

runner = CliRunner()
SMALL = ["epochs=1", "model.hidden=16", "model.latent_dim=4", "batch_size=64"]
FAST_EVAL = ["--particles", "5", "--prior-samples", "20", "--limit", "12"]
PIXELS = 64  # the 1×8×8 images of tests.helpers


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def _max_log_density(choice: str) -> float:
    """An upper bound of log p(x | z) over z, where the likelihood has one: a ceiling on log p̂(x)."""
    if choice.startswith("gaussian:0"):
        return -PIXELS * math.log(float(choice.split(":")[1]) * math.sqrt(2 * math.pi))
    if choice.startswith("laplace:0"):
        return -PIXELS * math.log(2 * float(choice.split(":")[1]))
    if choice == "bernoulli":
        return 0.0  # exp(−BCE) ≤ 1 for x in [0, 1]
    return math.inf


@pytest.mark.parametrize("choice,extra", [
    ("continuous-bernoulli", []),
    ("laplace:learned-per-dim", []),
    pytest.param("bernoulli", ["data.binarize=true"], marks=pytest.mark.slow),
    pytest.param("bernoulli", [], marks=pytest.mark.slow),
    pytest.param("gaussian:0.2", [], marks=pytest.mark.slow),
    pytest.param("gaussian:learned", [], marks=pytest.mark.slow),
    pytest.param("laplace:0.3", [], marks=pytest.mark.slow),
])
def test_train_and_eval_with_each_likelihood(data_path, tmp_path, choice, extra):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(data_path), "--out", str(run), *SMALL,
                                 f"model.likelihoods.image={choice}", *extra])
    assert result.exit_code == 0, result.output
    assert (run / "samples.png").is_file()
    assert json.loads((run / "run.json").read_text())["likelihoods"]["image"] == choice
    result = runner.invoke(app, ["eval", str(run), *FAST_EVAL])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((run / "eval.json").read_text())
    for key in ("log_px", "log_pxy", "log_px_given_y"):
        for figure in evaluation[key].values():
            assert math.isfinite(figure["mean"]) and figure["se"] > 0, (key, figure)
    for figure in evaluation["log_px"].values():
        assert figure["mean"] <= _max_log_density(choice)


def _fails(args, *phrases):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    text = " ".join(result.output.split())
    for phrase in phrases:
        assert phrase in text, result.output


@pytest.mark.parametrize("override,phrases", [
    ("model.likelihoods.image=poisson", ["'model.likelihoods.image'", "unknown likelihood 'poisson'"]),
    ("model.likelihoods.image=gaussian:0", ["'model.likelihoods.image'", "positive number"]),
    ("model.likelihoods.imag=gaussian", ["'model.likelihoods.imag'", "no modality 'imag'", "image, label"]),
    ("model.likelihoods.label=laplace", ["'model.likelihoods.label'", "does not fit categorical modalities"]),
])
def test_bad_likelihoods_are_one_line_naming_the_key(data_path, tmp_path, override, phrases):
    _fails(["train", "--data", str(data_path), "--out", str(tmp_path / "run"), *SMALL, override], *phrases)
    assert not (tmp_path / "run").exists()


def test_binarize_with_a_density_is_refused(data_path, tmp_path):
    _fails(["train", "--data", str(data_path), "--out", str(tmp_path / "run"), *SMALL, "data.binarize=true",
            "model.likelihoods.image=continuous-bernoulli"], "'data.binarize'", "must be bernoulli")
