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

import torch

from mvae_cli.model.poe import gaussian_kl
from mvae_cli.objectives.elbo import subset_elbo
from mvae_cli.objectives.regularize import beta_at


def _per_example(values: torch.Tensor, example: torch.Tensor, n: int) -> torch.Tensor:
    """Σ of ``values [R]`` per example: ``[n]``."""
    return values.new_zeros(n).index_add(0, example, values)


class _PerExampleObjective:
    """What the comparison objectives share: β annealed towards its target, the training loss
    (minus the mean of ``per_example``) and the validation bound (``per_example`` at β = 1).

    Args:
        anneal_steps: optimiser steps over which β rises linearly from 0 to ``beta``.
        beta, free_bits: the β target and the KL floor per unit (:mod:`~mvae_cli.objectives.regularize`).
    """

    def __init__(self, anneal_steps: int = 0, beta: float = 1.0, free_bits: float = 0.0, **_):
        self.anneal_steps, self.beta_target, self.free_bits = anneal_steps, beta, free_bits

    def per_example(self, model, batch, beta, free_bits=0.0) -> tuple[torch.Tensor, dict]:
        """The objective of each example ``[B]`` and its terms for metrics."""
        raise NotImplementedError

    def bound(self, model, batch) -> torch.Tensor:
        return self.per_example(model, batch, 1.0)[0]

    def __call__(self, model, batch, step):
        beta = beta_at(step, self.anneal_steps, self.beta_target)
        values, terms = self.per_example(model, batch, beta, self.free_bits)
        return -values.mean(), {"beta": beta, **terms}


class VAEObjective(_PerExampleObjective):
    """The ELBO of the primary modality (the model's one modelled modality).

    Args:
        anneal_steps: optimiser steps over which β rises linearly from 0 to ``beta``.
        beta, free_bits: the β target and the KL floor per unit (:mod:`~mvae_cli.objectives.regularize`).
    """

    def _rows(self, model, mask):
        j = model.names.index(model.encoded[0])
        example = mask[:, j].nonzero(as_tuple=True)[0]
        subsets = torch.zeros(example.shape[0], mask.shape[1], dtype=torch.bool, device=mask.device)
        subsets[:, j] = True
        return example, subsets

    def per_example(self, model, batch, beta, free_bits=0.0):
        mask = batch["mask"]
        mu, logvar = model.encode(batch, mask)
        example, subsets = self._rows(model, mask)
        elbo, log_lik, kl = subset_elbo(model, batch, mu, logvar, example, subsets, beta, free_bits=free_bits)
        return _per_example(elbo, example, mask.shape[0]), {"kl": kl.mean(), "elbo_full": elbo.sum() / mask.shape[0],
                                                            f"log_lik_{model.encoded[0]}": log_lik.sum(1).mean()}


class CVAEObjective(_PerExampleObjective):
    """The conditional ELBO of x given y under q(z|x,y); an example lacking a modality adds nothing
    (the CVAE can use neither an unpaired x nor an unpaired y).

    Args:
        anneal_steps: optimiser steps over which β rises linearly from 0 to ``beta``.
        beta, free_bits: the β target and the KL floor per unit (:mod:`~mvae_cli.objectives.regularize`).
    """

    def per_example(self, model, batch, beta, free_bits=0.0):
        mask = batch["mask"]
        mu, logvar = model.encode(batch, mask)
        example = mask.all(dim=1).nonzero(as_tuple=True)[0]
        targets = torch.zeros(example.shape[0], mask.shape[1], dtype=torch.bool, device=mask.device)
        targets[:, model.names.index(model.x)] = True
        elbo, log_lik, kl = subset_elbo(model, batch, mu, logvar, example, mask[example], beta, targets=targets, free_bits=free_bits)
        return _per_example(elbo, example, mask.shape[0]), {"kl": kl.mean(), "elbo_full": elbo.sum() / mask.shape[0],
                                                            f"log_lik_{model.x}": log_lik.sum(1).mean()}


