"""Experiment trackers beside ``metrics.jsonl``: TensorBoard and MLflow, each imported only when asked.

``metrics.jsonl`` stays the record; a tracker receives the same line after every epoch.

- ``tensorboard``: event files in ``RUN_DIR/tensorboard`` (``tensorboard --logdir sweeps/<name>/runs``
  shows a sweep's points side by side); needs ``pip install 'mvae-cli[tensorboard]'``.
- ``mlflow``: one MLflow run per training run, in the experiment named by the sweep (else
  ``mvae``), with the recipe as parameters; the tracking URI is ``MLFLOW_TRACKING_URI`` when
  set, else a local file store ``./mlruns``; needs ``pip install 'mvae-cli[mlflow]'``.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from mvae_cli.engine.hooks import TrainingHook
from mvae_cli.errors import UserError

_PACKAGES = {"tensorboard": ("torch.utils.tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
_SKIP = ("epoch", "step")  # the x axes, not figures


def _require(name: str):
    module, extra = _PACKAGES[name]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"--tracker {name} needs the {extra} package: pip install 'mvae-cli[{extra}]'") from None


def _flat(mapping: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class TensorBoardTracker:
    def __init__(self, run_dir: Path, group: str | None, params: dict):
        module = _require("tensorboard")
        self.writer = module.SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        self.writer.add_text("recipe", "\n".join(f"    {k}: {v}" for k, v in _flat(params).items()))

    def log(self, line: dict) -> None:
        for key, value in line.items():
            if key not in _SKIP and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, global_step=line["epoch"])
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()


class MLflowTracker:
    def __init__(self, run_dir: Path, group: str | None, params: dict):
        self.mlflow = _require("mlflow")
        self.mlflow.set_experiment(group or "mvae")
        self.run = self.mlflow.start_run(run_name=Path(run_dir).name, tags={"mvae.run_dir": str(Path(run_dir).resolve())})
        self.mlflow.log_params({k: str(v)[:500] for k, v in _flat(params).items()})

    def log(self, line: dict) -> None:
        metrics = {k: float(v) for k, v in line.items() if k not in _SKIP and isinstance(v, (int, float))}
        self.mlflow.log_metrics(metrics, step=line["epoch"])

    def close(self, status: str) -> None:
        self.mlflow.end_run("FINISHED" if status == "finished" else "FAILED")


_TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker}


class Trackers:
    """The recipe's trackers, opened for one run (none: every call does nothing).

    Args:
        names: ``recipe.trackers``.
        run_dir: the run directory.
        params: the resolved recipe as a mapping.
        group: the sweep the run belongs to (its directory name), or None.

    Raises:
        UserError: a tracker's package is not installed (one line saying what to install).
    """

    def __init__(self, names: list[str], run_dir: Path, params: dict, group: str | None = None):
        self.open = [_TRACKERS[name](run_dir, group, params) for name in dict.fromkeys(names)]

    def log(self, line: dict) -> None:
        for tracker in self.open:
            tracker.log(line)

    def close(self, status: str = "finished") -> None:
        for tracker in self.open:
            tracker.close(status)
        self.open = []


def sweep_group(run_dir: Path) -> str | None:
    """The sweep a run directory belongs to: ``<sweep>`` for ``<sweep>/runs/<point>``."""
    run_dir = Path(run_dir).resolve()
    return run_dir.parent.parent.name if run_dir.parent.name == "runs" and (run_dir.parent.parent / "sweep.json").exists() else None


class TrackerHook(TrainingHook):
    """The recipe's trackers as a training hook: opened before the run writes anything (a missing
    package stops it there), handed every epoch's line, closed with the run's status."""

    tracks = True

    def __init__(self):
        self.trackers: Trackers | None = None

    def start(self, recipe, run_dir: Path) -> None:
        self.trackers = Trackers(recipe.trackers, run_dir, dataclasses.asdict(recipe), sweep_group(run_dir))

    def epoch_end(self, session, line: dict) -> None:
        self.trackers.log(line)

    def close(self, status: str) -> None:
        if self.trackers is not None:
            self.trackers.close(status)
