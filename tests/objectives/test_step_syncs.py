"""A training step waits for the device nowhere: every shape that follows the mask is found on the
host (mvae_cli.model.rows), so the step has 0 host syncs for every model of the table. Counted with
a dispatch mode on the ops that must read a device value back (scalar reads, nonzero, unique,
boolean indexing, repeat_interleave without its output size)."""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mvae_cli import zoo
from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.rows import with_host_mask

SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)), ModalitySpec("label", "categorical", "categorical", (), 3),
         ModalitySpec("parity", "categorical", "categorical", (), 2)]
SYNCING = {"_local_scalar_dense", "nonzero", "unique", "_unique", "_unique2", "unique_dim", "unique_consecutive",
           "masked_select", "item", "equal", "is_nonzero"}


class SyncCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        kwargs = kwargs or {}
        if name in SYNCING:
            self.seen.append(name)
        elif name == "index" and any(torch.is_tensor(i) and i.dtype == torch.bool for i in (args[1] or []) if i is not None):
            self.seen.append("index(bool)")
        elif name == "repeat_interleave" and torch.is_tensor(args[0]) and kwargs.get("output_size") is None and len(args) < 3:
            self.seen.append("repeat_interleave")
        return func(*args, **kwargs)


def _batch():
    g = torch.Generator().manual_seed(0)
    n = 12
    mask = np.ones((n, 3), dtype=bool)
    mask[4:8] = [True, False, False]  # image only
    mask[8:10] = [False, True, False]  # label only
    mask[10:] = [True, True, False]  # two of three
    batch = {"image": torch.rand(n, 1, 4, 4, generator=g), "label": torch.randint(0, 3, (n,), generator=g),
             "parity": torch.randint(0, 2, (n,), generator=g), "mask": torch.from_numpy(mask)}
    return with_host_mask(batch, mask)


@pytest.mark.parametrize("name", zoo.names())
def test_a_training_step_has_no_host_sync(name):
    torch.manual_seed(0)
    model = zoo.build(name, SPECS, latent_dim=3, hidden=8)
    settings = {"k": 2} if name in ("mvae", "mvae-q") else {"k_particles": 3} if name == "mmvae" else {}
    objective = zoo.objective(name, anneal_steps=10, beta=1.0, **settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    batch = _batch()
    counter = SyncCounter()
    with counter:
        loss, terms = objective(model, batch, 3)
        loss.backward()
        optimizer.step()
    assert counter.seen == [], f"{name}: {counter.seen}"
    assert torch.isfinite(loss)


def test_the_counter_sees_a_sync():
    counter = SyncCounter()
    with counter:
        x = torch.arange(4)
        x[x > 1].sum()
        float(x.sum())
    assert counter.seen.count("index(bool)") == 1 and "_local_scalar_dense" in counter.seen


@pytest.mark.parametrize("name", [n for n in zoo.names() if getattr(zoo.entry(n).objective, "stacks", False)])
def test_a_stacked_step_has_no_host_sync(name):
    from mvae_cli.model.rows import stack_batches
    from mvae_cli.model.stack import stack_models

    models = []
    for r in range(3):
        torch.manual_seed(r)
        models.append(zoo.build(name, SPECS, latent_dim=3, hidden=8))
    stacked = stack_models(models)
    settings = {"k": 2} if name in ("mvae", "mvae-q") else {}
    objective = zoo.objective(name, anneal_steps=10, beta=1.0, **settings)
    optimizer = torch.optim.Adam(stacked.parameters(), lr=1e-3, fused=True)
    batch = stack_batches([_batch() for _ in range(3)],
                          [(torch.Generator().manual_seed(r), np.random.RandomState(r)) for r in range(3)])
    beta = torch.linspace(0.2, 1.0, 36)  # one β per example: the runs anneal on their own steps
    counter = SyncCounter()
    with counter:
        losses, terms = objective.loss(stacked, batch, beta)
        losses.sum().backward()
        optimizer.step()
    assert counter.seen == [], f"{name}: {counter.seen}"
    assert losses.shape == (3,) and bool(torch.isfinite(losses).all())
