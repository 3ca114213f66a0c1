"""Rich rendering of the engine's progress events (shared by `train` and `sweep`)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
# A bar this wide leaves room, at 80 columns, for a point's name (supervision=0.01,seed=0), its status
# (epoch 2/5  loss 2397.40) and the elapsed and remaining times.
BAR_WIDTH = 12


def make_eval_progress() -> Progress:
    """The bar of one evaluation: a spinner, what runs, its bar, its count and the time so far (transient)."""
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=BAR_WIDTH),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console, transient=True,
                    disable=not console.is_terminal)


def make_progress(transient: bool = False) -> Progress:
    """The bars of training and of a sweep (``transient``: gone when done, as `mvae train`'s)."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(bar_width=BAR_WIDTH),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=transient,
        disable=not console.is_terminal,  # in a file the printed lines are the log: no bar, no blank line at its end
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
        self.beta = None  # β of the last epoch line

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
            # β only while it changes (annealing): the line stays within 80 columns
            beta = f"  β {info['beta']:.2f}" if info.get("beta") != self.beta else ""
            self.beta = info.get("beta")
            head = (f"{self.label}epoch {info['epoch']}/{self.epochs}  loss {info['loss']:.1f}  "
                    f"valid ELBO {info['valid_elbo']:.1f}{beta}  {info['seconds']:.1f} s")
            speed, left = f"  {info['examples_per_s']:,.0f} ex/s", self._left()
            if len(head + speed + left) > self.progress.console.width:  # one line: the speed gives way first
                speed = ""
            self.progress.console.print(head + speed + left, highlight=False)

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


class EvalDisplay:
    """Progress of one evaluation (:func:`mvae_cli.evaluate.run_eval.evaluate_run`): a bar over the
    examples of the likelihoods, then a line per later part (the paired-only classifier, coherence
    and the latent probe: tens of seconds where the bar alone would sit finished and silent).

    On a terminal the bar and the running part's spinner are transient; in a file (or a pipe) each
    part is one line with the seconds since the evaluation started, as it starts.
    """

    def __init__(self, progress: Progress, label: str = ""):
        self.progress, self.label = progress, label
        self.started = time.monotonic()
        self.task = progress.add_task(f"{label}likelihoods", total=None, status="examples")
        self.logged = not progress.console.is_terminal

    def examples(self, done: int, total: int) -> None:
        """``progress(done, total)`` of the estimator, in examples."""
        if self.logged and done == 0:
            self._line(f"likelihoods of {total:,} examples")
        self.progress.update(self.task, completed=done, total=total, status=f"{done:,}/{total:,} examples")

    def stage(self, description: str) -> None:
        """``stage(description)``: the next part starts."""
        if self.logged:
            self._line(description)
        self.progress.update(self.task, description=f"{self.label}{description}", total=None, completed=0,
                             status="")

    def _line(self, what: str) -> None:
        self.progress.console.print(f"{self.label}{time.monotonic() - self.started:6.1f} s  {what}", highlight=False)

    def close(self) -> None:
        if self.logged:
            self._line("done")
        self.progress.remove_task(self.task)


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``1 point``, ``3 points``, ``0 points``."""
    return f"{n:,} {noun if n == 1 else many or noun + 's'}"


def duration(seconds: float) -> str:
    """``45 s``, ``27 min``, ``2 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
