"""CUDA checks: run with `pytest -m gpu` on a machine with a GPU; skipped elsewhere."""

import json

import pytest
import torch

from mvae_cli.engine.checkpoint import load_checkpoint
from mvae_cli.engine.data import SplitData
from mvae_cli.engine.loop import train
from mvae_cli.data.format import read_dataset
from mvae_cli.recipe import resolve_recipe
from tests.helpers import make_dataset

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def test_small_datasets_live_on_the_gpu_whole(data_path):
    with read_dataset(data_path) as ds:
        data = SplitData(ds, "train", torch.device("cuda"), budget_bytes=1 << 30)
        assert data.on_device
        batch = data.batch(torch.arange(10))
        assert all(t.device.type == "cuda" for t in batch.values())
        assert batch["image"].dtype == torch.float32 and batch["label"].dtype == torch.long


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda_in_each_precision(data_path, tmp_path, precision):
    recipe = resolve_recipe(None, [f"data.path={data_path}", "epochs=2", "model.hidden=32", "model.latent_dim=4",
                                   "device=cuda", f"precision={precision}", "supervision=0.5"])
    result = train(recipe, tmp_path / "run")
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result.epochs_done == 2 and all(l["peak_memory_mb"] > 0 for l in lines)
    assert torch.isfinite(torch.tensor([l["valid_elbo"] for l in lines])).all()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
