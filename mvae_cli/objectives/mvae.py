"""The MVAE objective: sub-sampled ELBOs over a product of experts (Wu & Goodman 2018, §2.4).

For every example with observed modalities O: the ELBO of O, the ELBO of each single
modality in O, and k ELBOs of random subsets of O. Each distinct subset of an example
counts once, so the random draws are subsets strictly between a single modality and O
(they exist when |O| ≥ 3). Per example the terms are summed; the loss is the negative
mean over examples.
"""

from __future__ import annotations

import torch

from mvae_cli.objectives.base import Objective, per_example_sum
from mvae_cli.objectives.elbo import subset_elbo

KIND_FULL, KIND_SINGLE, KIND_RANDOM = 0, 1, 2
_MAX_DRAWS = 64


def mvae_subsets(mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (example, subset) rows of the MVAE objective for a batch, distinct per example.

    Random subsets are drawn from torch's global generator (on ``mask``'s device):
    each observed modality joins with probability 1/2, redrawn until the subset has
    between 2 and |O| − 1 modalities; duplicates within an example are dropped.

    Args:
        mask: ``bool[B, M]``, every row with at least one modality.
        k: random subsets per example.

    Returns:
        ``(example long[R], subsets bool[R, M], kind long[R])`` with kind 0 = all
        observed, 1 = single modality, 2 = random subset; rows ordered by kind.
    """
    device = mask.device
    n_obs = mask.sum(dim=1)
    full_ex = torch.arange(mask.shape[0], device=device)
    single_ex, single_mod = mask.nonzero(as_tuple=True)
    keep = n_obs[single_ex] > 1  # a one-modality example's single ELBO is its full ELBO
    single_ex, single_mod = single_ex[keep], single_mod[keep]
    singles = torch.nn.functional.one_hot(single_mod, mask.shape[1]).bool()
    examples, subsets = [full_ex, single_ex], [mask, singles]
    kinds = [torch.full_like(full_ex, KIND_FULL), torch.full_like(single_ex, KIND_SINGLE)]
    if k > 0:
        rand_ex = (n_obs >= 3).nonzero(as_tuple=True)[0].repeat_interleave(k)
        if rand_ex.numel():
            draws = _draw_strict_subsets(mask[rand_ex], n_obs[rand_ex])
            if k > 1:  # drop duplicates within an example
                bits = (draws.long() << torch.arange(mask.shape[1], device=device)).sum(dim=1)
                unique = torch.unique(torch.stack([rand_ex, bits], dim=1), dim=0)
                rand_ex = unique[:, 0]
                draws = ((unique[:, 1:2] >> torch.arange(mask.shape[1], device=device)) & 1).bool()
            examples.append(rand_ex)
            subsets.append(draws)
            kinds.append(torch.full_like(rand_ex, KIND_RANDOM))
    return torch.cat(examples), torch.cat(subsets), torch.cat(kinds)


def _draw_strict_subsets(observed: torch.Tensor, n_obs: torch.Tensor) -> torch.Tensor:
    draws = torch.zeros_like(observed)
    pending = torch.ones(observed.shape[0], dtype=torch.bool, device=observed.device)
    for _ in range(_MAX_DRAWS):
        candidate = (torch.rand(observed.shape, device=observed.device) < 0.5) & observed
        size = candidate.sum(dim=1)
        ok = pending & (size >= 2) & (size < n_obs)
        draws[ok] = candidate[ok]
        pending &= ~ok
        if not bool(pending.any()):
            return draws
    # Vanishingly rare (p < 0.63^64 per row): fall back to the first two observed modalities.
    first_two = observed & (observed.cumsum(dim=1) <= 2)
    draws[pending] = first_two[pending]
    return draws


class MVAEObjective(Objective):
    """The sub-sampled MVAE objective (paper §2.4), β annealed per step.

    Args:
        k: random-subset ELBOs per example (the paper uses k = 1 for MVAE19); None: one when there
            are more than two modalities, else none (:func:`default_k`).
        anneal_steps, beta, free_bits: see :class:`~mvae_cli.objectives.base.Objective`.
    """

    settings = ("k",)

    def __init__(self, *, k: int | None = 0, **common):
        super().__init__(**common)
        self.k = k

    def bound(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The ELBO of every shown modality (β = 1, one sample), per example: ``[B]`` (validation)."""
        mask = batch["mask"]
        mu, logvar = model.encode(batch, mask)
        rows = torch.arange(mask.shape[0], device=mask.device)
        return subset_elbo(model, batch, mu, logvar, rows, mask, beta=1.0)[0]

    def per_example(self, model, batch, beta, free_bits=0.0):
        values, terms, _ = self._rows(model, batch, beta, free_bits)
        return values, terms

    def loss(self, model, batch, beta):
        _, terms, elbo = self._rows(model, batch, beta, self.free_bits)
        return -elbo.sum() / batch["mask"].shape[0], terms

    def _rows(self, model, batch, beta, free_bits):
        mask = batch["mask"]
        k = default_k(mask.shape[1]) if self.k is None else self.k
        mu, logvar = model.encode(batch, mask)
        example, subsets, kind = mvae_subsets(mask, k)
        elbo, log_lik, kl = subset_elbo(model, batch, mu, logvar, example, subsets, beta, free_bits=free_bits)
        n_examples = mask.shape[0]
        terms = {"kl": kl.mean()}
        for code, label in ((KIND_FULL, "elbo_full"), (KIND_SINGLE, "elbo_single"), (KIND_RANDOM, "elbo_subset")):
            rows = kind == code
            terms[label] = elbo[rows].sum() / n_examples
        terms.update(self.log_lik_terms(model, subsets, log_lik))
        return per_example_sum(elbo, example, n_examples), terms, elbo


def default_k(n_modalities: int) -> int:
    """The paper's choice of k: one random subset when there are more than two modalities."""
    return 1 if n_modalities > 2 else 0
