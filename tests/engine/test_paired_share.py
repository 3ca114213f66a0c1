"""paired_share: every batch holds a fixed share of paired rows (the semi-supervised PoE codes' sampler)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mvae_cli.engine import loop
from mvae_cli.engine.loop import train
from mvae_cli.errors import UserError
from mvae_cli.recipe import resolve_recipe
from tests.helpers import make_dataset


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def _recipe(data_path, *extra):
    return resolve_recipe(None, [f"data.path={data_path}", "epochs=2", "batch_size=20", "model.hidden=16",
                                 "model.latent_dim=4", "supervision=0.1", *extra])


def test_every_batch_holds_the_share_and_an_epoch_is_one_pass_over_the_others(data_path, tmp_path, monkeypatch):
    batches = []
    original = loop.epoch_order

    def spy(s):
        order = original(s)
        paired = s.mask.all(axis=1)
        for b in range(s.steps_per_epoch):
            index = order[b * s.recipe.batch_size:(b + 1) * s.recipe.batch_size].numpy()
            batches.append((int(paired[index].sum()), index[~paired[index]]))
        return order

    monkeypatch.setattr(loop, "epoch_order", spy)
    train(_recipe(data_path, "paired_share=0.25"), tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    n_paired, n_other = info["mask"]["n_paired"], 200 - info["mask"]["n_paired"]
    assert n_paired == 20 and info["mask"]["paired_share"] == 0.25
    steps = -(-n_other // 15)  # 5 of each batch of 20 paired, 15 of the others
    assert len(batches) == 2 * steps
    assert [p for p, _ in batches] == [5] * len(batches)
    for epoch in range(2):  # each of the others exactly once per epoch
        others = np.concatenate([o for _, o in batches[epoch * steps:(epoch + 1) * steps]])
        assert sorted(others.tolist()) == sorted(set(others.tolist())) and others.size == n_other


def test_paired_share_resumes_bit_for_bit(data_path, tmp_path):
    recipe = _recipe(data_path, "paired_share=0.25", "epochs=3")
    train(recipe, tmp_path / "whole")

    def interrupt(event, **info):
        if event == "step" and info["epoch"] == 1 and info["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(recipe, tmp_path / "cut", progress=interrupt)
    train(recipe, tmp_path / "cut")
    from mvae_cli.engine.checkpoint import load_checkpoint

    whole, cut = (load_checkpoint(tmp_path / d / "last.pt")["model"] for d in ("whole", "cut"))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)


def test_a_share_that_gives_no_row_or_every_row_is_refused(data_path, tmp_path):
    with pytest.raises(UserError, match=r"paired_share=0.01 gives 0 of a batch of 20 to the paired rows"):
        train(_recipe(data_path, "paired_share=0.01"), tmp_path / "a")
    with pytest.raises(UserError, match="set one of them"):
        train(_recipe(data_path, "paired_share=0.5", "paired_repeat=3"), tmp_path / "b")