class BiVCCAObjective(_PerExampleObjective):
    """μ·ELBO(q(z|x)) + (1 − μ)·ELBO(q(z|y)); with more than two modalities, 1 − μ is shared
    evenly by the others. Each ELBO reconstructs every modality the example shows.

    Args:
        mu: the weight μ of the primary modality's term, in [0, 1].
        anneal_steps: optimiser steps over which β rises linearly from 0 to ``beta``.
        beta, free_bits: the β target and the KL floor per unit (:mod:`~mvae_cli.objectives.regularize`).
    """

    def __init__(self, mu: float = 0.5, **settings):
        super().__init__(**settings)
        self.mu = mu

    def per_example(self, model, batch, beta, free_bits=0.0):
        from mvae_cli.model.registry import primary_modality

        mask = batch["mask"]
        M = mask.shape[1]
        mu, logvar = model.encode(batch, mask)
        example, modality = mask.nonzero(as_tuple=True)
        subsets = torch.nn.functional.one_hot(modality, M).bool()
        elbo, log_lik, kl = subset_elbo(model, batch, mu, logvar, example, subsets, beta, targets=mask[example], free_bits=free_bits)
        x = model.names.index(primary_modality(model.specs))
        weight = torch.where(modality == x, self.mu, (1.0 - self.mu) / max(1, M - 1)).to(elbo.dtype)
        terms = {"kl": kl.mean(), "elbo_single": elbo.sum() / mask.shape[0]}
        for j, name in enumerate(model.names):
            rows = mask[example, j]
            terms[f"log_lik_{name}"] = log_lik[rows, j].sum() / rows.sum().clamp(min=1)
        return _per_example(weight * elbo, example, mask.shape[0]), terms


class JMVAEObjective(_PerExampleObjective):
    """JMVAE-kl: ELBO(q(z|X), X) − α Σ_i KL[q(z|X) ‖ q(z|x_i)] for an example showing every
    modality X; the unimodal ELBO of each shown modality for the others. β weighs the KL to the
    prior only.

    Args:
        alpha: the weight α of the KL terms that pull the unimodal networks to the joint one.
        anneal_steps: optimiser steps over which β rises linearly from 0 to ``beta``.
        beta, free_bits: the β target and the KL floor per unit (:mod:`~mvae_cli.objectives.regularize`).
    """

    def __init__(self, alpha: float = 0.1, **settings):
        super().__init__(**settings)
        self.alpha = alpha

    def per_example(self, model, batch, beta, free_bits=0.0):
        mask = batch["mask"]
        B, M = mask.shape
        mu, logvar = model.encode(batch, mask)  # [B, M + 1, D], the last the joint network's
        full = mask.all(dim=1)
        joint_ex = full.nonzero(as_tuple=True)[0]
        single_ex, single_mod = (mask & ~full[:, None]).nonzero(as_tuple=True)
        example = torch.cat([joint_ex, single_ex])
        slots = torch.cat([torch.full_like(joint_ex, M), single_mod])
        given = torch.nn.functional.one_hot(slots, M + 1).bool()  # the expert each row's posterior is
        targets = torch.cat([mask[joint_ex], torch.nn.functional.one_hot(single_mod, M).bool()])
        elbo, log_lik, kl = subset_elbo(model, batch, mu, logvar, example, given, beta, targets=targets, free_bits=free_bits)
        values = _per_example(elbo, example, B)
        kl_units = mu.new_zeros(())
        if joint_ex.numel():
            j_mu, j_lv = mu[joint_ex, M].float(), logvar[joint_ex, M].float()
            kls = torch.stack([gaussian_kl(j_mu, j_lv, mu[joint_ex, i].float(), logvar[joint_ex, i].float())
                               for i in range(M)], dim=1)  # [J, M]
            values = values.index_add(0, joint_ex, -self.alpha * kls.sum(dim=1))
            kl_units = kls.sum(dim=1).mean()
        terms = {"kl": kl.mean(), "kl_unimodal": kl_units, "elbo_full": elbo[:joint_ex.numel()].sum() / B,
                 "elbo_single": elbo[joint_ex.numel():].sum() / B}
        for j, name in enumerate(model.names):
            rows = targets[:, j]
            terms[f"log_lik_{name}"] = log_lik[rows, j].sum() / rows.sum().clamp(min=1)
        return values, terms
