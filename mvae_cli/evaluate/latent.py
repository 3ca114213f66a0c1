"""How much the latent is used: active units, KL to the prior, and the mutual information I(x; z).

Pure functions of a posterior's parameters over a set of examples, so any model's q(z | subset)
(through ``model.posterior``) can be diagnosed the same way. A collapsed posterior, one that
ignores its input, has no active unit, a KL near 0 and I(x; z) near 0
(:mod:`~mvae_cli.evaluate.collapse` turns these into warnings).
"""

from __future__ import annotations

import math

import torch

from mvae_cli.model.posterior import DiagonalGaussian

# Burda, Grosse & Salakhutdinov (2016), §5.2: a unit u is active when Cov_x(E_q[z_u | x]) > 0.01.
ACTIVE_THRESHOLD = 0.01


def unit_activity(mu: torch.Tensor) -> torch.Tensor:
    """Cov_x(E_q[z_u | x]) per latent unit: the variance over examples of the posterior means.

    Args:
        mu: ``[N, D]`` posterior means of N examples (N ≥ 2).

    Returns:
        ``[D]`` the sample variance (n − 1) of each column.
    """
    if mu.shape[0] < 2:
        raise ValueError("unit activity needs at least two examples")
    return mu.detach().double().var(dim=0, correction=1)


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    """The number of units whose activity (:func:`unit_activity`) exceeds ``threshold`` (Burda et al. 2016).

    Args:
        mu: ``[N, D]`` posterior means.
        threshold: 0.01 in the paper.
    """
    return int((unit_activity(mu) > threshold).sum())


def kl_summary(mu: torch.Tensor, logvar: torch.Tensor, family=DiagonalGaussian) -> dict[str, float | list[float]]:
    """The KL of a posterior to the prior over a set of examples.

    Args:
        mu, logvar: ``[N, D]``.
        family: the posterior family (:mod:`~mvae_cli.model.posterior`), whose prior the KL is to.

    Returns:
        ``{"kl": mean over examples of the KL summed over units, "kl_per_unit": [D] means over
        examples}`` in nats.
    """
    per_unit = family.kl_per_unit(mu.detach().double(), logvar.detach().double()).mean(dim=0)
    return {"kl": float(per_unit.sum()), "kl_per_unit": per_unit.tolist()}


def mutual_information(mu: torch.Tensor, logvar: torch.Tensor, seed: int = 0, chunk: int = 512,
                       family=DiagonalGaussian) -> float:
    """I(x; z) under q(x, z) = p_data(x) q(z | x), by the aggregate-posterior Monte Carlo estimate.

    I(x; z) = E_x E_q(z|x)[log q(z | x) − log q(z)] with q(z) = (1/N) Σ_j q(z | x_j), the
    aggregate posterior over the N examples given (Hoffman & Johnson 2016; the estimator of He
    et al. 2019, "Lagging inference networks"), with one z_i ~ q(z | x_i) drawn per example:
    the mean over i of log q(z_i | x_i) − log (1/N) Σ_j q(z_i | x_j). Both terms are taken at
    the same z_i (rather than the first as the analytic negative entropy), so their noise
    cancels: an encoder that ignores its input gives exactly 0. The estimate is consistent as N
    grows and never exceeds log N (it is biased low when the true value nears that).

    Args:
        mu, logvar: ``[N, D]`` posterior parameters of N examples.
        seed: seeds the one z drawn per example.
        chunk: rows of the ``[chunk, N]`` matrix of log densities computed at once.
        family: the posterior family (:mod:`~mvae_cli.model.posterior`); a non-Gaussian one
            takes its densities unit by unit (``[chunk, N, D]`` at a time).

    Returns:
        The estimate in nats.
    """
    mu, logvar = mu.detach().double(), logvar.detach().double()
    n = mu.shape[0]
    generator = torch.Generator(device=mu.device).manual_seed(seed)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    if family is not DiagonalGaussian:
        z = family(mu, logvar).rsample(eps.unsqueeze(1)).squeeze(1)
        log_q_own = family.log_density(z, mu, logvar)
        step = max(1, chunk // max(1, mu.shape[1]))
        log_qz = [torch.logsumexp(family.log_density(z[s:s + step, None], mu[None], logvar[None]), dim=1) - math.log(n)
                  for s in range(0, n, step)]
        return float((log_q_own - torch.cat(log_qz)).mean())
    z = mu + eps * (0.5 * logvar).exp()
    log_q_own = -0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi)).sum(dim=1)  # log q(z_i | x_i)
    precision = (-logvar).exp()
    # Σ_d (z_id − μ_jd)² / σ²_jd expanded into matrix products: [chunk, N] at a time, no [chunk, N, D].
    const_j = ((mu.pow(2) * precision) + logvar).sum(dim=1) + mu.shape[1] * math.log(2 * math.pi)  # [N]
    weighted_mu = mu * precision
    log_qz = []
    for start in range(0, n, chunk):
        zc = z[start:start + chunk]
        quad = zc.pow(2) @ precision.T - 2 * zc @ weighted_mu.T  # [c, N]
        log_density = -0.5 * (quad + const_j)
        log_qz.append(torch.logsumexp(log_density, dim=1) - math.log(n))
    return float((log_q_own - torch.cat(log_qz)).mean())


def latent_report(mu: torch.Tensor, logvar: torch.Tensor, threshold: float = ACTIVE_THRESHOLD,
                  seed: int = 0, chunk: int = 512, family=DiagonalGaussian) -> dict[str, float | int | list[float]]:
    """Every diagnostic of one posterior over a set of examples, as ``eval.json`` and ``metrics.jsonl`` hold them.

    Args:
        mu, logvar: ``[N, D]``.
        chunk: rows of the mutual information's matrix at once (:func:`mutual_information`).

    Returns:
        ``{"active_units", "latent_dim", "kl", "kl_per_unit", "mutual_information"}``.
    """
    return {"active_units": active_units(mu, threshold), "latent_dim": int(mu.shape[1]),
            **kl_summary(mu, logvar, family), "mutual_information": mutual_information(mu, logvar, seed, chunk, family)}
