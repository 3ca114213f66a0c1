"""Tiny run directories of every model, trained and evaluated once by an earlier mvae, kept under
``tests/evaluate/old_runs/``: eval.json must keep its keys and values on them.

Each case is a run (``config.yaml``, ``run.json``, ``mask.npy`` and ``best.pt`` holding the
weights only) and the evaluation settings it was scored with; ``expected.json`` holds what
that mvae wrote (eval.json without its timings, and every per-example figure of
eval_examples.npz). ``make_old_runs.py`` rebuilds them; the datasets are rebuilt from their
seed by :func:`tests.helpers.make_dataset`, so only the runs are stored.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from mvae_cli.data.format import ModalitySpec
from mvae_cli.data.layout import fingerprint
from tests.helpers import IMAGE_LABEL, make_dataset

ROOT = Path(__file__).parent / "old_runs"
EXPECTED = ROOT / "expected.json"
MODELS = ("mvae", "mvae-q", "vae", "cvae", "bivcca", "jmvae", "mmvae", "mopoe", "mmjsd")
THREE = [*IMAGE_LABEL, ModalitySpec("parity", "categorical", "categorical", (), 2)]
DATASETS = {"two": (IMAGE_LABEL, (120, 40, 40)), "three": (THREE, (120, 40, 40))}
TRAIN = ["epochs=1", "batch_size=32", "model.hidden=16", "model.latent_dim=4", "supervision=0.5", "seed=1"]
EVAL = {"particles": 6, "prior_samples": 9, "limit": 12, "seed": 3}
# run name -> (dataset, model); then case name -> (run name, evaluation settings)
RUNS = {**{name: ("two", name) for name in MODELS},
        **{f"{name}-three": ("three", name) for name in ("mvae", "mopoe", "mmvae", "cvae")}}
CASES = {**{run: (run, {**EVAL, "baseline": True}) for run in RUNS},
         **{f"{run}-x=label": (run, {**EVAL, "x": "label", "y": ["image"], "baseline": False})
            for run in ("mvae", "bivcca", "jmvae")},
         "mopoe-three-y=parity": ("mopoe-three", {**EVAL, "y": ["parity"], "checkpoint": "best", "baseline": False}),
         "mvae-three-valid": ("mvae-three", {**EVAL, "split": "valid", "limit": None, "baseline": False})}
TIMINGS = ("seconds", "seconds_by_part")  # eval.json keys that vary from run to run


def dataset(kind: str, folder: Path) -> Path:
    """The dataset ``kind`` of :data:`DATASETS`, built in ``folder`` (once)."""
    path = Path(folder) / f"{kind}.h5"
    if not path.exists():
        specs, sizes = DATASETS[kind]
        make_dataset(path, specs=specs, sizes=sizes, seed=7)
    return path


def install(run: str, folder: Path, name: str | None = None) -> Path:
    """A copy of the stored run ``run`` as ``folder/name`` (default: the run's name), pointed at its
    dataset built in ``folder`` (once: runs installed in one folder share it, and the classifiers
    an evaluation keeps beside it)."""
    kind, _ = RUNS[run]
    data = dataset(kind, folder)
    target = Path(folder) / (name or run)
    shutil.copytree(ROOT / run, target)
    info = json.loads((target / "run.json").read_text())
    info["dataset"] = {**info["dataset"], "path": str(data), "abspath": str(data.resolve()),
                       "fingerprint": fingerprint(data)}
    (target / "run.json").write_text(json.dumps(info))
    config = yaml.safe_load((target / "config.yaml").read_text())
    config["data"]["path"] = str(data)
    (target / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target


# Figures eval.json gained after the expectation was written (and their timing): compared by their own tests
# (tests/evaluate/test_fair.py), left out here so the stored record of the old code's answers stays as it was.
ADDED = ("paired_probe", "vae_probe")
ADDED_PARTS = ("fair_baselines",)


def comparable(evaluation: dict, examples) -> dict:
    """eval.json without its timings (their keys kept) and without the figures added since the
    expectation (:data:`ADDED`), with every per-example figure of eval_examples.npz."""
    out = {key: (sorted(k for k in value if k not in ADDED_PARTS) if key == "seconds_by_part" else None)
           if key in TIMINGS else value
           for key, value in evaluation.items() if key not in ADDED}
    if isinstance(out.get("not_defined"), dict):
        out["not_defined"] = {k: v for k, v in out["not_defined"].items() if k not in ADDED}
    out["per_example"] = {key: examples[key].tolist() for key in examples.files if key not in ("split", "n_examples")}
    out["per_example_order"] = list(examples.files)
    return out
