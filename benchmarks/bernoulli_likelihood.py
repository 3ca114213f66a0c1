"""The Bernoulli log-likelihood of decoded images: torch's `binary_cross_entropy_with_logits` against
`mvae_cli.model.likelihoods.bernoulli_log_prob`, forward and forward + backward.

    python benchmarks/bernoulli_likelihood.py [--rows 480] [--shape 3,32,32]

The default is what a stacked quick-start step decodes (about 480 images of 3 × 32 × 32). Prints ms
(best of 5 × 30), the ratio of the two, and each against the memory floor: one read and write of
the logits (a `clone`), which the forward pass must make at least once.
"""

from __future__ import annotations

import sys

from mvae_cli import accel

accel.enable()  # as the CLI's main() does, before torch is imported

import argparse
import time

import torch
import torch.nn.functional as F

from mvae_cli.model.likelihoods import bernoulli_log_prob


def best_ms(fn, repeats: int = 5, calls: int = 30) -> float:
    for _ in range(5):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) * 1000 / calls)
    return best


def torch_form(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=480)
    parser.add_argument("--shape", default="3,32,32")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(args.rows, *shape, generator=g) * 3
    x = torch.rand(args.rows, *shape, generator=g).round()

    def both(fn):
        def step():
            leaf = logits.clone().requires_grad_()
            fn(leaf, x).sum().backward()
        return step

    floor = best_ms(lambda: logits.clone())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.rows} rows of {shape}; "
          f"memory floor (one pass over the logits) {floor:.2f} ms")
    print(f"{'':<22}{'torch BCE':>11}{'ours':>9}{'ratio':>8}{'ours/floor':>12}")
    with torch.no_grad():
        a, b = best_ms(lambda: torch_form(logits, x)), best_ms(lambda: bernoulli_log_prob(logits, x))
    print(f"{'forward':<22}{a:>11.2f}{b:>9.2f}{a / b:>7.2f}x{b / floor:>11.1f}x")
    a, b = best_ms(both(torch_form)), best_ms(both(bernoulli_log_prob))
    print(f"{'forward + backward':<22}{a:>11.2f}{b:>9.2f}{a / b:>7.2f}x{b / floor:>11.1f}x")


if __name__ == "__main__":
    sys.exit(main())
