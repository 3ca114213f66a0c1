"""The model table: a model is one entry; a toy model registered here trains through the engine;
a setting meant for another model is refused, naming the key and the model."""

import json

import pytest
import torch

from mvae_cli import zoo
from mvae_cli.engine.checkpoint import load_checkpoint
from mvae_cli.engine.loop import train
from mvae_cli.errors import UserError
from mvae_cli.model.model import MultimodalVAE
from mvae_cli.model.protocol import Model
from mvae_cli.objectives import Objective, subset_elbo
from mvae_cli.recipe import resolve_recipe
from mvae_cli.sweep.grid import expand_grid
from tests.helpers import make_dataset


class MeanFieldObjective(Objective):
    """A toy objective: the ELBO of every shown modality under the product of experts, nothing else."""

    def per_example(self, model, batch, beta, free_bits=0.0):
        mask = batch["mask"]
        mu, logvar = model.encode(batch, mask)
        rows = torch.arange(mask.shape[0], device=mask.device)
        elbo, log_lik, kl = subset_elbo(model, batch, mu, logvar, rows, mask, beta, free_bits=free_bits)
        return elbo, {"kl": kl.mean(), **self.log_lik_terms(model, mask, log_lik)}


def build_toy(specs, *, latent_dim, hidden, image_net, weights, likelihoods):
    return MultimodalVAE(specs, latent_dim, hidden, image_net, weights, likelihoods, fusion="poe", name="toy")


@pytest.fixture
def toy():
    entry = zoo.register(zoo.ModelEntry("toy", build_toy, MeanFieldObjective, "product of experts", "this test"))
    yield entry
    zoo.unregister("toy")


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def _recipe(data_path, *extra):
    return resolve_recipe(None, [f"data.path={data_path}", "epochs=1", "batch_size=32", "model.hidden=8",
                                 "model.latent_dim=3", "supervision=0.5", *extra])


def test_a_model_registered_from_a_test_file_trains_through_the_engine(toy, data_path, tmp_path):
    recipe = _recipe(data_path, "model.name=toy")
    result = train(recipe, tmp_path / "run")
    assert result.epochs_done == 1
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["model"]["name"] == "toy" and info["status"] == "finished"
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss", "kl", "beta", "valid_elbo"} <= set(line) and torch.isfinite(torch.tensor(line["loss"]))
    # the validation bound is the toy objective's own: the ELBO of every modality at beta = 1
    state = load_checkpoint(tmp_path / "run" / "best.pt")
    assert state["best_valid_elbo"] == pytest.approx(line["valid_elbo"])


def test_every_model_of_the_table_satisfies_the_model_protocol(data_path):
    from mvae_cli.data.format import read_dataset

    with read_dataset(data_path) as dataset:
        specs = dataset.specs
    for name in zoo.names():
        model = zoo.build(name, specs, latent_dim=3, hidden=8)
        assert isinstance(model, Model), name
        assert model.model_name == name


def test_unknown_models_name_the_known_ones():
    with pytest.raises(UserError, match=r"'model.name' must be one of mvae, mvae-q, .*mmjsd, got 'mvea'"):
        resolve_recipe(None, ["model.name=mvea"])


@pytest.mark.parametrize("setting, model", [("objective.alpha=0.3", "mvae"), ("objective.mu=0.2", "jmvae"),
                                            ("objective.k_particles=5", "mopoe"), ("objective.k=2", "mmvae"),
                                            ("model.private_dim=2", "mvae"), ("model.posterior=laplace", "mopoe")])
def test_a_setting_the_model_does_not_take_is_an_error_naming_the_key_and_the_model(setting, model):
    key = setting.split("=")[0]
    with pytest.raises(UserError, match=rf"^{key}=.* is for .*; model.name={model} does not take it"):
        resolve_recipe(None, [setting, f"model.name={model}"])


def test_the_objective_gets_exactly_its_own_settings():
    with pytest.raises(ValueError, match="mvae's objective takes no setting alpha"):
        zoo.objective("mvae", alpha=0.2)
    assert zoo.objective("jmvae", alpha=0.3, beta=0.5).alpha == 0.3


def test_a_grid_over_models_gives_each_model_only_its_own_settings():
    raw = {"objective": {"alpha": 0.3}, "model": {"private_dim": 2}, "grid": {"model.name": ["mvae", "jmvae", "mmjsd"]}}
    points = {p.values["model.name"]: p.recipe for p in expand_grid(raw)}
    assert points["jmvae"].objective.alpha == 0.3 and points["mvae"].objective.alpha == 0.1
    assert points["mmjsd"].model.private_dim == 2 and points["jmvae"].model.private_dim == 4
    with pytest.raises(UserError, match="objective.k_particles=3 is for mmvae"):
        expand_grid({"objective": {"k_particles": 3}, "grid": {"model.name": ["mvae", "jmvae"]}})
