"""A fake trainer and evaluator for runner tests: module-level, so spawned workers can import them.

The trainer writes a minimal finished run directory and logs each call to
``<sweep>/train_calls.txt``; the evaluator returns (and writes) an ``eval.json`` whose numbers
are simple functions of the point, so aggregation can be checked exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mvae_cli.atomic import write_json
from mvae_cli.engine.run import write_config
from mvae_cli.recipe import recipe_from_dict

FAIL_SUPERVISION = 0.5  # the fake trainer fails on this level


def calls(sweep_dir: Path) -> list[str]:
    path = Path(sweep_dir) / "train_calls.txt"
    return path.read_text().split() if path.exists() else []


def fake_train(recipe, run_dir, progress):
    run_dir = Path(run_dir)
    with (run_dir.parent.parent / "train_calls.txt").open("a") as log:
        log.write(run_dir.name + "\n")
    if recipe.supervision == FAIL_SUPERVISION:
        raise RuntimeError("the fake trainer fails at supervision 0.5")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, recipe)
    progress("start", epochs=recipe.epochs, start_epoch=0, steps_per_epoch=2, n_examples=10, device="cpu",
             resumed=False)
    for epoch in range(recipe.epochs):
        for step in (1, 2):
            progress("step", epoch=epoch, step=step, steps=2, loss=1.0, examples_per_s=100.0)
    (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "loss": 1.0, "valid_elbo": -1.0}) + "\n")
    write_json(run_dir / "run.json", {"status": "finished", "epochs_done": recipe.epochs, "train_seconds": 2.0,
                                      "best_valid_elbo": -1.0})


def fake_accuracy(supervision: float, seed: int) -> float:
    return 0.5 + 0.4 * supervision + 0.01 * seed


def fake_evaluate(run_dir, config, *, device=None, progress=None, stage=None) -> dict:
    recipe = recipe_from_dict(yaml.safe_load((Path(run_dir) / "config.yaml").read_text()))
    acc = fake_accuracy(recipe.supervision or 0.0, recipe.seed)
    stat = lambda mean: {"mean": mean, "se": 0.1, "ess": 5.0}  # noqa: E731
    evaluation = {
        "particles": config.particles, "prior_samples": config.prior_samples, "split": config.split,
        "checkpoint": config.checkpoint,
        "n_examples": 10, "x": "image", "y": ["label"], "seconds": 3.0,
        "log_px": {"image": stat(-100.0 - recipe.seed)},
        "log_pxy": {"image": stat(-103.0), "image+label": stat(-102.0)},
        "log_px_given_y": {"image+label": stat(-101.0)},
        "var_log_w": {"marginal": {"image": 4.0}, "joint": {"image": 5.0, "image+label": 2.0},
                      "conditional": {"image+label": 1.5}},
        "accuracy": {"label": acc, "mean": acc},
    }
    if progress is not None:
        progress(10, 10)
    write_json(Path(run_dir) / "eval.json", evaluation)
    return evaluation


class FakeStackTrainer:
    """:func:`fake_train`, with a ``stack`` method as the real trainer's: it logs each stack's points (one
    line, space-separated) to ``<sweep>/stack_calls.txt`` and trains them one after another, a failing
    point's exception its result."""

    def __call__(self, recipe, run_dir, progress):
        fake_train(recipe, run_dir, progress)

    def stack(self, recipes, run_dirs, progress):
        with (Path(run_dirs[0]).parent.parent / "stack_calls.txt").open("a") as log:
            log.write(" ".join(Path(d).name for d in run_dirs) + "\n")
        results = []
        for recipe, run_dir, forward in zip(recipes, run_dirs, progress):
            try:
                fake_train(recipe, run_dir, forward)
                results.append(None)
            except RuntimeError as error:
                results.append(error)
        return results


def stack_calls(sweep_dir: Path) -> list[list[str]]:
    path = Path(sweep_dir) / "stack_calls.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


class DyingStackTrainer(FakeStackTrainer):
    """A stack whose worker process dies (as killed, or out of memory) when the stack holds the 1.0 level."""

    def stack(self, recipes, run_dirs, progress):
        if any("supervision=1.0" in Path(d).name for d in run_dirs):
            import os

            os._exit(1)
        return super().stack(recipes, run_dirs, progress)
