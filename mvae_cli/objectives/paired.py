"""The MVAE paper's comparison objectives (§4), over the shared networks and :func:`subset_elbo`.

- :class:`VAEObjective` — the ELBO of the primary modality x under q(z|x).
- :class:`CVAEObjective` — the conditional ELBO E_q(z|x,y)[log p(x|z,y)] − KL[q(z|x,y) ‖ p(z)]
  (Sohn et al. 2015), on the examples that show every modality.
- :class:`BiVCCAObjective` — μ·ELBO_x + (1 − μ)·ELBO_y (Wang et al. 2016), each ELBO under one
  modality's inference network and reconstructing every observed modality.
- :class:`JMVAEObjective` — JMVAE-kl (Suzuki et al. 2016, Eq. 5): the joint ELBO under
  q(z|x,y) − α Σ_i KL[q(z|x,y) ‖ q(z|x_i)].

Under weak supervision an example shows only some modalities: BiVCCA keeps the terms of its
observed modalities (reconstructing those); JMVAE, whose joint network needs every modality,
gives a partly observed example the unimodal ELBO of each modality it shows. Every objective
has ``bound(model, batch) -> [B]``, its own per-example bound at β = 1 on fully observed rows,
which validation uses to pick ``best.pt``.
"""

from __future__ import annotations

import numpy as np
import torch

from mvae_cli.model.model import primary_modality
from mvae_cli.model.poe import gaussian_kl
from mvae_cli.model.rows import as_device, host_mask, index
from mvae_cli.objectives.base import Objective, RowTerms, per_example_sum
from mvae_cli.objectives.elbo import subset_elbo


class VAEObjective(Objective):
    """The ELBO of the primary modality (the model's one modelled modality).

    Args:
        anneal_steps, beta, free_bits: see :class:`~mvae_cli.objectives.base.Objective`.
    """

    stacks = True

    def per_example(self, model, batch, beta, free_bits=0.0):
        mask = batch["mask"]
        mu, logvar = model.encode(batch, mask)
        j = model.names.index(model.encoded[0])
        example = np.flatnonzero(host_mask(batch, mask)[:, j])
        subsets = np.zeros((example.shape[0], mask.shape[1]), dtype=bool)
        subsets[:, j] = True
        elbo, log_lik, kl = subset_elbo(model, batch, mu, logvar, example, subsets, beta, free_bits=free_bits)
        x, rows = model.encoded[0], RowTerms(batch, example, mask.device)
        return per_example_sum(elbo, index(example, mask.device), mask.shape[0]), {
            "kl": rows.mean(kl), "elbo_full": rows.per_example(elbo.detach()),
            f"log_lik_{x}": rows.log_lik_terms(model, subsets, log_lik)[f"log_lik_{x}"]}


class CVAEObjective(Objective):
    """The conditional ELBO of x given y under q(z|x,y); an example lacking a modality adds nothing
    (the CVAE can use neither an unpaired x nor an unpaired y).

    Args:
        anneal_steps, beta, free_bits: see :class:`~mvae_cli.objectives.base.Objective`.
    """

    stacks = True

    def per_example(self, model, batch, beta, free_bits=0.0):
        mask = batch["mask"]
        mu, logvar = model.encode(batch, mask)
        shown = host_mask(batch, mask)
        example = np.flatnonzero(shown.all(axis=1))
        targets = np.zeros((example.shape[0], mask.shape[1]), dtype=bool)
        targets[:, model.names.index(model.x)] = True
        elbo, log_lik, kl = subset_elbo(model, batch, mu, logvar, example, shown[example], beta, targets=targets,
                                        free_bits=free_bits)
        rows = RowTerms(batch, example, mask.device)
        return per_example_sum(elbo, index(example, mask.device), mask.shape[0]), {
            "kl": rows.mean(kl), "elbo_full": rows.per_example(elbo.detach()),
            f"log_lik_{model.x}": rows.log_lik_terms(model, targets, log_lik)[f"log_lik_{model.x}"]}


