"""Figures of a sweep: eval figures against the grid key that varies, mean and 95% band over seeds.

- supervision: accuracy per predicted modality and their mean, on a log axis (paper Fig. 4),
  one panel each beside the classifier trained on the paired rows only and chance;
  and coherence per subset size (MMVAE / MoPoE papers) where eval.json has it;
- keep_prob: accuracy and the log-likelihoods against p, on a log axis (paper Fig. 5);
- k: log p(x, y) and the variance of the log importance weights against k (paper Fig. 3);
- any other key: every eval figure against it.

Every sweep also gets an overview of all eval figures. The numbers behind each figure are
written next to it as CSV. A second varying key (or a ``model`` column of the results) draws
one line per value. Series that coincide at every point are named as such in the legend. A panel of
log-weight variances whose means span more than 30× is drawn on a log y axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

from mvae_cli.atomic import write_text
from mvae_cli.evaluate import proposal_label
from mvae_cli.figures.draw import save_figure
from mvae_cli.tables.results import format_value
from mvae_cli.tables.results import csv_text, figure_columns, summary_rows

AXIS_LABELS = {
    "supervision": "supervision level: fraction of training examples with every modality (paired)",
    "keep_prob": "keep probability p of each modality in each training example",
    "k": "k: random-subset ELBO terms per example",
    "objective.k": "k: random-subset ELBO terms per example",
    "seed": "seed",
}
FAMILIES = {  # column prefix -> (panel title, y-axis label)
    "accuracy": ("Accuracy of each y modality predicted from x alone", "test accuracy (fraction correct)"),
    "log_px": ("Marginal log-likelihood log p(x)", "log p(x) [nats]"),
    "log_pxy": ("Joint log-likelihood log p(x, y)", "log p(x, y) [nats]"),
    "log_px_given_y": ("Conditional log-likelihood log p(x | y)", "log p(x | y) [nats]"),
    "var_log_w.marginal": ("Variance of log weights, log p(x)", "Var[log w] [nats²]"),
    "var_log_w.joint": ("Variance of log weights, log p(x, y)", "Var[log w] [nats²]"),
    "var_log_w.conditional": ("Variance of log weights, log p(x | y)", "Var[log w] [nats²]"),
    "coherence": ("Coherence: generated modalities of the right class", "coherence (fraction coherent)"),
    "probe": ("Latent linear probe: class from the posterior mean of q(z | S)", "test accuracy (fraction correct)"),
}
PAPER = {  # x key -> (file stem, families drawn, figure title)
    "supervision": ("accuracy_vs_supervision", ["accuracy", "coherence"],
                    "Accuracy of each y modality predicted from x alone\nagainst the supervision level "
                    "(cf. Wu & Goodman 2018, Fig. 4)"),
    "keep_prob": ("figures_vs_keep_prob", ["accuracy", "log_px", "log_pxy", "log_px_given_y"],
                  "Accuracy and log-likelihoods against the keep probability (cf. Wu & Goodman 2018, Fig. 5)"),
    "k": ("figures_vs_k", ["log_pxy", "var_log_w.joint"],
          "Joint log-likelihood and variance of the log weights against k (cf. Wu & Goodman 2018, Fig. 3)"),
}
PAPER["objective.k"] = PAPER["k"]  # k's place since objectives own their settings
LOG_AXIS = ("supervision", "keep_prob")
MAX_ACCURACY_PANELS = 9  # more predicted modalities (CelebA19's 18) share one panel
REFERENCES = {  # eval.json families drawn beside the model's accuracy -> (legend label, line style)
    "baseline": ("classifier on the paired rows only", {"linestyle": "--", "marker": "s", "markersize": 3}),
    "chance": ("chance (most frequent class)", {"linestyle": ":", "color": "0.45", "marker": None}),
}


@dataclass
class Panel:
    title: str
    ylabel: str
    series: dict[str, str] = field(default_factory=dict)  # results column -> legend label


def panels_for(columns: list[str], families: list[str] | None = None) -> list[Panel]:
    """Group eval columns into panels, one per family (``accuracy``, ``log_px``, ...).

    Accuracy draws each modality and ``mean``; a log-likelihood draws the ``.mean`` of each
    proposal; a variance of log weights draws each proposal.
    """
    panels = []
    for family in families or list(FAMILIES):
        title, ylabel = FAMILIES[family]
        panel = Panel(title, ylabel)
        prefix = family + "."
        for column in columns:
            if not column.startswith(prefix):
                continue
            rest = column[len(prefix):]
            if family == "accuracy":
                panel.series[column] = "mean over predicted modalities" if rest == "mean" else rest
            elif family == "coherence":  # per subset size, and joint; not per target nor the ceilings
                if rest.startswith("cross_by_size."):
                    size = rest[len("cross_by_size."):]
                    panel.series[column] = f"cross-modal, {size} modalit{'y' if size == '1' else 'ies'} given"
                elif rest == "joint":
                    panel.series[column] = "joint (from the prior)"
            elif family == "probe":
                panel.series[column] = proposal_label(rest)
            elif family.startswith("var_log_w"):
                panel.series[column] = proposal_label(rest)
            elif rest.endswith(".mean"):
                panel.series[column] = proposal_label(rest[: -len(".mean")])
        if family == "accuracy" and len(panel.series) == 2:  # one predicted modality: its mean is itself
            panel.series.pop(f"{family}.mean", None)
        if family == "accuracy" and panel.series:
            # beside the model: the paired-only classifier and chance, of the one modality or of the mean
            (last,) = [c[len(prefix):] for c in panel.series][-1:]
            for reference, (label, _) in REFERENCES.items():
                if f"{reference}.{last}" in columns:
                    panel.series[f"{reference}.{last}"] = label + (", mean" if last == "mean" else "")
        if panel.series:
            panels.append(panel)
    return panels


def accuracy_panels(columns: list[str]) -> list[Panel]:
    """One panel per predicted modality (and their mean): the model's accuracy, the classifier
    trained on the paired rows only and chance, where the results hold them. With more than
    :data:`MAX_ACCURACY_PANELS` modalities, one panel of every accuracy (:func:`panels_for`)."""
    names = [c[len("accuracy."):] for c in columns if c.startswith("accuracy.") and "/" not in c
             and c != "accuracy.mean"]
    if not names or len(names) > MAX_ACCURACY_PANELS:
        return panels_for(columns, ["accuracy"])
    panels = []
    for name in names + (["mean"] if len(names) > 1 else []):
        title = "mean over predicted modalities" if name == "mean" else f"{name} predicted from x alone"
        panel = Panel(title, "test accuracy (fraction correct)", {f"accuracy.{name}": "multimodal model"})
        for family, (label, _) in REFERENCES.items():
            if f"{family}.{name}" in columns:
                panel.series[f"{family}.{name}"] = label
        panels.append(panel)
    return panels


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


LOG_SPAN = 30.0  # a variance panel whose means span more than this factor gets a log y axis


def _log_axis(stats: list[dict], panel: Panel) -> float:
    """For a panel of variances whose means span more than ``LOG_SPAN`` (a subset proposal's thousands
    beside the image's units flatten the others into the axis), the floor of its log y axis: half the
    smallest mean. 0 (a linear axis) otherwise."""
    if not panel.series or not all(c.startswith("var_log_w.") for c in panel.series):
        return 0.0
    means = [s["mean"] for s in stats if s["figure"] in panel.series and s["count"] > 0 and math.isfinite(s["mean"])]
    if not means or min(means) <= 0 or max(means) / min(means) <= LOG_SPAN:
        return 0.0
    return min(means) / 2


def _draw(ax, stats: list[dict], panel: Panel, x: str, lines: list[str], positions: dict | None,
          single: bool = False, legend: bool = True) -> set[int]:
    """Draw one panel: a line per (series, line-key values), band = 95% CI. Returns the seed counts of its points.

    A series whose means equal an earlier one's at every point would hide under it: its legend
    entry says which it coincides with."""
    counts, seen = set(), {}
    log_y = _log_axis(stats, panel)
    combos = _ordered([tuple(s[k] for k in lines) for s in stats]) if lines else [()]
    n_lines, drawn = len(panel.series) * len(combos), 0
    # Beside references (baseline, chance), colour says which line (model) and the style which series.
    by_combo = any(c.split(".", 1)[0] in REFERENCES for c in panel.series)
    combined = sum(c.startswith("accuracy.") for c in panel.series) > 1  # the mean among its modalities
    for column, label in panel.series.items():
        for c, combo in enumerate(combos):
            points = [s for s in stats if s["figure"] == column and tuple(s[k] for k in lines) == combo
                      and s["count"] > 0]
            if not points:
                continue
            points.sort(key=lambda s: positions[format_value(s[x])] if positions else s[x])
            xs = [positions[format_value(s[x])] if positions else s[x] for s in points]
            means = [s["mean"] for s in points]
            family = column.split(".", 1)[0]
            name = label + ("" if family == "chance" else "".join(f", {k}={format_value(v)}" for k, v in zip(lines, combo)))
            key = (tuple(xs), tuple(round(m, 9) for m in means))
            if key in seen:
                if family == "chance":  # the same test examples for every line: drawn once
                    continue
                name += f" (coincides with {seen[key]})"
            seen.setdefault(key, name)
            errors = [s["ci95"] if s["count"] > 1 and math.isfinite(s["ci95"]) else 0.0 for s in points]
            if positions:  # categories: side-by-side points with 95% error bars, no connecting line
                xs = [xv + 0.06 * (drawn - (n_lines - 1) / 2) for xv in xs]
                ax.errorbar(xs, means, yerr=errors, fmt="o", markersize=4, capsize=3, label=name)
            else:
                style = ({"color": "black", "linestyle": "--", "linewidth": 2.0} if column == "accuracy.mean" and combined
                         else {"color": f"C{(c if by_combo else drawn) % 10}", **REFERENCES.get(family, ("", {}))[1]})
                (line,) = ax.plot(xs, means, **{"marker": "o", "markersize": 3.5, "linewidth": 1.4, "label": name,
                                                **style})
                # An accuracy cannot leave [0, 1], nor a variance go below 0, whatever a t interval
                # over few seeds says.
                low, high = ((0.0, 1.0) if column.startswith(("accuracy.", "coherence.", "probe."))
                             else (0.0, math.inf) if column.startswith("var_log_w.") else (-math.inf, math.inf))
                low = log_y or low  # a log axis has no 0: clip the band at the panel's floor
                band = [(xv, max(low, m - e), min(high, m + e)) for xv, m, e in zip(xs, means, errors)
                        if e > 0 and family != "chance"]
                if band:
                    bx, lo, hi = zip(*band)
                    ax.fill_between(bx, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
            counts.update(s["count"] for s in points)
            drawn += 1
    if not single:  # a lone panel's title is the figure's
        ax.set_title(panel.title, fontsize=9)
    if log_y:
        ax.set_yscale("log")
    ax.set_ylabel(panel.ylabel + (" (log axis)" if log_y else ""), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    if drawn and legend:
        # Never over the data: beside a lone panel, below each panel of a grid of them.
        where = ({"loc": "center left", "bbox_to_anchor": (1.01, 0.5)} if single
                 else {"loc": "upper center", "bbox_to_anchor": (0.5, -0.12)})
        ax.legend(fontsize=6.5 if drawn > 6 else 7.5, frameon=False, ncol=_legend_columns(drawn), **where)
    return counts


_LEGEND_INSIDE = 8  # more entries than this (CelebA's 18 attributes) go in columns
_LEGEND_ROWS = 14


def _legend_columns(entries: int) -> int:
    return max(1, math.ceil(entries / _LEGEND_ROWS)) if entries > _LEGEND_INSIDE else 1


def _set_x_axis(ax, x: str, values: list, positions: dict | None, show_label: bool = True) -> str:
    """Scale and tick the x axis; returns its label (set on the axis when ``show_label``)."""
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
    if show_label:
        ax.set_xlabel(label, fontsize=8)
    return label


def plot_figure(rows: list[dict], x: str, lines: list[str], panels: list[Panel], path: Path, title: str) -> list[Path]:
    """Draw ``panels`` against ``x`` into ``path`` and their numbers into ``path.csv``."""
    columns = [c for p in panels for c in p.series]
    stats = summary_rows(rows, [x, *lines], columns)
    values = _ordered([r.get(x) for r in rows])
    positions = None if all(_is_number(v) for v in values) else {format_value(v): i for i, v in enumerate(values)}
    single = len(panels) == 1
    ncols = min(len(panels), 2 if len(panels) <= 4 else 3)
    nrows = math.ceil(len(panels) / ncols)
    combos = len(_ordered([tuple(r.get(k) for k in lines) for r in rows])) if lines else 1
    entries = max(len(p.series) for p in panels) * combos  # legend entries of the fullest panel
    # Panels that draw the same series (one per predicted modality) share one legend below them.
    shared = not single and len({tuple(p.series.values()) for p in panels}) == 1
    if single:  # the legend sits on the right
        width, height = 4.9 + 2.6 * _legend_columns(entries), max(3.7, 0.17 * min(entries, _LEGEND_ROWS) + 1.5)
    elif shared:
        width, height = 4.9 * ncols, 3.4
    else:  # each panel's legend sits below it
        width = 5.6 * ncols
        height = 3.4 + 0.16 * math.ceil(entries / _legend_columns(entries))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False, layout="constrained")
    counts, label = set(), ""
    spare = nrows * ncols > len(panels)  # an empty slot holds a shared legend
    for i, panel in enumerate(panels):
        ax = axes[i // ncols][i % ncols]
        counts |= _draw(ax, stats, panel, x, lines, positions, single, legend=not shared)
        bottom = i // ncols == nrows - 1
        label = _set_x_axis(ax, x, values, positions, show_label=single or (shared and not spare and bottom))
    for j in range(len(panels), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    if not single and not (shared and not spare):  # one x label for the figure, not one per panel
        fig.supxlabel(label, fontsize=8)
    if shared:
        handles, names = axes[0][0].get_legend_handles_labels()
        if spare:
            slot = axes[-1][-1]
            slot.set_visible(True)
            slot.axis("off")
            slot.legend(handles, names, loc="center", fontsize=7.5, frameon=False)
        else:
            fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 3), fontsize=7.5,
                       frameon=False)
    fewest, most = min(counts, default=0), max(counts, default=0)
    seeds = f"{most} seeds" if fewest == most else f"{fewest}–{most} seeds (as the point has run)"
    spread = f"mean ± 95% CI (Student t) over {seeds}" if most > 1 else "one run per point"
    scored = _ordered([r.get("n_examples") for r in rows if _is_number(r.get("n_examples"))])
    if scored:
        spread += f"; {' / '.join(f'{int(n):,}' for n in scored)} test examples scored per run"
    fig.suptitle(f"{title}\n{spread}", fontsize=9 if single else 10)
    save_figure(fig, path)
    csv_path = path.with_suffix(".csv")
    labels = {c: (p.title, label) for p in panels for c, label in p.series.items()}
    table = [{**s, "panel": labels[s["figure"]][0], "series": labels[s["figure"]][1]} for s in stats]
    write_text(csv_path, csv_text([x, *lines, "panel", "series", "figure", "mean", "std", "ci95", "count"], table))
    return [path, csv_path]


def plot_paper_figure(grid_keys: list[str], rows: list[dict], out: str | Path, fmt: str = "png") -> list[Path]:
    """Write the paper's figure of a study into ``out`` when the key that varies is one of the paper's
    axes (supervision: Fig. 4, keep_prob: Fig. 5, k: Fig. 3); nothing otherwise.

    Returns:
        The files written (the figure and its CSV), or none.
    """
    x, lines = choose_axes(grid_keys, rows)
    if x not in PAPER:
        return []
    stem, families, title = PAPER[x]
    columns = figure_columns(grid_keys, rows)
    # accuracy: a panel per predicted modality with its references; the other families as panels_for draws them
    panels = ((accuracy_panels(columns) if "accuracy" in families else [])
              + panels_for(columns, [f for f in families if f != "accuracy"]))
    return plot_figure(rows, x, lines, panels, Path(out) / f"{stem}.{fmt}", title) if panels else []


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
    out = Path(out)
    x, lines = choose_axes(grid_keys, rows)
    written = plot_paper_figure(grid_keys, rows, out, fmt)
    overview = panels_for(figure_columns(grid_keys, rows))
    if overview:
        written += plot_figure(rows, x, lines, overview, out / f"all_figures_vs_{format_value(x)}.{fmt}",
                               f"Every eval figure against {x}")
    return written
