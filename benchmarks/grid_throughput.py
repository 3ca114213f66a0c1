"""N runs of one recipe trained as one stack against the same N runs one after another, in one process.

Each run has its own mask (the grid's supervision levels 0.01, 0.1 and 1, a third of the runs each), its own seed, model,
Adam and noise streams; a "step" is one optimiser step of every run. Sequential: the plain
single-run step (`objective(model, batch, step)`, backward, fused Adam) for each run in turn, as
the engine trains a run alone whose model has no like networks to group (the MNIST nets).
Stacked: the engine's stacked step (`mvae_cli.engine.stack`: one batch of the N runs' batches, one
forward and backward of the stacked networks, one fused Adam over the stacked parameters). Ones:
each run in turn as a stack of one, as the engine trains a run alone whose model has like networks
(the quick-start nets' attributes; `mvae_cli.engine.launch.trains_as_stack_of_one`): ones / stacked
is what batching the runs adds to that. Prints ms per step of all N runs, the ratios sequential /
stacked and ones / stacked, the stacked step's matmul floor (its
matrix products, forward and backward, timed alone at their shapes and strides) with the step's
ratio to it, and the stacked step's breakdown (host plan and batch assembly, forward, backward,
optimiser). The three are timed in turn, round after round; each one's best round counts.

    python benchmarks/grid_throughput.py [--nets quickstart,mnist] [--n 1,3,9,30] [--steps 30]

The quick-start nets: the shapes dataset's layout (an RGB 32×32 image and five categorical
attributes), MLPs of 64, z = 16, batch 50, k = 1. The MNIST nets: the paper's (784 pixels and a
10-class label, MLPs of 512, z = 64, batch 100). Synthetic data of those shapes (the arithmetic is
the same as real data's).
"""

from __future__ import annotations

import sys

from mvae_cli import accel

accel.enable()  # as the CLI's main() does, before torch is imported

import argparse
import time

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mvae_cli.data.format import ModalitySpec
from mvae_cli.engine.run import build_model
from mvae_cli.engine.loop import build_objective
from mvae_cli.model.rows import stack_batches, with_host_mask
from mvae_cli.model.stack import stack_models
from mvae_cli.recipe import recipe_from_dict

NETS = {
    "quickstart": ([ModalitySpec("image", "image", "bernoulli", (3, 32, 32))]
                   + [ModalitySpec(n, "categorical", "categorical", (), c)
                      for n, c in (("shape", 3), ("colour", 4), ("size", 2), ("xpos", 3), ("ypos", 3))],
                   {"model": {"latent_dim": 16, "hidden": 64}, "batch_size": 50, "objective": {"k": 1}}),
    "mnist": ([ModalitySpec("image", "image", "bernoulli", (1, 28, 28)), ModalitySpec("label", "categorical", "categorical", (), 10)],
              {"model": {"latent_dim": 64, "hidden": 512}, "batch_size": 100}),
}
LEVELS = (0.01, 0.1, 1.0)
ROUNDS = 6  # timing rounds of each variant, interleaved; the best round counts


