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

import numpy as np
import torch

from mvae_cli.model.poe import gaussian_kl_to_prior
from mvae_cli.model.rows import host_mask, index
from mvae_cli.objectives.base import Objective, per_example_mean
from mvae_cli.objectives.elbo import decode_log_lik, gather_rows

ESTIMATORS = ("iwae", "dreg")


def _wide(t: torch.Tensor) -> torch.Tensor:
    """Half-precision encoder outputs (autocast) in fp32; fp32 and fp64 as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class MMVAEObjective(Objective):
    """The MMVAE's stratified IWAE bound, K particles per observed expert.

    Args:
        k_particles: K, particles per expert (K = 1: the mixture ELBO, estimated by strata).
        estimator: ``iwae`` (the bound's own gradient) or ``dreg`` (doubly reparameterised: the
            encoder's gradient reaches it only through z, each particle's weighted by w̃²; the
            decoder's is the IWAE gradient). DReG's expected gradient equals IWAE's exactly when
            the proposal is the one expert a particle came from, i.e. an example showing one
            modality, or K = 1; with K > 1 over a mixture it is the MMVAE code's estimator
            (iffsid/mmvae, ``m_dreg_looser``), whose log q is the mixture's.
        anneal_steps, beta: see :class:`~mvae_cli.objectives.base.Objective` (no free bits: the
            posterior is a mixture).
    """

    settings = ("k_particles", "estimator")
    gaussian_kl = False

    def __init__(self, *, k_particles: int = 1, estimator: str = "iwae", **common):
        super().__init__(**common)
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r} (known: {', '.join(ESTIMATORS)})")
        self.k_particles, self.estimator = int(k_particles), estimator

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
        shown = host_mask(batch, mask)
        host_example, host_expert = np.nonzero(shown)
        example, expert = index(host_example, mask.device), index(host_expert, mask.device)
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
        weighted, log_lik = decode_log_lik(model, batch, z.reshape(R * K, D), flat, np.repeat(shown[host_example], K, axis=0))
        return weighted.view(R, K) + beta * log_ratio, z, example, log_lik

    def bounds(self, model, batch, beta: float, eps: torch.Tensor | None = None):
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
        bound = per_example_mean(bound_rows, example, B)
        terms = {"iwae": bound.detach().mean(),
                 **self.log_lik_terms(model, gather_rows(mask, example.repeat_interleave(K)), log_lik)}
        return bound, per_example_mean(surrogate_rows, example, B), terms

    def per_example(self, model, batch, beta, free_bits=0.0):
        """The stratified IWAE bound per example ``[B]`` and its terms."""
        bound, _, terms = self.bounds(model, batch, beta)
        return bound, terms

    def loss(self, model, batch, beta):
        _, surrogate, terms = self.bounds(model, batch, beta)
        return -surrogate.mean(), terms


class OneSampleMixtureObjective(Objective):
    """What MoPoE's and mmJSD's bounds share: one z per example from a component of the mixture
    q(z|X); their loss is minus the mean of ``per_example``, and they refuse free bits (a mixture
    has no KL per unit).

    Args:
        anneal_steps, beta: see :class:`~mvae_cli.objectives.base.Objective`.
    """

    gaussian_kl = False

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

    def loss(self, model, batch, beta):
        elbo, terms = self.per_example(model, batch, beta)
        return -elbo.mean(), {"elbo_full": elbo.detach().mean(), **terms}


class MoPoEObjective(OneSampleMixtureObjective):
    """The MoPoE-VAE ELBO: E_{q(z|X)}[Σ_{i∈X} λ_i log p(x_i|z)] − β Σ_S π_S KL[q(z|X_S) ‖ p(z)].

    q(z|X) = Σ_S π_S q(z|X_S) over the non-empty subsets S of the observed X (π uniform), each
    q(z|X_S) the product of experts with the prior (``model.posterior``). The reconstruction is
    estimated with one z per example from a component drawn by π (the many subsets of many
    modalities are sampled, not all decoded); the KL sum is analytic.

    Args:
        anneal_steps, beta: see :class:`OneSampleMixtureObjective`.
    """

    def per_example(self, model, batch, beta: float, free_bits: float = 0.0, eps: torch.Tensor | None = None,
                    component: torch.Tensor | None = None):
        """``(elbo [B], terms)``; ``eps [B, D]`` and ``component long [B]`` drawn here when None."""
        mask = batch["mask"]
        mu, logvar = model.encode(batch, mask)
        q = model.posterior(None, mask, experts=(_wide(mu), _wide(logvar)))
        comp_mu, comp_logvar = q.components.mu, q.components.logvar  # [B, C, D]
        weights = torch.softmax(q.log_weights, dim=-1)  # [B, C], 0 off the observed subsets
        z = self.one_sample(q, component, eps)
        rows = torch.arange(mask.shape[0], device=mask.device)
        recon, log_lik = decode_log_lik(model, batch, z, rows, host_mask(batch, mask))
        kls = gaussian_kl_to_prior(comp_mu, comp_logvar)  # [B, C]
        kl = torch.where(weights > 0, weights * kls, torch.zeros_like(kls)).sum(dim=1)
        terms = {"kl": kl.detach().mean(), **self.log_lik_terms(model, mask, log_lik)}
        return recon - beta * kl, terms
