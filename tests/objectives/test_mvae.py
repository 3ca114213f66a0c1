import math

import numpy as np
import torch
import torch.nn.functional as F

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.model import MultimodalVAE
from mvae_cli.objectives import MVAEObjective, beta_at, mvae_subsets

SPECS = [
    ModalitySpec("image", "image", "bernoulli", (1, 4, 4)),
    ModalitySpec("colour", "categorical", "categorical", (), 3),
    ModalitySpec("size", "categorical", "categorical", (), 2),
    ModalitySpec("shape", "categorical", "categorical", (), 5),
]
MASK = torch.tensor([
    [1, 1, 1, 1],  # paired: full, 4 singles, k random strict subsets
    [1, 0, 1, 1],  # three shown
    [0, 1, 1, 0],  # two shown: full and two singles, no strict subsets exist
    [0, 0, 0, 1],  # unimodal: its single ELBO is its full ELBO, counted once
    [1, 0, 0, 0],
], dtype=torch.bool)


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {"image": torch.rand(5, 1, 4, 4, generator=g)}
    for spec in SPECS[1:]:
        batch[spec.name] = torch.randint(0, spec.classes, (5,), generator=g)
    batch["mask"] = MASK
    return batch


def _model() -> MultimodalVAE:
    torch.manual_seed(0)
    return MultimodalVAE(SPECS, latent_dim=3, hidden=8, weights={"image": 1.0, "colour": 2.0, "size": 0.5})


def test_subsets_are_distinct_and_complete():
    example, subsets, kind = map(torch.from_numpy, mvae_subsets(MASK.numpy(), 3, np.random.default_rng(0)))
    per_example = {b: [tuple(s.tolist()) for s in subsets[example == b]] for b in range(5)}
    for b, rows in per_example.items():
        assert len(rows) == len(set(rows)), "each distinct subset of an example counts once"
        observed = MASK[b]
        assert tuple(observed.tolist()) in rows  # the full subset
        for row in rows:
            assert not (torch.tensor(row) & ~observed).any()  # only observed modalities
    n_obs = MASK.sum(1).tolist()
    assert len(per_example[3]) == 1 and len(per_example[4]) == 1
    assert len(per_example[2]) == 3  # {a, b}, {a}, {b}
    for b in (0, 1):
        randoms = subsets[(example == b) & (kind == 2)]
        assert 1 <= randoms.shape[0] <= 3
        sizes = randoms.sum(1)
        assert bool(((sizes >= 2) & (sizes < n_obs[b])).all())
    assert int((kind == 1).sum()) == 4 + 3 + 2  # singles of the examples with more than one modality


def test_k_zero_gives_full_and_singles_only():
    example, subsets, kind = map(torch.from_numpy, mvae_subsets(MASK.numpy(), 0, np.random.default_rng(0)))
    assert subsets.shape[0] == 5 + 4 + 3 + 2 and not bool((kind == 2).any())


def _plain_poe(model, batch, b, subset):
    """The product of the prior and the subset's experts of example b, by straightforward code: (mean, var)."""
    precision_sum = torch.ones(model.latent_dim)
    weighted = torch.zeros(model.latent_dim)
    for j, name in enumerate(model.names):
        if subset[j]:
            mu, logvar = model.encoders[name](batch[name][b:b + 1])
            precision_sum = precision_sum + torch.exp(-logvar[0])
            weighted = weighted + mu[0] * torch.exp(-logvar[0])
    var = 1.0 / precision_sum
    return weighted * var, var


def _plain_elbo(model, batch, b, subset, eps, beta, cross=None):
    """One ELBO term by straightforward code: per-expert encoders, closed-form PoE, manual likelihoods;
    ``cross {modality index: λ}``: more targets scored with their own weight."""
    mean, var = _plain_poe(model, batch, b, subset)
    z = mean + eps * var.sqrt()
    total = 0.0
    cross = cross or {}
    for j, name in enumerate(model.names):
        if not subset[j] and j not in cross:
            continue
        out = model.decoders[name](z.unsqueeze(0))[0]
        if SPECS[j].kind == "image":
            p = torch.sigmoid(out)
            x = batch[name][b]
            ll = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum()
        else:
            ll = F.log_softmax(out, dim=-1)[batch[name][b]]
        total = total + (cross[j] if j in cross else model.weights[j]) * ll
    kl = 0.5 * (mean ** 2 + var - 1 - torch.log(var)).sum()
    return total - beta * kl


def _with_replay(objective, model, batch, step, k):
    """The objective's loss and terms, and its random draws replayed: the subsets from numpy's stream
    (on the host) and one noise row per term."""
    torch.manual_seed(123)
    np.random.seed(123)
    loss, terms = objective(model, batch, step)
    torch.manual_seed(123)
    np.random.seed(123)
    example, subsets, kind = map(torch.from_numpy, mvae_subsets(batch["mask"].numpy(), k, np.random.mtrand._rand))
    return loss, terms, (example, subsets, kind, torch.randn(subsets.shape[0], model.latent_dim))


