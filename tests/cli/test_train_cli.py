import pytest
import torch
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from tests.helpers import make_dataset

runner = CliRunner()
SMALL = ["epochs=1", "model.hidden=16", "model.latent_dim=4", "batch_size=64"]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def _fails(args, *phrases):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())  # one message, however the terminal wrapped it
    for phrase in phrases:
        assert phrase in text, result.output
    return result


def test_train_writes_a_run_and_resume_extends_it(data_path, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(data_path), "--supervision", "0.1", "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    assert (out / "best.pt").is_file() and (out / "samples.png").is_file()
    result = runner.invoke(app, ["train", "--resume", str(out), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_missing_data_file(tmp_path):
    _fails(["train", "--data", str(tmp_path / "nope.h5")], "does not exist")


def test_non_mvae_data_file(tmp_path):
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"not hdf5 at all")
    _fails(["train", "--data", str(bogus), *SMALL], "not an HDF5 file")


def test_both_levels(data_path):
    _fails(["train", "--data", str(data_path), "--supervision", "0.1", "--keep-prob", "0.5"], "not both")


@pytest.mark.parametrize("flag,value,key", [("--supervision", "1.5", "supervision"), ("--keep-prob", "0", "keep_prob")])
def test_level_outside_range(data_path, flag, value, key):
    _fails(["train", "--data", str(data_path), flag, value], key, "must lie in")


def test_unknown_recipe_key(data_path, tmp_path):
    _fails(["train", "--data", str(data_path), "epochz=3"], "unknown recipe key 'epochz'")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  latent_dims: 3\n")
    _fails(["train", "--data", str(data_path), "--recipe", str(recipe)], "unknown recipe key 'model.latent_dims'")


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    _fails(["train", "--resume", str(tmp_path)], "is not a run directory")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_gpu(data_path):
    _fails(["train", "--data", str(data_path), "--device", "cuda"], "no CUDA device")
    _fails(["train", "--data", str(data_path), "--precision", "fp16", "--device", "cpu"], "fp16 needs a CUDA device")


def test_out_folder_holding_a_different_run(data_path, tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", "--data", str(data_path), "--out", str(out), *SMALL]).exit_code == 0
    before = (out / "last.pt").read_bytes()
    _fails(["train", "--data", str(data_path), "--out", str(out), "--seed", "7", *SMALL], "already holds a different run")
    assert (out / "last.pt").read_bytes() == before


def test_a_wrong_cpu_linear_kernel_stops_train_before_it_writes(data_path, tmp_path, monkeypatch):
    monkeypatch.setenv("MVAE_CPU_LINEAR", "fast")
    out = tmp_path / "run"
    _fails(["train", "--data", str(data_path), "--out", str(out), *SMALL],
           "MVAE_CPU_LINEAR='fast' is not a CPU linear kernel", "set it to onednn or aten")
    assert not out.exists()
