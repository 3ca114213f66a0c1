"""Training throughput of the paper's MNIST MVAE on the current device.

MLP encoders/decoders 2×512 with Swish, z = 64, batch 100, 50,000 fully paired
examples (image + label), through the real engine (`mvae_cli.engine.loop.train`).
Prints examples/s and seconds per epoch, and the matmul floor of an epoch in the run's
precision (`matmul_floor.py`: the GEMMs of one real step at their shapes, timed alone, × the
steps of an epoch) with the best epoch's ratio to it. Uses real MNIST when --data names a
prepared file, else MNIST-shaped synthetic data (the arithmetic is the same). The process is set
up as the CLI's (`mvae_cli.accel.enable()`: OpenMP spin count, glibc's allocator thresholds, the CPU
linear kernel); --glibc-malloc leaves glibc's default thresholds, for the comparison
(`mvae_cli/accel/allocator.py`).

    python benchmarks/train_throughput.py [--epochs 2] [--device auto] [--precision fp32] [--data data/mnist.h5]
        [--glibc-malloc]
"""

from __future__ import annotations

import sys

from mvae_cli import accel

# as the CLI's main() does, before torch is imported; --glibc-malloc: glibc's default thresholds
accel.enable(allocator="--glibc-malloc" not in sys.argv)

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from matmul_floor import describe, gemm_floor, record_linear_shapes  # noqa: I001 (beside this file)
from mvae_cli.accel.linear import cpu_linear_backend
from mvae_cli.data.format import ModalitySpec, read_dataset, write_dataset
from mvae_cli.engine.device import autocast
from mvae_cli.engine.loop import train
from mvae_cli.engine.run import build_model
from mvae_cli.errors import UserError
from mvae_cli.zoo import objective as make_objective
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
    parser.add_argument("--glibc-malloc", action="store_true", help="glibc's default mmap/trim thresholds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or synthetic_mnist(Path(tmp) / "mnist.h5")
        recipe = resolve_recipe(Path(__file__).parent.parent / "recipes" / "mnist.yaml", [
            f"data.path={data}", f"epochs={args.epochs}", f"device={args.device}", f"precision={args.precision}"])
        started, faults = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        train(recipe, Path(tmp) / "run")
        wall = time.perf_counter() - started
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        steps_run = args.epochs * -(-50_000 // recipe.batch_size)
        lines = [json.loads(l) for l in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    allocator = "glibc's default thresholds" if args.glibc_malloc else "mvae's thresholds"
    print(f"device {lines[0].get('device', args.device)}, torch threads {torch.get_num_threads()}, "
          f"precision {args.precision}, CPU linear kernel {cpu_linear_backend()} (CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}), allocator {allocator}, page faults {faults:,} ({faults / steps_run:,.1f} a step)")
    for line in lines:
        print(f"epoch {line['epoch']}: {line['seconds']:.2f} s, {line['examples_per_s']:,.0f} examples/s "
              f"(training steps only; validation excluded), peak memory {line['peak_memory_mb']:.0f} MB")
    best = min(l["seconds"] for l in lines)
    print(f"best epoch: {best:.2f} s = {50_000 / best:,.0f} examples/s; whole run incl. setup, validation, checkpoints: {wall:.1f} s")
    steps = -(-50_000 // recipe.batch_size)
    seconds, flops = step_floor(recipe, data if args.data else None)
    print(describe(f"epoch of {steps} steps in {args.precision}", seconds * steps, flops * steps, best))


def step_floor(recipe, data) -> tuple[float, float]:
    """The matmul floor of one training step (batch of ``recipe.batch_size`` paired rows)."""
    specs = [ModalitySpec("image", "image", "bernoulli", (1, 28, 28)),
             ModalitySpec("label", "categorical", "categorical", (), 10)]
    if data is not None:
        with read_dataset(data) as dataset:
            specs = dataset.specs
    model = build_model(recipe, specs)
    objective = make_objective(recipe.model.name, **({'k': recipe.objective.k or 0} if recipe.model.name in ('mvae', 'mvae-q') else {}))
    n = recipe.batch_size
    batch = {"image": torch.rand(n, 1, 28, 28).round(), "label": torch.randint(0, 10, (n,)),
             "mask": torch.ones(n, 2, dtype=torch.bool)}

    def step():
        with autocast(torch.device("cpu"), recipe.precision):
            objective(model, batch, 0)[0].backward()

    dtype = torch.bfloat16 if recipe.precision == "bf16" else torch.float32
    return gemm_floor(record_linear_shapes(step), dtype, backward=True)


if __name__ == "__main__":
    try:
        main()
    except UserError as error:  # what this machine cannot run: one line, as the CLI says it
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