class BiVCCAObjective(Objective):
    """μ·ELBO(q(z|x)) + (1 − μ)·ELBO(q(z|y)); with more than two modalities, 1 − μ is shared
    evenly by the others. Each ELBO reconstructs every modality the example shows.

    Args:
        mu: the weight μ of the primary modality's term, in [0, 1].
        anneal_steps, beta, free_bits: see :class:`~mvae_cli.objectives.base.Objective`.
    """

    stacks = True

    settings = ("mu",)

    def __init__(self, *, mu: float = 0.5, **common):
        super().__init__(**common)
        self.mu = mu

    def per_example(self, model, batch, beta, free_bits=0.0):
        mask = batch["mask"]
        M = mask.shape[1]
        mu, logvar = model.encode(batch, mask)
        shown = host_mask(batch, mask)
        example, modality = np.nonzero(shown)
        subsets = np.eye(M, dtype=bool)[modality]
        targets = shown[example]
        elbo, log_lik, kl = subset_elbo(model, batch, mu, logvar, example, subsets, beta, targets=targets,
                                        free_bits=free_bits)
        x = model.names.index(primary_modality(model.specs))
        weight = as_device(np.where(modality == x, self.mu, (1.0 - self.mu) / max(1, M - 1)), mask.device).to(elbo.dtype)
        rows = RowTerms(batch, example, mask.device)
        terms = {"kl": rows.mean(kl), "elbo_single": rows.per_example(elbo.detach()),
                 **rows.log_lik_terms(model, targets, log_lik)}
        return per_example_sum(weight * elbo, index(example, mask.device), mask.shape[0]), terms


class JMVAEObjective(Objective):
    """JMVAE-kl: ELBO(q(z|X), X) − α Σ_i KL[q(z|X) ‖ q(z|x_i)] for an example showing every
    modality X; the unimodal ELBO of each shown modality for the others. β weighs the KL to the
    prior only.

    Args:
        alpha: the weight α of the KL terms that pull the unimodal networks to the joint one.
        anneal_steps, beta, free_bits: see :class:`~mvae_cli.objectives.base.Objective`.
    """

    settings = ("alpha",)

    def __init__(self, *, alpha: float = 0.1, **common):
        super().__init__(**common)
        self.alpha = alpha

    def per_example(self, model, batch, beta, free_bits=0.0):
        mask = batch["mask"]
        B, M = mask.shape
        mu, logvar = model.encode(batch, mask)  # [B, M + 1, D], the last the joint network's
        shown = host_mask(batch, mask)
        full = shown.all(axis=1)
        joint_ex = np.flatnonzero(full)
        single_ex, single_mod = np.nonzero(shown & ~full[:, None])
        example = np.concatenate([joint_ex, single_ex])
        slots = np.concatenate([np.full(joint_ex.shape[0], M), single_mod])
        given = np.eye(M + 1, dtype=bool)[slots]  # the expert each row's posterior is
        targets = np.concatenate([shown[joint_ex], np.eye(M, dtype=bool)[single_mod]])
        elbo, log_lik, kl = subset_elbo(model, batch, mu, logvar, example, given, beta, targets=targets,
                                        free_bits=free_bits)
        values = per_example_sum(elbo, index(example, mask.device), B)
        rows = RowTerms(batch, example, mask.device)
        kl_units = mu.new_zeros(rows.n if rows.stacked else ())  # without a fully shown example
        if joint_ex.size:
            joint_rows = RowTerms(batch, joint_ex, mask.device)
            joint_ex = index(joint_ex, mask.device)
            j_mu, j_lv = mu[joint_ex, M].float(), logvar[joint_ex, M].float()
            kls = torch.stack([gaussian_kl(j_mu, j_lv, mu[joint_ex, i].float(), logvar[joint_ex, i].float())
                               for i in range(M)], dim=1)  # [J, M]
            values = values.index_add(0, joint_ex, -self.alpha * kls.sum(dim=1))
            kl_units = joint_rows.mean(kls.sum(dim=1))
        n_joint = int(full.sum())
        by_kind = rows.per_example_by(elbo.detach(), (np.arange(example.size) >= n_joint).astype(np.int64), 2)
        terms = {"kl": rows.mean(kl), "kl_unimodal": kl_units, "elbo_full": by_kind[..., 0],
                 "elbo_single": by_kind[..., 1], **rows.log_lik_terms(model, targets, log_lik)}
        return values, terms
