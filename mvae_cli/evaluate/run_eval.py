"""Evaluate a trained run: the MVAE paper's Tables 2–5 and label accuracy, written to ``eval.json``.

For the primary modality x and the others y, under the two proposals q(z|x) and
q(z|x,y) (one set of particles per proposal serves every target):

- log p(x) and log p(x, y) (Eqs. 5, 6 and their joint analogues);
- log p(x|y) = log p(x, y) − log p(y), with log p(y) = log E_p(z)[p(y|z)] from prior
  samples shared by every example (Eq. 7);
- the variance of the log importance weights of the marginal, joint and conditional
  targets (Tables 4 and 5): per example over the K particles, averaged over examples.
  The conditional log weights are the joint ones minus log p̂(y), a constant per
  example, so their variance equals the joint one's under the same particles;
- accuracy of every categorical, binary and sequence modality of y predicted from x
  alone, decoded at the mean of q(z|x) (:mod:`~mvae_cli.evaluate.accuracy`).

Each likelihood figure is the mean over examples, its standard error and the mean
effective sample size (Σw)²/Σw² of its weights. The library never prints: progress goes
to a callback ``progress(done, total)`` in examples.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from mvae_cli.atomic import write_json
from mvae_cli.data.format import read_dataset
from mvae_cli.engine.data import SplitData
from mvae_cli.engine.device import autocast_networks, memory_budget, select_device
from mvae_cli.engine.run import latest_run, load_trained, read_config
from mvae_cli.errors import UserError
from mvae_cli.evaluate.accuracy import AccuracyTally, attribute_names, posterior_mean
from mvae_cli.evaluate.estimator import (
    chunk_rows_for,
    effective_sample_size,
    log_importance_weights,
    log_mean_exp,
    log_prior_predictive,
    prior_noise,
)
from mvae_cli.evaluate.scorers import scorers as build_scorers

EVAL_FILE = "eval.json"
SPLITS = ("test", "valid")
CHECKPOINTS = ("best", "last")
# Default budget: this fraction of free RAM (CPU) or free GPU memory.
MEMORY_FRACTION = 0.25
# (example, particle) rows per example batch when --batch-size is not given.
ROWS_PER_BATCH = 262_144
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "T": 1 << 40, "TB": 1 << 40}

Progress = Callable[[int, int], None]


def parse_size(text: str | int) -> int:
    """``"2GB"``, ``"512M"``, ``"1.5g"`` or a number of bytes → bytes (binary units).

    Raises:
        UserError: not a positive size.
    """
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).upper().replace("IB", "B") if match else None
        if not match or unit not in _UNITS:
            raise UserError(f"--max-memory: {text!r} is not a size (give e.g. 2GB, 512MB or a number of bytes)")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise UserError(f"--max-memory must be positive, got {text!r}")
    return value


def resolve_modalities(specs, x: str | None, y: Sequence[str] | None) -> tuple[str, list[str]]:
    """x (default: the first image modality, else the first) and y (default: every other modality).

    Raises:
        UserError: an unknown name, x also in y, or no modality left for y.
    """
    names = [s.name for s in specs]
    known = ", ".join(names)
    if x is None:
        x = next((s.name for s in specs if s.kind == "image"), names[0])
    elif x not in names:
        raise UserError(f"--x: unknown modality {x!r} (known: {known})")
    if y is None:
        y = [n for n in names if n != x]
    else:
        y = list(dict.fromkeys(y))
        for name in y:
            if name not in names:
                raise UserError(f"--y: unknown modality {name!r} (known: {known})")
        if x in y:
            raise UserError(f"--y must not contain x ({x!r}); y is conditioned on, x is scored")
    if not y:
        raise UserError(f"nothing to condition on: y is empty (modalities: {known}); eval needs two or more")
    return x, y


def _stats(values: np.ndarray, ess: np.ndarray) -> dict[str, float]:
    n = values.shape[0]
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {"mean": float(values.mean()), "se": se, "ess": float(ess.mean())}


def evaluate_model(
    model,
    data: SplitData,
    *,
    x: str,
    y: Sequence[str],
    particles: int = 1000,
    prior_samples: int = 5000,
    seed: int = 0,
    limit: int | None = None,
    budget_bytes: int,
    batch_size: int | None = None,
    chunk_rows: int | None = None,
    progress: Progress | None = None,
    attributes: dict[str, list[str]] | None = None,
) -> dict:
    """Every figure of ``eval.json`` except the run's metadata, for the first ``limit`` examples of ``data``.

    Args:
        model: a :class:`~mvae_cli.model.model.MultimodalVAE` in eval mode, on ``data.device``.
        data: the split.
        x, y: the scored modality and the conditioning ones.
        particles: K per example and proposal.
        prior_samples: S for log p(y).
        seed: seeds every noise stream (results do not depend on chunk or batch size).
        limit: evaluate the first N examples only.
        budget_bytes: memory for one chunk of (example, particle) rows.
        batch_size: examples per batch (default: about 262,144 rows' worth).
        chunk_rows: rows decoded at once (default: from ``budget_bytes``).
        progress: ``progress(done, total)`` in examples.
        attributes: names of the attributes of binary modalities (:func:`~mvae_cli.evaluate.accuracy.attribute_names`);
            default indices.

    Returns:
        ``{"n_examples", "log_px", "log_pxy", "log_px_given_y", "var_log_w", "accuracy"}``.
    """
    y = list(y)
    n = data.n if limit is None else min(limit, data.n)
    if n < 1:
        raise UserError("the split has no examples to evaluate")
    scored = [x, *y]
    proposals = [[x], scored]
    names = ["+".join(p) for p in proposals]
    workers = torch.get_num_threads() if data.device.type == "cpu" else 1
    if chunk_rows is None:
        chunk_rows = chunk_rows_for(model, scored, budget_bytes, data.device, workers)
    if batch_size is None:
        batch_size = max(1, ROWS_PER_BATCH // particles)
    dtype = next(model.parameters(), torch.zeros(())).dtype
    scorers = build_scorers(model, scored, data.device, rows_hint=chunk_rows)
    z_prior = prior_noise(seed, prior_samples, model.latent_dim, dtype, data.device)
    tally = AccuracyTally(model.specs, y, attributes)
    shown = torch.tensor([name in scored for name in model.names], device=data.device)

    est, ess, var, var_cond, log_py = [], [], [], [], []
    report = progress or (lambda done, total: None)
    report(0, n)
    for start in range(0, n, batch_size):
        batch = data.batch(torch.arange(start, min(start + batch_size, n)))
        with torch.inference_mode():
            experts = model.encode(batch, shown.expand(batch["mask"].shape[0], -1))
            log_w = log_importance_weights(model, batch, proposals, proposals, particles, seed=seed,
                                           first_index=start, chunk_rows=chunk_rows, expert_params=experts,
                                           scorers=scorers, workers=workers)
            lpy = log_mean_exp(log_prior_predictive(model, batch, y, z_prior, chunk_rows=chunk_rows))  # [B]
            est.append(log_mean_exp(log_w).double().cpu())  # [P, T, B]
            ess.append(effective_sample_size(log_w).double().cpu())
            var.append(log_w.var(dim=-1, correction=0).double().cpu())
            var_cond.append((log_w[:, 1] - lpy[:, None]).var(dim=-1, correction=0).double().cpu())  # [P, B]
            log_py.append(lpy.double().cpu())
            if tally:
                tally.add(model, batch, posterior_mean(model, experts, [x]))
        report(min(start + batch_size, n), n)

    est, ess, var = (torch.cat(t, dim=-1).numpy() for t in (est, ess, var))
    var_cond, log_py = torch.cat(var_cond, dim=-1).numpy(), torch.cat(log_py).numpy()
    return {
        "n_examples": n,
        "log_px": {name: _stats(est[p, 0], ess[p, 0]) for p, name in enumerate(names)},
        "log_pxy": {name: _stats(est[p, 1], ess[p, 1]) for p, name in enumerate(names)},
        "log_px_given_y": {name: _stats(est[p, 1] - log_py, ess[p, 1]) for p, name in enumerate(names)},
        "var_log_w": {
            "marginal": {name: float(var[p, 0].mean()) for p, name in enumerate(names)},
            "joint": {name: float(var[p, 1].mean()) for p, name in enumerate(names)},
            "conditional": {name: float(var_cond[p].mean()) for p, name in enumerate(names)},
        },
        "accuracy": tally.result(),
    }


def run_dataset_path(info: dict) -> Path:
    """The dataset file of a run (``run.json``): its path as given at training time where that
    still exists relative to the current directory, else its absolute path.

    Raises:
        UserError: neither exists.
    """
    path, abspath = Path(info["dataset"]["path"]), Path(info["dataset"]["abspath"])
    if path.is_file():
        return path
    if abspath.is_file():
        return abspath
    raise UserError(f"the run's dataset is gone: neither {path} nor {abspath} exists")


def evaluate_run(
    run_dir: str | Path | None = None,
    *,
    particles: int = 1000,
    prior_samples: int = 5000,
    split: str = "test",
    checkpoint: str = "best",
    limit: int | None = None,
    x: str | None = None,
    y: Sequence[str] | None = None,
    seed: int = 0,
    max_memory: int | str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    precision: str = "fp32",
    progress: Progress | None = None,
) -> dict:
    """Evaluate a run directory and write ``RUN_DIR/eval.json`` atomically.

    Args:
        run_dir: the run (default: the most recent one under ``runs/``).
        particles: K importance samples per example and proposal.
        prior_samples: S samples of p(z) for log p(y).
        split: ``test`` or ``valid``.
        checkpoint: ``best`` or ``last``.
        limit: evaluate the first N examples only.
        x: the scored modality (default: the first image modality).
        y: the conditioning modalities (default: every other one).
        seed: seeds the particles; the figures do not depend on chunk or batch size.
        max_memory: bytes (or a size such as ``"2GB"``) for one chunk of rows;
            default a quarter of free RAM or GPU memory.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: examples per batch (progress granularity).
        precision: ``fp32``, or ``bf16``: encoders and decoders under bf16 autocast (CUDA, or a
            CPU with bf16 instructions), likelihoods and log weights in float32.
        progress: ``progress(done, total)`` in examples.

    Returns:
        The contents of ``eval.json``.

    Raises:
        UserError: not a run directory, a missing checkpoint or split, an unknown
            modality, x also in y, or a value out of range.
    """
    run_dir = Path(run_dir) if run_dir is not None else latest_run()
    read_config(run_dir)  # a clear error for a directory that is not a run
    for option, value, low in (("--particles", particles, 1), ("--prior-samples", prior_samples, 1),
                               ("--limit", limit, 1), ("--batch-size", batch_size, 1)):
        if value is not None and value < low:
            raise UserError(f"{option} must be at least {low}, got {value}")
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if checkpoint not in CHECKPOINTS:
        raise UserError(f"--checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    budget = parse_size(max_memory) if max_memory is not None else None
    torch_device = select_device(device)
    if precision not in ("fp32", "bf16"):
        raise UserError(f"--precision must be fp32 or bf16, got {precision!r}")
    _, info, model = load_trained(run_dir, checkpoint, torch_device)
    model = autocast_networks(model, torch_device, precision)
    x, y = resolve_modalities(model.specs, x, y)
    budget = budget or memory_budget(torch_device, MEMORY_FRACTION)

    started = time.perf_counter()
    with read_dataset(run_dataset_path(info)) as dataset:
        if split not in dataset.sizes:
            raise UserError(f"{dataset.path} has no {split!r} split (it has: {', '.join(dataset.sizes)})")
        data = SplitData(dataset, split, torch_device, None, budget)
        figures = evaluate_model(model, data, x=x, y=y, particles=particles, prior_samples=prior_samples,
                                 seed=seed, limit=limit, budget_bytes=budget, batch_size=batch_size,
                                 progress=progress, attributes=attribute_names(dataset.attrs, model.specs))
    result = {
        "particles": particles, "prior_samples": prior_samples, "split": split, "checkpoint": checkpoint,
        "n_examples": figures.pop("n_examples"), "x": x, "y": list(y),
        "seconds": time.perf_counter() - started, **figures,
    }
    if precision != "fp32":  # fp32 evaluations keep the keys they always had
        result["precision"] = precision
    write_json(run_dir / EVAL_FILE, result)
    return result
