"""The one importance-sampling estimator (MVAE paper, §5, Eqs. 5–7).

For a proposal subset P of modalities and target sets T_1, ..., T_n it draws K particles
z_k ~ q(z | P) (the model's posterior, ``model.posterior``: a Gaussian or a mixture, sampled by
strata) and returns the log importance weights

    log w_{t,k} = Σ_{i ∈ T_t} log p(x_i | z_k) + log p(z_k) − log q(z_k | P) (+ log π_c − log(n_c/K)),

the last term only for a mixture proposal (its particle's stratum weight), so that
log p̂(T_t) = log (1/K) Σ_k w_{t,k} (:func:`log_mean_exp`). Every decoder runs once
per particle, however many targets use it. The work is done in chunks of flattened
(example, particle) rows sized to a memory budget, on one worker thread per core on CPU
(:func:`run_parallel`); each example's noise comes from its own stream, seeded from
(seed, global example index), so the chunk size only changes how rows are grouped, never
the numbers (up to float rounding in the matrix products).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

import torch

from mvae_cli.evaluate.scorers import Scorer, default_scorer, likelihood_of, shared_log_prob
from mvae_cli.streams import stream

# Tag of the one shared stream for prior samples; example streams are tagged 0.
_PRIOR_STREAM = 1
# Rows per chunk beyond which nothing is gained (CPU: matmuls are as fast from ~1,000 rows
# on, and smaller chunks keep the per-chunk tensors in cache).
MAX_CHUNK_ROWS = {"cpu": 4096, "cuda": 262_144}


# Particles per noise block: an example's noise is drawn block by block, each block from its own
# stream, so any slice of its K particles is drawn without the ones before it (K = 10⁹ fits in
# memory). Block 0 is the stream of earlier versions, so K ≤ NOISE_BLOCK draws what they drew.
NOISE_BLOCK = 4096
_BLOCK_STREAM = 2


def particle_noise(seed: int, index: int, particles: int, dim: int, dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu", start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Rows ``start:stop`` of the standard-normal noise ``[K, D]`` of example ``index`` (its global
    index in the split), K = ``particles``.

    Block b (particles b·NOISE_BLOCK onwards) comes from stream ``(seed, 0, index)`` for b = 0
    and ``(seed, 2, index, b)`` after, so a slice costs only its own blocks. Drawn on ``device``
    by that device's generator: CPU and CUDA give different draws, but one device always gives
    the same ones.
    """
    stop = particles if stop is None else stop
    pieces = []
    for block in range(start // NOISE_BLOCK, -(-stop // NOISE_BLOCK)):
        b0 = block * NOISE_BLOCK
        rows = min(NOISE_BLOCK, particles - b0)
        generator = stream(seed, _BLOCK_STREAM if block else 0, index, device, block)
        noise = torch.randn(rows, dim, generator=generator, dtype=dtype, device=device)
        pieces.append(noise[max(start - b0, 0):stop - b0])
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def prior_noise(seed: int, samples: int, dim: int, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``[S, D]`` samples of p(z) = N(0, I) shared by every example."""
    return torch.randn(samples, dim, generator=stream(seed, _PRIOR_STREAM, 0, device), dtype=dtype, device=device)


def log_mean_exp(log_w: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log (1/K) Σ_k exp(log_w_k) along ``dim``, stably."""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def effective_sample_size(log_w: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """(Σ w)² / Σ w² along ``dim``, from log weights: in [1, K]."""
    return torch.exp(2 * torch.logsumexp(log_w, dim=dim) - torch.logsumexp(2 * log_w, dim=dim))


def bytes_per_row(model, names: Sequence[str], device: torch.device | str = "cpu") -> int:
    """A generous estimate of the memory one (example, particle) row takes while decoding ``names``.

    Every module output of a one-row decode is counted (containers too), twice over for
    the temporaries of the likelihood, plus the latent rows. Where the likelihood is the
    model's own pass (a sequence decoder's teacher-forced GRU), that pass is counted too,
    on a one-row observation of full length, with the copy of the observation it gets.
    """
    elements = [0]

    def count(module, inputs, output):
        for tensor in output if isinstance(output, tuple) else (output,):
            if torch.is_tensor(tensor):
                elements[0] += tensor.numel()  # one row: the whole output is that row's

    dim = model.decoder_dim  # z, and y for a conditional decoder
    dtype = next(model.parameters(), torch.zeros(())).dtype
    z = torch.zeros(1, dim, device=device, dtype=dtype)
    specs = {s.name: s for s in getattr(model, "specs", ())}
    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        with torch.inference_mode():
            for name in names:
                params = model.decode(name, z)
                elements[0] += params.numel()
                if name in specs and likelihood_of(model, name).copies_x:
                    x = _observation(specs[name], device, dtype)
                    elements[0] += x.numel()
                    model.log_prob(name, params, x)
    finally:
        handle.remove()
    return z.element_size() * (2 * elements[0] + 8 * dim + 16)


def _observation(spec, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """A one-row observation of a modality: zeros (for a sequence, no STOP, so its full length)."""
    if spec.kind in ("categorical", "sequence"):
        return torch.zeros(1, *spec.shape, dtype=torch.long, device=device)
    return torch.zeros(1, *spec.shape, dtype=dtype, device=device)


def chunk_rows_for(model, names: Sequence[str], budget_bytes: int, device: torch.device | str = "cpu",
                   workers: int = 1) -> int:
    """Rows per chunk: as many as the budget allows (shared by ``workers`` chunks in flight),
    capped where more gains nothing."""
    device = torch.device(device)
    cap = MAX_CHUNK_ROWS.get(device.type, MAX_CHUNK_ROWS["cuda"])
    return max(1, min(cap, budget_bytes // (max(1, workers) * bytes_per_row(model, names, device))))


def _chunks(n_examples: int, particles: int, chunk_rows: int):
    """Rectangular pieces of the [B, K] row grid: whole examples when K fits in a chunk,
    else slices of one example's particles. Yields ``(e0, e1, k0, k1)``."""
    if particles <= chunk_rows:
        step = chunk_rows // particles
        for e0 in range(0, n_examples, step):
            yield e0, min(e0 + step, n_examples), 0, particles
    else:
        for e in range(n_examples):
            for k0 in range(0, particles, chunk_rows):
                yield e, e + 1, k0, min(k0 + chunk_rows, particles)


@torch.inference_mode()
def log_importance_weights(
    model,
    batch: dict[str, torch.Tensor],
    proposals: Sequence[Sequence[str]],
    targets: Sequence[Sequence[str]],
    particles: int,
    *,
    seed: int = 0,
    first_index: int = 0,
    chunk_rows: int,
    expert_params: tuple[torch.Tensor, torch.Tensor] | None = None,
    scorers: Mapping[str, Scorer] | None = None,
    workers: int | None = None,
    sink=None,
) -> torch.Tensor | None:
    """Log importance weights of every target under every proposal, over batch × particles.

    log w[p, t, b, k] = log p(x_b^{T_t}, z_{pbk}) − log q(z_{pbk} | x_b^{P_p}) with
    z_{pbk} = ``q_pb.rsample(ε_b)`` (μ_pb + σ_pb ε_bk for a Gaussian). The noise ε_b ``[K, D]``
    of example b is shared by all proposals (common random numbers) and comes from
    :func:`particle_noise` with the example's global index ``first_index + b``. The empty
    proposal is the prior (for fusions that define it).

    Args:
        model: a :class:`~mvae_cli.model.model.MultimodalVAE` or any module with its
            ``names``, ``latent_dim``, ``encode``, ``posterior``, ``prior_log_prob``,
            ``decode`` and ``log_prob``.
        batch: ``{name: [B, ...]}``; the proposal and target modalities must be present.
        proposals: P subsets of modality names.
        targets: T subsets of modality names.
        particles: K ≥ 1.
        seed: seeds every example's noise stream.
        first_index: the global index of the batch's first example.
        chunk_rows: (example, particle) rows decoded at once (see :func:`chunk_rows_for`).
        expert_params: ``(mu, logvar)`` ``[B, M, D]`` from ``model.encode``, when already computed.
        scorers: ``{name: scorer}`` (:mod:`~mvae_cli.evaluate.scorers`); default: decode, then score.
        workers: threads working on chunks (:func:`run_parallel`); default: torch's thread
            count on CPU, 1 on CUDA. Each holds one chunk in memory.
        sink: ``sink((e0, e1, k0, k1), log_w [P, T, e1 − e0, k1 − k0])`` per chunk (from worker
            threads) instead of filling the ``[P, T, B, K]`` tensor: what
            :func:`~mvae_cli.evaluate.streaming.importance_statistics` uses to keep memory independent of K.

    Returns:
        ``[P, T, B, K]`` log weights (None with a ``sink``); :func:`log_mean_exp` over the last
        dimension gives log p̂(targets) ``[P, T, B]``.
    """
    names = list(model.names)
    needed = sorted({n for t in targets for n in t}, key=names.index)
    scorers = {n: (scorers or {}).get(n) or default_scorer(model, n) for n in needed}
    first = next(iter(batch.values()))
    B = first.shape[0]
    if expert_params is None:
        used = {n for p in proposals for n in p}
        shown = torch.tensor([n in used for n in names], device=first.device)
        expert_params = model.encode(batch, shown.expand(B, -1))
    dtype, device = expert_params[0].dtype, expert_params[0].device
    out = None
    if sink is None:
        out = torch.empty(len(proposals), len(targets), B, particles, dtype=dtype, device=device)

        def sink(chunk, log_w):
            e0, e1, k0, k1 = chunk
            out[:, :, e0:e1, k0:k1] = log_w

    posteriors = [model.posterior(batch, list(p), experts=expert_params) for p in proposals]
    context = model.decoder_context(batch)  # [B, C] for a conditional decoder (CVAE), else None

    def run_chunk(chunk: tuple[int, int, int, int]) -> None:
        e0, e1, k0, k1 = chunk
        with torch.inference_mode():  # thread-local: set again in worker threads
            eps = torch.stack([particle_noise(seed, first_index + e, particles, model.latent_dim, dtype, device, k0, k1)
                               for e in range(e0, e1)])  # [E, k, D]
            log_w = torch.empty(len(proposals), len(targets), e1 - e0, k1 - k0, dtype=dtype, device=device)
            for p, posterior in enumerate(posteriors):
                q = posterior.rows(e0, e1)
                z = q.rsample(eps, k0, particles)  # [E, k, D]
                log_prior_ratio = model.prior_log_prob(z) - q.log_prob(z)  # [E, k]
                stratum = q.particle_log_weights(k1 - k0, k0, particles)
                if stratum is not None:
                    log_prior_ratio = log_prior_ratio + stratum
                if context is not None:
                    z = torch.cat([z, context[e0:e1, None].to(z.dtype).expand(-1, z.shape[1], -1)], dim=-1)
                lls = {n: scorers[n](z, batch[n][e0:e1]) for n in needed}  # each decoder once per particle
                for t, target in enumerate(targets):
                    log_w[p, t] = sum((lls[n] for n in target), log_prior_ratio)
            sink(chunk, log_w)

    if workers is None:
        workers = torch.get_num_threads() if device.type == "cpu" else 1
    run_parallel(run_chunk, list(_chunks(B, particles, chunk_rows)), workers)
    return out


def run_parallel(fn, items: list, workers: int) -> None:
    """``fn(item)`` for every item, on ``workers`` threads of single-threaded torch ops.

    On CPU, independent chunks on their own threads beat one chunk at a time on OpenMP's
    threads: no barrier per operation, so a core taken by another process slows one worker
    instead of stalling every operation (measured in docs/performance.md).
    torch's intra-op thread count is set to 1 meanwhile and restored afterwards.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(min(workers, len(items))) as pool:
            for _ in pool.map(fn, items):
                pass
    finally:
        torch.set_num_threads(previous)


@torch.inference_mode()
def log_prior_predictive(
    model,
    batch: dict[str, torch.Tensor],
    names: Sequence[str],
    z_prior: torch.Tensor,
    *,
    chunk_rows: int,
) -> torch.Tensor:
    """log p(y_b | z_s) summed over the modalities ``names``, for prior samples z_s shared by all examples.

    This is the estimator with the prior as proposal (q = p(z), so log w = log p(y | z)),
    with one set of S particles for the whole batch: each decoder runs once per sample,
    not once per example and sample. log p̂(y_b) = :func:`log_mean_exp` of row b.

    Args:
        batch: ``{name: [B, ...]}``.
        names: the modalities of y.
        z_prior: ``[S, D]`` draws of p(z) (:func:`prior_noise`), on the model's device.
        chunk_rows: prior samples decoded at once.

    Returns:
        ``[B, S]`` log weights.
    """
    B = batch[names[0]].shape[0]
    S = z_prior.shape[0]
    # The generic path (model.log_prob) expands every (example, sample) pair; the closed forms only the samples.
    closed = not any(likelihood_of(model, n).copies_x for n in names)
    step = chunk_rows if closed else max(1, chunk_rows // B)
    out = z_prior.new_zeros(B, S)
    for s0 in range(0, S, step):
        s1 = min(S, s0 + step)
        for n in names:
            params = model.decode(n, z_prior[s0:s1])
            out[:, s0:s1] += shared_log_prob(model, n, params, batch[n])
    return out
