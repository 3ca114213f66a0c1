"""Drawing one panel of a study figure: a line through the means over seeds per series (and per
value of a second grid key), its seeds as dots, its 95% interval as a band, unreliable points
hollow, following :mod:`mvae_cli.figures.style`. The legend is the figure's (:class:`LegendEntries`).

Every artist carries a ``gid`` saying what it is (``series:<column>``, ``seeds``, ``band``,
``unreliable``, ``band`` (a fill), ``bars``), so tests read a figure's contents from its matplotlib objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from mvae_cli.evaluate.reliability import rule, unreliable
from mvae_cli.figures.style import (BAND_ALPHA, FADED_ALPHA, LINESTYLES, MARKERS, REFERENCES, SEED_ALPHA, Panel, Series,
                                    colour)
from mvae_cli.tables.results import format_value
from mvae_cli.tables.stats import summarize

CYCLE_STYLES = ("-", "--", "-.", ":")
MAX_BANDS = 3  # lines per panel drawn with a band; more get error bars


@dataclass
class Point:
    """One x value of one line: its seeds' values and their summary."""

    x: object
    values: list[float]
    mean: float
    std: float
    ci95: float
    count: int
    unreliable: bool = False


@dataclass
class LegendEntries:
    """The figure's one legend, gathered from every panel: label -> handle, in order of first use."""

    entries: dict[str, object] = field(default_factory=dict)
    seeds: bool = False
    unreliable: bool = False
    flagged: set[str] = field(default_factory=set)  # labels of series with an unreliable point

    def add(self, label: str, handle, unreliable: bool = False) -> None:
        self.entries.setdefault(label, handle)
        if unreliable:
            self.flagged.add(label)
            self.unreliable = True

    def handles(self) -> tuple[list, list[str]]:
        """The handles and labels, the conventions' entries (seeds, band, hollow) last; a series with
        an unreliable point is named so, its marker hollow."""
        entries = {}
        for label, handle in self.entries.items():
            if label in self.flagged:
                handle = Line2D([], [], color=handle.get_color(), linestyle=handle.get_linestyle(),
                                linewidth=handle.get_linewidth(), marker=handle.get_marker(),
                                markersize=handle.get_markersize(), markerfacecolor="white", alpha=FADED_ALPHA)
                label += " (unreliable)"
            entries[label] = handle
        if self.seeds:
            entries["dots: individual seeds; band (bars where lines crowd): 95% CI of the mean (Student t)"] = (
                Line2D([], [], color="0.3", marker="o", markersize=3, linestyle="none", alpha=SEED_ALPHA),
                Patch(color="0.3", alpha=BAND_ALPHA * 2))
        if self.unreliable:
            entries[f"hollow: unreliable estimate ({rule()})"] = Line2D(
                [], [], color="0.3", marker="o", markerfacecolor="white", linestyle="-", alpha=FADED_ALPHA)
        return list(entries.values()), list(entries)


def points_of(rows: list[dict], series: Series, x: str, lines: list[str], combo: tuple) -> list[Point]:
    """The points of ``series`` for one combination of line-key values, in the rows' x order."""
    by_x: dict[str, tuple[object, list[dict]]] = {}
    for row in rows:
        if tuple(row.get(k) for k in lines) != combo:
            continue
        by_x.setdefault(format_value(row.get(x)), (row.get(x), []))[1].append(row)
    points = []
    for value, members in by_x.values():
        stats = summarize(r.get(series.column) for r in members)
        if stats.count == 0:
            continue
        values = [float(r[series.column]) for r in members if _finite(r.get(series.column))]
        bad = False
        if series.reliability:
            ess, var = (_mean([r.get(c) for r in members]) for c in series.reliability)
            bad = unreliable(ess, var)
        points.append(Point(value, values, stats.mean, stats.std, stats.ci95, stats.count, bad))
    return points


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mean(values: list) -> float | None:
    finite = [float(v) for v in values if _finite(v)]
    return sum(finite) / len(finite) if finite else None


def _same(a: list[Point], b: list[Point]) -> bool:
    return ([format_value(p.x) for p in a] == [format_value(p.x) for p in b]
            and all(abs(p.mean - q.mean) <= 1e-9 * max(1.0, abs(p.mean)) for p, q in zip(a, b)))


