"""The KL weight of an objective: β annealed towards a target, and free bits (a KL floor per unit).

Remedies for posterior collapse, kept in one place so every objective calls the same math:

- a β target below 1 weakens the pull of every posterior towards the prior (β-VAE with
  β < 1; the MVAE paper anneals β from 0 to 1, §4);
- free bits (Kingma et al. 2016, "Improved variational inference with inverse autoregressive
  flow", Eq. 15): each latent unit's KL, averaged over the batch, is charged at least λ nats,
  so a unit gains nothing by collapsing below λ and the gradient pushes it to the prior only
  above the floor.
"""

from __future__ import annotations

import torch


def beta_at(step: int, anneal_steps: int, target: float = 1.0) -> float:
    """β rising linearly from 0 to ``target`` over ``anneal_steps`` optimiser steps, then held.

    Args:
        step: optimiser steps done.
        anneal_steps: 0 for no annealing (β = target from the first step).
        target: the final β (1 in the paper).
    """
    if anneal_steps <= 0:
        return float(target)
    return float(target) * min(1.0, step / anneal_steps)


def free_bits_kl(kl_per_unit: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The KL charged per row with a floor of ``free_bits`` nats per unit on the batch average.

    For unit d with batch-mean KL m_d: rows are charged their own KL when m_d ≥ λ, else the
    constant λ (no gradient). The batch mean of the result is Σ_d max(m_d, λ).

    Args:
        kl_per_unit: ``[R, D]`` KL of each unit of each row, nats.
        free_bits: λ ≥ 0; 0 gives the plain KL.

    Returns:
        ``[R]``.
    """
    if free_bits <= 0:
        return kl_per_unit.sum(dim=-1)
    above = kl_per_unit.mean(dim=0, keepdim=True) >= free_bits  # [1, D]
    floor = torch.full_like(kl_per_unit, float(free_bits))
    return torch.where(above, kl_per_unit, floor).sum(dim=-1)
