"""OpenMP's wait policy for a machine shared with other busy processes.

OpenMP (libgomp, which torch uses) keeps its threads spinning at every barrier by default; when
another process takes a core, the thread that lost its core holds every barrier of every small
operation until the scheduler runs it again. Passive waiting (threads sleep at once) removes that
but pays a wake-up on every small operation. A short spin of :data:`SPIN_COUNT` turns keeps most
of the quiet machine's speed and bounds what a busy neighbour costs (the measurements behind the
number: docs/performance.md, "The wait policy", and ``benchmarks/threads.py``).

OpenMP reads its environment once, when torch is imported, so :func:`configure_threads` must
run before the first ``import torch`` (:func:`mvae_cli.accel.enable` is called first thing by
the CLI's ``main``); processes started later inherit the variable.
"""

from __future__ import annotations

import os
import sys

SPIN_COUNT = 500  # libgomp's turns at a barrier before it sleeps
_USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def configure_threads() -> bool:
    """``GOMP_SPINCOUNT=500`` unless the user chose a wait policy or spin count, or torch is
    already loaded (too late for OpenMP to see it). True when this call set it."""
    if "torch" in sys.modules or any(name in os.environ for name in _USER_CHOICES):
        return False
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return True
