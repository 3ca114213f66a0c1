"""Objectives of the mixture-posterior models, over ``model.posterior`` and the shared networks.

- :class:`MMVAEObjective` — MMVAE (Shi et al. 2019): the stratified IWAE bound of seed 001,

      L_IWAE^MoE(X) = (1/|X|) Σ_{m∈X} E_{z_m^{1:K} ~ q(z|x_m)} [log (1/K) Σ_k w(z_m^k)],
      log w(z) = Σ_{i∈X} λ_i log p(x_i|z) + β (log p(z) − log q(z|X)),

  q(z|X) the mixture of the observed experts; trained with the IWAE gradient or with DReG
  (doubly reparameterised gradients, Tucker et al. 2019), ``objective.estimator``.
- :class:`MoPoEObjective` — MoPoE-VAE (Sutter et al. 2021): the ELBO under the mixture of the
  products of experts of every non-empty subset of the observed modalities, with the KL of the
  mixture as the paper writes it, Σ_S π_S KL[q(z|X_S) ‖ p(z)] (an upper bound of the mixture's
  KL, so the objective stays a lower bound), and one z per example from a component drawn by π.

Every example trains on the modalities it shows (masked data): mixtures run over those only.
"""

from __future__ import annotations

import math

import torch

from mvae_cli.model.poe import gaussian_kl_to_prior
from mvae_cli.errors import UserError
from mvae_cli.objectives.elbo import gather_rows
from mvae_cli.objectives.regularize import beta_at

ESTIMATORS = ("iwae", "dreg")


def targets_log_lik(model, batch: dict[str, torch.Tensor], z: torch.Tensor, example: torch.Tensor,
                    targets: torch.Tensor) -> torch.Tensor:
    """Σ_{i ∈ targets} λ_i log p(x_i | z) per row, each decoder run once on the rows that use it.

    Args:
        z: ``[R, D]``.
        example: ``long [R]``, the example each row reconstructs.
        targets: ``bool [R, M]``.

    Returns:
        ``(weighted [R], per-modality unweighted [R, M])``, zero where a modality is not a target.
    """
    columns = []
    for j, name in enumerate(model.names):
        rows = targets[:, j].nonzero(as_tuple=True)[0]
        if rows.numel() == z.shape[0]:
            ll = model.log_prob(name, model.decode(name, z).float(), batch[name][example])
        elif rows.numel() == 0:
            ll = z.new_zeros(z.shape[0])
        else:
            ll_rows = model.log_prob(name, model.decode(name, z[rows]).float(), batch[name][example[rows]])
            ll = ll_rows.new_zeros(z.shape[0]).index_copy(0, rows, ll_rows)
        columns.append(ll)
    log_lik = torch.stack(columns, dim=1)
    weights = torch.tensor(model.weights, device=log_lik.device, dtype=log_lik.dtype)
    return (log_lik * weights).sum(dim=1), log_lik


def _wide(t: torch.Tensor) -> torch.Tensor:
    """Half-precision encoder outputs (autocast) in fp32; fp32 and fp64 as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _per_example_mean(values: torch.Tensor, example: torch.Tensor, n: int) -> torch.Tensor:
    """Mean of ``values [R]`` over each example's rows: ``[n]`` (0 for an example with none)."""
    total = values.new_zeros(n).index_add(0, example, values)
    count = values.new_zeros(n).index_add(0, example, torch.ones_like(values))
    return total / count.clamp(min=1)


