"""Rebuild ``tests/evaluate/old_runs/``: train every run of :data:`tests.evaluate.old_runs.RUNS`,
keep its weights, and write what this mvae's ``evaluate_run`` gives on every case to ``expected.json``.

The stored expectation was written by the mvae of commit 7d8ffa5, before evaluation took one
EvalConfig and was planned (this script then called ``evaluate_run(run_dir, **settings)``), so a
rebuild by a later mvae replaces a record of the old code's answers: rebuild only on purpose.
Run from the repository root: ``python -m tests.evaluate.make_old_runs``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from mvae_cli.engine.loop import train
from mvae_cli.eval_config import EvalConfig
from mvae_cli.evaluate.run_eval import evaluate_run
from mvae_cli.recipe import resolve_recipe
from tests.evaluate.old_runs import CASES, EXPECTED, ROOT, RUNS, TRAIN, comparable, dataset, install

KEEP = ("config.yaml", "run.json", "mask.npy")


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        shutil.rmtree(ROOT, ignore_errors=True)
        ROOT.mkdir()
        for run, (kind, model) in RUNS.items():
            path = dataset(kind, scratch)
            trained = scratch / "trained" / run
            train(resolve_recipe(None, [f"data.path={path}", f"model.name={model}", *TRAIN]), trained)
            (ROOT / run).mkdir()
            for name in KEEP:
                shutil.copy(trained / name, ROOT / run / name)
            state = torch.load(trained / "best.pt", map_location="cpu", weights_only=False)["model"]
            torch.save({"model": state}, ROOT / run / "best.pt")
        expected = {}
        for case, (run, settings) in CASES.items():
            folder = scratch / "eval" / case
            folder.mkdir(parents=True)
            run_dir = install(run, folder, case)
            evaluation = evaluate_run(run_dir, EvalConfig(**settings), device="cpu")
            written = json.loads((run_dir / "eval.json").read_text())
            assert list(written) == list(evaluation)
            with np.load(run_dir / "eval_examples.npz") as examples:
                expected[case] = comparable(written, examples)
            print(case, "done", file=sys.stderr)
    EXPECTED.write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
