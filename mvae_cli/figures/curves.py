"""Figures of one run: training curves from ``metrics.jsonl`` and its sample grid.

Each modality keeps one colour in every panel (its log-likelihood, its posterior's activity, KL
and information), the ELBO terms are black in three line styles, and the figure has one legend.
The training figures are per training row over the modalities its mask shows, the validation
ELBO per example over all of them: at a low supervision level most training rows show a single
modality, so the two sit on very different scales, and the panels say so. A constant β is said
in the title instead of drawn.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from mvae_cli.atomic import atomic_path, write_text
from mvae_cli.errors import UserError
from mvae_cli.figures.draw import save_figure
from mvae_cli.figures.style import MEAN, colour
from mvae_cli.tables.results import csv_text

# Bookkeeping columns of metrics.jsonl that are not curves of the model.
_NOT_CURVES = {"epoch", "step", "seconds", "examples_per_s", "peak_memory_mb"}
_ELBO_TERMS = {"elbo_full": ("all observed modalities", "-"), "elbo_single": ("each single modality", "--"),
               "elbo_subset": ("random subsets (k)", ":")}
_LATENT_PANELS = (("active_units", "Active units of q(z | m) (Cov E[z] > 0.01)", "active units"),
                  ("kl", "KL(q(z | m) ‖ p(z))", "KL [nats]"),
                  ("mutual_information", "I(x_m; z) estimate", "I [nats]"))


def read_metrics(run_dir: Path) -> list[dict]:
    """The per-epoch lines of ``run_dir/metrics.jsonl``.

    Raises:
        UserError: the file is missing, damaged or empty.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl: train it with `mvae train` first")
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError:
        raise UserError(f"{path} is damaged: a line is not JSON") from None
    if not lines:
        raise UserError(f"{path} is empty: the run has not finished an epoch yet")
    return lines


def _beta_title(lines: list[dict]) -> str:
    """"annealed" only when β changed over the run."""
    betas = {line["beta"] for line in lines if isinstance(line.get("beta"), (int, float))}
    if len(betas) == 1:
        return f"β: weight of the KL term (constant, {betas.pop():g})"
    return "β: weight of the KL term (annealed)"


def _constant_beta(lines: list[dict]) -> float | None:
    betas = {line["beta"] for line in lines if isinstance(line.get("beta"), (int, float))}
    return betas.pop() if len(betas) == 1 else None


def curve_panels(lines: list[dict], image_modalities: set[str]) -> list[tuple[str, str, dict[str, str]]]:
    """``(title, y label, {metric: legend label})`` per panel, for the metrics present (β among them,
    also when constant: :func:`plot_run` leaves a constant β to the title)."""
    present = [k for k in lines[0] if k not in _NOT_CURVES and isinstance(lines[0][k], (int, float))]
    panels = [("Training loss (negative sum of the ELBO terms)", "loss per training row [nats]", {"loss": "train"}),
              ("Validation ELBO (every modality, β = 1)", "ELBO per valid example [nats]", {"valid_elbo": "valid"}),
              ("Training ELBO terms", "ELBO per training row [nats]",
               {k: v[0] for k, v in _ELBO_TERMS.items() if k in present}),
              ("KL divergence from the prior", "KL [nats]", {"kl": "KL(q(z | observed) ‖ p(z))"}),
              ("Log-likelihood, image modalities", "log p(x | z) per training row [nats]",
               {k: k[len("log_lik_"):] for k in present if k.startswith("log_lik_")
                and k[len("log_lik_"):] in image_modalities}),
              ("Log-likelihood, other modalities", "log p(y | z) per training row [nats]",
               {k: k[len("log_lik_"):] for k in present if k.startswith("log_lik_")
                and k[len("log_lik_"):] not in image_modalities}),
              (_beta_title(lines), "β", {"beta": "β"}),
              # the latent diagnostics (latent.<m>.<figure>), one line per unimodal posterior
              *[(title, ylabel, {k: k.split(".")[1] for k in present
                                 if k.startswith("latent.") and k.endswith("." + figure)})
                for figure, title, ylabel in _LATENT_PANELS]]
    known = {k for _, _, series in panels for k in series}
    panels += [(k, k, {k: k}) for k in present if k not in known and k not in _ELBO_TERMS
               and not (k.startswith("latent.") and k.endswith(".latent_dim"))]
    return [(title, ylabel, {k: v for k, v in series.items() if k in present})
            for title, ylabel, series in panels if any(k in present for k in series)]


