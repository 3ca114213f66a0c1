"""Runs trained as one stack (mvae_cli.engine.stack) against the same runs trained alone."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mvae_cli.data.format import ModalitySpec
from mvae_cli.engine.checkpoint import load_checkpoint
from mvae_cli.engine.loop import TrainingDiverged, train
from mvae_cli.engine.stack import stack_key, stack_reason, train_stack
from mvae_cli.objectives.mvae import MVAEObjective
from mvae_cli.recipe import resolve_recipe
from tests.helpers import IMAGE_LABEL, make_dataset

SPECS = IMAGE_LABEL + [ModalitySpec("parity", "categorical", "categorical", (), 2)]
# three runs of one architecture: other seeds, masks (one with fewer training rows, so its epochs
# end on other steps and its β anneals on its own) and β targets
POINTS = [("seed=0", "supervision=0.5"), ("seed=1", "supervision=1.0", "beta=0.5"), ("seed=2", "keep_prob=0.6")]
# runs with equal epoch lengths: one stack
LEVELS = [("seed=0", "supervision=0.5"), ("seed=1", "supervision=1.0", "beta=0.5"), ("seed=2", "supervision=0.1")]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny3.h5", specs=SPECS)


def _recipe(data_path, point, *extra):
    return resolve_recipe(None, [f"data.path={data_path}", "epochs=2", "batch_size=32", "model.hidden=16",
                                 "model.latent_dim=4", "anneal_epochs=1", *point, *extra])


def _weights(run_dir, name="last.pt"):
    return load_checkpoint(run_dir / name)["model"]


def _lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_each_run_of_a_stack_equals_the_run_trained_alone(data_path, tmp_path):
    recipes = [_recipe(data_path, p) for p in POINTS]
    assert len({stack_key(r) for r in recipes}) == 1 and stack_reason(recipes[0]) is None
    for i, recipe in enumerate(recipes):
        train(recipe, tmp_path / f"alone{i}")
    results = train_stack(recipes, [tmp_path / f"stack{i}" for i in range(3)])
    assert [r.epochs_done for r in results] == [2, 2, 2]
    for i in range(3):
        alone, stacked = tmp_path / f"alone{i}", tmp_path / f"stack{i}"
        for name in ("config.yaml", "run.json", "mask.npy", "last.pt", "best.pt", "metrics.jsonl"):
            assert (stacked / name).is_file(), name
        assert (stacked / "config.yaml").read_text() == (alone / "config.yaml").read_text()
        assert np.array_equal(np.load(stacked / "mask.npy"), np.load(alone / "mask.npy"))
        a, s = _weights(alone), _weights(stacked)
        for key in a:
            torch.testing.assert_close(s[key], a[key], rtol=1e-5, atol=1e-5, msg=f"run {i}: {key}")
        for la, ls in zip(_lines(alone), _lines(stacked), strict=True):
            assert ls["step"] == la["step"] and ls["beta"] == pytest.approx(la["beta"])
            for key in ("loss", "kl", "elbo_full", "log_lik_image", "valid_elbo"):
                assert ls[key] == pytest.approx(la[key], rel=1e-4), (i, key)
        state = load_checkpoint(stacked / "last.pt")
        assert set(state["optimizer"]["state"]) == set(load_checkpoint(alone / "last.pt")["optimizer"]["state"])
        assert json.loads((stacked / "run.json").read_text())["status"] == "finished"


def test_a_killed_stack_resumes_every_run_bit_for_bit(data_path, tmp_path):
    recipes = [_recipe(data_path, p, "epochs=3") for p in LEVELS]
    train_stack(recipes, [tmp_path / f"whole{i}" for i in range(3)])

    def interrupt(event, **info):
        if event == "step" and info["epoch"] == 1 and info["step"] == 3:
            raise KeyboardInterrupt  # killed in the middle of run 0's second epoch

    with pytest.raises(KeyboardInterrupt):
        train_stack(recipes, [tmp_path / f"cut{i}" for i in range(3)], progress=[interrupt, None, None])
    assert load_checkpoint(tmp_path / "cut0" / "last.pt")["epoch"] == 1
    results = train_stack(recipes, [tmp_path / f"cut{i}" for i in range(3)])
    assert all(r.resumed and r.epochs_done == 3 for r in results)
    for i in range(3):
        whole, cut = _weights(tmp_path / f"whole{i}"), _weights(tmp_path / f"cut{i}")
        assert all(torch.equal(whole[k], cut[k]) for k in whole), i
        assert [line["epoch"] for line in _lines(tmp_path / f"cut{i}")] == [1, 2, 3]
        assert [line["loss"] for line in _lines(tmp_path / f"cut{i}")] == [line["loss"] for line in _lines(tmp_path / f"whole{i}")]


def test_a_run_of_a_stack_resumes_alone(data_path, tmp_path):
    recipes = [_recipe(data_path, p) for p in POINTS[:2]]
    train_stack(recipes, [tmp_path / "whole_a", tmp_path / "whole_b"])
    train_stack([dataclasses.replace(r, epochs=1) for r in recipes], [tmp_path / "a", tmp_path / "b"])
    result = train(recipes[1], tmp_path / "b")  # the second epoch alone, from the stack's last.pt
    assert result.resumed and result.epochs_done == 2
    assert [line["epoch"] for line in _lines(tmp_path / "b")] == [1, 2]
    whole, resumed = _weights(tmp_path / "whole_b"), _weights(tmp_path / "b")
    for key in whole:  # the same streams: the run continues as it would have in the stack
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-5)


def test_a_diverging_run_stops_alone(data_path, tmp_path, monkeypatch):
    original = MVAEObjective.loss

    def poisoned(self, model, batch, beta):
        losses, terms = original(self, model, batch, beta)
        if losses.dim() == 1 and losses.shape[0] == 3:
            poisoned.calls += 1
            if poisoned.calls == 9:  # the ninth stacked step: run 1 diverges, in its second epoch
                losses = losses * torch.tensor([1.0, float("nan"), 1.0])
        return losses, terms

    poisoned.calls = 0
    monkeypatch.setattr(MVAEObjective, "loss", poisoned)
    recipes = [_recipe(data_path, p) for p in LEVELS]
    results = train_stack(recipes, [tmp_path / f"r{i}" for i in range(3)])
    assert isinstance(results[1], TrainingDiverged) and "at step 8 " in str(results[1])
    assert load_checkpoint(tmp_path / "r1" / "last.pt")["epoch"] == 1
    assert json.loads((tmp_path / "r1" / "run.json").read_text())["status"] == "training"
    assert results[0].epochs_done == 2 and results[2].epochs_done == 2


def test_what_does_not_stack(data_path):
    assert "does not stack" in stack_reason(_recipe(data_path, (), "model.name=mmvae"))
    assert "free bits" in stack_reason(_recipe(data_path, (), "free_bits=0.1"))
    a, b = _recipe(data_path, POINTS[0]), _recipe(data_path, POINTS[0], "model.hidden=8")
    assert stack_key(a) != stack_key(b)
    assert stack_key(a) == stack_key(_recipe(data_path, POINTS[2], "beta=0.25"))


def test_a_kill_in_the_middle_of_a_metrics_line_resumes(data_path, tmp_path):
    recipes = [_recipe(data_path, p, "epochs=2") for p in LEVELS[:2]]
    train_stack(recipes, [tmp_path / "whole0", tmp_path / "whole1"])
    train_stack([dataclasses.replace(r, epochs=1) for r in recipes], [tmp_path / "cut0", tmp_path / "cut1"])
    with (tmp_path / "cut1" / "metrics.jsonl").open("a") as handle:
        handle.write('{"epoch": 2, "step": 14, "loss": 12')  # the kill came while epoch 2's line was written
    train_stack(recipes, [tmp_path / "cut0", tmp_path / "cut1"])
    for i in range(2):
        assert [line["loss"] for line in _lines(tmp_path / f"cut{i}")] == [line["loss"] for line in _lines(tmp_path / f"whole{i}")]
        whole, cut = _weights(tmp_path / f"whole{i}"), _weights(tmp_path / f"cut{i}")
        assert all(torch.equal(whole[k], cut[k]) for k in whole)


def test_a_single_run_with_like_networks_trains_as_a_stack_of_one(data_path, tmp_path, monkeypatch):
    """label and parity are two categorical modalities: a run alone trains as a stack of one (their
    networks grouped), with the files the plain loop writes; a dataset with one label (nothing to
    group), or a model that does not stack, trains on the plain loop; a run that diverges raises."""
    from mvae_cli.engine import launch
    from tests.helpers import make_dataset

    recipe = _recipe(data_path, POINTS[0])
    stacked = []
    real = launch.train_stack
    monkeypatch.setattr(launch, "train_stack", lambda *a, **k: stacked.append(1) or real(*a, **k))
    assert launch.trains_as_stack_of_one(recipe)
    result = launch.train_on_ranks(recipe, tmp_path / "one")
    train(recipe, tmp_path / "plain")
    assert stacked == [1] and result.epochs_done == 2
    a, s = _weights(tmp_path / "plain"), _weights(tmp_path / "one")
    for key in a:
        torch.testing.assert_close(s[key], a[key], rtol=1e-5, atol=1e-5, msg=key)
    assert [line["step"] for line in _lines(tmp_path / "one")] == [line["step"] for line in _lines(tmp_path / "plain")]
    one_label = make_dataset(tmp_path / "label.h5")
    assert not launch.trains_as_stack_of_one(_recipe(one_label, POINTS[0]))
    assert not launch.trains_as_stack_of_one(_recipe(data_path, POINTS[0], "model.name=mmvae"))
    assert not launch.trains_as_stack_of_one(_recipe(tmp_path / "missing.h5", POINTS[0]))  # the plain loop says what is wrong

    original = MVAEObjective.loss

    def poisoned(self, model, batch, beta):
        losses, terms = original(self, model, batch, beta)
        return losses * float("nan"), terms
    monkeypatch.setattr(MVAEObjective, "loss", poisoned)
    with pytest.raises(TrainingDiverged):
        launch.train_on_ranks(recipe, tmp_path / "diverged")
