"""Hooks: what a training run does besides training, registered by the caller.

The engine trains, validates, checkpoints and writes ``metrics.jsonl``; what is not training
(latent diagnostics in every epoch's line, the sample grid at the end, experiment trackers) is a
hook the caller passes (``mvae train``, ``mvae sweep``), as pyro's ``SVI.step`` knows nothing of
plotting. A hook overrides the methods it needs; each is called on the main rank only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from mvae_cli.engine.loop import Session
    from mvae_cli.recipe import Recipe


class TrainingHook:
    """A no-op at every phase; subclasses override what they need."""

    tracks = False  # True for a hook that sends the recipe's ``trackers`` their lines

    def start(self, recipe: "Recipe", run_dir: Path) -> None:
        """Before anything is written to ``run_dir`` (a hook may refuse the run here)."""

    def epoch_metrics(self, session: "Session") -> dict:
        """Figures added to this epoch's ``metrics.jsonl`` line (after validation)."""
        return {}

    def epoch_end(self, session: "Session", line: dict) -> None:
        """After the epoch's line is written (and its checkpoints saved)."""

    def finish(self, session: "Session") -> None:
        """After the last epoch, before ``run.json`` says the run finished."""

    def close(self, status: str) -> None:
        """At the end, ``finished`` or ``failed``, whatever happened."""


Hooks = Sequence[TrainingHook]
HookFactory = Callable[[], Hooks]  # a module-level function, so it reaches worker processes pickled
