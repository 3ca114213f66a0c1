"""A drop-in ``nn.Linear`` whose CPU float32 products run on oneDNN, forward and backward.

On the CPUs we train on, PyTorch's default CPU matrix product (MKL) reaches about half of
oneDNN's throughput for the MVAE's layer shapes (≈150 against ≈300 GFLOP/s on 2 cores, all
three products of a training step). The oneDNN kernel is the one ``torch.compile`` uses for
CPU linear layers (``torch.ops.mkldnn._linear_pointwise``); it is private, so it is checked
against ``F.linear`` once per process and any other case (CUDA, autocast, other dtypes,
inputs that are not 2-D) takes ``F.linear``. Parameters and state-dict keys are
``nn.Linear``'s.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


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
    """Whether the oneDNN path exists here and agrees with ``F.linear`` (values and gradients)."""
    try:
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
    except (AttributeError, RuntimeError):
        return False


class Linear(nn.Linear):
    """``nn.Linear`` with the oneDNN path for 2-D float32 inputs on CPU outside autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() == 2 and x.device.type == "cpu" and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
                and onednn_available()):
            return _OneDNNLinear.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)
