"""A drop-in ``nn.Linear`` whose CPU float32 products run on the faster kernel of the CPU.

Which matrix product is faster depends on the processor. On an AMD EPYC with AVX-512, PyTorch's
default (MKL) reached about half of oneDNN's throughput for the MVAE's layer shapes (≈150
against ≈300 GFLOP/s on 2 cores, all three products of a training step): MKL does not use
AVX-512 there. On an AMD EPYC with AVX2 only, MKL was 5–20% faster than oneDNN at the same
shapes and a training step 11% faster (docs/performance.md). So float32 layers on CPU take
oneDNN's kernel (``torch.ops.mkldnn._linear_pointwise``, the one ``torch.compile`` uses for
CPU linear layers) where torch's CPU capability is AVX-512, and ``F.linear`` elsewhere. The
rule is fixed by the processor, not timed, so that two runs on one machine (or a run and its
resume) compute the same bits. ``MVAE_CPU_LINEAR=onednn`` or ``aten`` overrides it.

The oneDNN kernel is private, so it is checked against ``F.linear`` once per process; any
other case (CUDA, autocast, other dtypes, inputs that are not 2-D) takes ``F.linear``.
Parameters and state-dict keys are ``nn.Linear``'s.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import nn

from mvae_cli.errors import UserError

BACKEND_ENV = "MVAE_CPU_LINEAR"
BACKENDS = ("onednn", "aten")


def _product(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` on oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = _product(grad, weight.t()) if ctx.needs_input_grad[0] else None  # grad @ W
        grad_w = _product(grad.t(), x.t()) if ctx.needs_input_grad[1] else None  # gradᵀ @ x
        grad_b = grad.sum(dim=0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


@functools.cache
def onednn_available() -> bool:
    """Whether the oneDNN path exists here and agrees with ``F.linear`` (values and gradients).

    Checked with autograd on, whatever the caller's mode: the first call may come from inside
    ``torch.inference_mode`` or ``no_grad`` (an evaluation's first decode).
    """
    try:
        with torch.inference_mode(False), torch.enable_grad():
            return _onednn_agrees()
    except (AttributeError, RuntimeError):
        return False


def _onednn_agrees() -> bool:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=generator, requires_grad=True)
    w = torch.randn(3, 5, generator=generator, requires_grad=True)
    b = torch.randn(3, generator=generator, requires_grad=True)
    g = torch.randn(7, 3, generator=generator)
    ours = _OneDNNLinear.apply(x, w, b)
    grads = torch.autograd.grad(ours, (x, w, b), g)
    reference = F.linear(x, w, b)
    expected = torch.autograd.grad(reference, (x, w, b), g)
    return bool(torch.allclose(ours, reference, atol=1e-5)
                and all(torch.allclose(a, e, atol=1e-5) for a, e in zip(grads, expected)))


def cpu_linear_backend() -> str:
    """The kernel of float32 linear layers on CPU: ``onednn`` or ``aten`` (``F.linear``).

    ``MVAE_CPU_LINEAR`` when set; otherwise oneDNN where torch's CPU capability is AVX-512 and
    its kernel passes :func:`onednn_available`, ``aten`` elsewhere.
    """
    return _backend(os.environ.get(BACKEND_ENV, ""))


@functools.cache
def _backend(choice: str) -> str:
    if choice:
        if choice not in BACKENDS:
            raise UserError(f"{BACKEND_ENV}={choice!r} is not a CPU linear kernel; "
                            f"set it to {' or '.join(BACKENDS)}, or unset it to choose by the processor")
        if choice == "onednn" and not onednn_available():
            raise UserError(f"{BACKEND_ENV}=onednn, but oneDNN's linear kernel is missing or wrong in this "
                            f"torch build; set it to aten or unset it")
        return choice
    capability = torch.backends.cpu.get_cpu_capability()
    return "onednn" if capability.startswith("AVX512") and onednn_available() else "aten"


class Linear(nn.Linear):
    """``nn.Linear`` whose 2-D float32 inputs on CPU outside autocast take :func:`cpu_linear_backend`'s kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() == 2 and x.device.type == "cpu" and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
                and cpu_linear_backend() == "onednn"):
            return _OneDNNLinear.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)
