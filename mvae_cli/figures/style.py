"""The conventions every study figure follows (docs/figures.md says them in words).

- Colour says *what* a line is: the multimodal model blue, the classifier trained on the paired
  rows only orange, chance grey, a mean black; the fair baselines (a linear probe fitted on the
  paired rows) purple dash-dot on the model's own code, gold dash-dot-dot on an image-only VAE's; attributes, proposals and models each get their
  own colour from :data:`PALETTE` (never orange or grey, which the references own); subset sizes
  a sequential ramp (1 given: dark, all given: light).
- When a figure compares several models (or another second grid key), colour says which model
  and the line style says what the line is: solid the model, dashed the paired-only classifier,
  dotted chance, dash-dot the probe on the model's code, dash-dot-dot the probe on the image-only VAE.
- Every estimate is a line through the means with its seeds as small dots of the same colour
  and its 95% interval over seeds as a light band (n = 3 makes that band wide: the dots show
  where the runs actually fell).
- An importance-sampled estimate that cannot be trusted (:mod:`mvae_cli.evaluate.reliability`)
  is drawn with hollow markers on a faded line, and the legend says so.
- One legend per figure, below the panels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib

MODEL, BASELINE, CHANCE, MEAN = "#1f77b4", "#ff7f0e", "0.45", "black"
PROBE, VAE_PROBE = "#6a3d9a", "#d4a017"  # the fair baselines' purple and gold, outside PALETTE
# Attributes, proposals, models: distinct hues, none of them the references' orange or grey.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#31a354", "#756bb1",
           "#e6550d", "#636363", "#a55194", "#6baed6")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
LINESTYLES = {"model": "-", "baseline": "--", "chance": ":", "mean": "-", "probe": "-.",
              "vae_probe": (0, (6, 2, 1, 2, 1, 2))}
REFERENCES = ("baseline", "chance", "vae_probe")  # lines that do not depend on the multimodal model

BAND_ALPHA = 0.12
SEED_ALPHA = 0.55
FADED_ALPHA = 0.45  # the line of an unreliable estimate


def colour(i: int) -> str:
    """The ``i``-th colour of :data:`PALETTE` (cycling)."""
    return PALETTE[i % len(PALETTE)]


def ramp(i: int, n: int) -> tuple:
    """The ``i``-th of ``n`` colours of a sequential ramp (viridis, dark to light, its yellow end left out)."""
    return matplotlib.colormaps["viridis"](0.05 + 0.75 * (i / max(1, n - 1)))


@dataclass
class Series:
    """One line of a panel: a results column drawn as it says.

    Attributes:
        column: the results column (``accuracy.shape``).
        label: its legend entry.
        role: ``model``, ``baseline``, ``chance``, ``mean``, ``probe`` or ``vae_probe`` (what the line
            style says when a figure compares models); any other role draws solid.
        colour, marker: how it is drawn when the figure compares nothing (one line per series).
        reliability: ``(ess column, variance column)`` for an importance-sampled estimate.
        linewidth, markersize: a first line is drawn wider, so one that coincides with it stays visible.
    """

    column: str
    label: str
    role: str = "model"
    colour: object = MODEL
    marker: str | None = "o"
    reliability: tuple[str, str] | None = None
    linewidth: float = 1.5
    markersize: float = 4.5

    @property
    def linestyle(self) -> str | tuple:
        return LINESTYLES.get(self.role, "-")


@dataclass
class Panel:
    """One axes: a title, a y label and its series; ``share`` bounds bands to [0, 1]."""

    title: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    share: bool = False
    note: str = ""  # a line under the title (what the panel leaves out)

    @property
    def columns(self) -> list[str]:
        return [s.column for s in self.series]


def reference(column: str, label: str, role: str) -> Series:
    """The paired-only classifier (``baseline``), chance (``chance``) or a fair baseline (``probe``,
    ``vae_probe``) beside the model."""
    if role == "chance":
        return Series(column, label, "chance", CHANCE, None, linewidth=1.3)
    if role == "probe":
        return Series(column, label, "probe", PROBE, "^", markersize=4.0, linewidth=1.3)
    if role == "vae_probe":
        return Series(column, label, "vae_probe", VAE_PROBE, "v", markersize=4.0, linewidth=1.3)
    return Series(column, label, "baseline", BASELINE, "s", markersize=4.0)