def _data(specs, n_rows: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    data = {}
    for s in specs:
        if s.kind == "image":
            data[s.name] = torch.rand(n_rows, *s.shape, generator=g).round()
        else:
            data[s.name] = torch.randint(0, s.classes, (n_rows,), generator=g)
    return data


def _mask(n_rows: int, m: int, level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((n_rows, m), dtype=bool)
    paired = rng.random(n_rows) < level
    mask[paired] = True
    mask[~paired, rng.integers(0, m, n_rows)[~paired]] = True
    return mask


def run(nets: str, n: int, steps: int) -> dict:
    specs, settings = NETS[nets]
    recipe = recipe_from_dict({**settings, "model": {"name": "mvae", **settings["model"]}})
    B, rows = recipe.batch_size, 5000
    data = _data(specs, rows, 0)
    masks = [_mask(rows, len(specs), LEVELS[r * len(LEVELS) // n], r) for r in range(n)]  # levels in turn, as a sweep orders them
    models = []
    for r in range(n):
        torch.manual_seed(r)
        models.append(build_model(recipe, specs))
    objective = build_objective(recipe, 100, recipe.objective.k)
    order = np.random.default_rng(1)

    def batch_of(r):
        index = order.integers(0, rows, B)
        tensors = {name: value[index] for name, value in data.items()}
        tensors["mask"] = torch.from_numpy(masks[r][index])
        return with_host_mask(tensors, masks[r][index])

    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3, fused=True) for m in models]

    def sequential():
        for r in range(n):
            batch = batch_of(r)
            optimizers[r].zero_grad(set_to_none=True)
            loss, _ = objective(models[r], batch, 1000)
            loss.backward()
            optimizers[r].step()

    stacked = stack_models(models)
    opt = torch.optim.Adam(stacked.parameters(), lr=1e-3, fused=True)
    streams = [(torch.Generator().manual_seed(r), np.random.RandomState(r)) for r in range(n)]
    parts = {"batch": 0.0, "forward": 0.0, "backward": 0.0, "adam": 0.0}

    def stack_step(record: bool):
        t0 = time.perf_counter()
        batch = stack_batches([batch_of(r) for r in range(n)], streams)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        losses, _ = objective.loss(stacked, batch, 1.0)
        t2 = time.perf_counter()
        losses.sum().backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if record:
            for key, (a, b) in zip(parts, ((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
                parts[key] += (b - a) * 1000 / steps

    # Each run alone as a stack of one: what of the stacked step's gain a single run could have too
    # (the like networks of several modalities grouped, fewer operations), apart from batching runs.
    ones = [stack_models([m]) for m in models]
    one_opts = [torch.optim.Adam(o.parameters(), lr=1e-3, fused=True) for o in ones]

    def sequential_ones():
        for r in range(n):
            batch = stack_batches([batch_of(r)], [streams[r]])
            one_opts[r].zero_grad(set_to_none=True)
            losses, _ = objective.loss(ones[r], batch, 1.0)
            losses.sum().backward()
            one_opts[r].step()

    result = {"floor": gemm_floor(lambda: stack_step(False))}
    variants = (("sequential", sequential), ("ones", sequential_ones), ("stacked", lambda: stack_step(False)))
    for _, fn in variants:
        for _ in range(3):
            fn()
    result.update({name: float("inf") for name, _ in variants})
    calls = max(1, steps // ROUNDS)
    for _ in range(ROUNDS):  # in turn, so that a slow spell of a shared machine slows each
        for name, fn in variants:
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            result[name] = min(result[name], (time.perf_counter() - start) * 1000 / calls)
    for _ in range(steps):
        stack_step(True)
    result["parts"] = parts
    return result


_PRODUCTS = {"mm", "addmm", "bmm", "baddbmm", "linear", "_mkldnn_linear", "mkldnn_linear", "_linear_pointwise"}


class _Products(TorchDispatchMode):
    """Records every matrix product of a step (forward and backward) with its operands' shapes."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket.__name__ in _PRODUCTS:
            def shape(a):
                return (tuple(a.shape), a.stride()) if torch.is_tensor(a) else a
            self.calls.append((func, [shape(a) for a in args], {k: shape(v) for k, v in kwargs.items()}))
        return func(*args, **kwargs)


def gemm_floor(step) -> float:
    """The stacked step's matrix products alone, at their shapes and strides: ms (best of 5)."""
    recorder = _Products()
    with recorder:
        step()
    total = 0.0
    def tensor(shape):
        return torch.empty_strided(*shape).normal_() if isinstance(shape, tuple) else shape

    for func, shapes, named in recorder.calls:  # (a product written into a given output keeps its out=)
        args, kwargs = [tensor(shape) for shape in shapes], {k: tensor(v) for k, v in named.items()}
        func(*args, **kwargs)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            func(*args, **kwargs)
            best = min(best, time.perf_counter() - start)
        total += best
    return total * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="quickstart,mnist")
    parser.add_argument("--n", default="1,3,9,30")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per step of all N runs (best of {ROUNDS} interleaved rounds of {max(1, args.steps // ROUNDS)})")
    print(f"{'nets':<11}{'N':>4}{'sequential':>12}{'ones':>8}{'stacked':>10}{'ratio':>8}{'/ones':>7}{'floor':>8}"
          f"{'/floor':>8}   stacked step: batch / forward / backward / adam")
    for nets in args.nets.split(","):
        for n in (int(v) for v in args.n.split(",")):
            r = run(nets, n, args.steps)
            p = r["parts"]
            print(f"{nets:<11}{n:>4}{r['sequential']:>12.1f}{r['ones']:>8.1f}{r['stacked']:>10.1f}"
                  f"{r['sequential'] / r['stacked']:>7.2f}x{r['ones'] / r['stacked']:>6.2f}x"
                  f"{r['floor']:>8.1f}{r['stacked'] / r['floor']:>7.2f}x"
                  f"   {p['batch']:.1f} / {p['forward']:.1f} / {p['backward']:.1f} / {p['adam']:.1f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
