"""Which rows of a batch show what, found on the host: no device sync inside a training step.

Every shape in a training step that follows the mask (the rows an encoder runs on, the (example,
subset) rows of an objective, the rows a decoder scores) is computed here in numpy from the batch's
mask on the host, and only index tensors of those known sizes go to the device. The engine hands
the host copy over with the batch (:func:`with_host_mask`); any other caller (validation, the
estimator, tests) gets it copied back from the device once per call.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np
import torch

HOST_MASK = "host_mask"  # the batch key of the host copy of ``batch["mask"]``


def with_host_mask(batch: dict[str, torch.Tensor], mask: np.ndarray) -> dict:
    """``batch`` with the host copy ``mask bool [B, M]`` of its ``batch["mask"]``."""
    return {**batch, HOST_MASK: np.ascontiguousarray(mask, dtype=bool)}


def host_mask(batch: dict | None, mask: torch.Tensor) -> np.ndarray:
    """The host copy of ``mask``: the batch's own when ``mask`` is ``batch["mask"]``, else copied back."""
    if isinstance(batch, dict) and batch.get("mask") is mask and HOST_MASK in batch:
        return batch[HOST_MASK]
    return mask.detach().cpu().numpy().astype(bool)


def index(rows: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Host row numbers ``[R]`` as a device ``long`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)).to(device, non_blocking=True)


def where(column: np.ndarray, device: torch.device | str) -> torch.Tensor | None:
    """The rows where the host ``column bool [B]`` holds, as a device index; None when it holds everywhere
    (an empty column holds nowhere: a batch without a fully shown example gives the CVAE no row)."""
    if column.size and column.all():
        return None
    return index(np.flatnonzero(column), device)


def cells(mask: np.ndarray, columns: list[int]) -> tuple[list[np.ndarray], np.ndarray]:
    """For each of ``columns`` of the host ``mask bool [R, M]``, the rows where it holds; and all
    their cells ``row · M + column``, one column's after another's (where a network's outputs go in
    an ``[R, M, ...]`` table, :func:`place`)."""
    rows = [np.flatnonzero(mask[:, j]) for j in columns]
    return rows, np.concatenate([r * mask.shape[1] + j for r, j in zip(rows, columns)])


def place(values: torch.Tensor, at: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A zero ``[*shape, ...]`` table holding ``values [K, ...]`` at its flat cells ``at long [K]``."""
    rest = values.shape[1:]
    return values.new_zeros(shape[0] * shape[1], *rest).index_copy(0, at, values).view(*shape, *rest)


def as_device(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """A host array on the device (bool, int or float as it is)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


def host(array: "np.ndarray | torch.Tensor") -> np.ndarray:
    """A host array as it is; a tensor copied to the host (library callers outside a training step)."""
    return array.detach().cpu().numpy() if torch.is_tensor(array) else array


# --- A stack of runs (mvae_cli.engine.stack): the examples of N runs in one batch ---------------------------
#
# Run r's examples are the rows starts[r]:starts[r + 1] of the batch. Every host plan (the
# objectives' random subsets) is made per run from that run's own numpy stream, every row set is
# ordered run-major, the noise of each run's rows is drawn from that run's own torch generator, and
# a stacked network (mvae_cli.model.stack) reads which run each of its rows belongs to from
# :func:`computing`. A batch without these keys is one run, as everywhere else.

RUN_STARTS = "run_starts"  # batch key: host int64 [N + 1], the first example of each run, then B
RUN_RNG = "run_rng"  # batch key: per run (torch.Generator, numpy RandomState), its own noise streams

_ROW_RUNS: contextvars.ContextVar = contextvars.ContextVar("row_runs", default=None)


def with_runs(batch: dict, starts: np.ndarray, generators: list) -> dict:
    """``batch`` (the runs' examples one run after another) marked as a stack of ``len(starts) - 1`` runs."""
    return {**batch, RUN_STARTS: np.asarray(starts, dtype=np.int64), RUN_RNG: list(generators)}


def run_starts(batch: dict | None) -> np.ndarray | None:
    """The stack's ``int64 [N + 1]`` run boundaries, None for a batch of one run."""
    return batch.get(RUN_STARTS) if isinstance(batch, dict) else None


def run_of(batch: dict, examples: np.ndarray) -> np.ndarray:
    """The run of each of ``examples int [R]`` (host) in a stacked batch: ``int64 [R]``."""
    return np.searchsorted(run_starts(batch), examples, side="right") - 1


def plan_per_run(batch: dict | None, mask: np.ndarray, plan) -> tuple[np.ndarray, ...]:
    """A host plan of rows made per run: ``plan(mask_r, numpy_rng) -> (example int [R_r], *arrays)``.

    One run: ``plan(mask, np.random)`` (numpy's global stream, seeded by the engine and saved in
    its checkpoints). A stack: each run's plan from its own mask rows and stream, its examples
    shifted to the stack's, concatenated run after run.
    """
    starts = run_starts(batch)
    if starts is None:
        return plan(mask, np.random)
    parts = [plan(mask[a:b], batch[RUN_RNG][r][1]) for r, (a, b) in enumerate(zip(starts[:-1], starts[1:]))]
    example = np.concatenate([part[0] + a for part, a in zip(parts, starts[:-1])])
    return (example, *(np.concatenate([part[i] for part in parts]) for i in range(1, len(parts[0]))))


@contextlib.contextmanager
def computing(batch: dict | None, examples: np.ndarray | None):
    """The rows a network is about to run on are ``examples`` (host ``int [R]``; None: every example)
    of ``batch``; a stacked network reads their runs (:func:`current_row_runs`). Nothing for one run."""
    starts = run_starts(batch)
    if starts is None:
        yield
        return
    examples = np.arange(starts[-1]) if examples is None else examples
    token = _ROW_RUNS.set(run_of(batch, examples))
    try:
        yield
    finally:
        _ROW_RUNS.reset(token)


def current_row_runs() -> np.ndarray | None:
    """The run of each row of the network call in progress (:func:`computing`), None outside a stack."""
    return _ROW_RUNS.get()


def normal_noise(batch: dict | None, examples: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """Standard-normal noise shaped as ``like [R, ...]`` for rows of ``examples`` (host ``int [R]``).

    One run: ``torch.randn_like(like)`` (the global stream). A stack: each run's rows (run-major,
    as :func:`plan_per_run` orders them) drawn from that run's own generator, so a run of a stack
    draws what it would draw alone.
    """
    starts = run_starts(batch)
    if starts is None:
        return torch.randn_like(like)
    runs = run_of(batch, examples)
    if runs.size and np.any(np.diff(runs) < 0):
        raise ValueError("the rows of a stacked batch must be ordered run after run")
    counts = np.bincount(runs, minlength=starts.size - 1)
    parts = [torch.randn((int(c), *like.shape[1:]), generator=batch[RUN_RNG][r][0], dtype=like.dtype,
                         device=like.device) for r, c in enumerate(counts) if c]
    return torch.cat(parts) if parts else torch.randn_like(like)


def stack_batches(batches: list[dict], generators: list) -> dict:
    """The batches of N runs (each with its host mask, :func:`with_host_mask`) as one stacked batch,
    run ``r`` drawing its noise from ``generators[r] = (torch.Generator, numpy RandomState)``."""
    keys = [key for key, value in batches[0].items() if torch.is_tensor(value)]
    batch = {key: torch.cat([b[key] for b in batches]) for key in keys}
    sizes = [b["mask"].shape[0] for b in batches]
    batch[HOST_MASK] = np.concatenate([host_mask(b, b["mask"]) for b in batches])
    return with_runs(batch, np.concatenate([[0], np.cumsum(sizes)]), generators)
