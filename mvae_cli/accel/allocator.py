"""glibc's allocator for a training process: keep freed tensor memory instead of handing it back.

A training step allocates its activations and gradients (for the paper's MNIST MVAE, blocks of
0.1–1.6 MB) and frees them before the next. glibc serves blocks above its mmap threshold with
fresh pages from the kernel and returns the free top of its heap above its trim threshold, so
every step took page faults, each a page the kernel must zero before the product that first writes
it can go on (counted in docs/performance-log/2026-12-02-page-faults.md). With both
thresholds raised, the blocks of one step are reused by the next: no faults after the first steps.

Tensors of :data:`MMAP_THRESHOLD` and more (evaluation's particle batches) still come from mmap
and go back when freed; at most :data:`TRIM_THRESHOLD` of free heap is kept.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_ENV = {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD, "MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD}


def _user_chose() -> bool:
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return (any(name in os.environ for name in (*_ENV, "MALLOC_TOP_PAD_"))
            or "malloc.mmap_threshold" in tunables or "malloc.trim_threshold" in tunables)


def configure_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds in this process and, through the environment, in the
    processes it starts (sweep workers, ranks), unless the user set them; elsewhere than glibc on
    Linux, nothing. True when this call changed them."""
    if not sys.platform.startswith("linux") or _user_chose():
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc, not musl: mallopt's parameters are glibc's)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return False
    for name, value in _ENV.items():  # glibc reads these when a child process starts
        os.environ[name] = str(value)
    return True
