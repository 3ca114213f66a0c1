"""The mixture-based models on the datasets they are compared on: MMVAE, MoPoE and mmJSD each train,
resume bit for bit and evaluate on mnist, shapes and polymnist (small sources made here).

Slow (nine runs of two epochs plus their resumed twins): `pytest -m slow tests/test_mixture_models_datasets.py`.
"""

from __future__ import annotations

import math

import pytest
import torch

from mvae_cli.data.prepare import prepare_dataset
from mvae_cli.engine.checkpoint import load_checkpoint
from mvae_cli.engine.loop import train
from mvae_cli.eval_config import EvalConfig
from mvae_cli.evaluate.run_eval import evaluate_run
from mvae_cli.recipe import resolve_recipe
from tests.data.conftest import write_fake_mnist

SIZES = {"train": 48, "valid": 8, "test": 8}
TINY = ["epochs=2", "model.hidden=8", "model.latent_dim=3", "model.private_dim=2", "batch_size=16",
        "supervision=0.5", "anneal_epochs=1", "objective.k_particles=2", "model.image_net=mlp"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixture-data")
    write_fake_mnist(root / "mnist-source")
    return {
        "mnist": prepare_dataset("mnist", root / "mnist.h5", source=root / "mnist-source", supervision=[0.5]),
        "shapes": prepare_dataset("shapes", root / "shapes.h5", sizes=SIZES, supervision=[0.5]),
        "polymnist": prepare_dataset("polymnist", root / "polymnist.h5", source=root / "mnist-source", sizes=SIZES,
                                     supervision=[0.5]),
    }


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "shapes", "polymnist"])
@pytest.mark.parametrize("model", ["mmvae", "mopoe", "mmjsd"])
def test_trains_resumes_bit_for_bit_and_evaluates(datasets, tmp_path, dataset, model):
    recipe = resolve_recipe(None, [f"data.path={datasets[dataset]}", f"data.dataset={dataset}", f"model.name={model}",
                                   *TINY])
    train(recipe, tmp_path / "whole")

    def interrupt(event, **info):
        if event == "step" and info["epoch"] == 1 and info["step"] == 1:
            raise KeyboardInterrupt  # in the middle of the second epoch

    with pytest.raises(KeyboardInterrupt):
        train(recipe, tmp_path / "cut", progress=interrupt)
    assert train(recipe, tmp_path / "cut").resumed
    whole = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    cut = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    result = evaluate_run(tmp_path / "cut", EvalConfig(particles=4, prior_samples=5, baseline=False))
    for family in ("log_px", "log_pxy", "log_px_given_y"):
        assert result[family] and all(math.isfinite(f["mean"]) and f["mean"] < 0 for f in result[family].values())
    assert all(0.0 <= v <= 1.0 for v in result["accuracy"].values())
