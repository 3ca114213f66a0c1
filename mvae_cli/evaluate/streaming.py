"""The estimator's log weights reduced over the particles chunk by chunk (``mvae eval``'s path), so
that memory does not grow with K: one example's 10⁹ particles pass through in chunks of
``chunk_rows`` and only a few numbers per (proposal, target, example, chunk) are kept.
"""

from __future__ import annotations

import math

import torch

from mvae_cli.evaluate.estimator import log_importance_weights


@torch.inference_mode()
def importance_statistics(model, batch, proposals, targets, particles: int, **options) -> dict[str, torch.Tensor]:
    """What :func:`~mvae_cli.evaluate.estimator.log_importance_weights` gives, reduced over the particles chunk by chunk, so that
    memory does not grow with K (one example's 10⁹ particles in chunks of ``chunk_rows``).

    Takes the same arguments. Per chunk it keeps the max m, Σ e^(w − m), Σ e^(2(w − m)), the mean
    and the sum of squared deviations of the log weights; chunks are merged in a fixed order
    (Chan et al.'s pairwise update for the variance).

    Returns:
        ``{"log_mean_exp", "ess", "var"}``, each ``[P, T, B]`` (float64): log p̂, the effective
        sample size (Σw)²/Σw² and the variance (1/K) Σ (log w − mean)² of the log weights.
    """
    partial: dict[tuple, tuple] = {}

    def keep(chunk, log_w):
        w = log_w.double()
        m = w.amax(dim=-1)
        finite_m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        shifted = w - finite_m[..., None]
        mean = w.mean(dim=-1)
        # one small tensor per chunk: 10⁹ particles in chunks of 4,096 keep ~250k of them
        partial[chunk] = torch.stack([finite_m, shifted.exp().sum(-1), (2 * shifted).exp().sum(-1), mean,
                                      ((w - mean[..., None]) ** 2).sum(-1)]).cpu()

    log_importance_weights(model, batch, proposals, targets, particles, sink=keep, **options)
    B = next(iter(batch.values())).shape[0]
    shape = (len(proposals), len(targets), B)
    m = torch.full(shape, -math.inf, dtype=torch.float64)
    s1, s2, mean, m2 = (torch.zeros(shape, dtype=torch.float64) for _ in range(4))
    count = torch.zeros(B, dtype=torch.float64)
    for (e0, e1, k0, k1) in sorted(partial):
        cm, c1, c2, cmean, cm2 = partial.pop((e0, e1, k0, k1))
        k, rows = k1 - k0, slice(e0, e1)
        new_m = torch.maximum(m[..., rows], cm)
        scale_old, scale_new = torch.exp(m[..., rows] - new_m), torch.exp(cm - new_m)
        s1[..., rows] = s1[..., rows] * scale_old + c1 * scale_new
        s2[..., rows] = s2[..., rows] * scale_old ** 2 + c2 * scale_new ** 2
        n_old = count[rows]
        n_new = n_old + k
        delta = cmean - mean[..., rows]
        mean[..., rows] = mean[..., rows] + delta * k / n_new
        m2[..., rows] = m2[..., rows] + cm2 + delta ** 2 * n_old * k / n_new
        m[..., rows] = new_m
        count[rows] = n_new
    log_sum = m + torch.log(s1)
    return {"log_mean_exp": log_sum - math.log(particles),
            "ess": torch.exp(2 * log_sum - (2 * m + torch.log(s2))),
            "var": m2 / particles}
