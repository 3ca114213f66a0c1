"""The MVAE objective: sub-sampled ELBOs over a product of experts (Wu & Goodman 2018, §2.4).

For every example with observed modalities O: the ELBO of O, the ELBO of each single
modality in O, and k ELBOs of random subsets of O. Each distinct subset of an example
counts once, so the random draws are subsets strictly between a single modality and O
(they exist when |O| ≥ 3). Per example the terms are summed; the loss is the negative
mean over examples.
"""

from __future__ import annotations

import numpy as np
import torch

from mvae_cli.model.poe import gaussian_kl
from mvae_cli.model.rows import as_device, host_mask, index, plan_per_run
from mvae_cli.objectives.base import Objective, RowTerms, per_example_sum
from mvae_cli.objectives.elbo import subset_elbo

KIND_FULL, KIND_SINGLE, KIND_RANDOM = 0, 1, 2
_MAX_DRAWS = 64


def mvae_subsets(mask: np.ndarray, k: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (example, subset) rows of the MVAE objective for a batch, distinct per example, found on
    the host (no device sync).

    Random subsets: each observed modality joins with probability 1/2, redrawn until the subset
    has between 2 and |O| − 1 modalities; duplicates within an example are dropped.

    Args:
        mask: ``bool[B, M]`` (host), every row with at least one modality.
        k: random subsets per example.
        rng: draws the random subsets (``rng.random(shape)``: a numpy Generator or RandomState).

    Returns:
        ``(example int64[R], subsets bool[R, M], kind int64[R])`` with kind 0 = all
        observed, 1 = single modality, 2 = random subset; rows ordered by kind.
    """
    B, M = mask.shape
    n_obs = mask.sum(axis=1)
    single_ex, single_mod = np.nonzero(mask & (n_obs > 1)[:, None])  # a one-modality example's single ELBO is its full ELBO
    examples = [np.arange(B), single_ex]
    subsets = [mask, np.eye(M, dtype=bool)[single_mod]]
    kinds = [np.full(B, KIND_FULL), np.full(single_ex.shape[0], KIND_SINGLE)]
    if k > 0:
        rand_ex = np.repeat(np.flatnonzero(n_obs >= 3), k)
        if rand_ex.size:
            draws = _draw_strict_subsets(mask[rand_ex], n_obs[rand_ex], rng)
            if k > 1:  # drop duplicates within an example
                bits = (draws.astype(np.int64) << np.arange(M)).sum(axis=1)
                unique = np.unique(np.stack([rand_ex, bits], axis=1), axis=0)
                rand_ex = unique[:, 0]
                draws = ((unique[:, 1:2] >> np.arange(M)) & 1).astype(bool)
            examples.append(rand_ex)
            subsets.append(draws)
            kinds.append(np.full(rand_ex.shape[0], KIND_RANDOM))
    return (np.concatenate(examples).astype(np.int64), np.concatenate(subsets).astype(bool),
            np.concatenate(kinds).astype(np.int64))


def _draw_strict_subsets(observed: np.ndarray, n_obs: np.ndarray, rng) -> np.ndarray:
    draws = np.zeros_like(observed)
    pending = np.ones(observed.shape[0], dtype=bool)
    for _ in range(_MAX_DRAWS):
        candidate = (rng.random(observed.shape) < 0.5) & observed
        size = candidate.sum(axis=1)
        ok = pending & (size >= 2) & (size < n_obs)
        draws[ok] = candidate[ok]
        pending &= ~ok
        if not pending.any():
            return draws
    # Vanishingly rare (p < 0.63^64 per row): fall back to the first two observed modalities.
    first_two = observed & (observed.cumsum(axis=1) <= 2)
    draws[pending] = first_two[pending]
    return draws


class MVAEObjective(Objective):
    """The sub-sampled MVAE objective (paper §2.4), β annealed per step.

    Args:
        k: random-subset ELBOs per example (the paper uses k = 1 for MVAE19); None: one when there
            are more than two modalities, else none (:func:`default_k`).
        cross: ``{"given:target": λ}``, cross reconstruction (:meth:`cross_targets`); empty: the
            paper's objective.
        align: α of the alignment term (:meth:`alignment`); 0: the paper's objective.
        anneal_steps, beta, free_bits: see :class:`~mvae_cli.objectives.base.Objective`.
    """

    settings = ("k", "cross", "align")
    stacks = True

    def __init__(self, *, k: int | None = 0, cross: dict[str, float] | None = None, align: float = 0.0, **common):
        super().__init__(**common)
        self.k, self.align = k, float(align)
        self.cross = {}
        for key, weight in (cross or {}).items():
            given, sep, target = key.partition(":")
            if not sep or not given or not target or given == target:
                raise ValueError(f"a cross-reconstruction key is given:target, got {key!r}")
            self.cross[(given, target)] = float(weight)

    def alignment(self, model, mu: torch.Tensor, logvar: torch.Tensor, example: np.ndarray, subsets: np.ndarray,
                  kind: np.ndarray) -> torch.Tensor:
        """α KL[q(z | X) ‖ q(z | x_i)] on each single-modality row, X its example's observed modalities
        (the row of kind 0), both the model's fused posteriors of the experts ``mu, logvar [B, M, D]``:
        ``[R]``, zero on the other rows. JMVAE-kl's alignment, with the product of experts as the
        joint network, on every example that shows two or more modalities."""
        single = np.flatnonzero(kind == KIND_SINGLE)
        penalty = mu.new_zeros(example.shape[0], dtype=torch.float32)
        if single.size == 0:
            return penalty
        full_row = np.full(int(example.max()) + 1, -1)
        full = np.flatnonzero(kind == KIND_FULL)
        full_row[example[full]] = full
        partner = full_row[example[single]]

        def fused(rows):
            ex = index(example[rows], mu.device)
            return model.posterior(None, as_device(subsets[rows], mu.device),
                                   experts=(mu.index_select(0, ex).float(), logvar.index_select(0, ex).float()))

        joint, alone = fused(partner), fused(single)
        kl = gaussian_kl(joint.mu, joint.logvar, alone.mu, alone.logvar)
        return penalty.index_add(0, index(single, mu.device), self.align * kl)

    def cross_targets(self, model, shown: np.ndarray, subsets: np.ndarray, kind: np.ndarray):
        """What each row reconstructs with cross reconstruction (the authors' ``lambda_yx``): the
        single-modality row of ``given`` also scores ``target`` when its example shows ``target``,
        with weight λ in place of the modality's own.

        Args:
            shown: ``bool [R, M]`` (host), what each row's example shows.
            subsets, kind: the rows of :func:`mvae_subsets`.

        Returns:
            ``(targets bool [R, M], weights float [R, M], cross bool [R, M])``; None without cross terms.
        """
        if not self.cross:
            return None
        targets = subsets.copy()
        weights = np.broadcast_to(np.asarray(model.weights, dtype=np.float32), subsets.shape).copy()
        cross = np.zeros_like(subsets)
        for (given, target), weight in self.cross.items():
            g, t = model.names.index(given), model.names.index(target)
            rows = (kind == KIND_SINGLE) & subsets[:, g] & shown[:, t]
            targets[rows, t] = cross[rows, t] = True
            weights[rows, t] = weight
        return targets, weights, cross

    def bound(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The ELBO of every shown modality (β = 1, one sample), per example: ``[B]`` (validation)."""
        mask = batch["mask"]
        mu, logvar = model.encode(batch, mask)
        rows = torch.arange(mask.shape[0], device=mask.device)
        return subset_elbo(model, batch, mu, logvar, rows, mask, beta=1.0)[0]

    def per_example(self, model, batch, beta, free_bits=0.0):
        values, terms, _, _ = self._rows(model, batch, beta, free_bits)
        return values, terms

    def loss(self, model, batch, beta):
        _, terms, elbo, rows = self._rows(model, batch, beta, self.free_bits)
        return -rows.per_example(elbo), terms

    def _rows(self, model, batch, beta, free_bits):
        mask = batch["mask"]
        k = default_k(mask.shape[1]) if self.k is None else self.k
        mu, logvar = model.encode(batch, mask)
        # numpy's global stream (each run's own in a stack): seeded by the engine and saved in every
        # checkpoint (exact resume)
        shown = host_mask(batch, mask)
        example, subsets, kind = plan_per_run(batch, shown, lambda m, rng: mvae_subsets(m, k, rng))
        cross = self.cross_targets(model, shown[example], subsets, kind)
        targets, weights = (None, None) if cross is None else cross[:2]
        elbo, log_lik, kl = subset_elbo(model, batch, mu, logvar, example, subsets, beta, targets=targets,
                                        free_bits=free_bits, target_weights=weights)
        rows = RowTerms(batch, example, mask.device)
        by_kind = rows.per_example_by(elbo.detach(), kind, 3)
        penalty = self.alignment(model, mu, logvar, example, subsets, kind) if self.align > 0 else None
        if penalty is not None:
            elbo = elbo - penalty
        terms = {"kl": rows.mean(kl)}
        for i, label in enumerate(("elbo_full", "elbo_single", "elbo_subset")):
            terms[label] = by_kind[..., i]
        terms.update(rows.log_lik_terms(model, subsets, log_lik))
        if penalty is not None:  # what the alignment term takes from each example's objective, on average
            terms["align"] = rows.per_example(penalty.detach())
        if cross is not None:  # what the cross terms add to each example's objective, on average
            scored = torch.from_numpy(cross[1] * cross[2]).to(log_lik.device)
            terms["cross"] = rows.per_example((log_lik.detach() * scored).sum(dim=1))
        return per_example_sum(elbo, index(example, mask.device), mask.shape[0]), terms, elbo, rows


def default_k(n_modalities: int) -> int:
    """The paper's choice of k: one random subset when there are more than two modalities."""
    return 1 if n_modalities > 2 else 0
