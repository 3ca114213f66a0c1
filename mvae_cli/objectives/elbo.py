"""The ELBO of modality subsets, evaluated for many (example, subset) rows in one batched pass.

Shared by every objective built on a model's fused posterior (``model.posterior``) and by validation.
"""

from __future__ import annotations

import numpy as np
import torch


from mvae_cli.model.poe import gaussian_kl_per_unit
from mvae_cli.model.posterior import DiagonalGaussian
from mvae_cli.model.protocol import Model
from mvae_cli.model.rows import as_device, cells, computing, host, index, normal_noise, place, run_starts
from mvae_cli.model.stack import group_rows, net_groups, run_group
from mvae_cli.objectives.regularize import free_bits_kl


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` along the first dimension, with a reproducible backward.

    An example's experts serve several subset rows, so the backward sums the gradients of
    repeated rows. Advanced indexing (``x[index]``) does that with an accumulating
    ``index_put_`` whose order varies from call to call on CPU, so two identical runs
    differ in the last bits; ``index_select``'s backward sums in a fixed order.

    Args:
        x: ``[B, ...]``.
        index: ``long[R]`` in [0, B).

    Returns:
        ``[R, ...]``.
    """
    return x.index_select(0, index)


def decode_log_lik(model: Model, batch: dict[str, torch.Tensor], z: torch.Tensor, example: torch.Tensor,
                   targets: np.ndarray, example_host: np.ndarray | None = None,
                   weights: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_{i ∈ targets} λ_i log p(x_i | z) per row, each decoder run once on the rows that use it.

    Args:
        z: ``[R, D]`` (with a conditional decoder's context appended).
        example: ``long [R]`` (device), the example each row reconstructs.
        targets: ``bool [R, M]`` on the host: which rows each decoder runs on is known before the
            step (no device sync).
        example_host: ``example`` on the host; needed for a stacked batch (:mod:`~mvae_cli.model.stack`:
            each decoder is told the run of its rows).
        weights: ``float [R, M]`` (host), each row's own λ per modality; default the model's λ_i.

    Returns:
        ``(weighted [R], per-modality unweighted [R, M])``, zero where a modality is not a target.
    """
    targets = host(targets)
    R, M = targets.shape
    parts, slots = [], []  # each decoder's log-likelihood rows, and where they go in [R·M]
    for names in net_groups(model.decoders, model.names):
        rows, at = cells(targets, [model.names.index(n) for n in names])
        if not at.size:
            continue
        if len(names) == 1:
            whole = rows[0].size == R
            own = None if whole else index(rows[0], z.device)
            with computing(batch, example_host if whole or example_host is None else example_host[rows[0]]):
                params = model.decode(names[0], z if whole else z[own])
            x = batch[names[0]][example if whole else example[own]]
        else:  # like decoders of a stack, in one call (mvae_cli.model.stack.NetGroup), padded to the widest
            if example_host is None:
                raise RuntimeError("a stack's grouped decoders need the examples of their rows on the host")
            examples = [example_host[r] for r in rows]
            params = run_group(model.decoders, names, batch, z.index_select(0, index(np.concatenate(rows), z.device)),
                               examples)
            x = group_rows(batch, names, examples, z.device)
        parts.append(model.log_prob(names[0], params.float(), x))
        slots.append(at)
    if parts:
        log_lik = place(torch.cat(parts), index(np.concatenate(slots), z.device), (R, M))
    else:
        log_lik = z.new_zeros(R, M)
    if weights is None:
        weights = torch.tensor(model.weights, device=log_lik.device, dtype=log_lik.dtype)
    else:
        weights = as_device(np.ascontiguousarray(weights, dtype=np.float32), log_lik.device).to(log_lik.dtype)
    return (log_lik * weights).sum(dim=1), log_lik


def subset_elbo(
    model: Model,
    batch: dict[str, torch.Tensor],
    mu: torch.Tensor,
    logvar: torch.Tensor,
    example: torch.Tensor,
    subsets: torch.Tensor,
    beta: float,
    eps: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    free_bits: float = 0.0,
    target_weights: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ELBO(X) = E_q(z|X)[Σ_{i∈X} λ_i log p(x_i|z)] − β KL[q(z|X) || p(z)] (paper Eq. 4), one row per subset.

    The subsets are stacked along the batch dimension: one fused posterior
    (``model.posterior``) for all rows, and each decoder runs once, on the rows whose subset
    holds its modality. The KL is analytic for a Gaussian posterior and, for a mixture,
    the Monte Carlo estimate at the same sample.

    Args:
        model: any :class:`~mvae_cli.model.protocol.Model`.
        batch: ``{name: [B, ...]}``.
        mu, logvar: ``[B, M, D]`` expert parameters from ``model.encode``.
        example: ``int64[R]`` (host), the example of each row.
        subsets: ``bool[R, M]`` (host), the modalities each row's posterior is given (a model with
            more experts than modalities, as JMVAE's joint network, takes its own mask here).
        beta: the KL weight; or ``[B]``, one per example.
        eps: ``[R, D]`` standard-normal noise; drawn here when None.
        targets: ``bool[R, M]`` (host), the modalities each row reconstructs (default: ``subsets``;
            BiVCCA's q(z|x) reconstructs every observed modality).
        free_bits: a KL floor in nats per latent unit on the rows' average
            (:func:`~mvae_cli.objectives.regularize.free_bits_kl`); 0 for the plain ELBO. Needs a
            Gaussian posterior (a per-unit KL).
        target_weights: ``float [R, M]`` (host), each row's λ per target (the MVAE's cross
            reconstruction); default the model's λ_i.

    Returns:
        ``(elbo [R], log_lik [R, M], kl [R])``; ``log_lik[r, i]`` is the unweighted
        single-sample log p(x_i | z_r), zero where modality i is not in row r's targets; ``kl``
        is the plain KL (the floor changes only what ``elbo`` charges).
    """
    example_host, subsets = host(example), host(subsets)
    targets = subsets if targets is None else host(targets)
    example = index(example_host, mu.device)
    q = model.posterior(None, as_device(subsets, mu.device),
                        experts=(gather_rows(mu, example).float(), gather_rows(logvar, example).float()))
    if eps is None:
        eps = normal_noise(batch, example_host, q.mean)
    z = q.rsample(eps.unsqueeze(1), 0, 1).squeeze(1)
    context = model.decoder_context(batch)
    if context is not None:  # a conditional decoder (CVAE): p(x | z, y)
        z = torch.cat([z, gather_rows(context, example).to(z.dtype)], dim=1)
    weighted, log_lik = decode_log_lik(model, batch, z, example, targets, example_host, target_weights)
    if free_bits > 0:
        if run_starts(batch) is not None:
            raise ValueError("free bits floor the KL on a batch's average; the runs of a stack cannot share one")
        if not isinstance(q, DiagonalGaussian):
            raise ValueError("free bits need a Gaussian posterior (a KL per latent unit)")
        kl_units = gaussian_kl_per_unit(q.mu, q.logvar)
        kl = kl_units.sum(dim=-1)
        charged = free_bits_kl(kl_units, free_bits)
    else:
        kl = charged = q.kl_to_prior(eps.unsqueeze(1))
    if torch.is_tensor(beta):  # one β per example (the runs of a stack anneal on their own steps)
        beta = beta.index_select(0, example)
    return weighted - beta * charged, log_lik, kl
