"""A stack of N models computes, for each run, what that run's model computes alone (same noise).

Brute force: every run of the stack against its own model on its own batch, its noise drawn from
the same stream states; the losses, the metrics and the gradients agree up to the rounding of the
batched products.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mvae_cli import zoo
from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.rows import stack_batches, with_host_mask
from mvae_cli.model.stack import stack_models, stack_reason, stacked_parameters, unstack_into

SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 6, 6)),
         ModalitySpec("shape", "categorical", "categorical", (), 3),
         ModalitySpec("colour", "categorical", "categorical", (), 4)]


def _models(n: int, name: str = "mvae", **settings):
    models = []
    for r in range(n):
        torch.manual_seed(100 + r)
        models.append(zoo.build(name, SPECS, latent_dim=4, hidden=8, **settings))
    return models


def _batch(seed: int, size: int, keep: float):
    g = np.random.default_rng(seed)
    mask = g.random((size, 3)) < keep
    mask[~mask.any(axis=1), 0] = True
    mask[0] = True  # one fully shown example (the CVAE learns from those alone)
    t = torch.Generator().manual_seed(seed)
    batch = {"image": torch.rand(size, 1, 6, 6, generator=t).round(), "shape": torch.randint(0, 3, (size,), generator=t),
             "colour": torch.randint(0, 4, (size,), generator=t), "mask": torch.from_numpy(mask)}
    return with_host_mask(batch, mask)


def _streams(seed: int):
    torch_gen = torch.Generator().manual_seed(1000 + seed)
    numpy_rng = np.random.RandomState(2000 + seed)
    return torch_gen, numpy_rng


def _alone(model, objective, batch, seed: int, beta: float):
    """The run alone, its global streams set to the states the stack's run starts from."""
    torch_gen, numpy_rng = _streams(seed)
    torch.set_rng_state(torch_gen.get_state())
    np.random.set_state(numpy_rng.get_state())
    model.zero_grad(set_to_none=True)
    loss, terms = objective.loss(model, batch, beta)
    loss.backward()
    return float(loss.detach()), {k: float(v.detach()) for k, v in terms.items()}


@pytest.mark.parametrize("name", ["mvae", "mvae-q", "vae", "cvae", "bivcca"])
@pytest.mark.parametrize("sizes,keeps", [((6, 6, 6), (1.0, 1.0, 1.0)), ((5, 7, 3), (0.5, 0.8, 1.0)),
                                         ((40, 4, 40), (1.0, 1.0, 0.9))])  # padded in blocks of their own
def test_stack_equals_each_run_alone(name, sizes, keeps):
    n = len(sizes)
    models = _models(n, name)
    objective = zoo.objective(name, anneal_steps=0, **({"k": 1} if name.startswith("mvae") else {}))
    batches = [_batch(r, size, keep) for r, (size, keep) in enumerate(zip(sizes, keeps))]
    alone = [_alone(models[r], objective, batches[r], r, 0.7) for r in range(n)]

    stacked = stack_models([copy.deepcopy(m) for m in models])
    stacked.zero_grad(set_to_none=True)
    losses, terms = objective.loss(stacked, stack_batches(batches, [_streams(r) for r in range(n)]), 0.7)
    assert losses.shape == (n,)
    losses.sum().backward()
    for r in range(n):
        assert float(losses[r].detach()) == pytest.approx(alone[r][0], rel=1e-5)
        for key, value in alone[r][1].items():
            assert float(terms[key][r].detach()) == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for share in stacked_parameters(stacked):
        for r in range(n):
            own = models[r].get_parameter(share.name)
            torch.testing.assert_close(share.part(share.stacked.grad, r, own), own.grad, rtol=1e-5, atol=1e-6)


def test_stack_takes_one_beta_per_example():
    models = _models(2)
    objective = zoo.objective("mvae", k=1, anneal_steps=0)
    batches = [_batch(r, 5, 0.7) for r in range(2)]
    alone = [_alone(models[r], objective, batches[r], r, beta)[0] for r, beta in enumerate((0.25, 1.0))]
    stacked = stack_models(models)
    beta = torch.tensor([0.25] * 5 + [1.0] * 5)
    losses, _ = objective.loss(stacked, stack_batches(batches, [_streams(r) for r in range(2)]), beta)
    assert [float(v) for v in losses.detach()] == pytest.approx(alone, rel=1e-5)


