"""The mmJSD objective (Sutter et al. 2020, seed 002) with modality-specific latents:

    Σ_{m∈X} λ_m E_{q(c|X) q(s_m|x_m)}[log p(x_m | c, s_m)]
      − β Σ_{m∈X} KL[q(s_m|x_m) ‖ p(s_m)] − β JS_π({q(c|x_j)}_{j∈X}, p(c)),

    JS_π = Σ_{j∈X} π KL[q(c|x_j) ‖ f] + π KL[p(c) ‖ f],   π = 1/(|X| + 1),

f the dynamic prior (:func:`~mvae_cli.model.fusion.dynamic_prior`, the geometric mean of the
experts and the prior), q(c|X) the mixture of the observed experts. The reconstruction uses
one z per example from a component drawn by the mixture's weights; every divergence is
analytic. X is the modalities the example shows (masked data).
"""

from __future__ import annotations

import torch

from mvae_cli.model.fusion import dynamic_prior
from mvae_cli.model.poe import gaussian_kl, gaussian_kl_to_prior
from mvae_cli.model.rows import host_mask
from mvae_cli.objectives.elbo import decode_log_lik
from mvae_cli.objectives.mixture import OneSampleMixtureObjective, _wide


def js_divergence(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """JS_π({q_j}_{j∈mask}, p) with the dynamic prior f and π = 1/(N + 1): ``[B]``.

    Args:
        mu, logvar: ``[B, M, D]`` experts over the shared block.
        mask: ``bool [B, M]``.
    """
    f = dynamic_prior(mu, logvar, mask)
    pi = 1.0 / (1.0 + mask.sum(dim=-1).to(mu.dtype))
    to_f = gaussian_kl(mu, logvar, f.mu.unsqueeze(-2), f.logvar.unsqueeze(-2))  # [B, M]
    experts = torch.where(mask, to_f, torch.zeros_like(to_f)).sum(dim=-1)
    prior = gaussian_kl(torch.zeros_like(f.mu), torch.zeros_like(f.logvar), f.mu, f.logvar)
    return pi * (experts + prior)


class MMJSDObjective(OneSampleMixtureObjective):
    """The mmJSD bound above, β annealed per step.

    Args:
        anneal_steps, beta: see :class:`~mvae_cli.objectives.mixture.OneSampleMixtureObjective`.
    """

    def per_example(self, model, batch, beta: float, free_bits: float = 0.0, eps: torch.Tensor | None = None,
                    component: torch.Tensor | None = None):
        """``(bound [B], terms)``; ``eps [B, D]`` and ``component long [B]`` drawn here when None."""
        mask = batch["mask"]
        mu, logvar = model.encode(batch, mask)
        mu, logvar = _wide(mu), _wide(logvar)
        q = model.posterior(None, mask, experts=(mu, logvar))  # mixture over the whole z
        z = self.one_sample(q, component, eps)
        rows = torch.arange(mask.shape[0], device=mask.device)
        recon, log_lik = decode_log_lik(model, batch, z, rows, host_mask(batch, mask))
        (c_mu, c_logvar), (s_mu, s_logvar) = model.split(mu, logvar)
        private = gaussian_kl_to_prior(s_mu, s_logvar)  # [B, M]
        private = torch.where(mask, private, torch.zeros_like(private)).sum(dim=-1)
        js = js_divergence(c_mu, c_logvar, mask)
        terms = {"js": js.detach().mean(), "kl_private": private.detach().mean(),
                 **self.log_lik_terms(model, mask, log_lik)}
        return recon - beta * (private + js), terms
