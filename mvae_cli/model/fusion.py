"""Fusions: posteriors over z built from the experts' tensors (docs/DESIGN.md, "Math lives in one place").

Each takes expert parameters ``mu, logvar [B, M, D]`` and the experts that take part,
``mask bool [B, M]``, and returns a posterior (:mod:`~mvae_cli.model.posterior`):

- :func:`single_expert` — one expert as it is, no prior expert (the VAE, BiVCCA and JMVAE's
  unimodal inference networks);
- :func:`poe` — the product of experts with the prior expert (MVAE, Wu & Goodman 2018, Eq. 3),
  through the one :func:`~mvae_cli.model.poe.product_of_experts`;
- :func:`quotient_of_experts` — MVAE-Q: Π_i q(z|x_i) / p(z)^(N−1);
- :func:`mixture_of_experts` — (1/N) Σ_i q(z|x_i) (MMVAE, Shi et al. 2019);
- :func:`mixture_of_products` — the uniform mixture over the non-empty subsets S of the
  experts of PoE(S) (MoPoE, Sutter et al. 2021);
- :func:`dynamic_prior` — mmJSD's dynamic prior (Sutter et al. 2020): the geometric mean
  p(z)^{π} Π_i q(z|x_i)^{π} of the prior and the experts, π = 1/(N + 1).
"""

from __future__ import annotations

import itertools

import torch

from mvae_cli.model.poe import product_of_experts
from mvae_cli.model.posterior import DiagonalGaussian, Mixture, log_uniform_weights

# Subsets of more experts than this would make 2^M components per row.
MAX_MOPOE_EXPERTS = 12


def single_expert(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor, family=DiagonalGaussian) -> DiagonalGaussian:
    """The one expert ``mask`` selects in each row, unchanged: a ``family`` posterior ``[B, D]``.

    Raises:
        RuntimeError: a row selecting no expert or more than one (a bug of the caller).
    """
    # checked on the device (no host sync in a training step); a bug if it fails, never a user's input
    torch._assert_async((mask.sum(dim=-1) == 1).all(),
                        "this model's posterior is defined given exactly one of its inference networks")
    index = mask.long().argmax(dim=-1)[:, None, None].expand(-1, 1, mu.shape[-1])
    return family(mu.gather(-2, index).squeeze(-2), logvar.gather(-2, index).squeeze(-2))


def poe(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor) -> DiagonalGaussian:
    """p(z) Π_{i ∈ mask} q(z | x_i), normalised: a Gaussian ``[B, D]`` (the prior for an empty row)."""
    return DiagonalGaussian(*product_of_experts(mu, logvar, mask))


def quotient_of_experts(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor) -> DiagonalGaussian:
    """MVAE-Q (seed 000): Π_{i ∈ mask} q(z | x_i) / p(z)^(N−1), normalised, N the experts taking part.

    Precisions add and the prior's is taken away N − 1 times: Λ = Σ_i λ_i − (N − 1) =
    1 + Σ_i (λ_i − 1), mean Σ_i λ_i mu_i / Λ. Here each q(z | x_i) is meant to contain the
    prior, so λ_i ≥ 1; the guard reads an expert broader than the prior (λ_i < 1) as having the
    prior's precision, so Λ ≥ 1 and the quotient is always a proper Gaussian (unguarded, two
    broad experts give a negative precision). An empty row gives the prior.
    """
    shown = mask.unsqueeze(-1).to(logvar.dtype)
    precision = torch.exp(-logvar).clamp(min=1.0) * shown
    total = 1.0 + (precision - shown).sum(dim=-2)
    return DiagonalGaussian((mu * precision).sum(dim=-2) / total, -torch.log(total))


def mixture_of_experts(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor, family=DiagonalGaussian) -> Mixture:
    """(1/N) Σ_{i ∈ mask} q_i(z): a mixture of M components ``[B, M, D]`` of ``family`` (Gaussian or Laplace).

    Raises:
        RuntimeError: a row with no expert (the mixture would be empty; a bug of the caller).
    """
    torch._assert_async(mask.any(dim=-1).all(), "a mixture of experts needs at least one expert in every row")
    return Mixture(family(mu, logvar), log_uniform_weights(mask, mu.dtype))


def nonempty_subsets(m: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Every non-empty subset of m experts, ``bool [2^m − 1, m]``, ordered by size then lexicographically."""
    rows = [[i in s for i in range(m)] for size in range(1, m + 1) for s in itertools.combinations(range(m), size)]
    return torch.tensor(rows, dtype=torch.bool, device=device)


def mixture_of_products(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor) -> Mixture:
    """The uniform mixture over the non-empty subsets S ⊆ mask of PoE(S) (with the prior expert).

    Components are all 2^M − 1 subsets ``[B, 2^M − 1, D]``; those not inside a row's mask get
    weight 0.

    Raises:
        ValueError: more than :data:`MAX_MOPOE_EXPERTS` experts, or a row with no expert.
    """
    m = mask.shape[-1]
    if m > MAX_MOPOE_EXPERTS:
        raise ValueError(f"a mixture of products over {m} experts has 2^{m} − 1 components; at most "
                         f"{MAX_MOPOE_EXPERTS} experts are supported")
    torch._assert_async(mask.any(dim=-1).all(), "a mixture of products needs at least one expert in every row")
    subsets = nonempty_subsets(m, mask.device)  # [C, M]
    q_mu, q_logvar = product_of_experts(mu.unsqueeze(-3), logvar.unsqueeze(-3), subsets)  # [B, C, D]
    inside = ~(subsets & ~mask.unsqueeze(-2)).any(dim=-1)  # [B, C]: S ⊆ mask
    return Mixture(DiagonalGaussian(q_mu, q_logvar), log_uniform_weights(inside, mu.dtype))


def dynamic_prior(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor) -> DiagonalGaussian:
    """mmJSD's dynamic prior f(p(z), {q(z|x_i)}_{i ∈ mask}) ∝ p(z)^π Π_i q(z|x_i)^π, π = 1/(N + 1).

    The weighted product of experts (:func:`~mvae_cli.model.poe.product_of_experts` with
    exponents): for Gaussians precision π (1 + Σ_i λ_i) and mean Σ_i λ_i mu_i / (1 + Σ_i λ_i).
    An empty row gives the prior.
    """
    pi = 1.0 / (1.0 + mask.sum(dim=-1).to(logvar.dtype))  # [B]
    weights = pi.unsqueeze(-1).expand(mask.shape)
    return DiagonalGaussian(*product_of_experts(mu, logvar, mask, weights=weights, prior_weight=pi))


# The fusions defined for experts of any family (the products need Gaussians).
ANY_FAMILY = ("single", "moe")

FUSIONS = {
    "single": single_expert,
    "poe": poe,
    "qoe": quotient_of_experts,
    "moe": mixture_of_experts,
    "mopoe": mixture_of_products,
}
