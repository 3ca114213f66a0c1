"""Training with a chosen likelihood or dynamic binarisation: learned scales in checkpoints, exact resume."""

import json

import pytest
import torch

from mvae_cli.engine.checkpoint import load_checkpoint
from mvae_cli.engine.loop import train
from mvae_cli.engine.run import load_trained
from mvae_cli.errors import UserError
from mvae_cli.model.likelihoods import DEFAULT_SCALE, MIN_SCALE
from mvae_cli.recipe import resolve_recipe
from tests.helpers import make_dataset

KEY = "likelihoods.image.raw_scale"


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def _recipe(data_path, *extra):
    return resolve_recipe(None, [f"data.path={data_path}", "epochs=3", "batch_size=32", "model.hidden=16",
                                 "model.latent_dim=4", "supervision=0.5", "lr=0.01", *extra])


def test_a_learned_scale_is_trained_saved_and_restored(data_path, tmp_path):
    run = tmp_path / "run"
    train(_recipe(data_path, "epochs=2", "model.likelihoods.image=gaussian:learned-per-dim"), run)
    saved = load_checkpoint(run / "last.pt")["model"][KEY]
    assert saved.shape == (1, 8, 8)
    scale = MIN_SCALE + torch.nn.functional.softplus(saved)
    assert float((scale - DEFAULT_SCALE).abs().min()) > 1e-3  # every pixel's scale moved from its start
    _, info, model = load_trained(run, "last")
    assert torch.equal(model.likelihoods["image"].raw_scale.detach(), saved)
    assert info["likelihoods"] == {"image": "gaussian:learned-per-dim", "label": "categorical"}
    best = load_checkpoint(run / "best.pt")["model"]
    assert KEY in best


@pytest.mark.parametrize("extra", [pytest.param(["model.likelihoods.image=laplace:learned"], marks=pytest.mark.slow),
                                   ["data.binarize=true"]])
def test_resume_after_interruption_equals_uninterrupted_run(data_path, tmp_path, extra):
    extra = ["epochs=2", *extra]
    train(_recipe(data_path, *extra), tmp_path / "whole")

    def interrupt(event, **info):
        if event == "step" and info["epoch"] == 1 and info["step"] == 3:
            raise KeyboardInterrupt  # in the middle of the second epoch

    with pytest.raises(KeyboardInterrupt):
        train(_recipe(data_path, *extra), tmp_path / "cut", progress=interrupt)
    assert train(_recipe(data_path, *extra), tmp_path / "cut").resumed
    whole, cut = (load_checkpoint(tmp_path / r / "last.pt")["model"] for r in ("whole", "cut"))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    valid = [[json.loads(l)["valid_elbo"] for l in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
             for r in ("whole", "cut")]
    assert valid[0] == valid[1]


def test_binarised_training_differs_from_grey_training_and_validates_on_binary_pixels(data_path, tmp_path):
    train(_recipe(data_path, "epochs=1"), tmp_path / "grey")
    train(_recipe(data_path, "epochs=1", "data.binarize=true"), tmp_path / "binary")
    grey, binary = (load_checkpoint(tmp_path / r / "last.pt")["model"] for r in ("grey", "binary"))
    assert not all(torch.equal(grey[k], binary[k]) for k in grey)
    assert json.loads((tmp_path / "binary" / "run.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("extra,phrase", [
    (["model.likelihoods.imag=gaussian"], "no modality 'imag'"),
    (["model.likelihoods.label=gaussian"], "does not fit categorical modalities"),
    (["data.binarize=true", "model.likelihoods.image=gaussian:learned"], "must be bernoulli"),
])
def test_a_choice_that_does_not_fit_the_dataset_stops_before_anything_is_written(data_path, tmp_path, extra, phrase):
    with pytest.raises(UserError, match=phrase):
        train(_recipe(data_path, *extra), tmp_path / "run")
    assert not (tmp_path / "run").exists()
