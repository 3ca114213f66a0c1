"""Data-parallel training on CPU with two gloo ranks (spawned processes; a few seconds each)."""

import json

import pytest
import torch

from mvae_cli.data.format import read_dataset
from mvae_cli.engine.checkpoint import load_checkpoint
from mvae_cli.engine.distributed import World, shard
from mvae_cli.engine.launch import launch
from mvae_cli.engine.loop import train
from mvae_cli.engine.run import build_model
from mvae_cli.errors import UserError
from mvae_cli.recipe import resolve_recipe
from tests.helpers import make_dataset


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def _recipe(data_path, *extra):
    # 200 rows in batches of 67: steps of 67, 67 and 66 rows, so the two shards differ in size.
    return resolve_recipe(None, [f"data.path={data_path}", "batch_size=67", "model.hidden=16",
                                 "model.latent_dim=4", "device=cpu", *extra])


def _train_without_noise(recipe, run_dir):
    """Train with ε = 0: the step is then a function of the batch alone, so one process on the
    whole batch and two ranks on its halves must agree."""
    original = torch.randn_like
    torch.randn_like = torch.zeros_like
    try:
        return train(recipe, run_dir)
    finally:
        torch.randn_like = original


def _weights(run_dir):
    return load_checkpoint(run_dir / "last.pt")["model"]


def _losses(run_dir):
    return [json.loads(l)["loss"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_shards_are_contiguous_and_cover_the_batch():
    index = torch.arange(10, 17)
    parts = [shard(index, World(rank, 2)) for rank in range(2)]
    assert parts[0].tolist() == [10, 11, 12, 13] and parts[1].tolist() == [14, 15, 16]
    assert shard(index, World()).tolist() == index.tolist()


def test_two_ranks_step_like_one_process_on_the_combined_batch(data_path, tmp_path):
    recipe = _recipe(data_path, "epochs=1")
    _train_without_noise(recipe, tmp_path / "one")
    launch(_train_without_noise, (recipe, tmp_path / "two"), nproc=2, device_type="cpu")
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    torch.manual_seed(recipe.seed)  # the engine's initialisation
    with read_dataset(data_path) as dataset:
        initial = build_model(recipe, dataset.specs).state_dict()
    assert max(float((one[k] - initial[k]).abs().max()) for k in one) > 1e-3  # the three steps moved the weights
    for key in one:  # equal up to the order of the floating-point sums
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=2e-6)
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=1e-6)
    info = json.loads((tmp_path / "two" / "run.json").read_text())
    assert info["ranks"] == 2 and info["status"] == "finished"


def test_two_ranks_resume_exactly(data_path, tmp_path):
    launch(train, (_recipe(data_path, "epochs=2"), tmp_path / "whole"), nproc=2, device_type="cpu")
    launch(train, (_recipe(data_path, "epochs=1"), tmp_path / "cut"), nproc=2, device_type="cpu")
    assert len(load_checkpoint(tmp_path / "cut" / "last.pt")["rank_rng"]) == 2
    launch(train, (_recipe(data_path, "epochs=2"), tmp_path / "cut"), nproc=2, device_type="cpu")
    whole, cut = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "whole")


def test_more_ranks_than_gpus_or_below_one_is_refused(data_path, tmp_path):
    with pytest.raises(UserError, match="at least 1"):
        launch(train, (_recipe(data_path), tmp_path / "r"), nproc=0, device_type="cpu")
    if torch.cuda.device_count() < 2:
        with pytest.raises(UserError, match="GPUs"):
            launch(train, (_recipe(data_path), tmp_path / "r"), nproc=2, device_type="cuda")
