"""Time per training epoch of each model on one dataset, and its ratio to the MVAE's.

Every model trains through the real engine (`mvae_cli.engine.loop.train`) on the same prepared
file with the same recipe (default: recipes/polymnist.yaml without its grid), one after the
other, for --epochs epochs (default 2); the figure is the best epoch's training seconds (validation and
checkpoints excluded, as metrics.jsonl reports them). Run it on a quiet machine.

    python benchmarks/model_epoch.py --data data/polymnist.h5 [--models mvae,mmvae,mopoe,mmjsd]
        [--recipe recipes/polymnist.yaml] [--supervision 1.0] [KEY=VALUE ...]
"""

from __future__ import annotations

from mvae_cli import accel

accel.enable()  # as the CLI's main() does, before torch is imported

import argparse
import json
import tempfile
from pathlib import Path

import torch

from mvae_cli.engine.loop import train
from mvae_cli.recipe import load_recipe_dict, recipe_from_dict, set_key, parse_override

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a prepared dataset file")
    parser.add_argument("--models", default="mvae,mmvae,mopoe,mmjsd")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "polymnist.yaml")
    parser.add_argument("--supervision", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=2, help="the best epoch counts (the first pays for warm-up)")
    parser.add_argument("overrides", nargs="*", help="recipe KEY=VALUE for every model")
    args = parser.parse_args()
    models = args.models.split(",")
    raw = load_recipe_dict(args.recipe)
    raw.pop("grid", None)
    for text in [f"data.path={args.data.resolve()}", f"supervision={args.supervision}", f"epochs={args.epochs}",
                 "checkpoint_every=1000", *args.overrides]:
        set_key(raw, *parse_override(text))
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            set_key(raw, "model.name", name)
            recipe = recipe_from_dict(raw)
            run = Path(tmp) / name
            train(recipe, run)
            lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            seconds[name] = min(line["seconds"] for line in lines)
            print(f"{name}: {seconds[name]:.1f} s per epoch ({lines[-1]['examples_per_s']:,.0f} examples/s)", flush=True)
    print(f"torch threads {torch.get_num_threads()}; recipe {args.recipe.name}; {args.data}")
    base = seconds.get("mvae")
    print("| model | s / epoch | × the MVAE |")
    print("| --- | ---: | ---: |")
    for name in models:
        ratio = f"{seconds[name] / base:.2f}" if base else "–"
        print(f"| {name} | {seconds[name]:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
