import json

import numpy as np
import pytest
import torch

from mvae_cli.engine.checkpoint import load_checkpoint
from mvae_cli.cli.hooks import training_hooks
from mvae_cli.engine.loop import TrainingDiverged, train
from mvae_cli.objectives.mvae import MVAEObjective
from mvae_cli.recipe import resolve_recipe
from tests.helpers import make_dataset


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def _recipe(data_path, *extra):
    return resolve_recipe(None, [f"data.path={data_path}", "epochs=3", "batch_size=32", "model.hidden=16",
                                 "model.latent_dim=4", "supervision=0.5", "anneal_epochs=1", *extra])


def _weights(run_dir, name="last.pt"):
    return load_checkpoint(run_dir / name)["model"]


def test_run_directory_is_complete(data_path, tmp_path):
    result = train(_recipe(data_path), tmp_path / "run", hooks=training_hooks())
    run = tmp_path / "run"
    for name in ("config.yaml", "run.json", "mask.npy", "last.pt", "best.pt", "metrics.jsonl", "samples.png"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3]
    assert lines[-1]["beta"] == 1.0 and 0 < lines[0]["beta"] < 1
    mask = np.load(run / "mask.npy")
    assert mask.shape == (200, 2) and int(mask.all(1).sum()) == 100  # supervision 0.5 of 200
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["mask"]["n_paired"] == 100 and info["mask"]["source"] == "generated"
    assert result.best_valid_elbo == max(l["valid_elbo"] for l in lines)


def test_cpu_run_is_reproducible_bit_for_bit(data_path, tmp_path):
    train(_recipe(data_path, "epochs=2"), tmp_path / "a")
    train(_recipe(data_path, "epochs=2"), tmp_path / "b")
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model", ["mvae"] + [pytest.param(m, marks=pytest.mark.slow)
                                               for m in ("mvae-q", "vae", "cvae", "bivcca", "jmvae", "mmvae", "mopoe", "mmjsd")]
                                   + [pytest.param("mmvae:dreg", marks=pytest.mark.slow)])
def test_resume_after_interruption_equals_uninterrupted_run(data_path, tmp_path, model):
    name, _, estimator = model.partition(":")
    recipe = _recipe(data_path, f"model.name={name}", *([f"objective.estimator={estimator}", "objective.k_particles=3"]
                                                       if estimator else []))
    train(recipe, tmp_path / "whole")

    def interrupt(event, **info):
        if event == "step" and info["epoch"] == 1 and info["step"] == 3:
            raise KeyboardInterrupt  # killed in the middle of the second epoch

    with pytest.raises(KeyboardInterrupt):
        train(recipe, tmp_path / "cut", progress=interrupt)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    result = train(recipe, tmp_path / "cut")
    assert result.resumed and result.epochs_done == 3
    whole, cut = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    epochs = [json.loads(l)["epoch"] for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_nan_loss_stops_with_the_step_and_keeps_last_good_checkpoint(data_path, tmp_path, monkeypatch):
    original = MVAEObjective.__call__

    def poisoned(self, model, batch, step):
        loss, terms = original(self, model, batch, step)
        return (loss * float("nan") if step == 9 else loss), terms

    monkeypatch.setattr(MVAEObjective, "__call__", poisoned)
    with pytest.raises(TrainingDiverged, match="at step 9 "):
        train(_recipe(data_path), tmp_path / "run")  # 7 steps per epoch: step 9 is in epoch 2
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1


@pytest.mark.slow
def test_checkpoint_every_n_epochs_resumes_exactly_from_the_last_one(data_path, tmp_path):
    train(_recipe(data_path, "epochs=4"), tmp_path / "whole")

    def interrupt(event, **info):
        if event == "epoch" and info["epoch"] == 3:
            raise KeyboardInterrupt  # epoch 3 is done but, at every 2 epochs, not checkpointed

    cadence = "checkpoint_every=2"
    with pytest.raises(KeyboardInterrupt):
        train(_recipe(data_path, "epochs=4", cadence), tmp_path / "cut", progress=interrupt)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    result = train(_recipe(data_path, "epochs=4", cadence), tmp_path / "cut")  # replays epochs 3 and 4
    assert result.resumed and result.epochs_done == 4
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 4  # the final epoch is always written
    whole, cut = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    epochs = [json.loads(l)["epoch"] for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]


def test_checkpoint_by_time_and_cadence_rule():
    from mvae_cli.engine.loop import _checkpoint_due

    every3 = resolve_recipe(None, ["epochs=10", "checkpoint_every=3"])
    assert [e for e in range(1, 11) if _checkpoint_due(every3, e, 0.0)] == [3, 6, 9, 10]
    timed = resolve_recipe(None, ["epochs=10", "checkpoint_every=100", "checkpoint_minutes=5"])
    assert not _checkpoint_due(timed, 4, 299.0) and _checkpoint_due(timed, 4, 300.0)


def test_paired_repeat_shows_each_paired_row_that_many_times_per_epoch(data_path, tmp_path, monkeypatch):
    from mvae_cli.engine import data as engine_data

    seen = []
    original = engine_data.SplitData.batch

    def recording(self, index):
        out = original(self, index)
        if self.n == 200:  # the train split (valid batches are read too)
            seen.append(index.clone())
        return out

    monkeypatch.setattr(engine_data.SplitData, "batch", recording)
    train(_recipe(data_path, "epochs=1", "paired_repeat=3"), tmp_path / "run")
    mask = np.load(tmp_path / "run" / "mask.npy")
    counts = np.bincount(torch.cat(seen).numpy(), minlength=200)
    assert (counts[mask.all(1)] == 3).all() and (counts[~mask.all(1) & mask.any(1)] == 1).all()
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["mask"]["n_shown"] == 400 and info["mask"]["paired_repeat"] == 3
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert line["step"] == 13  # ceil(400 / 32)
