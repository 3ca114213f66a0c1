"""Evaluate a trained run: the MVAE paper's Tables 2–5 and label accuracy, written to ``eval.json``.

For the primary modality x and the others y, under the proposals q(z|x), q(z|x,y) and
q(z|y) (one set of particles per proposal serves every target), each that the model defines
(``model.posterior_reason``); what a model does not define (the VAE's q(z|x,y) and p(y|z),
BiVCCA's q(z|x,y)) is null in ``eval.json``, its reason under ``not_defined``, never zero:

- log p(x) and log p(x, y) (Eqs. 5, 6 and their joint analogues);
- log p(x|y) = log p(x, y) − log p(y), with log p(y) = log E_p(z)[p(y|z)] from prior
  samples shared by every example (Eq. 7);
- log p(x|y) by Eq. 7 under q(z|y), as the paper writes it, and under q(z|x) and q(z|x,y);
- the variance of the log importance weights of the marginal, joint and conditional
  targets (Tables 4 and 5) under the proposal each estimate uses: per example over the K
  particles, averaged over examples. The conditional log weights are the joint ones minus
  log p̂(y), a constant per example, so under one proposal their variance equals the joint
  one's; q(z|y) gives log p(x|y) its own;
- accuracy of every categorical, binary and sequence modality of y predicted from x
  alone, decoded at the mean of q(z|x) (``model.posterior``, :mod:`~mvae_cli.evaluate.accuracy`);
- beside it, for every y with classes, chance and a classifier trained on the paired rows
  of the run's mask only (:mod:`~mvae_cli.evaluate.baseline`): the lines the model must beat.

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

from mvae_cli.atomic import atomic_path, write_json
from mvae_cli.data.format import read_dataset
from mvae_cli.engine.data import SplitData, binarized_modalities
from mvae_cli.engine.device import autocast_networks, memory_budget, select_device
from mvae_cli.engine.run import check_dataset, latest_run, load_trained, read_config
from mvae_cli.errors import UserError
from mvae_cli.evaluate.accuracy import AccuracyTally, attribute_names, posterior_mean
from mvae_cli.evaluate.baseline import VALID_LIMIT, cached_baselines, paired_baselines
from mvae_cli.evaluate.diagnostics import eval_diagnostics
from mvae_cli.evaluate.coherence import class_modality, coherence, load_or_train_classifiers
from mvae_cli.evaluate.estimator import (
    chunk_rows_for,
    log_mean_exp,
    log_prior_predictive,
    prior_noise,
)
from mvae_cli.evaluate.latent_probe import probe_accuracy
from mvae_cli.evaluate.scorers import scorers as build_scorers
from mvae_cli.evaluate.streaming import importance_statistics

EVAL_FILE = "eval.json"
EXAMPLES_FILE = "eval_examples.npz"  # every figure per test example, for paired comparisons between runs
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
        ``{"n_examples", "log_px", "log_pxy", "log_px_given_y", "var_log_w", "accuracy", "not_defined"}``;
        each figure is keyed by proposal (``x``, ``x+y``, ``y``, modality names joined by ``+``).
    """
    y = list(y)
    n = data.n if limit is None else min(limit, data.n)
    if n < 1:
        raise UserError("the split has no examples to evaluate")
    scored = [x, *y]
    candidates = {"+".join(p): p for p in ([x], scored, y)}  # q(z|x), q(z|x,y), q(z|y) (Eq. 7)
    reasons = {name: model.posterior_reason(p) for name, p in candidates.items()}
    names = [name for name, reason in reasons.items() if reason is None]
    proposals = [candidates[name] for name in names]
    target_reasons = {"log_px": model.generation_reason([x]), "log_pxy": model.generation_reason(scored)}
    targets = [t for t, key in (([x], "log_px"), (scored, "log_pxy")) if target_reasons[key] is None]
    if model.conditional:  # p(x | z, y): the target {x} is log p(x | y) itself (CVAE)
        target_reasons["log_px"] = f"{model.model_name} models p({x} | {', '.join(y)}), not p({x})"
    y_reason = model.generation_reason(y)
    workers = torch.get_num_threads() if data.device.type == "cpu" else 1
    decoded = sorted({m for t in targets for m in t}, key=scored.index)
    if chunk_rows is None:
        chunk_rows = chunk_rows_for(model, decoded or [x], budget_bytes, data.device, workers)
    if batch_size is None:
        batch_size = max(1, ROWS_PER_BATCH // particles)
    dtype = next(model.parameters(), torch.zeros(())).dtype
    scorers = build_scorers(model, decoded, data.device, rows_hint=chunk_rows)
    z_prior = model.prior_from_noise(prior_noise(seed, prior_samples, model.latent_dim, dtype, data.device))
    predicts = model.posterior_reason([x]) is None
    tally = AccuracyTally(model.specs, [n for n in y if model.generation_reason([n]) is None] if predicts else [],
                          attributes)
    shown = torch.tensor([name in scored for name in model.names], device=data.device)
    joint = next((t for t, target in enumerate(targets) if target == scored), None)

    est, ess, var, var_cond, log_py = [], [], [], [], []
    report = progress or (lambda done, total: None)
    report(0, n)
    for start in range(0, n, batch_size):
        batch = data.batch(torch.arange(start, min(start + batch_size, n)))
        with torch.inference_mode():
            experts = model.encode(batch, shown.expand(batch["mask"].shape[0], -1))
            if proposals and targets:  # reduced chunk by chunk: memory does not grow with K
                stats = importance_statistics(model, batch, proposals, targets, particles, seed=seed,
                                              first_index=start, chunk_rows=chunk_rows, expert_params=experts,
                                              scorers=scorers, workers=workers)
                est.append(stats["log_mean_exp"])  # [P, T, B]
                ess.append(stats["ess"])
                var.append(stats["var"])
            if y_reason is None and joint is not None and proposals:
                lpy = log_mean_exp(log_prior_predictive(model, batch, y, z_prior, chunk_rows=chunk_rows))  # [B]
                # log p(x|y)'s weights are the joint ones less log p̂(y), one number per example:
                # under each proposal their variance is the joint one's
                var_cond.append(stats["var"][:, joint])  # [P, B]
                log_py.append(lpy.double().cpu())
            if tally:
                tally.add(model, batch, posterior_mean(model, experts, [x]))
        report(min(start + batch_size, n), n)

    not_defined: dict[str, str] = {}
    figures: dict = {"log_px": {}, "log_pxy": {}, "log_px_given_y": {}}
    variances: dict = {"marginal": {}, "joint": {}, "conditional": {}}
    per_example: dict[str, np.ndarray] = {}  # eval.json's path of a figure → its value per example
    if est:
        est, ess, var = (torch.cat(t, dim=-1).numpy() for t in (est, ess, var))
    if log_py:
        var_cond, log_py = torch.cat(var_cond, dim=-1).numpy(), torch.cat(log_py).numpy()
    for name, reason in reasons.items():
        p = names.index(name) if reason is None else None
        if model.conditional:
            why = reason or model.generation_reason([x])
            figures["log_px_given_y"][name] = None if why else _stats(est[p, 0], ess[p, 0])
            variances["conditional"][name] = None if why else float(var[p, 0].mean())
            if why:
                not_defined[f"log_px_given_y.{name}"] = why
            else:
                per_example[f"log_px_given_y.{name}"] = est[p, 0]
                per_example[f"var_log_w.conditional.{name}"] = var[p, 0]
        for key, var_key, target in (("log_px", "marginal", [x]), ("log_pxy", "joint", scored)):
            why = reason or target_reasons[key]
            if why is None:
                t = targets.index(target)
                figures[key][name], variances[var_key][name] = _stats(est[p, t], ess[p, t]), float(var[p, t].mean())
                per_example[f"{key}.{name}"], per_example[f"var_log_w.{var_key}.{name}"] = est[p, t], var[p, t]
            else:
                figures[key][name] = variances[var_key][name] = None
                not_defined[f"{key}.{name}"] = why
        why = reason or target_reasons["log_pxy"] or y_reason
        if model.conditional:
            continue
        if why is None:
            figures["log_px_given_y"][name] = _stats(est[p, joint] - log_py, ess[p, joint])
            variances["conditional"][name] = float(var_cond[p].mean())
            per_example[f"log_px_given_y.{name}"] = est[p, joint] - log_py
            per_example[f"var_log_w.conditional.{name}"] = var_cond[p]
        else:
            figures["log_px_given_y"][name] = variances["conditional"][name] = None
            not_defined[f"log_px_given_y.{name}"] = why
    accuracy = tally.result()
    predictable = [spec.name for spec in model.specs if spec.name in y and spec.kind in AccuracyTally.KINDS]
    if predictable and not tally:  # y has labels to predict, but the model cannot (the VAE)
        accuracy = None
        not_defined["accuracy"] = model.posterior_reason([x]) or model.generation_reason(predictable)
    return {"n_examples": n, **figures, "var_log_w": variances, "accuracy": accuracy,
            "not_defined": not_defined, "per_example": per_example}


def _baselines(run_dir: Path, recipe, dataset, test: SplitData, split: str, x: str, y: Sequence[str], n_test: int,
               budget: int, device: torch.device, binarize) -> dict:
    """Chance and the paired-only classifiers on the run's own mask (``mask.npy``), scored on the
    same ``n_test`` examples as the model; computed once per dataset file, mask and settings
    (:func:`~mvae_cli.evaluate.baseline.cached_baselines`)."""
    mask_path = Path(run_dir) / "mask.npy"
    if not mask_path.is_file():
        raise UserError(f"{run_dir} has no mask.npy (the training mask): retrain the run, or pass --no-baseline")
    mask = np.load(mask_path)
    m = recipe.model

    def compute() -> dict:
        train = SplitData(dataset, "train", device, mask, budget, binarize=binarize)
        valid = SplitData(dataset, "valid", device, None, budget, binarize=binarize)
        return paired_baselines(dataset.specs, x, y, mask, train.batch, valid.batch, min(VALID_LIMIT, valid.n),
                                test.batch, n_test, latent_dim=m.latent_dim, hidden=m.hidden,
                                image_net=m.image_net, seed=recipe.seed, device=device)

    settings = {"x": x, "y": list(y), "latent_dim": m.latent_dim, "hidden": m.hidden, "image_net": m.image_net,
                "seed": recipe.seed, "n_test": n_test, "split": split, "binarize": sorted(binarize or [])}
    return cached_baselines(dataset.path, mask, settings, compute)


PROBE_TRAIN = 1000  # training examples the latent probe is fitted on


def _class_figures(model, dataset, data: SplitData, split: str, recipe, device, budget: int, *, limit,
                   prior_samples: int, seed: int) -> dict:
    """Coherence and the latent probe (:mod:`~mvae_cli.evaluate.coherence`,
    :mod:`~mvae_cli.evaluate.latent_probe`): null, with the reason under ``not_defined``, for a
    dataset without a class modality or a training split."""
    if class_modality(model.specs) is None or "train" not in dataset.sizes or "test" not in dataset.sizes:
        why = "the dataset has no categorical (class) modality" if class_modality(model.specs) is None else \
            "the dataset has no train and test splits to fit the classifiers on"
        return {"coherence": None, "probe": None, "not_defined_class": why}
    binarize = binarized_modalities(recipe.data.binarize, model)
    train = SplitData(dataset, "train", device, None, budget, binarize=binarize)
    test = data if split == "test" else SplitData(dataset, "test", device, None, budget, binarize=binarize)
    classifiers, ceiling = load_or_train_classifiers(dataset.path, train, test, dataset.specs, device)
    figures = coherence(model, data, classifiers, limit=limit, prior_samples=min(prior_samples, 1000), seed=seed)
    return {"coherence": {**figures, "classifier_accuracy": ceiling},
            "probe": probe_accuracy(model, train, data, n_train=PROBE_TRAIN, limit=limit)}


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
    baseline: bool = True,
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
        baseline: also train the paired-only classifiers and report chance
            (:func:`~mvae_cli.evaluate.baseline.paired_baselines`).

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
    recipe, info, model = load_trained(run_dir, checkpoint, torch_device)
    model = autocast_networks(model, torch_device, precision)
    x, y = resolve_modalities(model.specs, x, y)
    budget = budget or memory_budget(torch_device, MEMORY_FRACTION)

    started = time.perf_counter()
    check_dataset(run_dir, info, run_dataset_path(info))
    with read_dataset(run_dataset_path(info)) as dataset:
        if split not in dataset.sizes:
            raise UserError(f"{dataset.path} has no {split!r} split (it has: {', '.join(dataset.sizes)})")
        binarize = binarized_modalities(recipe.data.binarize, model)
        data = SplitData(dataset, split, torch_device, None, budget, binarize=binarize)
        timings, lap = {}, [started]

        def timed(part: str) -> None:  # seconds since the previous part ended
            now = time.perf_counter()
            timings[part], lap[0] = now - lap[0], now

        figures = evaluate_model(model, data, x=x, y=y, particles=particles, prior_samples=prior_samples,
                                 seed=seed, limit=limit, budget_bytes=budget, batch_size=batch_size,
                                 progress=progress, attributes=attribute_names(dataset.attrs, model.specs))
        timed("likelihoods")
        figures.update(eval_diagnostics(model, data, figures["n_examples"], seed))  # "latent", "latent_warnings"
        timed("latent_diagnostics")
        if baseline:
            figures.update(_baselines(run_dir, recipe, dataset, data, split, x, y, figures["n_examples"], budget,
                                      torch_device, binarize))
            timed("baseline")
        figures.update(_class_figures(model, dataset, data, split, recipe, torch_device, budget, limit=limit,
                                      prior_samples=prior_samples, seed=seed))
        timed("coherence_and_probe")  # the coherence classifiers' first training too
    class_reason = figures.pop("not_defined_class", None)
    if class_reason:
        figures["not_defined"].update({"coherence": class_reason, "probe": class_reason})
    result = {
        "particles": particles, "prior_samples": prior_samples, "split": split, "checkpoint": checkpoint,
        "n_examples": figures.pop("n_examples"), "x": x, "y": list(y),
        "seconds": time.perf_counter() - started, "seconds_by_part": timings, **figures,
    }
    if precision != "fp32":  # fp32 evaluations keep the keys they always had
        result["precision"] = precision
    per_example = result.pop("per_example")
    with atomic_path(run_dir / EXAMPLES_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, split=np.array(split), n_examples=np.array(result["n_examples"]),
                 **{key: np.asarray(values, dtype=np.float64) for key, values in per_example.items()})
    write_json(run_dir / EVAL_FILE, result)
    return result
