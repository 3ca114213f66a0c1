"""CPU speed-ups, in one opt-in layer: nothing here runs unless :func:`enable` is called.

The model code is plain torch (``nn.Linear``, the likelihoods' own formulas); what is fast on one
kind of machine lives here, and the CLI switches it on with one call, first thing in ``main()``
(:mod:`mvae_cli.cli.app`), as the benchmarks do. Importing any ``mvae_cli`` module changes no
process-wide setting.

What :func:`enable` switches on:

- :mod:`~mvae_cli.accel.threads`: OpenMP's wait policy, a short spin (``GOMP_SPINCOUNT``), set
  in the environment before torch is imported (OpenMP reads it once, when it loads; this
  package imports no torch, so that ``enable`` can run first);
- :mod:`~mvae_cli.accel.allocator`: glibc's mmap and trim thresholds raised (``mallopt``, and
  the ``MALLOC_*`` variables for the processes started later), so a training step reuses the
  previous step's memory instead of faulting in fresh pages;
- the marker ``MVAE_ACCEL=1`` in the environment: :func:`enabled` is true in this process and in
  every process it starts (sweep workers, data-parallel ranks), which inherit the two settings
  above with it. ``MVAE_ACCEL=0`` set by the user keeps the whole layer off.

Where the rest of the package meets the layer (the seams), each a no-op unless enabled:

- the engine's ``build_model`` passes every model it builds through
  :func:`mvae_cli.accel.linear.prepare`, which gives its ``nn.Linear`` modules this CPU's
  float32 kernel (oneDNN on AVX-512; ``MVAE_CPU_LINEAR=onednn|aten`` overrides the choice and is
  checked there, enabled or not);
- the evaluation's scorers (:mod:`mvae_cli.evaluate.scorers`) use :mod:`mvae_cli.accel.fused`,
  an eval-mode MLP decoder as whole-chunk products on oneDNN/MKL with the activation fused in,
  on CPU when :func:`enabled`; the log-likelihood itself stays with the likelihood objects
  (:mod:`mvae_cli.model.likelihoods`), which take the fused decoder's last layer.

This package is a base layer: it imports only torch, the standard library and
:mod:`mvae_cli.errors`; nothing under ``mvae_cli/model/`` imports it.
"""

from __future__ import annotations

import os

from mvae_cli.accel.allocator import configure_allocator
from mvae_cli.accel.threads import configure_threads

ENV = "MVAE_ACCEL"


def enable(*, allocator: bool = True) -> bool:
    """Switch the CPU speed-ups on for this process and the processes it starts.

    Call it before ``import torch`` (the OpenMP setting is lost otherwise; the rest still
    applies). Settings the user made (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``MALLOC_*``,
    ``GLIBC_TUNABLES``) are left alone, and ``MVAE_ACCEL=0`` keeps everything off.

    Args:
        allocator: raise glibc's thresholds too (False: glibc's defaults, for comparisons).

    Returns:
        Whether the layer is on.
    """
    if os.environ.get(ENV) == "0":
        return False
    configure_threads()
    if allocator:
        configure_allocator()
    os.environ[ENV] = "1"
    return True


def enabled() -> bool:
    """Whether :func:`enable` was called in this process or in the one that started it."""
    return os.environ.get(ENV) == "1"