class MMVAEObjective:
    """The MMVAE's stratified IWAE bound, K particles per observed expert.

    Args:
        k_particles: K, particles per expert (K = 1: the mixture ELBO, estimated by strata).
        estimator: ``iwae`` (the bound's own gradient) or ``dreg`` (doubly reparameterised: the
            encoder's gradient reaches it only through z, each particle's weighted by w̃²; the
            decoder's is the IWAE gradient). DReG's expected gradient equals IWAE's exactly when
            the proposal is the one expert a particle came from, i.e. an example showing one
            modality, or K = 1; with K > 1 over a mixture it is the MMVAE code's estimator
            (iffsid/mmvae, ``m_dreg_looser``), whose log q is the mixture's.
        anneal_steps: optimiser steps over which β rises linearly from 0 to 1.
    """

    def __init__(self, k_particles: int = 1, estimator: str = "iwae", anneal_steps: int = 0, beta: float = 1.0, free_bits: float = 0.0, **_):
        if free_bits > 0:
            raise UserError("free_bits needs a Gaussian posterior (a KL per latent unit); "
                            "this model's posterior is a mixture: use beta below 1 instead")
        self.beta_target = beta
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r} (known: {', '.join(ESTIMATORS)})")
        self.k_particles, self.estimator, self.anneal_steps = int(k_particles), estimator, anneal_steps

    def log_weights(self, model, batch, beta: float, eps: torch.Tensor | None = None, dreg: bool = False):
        """log w of K particles per (example, observed expert) row.

        Args:
            eps: ``[R, K, D]`` standard-normal noise, rows in the order of ``mask.nonzero()``;
                drawn here when None.
            dreg: detach the mixture's parameters in log q(z|X) (z keeps its path to the encoders).

        Returns:
            ``(log_w [R, K], z [R, K, D], example long [R], log_lik [R·K, M])``.
        """
        mask = batch["mask"]
        mu, logvar = model.encode(batch, mask)
        mu, logvar = _wide(mu), _wide(logvar)
        example, expert = mask.nonzero(as_tuple=True)
        R, K, D = example.shape[0], self.k_particles, mu.shape[-1]
        if eps is None:
            eps = torch.randn(R, K, D, device=mu.device, dtype=mu.dtype)
        z = model.family(mu[example, expert], logvar[example, expert]).rsample(eps)  # [R, K, D]
        given = gather_rows(mask, example)
        row_mu, row_logvar = gather_rows(mu, example), gather_rows(logvar, example)
        if dreg:
            row_mu, row_logvar = row_mu.detach(), row_logvar.detach()
        q = model.posterior(None, given, experts=(row_mu, row_logvar))
        log_ratio = model.prior_log_prob(z) - q.log_prob(z)  # [R, K]
        flat = example.repeat_interleave(K)
        weighted, log_lik = targets_log_lik(model, batch, z.reshape(R * K, D), flat, gather_rows(mask, flat))
        return weighted.view(R, K) + beta * log_ratio, z, example, log_lik

    def per_example(self, model, batch, beta: float, eps: torch.Tensor | None = None):
        """``(bound [B], surrogate [B], terms)``: the bound per example and what to maximise for
        the chosen estimator's gradient (the bound itself for IWAE)."""
        mask = batch["mask"]
        dreg = self.estimator == "dreg" and torch.is_grad_enabled()
        log_w, z, example, log_lik = self.log_weights(model, batch, beta, eps, dreg)
        B, K = mask.shape[0], log_w.shape[1]
        bound_rows = torch.logsumexp(log_w, dim=1) - math.log(K)
        surrogate_rows = bound_rows
        if dreg:
            with torch.no_grad():
                w_tilde = torch.softmax(log_w, dim=1)  # [R, K]
            if z.requires_grad:  # the path through z carries w̃² (w̃ here, w̃ again from the surrogate)
                z.register_hook(lambda grad: grad * w_tilde.unsqueeze(-1))
            surrogate_rows = (w_tilde * log_w).sum(dim=1)
        bound = _per_example_mean(bound_rows, example, B)
        terms = {"iwae": bound.detach().mean()}
        flat_mask = gather_rows(mask, example.repeat_interleave(K))
        for j, name in enumerate(model.names):
            rows = flat_mask[:, j]
            terms[f"log_lik_{name}"] = log_lik[rows, j].detach().sum() / rows.sum().clamp(min=1)
        return bound, _per_example_mean(surrogate_rows, example, B), terms

    def bound(self, model, batch) -> torch.Tensor:
        """The stratified IWAE bound at β = 1: ``[B]`` (validation)."""
        return self.per_example(model, batch, 1.0)[0]

    def __call__(self, model, batch, step):
        beta = beta_at(step, self.anneal_steps, self.beta_target)
        _, surrogate, terms = self.per_example(model, batch, beta)
        return -surrogate.mean(), {"beta": beta, **terms}


