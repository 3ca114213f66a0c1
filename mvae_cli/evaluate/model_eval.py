"""A model's figures of ``eval.json``: its plan (:mod:`~mvae_cli.evaluate.plan`) computed, then assembled.

:func:`estimate` runs the plan over the split batch by batch: one importance-sampling pass
gives every (proposal, target) pair's log p̂, effective sample size and variance of the log
weights per example, reduced chunk by chunk so memory does not grow with K; log p̂(y) comes
from prior samples shared by every example (Eq. 7); accuracy is tallied at the mean of
q(z|x). :func:`assemble` reads each planned figure off those arrays: the mean over examples,
its standard error and the mean effective sample size; the mean variance of its log weights;
null with its reason under ``not_defined`` where the plan says it is not defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from mvae_cli.engine.data import SplitData
from mvae_cli.errors import UserError
from mvae_cli.evaluate.accuracy import AccuracyTally, posterior_mean
from mvae_cli.evaluate.estimator import chunk_rows_for, log_mean_exp, log_prior_predictive, prior_noise
from mvae_cli.evaluate.plan import FAMILIES, VARIANCE, EvalPlan
from mvae_cli.evaluate.scorers import scorers as build_scorers
from mvae_cli.evaluate.streaming import importance_statistics
from mvae_cli.recipe import EvalConfig

ROWS_PER_BATCH = 262_144  # (example, particle) rows per example batch when no batch size is given

Progress = Callable[[int, int], None]


@dataclass
class Estimates:
    """What :func:`estimate` computed for the first ``n`` examples.

    ``log_mean_exp``, ``ess`` and ``var`` are ``[P, T, n]`` float64 (proposal, target, example;
    None where the plan estimates nothing); ``log_py`` is ``[n]`` (None where no figure needs it).
    """

    n: int
    log_mean_exp: np.ndarray | None
    ess: np.ndarray | None
    var: np.ndarray | None
    log_py: np.ndarray | None
    accuracy: dict[str, float]


def estimate(plan: EvalPlan, model, data: SplitData, config: EvalConfig, *, budget_bytes: int,
             batch_size: int | None = None, chunk_rows: int | None = None, progress: Progress | None = None,
             attributes: dict[str, list[str]] | None = None) -> Estimates:
    """Compute what ``plan`` asks for on the first ``config.limit`` examples of ``data``.

    Args:
        plan: from :func:`~mvae_cli.evaluate.plan.plan_evaluation` for ``model``.
        model: a :class:`~mvae_cli.model.model.MultimodalVAE` in eval mode, on ``data.device``.
        data: the split.
        config: ``particles`` (K per example and proposal), ``prior_samples`` (S for log p(y)),
            ``seed`` (every noise stream: the figures do not depend on chunk or batch size) and ``limit``.
        budget_bytes: memory for one chunk of (example, particle) rows.
        batch_size: examples per batch (default: about 262,144 rows' worth).
        chunk_rows: rows decoded at once (default: from ``budget_bytes``).
        progress: ``progress(done, total)`` in examples.
        attributes: names of the attributes of binary modalities
            (:func:`~mvae_cli.evaluate.accuracy.attribute_names`); default indices.

    Raises:
        UserError: the split has no examples.
    """
    n = data.n if config.limit is None else min(config.limit, data.n)
    if n < 1:
        raise UserError("the split has no examples to evaluate")
    workers = torch.get_num_threads() if data.device.type == "cpu" else 1
    if plan.estimates and chunk_rows is None:
        chunk_rows = chunk_rows_for(model, plan.decoded, budget_bytes, data.device, workers)
    if batch_size is None:
        batch_size = max(1, ROWS_PER_BATCH // config.particles)
    scorers = build_scorers(model, plan.decoded, data.device, rows_hint=chunk_rows) if plan.estimates else {}
    if plan.needs_log_py:
        dtype = next(model.parameters(), torch.zeros(())).dtype
        noise = prior_noise(config.seed, config.prior_samples, model.latent_dim, dtype, data.device)
        z_prior = model.prior_from_noise(noise)
    tally = AccuracyTally(model.specs, plan.predicted, attributes)
    shown = torch.tensor([name in (plan.x, *plan.y) for name in model.names], device=data.device)
    proposals = list(plan.proposals.values())
    parts: dict[str, list[torch.Tensor]] = {"log_mean_exp": [], "ess": [], "var": [], "log_py": []}
    report = progress or (lambda done, total: None)
    report(0, n)
    for start in range(0, n, batch_size):
        batch = data.batch(torch.arange(start, min(start + batch_size, n)))
        with torch.inference_mode():
            experts = model.encode(batch, shown.expand(batch["mask"].shape[0], -1))
            if plan.estimates:  # reduced chunk by chunk: memory does not grow with K
                stats = importance_statistics(model, batch, proposals, plan.targets, config.particles,
                                              seed=config.seed, first_index=start, chunk_rows=chunk_rows,
                                              expert_params=experts, scorers=scorers, workers=workers)
                for key in ("log_mean_exp", "ess", "var"):
                    parts[key].append(stats[key])  # [P, T, B]
            if plan.needs_log_py:
                lpy = log_prior_predictive(model, batch, plan.y, z_prior, chunk_rows=chunk_rows)  # [B, S]
                parts["log_py"].append(log_mean_exp(lpy).double().cpu())
            if tally:
                tally.add(model, batch, posterior_mean(model, experts, [plan.x]))
        report(min(start + batch_size, n), n)
    arrays = {key: torch.cat(values, dim=-1).numpy() if values else None for key, values in parts.items()}
    return Estimates(n, **arrays, accuracy=tally.result())


def _stats(values: np.ndarray, ess: np.ndarray) -> dict[str, float]:
    n = values.shape[0]
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {"mean": float(values.mean()), "se": se, "ess": float(ess.mean())}


def assemble(plan: EvalPlan, estimates: Estimates) -> dict:
    """The model's part of ``eval.json`` from ``estimates`` of ``plan``.

    Returns:
        ``{"n_examples", "log_px", "log_pxy", "log_px_given_y", "var_log_w", "accuracy", "not_defined",
        "per_example"}``; each figure is keyed by proposal name, ``per_example`` by the figure's path
        (``log_px.image``, ``var_log_w.joint.image+label``) with its value per example ``[n]``.
    """
    figures: dict[str, dict] = {family: {} for family in FAMILIES}
    variances: dict[str, dict] = {kind: {} for kind in VARIANCE.values()}
    not_defined: dict[str, str] = {}
    per_example: dict[str, np.ndarray] = {}
    for figure in plan.figures:
        variance = VARIANCE[figure.family]
        if figure.at is None:
            figures[figure.family][figure.proposal] = variances[variance][figure.proposal] = None
            not_defined[figure.path] = figure.reason
            continue
        values = estimates.log_mean_exp[figure.at]
        if figure.less_log_py:  # the log weights shift by log p̂(y), one number per example: the same variance
            values = values - estimates.log_py
        var = estimates.var[figure.at]
        figures[figure.family][figure.proposal] = _stats(values, estimates.ess[figure.at])
        variances[variance][figure.proposal] = float(var.mean())
        per_example[figure.path], per_example[f"var_log_w.{variance}.{figure.proposal}"] = values, var
    accuracy = estimates.accuracy
    if plan.accuracy_reason:  # y has labels to predict, but the model cannot (the VAE)
        accuracy = None
        not_defined["accuracy"] = plan.accuracy_reason
    return {"n_examples": estimates.n, **figures, "var_log_w": variances, "accuracy": accuracy,
            "not_defined": not_defined, "per_example": per_example}


def evaluate_model(model, data: SplitData, plan: EvalPlan, config: EvalConfig, **options) -> dict:
    """Every figure of ``eval.json`` except the run's metadata and the class figures: ``plan``
    estimated (:func:`estimate`, which takes ``options``) and assembled (:func:`assemble`)."""
    return assemble(plan, estimate(plan, model, data, config, **options))