def test_unstack_copies_each_run_back():
    models = _models(3)
    stacked = stack_models(models)
    with torch.no_grad():
        for p in stacked.parameters():
            p.add_((torch.arange(p.shape[0]) % 3).float().view(-1, *[1] * (p.dim() - 1)))  # run r's slots + r
    copies = [copy.deepcopy(m) for m in models]
    for r, m in enumerate(copies):
        unstack_into(stacked, r, m)
    for r in range(3):
        for (name, before), after in zip(models[r].named_parameters(), copies[r].parameters()):
            torch.testing.assert_close(after, before + r, msg=name)


def test_what_does_not_stack_says_why():
    assert stack_reason(_models(1)[0]) is None
    conv = zoo.build("mvae", [ModalitySpec("image", "image", "bernoulli", (1, 8, 8))], latent_dim=4, hidden=8,
                     image_net="conv")
    assert "Conv2d" in stack_reason(conv)
    learned = zoo.build("mvae", [ModalitySpec("image", "image", "bernoulli", (1, 6, 6))], latent_dim=4, hidden=8,
                        likelihoods={"image": "gaussian:learned"})
    assert "outside its encoders and decoders" in stack_reason(learned)
    with pytest.raises(ValueError, match="does not stack"):
        stack_models([conv, conv])
    assert "outside its encoders and decoders" in stack_reason(_models(1, "jmvae")[0])  # its joint network


def test_a_stacked_network_needs_the_runs_of_its_rows():
    stacked = stack_models(_models(2))
    with pytest.raises(RuntimeError, match="without the runs of its rows"):
        stacked.decode("image", torch.zeros(4, 4))


def test_runs_of_very_different_counts_are_padded_in_blocks_of_their_own():
    from mvae_cli.model.stack import _Layout, _segments

    assert _segments(np.array([40, 4, 40])) == [(0, 1, 40), (1, 2, 4), (2, 3, 40)]
    assert _segments(np.array([10, 12, 9])) == [(0, 3, 12)]  # close counts: one block
    assert _segments(np.array([30, 30, 20])) == [(0, 3, 30)]  # splitting would save too little
    # rows that cost little (an attribute's small network) are cheaper padded than split
    assert _segments(np.array([40, 4, 40]), row_macs=5_000, layers=3) == [(0, 3, 40)]
    assert _segments(np.array([400, 40, 400]), row_macs=200_000, layers=3) == [(0, 1, 400), (1, 2, 40), (2, 3, 400)]
    runs = np.array([0] * 40 + [1] * 4 + [2] * 39)
    layout = _Layout(runs, 3, "cpu")
    x = torch.arange(83.0).unsqueeze(1)
    assert layout.blocks == ((0, 1, 40, 0), (1, 2, 4, 40), (2, 3, 39, 44))  # (runs a:b, C rows each, from row)
    assert layout.pad(x) is x  # each run fills its block
    layout = _Layout(np.array([0, 0, 0, 1, 2, 2]), 3, "cpu")  # one block of 3 rows a run
    padded = layout.pad(torch.arange(1.0, 7.0).unsqueeze(1))
    assert layout.blocks == ((0, 3, 3, 0),) and padded.squeeze(1).tolist() == [1, 2, 3, 4, 0, 0, 5, 6, 0]
    assert layout.unpad(padded).squeeze(1).tolist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="run after run"):
        _Layout(np.array([0, 1, 0]), 2, "cpu")


def test_the_remedies_stack_too():
    """Cross reconstruction and the alignment term: each run of a stack as alone."""
    n, sizes, keeps = 3, (6, 7, 5), (0.6, 1.0, 0.8)
    models = _models(n)
    objective = zoo.objective("mvae", anneal_steps=0, k=1, cross={"image:shape": 2.0}, align=0.5)
    batches = [_batch(r, size, keep) for r, (size, keep) in enumerate(zip(sizes, keeps))]
    alone = [_alone(models[r], objective, batches[r], r, 1.0) for r in range(n)]
    stacked = stack_models([copy.deepcopy(m) for m in models])
    losses, terms = objective.loss(stacked, stack_batches(batches, [_streams(r) for r in range(n)]), 1.0)
    for r in range(n):
        assert float(losses[r].detach()) == pytest.approx(alone[r][0], rel=1e-5)
        for key in ("cross", "align"):
            assert float(terms[key][r].detach()) == pytest.approx(alone[r][1][key], rel=1e-5, abs=1e-6), key


