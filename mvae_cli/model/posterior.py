"""Posteriors over z as objects: a diagonal Gaussian and a weighted mixture of them (docs/DESIGN.md,
"Math lives in one place").

Every posterior has a batch of B rows and works on particles laid out ``[B, K, D]``:

- ``rsample(eps, offset, total)``: reparameterised draws from given standard-normal noise
  ``eps [B, k, D]``; ``offset`` and ``total`` say which particles of K = ``total`` these k are,
  so one example's particles can be drawn chunk by chunk with the same answer;
- ``particle_log_weights(k, offset, total)``: ``[B, k]`` log factors a particle's importance
  weight takes (0 for a Gaussian; for a stratified mixture, log π_c − log(n_c / K) of the
  particle's component c, so that a plain mean over the K particles is unbiased);
- ``log_prob(z [B, K, D]) -> [B, K]``, ``mean [B, D]``, ``kl_to_prior(eps=None) -> [B]``
  (analytic for the Gaussian, stratified Monte Carlo from the given noise for a mixture).

A posterior family also names its prior and how standard-normal noise becomes its own noise
(``noise``: the identity for the Gaussian, the inverse CDF for the Laplace), so every caller
keeps drawing ``torch.randn`` and the same seeds give the same draws in either family:

- :class:`DiagonalGaussian`, prior N(0, I) (:func:`~mvae_cli.model.poe.standard_normal_log_prob`);
- :class:`DiagonalLaplace`, prior Laplace(0, 1) per unit, as the MMVAE (Shi et al. 2019) uses.
"""

from __future__ import annotations

import math

import torch

from mvae_cli.model.poe import gaussian_kl_per_unit, gaussian_log_prob, standard_normal_log_prob


