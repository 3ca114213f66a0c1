"""What a busy neighbour costs a training run, per thread setting (figures printed, nothing asserted).

Trains the paper's MNIST MVAE (MLP 2×512, z = 64, batch 100) for a fixed number of steps on
MNIST-shaped synthetic data, in a fresh process per setting (OpenMP reads its environment at
start), once alone and once beside one busy process (a Python spin loop this script starts),
and prints seconds and the ratio busy/alone for each setting:

- ``N threads, default wait``: torch's defaults (one thread per core, libgomp spins at barriers);
- ``N threads, passive wait``: ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at barriers);
- ``1 thread``;
- ``mvae's choice``: what the CLI's :func:`mvae_cli.accel.enable` sets (its wait policy and glibc's
  allocator thresholds raised);
- ``mvae-glibc-malloc``: the same threads, glibc's default allocator thresholds.

Every setting runs the CLI's linear kernel (:func:`mvae_cli.accel.linear.prepare`).

On a shared machine "alone" is never quite alone: the load average is printed beside the figures.

    python benchmarks/threads.py [--steps 100] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SETTINGS = {
    "default": {},
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    # libgomp spins this many times at a barrier before it sleeps (passive is 0, active unbounded)
    **{f"spin{n}": {"GOMP_SPINCOUNT": str(n)} for n in (300, 500, 1_000, 3_000, 10_000, 100_000)},
    "one": {"OMP_NUM_THREADS": "1"},
    "mvae": {"MVAE_CONFIGURE_THREADS": "1", "MVAE_CONFIGURE_ALLOCATOR": "1"},
    "mvae-glibc-malloc": {"MVAE_CONFIGURE_THREADS": "1"},
}


def child(steps: int) -> None:
    from mvae_cli import accel

    if os.environ.get("MVAE_CONFIGURE_THREADS"):  # as the CLI's main() does
        accel.enable(allocator=bool(os.environ.get("MVAE_CONFIGURE_ALLOCATOR")))
    else:  # the setting's own wait policy and glibc's thresholds, with the CLI's linear kernel
        os.environ[accel.ENV] = "1"
    import torch

    from mvae_cli.data.format import ModalitySpec
    from mvae_cli.engine.run import build_model
    from mvae_cli.zoo import objective as make_objective
    from mvae_cli.recipe import resolve_recipe

    torch.manual_seed(0)
    specs = [ModalitySpec("image", "image", "bernoulli", (1, 28, 28)),
             ModalitySpec("label", "categorical", "categorical", (), 10)]
    recipe = resolve_recipe(None, ["model.hidden=512", "model.latent_dim=64"])
    model = build_model(recipe, specs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    objective = make_objective("mvae", k=0)
    batch = {"image": torch.rand(100, 1, 28, 28).round(), "label": torch.randint(0, 10, (100,)),
             "mask": torch.ones(100, 2, dtype=torch.bool)}

    def step(i):
        loss, _ = objective(model, batch, i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(5):  # warm-up
        step(i)
    started = time.perf_counter()
    for i in range(steps):
        step(i)
    print(json.dumps({"seconds": time.perf_counter() - started, "threads": torch.get_num_threads(),
                      "wait": os.environ.get("OMP_WAIT_POLICY") or (f"spin {os.environ['GOMP_SPINCOUNT']}" if "GOMP_SPINCOUNT" in os.environ else "default")}))


def run(setting: str, steps: int) -> dict:
    inherited = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS",
                                                                   "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MVAE_ACCEL")}
    env = {**inherited, **SETTINGS[setting]}
    out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(steps)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated, of: " + ", ".join(SETTINGS))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.steps)
        return
    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()}")
    settings = args.settings.split(",")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {', '.join(SETTINGS)}")
    times = {(s, busy): [] for s in settings for busy in (False, True)}
    info = {}
    for _ in range(args.repeats):
        for busy in (False, True):
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                for setting in settings:
                    result = run(setting, args.steps)
                    times[(setting, busy)].append(result["seconds"])
                    info[setting] = result
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    print(f"load average after: {os.getloadavg()}")
    print(f"{args.steps} training steps of the MNIST MVAE (batch 100); best of {args.repeats}")
    for setting in settings:
        alone, busy = min(times[(setting, False)]), min(times[(setting, True)])
        print(f"  {setting:8s} threads {info[setting]['threads']}, wait {info[setting]['wait']:12s}: "
              f"alone {alone:6.2f} s, beside one busy process {busy:6.2f} s, ratio {busy / alone:5.2f}×")


if __name__ == "__main__":
    main()
