"""CPU threads for a machine shared with other busy processes.

OpenMP (libgomp, which torch uses) keeps its threads spinning at every barrier by default;
when another process takes a core, the thread that lost its core holds every barrier of
every small operation until the scheduler runs it again, and a training epoch on two cores
became ~19× slower beside one busy process. Passive waiting puts threads to sleep at
barriers instead. OpenMP reads ``OMP_WAIT_POLICY`` once, when torch is imported, so
:func:`configure_threads` must run before the first ``import torch`` (the CLI calls it first).
"""

from __future__ import annotations

import os
import sys


def configure_threads() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; call before importing torch."""
    if "torch" in sys.modules:  # too late for OpenMP to see it; leave the user's process alone
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
