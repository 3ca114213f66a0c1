"""Evaluation throughput of the paper's MNIST MVAE: the default `mvae eval` on 1,000 test images.

Every figure of eval.json (log p(x), log p(x,y), log p(x|y) under q(z|x), q(z|x,y) and q(z|y),
the weight variances, the accuracy, the diagnostics, the paired-only baseline, coherence) with
K = 1,000 particles and 5,000 prior samples, through the real library (`mvae_cli.evaluate.run_eval.evaluate_run`). The model (image 1×28×28
Bernoulli + label with 10 classes, z = 64, MLPs of 512) is trained for one short epoch
on MNIST-shaped synthetic data in a temporary directory, unless --run names a run or
--data a prepared dataset to train that epoch on. Prints seconds and examples/s, and the
matmul floor of the evaluation in its precision (`matmul_floor.py`: every decoder's GEMMs at
4,096-row chunks, for the n × K particles of every proposal and the prior samples, timed
alone; the encoders' n rows are left out) with the ratio to it of the importance-sampling
part (eval.json's ``seconds_by_part.likelihoods``) and of the whole evaluation.

The run is evaluated twice. The first evaluation of a dataset file trains the coherence classifiers
and the first of a mask the paired-only classifier; both are kept beside the file, so every later
evaluation of a study (the second here) loads them: the whole-eval ratio is printed for both.
The process is set up as the CLI's (`mvae_cli.accel.enable()`); --glibc-malloc leaves glibc's default allocator thresholds
(`mvae_cli/accel/allocator.py`), for the comparison, and the peak resident memory is printed.

    python benchmarks/eval_throughput.py [--limit 1000] [--particles 1000] [--prior-samples 5000]
                                         [--device auto] [--precision fp32|bf16] [--run RUN_DIR | --data data/mnist.h5]
                                         [--glibc-malloc]
"""

from __future__ import annotations

import sys

from mvae_cli import accel

# as the CLI's main() does, before torch is imported; --glibc-malloc: glibc's default thresholds
accel.enable(allocator="--glibc-malloc" not in sys.argv)

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from matmul_floor import describe, gemm_floor, record_linear_shapes  # noqa: I001 (beside this file)
from mvae_cli.accel.linear import cpu_linear_backend
from mvae_cli.data.format import ModalitySpec, write_dataset
from mvae_cli.engine.device import autocast, select_device
from mvae_cli.engine.loop import train
from mvae_cli.engine.run import load_trained
from mvae_cli.errors import UserError
from mvae_cli.eval_config import EvalConfig
from mvae_cli.evaluate.model_eval import ROWS_PER_BATCH
from mvae_cli.evaluate.run_eval import evaluate_run
from mvae_cli.recipe import resolve_recipe

RECIPE = Path(__file__).parent.parent / "recipes" / "mnist.yaml"


