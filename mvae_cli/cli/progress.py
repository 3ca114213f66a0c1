"""Rich rendering of the engine's progress events (shared by `train` and `sweep`)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )


class TrainingDisplay:
    """A progress callback for :func:`mvae_cli.engine.loop.train`: one bar over the steps of every
    epoch (so its elapsed and remaining times cover the whole run; a bar refilled each epoch froze
    them once it first completed), and one printed line per finished epoch."""

    def __init__(self, progress: Progress, label: str = ""):
        self.progress = progress
        self.label = label
        self.task = None
        self.epochs = 0
        self.done = 0  # epochs finished (and checkpointed): where a resume starts
        self.steps_per_epoch = 0
        self.started, self.first = 0.0, 0  # when and after which epoch this invocation started

    def __call__(self, event: str, **info) -> None:
        if event == "start":
            self.epochs, self.done = info["epochs"], info["start_epoch"]
            self.started, self.first = time.monotonic(), info["start_epoch"]
            note = f" (resumed after epoch {info['start_epoch']})" if info["resumed"] else ""
            self.progress.console.print(
                f"{self.label}training on {info['n_examples']:,} examples, {info['device']}{note}")
            self.steps_per_epoch = info["steps_per_epoch"]
            self.task = self.progress.add_task("", total=self.epochs * self.steps_per_epoch,
                                               completed=info["start_epoch"] * self.steps_per_epoch, status="")
        elif event == "step":
            self.progress.update(
                self.task, completed=info["epoch"] * self.steps_per_epoch + info["step"],
                description=f"{self.label}epoch {info['epoch'] + 1}/{self.epochs}",
                status=f"loss {info['loss']:.2f}  {info['examples_per_s']:,.0f} ex/s")
        elif event == "epoch":
            self.done = info["epoch"]
            self.progress.console.print(
                f"{self.label}epoch {info['epoch']}/{self.epochs}  loss {info['loss']:.3f}  "
                f"valid ELBO {info['valid_elbo']:.3f}  β {info['beta']:.2f}  "
                f"{info['seconds']:.1f} s  {info['examples_per_s']:,.0f} ex/s{self._left()}")

    def _left(self) -> str:
        """The time the remaining epochs will take at this invocation's pace so far (validation and
        checkpoints included), for logs where no bar shows it."""
        ran, left = self.done - self.first, self.epochs - self.done
        if ran < 1 or left < 1:
            return ""
        return f"  {duration((time.monotonic() - self.started) / ran * left)} left"

    def close(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def duration(seconds: float) -> str:
    """``45 s``, ``27 min``, ``2 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
