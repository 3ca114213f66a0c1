"""Figures of a sweep: eval figures against the grid key that varies, following
:mod:`mvae_cli.figures.style` (docs/figures.md).

- ``accuracy_vs_<x>``: a panel per predicted modality and their mean, the model beside the
  classifier trained on the paired rows only, the fair baselines and chance (against supervision:
  the paper's Fig. 4);
- ``fair_baselines_vs_<x>``: where a second key draws several lines, the fair baselines move here
  from the accuracy figure, a panel per value: the model, the probes of its code and of an
  image-only VAE, the paired-only classifier and chance;
- ``likelihoods_vs_<x>``: log p(x), log p(x, y), log p(x | y) per proposal and the variance of
  the joint target's log weights, unreliable estimates hollow;
- ``coherence_vs_<x>``, ``probe_vs_<x>``: the class from generated modalities and from the latent;
- ``figures_vs_keep_prob`` (the paper's Fig. 5) and ``figures_vs_k`` (Fig. 3) where the study varies them.

A second varying key (or a ``model`` column of the results) draws one line per value (colour) and
the line style says what each line is; coherence and the probe get a panel per value instead.
The numbers behind each figure are written next to it as CSV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from mvae_cli.atomic import write_text
from mvae_cli.figures.draw import save_figure
from mvae_cli.figures.lines import LegendEntries, draw_panel
from mvae_cli.figures.panels import (accuracy_overview, accuracy_panels, coherence_panel, fair_panel,
                                     likelihood_panel, probe_panel, scored, variance_panel, with_probe_sizes)
from mvae_cli.figures.style import Panel
from mvae_cli.tables.results import csv_text, figure_columns, format_value, summary_rows

AXIS_LABELS = {
    "supervision": "supervision level: fraction of training examples with every modality (paired)",
    "keep_prob": "keep probability p of each modality in each training example",
    "k": "k: random-subset ELBO terms per example",
    "objective.k": "k: random-subset ELBO terms per example",
    "seed": "seed",
}
LOG_AXIS = ("supervision", "keep_prob")
LOG_SPAN = 30.0  # a variance panel whose means span more than this factor gets a log y axis
PAPER = {"supervision": ("accuracy_vs_supervision", "Fig. 4"), "keep_prob": ("figures_vs_keep_prob", "Fig. 5"),
         "k": ("figures_vs_k", "Fig. 3")}
PAPER["objective.k"] = PAPER["k"]  # k's place since objectives own their settings
CITE = "cf. Wu & Goodman 2018"


@dataclass
class StudyFigure:
    """A drawn figure, not yet saved: its file stem, the matplotlib figure and the rows of its CSV."""

    stem: str
    figure: Figure
    table: list[dict]
    columns: list[str]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ordered(values: list) -> list:
    distinct = []
    for v in values:
        if v not in distinct:
            distinct.append(v)
    return sorted(distinct) if all(_is_number(v) for v in distinct) else distinct


def choose_axes(grid_keys: list[str], rows: list[dict]) -> tuple[str, list[str]]:
    """``(x key, line keys)``: the paper's keys first, then the grid's order; seed only if nothing else varies."""
    varying = [k for k in grid_keys if k != "seed" and len(_ordered([r.get(k) for r in rows])) > 1]
    if not varying:
        return ("seed" if "seed" in grid_keys else grid_keys[0]), []
    x = next((k for k in ("supervision", "keep_prob", "k", "objective.k") if k in varying), varying[0])
    lines = [k for k in varying if k != x]
    # a sweep over models (a `model` column in the results) draws one line per model
    if "model" not in grid_keys and len(_ordered([r.get("model") for r in rows if "model" in r])) > 1:
        lines.append("model")
    return x, lines


def _log_floor(rows: list[dict], panel: Panel) -> float:
    """For a panel of variances whose values span more than :data:`LOG_SPAN` (a subset proposal's
    thousands beside the image's units flatten the others into the axis), the floor of its log y axis:
    half the smallest value. 0 (a linear axis) otherwise."""
    if not panel.series or not all(c.startswith("var_log_w.") for c in panel.columns):
        return 0.0
    values = [r[c] for r in rows for c in panel.columns if _is_number(r.get(c)) and math.isfinite(r[c])]
    if not values or min(values) <= 0 or max(values) / min(values) <= LOG_SPAN:
        return 0.0
    return min(values) / 2


def _set_x_axis(ax, x: str, values: list, positions: dict | None) -> str:
    """Scale and tick the x axis; returns its label."""
    label = AXIS_LABELS.get(x, x)
    if positions:
        ax.set_xticks(list(positions.values()), list(positions.keys()))
    elif x in LOG_AXIS:
        positive = [v for v in values if v > 0]
        if len(positive) < len(values):  # 0 cannot sit on a log axis: linear between 0 and the smallest level
            linthresh = min(positive) if positive else 1.0
            ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
            ax.set_xlim(left=0)
            label += f"\n(symmetric log axis: linear from 0 to {linthresh:g})"
        else:
            ax.set_xscale("log")
        ax.set_xticks([v for v in values if v > 0])  # tick the levels studied, not just the decades
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    return label


def _subtitle(rows: list[dict], keys: list[str], columns: list[str]) -> str:
    counts = [s["count"] for s in summary_rows(rows, keys, columns) if s["count"] > 0]
    fewest, most = min(counts, default=0), max(counts, default=0)
    seeds = f"{most} seeds" if fewest == most else f"{fewest}–{most} seeds (as the point has run)"
    spread = f"mean ± 95% CI (Student t) over {seeds}" if most > 1 else "one run per point"
    scored_n = _ordered([r.get("n_examples") for r in rows if _is_number(r.get("n_examples"))])
    if scored_n:
        spread += f"; {' / '.join(f'{int(n):,}' for n in scored_n)} test examples scored per run"
    return spread


def compose(panels: list[Panel], rows: list[dict], x: str, lines: list[str], title: str,
            per_combo: bool = False) -> tuple[Figure, list[dict]]:
    """Draw ``panels`` against ``x`` in one figure with one legend below them.

    Args:
        per_combo: draw each panel once per value of the line keys (its title says which) instead of
            one line per value in the same panel.

    Returns:
        The figure and the rows of its CSV (one per x value, line-key values, panel and series).
    """
    combos = _ordered([tuple(r.get(k) for k in lines) for r in rows]) if lines else [()]
    if per_combo and len(combos) > 1:
        jobs = [(p, [r for r in rows if tuple(r.get(k) for k in lines) == c],
                 ", ".join(f"{k}={format_value(v)}" for k, v in zip(lines, c))) for p in panels for c in combos]
        draw_lines, draw_combos = [], [()]
    else:
        jobs, draw_lines, draw_combos = [(p, rows, "") for p in panels], lines, combos
    values = _ordered([r.get(x) for r in rows])
    positions = None if all(_is_number(v) for v in values) else {format_value(v): i for i, v in enumerate(values)}
    ncols = 1 if len(jobs) == 1 else 2 if len(jobs) in (2, 4) else 3
    nrows = math.ceil(len(jobs) / ncols)
    legend = LegendEntries()
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols if ncols > 1 else 6.4, 3.4 * nrows + 0.9),
                             squeeze=False, layout="constrained")
    label = AXIS_LABELS.get(x, x)
    for i, (panel, subset, which) in enumerate(jobs):
        ax = axes[i // ncols][i % ncols]
        floor = _log_floor(subset, panel)
        draw_panel(ax, panel, subset, x, draw_lines, draw_combos, positions, legend, floor,
                   log_x=x in LOG_AXIS and all(_is_number(v) and v > 0 for v in values))
        heading = which or panel.title  # a panel per line-key value: the figure's title says what it shows
        if len(jobs) > 1 or panel.note:  # a lone panel's title is the figure's
            ax.set_title((heading if len(jobs) > 1 else "") + (f"\n{panel.note}" if panel.note else ""), fontsize=9)
        if floor:
            ax.set_yscale("log")
        ax.set_ylabel(panel.ylabel + (" (log axis)" if floor else ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        label = _set_x_axis(ax, x, values, positions)
    for j in range(len(jobs), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    if len(jobs) == 1:
        axes[0][0].set_xlabel(label, fontsize=8)
    else:
        fig.supxlabel(label, fontsize=8)
    handles, labels = legend.handles()
    # below the figure's edge, under the x label: the saved file's tight box takes it in
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=max(1, min(3 if ncols > 1 else 2, len(labels))), fontsize=7.5, frameon=False)
    columns = [c for p in panels for c in p.columns]
    fig.suptitle(f"{title}\n{_subtitle(rows, [x, *lines], columns)}", fontsize=10)
    series = {s.column: (p.title, s.label) for p in panels for s in p.series}
    table = [{**s, "panel": series[s["figure"]][0], "series": series[s["figure"]][1]}
             for s in summary_rows(rows, [x, *lines], columns) if s["count"] > 0]
    return fig, table


def study_figures(grid_keys: list[str], rows: list[dict], only: str | None = None) -> list[StudyFigure]:
    """Every figure of a sweep (see the module docstring), drawn but not saved; ``only``: the one of this stem."""
    x, lines = choose_axes(grid_keys, rows)
    rows = with_probe_sizes(rows)
    columns = figure_columns(grid_keys, rows)
    name, against = scored(columns), format_value(x)
    csv_columns = [x, *lines, "panel", "series", "figure", "mean", "std", "ci95", "count"]
    wanted: list[tuple[str, list[Panel], str, bool]] = []
    if x in PAPER:
        stem, fig_no = PAPER[x]
        panels = {"supervision": accuracy_panels(columns, fair=not lines),
                  "keep_prob": [accuracy_overview(columns),
                                *(likelihood_panel(columns, f) for f in ("log_px", "log_pxy", "log_px_given_y"))],
                  }.get(x, [likelihood_panel(columns, "log_pxy"), variance_panel(columns)])
        what = {"supervision": f"Accuracy of each y predicted from {name} alone against the supervision level",
                "keep_prob": "Accuracy and log-likelihoods against the keep probability"}.get(
            x, "Joint log-likelihood and variance of the log weights against k")
        wanted.append((stem, [p for p in panels if p], f"{what} ({CITE}, {fig_no})", False))
    if x != "supervision":
        wanted.append((f"accuracy_vs_{against}", accuracy_panels(columns, fair=not lines),
                       f"Accuracy of each y predicted from {name} alone against {x}", False))
    likelihoods = [likelihood_panel(columns, f) for f in ("log_px", "log_pxy", "log_px_given_y")]
    wanted.append((f"likelihoods_vs_{against}", [p for p in [*likelihoods, variance_panel(columns)] if p],
                   f"Log-likelihoods of x = {name} and the variance of the log weights against {x}", False))
    fair = [("fair_baselines", fair_panel(columns))] if lines else []  # else in the accuracy figure
    for stem, panel in (*fair, ("coherence", coherence_panel(columns)), ("probe", probe_panel(columns))):
        if panel:
            wanted.append((f"{stem}_vs_{against}", [panel], f"{panel.title}, against {x}", True))
    figures = []
    for stem, panels, title, per_combo in wanted:
        if panels and only in (None, stem):
            fig, table = compose(panels, rows, x, lines, title, per_combo)
            figures.append(StudyFigure(stem, fig, table, csv_columns))
    return figures


def _save(figure: StudyFigure, out: Path, fmt: str) -> list[Path]:
    path = save_figure(figure.figure, out / f"{figure.stem}.{fmt}")
    csv_path = out / f"{figure.stem}.csv"
    write_text(csv_path, csv_text(figure.columns, figure.table))
    return [path, csv_path]


def plot_paper_figure(grid_keys: list[str], rows: list[dict], out: str | Path, fmt: str = "png") -> list[Path]:
    """Write the paper's figure of a study into ``out`` when the key that varies is one of the paper's
    axes (supervision: Fig. 4, keep_prob: Fig. 5, k: Fig. 3); nothing otherwise.

    Returns:
        The files written (the figure and its CSV), or none.
    """
    x, _ = choose_axes(grid_keys, rows)
    if x not in PAPER:
        return []
    return [path for figure in study_figures(grid_keys, rows, only=PAPER[x][0]) for path in _save(figure, Path(out), fmt)]


def plot_sweep(grid_keys: list[str], rows: list[dict], out: str | Path, fmt: str = "png") -> list[Path]:
    """Write the figures of a sweep (see the module docstring) into ``out``.

    Args:
        grid_keys: the sweep's grid keys, in order.
        rows: its results rows (:func:`mvae_cli.tables.results.read_results`).
        out: the folder to write into.
        fmt: ``png`` or ``pdf``.

    Returns:
        The files written (each figure and its CSV).
    """
    written = []
    for figure in study_figures(grid_keys, rows):
        written += _save(figure, Path(out), fmt)
    return written
