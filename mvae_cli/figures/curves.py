"""Figures of one run: training curves from ``metrics.jsonl`` and its sample grid."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from mvae_cli.atomic import atomic_path, write_text
from mvae_cli.errors import UserError
from mvae_cli.figures.draw import save_figure
from mvae_cli.tables.results import csv_text

# Bookkeeping columns of metrics.jsonl that are not curves of the model.
_NOT_CURVES = {"epoch", "step", "seconds", "examples_per_s", "peak_memory_mb"}
_ELBO_TERMS = {"elbo_full": "all observed modalities", "elbo_single": "each single modality",
               "elbo_subset": "random subsets (k)"}

_LATENT_PANELS = (("active_units", "Active units of q(z | m), valid subsample (Cov E[z] > 0.01)", "active units"),
                  ("kl", "KL(q(z | m) ‖ p(z)), valid subsample", "KL [nats]"),
                  ("mutual_information", "I(x_m; z) estimate, valid subsample", "I [nats]"))


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


def curve_panels(lines: list[dict], image_modalities: set[str]) -> list[tuple[str, str, dict[str, str]]]:
    """``(title, y label, {metric: legend label})`` per panel, for the metrics present."""
    present = [k for k in lines[0] if k not in _NOT_CURVES and isinstance(lines[0][k], (int, float))]
    panels = [("Training loss (negative sum of the ELBO terms)", "loss per example [nats]", {"loss": "train"}),
              ("Validation ELBO (all modalities, β = 1)", "ELBO per example [nats]", {"valid_elbo": "valid"}),
              ("Training ELBO terms", "ELBO per example [nats]",
               {k: v for k, v in _ELBO_TERMS.items() if k in present}),
              ("KL divergence from the prior", "KL [nats]", {"kl": "KL(q(z | observed) ‖ p(z))"}),
              ("Log-likelihood, image modalities", "log p(x | z) [nats]",
               {k: k[len("log_lik_"):] for k in present if k.startswith("log_lik_")
                and k[len("log_lik_"):] in image_modalities}),
              ("Log-likelihood, other modalities", "log p(y | z) [nats]",
               {k: k[len("log_lik_"):] for k in present if k.startswith("log_lik_")
                and k[len("log_lik_"):] not in image_modalities}),
              (_beta_title(lines), "β", {"beta": "β"}),
              # the latent diagnostics (latent.<m>.<figure>), one line per unimodal posterior
              *[(title, ylabel, {k: f"q(z | {k.split('.')[1]})" for k in present
                                 if k.startswith("latent.") and k.endswith("." + figure)})
                for figure, title, ylabel in _LATENT_PANELS]]
    known = {k for _, _, series in panels for k in series}
    panels += [(k, k, {k: k}) for k in present if k not in known and k not in _ELBO_TERMS
               and not (k.startswith("latent.") and k.endswith(".latent_dim"))]
    return [(title, ylabel, {k: v for k, v in series.items() if k in present})
            for title, ylabel, series in panels if any(k in present for k in series)]


def plot_run(run_dir: str | Path, out: str | Path, fmt: str = "png") -> list[Path]:
    """Write ``curves.<fmt>`` (+ ``curves.csv``) and a copy of ``samples.png`` into ``out``.

    Returns:
        The files written.
    """
    run_dir, out = Path(run_dir), Path(out)
    lines = read_metrics(run_dir)
    try:
        modalities = json.loads((run_dir / "run.json").read_text()).get("modalities", [])
    except (OSError, ValueError):
        modalities = []
    images = {m["name"] for m in modalities if m.get("kind") == "image"}
    panels = curve_panels(lines, images)
    ncols = 3 if len(panels) > 4 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.2 * nrows), squeeze=False, layout="constrained")
    epochs = [line["epoch"] for line in lines]
    for i, (title, ylabel, series) in enumerate(panels):
        ax = axes[i // ncols][i % ncols]
        for key, label in series.items():
            ax.plot(epochs, [line.get(key, math.nan) for line in lines], marker="o" if len(lines) < 30 else None,
                    markersize=3, linewidth=1.3, label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7, frameon=False)
    for j in range(len(panels), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    fig.suptitle(f"Training curves of {run_dir.name or run_dir.resolve().name}", fontsize=10)
    out.mkdir(parents=True, exist_ok=True)
    written = [save_figure(fig, out / f"curves.{fmt}")]
    columns = ["epoch", *[k for _, _, series in panels for k in series]]
    write_text(out / "curves.csv", csv_text(columns, lines))
    written.append(out / "curves.csv")
    samples = run_dir / "samples.png"
    if samples.is_file() and samples.resolve() != (out / "samples.png").resolve():
        with atomic_path(out / "samples.png") as tmp:
            shutil.copyfile(samples, tmp)
        written.append(out / "samples.png")
    return written