def _paired_share(run_dir: Path) -> float | None:
    """The share of training rows that show every modality (``mask.npy``), or None without it."""
    try:
        mask = np.load(run_dir / "mask.npy")
    except (OSError, ValueError):
        return None
    return float(mask.all(axis=1).mean()) if mask.ndim == 2 and len(mask) else None


def _run_modalities(run_dir: Path) -> list[dict]:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("modalities", [])
    except (OSError, ValueError):
        return []


def run_figure(run_dir: str | Path) -> tuple[Figure, list[str], list[dict]]:
    """The training curves of a run as one figure (see the module docstring).

    Returns:
        The figure, the metrics drawn (its CSV's columns after ``epoch``) and the metrics lines.
    """
    run_dir = Path(run_dir)
    lines = read_metrics(run_dir)
    modalities = _run_modalities(run_dir)
    names = [m["name"] for m in modalities]
    images = {m["name"] for m in modalities if m.get("kind") == "image"}
    beta = _constant_beta(lines)
    panels = [p for p in curve_panels(lines, images) if not (beta is not None and "beta" in p[2])]
    paired = _paired_share(run_dir)
    ncols = 3 if len(panels) > 4 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.1 * nrows + 0.8), squeeze=False,
                             layout="constrained")
    epochs = [line["epoch"] for line in lines]
    legend: dict[str, Line2D] = {}
    for i, (title, ylabel, series) in enumerate(panels):
        ax = axes[i // ncols][i % ncols]
        for key, label in series.items():
            style = _style(key, label, names)
            ax.plot(epochs, [line.get(key, math.nan) for line in lines], marker="o" if len(lines) < 30 else None,
                    markersize=3, linewidth=1.4, gid=f"series:{key}", **style)
            if len(series) > 1:  # a lone series is named by its panel's title
                legend.setdefault(_legend_label(key, label), Line2D([], [], linewidth=1.4, **style))
        note = _note(title, paired, len(names))
        ax.set_title(title + (f"\n{note}" if note else ""), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    for j in range(len(panels), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(4, len(legend)), fontsize=7.5, frameon=False)
    constant = f"; β = {beta:g} throughout" if beta is not None else ""
    fig.suptitle(f"Training curves of {run_dir.name or run_dir.resolve().name}{constant}\n"
                 "latent panels: each posterior on a fixed subsample of the validation split", fontsize=10)
    return fig, [k for _, _, series in panels for k in series], lines


def _style(key: str, label: str, names: list[str]) -> dict:
    """A modality's own colour wherever it appears; the ELBO terms black, one line style each."""
    if key in _ELBO_TERMS:
        return {"color": MEAN, "linestyle": _ELBO_TERMS[key][1]}
    if label in names:
        return {"color": colour(names.index(label)), "linestyle": "-"}
    return {"color": "0.2", "linestyle": "-"}  # a figure of the whole model: no modality colour


def _legend_label(key: str, label: str) -> str:
    return f"ELBO term: {label}" if key in _ELBO_TERMS else label


def _note(title: str, paired: float | None, modalities: int) -> str:
    """Why a training panel sits on another scale than the validation ELBO: the share of rows that
    show every modality (nothing to say when all do)."""
    if paired is None or paired >= 1.0 or not title.startswith("Training"):
        return ""
    return f"per training row, over the modalities it shows ({paired:.0%} of rows show all {modalities})"


def plot_run(run_dir: str | Path, out: str | Path, fmt: str = "png") -> list[Path]:
    """Write ``curves.<fmt>`` (+ ``curves.csv``) and a copy of ``samples.png`` into ``out``.

    Returns:
        The files written.
    """
    run_dir, out = Path(run_dir), Path(out)
    fig, drawn, lines = run_figure(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [save_figure(fig, out / f"curves.{fmt}")]
    write_text(out / "curves.csv", csv_text(["epoch", *drawn], lines))
    written.append(out / "curves.csv")
    samples = run_dir / "samples.png"
    if samples.is_file() and samples.resolve() != (out / "samples.png").resolve():
        with atomic_path(out / "samples.png") as tmp:
            shutil.copyfile(samples, tmp)
        written.append(out / "samples.png")
    return written
