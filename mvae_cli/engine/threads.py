"""CPU threads for a machine shared with other busy processes.

OpenMP (libgomp, which torch uses) keeps its threads spinning at every barrier by default
(about 300,000 turns, milliseconds); when another process takes a core, the thread that lost
its core holds every barrier of every small operation until the scheduler runs it again, and a
training epoch on two cores became ~19× slower beside one busy process. Passive waiting (no
spin: threads sleep at once) removes that but pays a wake-up on every small operation: the
paper's MNIST epoch took 9.5 s against 6.2 s on two quiet cores. A short spin, 500 turns,
keeps most of the quiet speed (7.4 s) and costs 1.5× beside one busy process (11.0 s);
1,000 turns was 6.2 s quiet but 2.1× beside (docs/performance.md, ``benchmarks/threads.py``).

OpenMP reads its environment once, when torch is imported, so :func:`configure_threads` must
run before the first ``import torch`` (the CLI calls it first).
"""

from __future__ import annotations

import os
import sys

SPIN_COUNT = 500  # libgomp's turns at a barrier before it sleeps


def configure_threads() -> None:
    """``GOMP_SPINCOUNT=500`` unless the user chose a wait policy or spin count; call before importing torch."""
    if "torch" in sys.modules:  # too late for OpenMP to see it; leave the user's process alone
        return
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
