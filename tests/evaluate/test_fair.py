"""The fair baselines: the probe on the model's q(z | x) reads the paired rows of the mask and nothing
else, equals the probe fitted by hand on those rows' posterior means, and the image-only VAE is the
run's networks and schedule on x alone, trained once and kept beside the dataset."""

import json
import random

import numpy as np
import pytest
import torch

from mvae_cli import zoo
from mvae_cli.data.format import ModalitySpec
from mvae_cli.engine.loop import train
from mvae_cli.engine.run import read_config
from mvae_cli.evaluate.fair import image_vae_dir, image_vae_recipe, pair_probe, probe_figures
from mvae_cli.evaluate.probe import linear_probe_accuracy
from mvae_cli.evaluate.run_eval import evaluate_run
from mvae_cli.eval_config import EvalConfig
from mvae_cli.recipe import resolve_recipe
from tests.helpers import make_dataset

SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 8, 8)), ModalitySpec("label", "categorical", "categorical", (), 4)]


class Split:
    """``batch(rows)`` over tensors, recording the rows asked for."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.label = torch.randint(0, 4, (n,), generator=g)
        self.image = torch.rand(n, 1, 8, 8, generator=g) * 0.2
        for c in range(4):
            self.image[self.label == c, :, 2 * c:2 * c + 2, :] = 0.9
        self.device, self.seen = torch.device("cpu"), set()

    def batch(self, rows):
        self.seen.update(rows.tolist())
        return {"image": self.image[rows], "label": self.label[rows]}


def _model():
    torch.manual_seed(0)
    return zoo.build("mvae", SPECS, latent_dim=4, hidden=16, image_net="mlp", weights={}, likelihoods={}).eval()


def test_the_paired_probe_is_the_probe_on_the_posterior_means_of_the_paired_rows_only():
    model, train_split, test = _model(), Split(300, 0), Split(120, 1)
    mask = np.zeros((300, 2), dtype=bool)
    mask[:40] = True
    mask[40:170, 0] = True
    mask[170:, 1] = True
    figures = pair_probe(model, SPECS, "image", ["label"], mask, train_split, test, 100)
    assert train_split.seen == set(range(40)) and test.seen == set(range(100))
    with torch.no_grad():  # by hand: the mean of the product of the image expert and the prior expert
        def means(split, rows):
            mu, logvar = model.encoders["image"](split.image[rows])
            precision = 1 + torch.exp(-logvar)
            return (mu * torch.exp(-logvar) / precision).double()
        expected = linear_probe_accuracy(means(train_split, torch.arange(40)), train_split.label[:40],
                                         means(test, torch.arange(100)), test.label[:100], 4)
    assert figures == {"label": pytest.approx(expected), "mean": pytest.approx(expected)}
    # the unpaired labels are never read: wrong ones change nothing
    train_split.label[40:] = (train_split.label[40:] + 1) % 4
    assert pair_probe(model, SPECS, "image", ["label"], mask, train_split, test, 100) == figures


def test_a_binary_y_gets_a_probe_per_attribute_and_their_mean():
    spec = ModalitySpec("attrs", "binary", "bernoulli", (2,))
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(200, 3, generator=g, dtype=torch.float64)
    attrs = torch.stack([codes[:, 0] > 0, codes[:, 1] > 0.5], dim=1).float()
    out = probe_figures([spec], codes[:100], {"attrs": attrs[:100]}, codes[100:], {"attrs": attrs[100:]})
    each = [linear_probe_accuracy(codes[:100], attrs[:100, a].long(), codes[100:], attrs[100:, a].long(), 2)
            for a in range(2)]
    assert out == {"attrs": pytest.approx(sum(each) / 2), "mean": pytest.approx(sum(each) / 2)}
    assert min(each) > 0.85  # linearly readable attributes are read


def test_the_image_vae_is_the_runs_networks_and_schedule_on_x_alone(tmp_path):
    data = make_dataset(tmp_path / "d.h5")
    recipe = resolve_recipe(None, [f"data.path={data}", "model.hidden=32", "model.latent_dim=4", "epochs=3",
                                   "supervision=0.1", "lr=0.002", "anneal_epochs=1", "seed=4", "paired_share=0.2",
                                   "objective.cross.image:label=1", "model.weights.label=5"])
    vae = image_vae_recipe(recipe, data, "image", "cpu")
    assert (vae.model.name, vae.model.latent_dim, vae.model.hidden, vae.model.image_net) == ("vae", 4, 32, "mlp")
    assert (vae.supervision, vae.seed, vae.epochs, vae.lr, vae.anneal_epochs, vae.batch_size) == (1.0, 4, 3, 0.002, 1.0,
                                                                                                 recipe.batch_size)
    assert vae.paired_share is None and vae.objective.cross == {} and vae.model.weights == {}
    assert vae.data.path == str(data.resolve())
    folder = image_vae_dir(vae)
    assert folder.parent == data.with_name("d.h5.baselines.d")
    assert image_vae_dir(image_vae_recipe(recipe, data, "image", "cuda")) == folder  # the device is not the figures
    other = resolve_recipe(None, [f"data.path={data}", "model.hidden=32", "model.latent_dim=4", "epochs=3", "seed=5"])
    assert image_vae_dir(image_vae_recipe(other, data, "image", "cpu")) != folder


def test_eval_writes_both_fair_baselines_and_trains_the_image_vae_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_dataset(tmp_path / "d.h5", sizes=(300, 60, 80))
    run = tmp_path / "run"
    recipe = resolve_recipe(None, [f"data.path={data}", "epochs=2", "model.hidden=32", "model.latent_dim=4",
                                   "supervision=0.2"])
    train(recipe, run)
    stages = []
    result = evaluate_run(run, EvalConfig(particles=4, prior_samples=20), stage=stages.append)
    for key in ("paired_probe", "vae_probe"):
        assert set(result[key]) == {"label", "mean"} and 0 <= result[key]["label"] <= 1
    assert json.loads((run / "eval.json").read_text())["vae_probe"] == result["vae_probe"]
    assert any("image-only VAE: epoch 2/2" in s for s in stages)
    folders = [f for f in (tmp_path / "d.h5.baselines.d").iterdir() if not f.name.startswith(".")]
    assert len(folders) == 1 and read_config(folders[0]).model.name == "vae"
    assert json.loads((folders[0] / "run.json").read_text())["status"] == "finished"
    best = (folders[0] / "best.pt").stat().st_mtime_ns
    stages.clear()
    again = evaluate_run(run, EvalConfig(particles=4, prior_samples=20), stage=stages.append)
    assert (folders[0] / "best.pt").stat().st_mtime_ns == best and not any("epoch" in s for s in stages)
    # every figure the same whether this evaluation trained the VAE or loaded it
    timing = ("seconds", "seconds_by_part")
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in result.items() if k not in timing}
    assert "fair_baselines" in result["seconds_by_part"]


def test_training_the_image_vae_leaves_the_global_random_states_as_they_were(tmp_path, monkeypatch):
    from mvae_cli.evaluate.fair import image_vae

    monkeypatch.chdir(tmp_path)
    data = make_dataset(tmp_path / "d.h5", sizes=(100, 20, 20))
    recipe = resolve_recipe(None, [f"data.path={data}", "epochs=1", "model.hidden=8", "model.latent_dim=2"])
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    states = random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state()
    image_vae(image_vae_recipe(recipe, data, "image", "cpu"), torch.device("cpu"))
    assert random.getstate() == states[0] and np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.random.get_rng_state(), states[2])


def test_a_model_without_q_z_given_x_has_no_paired_probe_and_says_why(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_dataset(tmp_path / "d.h5", sizes=(200, 40, 40))
    run = tmp_path / "run"
    train(resolve_recipe(None, [f"data.path={data}", "epochs=1", "model.hidden=16", "model.latent_dim=3",
                                "model.name=cvae", "supervision=0.5"]), run)
    result = evaluate_run(run, EvalConfig(particles=2, prior_samples=10, x="image", y=["label"]))
    assert result["paired_probe"] is None and "q(z|" in result["not_defined"]["paired_probe"]
    assert set(result["vae_probe"]) == {"label", "mean"}


def test_a_study_trains_the_image_vaes_it_needs_once_each_as_one_stack(tmp_path, monkeypatch):
    from mvae_cli.evaluate.fair import image_vaes_for, train_image_vaes

    monkeypatch.chdir(tmp_path)
    data = make_dataset(tmp_path / "d.h5", sizes=(100, 20, 20))
    base = [f"data.path={data}", "epochs=2", "model.hidden=8", "model.latent_dim=2"]
    recipes = [resolve_recipe(None, base + [f"seed={seed}", f"supervision={f}"]) for seed in (0, 1) for f in (0.1, 1.0)]
    recipes.append(resolve_recipe(None, base + ["seed=2", "eval.baseline=false"]))  # no baselines: no VAE
    wanted = image_vaes_for(recipes)
    assert sorted(r.seed for r in wanted) == [0, 1]  # one per seed: the levels share it
    notes = []
    train_image_vaes(wanted, notes.append)
    assert notes[0] == "training 2 image-only VAEs (seed 0, 1) for the fair baselines together, 2 epochs"
    assert notes[1:] == ["image-only VAEs: epoch 1/2", "image-only VAEs: epoch 2/2"]
    for vae in wanted:
        info = json.loads((image_vae_dir(vae) / "run.json").read_text())
        assert info["status"] == "finished" and info["epochs_done"] == 2
    assert image_vaes_for(recipes) == []  # trained: the evaluations load them


def test_the_paired_only_classifiers_rounds_are_said_every_tenth_of_the_most():
    from mvae_cli.evaluate.run_eval import round_reporter

    lines = []
    report = round_reporter(lines.append)
    for done in range(1, 101):
        report(done, 100)
    assert lines == [f"paired-only classifier: validation round {r} (early stopping ends it by round 100)"
                     for r in range(10, 100, 10)]
    lines.clear()
    for done in (1, 2, 3):
        round_reporter(lines.append)(done, 3)
    assert lines == ["paired-only classifier: validation round 1 (early stopping ends it by round 3)",
                     "paired-only classifier: validation round 2 (early stopping ends it by round 3)"]

