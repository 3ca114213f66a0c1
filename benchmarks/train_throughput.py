"""Training throughput of the paper's MNIST MVAE on the current device.

MLP encoders/decoders 2×512 with Swish, z = 64, batch 100, 50,000 fully paired
examples (image + label), through the real engine (`mvae_cli.engine.loop.train`).
Prints examples/s and seconds per epoch. Uses real MNIST when --data names a prepared
file, else MNIST-shaped synthetic data (the arithmetic is the same).

    python benchmarks/train_throughput.py [--epochs 2] [--device auto] [--precision fp32] [--data data/mnist.h5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mvae_cli.data.format import ModalitySpec, write_dataset
from mvae_cli.engine.loop import train
from mvae_cli.recipe import resolve_recipe


def synthetic_mnist(path: Path, n_train: int = 50_000, n_valid: int = 10_000) -> Path:
    rng = np.random.default_rng(0)
    specs = [ModalitySpec("image", "image", "bernoulli", (1, 28, 28)),
             ModalitySpec("label", "categorical", "categorical", (), 10)]

    def split(n):
        return {"image": rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), "label": rng.integers(0, 10, n).astype(np.uint8)}

    write_dataset(path, "mnist-synthetic", specs, {"train": split(n_train), "valid": split(n_valid), "test": split(100)}, seed=0)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or synthetic_mnist(Path(tmp) / "mnist.h5")
        recipe = resolve_recipe(Path(__file__).parent.parent / "recipes" / "mnist.yaml", [
            f"data.path={data}", f"epochs={args.epochs}", f"device={args.device}", f"precision={args.precision}"])
        started = time.perf_counter()
        train(recipe, Path(tmp) / "run")
        wall = time.perf_counter() - started
        lines = [json.loads(l) for l in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    print(f"device {lines[0].get('device', args.device)}, torch threads {torch.get_num_threads()}, precision {args.precision}")
    for line in lines:
        print(f"epoch {line['epoch']}: {line['seconds']:.2f} s, {line['examples_per_s']:,.0f} examples/s "
              f"(training steps only; validation excluded), peak memory {line['peak_memory_mb']:.0f} MB")
    best = min(l["seconds"] for l in lines)
    print(f"best epoch: {best:.2f} s = {50_000 / best:,.0f} examples/s; whole run incl. setup, validation, checkpoints: {wall:.1f} s")


if __name__ == "__main__":
    main()
