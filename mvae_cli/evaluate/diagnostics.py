"""Latent diagnostics of a model on a split: active units, KL and I(x; z) of each unimodal posterior.

Wires :mod:`~mvae_cli.evaluate.latent` (numbers from posterior parameters) and
:mod:`~mvae_cli.evaluate.collapse` (warnings) to the model interface: for every modality m the
model can infer from alone (``model.posterior_reason([m])`` is None), q(z | x_m) over the first
rows of a split. The same flat keys serve ``metrics.jsonl`` (per epoch, on a fixed subsample of
the valid split) and the sweep's ``results.csv`` (``eval.json``'s ``latent`` key flattened):
``latent.<m>.active_units``, ``latent.<m>.latent_dim``, ``latent.<m>.kl`` and
``latent.<m>.mutual_information``, so one function reads warnings from either.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

import torch

from mvae_cli.evaluate.collapse import Finding, latent_findings
from mvae_cli.evaluate.latent import latent_report
from mvae_cli.engine.hooks import TrainingHook
from mvae_cli.model.posterior import DiagonalGaussian, Mixture

# Rows of the valid split diagnosed after each epoch: enough for the activity variance and the
# MI estimate (bounded by log N ≈ 6.9 nats), small enough to cost little next to an epoch.
EPOCH_ROWS = 1000
# Elements of the [chunk, N, D] matrix of the MI estimate held at once (8M doubles = 64 MB):
# an eval of 10,000 examples at D = 64 takes 12 rows at a time.
MI_ELEMENTS = 8_000_000
# The per-unit numbers stay in eval.json only; metrics.jsonl and results.csv hold scalars.
_SCALARS = ("active_units", "latent_dim", "kl", "mutual_information")


def unimodal_names(model) -> list[str]:
    """The modalities q(z | x_m) is defined for, in the model's order."""
    return [m for m in model.names if model.posterior_reason([m]) is None]


def gaussian_parameters(posterior) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar) [B, D]`` of a Gaussian (or Laplace) posterior, or of a mixture with one component
    per row (a mixture given one modality is that modality's expert).

    Raises:
        ValueError: a mixture with more than one component of positive weight in some row.
    """
    if isinstance(posterior, DiagonalGaussian):
        return posterior.mu, posterior.logvar
    if isinstance(posterior, Mixture):
        finite = torch.isfinite(posterior.log_weights)
        if bool((finite.sum(dim=-1) != 1).any()):
            raise ValueError("the latent diagnostics take a single Gaussian per row, not a mixture")
        pick = finite.float().argmax(dim=-1)[:, None, None].expand(-1, 1, posterior.components.mu.shape[-1])
        return (posterior.components.mu.gather(-2, pick).squeeze(-2),
                posterior.components.logvar.gather(-2, pick).squeeze(-2))
    raise ValueError(f"unknown posterior {type(posterior).__name__}")


@torch.no_grad()
def latent_diagnostics(model, data, limit: int | None = None, batch_size: int = 1000,
                       seed: int = 0) -> dict[str, dict]:
    """Every diagnostic of each unimodal posterior over the first ``limit`` rows of a split.

    The model is put in eval mode for the pass and restored; no global random state is used
    (the MI draw has its own generator), so training and resume are unaffected.

    Args:
        model: a multimodal VAE (``names``, ``posterior``, ``posterior_reason``).
        data: a :class:`~mvae_cli.engine.data.SplitData` whose rows show every modality.
        limit: rows diagnosed (default all); at least two are needed.
        batch_size: rows encoded at once.
        seed: seeds the one z per example of the MI estimate.

    Returns:
        ``{m: {"active_units", "latent_dim", "kl", "kl_per_unit", "mutual_information"}}``,
        empty when the split has fewer than two rows or no unimodal posterior exists.
    """
    names = unimodal_names(model)
    n = data.n if limit is None else min(limit, data.n)
    if n < 2 or not names:
        return {}
    training = model.training
    model.eval()
    try:
        params: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {m: [] for m in names}
        for _, batch in data.batches(batch_size, limit=n):
            for m in names:
                mu, logvar = gaussian_parameters(model.posterior(batch, [m]))
                params[m].append((mu.float(), logvar.float()))
    finally:
        model.train(training)
    family = model.family
    report = {}
    for m in names:
        mu = torch.cat([p[0] for p in params[m]])
        logvar = torch.cat([p[1] for p in params[m]])
        report[m] = latent_report(mu, logvar, seed=seed, chunk=max(1, MI_ELEMENTS // (n * mu.shape[1])), family=family)
    return report


def flat_latent(report: Mapping[str, Mapping]) -> dict[str, float]:
    """``{"latent.<m>.<figure>": number}`` for ``metrics.jsonl`` (the per-unit KL left out)."""
    return {f"latent.{m}.{key}": float(values[key]) for m, values in report.items() for key in _SCALARS}


def findings_from_flat(values: Mapping[str, float]) -> list[Finding]:
    """Collapse findings for each posterior named in flat ``latent.<m>.*`` keys (a metrics line, a
    results row, or means over seeds); other keys are ignored."""
    found: dict[str, dict[str, float]] = {}
    for key, value in values.items():
        parts = key.split(".")
        if (len(parts) == 3 and parts[0] == "latent" and parts[2] in _SCALARS and isinstance(value, (int, float))
                and math.isfinite(value)):  # NaN: a mean over no run (a model without that posterior)
            found.setdefault(parts[1], {})[parts[2]] = float(value)
    findings = []
    for m, figures in found.items():
        if {"active_units", "latent_dim", "kl"} <= figures.keys():
            active = figures["active_units"]
            findings += latent_findings(f"q(z | {m})", int(active) if active == int(active) else round(active, 2),
                                        int(figures["latent_dim"]), figures["kl"])
    return findings


def warnings_from_flat(values: Mapping[str, float]) -> list[str]:
    """:func:`findings_from_flat`, each said in a full sentence with its remedy (``eval.json``'s
    ``latent_warnings``, unchanged since before the CLI grouped its warnings)."""
    return [f.with_remedy() for f in findings_from_flat(values)]


def eval_diagnostics(model, data, n_examples: int, seed: int = 0) -> dict:
    """``eval.json``'s ``latent`` (:func:`latent_diagnostics` on the evaluated examples) and
    ``latent_warnings`` (one line per collapsed posterior)."""
    report = latent_diagnostics(model, data, limit=n_examples, seed=seed)
    return {"latent": report, "latent_warnings": warnings_from_flat(flat_latent(report))}


def last_epoch_findings(run_dir) -> list[Finding]:
    """Collapse findings from the last line of ``run_dir/metrics.jsonl`` (none when it is missing or empty)."""
    path = Path(run_dir) / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    lines = [line for line in lines if line.strip()]
    return findings_from_flat(json.loads(lines[-1])) if lines else []


class LatentDiagnosticsHook(TrainingHook):
    """Every epoch's metrics line gets each unimodal posterior's latent activity on a fixed
    validation subsample (:data:`EPOCH_ROWS` rows): collapse shows there first."""

    def epoch_metrics(self, session) -> dict:
        return flat_latent(latent_diagnostics(session.model, session.valid_data, limit=EPOCH_ROWS))