def draw_panel(ax, panel: Panel, rows: list[dict], x: str, lines: list[str], combos: list[tuple],
               positions: dict | None, legend: LegendEntries, floor: float = 0.0, log_x: bool = False) -> int:
    """Draw ``panel`` on ``ax``; returns the number of lines drawn.

    Args:
        combos: the values of the line keys (``[()]`` without any): one line per series and combo,
            except a reference (paired-only classifier, chance) equal for every combo, drawn once.
        positions: x value (formatted) -> position for a categorical x axis; None for a numeric one.
        floor: the floor of a log y axis (bands are clipped to it); 0 for a linear axis.
        log_x: the x axis is logarithmic (bars and seed dots are set side by side in its scale).
    """
    compared = len(combos) > 1
    drawn_points: list[tuple[str, list[Point]]] = []
    slot, slots = 0, len(panel.series) * len(combos)
    # bands of more than a few lines hide the means under each other: then bars at the points
    bars = positions is not None or sum(s.role != "chance" for s in panel.series) * len(combos) > MAX_BANDS
    for i, series in enumerate(panel.series):
        per_combo = [(c, combo, points_of(rows, series, x, lines, combo)) for c, combo in enumerate(combos)]
        per_combo = [entry for entry in per_combo if entry[2]]
        once = series.role in REFERENCES and all(_same(per_combo[0][2], p) for _, _, p in per_combo)
        for c, combo, points in per_combo[:1] if once else per_combo:
            if compared and not once:
                style = {"color": colour(c), "marker": MARKERS[i % len(MARKERS)] if series.marker else None,
                         "linestyle": series.linestyle if series.role in LINESTYLES and series.role != "mean"
                         else CYCLE_STYLES[i % len(CYCLE_STYLES)]}
                label = series.label + ", " + ", ".join(f"{k}={format_value(v)}" for k, v in zip(lines, combo))
            else:
                style = {"color": series.colour, "marker": series.marker, "linestyle": series.linestyle}
                label = series.label
            match = next((name for name, other in drawn_points if _same(other, points)), None)
            if match and series.role != "chance":
                label += f" (coincides with {match})"
            drawn_points.append((label, points))
            _draw_line(ax, series, points, style, positions, slot - (slots - 1) / 2, panel.share, floor, legend, bars,
                       log_x)
            handle = Line2D([], [], linewidth=series.linewidth, markersize=series.markersize, **style)
            legend.add(label, handle, unreliable=any(p.unreliable for p in points))
            slot += 1
    return len(drawn_points)


def _dodged(points: list[Point], positions: dict | None, shift: float, log_x: bool) -> list[float]:
    """Where a line's bars and seed dots go: side by side with the other lines' at the same x
    (a categorical axis: its markers too), so that no bar hides another."""
    if positions:
        return [positions[format_value(p.x)] + 0.07 * shift for p in points]
    xs = [float(p.x) for p in points]
    if log_x:
        return [x * 10 ** (0.012 * shift) if x > 0 else x for x in xs]
    span = (max(xs) - min(xs)) or 1.0
    return [x + 0.006 * span * shift for x in xs]


def _draw_line(ax, series: Series, points: list[Point], style: dict, positions: dict | None, shift: float,
               share: bool, floor: float, legend: LegendEntries, bars: bool, log_x: bool) -> None:
    dodged = _dodged(points, positions, shift, log_x)
    xs = dodged if positions else [p.x for p in points]
    means = [p.mean for p in points]
    faded = any(p.unreliable for p in points)
    ax.plot(xs, means, color=style["color"], linestyle="none" if positions else style["linestyle"],
            linewidth=series.linewidth, alpha=FADED_ALPHA if faded else 1.0, gid=f"series:{series.column}")
    if style["marker"]:
        for bad in (False, True):
            chosen = [(xv, p.mean) for xv, p in zip(xs, points) if p.unreliable == bad]
            if chosen:
                ax.plot(*zip(*chosen), linestyle="none", marker=style["marker"], markersize=series.markersize,
                        color=style["color"], markerfacecolor="white" if bad else style["color"],
                        gid="unreliable" if bad else "markers")
    if series.role == "chance":
        return  # exact: the same test examples for every seed
    low, high = (0.0, 1.0) if share else (floor or -math.inf, math.inf)
    spread = [(xv, xd, p) for xv, xd, p in zip(xs, dodged, points) if p.count > 1 and _finite(p.ci95)]
    if not spread:
        return
    legend.seeds = True
    if bars:  # at the dodged places, beside the other lines' bars
        ax.errorbar([xd for _, xd, _ in spread], [p.mean for _, _, p in spread],
                    yerr=[[max(0.0, p.mean - max(low, p.mean - p.ci95)) for _, _, p in spread],
                          [max(0.0, min(high, p.mean + p.ci95) - p.mean) for _, _, p in spread]],
                    fmt="none", ecolor=style["color"], alpha=0.5, capsize=2, linewidth=1, gid="bars")
    else:
        ax.fill_between([xv for xv, _, _ in spread], [max(low, p.mean - p.ci95) for _, _, p in spread],
                        [min(high, p.mean + p.ci95) for _, _, p in spread], color=style["color"], alpha=BAND_ALPHA,
                        linewidth=0, gid="band")
    dots = [(xd, v) for _, xd, p in spread for v in p.values]
    ax.plot(*zip(*dots), linestyle="none", marker="o", markersize=2.5, color=style["color"], alpha=SEED_ALPHA,
            gid="seeds")

