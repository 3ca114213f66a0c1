"""The CelebA19 keep-prob study (recipes/celeba19.yaml): a clear error without the data, and end to
end on a tiny CelebA folder."""

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from mvae_cli.data.celeba import ATTRIBUTES
from mvae_cli.errors import UserError
from mvae_cli.sweep.grid import load_sweep
from mvae_cli.sweep.runner import run_sweep
from tests.data.celeba_fixture import make_tiny_celeba
from tests.sweep.fakes import calls, fake_evaluate, fake_train

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "celeba19.yaml"
# The paired-only classifiers (18 DCGANs here) are tested elsewhere; this test is about the study's plumbing.
TINY = ["epochs=1", "model.hidden=16", "model.latent_dim=4", "batch_size=8", "eval.particles=3",
        "eval.prior_samples=5", "eval.baseline=false"]


def test_without_celeba_the_sweep_says_how_to_get_it_and_runs_nothing(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CelebA", offline)  # offline, wherever the tests run
    monkeypatch.setenv("MVAE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "sw"
    result = CliRunner().invoke(app, ["sweep", str(RECIPE), f"data.path={tmp_path / 'c19.h5'}", *TINY,
                                      "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    text = result.output
    assert "could not download CelebA" in text and "Network is unreachable" in text
    assert "list_attr_celeba.txt" in text and "data.source=DIR" in text
    assert not out.exists() and not (tmp_path / "c19.h5").exists()


def test_a_dataset_that_cannot_be_built_stops_the_sweep_before_any_point(tmp_path):
    sweep = load_sweep(RECIPE, [f"data.source={tmp_path / 'nowhere'}", f"data.path={tmp_path / 'c19.h5'}",
                                "grid.keep_prob=[0.5,1.0]"])
    with pytest.raises(UserError, match=r"cannot prepare .*c19\.h5, so no point of the sweep ran: "
                                        r"CelebA source folder .*nowhere does not exist"):
        run_sweep(sweep, tmp_path / "sw", trainer=fake_train, evaluator=fake_evaluate)
    assert calls(tmp_path / "sw") == [] and not (tmp_path / "sw").exists()


def test_the_celeba19_study_runs_end_to_end_on_a_tiny_folder(tmp_path):
    source = make_tiny_celeba(tmp_path / "celeba", n=24)
    out = tmp_path / "sw"
    result = CliRunner().invoke(app, ["sweep", str(RECIPE), f"data.source={source}", f"data.path={tmp_path / 'c19.h5'}",
                                      *TINY, "grid.keep_prob=[0.5,1.0]", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"prepared the dataset {tmp_path / 'c19.h5'}" in " ".join(result.output.split())
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["point"] for r in rows] == ["keep_prob=0.5,seed=0", "keep_prob=1.0,seed=0"]
    for row in rows:
        accuracies = [float(row[f"accuracy.{a.lower()}"]) for a in ATTRIBUTES]
        assert all(0.0 <= a <= 1.0 for a in accuracies)
        assert float(row["accuracy.mean"]) == pytest.approx(sum(accuracies) / 18)
        assert float(row["log_px.image.mean"]) < 0