def test_like_attribute_networks_compute_as_one_group():
    """shape (3 classes) and colour (4): one grouped encoder and one grouped decoder; each member alone
    computes its run's own network, and what pads it gets no gradient."""
    from mvae_cli.model.rows import computing
    from mvae_cli.model.stack import PAD_LOGIT, NetGroup

    models = _models(3)
    stacked = stack_models([copy.deepcopy(m) for m in models])
    assert [(g.table, g.names) for g in stacked.groups] == [("encoders", ["shape", "colour"]),
                                                            ("decoders", ["shape", "colour"])]
    assert not isinstance(stacked.encoders["image"], NetGroup) and len(stacked.groups[0].net.embed) == 6
    batch = stack_batches([_batch(r, 4, 1.0) for r in range(3)], [_streams(r) for r in range(3)])
    z = torch.randn(12, 4)
    with computing(batch, None):
        for name, width in (("shape", 3), ("colour", 4)):
            logits = stacked.decode(name, z)
            mu, _ = stacked.encoders[name](batch[name])
            assert logits.shape == (12, width)
            for r in range(3):
                torch.testing.assert_close(logits[4 * r:4 * r + 4], models[r].decode(name, z[4 * r:4 * r + 4]))
                torch.testing.assert_close(mu[4 * r:4 * r + 4], models[r].encoders[name](batch[name][4 * r:4 * r + 4])[0])
    decoders = stacked.groups[1].net.inner.net
    assert torch.equal(decoders[-1].bias[:3, 3], torch.full((3,), PAD_LOGIT))  # shape's missing fourth class
    objective = zoo.objective("mvae", k=1, anneal_steps=0)
    objective.loss(stacked, stack_batches([_batch(r, 6, 0.7) for r in range(3)], [_streams(r) for r in range(3)]),
                   1.0)[0].sum().backward()
    assert torch.count_nonzero(decoders[-1].weight.grad[:3, :, 3]) == 0 and torch.count_nonzero(decoders[-1].bias.grad[:3, 3]) == 0
    assert torch.count_nonzero(stacked.groups[0].net.embed.grad[:3, 3]) == 0  # shape's embedding has no fourth row
    assert torch.count_nonzero(decoders[-1].weight.grad[3:, :, 3]) > 0  # colour's fourth class learns


def test_decoders_that_see_their_own_part_of_z_are_not_grouped():
    stacked = stack_models(_models(2, "mmjsd"))  # mmJSD's decode gives each decoder [c, s_m]
    assert [(g.table, g.names) for g in stacked.groups] == [("encoders", ["shape", "colour"])]


def test_a_layer_of_padded_blocks_is_each_block_alone_and_runs_under_bf16():
    """One product a block in one autograd node (no weight split, no concatenation): its values and
    gradients against each block's own product; under bf16 autocast its products in bf16, its weight
    gradients in the weights' float32."""
    from mvae_cli.model.stack import _BlockLinear

    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    x = torch.randn(8, 5, dtype=torch.float64, generator=g, requires_grad=True)
    blocks = ((0, 1, 2, 0), (1, 3, 3, 2))  # run 0: 2 rows from row 0; runs 1 and 2: 3 rows each from row 2
    ref = torch.cat([x[:2] @ w[0] + b[0], (x[2:].view(2, 3, 5) @ w[1:] + b[1:, None]).reshape(6, 4)])
    torch.testing.assert_close(_BlockLinear.apply(x, w, b, blocks), ref)
    assert torch.autograd.gradcheck(lambda x, w, b: _BlockLinear.apply(x, w, b, blocks), (x, w, b))
    w32, b32 = w.detach().float().requires_grad_(), b.detach().float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = _BlockLinear.apply(x.detach().float(), w32, b32, blocks)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    ref.sum().backward()
    assert w32.grad.dtype == torch.float32 and b32.grad.dtype == torch.float32
    torch.testing.assert_close(w32.grad.double(), w.grad, rtol=2e-2, atol=5e-2)
    torch.testing.assert_close(b32.grad.double(), b.grad, rtol=2e-2, atol=5e-2)
