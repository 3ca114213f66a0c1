"""The one Gaussian product of experts (MVAE paper, §2.3, Eq. 3).

The fusions of :mod:`~mvae_cli.model.fusion` that multiply experts (the PoE, the mixture
of products) call :func:`product_of_experts`; everything else gets its posterior from
``model.posterior``.
"""

from __future__ import annotations

import math

import torch


def product_of_experts(
    mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None,
    prior_weight: float | torch.Tensor = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse diagonal Gaussian experts with the prior expert N(0, I).

    q(z | X) ∝ p(z) Π_{i ∈ X} q(z | x_i): precisions add, and the mean is the
    precision-weighted mean. Absent experts are dropped by zeroing their precision
    (never by a huge log-variance), so a row with no expert gives the prior.
    Masked-out entries must be finite (the model fills never-computed rows with zeros).

    With ``weights`` it is the weighted product p(z)^{π_0} Π_i q(z | x_i)^{π_i}, normalised
    (for Gaussians: precisions π_i λ_i add, prior's π_0; the mean is their weighted mean) —
    with Σ π = 1, the geometric mean of the experts that is mmJSD's dynamic prior.

    Args:
        mu: ``[..., M, D]`` expert means.
        logvar: ``[..., M, D]`` expert log-variances.
        mask: ``bool[..., M]``, which experts take part.
        weights: ``[..., M]`` exponents π_i (default 1).
        prior_weight: π_0, the prior expert's exponent, a number or ``[...]``.

    Returns:
        ``(mu, logvar)``, each ``[..., D]``.
    """
    shown = mask.to(logvar.dtype) if weights is None else torch.where(mask, weights.to(logvar.dtype), 0.0)
    precision = torch.exp(-logvar) * shown.unsqueeze(-1)
    if torch.is_tensor(prior_weight):
        prior_weight = prior_weight.to(logvar.dtype).unsqueeze(-1)
    total = prior_weight + precision.sum(dim=-2)  # the prior expert contributes precision π_0, mean 0
    return (mu * precision).sum(dim=-2) / total, -torch.log(total)


def gaussian_kl_per_unit(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL[N(mu_u, exp(logvar_u)) || N(0, 1)] of each unit: ``[..., D]``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL[N(mu, diag exp(logvar)) || N(0, I)], summed over the last dimension: ``[...]``."""
    return gaussian_kl_per_unit(mu, logvar).sum(dim=-1)


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)), summed over the last dimension: ``[...]``."""
    return -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(dim=-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension: ``[...]``."""
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(dim=-1)


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL[N(mu_q, diag exp(logvar_q)) || N(mu_p, diag exp(logvar_p))], summed over the last dimension: ``[...]``."""
    return 0.5 * ((logvar_q - logvar_p).exp() + (mu_q - mu_p).pow(2) * torch.exp(-logvar_p) - 1.0
                  + logvar_p - logvar_q).sum(dim=-1)