def test_batched_objective_equals_terms_computed_one_at_a_time():
    model, batch = _model(), _batch()
    objective = MVAEObjective(k=2, anneal_steps=10)
    step = 4
    loss, terms, (example, subsets, _, eps) = _with_replay(objective, model, batch, step, 2)
    with torch.no_grad():
        plain = sum(_plain_elbo(model, batch, int(example[r]), subsets[r], eps[r], beta_at(step, 10))
                    for r in range(subsets.shape[0]))
    assert math.isclose(loss.item(), -plain.item() / 5, rel_tol=1e-5)
    assert terms["beta"] == 0.4
    pieces = terms["elbo_full"] + terms["elbo_single"] + terms["elbo_subset"]
    assert math.isclose(pieces.item(), -loss.item(), rel_tol=1e-6)


def test_gradients_reach_every_network():
    model, batch = _model(), _batch()
    loss, _ = MVAEObjective(k=1)(model, batch, 0)
    loss.backward()
    for name in model.names:
        for net in (model.encoders[name], model.decoders[name]):
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters()), name


def test_beta_anneals_linearly_per_step():
    assert [beta_at(s, 4) for s in (0, 1, 2, 4, 9)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert beta_at(0, 0) == 1.0


def test_gradients_are_reproducible_bit_for_bit():
    # Each example's experts feed several subset rows; their gradients must be summed in a
    # fixed order, or two identical CPU runs drift apart in the last bits.
    specs = [ModalitySpec("image", "image", "bernoulli", (3, 8, 8))] + [
        ModalitySpec(f"a{i}", "categorical", "categorical", (), 4) for i in range(5)]
    torch.manual_seed(0)
    model = MultimodalVAE(specs, latent_dim=16, hidden=64)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(100, 3, 8, 8, generator=g), "mask": torch.rand(100, 6, generator=g) < 0.7}
    batch["mask"][:, 0] = True
    for i in range(5):
        batch[f"a{i}"] = torch.randint(0, 4, (100,), generator=g)

    def gradients():
        torch.manual_seed(1)
        np.random.seed(1)  # the random subsets are drawn on the host
        model.zero_grad()
        MVAEObjective(k=1)(model, batch, 0)[0].backward()
        return [p.grad.clone() for p in model.parameters()]

    first = gradients()
    for _ in range(4):
        assert all(torch.equal(a, b) for a, b in zip(first, gradients()))


def test_cross_reconstruction_equals_the_extra_terms_computed_one_at_a_time():
    """objective.cross {"image:colour": 3, "shape:size": 0.5}: the single ELBO of q(z | image) on a row
    that also shows colour scores 3 · log p(colour | z); likewise shape → size."""
    model, batch = _model(), _batch()
    objective = MVAEObjective(k=2, anneal_steps=10, cross={"image:colour": 3.0, "shape:size": 0.5})
    step = 4
    loss, terms, (example, subsets, kind, eps) = _with_replay(objective, model, batch, step, 2)
    mask, names = batch["mask"], model.names
    plain, extra = 0.0, 0
    with torch.no_grad():
        for r in range(subsets.shape[0]):
            b, cross = int(example[r]), {}
            for (given, target), weight in (("image", "colour"), 3.0), (("shape", "size"), 0.5):
                g, t = names.index(given), names.index(target)
                if int(kind[r]) == 1 and subsets[r].tolist() == [j == g for j in range(4)] and bool(mask[b, t]):
                    cross[t] = weight
            extra += len(cross)
            plain = plain + _plain_elbo(model, batch, b, subsets[r], eps[r], beta_at(step, 10), cross)
    assert extra == 3  # image → colour on example 0; shape → size on examples 0 and 1
    assert math.isclose(loss.item(), -plain.item() / 5, rel_tol=1e-5)
    assert "cross" in terms and terms["cross"].item() < 0


def test_cross_reconstruction_keys_are_checked():
    import pytest

    with pytest.raises(ValueError, match="given:target"):
        MVAEObjective(cross={"image": 1.0})
    with pytest.raises(ValueError, match="given:target"):
        MVAEObjective(cross={"image:image": 1.0})


def test_the_alignment_term_is_alpha_times_the_kl_of_the_joint_to_each_single_posterior():
    model, batch = _model(), _batch()
    runs = {}
    for align in (0.0, 0.7):
        torch.manual_seed(5)
        np.random.seed(5)
        runs[align] = MVAEObjective(k=1, anneal_steps=0, align=align)(model, batch, 0)
    mask = batch["mask"]
    expected = 0.0
    with torch.no_grad():
        for b in range(5):
            if int(mask[b].sum()) < 2:
                continue
            m_q, v_q = _plain_poe(model, batch, b, mask[b])
            for j in range(4):
                if mask[b, j]:
                    m_p, v_p = _plain_poe(model, batch, b, [i == j for i in range(4)])
                    expected += 0.7 * 0.5 * (v_q / v_p + (m_q - m_p) ** 2 / v_p - 1 + torch.log(v_p / v_q)).sum().item()
    (loss0, _), (loss1, terms) = runs[0.0], runs[0.7]
    assert math.isclose(loss1.item() - loss0.item(), expected / 5, rel_tol=1e-5)
    assert math.isclose(terms["align"].item(), expected / 5, rel_tol=1e-5)
