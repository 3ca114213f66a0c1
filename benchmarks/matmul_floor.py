"""The matmul floor of a workload: how long its matrix products alone take at their shapes here.

A training step or an evaluation is mostly the GEMMs of its ``nn.Linear`` layers. This
records every linear layer's shape during a real call (forward hooks: rows, in, out, whether
its input needs a gradient), then times exactly those products in the given dtype, each with
the faster of ``torch.mm`` and oneDNN's linear kernel (what the engine's CPU linear layers
use; MKL's sgemm is much slower on some CPUs): the forward product and, for training, the two of the backward pass (the input's
gradient where it needs one, the weight's). The sum is the floor a perfect implementation
could approach; a workload's time divided by it says how much goes elsewhere (elementwise
ops, the optimiser, Python). Used by ``train_throughput.py`` and ``eval_throughput.py``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable

import torch
from torch import nn

Shape = tuple[int, int, int, bool]  # rows, in_features, out_features, input needs a gradient


def record_linear_shapes(fn: Callable[[], object]) -> list[Shape]:
    """Run ``fn()`` and return the shape of every ``nn.Linear`` call it made, in order."""
    shapes: list[Shape] = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Linear):
            x = inputs[0]
            shapes.append((x.numel() // x.shape[-1], module.in_features, module.out_features, x.requires_grad))

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        fn()
    finally:
        handle.remove()
    return shapes


def _time(fn: Callable[[], object], min_seconds: float = 0.05) -> float:
    """Seconds per call of ``fn``: the best of 5 timed batches of calls (the machine may be shared)."""
    fn()
    calls, best = 1, float("inf")
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            break
        calls *= 2
    best = elapsed / calls
    for _ in range(4):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def gemm_floor(shapes: list[Shape], dtype: torch.dtype, backward: bool) -> tuple[float, float]:
    """Seconds and floating-point operations of the products of ``shapes`` in ``dtype``.

    Returns:
        ``(seconds, flops)``: each distinct product timed once and counted as often as it occurs.
    """
    products: Counter = Counter()
    for rows, n_in, n_out, needs_grad in shapes:
        products[(rows, n_in, n_out)] += 1  # forward: [rows, in] @ [in, out]
        if backward:
            products[(n_out, rows, n_in)] += 1  # weight gradient: [out, rows] @ [rows, in]
            if needs_grad:
                products[(rows, n_out, n_in)] += 1  # input gradient: [rows, out] @ [out, in]
    seconds = flops = 0.0
    generator = torch.Generator().manual_seed(0)
    for (m, k, n), count in products.items():
        a = torch.randn(m, k, generator=generator).to(dtype)
        b = torch.randn(k, n, generator=generator).to(dtype)
        bt = b.t().contiguous()  # oneDNN's linear takes the weight as [out, in]
        candidates = [lambda: torch.mm(a, b)]
        if hasattr(torch.ops.mkldnn, "_linear_pointwise"):
            candidates.append(lambda: torch.ops.mkldnn._linear_pointwise(a, bt, None, "none", [], ""))
        best = float("inf")
        for product in candidates:
            try:
                best = min(best, _time(product))
            except RuntimeError:  # the kernel does not take this dtype here
                pass
        seconds += count * best
        flops += count * 2.0 * m * k * n
    return seconds, flops


def describe(label: str, seconds: float, flops: float, measured: float) -> str:
    """One line: the floor, its rate and the measured time's ratio to it."""
    return (f"{label}: matmul floor {seconds:.3f} s ({flops / seconds / 1e9:.0f} GFLOP/s over "
            f"{flops / 1e9:.1f} GFLOP); measured {measured:.3f} s = {measured / seconds:.2f}× the floor")
