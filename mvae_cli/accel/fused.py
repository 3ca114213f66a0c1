"""An eval-mode MLP decoder as whole-chunk products on this CPU's fast kernels, for the estimator.

:class:`FusedMLP` takes the layers of an MLP (``Linear``, then an optional eval-mode
``BatchNorm1d``, folded into it, and an optional ``SiLU``; ``Identity`` skipped). The hidden
layers follow the CPU linear kernel (:func:`~mvae_cli.accel.linear.cpu_linear_backend`): with
``onednn``, oneDNN's product with the Swish fused in; with ``aten``, torch's ``addmm`` (MKL) and
the Swish in place, which is the faster pair on AVX2
(docs/performance-log/2026-12-04-eval-scorers-avx2.md). The last layer, :class:`FusedOutput`, stays
on oneDNN, as fast or faster on both, and
hands a likelihood its logits, or Σ softplus of them with a sigmoid fused into the product.

The kernels are the private ``torch.ops.mkldnn`` ops that ``torch.compile`` emits on CPU; a
caller checks a fused decoder against the plain one before using it (the evaluation's scorers
do), and :func:`fused_kernels_available` says whether the ops exist at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mvae_cli.accel.linear import onednn_product, pack

# Below this, σ(−l) nears the float32 denormals: those chunks take the exact softplus.
_TINY = 1e-30


def fused_kernels_available() -> bool:
    """Whether this torch build has oneDNN's linear op and its weight packing."""
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def fold_batch_norm(weight: torch.Tensor, bias: torch.Tensor, norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """A Linear ``(weight [P, H], bias [P])`` followed by an eval-mode BatchNorm1d, as one Linear.

    Raises:
        TypeError: the normalisation is in training mode or keeps no running statistics.
    """
    if norm.training or norm.running_mean is None:
        raise TypeError("batch normalisation must be in eval mode with running statistics")
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight.detach()
    shift = -norm.running_mean * scale + (norm.bias.detach() if norm.affine else 0.0)
    return weight * scale[:, None], bias * scale + shift


class FusedOutput:
    """An MLP's last layer, l = h Wᵀ + b, on oneDNN: the
    :class:`~mvae_cli.model.likelihoods.AffineLogits` a likelihood scores from.

    Args:
        weight: ``[P, H]``, plain (a likelihood may use it, e.g. the Bernoulli's Wᵀx).
        bias: ``[P]``.
        rows_hint: the rows of a typical product (oneDNN packs the weights for it).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, rows_hint: int):
        self.weight, self.bias = weight, bias
        self._packed = pack(weight, rows_hint)
        self._negated, self._negated_bias = pack(-weight, rows_hint), -bias

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """The logits: ``[R, H]`` → ``[R, P]``."""
        return onednn_product(h, self._packed, self.bias)

    def softplus_sum(self, h: torch.Tensor) -> torch.Tensor:
        """Σ_p softplus(l_p) = −Σ_p log σ(−l_p): ``[R, H]`` → ``[R]``.

        The sigmoid is fused into the product on negated weights, which leaves one log pass
        instead of softplus's log1p; where σ(−l) underflows (logits beyond ~69), the logits'
        exact softplus instead.
        """
        s = onednn_product(h, self._negated, self._negated_bias, "sigmoid")  # σ(−l), [R, P]
        if float(s.min()) < _TINY:
            return F.softplus(self(h)).sum(dim=-1)
        return s.log_().sum(dim=-1).neg_()


class FusedMLP:
    """The layers of an eval-mode MLP as whole-chunk products: :meth:`hidden`, then :attr:`output`.

    Args:
        net: ``Linear`` layers, each optionally followed by an eval-mode ``BatchNorm1d`` and a
            ``SiLU``, ending with a ``Linear`` (``Identity`` modules are skipped).
        rows_hint: the rows of a typical chunk.
        backend: the hidden layers' kernel, ``onednn`` or ``aten``.

    Raises:
        TypeError: ``net`` is not such an MLP.
    """

    def __init__(self, net: nn.Sequential, rows_hint: int, backend: str):
        modules = [m for m in net if type(m) is not nn.Identity]
        layers = []
        i = 0
        while i < len(modules):
            linear = modules[i]
            if not isinstance(linear, nn.Linear) or linear.bias is None:
                raise TypeError("not a Linear/BatchNorm1d/SiLU MLP")
            weight, bias = linear.weight.detach(), linear.bias.detach()
            i += 1
            if i < len(modules) and isinstance(modules[i], nn.BatchNorm1d):
                weight, bias = fold_batch_norm(weight, bias, modules[i])
                i += 1
            swish = i < len(modules) and type(modules[i]) is nn.SiLU
            i += int(swish)
            layers.append((weight, bias, "swish" if swish else "none"))
        if not layers or layers[-1][2] != "none":
            raise TypeError("the MLP must end with a Linear layer")
        self.backend = backend
        # each hidden weight as its kernel takes it: packed for oneDNN, transposed for addmm
        self._hidden = [(pack(w, rows_hint) if backend == "onednn" else w.t(), b, activation)
                        for w, b, activation in layers[:-1]]
        self.output = FusedOutput(*layers[-1][:2], rows_hint)

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations: ``[R, D]`` → ``[R, H]``."""
        for weight, bias, activation in self._hidden:
            if self.backend == "onednn":
                z = onednn_product(z, weight, bias, activation)
                continue
            z = torch.addmm(bias, z, weight)  # a new tensor: the Swish may overwrite it
            if activation == "swish":
                F.silu(z, inplace=True)
        return z
