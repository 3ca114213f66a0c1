"""The hooks every run of ``mvae train`` and ``mvae sweep`` gets: latent diagnostics in each
epoch's metrics line, the sample grid at the end, and the recipe's trackers."""

from __future__ import annotations

from mvae_cli.engine.hooks import TrainingHook
from mvae_cli.engine.trackers import TrackerHook
from mvae_cli.evaluate.diagnostics import LatentDiagnosticsHook
from mvae_cli.figures.samples import SampleGridHook


def training_hooks() -> list[TrainingHook]:
    """A fresh list of the standard hooks for one run (a module-level function: it is pickled to workers)."""
    return [LatentDiagnosticsHook(), SampleGridHook(), TrackerHook()]
