"""Device choice and mixed precision, in a few lines (CUDA when present)."""

from __future__ import annotations

import contextlib
import os

import torch

from mvae_cli.errors import UserError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU. Asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """Autocast to bf16/fp16 on CUDA; fp32 is a no-op. Mixed precision on CPU is refused."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type != "cuda":
        raise UserError(f"--precision {precision} needs a CUDA device; use --precision fp32 on CPU")
    return torch.autocast("cuda", dtype=_DTYPES[precision])


def memory_budget(device: torch.device, fraction: float = 0.5) -> int:
    """Bytes we allow ourselves on ``device``: a fraction of free GPU memory or of physical RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * fraction)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 4 << 30
    return int(available * fraction)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: GPU allocator peak on CUDA, max resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