class OneSampleMixtureObjective:
    """What MoPoE's and mmJSD's bounds share: one z per example from a component of the mixture
    q(z|X), β annealed towards its target, the loss (minus the mean of ``per_example``) and the
    validation bound (``per_example`` at β = 1). Free bits need a KL per unit of a Gaussian
    posterior, so these objectives refuse them.

    Args:
        anneal_steps: optimiser steps over which β rises linearly from 0 to ``beta``.
        beta: the β target.
    """

    def __init__(self, anneal_steps: int = 0, beta: float = 1.0, free_bits: float = 0.0, **_):
        if free_bits > 0:
            raise UserError("free_bits needs a Gaussian posterior (a KL per latent unit); "
                            "this model's posterior is a mixture: use beta below 1 instead")
        self.beta_target = beta
        self.anneal_steps = anneal_steps

    @staticmethod
    def one_sample(q, component: torch.Tensor | None, eps: torch.Tensor | None) -> torch.Tensor:
        """One z ``[B, D]`` per example from component ``component long [B]`` of the mixture ``q``
        (drawn by its weights when None), with noise ``eps [B, D]`` (drawn when None)."""
        mu, logvar = q.components.mu, q.components.logvar  # [B, C, D]
        if component is None:
            component = torch.multinomial(torch.softmax(q.log_weights, dim=-1), 1).squeeze(1)
        if eps is None:
            eps = torch.randn(mu.shape[0], mu.shape[-1], device=mu.device, dtype=mu.dtype)
        pick = component[:, None, None].expand(-1, 1, mu.shape[-1])
        return mu.gather(1, pick).squeeze(1) + torch.exp(0.5 * logvar.gather(1, pick).squeeze(1)) * eps

    @staticmethod
    def log_lik_terms(model, mask: torch.Tensor, log_lik: torch.Tensor) -> dict:
        """The mean log-likelihood of each modality over the rows that show it (metrics)."""
        return {f"log_lik_{name}": log_lik[mask[:, j], j].detach().sum() / mask[:, j].sum().clamp(min=1)
                for j, name in enumerate(model.names)}

    def per_example(self, model, batch, beta: float) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def bound(self, model, batch) -> torch.Tensor:
        return self.per_example(model, batch, 1.0)[0]

    def __call__(self, model, batch, step):
        beta = beta_at(step, self.anneal_steps, self.beta_target)
        elbo, terms = self.per_example(model, batch, beta)
        return -elbo.mean(), {"beta": beta, "elbo_full": elbo.detach().mean(), **terms}


class MoPoEObjective(OneSampleMixtureObjective):
    """The MoPoE-VAE ELBO: E_{q(z|X)}[Σ_{i∈X} λ_i log p(x_i|z)] − β Σ_S π_S KL[q(z|X_S) ‖ p(z)].

    q(z|X) = Σ_S π_S q(z|X_S) over the non-empty subsets S of the observed X (π uniform), each
    q(z|X_S) the product of experts with the prior (``model.posterior``). The reconstruction is
    estimated with one z per example from a component drawn by π (the many subsets of many
    modalities are sampled, not all decoded); the KL sum is analytic.

    Args:
        anneal_steps: optimiser steps over which β rises linearly from 0 to 1.
    """

    def per_example(self, model, batch, beta: float, eps: torch.Tensor | None = None,
                    component: torch.Tensor | None = None):
        """``(elbo [B], terms)``; ``eps [B, D]`` and ``component long [B]`` drawn here when None."""
        mask = batch["mask"]
        mu, logvar = model.encode(batch, mask)
        q = model.posterior(None, mask, experts=(_wide(mu), _wide(logvar)))
        comp_mu, comp_logvar = q.components.mu, q.components.logvar  # [B, C, D]
        weights = torch.softmax(q.log_weights, dim=-1)  # [B, C], 0 off the observed subsets
        z = self.one_sample(q, component, eps)
        rows = torch.arange(mask.shape[0], device=mask.device)
        recon, log_lik = targets_log_lik(model, batch, z, rows, mask)
        kls = gaussian_kl_to_prior(comp_mu, comp_logvar)  # [B, C]
        kl = torch.where(weights > 0, weights * kls, torch.zeros_like(kls)).sum(dim=1)
        terms = {"kl": kl.detach().mean(), **self.log_lik_terms(model, mask, log_lik)}
        return recon - beta * kl, terms
