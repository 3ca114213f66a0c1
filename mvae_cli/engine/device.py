"""Device choice and mixed precision, in a few lines (CUDA when present; bf16 on CPUs that have it)."""

from __future__ import annotations

import contextlib
import os
import re

import torch

from mvae_cli.errors import UserError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU. Asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The processor's bf16 instruction flags (``avx512_bf16``, ``amx_bf16``); empty where it has none."""
    try:
        with open(cpuinfo) as handle:
            text = handle.read()
    except OSError:
        return set()
    return {flag for flag in _BF16_FLAGS if re.search(rf"\b{flag}\b", text)}


def autocast(device: torch.device, precision: str):
    """Autocast to bf16/fp16 on CUDA, to bf16 on a CPU with bf16 instructions; fp32 is a no-op.

    Without bf16 instructions torch would emulate bf16 on CPU, slower than fp32, so that is
    refused, as is fp16 on CPU.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=_DTYPES[precision])
    if precision != "bf16":
        raise UserError(f"--precision {precision} needs a CUDA device; on CPU use fp32, or bf16 where the processor has bf16 instructions")
    if not cpu_bf16_flags():
        raise UserError("--precision bf16 on CPU needs a processor with bf16 instructions (avx512_bf16 or amx_bf16 "
                        "in /proc/cpuinfo) and this one has neither; use --precision fp32")
    return torch.autocast("cpu", dtype=torch.bfloat16)


class AutocastNetwork(torch.nn.Module):
    """A network run under autocast whose floating outputs come back as float32, so that the
    likelihoods and the estimator's sums computed from them stay in float32."""

    def __init__(self, inner: torch.nn.Module, device: torch.device, precision: str):
        super().__init__()
        self.inner, self.device, self.precision = inner, device, precision
        if hasattr(inner, "log_prob"):  # a decoder that owns its likelihood keeps it (in float32)
            self.log_prob = inner.log_prob

    def forward(self, *args, **kwargs):
        with autocast(self.device, self.precision):  # entered in whichever thread calls it
            out = self.inner(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.float() if o.is_floating_point() else o for o in out)
        return out.float() if out.is_floating_point() else out


def autocast_networks(model: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    """Wrap ``model.encoders`` and ``model.decoders`` in :class:`AutocastNetwork` (for evaluation;
    the wrapped model is not meant to be saved). fp32 leaves the model as it is."""
    if precision == "fp32":
        return model
    autocast(device, precision)  # refuses what this device cannot do, before any work
    for networks in (model.encoders, model.decoders):
        for name in list(networks):
            networks[name] = AutocastNetwork(networks[name], device, precision)
    return model


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