class DiagonalGaussian:
    """N(mu, diag exp(logvar)) per row.

    Args:
        mu: ``[B, D]`` (any leading shape ``[..., D]`` for the closed forms).
        logvar: same shape as ``mu``.
    """

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor):
        self.mu, self.logvar = mu, logvar

    @property
    def mean(self) -> torch.Tensor:
        return self.mu

    @staticmethod
    def scale_of(logvar: torch.Tensor) -> torch.Tensor:
        """The scale that multiplies the family's standard noise: σ."""
        return torch.exp(0.5 * logvar)

    @staticmethod
    def noise(eps: torch.Tensor) -> torch.Tensor:
        """The family's standard noise from standard-normal ``eps``: itself."""
        return eps

    @staticmethod
    def log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """log N(z; mu, diag exp(logvar)) summed over the last dimension (broadcasting)."""
        return gaussian_log_prob(z, mu, logvar)

    @staticmethod
    def prior_log_prob(z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I): ``[..., D]`` → ``[...]``."""
        return standard_normal_log_prob(z)

    @staticmethod
    def kl_per_unit(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL to the prior of each unit: ``[..., D]``."""
        return gaussian_kl_per_unit(mu, logvar)

    def rows(self, start: int, stop: int) -> "DiagonalGaussian":
        """The posterior of rows ``start:stop``."""
        return type(self)(self.mu[start:stop], self.logvar[start:stop])

    def rsample(self, eps: torch.Tensor, offset: int = 0, total: int | None = None) -> torch.Tensor:
        """``mu + scale * noise(eps)``: ``eps [B, k, D]`` → ``z [B, k, D]``."""
        return self.mu.unsqueeze(-2) + self.scale_of(self.logvar).unsqueeze(-2) * self.noise(eps)

    def particle_log_weights(self, k: int, offset: int = 0, total: int | None = None) -> None:
        """None: every particle of a Gaussian weighs the same (no correction)."""
        return None

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z): ``z [B, K, D]`` → ``[B, K]``."""
        return self.log_density(z, self.mu.unsqueeze(-2), self.logvar.unsqueeze(-2))

    def kl_to_prior(self, eps: torch.Tensor | None = None) -> torch.Tensor:
        """KL[q || the family's prior] in closed form (:meth:`kl_per_unit` summed): ``[B]`` (``eps`` is ignored)."""
        return self.kl_per_unit(self.mu, self.logvar).sum(dim=-1)


_LOG2 = math.log(2.0)


class DiagonalLaplace(DiagonalGaussian):
    """Laplace(mu, b) per unit, parameterised as the Gaussian is, by its variance 2b² = exp(logvar).

    Its prior is Laplace(0, 1) per unit (the MMVAE's). Standard-normal noise ε becomes standard
    Laplace noise by the inverse CDFs, sign(ε) · (−log 2Φ(−|ε|)), computed through log Φ so
    that it stays finite for any ε. No product of Laplace experts has a closed form: the family
    goes with mixtures of experts and single experts only.
    """

    @staticmethod
    def log_scale(logvar: torch.Tensor) -> torch.Tensor:
        """log b = log σ − ½ log 2."""
        return 0.5 * (logvar - _LOG2)

    @staticmethod
    def scale_of(logvar: torch.Tensor) -> torch.Tensor:
        """b = σ / √2."""
        return torch.exp(DiagonalLaplace.log_scale(logvar))

    @staticmethod
    def noise(eps: torch.Tensor) -> torch.Tensor:
        """Standard Laplace noise F⁻¹(Φ(ε)): ``[...]`` → ``[...]``."""
        return -torch.sign(eps) * (_LOG2 + torch.special.log_ndtr(-eps.abs()))

    @staticmethod
    def log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """log Laplace(z; mu, b) = −log 2b − |z − mu| / b, summed over the last dimension (broadcasting)."""
        log_b = DiagonalLaplace.log_scale(logvar)
        return (-(_LOG2 + log_b) - (z - mu).abs() * torch.exp(-log_b)).sum(dim=-1)

    @staticmethod
    def prior_log_prob(z: torch.Tensor) -> torch.Tensor:
        """log Laplace(z; 0, 1) per unit, summed: ``[..., D]`` → ``[...]``."""
        return (-_LOG2 - z.abs()).sum(dim=-1)

    @staticmethod
    def kl_per_unit(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL[Laplace(mu, b) || Laplace(0, 1)] = −log b + |mu| + b e^(−|mu|/b) − 1 per unit: ``[..., D]``."""
        log_b = DiagonalLaplace.log_scale(logvar)
        b = torch.exp(log_b)
        return -log_b + mu.abs() + b * torch.exp(-mu.abs() / b) - 1.0


FAMILIES = {"gaussian": DiagonalGaussian, "laplace": DiagonalLaplace}


def strata_bounds(log_weights: torch.Tensor, total: int) -> torch.Tensor:
    """Stratified allocation of ``total`` particles to mixture components by their weights.

    Particle j (of K = ``total``) sits at u_j = (j + ½)/K and belongs to the component whose
    slice of the cumulative weights holds it, so component c gets n_c ≈ π_c K particles (every
    component with π_c ≥ 1/K at least one; a component of weight 0 none). Integer bounds
    keep the allocation and the counts consistent under float rounding.

    Args:
        log_weights: ``[B, C]`` log π (rows normalised; −inf for a component left out).
        total: K.

    Returns:
        ``long [B, C]``: b_c = n_0 + … + n_c, the last column exactly K.
    """
    cumulative = torch.cumsum(torch.softmax(log_weights.double(), dim=-1), dim=-1)
    bounds = torch.floor(cumulative * total - 0.5).long() + 1
    bounds = bounds.clamp(0, total)
    bounds[..., -1] = total
    return torch.cummax(bounds, dim=-1).values


class Mixture:
    """Σ_c π_c q_c(z) per row, sampled by strata (particles per component); the components are of
    one family (:class:`DiagonalGaussian` or :class:`DiagonalLaplace`), whose prior is the mixture's.

    Args:
        components: a :class:`DiagonalGaussian` (or Laplace) with ``mu, logvar [B, C, D]``.
        log_weights: ``[B, C]`` log π, each row normalised (−inf for a component left out).
    """

    def __init__(self, components: DiagonalGaussian, log_weights: torch.Tensor):
        self.components = components
        self.log_weights = log_weights

    @property
    def mean(self) -> torch.Tensor:
        """Σ_c π_c mu_c: ``[B, D]``."""
        weights = torch.softmax(self.log_weights, dim=-1).to(self.components.mu.dtype)
        return (weights.unsqueeze(-1) * self.components.mu).sum(dim=-2)

    def rows(self, start: int, stop: int) -> "Mixture":
        return Mixture(self.components.rows(start, stop), self.log_weights[start:stop])

    def _component(self, k: int, offset: int, total: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Component index ``long [B, k]`` of particles offset..offset+k of K, and the bounds ``[B, C]``."""
        total = k if total is None else total
        bounds = strata_bounds(self.log_weights, total)
        j = torch.arange(offset, offset + k, device=bounds.device).expand(bounds.shape[0], -1).contiguous()
        return torch.searchsorted(bounds, j, right=True), bounds

    def rsample(self, eps: torch.Tensor, offset: int = 0, total: int | None = None) -> torch.Tensor:
        """Particle j of K is drawn from its stratum's component: ``eps [B, k, D]`` → ``z [B, k, D]``."""
        index, _ = self._component(eps.shape[-2], offset, total)
        pick = index.unsqueeze(-1).expand(-1, -1, eps.shape[-1])
        family = type(self.components)
        mu = self.components.mu.gather(-2, pick)
        scale = family.scale_of(self.components.logvar.gather(-2, pick))
        return mu + scale * family.noise(eps)

    def particle_log_weights(self, k: int, offset: int = 0, total: int | None = None) -> torch.Tensor:
        """log π_c − log(n_c / K) of each particle's component c: ``[B, k]``.

        (1/K) Σ_j exp(this_j) f(z_j) = Σ_c π_c (1/n_c) Σ_{j ∈ c} f(z_j), the stratified
        estimate of E_q[f] (exact in expectation whenever every component with π_c > 0 has
        a particle, i.e. K ≥ 1/min π_c).
        """
        total = k if total is None else total
        index, bounds = self._component(k, offset, total)
        counts = torch.diff(bounds, dim=-1, prepend=torch.zeros_like(bounds[..., :1]))
        log_share = self.log_weights.double() - torch.log(counts.double() / total)
        return log_share.gather(-1, index).to(self.components.mu.dtype)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log Σ_c π_c q_c(z): ``z [B, K, D]`` → ``[B, K]``."""
        mu, logvar = self.components.mu.unsqueeze(-2), self.components.logvar.unsqueeze(-2)  # [B, C, 1, D]
        per_component = type(self.components).log_density(z.unsqueeze(-3), mu, logvar)  # [B, C, K]
        return torch.logsumexp(per_component + self.log_weights.unsqueeze(-1).to(z.dtype), dim=-2)

    def kl_to_prior(self, eps: torch.Tensor | None = None) -> torch.Tensor:
        """Stratified Monte Carlo KL[q || p(z)] from standard-normal noise ``eps [B, K, D]``: ``[B]``.

        Without noise, one particle per component (K = C) is drawn from torch's generator.
        """
        if eps is None:
            mu = self.components.mu
            eps = torch.randn(mu.shape[0], mu.shape[-2], mu.shape[-1], dtype=mu.dtype, device=mu.device)
        total = eps.shape[-2]
        z = self.rsample(eps, 0, total)
        log_ratio = self.log_prob(z) - type(self.components).prior_log_prob(z)
        return (self.particle_log_weights(total, 0, total).exp() * log_ratio).sum(dim=-1) / total


def log_uniform_weights(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """log π for a uniform mixture over the components ``mask`` selects: ``bool [B, C]`` → ``[B, C]``."""
    counts = mask.sum(dim=-1, keepdim=True).clamp(min=1).to(dtype)
    return torch.where(mask, -torch.log(counts), torch.full_like(counts, -math.inf))
