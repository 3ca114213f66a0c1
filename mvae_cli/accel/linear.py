"""The kernel of float32 linear layers on CPU, and :func:`prepare`, which puts a model's layers on it.

Which matrix product is faster depends on the processor: on AVX-512, oneDNN's (the kernel
``torch.compile`` uses for CPU linear layers, ``torch.ops.mkldnn._linear_pointwise``) beat
PyTorch's default (MKL) at the MVAE's layer shapes; on AVX2 only, MKL was faster
(docs/performance-log/2026-12-03-avx2-kernel-rule.md). So the kernel is oneDNN where torch's CPU capability
is AVX-512 and ``F.linear`` elsewhere. The rule is fixed by the processor, not timed, so that two
runs on one machine (or a run and its resume) compute the same bits. ``MVAE_CPU_LINEAR=onednn``
or ``aten`` overrides it.

The oneDNN kernel is private, so it is checked against ``F.linear`` once per process; any other
case (CUDA, autocast, other dtypes, inputs that are not 2-D) takes ``F.linear``.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import nn

from mvae_cli.accel import enabled
from mvae_cli.errors import UserError

BACKEND_ENV = "MVAE_CPU_LINEAR"
BACKENDS = ("onednn", "aten")


def onednn_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   activation: str = "none") -> torch.Tensor:
    """``activation(x @ weight.T + bias)`` on oneDNN: ``x [R, H]``, ``weight [P, H]`` (plain or
    packed by :func:`pack`) → ``[R, P]``. ``activation`` is one oneDNN fuses: ``none``,
    ``swish``, ``sigmoid``, ``relu``, …"""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], "")


def pack(weight: torch.Tensor, rows_hint: int) -> torch.Tensor:
    """``weight [P, H]`` in oneDNN's blocked layout for products of about ``rows_hint`` rows."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), rows_hint)


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return onednn_product(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = onednn_product(grad, weight.t()) if ctx.needs_input_grad[0] else None  # grad @ W
        grad_w = onednn_product(grad.t(), x.t()) if ctx.needs_input_grad[1] else None  # gradᵀ @ x
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

    Raises:
        UserError: ``MVAE_CPU_LINEAR`` names no kernel, or names oneDNN where it is missing.
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


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose 2-D float32 inputs on CPU outside autocast take oneDNN's kernel
    (values and gradients); every other input takes ``F.linear``. Parameters and state-dict
    keys are ``nn.Linear``'s."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() == 2 and x.device.type == "cpu" and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")):
            return _OneDNNLinear.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


def prepare(model: nn.Module) -> nn.Module:
    """Put ``model``'s linear layers on this CPU's kernel, in place, when the layer is enabled.

    Where :func:`~mvae_cli.accel.enabled` and the kernel is oneDNN, every module of type
    ``nn.Linear`` becomes an :class:`OneDNNLinear` holding the same parameter tensors (so an
    optimiser built before or after sees the same ones, and checkpoints keep their keys);
    otherwise nothing changes. ``MVAE_CPU_LINEAR`` is checked either way, so a wrong value is an
    error before a run writes anything, not a setting silently ignored.

    Returns:
        ``model``.

    Raises:
        UserError: ``MVAE_CPU_LINEAR`` names no kernel, or names oneDNN where it is missing.
    """
    backend = cpu_linear_backend()
    if enabled() and backend == "onednn":
        for module in model.modules():
            if type(module) is nn.Linear:
                module.__class__ = OneDNNLinear  # same parameters, buffers and hooks; only forward differs
    return model