def synthetic_mnist(path: Path, n_train: int = 2000, n_valid: int = 200, n_test: int = 1000) -> Path:
    """MNIST-shaped data with MNIST-like statistics: mostly dark images, a bright stroke
    pattern per class, pixel noise."""
    rng = np.random.default_rng(0)
    specs = [ModalitySpec("image", "image", "bernoulli", (1, 28, 28)),
             ModalitySpec("label", "categorical", "categorical", (), 10)]
    templates = rng.random((10, 1, 28, 28)) < 0.19

    def split(n):
        label = rng.integers(0, 10, n)
        keep = rng.random((n, 1, 28, 28)) < 0.9
        image = np.where(templates[label] & keep, rng.integers(150, 256, (n, 1, 28, 28)), 0).astype(np.uint8)
        return {"image": image, "label": label.astype(np.uint8)}

    write_dataset(path, "mnist-synthetic", specs,
                  {"train": split(n_train), "valid": split(n_valid), "test": split(n_test)}, seed=0)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="test examples to evaluate")
    parser.add_argument("--particles", type=int, default=EvalConfig.particles)
    parser.add_argument("--prior-samples", type=int, default=EvalConfig.prior_samples)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--max-memory", default=None)
    parser.add_argument("--run", type=Path, default=None, help="evaluate this run directory instead")
    parser.add_argument("--data", type=Path, default=None, help="train the short epoch on this dataset file")
    parser.add_argument("--glibc-malloc", action="store_true", help="glibc's default mmap/trim thresholds")
    args = parser.parse_args()
    autocast(select_device(args.device), args.precision)  # refuses what this machine cannot run, before training
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run
        if run_dir is None:
            data = args.data or synthetic_mnist(Path(tmp) / "mnist.h5")
            run_dir = Path(tmp) / "run"
            started = time.perf_counter()
            train(resolve_recipe(RECIPE, [f"data.path={data}", "epochs=1", f"device={args.device}"]), run_dir)
            print(f"trained one epoch in {time.perf_counter() - started:.1f} s")
        results, walls = [], []
        for _ in range(2):  # the first trains what is kept beside the data file; the second loads it
            started = time.perf_counter()
            config = EvalConfig(particles=args.particles, prior_samples=args.prior_samples, limit=args.limit,
                                precision=args.precision)
            results.append(evaluate_run(run_dir, config, device=args.device, max_memory=args.max_memory))
            walls.append(time.perf_counter() - started)
        result, wall = results[0], walls[0]
        _, _, model = load_trained(run_dir, "best", torch.device("cpu"))
        floor = eval_floor(model, result["n_examples"], args.particles, args.prior_samples, args.precision,
                           proposals=len(result["log_px"]))
    n = result["n_examples"]
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    print(f"device {device}, torch threads {torch.get_num_threads()}, CPU linear kernel {cpu_linear_backend()} "
          f"(CPU capability {torch.backends.cpu.get_cpu_capability()}); {n:,} {result['split']} examples, "
          f"K = {result['particles']:,} particles per proposal, {result['prior_samples']:,} prior samples")
    for key in ("log_px", "log_pxy", "log_px_given_y"):
        print(f"  {key:<15}" + "  ".join(f"q({name}): {v['mean']:9.3f} ± {v['se']:.3f} (ESS {v['ess']:7.1f})"
                                        for name, v in result[key].items()))
    for kind, values in result["var_log_w"].items():
        print(f"  var log w, {kind:<12}" + "  ".join(f"q({name}): {v:.4g}" for name, v in values.items()))
    print(f"  accuracy       {result['accuracy']}")
    for which, result, wall in zip(("first eval of the data file", "a later eval (classifiers loaded)"),
                                   results, walls):
        print(f"{which}: {result['seconds']:.2f} s = {n / result['seconds']:,.1f} examples/s "
              f"(including the model load: {wall:.2f} s)")
        print("  by part: " + ", ".join(f"{part} {s:.2f} s" for part, s in result["seconds_by_part"].items()))
    likelihoods = min(r["seconds_by_part"]["likelihoods"] for r in results)
    print(describe(f"importance sampling ({len(result['log_px'])} proposals) in {args.precision}", *floor, likelihoods))
    print(describe(f"whole eval in {args.precision}, first of the data file", *floor, results[0]["seconds"]))
    print(describe(f"whole eval in {args.precision}, later (classifiers loaded)", *floor, results[1]["seconds"]))
    allocator = "glibc's default thresholds" if args.glibc_malloc else "mvae's thresholds"
    print(f"allocator {allocator}: peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


def eval_floor(model, n: int, particles: int, prior_samples: int, precision: str, chunk: int = 4096,
               proposals: int = 3) -> tuple[float, float]:
    """Seconds and flops of the decoders' GEMMs of an evaluation: the n × K particles of every
    proposal through every decoder, and the prior samples through y's decoders once per batch."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    batches = -(-n // max(1, ROWS_PER_BATCH // particles))
    seconds = flops = 0.0
    for index, name in enumerate(model.names):
        with torch.no_grad():
            shapes = record_linear_shapes(lambda: model.decode(name, torch.zeros(chunk, model.latent_dim)))
        rows = n * particles * proposals + (batches * prior_samples if index > 0 else 0)
        s, f = gemm_floor(shapes, dtype, backward=False)
        seconds, flops = seconds + s * rows / chunk, flops + f * rows / chunk
    return seconds, flops


if __name__ == "__main__":
    try:
        main()
    except UserError as error:  # what this machine cannot run: one line, as the CLI says it
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
