"""Training reads the loss on the host a bounded number of times per epoch, and the metrics are
what the old per-step ``loss.item()`` accumulation gave."""

import json
import math

import pytest
import torch

from mvae_cli.engine import loop
from mvae_cli.engine.loop import train
from mvae_cli.objectives.mvae import MVAEObjective
from mvae_cli.recipe import resolve_recipe
from tests.helpers import make_dataset


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def _recipe(data_path, batch_size):
    return resolve_recipe(None, [f"data.path={data_path}", "epochs=2", f"batch_size={batch_size}", "model.hidden=16",
                                 "model.latent_dim=4", "supervision=0.5", "device=cpu"])


def test_loss_metric_equals_the_per_step_host_sum(data_path, tmp_path, monkeypatch):
    seen = []
    original = MVAEObjective.__call__

    def recording(self, model, batch, step):
        loss, terms = original(self, model, batch, step)
        seen.append((loss.detach().item(), batch["mask"].shape[0]))  # what the old loop read each step
        return loss, terms

    monkeypatch.setattr(MVAEObjective, "__call__", recording)
    train(_recipe(data_path, 32), tmp_path / "run")
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for epoch, line in enumerate(lines):
        steps = seen[7 * epoch:7 * (epoch + 1)]  # 200 shown rows in batches of 32: 7 steps
        old = 0.0
        for value, n in steps:
            old += value * n
        assert line["loss"] == old / 200  # bit for bit


def _host_reads(data_path, tmp_path, batch_size, monkeypatch) -> int:
    count = [0]
    for name in ("item", "__float__", "tolist"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real):
            count[0] += 1
            return _real(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    monkeypatch.setattr(loop, "READ_EVERY_S", math.inf)  # only the last step of an epoch reads
    train(_recipe(data_path, batch_size), tmp_path / f"run{batch_size}")
    monkeypatch.undo()
    return count[0]


def test_host_reads_do_not_grow_with_the_steps(data_path, tmp_path, monkeypatch):
    few = _host_reads(data_path, tmp_path, 75, monkeypatch)  # 2 steps per epoch
    many = _host_reads(data_path, tmp_path, 10, monkeypatch)  # 15 steps per epoch
    assert many == few
