"""Ours beside the paper at a glance: every compared figure's distance to the published value.

Two panels, one row per (table, figure, column) and one marker per model:

- log-likelihoods (Tables 2–3): Δ = ours − paper in nats, the tolerance band shaded;
- variances of the log weights (Tables 4–5): ours / paper on a log axis, the factor band shaded.

Error bars are the 95% interval over seeds where a cell pools several. Table 1 (parameter counts)
is exact or not and stays in the report's table. The numbers are ``paper.csv``'s.

:func:`plot_report` draws every figure of ``mvae report`` from what
:func:`mvae_cli.sweep.report.write_report` computed: this comparison and the paper's Fig. 3, 4 or 5.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from mvae_cli.figures.draw import save_figure
from mvae_cli.figures.study import plot_paper_figure
from mvae_cli.paper import paper_tables
from mvae_cli.paper.compare import FIGURE_LABELS, Compared

PAPER_PNG = "paper.png"
_LIKELIHOOD_TABLES, _VARIANCE_TABLES = ("2", "3"), ("4", "5")


def _rows(compared: list, tables: tuple[str, ...]) -> tuple[list[tuple[str, str, str]], list]:
    cells = [c for c in compared if c.table in tables]
    keys = list(dict.fromkeys((c.table, c.figure, c.column) for c in cells))
    return keys, cells


def plot_comparison(rows: list[dict], path: str | Path, tolerance: float = 0.5, variance_factor: float = 2.0,
                    citation: str = "") -> Path | None:
    """Draw the likelihood and variance comparisons of ``rows`` (``paper.csv``'s rows) into ``path``;
    None when no likelihood or variance was compared."""
    compared = [Compared.from_row(r) for r in rows]
    panels = [(tables, *_rows(compared, tables)) for tables in (_LIKELIHOOD_TABLES, _VARIANCE_TABLES)]
    panels = [p for p in panels if p[1]]
    if not panels:
        return None
    found = set(c.model for c in compared if c.table in _LIKELIHOOD_TABLES + _VARIANCE_TABLES)
    order = paper_tables()["tables"]["1"]["figures"]["inference_parameters"]  # the paper's models, as Table 1 lists them
    models = [m for m in order if m in found] + sorted(found - set(order))  # a model keeps its colour
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    offsets = {m: (i - (len(models) - 1) / 2) * min(0.12, 0.6 / max(1, len(models))) for i, m in enumerate(models)}
    tallest = max(len(keys) for _, keys, _ in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 1.2 + 0.32 * tallest), squeeze=False,
                             layout="constrained")
    for ax, (tables, keys, cells) in zip(axes[0], panels):
        likelihood = tables == _LIKELIHOOD_TABLES
        position = {key: len(keys) - 1 - i for i, key in enumerate(keys)}  # the first row at the top
        if likelihood:
            ax.axvspan(-tolerance, tolerance, color="0.9", zorder=0)
            ax.axvline(0.0, color="0.5", linewidth=0.8, zorder=1)
        else:
            ax.set_xscale("log")
            ax.axvspan(1 / variance_factor, variance_factor, color="0.9", zorder=0)
            ax.axvline(1.0, color="0.5", linewidth=0.8, zorder=1)
        for model in models:
            mine = [c for c in cells if c.model == model]
            if not mine:
                continue
            ys = [position[(c.table, c.figure, c.column)] + offsets[model] for c in mine]
            if likelihood:
                xs = [c.difference for c in mine]
                errors = [c.ci95 if c.count > 1 and c.ci95 == c.ci95 else 0.0 for c in mine]
            else:
                xs = [c.ours / c.paper for c in mine]
                errors = [c.ci95 / c.paper if c.count > 1 and c.ci95 == c.ci95 else 0.0 for c in mine]
            ax.errorbar(xs, ys, xerr=errors, fmt="o", markersize=4.5, color=colors[model], capsize=2, linewidth=1,
                        label=model, zorder=3)
            for x, y, c in zip(xs, ys, mine):
                if c.beyond:
                    ax.annotate("⚠", (x, y), xytext=(4, -3), textcoords="offset points", fontsize=7, color="0.2")
        ax.set_yticks(list(position.values()))
        ax.set_yticklabels([f"T{t} {FIGURE_LABELS[f]} · {col}" for t, f, col in keys], fontsize=7.5)
        ax.set_ylim(-0.7, len(keys) - 0.3)
        ax.tick_params(axis="x", labelsize=7.5)
        ax.grid(axis="x", color="0.85", linewidth=0.6, zorder=0)
        if not likelihood:  # factors as plain numbers at powers of two
            low, high = ax.get_xlim()
            ticks = [2.0 ** k for k in range(-8, 9) if low <= 2.0 ** k <= high]
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.set_xlabel("ours − paper [nats]" if likelihood else "ours / paper", fontsize=8)
        ax.set_title(f"log-likelihoods (Tables 2–3); shaded: ±{tolerance:g} nat" if likelihood else
                     f"variance of the log weights (Tables 4–5); shaded: ×/÷ {variance_factor:g}", fontsize=9)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colors[m], markersize=5) for m in models]
    fig.legend(handles, models, loc="outside lower center", ncol=min(len(models), 6), fontsize=7.5, frameon=False)
    title = "Ours beside the paper (⚠: beyond the tolerance; bars: 95% CI over seeds)" + (
        f"\n{citation}" if citation else "")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_report(compared: list[dict], grid_keys: list[str], rows: list[dict], out: str | Path,
                tolerance: float = 0.5, variance_factor: float = 2.0) -> list[Path]:
    """The figures of a report, into ``out``: ``paper.png`` (:func:`plot_comparison`, with the paper's
    citation) when anything was compared, and the paper's Fig. 3, 4 or 5 with its CSV when the runs vary
    k, supervision or keep_prob (:func:`~mvae_cli.figures.study.plot_paper_figure`).

    Args:
        compared: the comparison rows :func:`mvae_cli.sweep.report.write_report` returns (``paper.csv``'s).
        grid_keys, rows: the grid keys and results rows the report was built from.
        out: the report's folder.
        tolerance, variance_factor: the report's tolerances, shaded in ``paper.png``.

    Returns:
        The files written, in that order.
    """
    out = Path(out)
    written = []
    if compared:
        figure = plot_comparison(compared, out / PAPER_PNG, tolerance, variance_factor,
                                 paper_tables("wu-goodman-2018")["citation"])
        written += [figure] if figure else []
    return written + plot_paper_figure(grid_keys, rows, out)
