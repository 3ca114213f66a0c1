"""Per-particle log-likelihoods log p(x_e | z_{e,k}): decode, then score, for the estimator's hot loop.

A scorer maps latents ``z [E, k, D]`` and observations ``x [E, ...]`` to ``[E, k]``. The
default one is ``model.decode`` followed by :func:`particle_log_prob`. On CPU, the MLP
decoders of :class:`~mvae_cli.model.model.MultimodalVAE` get a fused scorer: the hidden
layers on the CPU's faster linear kernel (oneDNN with the Swish fused in, or MKL's ``addmm``
with the Swish in place; :class:`_FusedMLP`), and the output layer on oneDNN with, for
Bernoulli images, a sigmoid fused in, which turns Σ softplus(l) into one log pass.
The fused kernels are the private ``torch.ops.mkldnn`` ops that ``torch.compile`` emits
on CPU, so every fused scorer is checked against the default one when it is built and
is not used when the ops are missing or disagree.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mvae_cli.model.linear import cpu_linear_backend
from mvae_cli.model.model import MultimodalVAE

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Below this, sigmoid(−l) nears the float32 denormals: those rows take the exact path.
_TINY = 1e-30


def uses_builtin_likelihoods(model) -> bool:
    """Whether ``model`` scores with the library's likelihoods (so the fused forms apply)."""
    return isinstance(model, MultimodalVAE) and type(model).log_prob is MultimodalVAE.log_prob


def closed_form_likelihood(model, name: str) -> str | None:
    """``bernoulli`` or ``categorical`` where the closed forms below may score ``name``, else None.

    They apply where ``model`` scores the modality with the library's Bernoulli or categorical
    likelihood (``model.likelihoods``) on its decoder's logits; not for the other likelihoods
    (continuous Bernoulli, Gaussian, Laplace), not where the decoder owns its likelihood, as
    the sequence decoder does (its ``decode`` returns a GRU state, scored by a teacher-forced
    pass), nor for any other model. Those go through ``model.log_prob``.
    """
    if not uses_builtin_likelihoods(model) or hasattr(model.decoders[name], "log_prob"):
        return None
    likelihood = model.likelihoods[name].name
    return likelihood if likelihood in ("bernoulli", "categorical") else None


def particle_log_prob(model, name: str, params: torch.Tensor, x: torch.Tensor, *, consume: bool = False) -> torch.Tensor:
    """log p(x_e | params_{e,k}) for E examples with k particles each.

    Where :func:`closed_form_likelihood` applies, Bernoulli and categorical likelihoods use
    forms that never copy x per particle (Bernoulli: Σ x·l − Σ softplus(l), the x·l sum as
    one batched matmul); otherwise (sequence decoders, any other model) ``model.log_prob``
    is called on flattened rows.

    Args:
        params: ``[E, k, ...]`` decoder outputs.
        x: ``[E, ...]`` observations.
        consume: ``params`` may be overwritten (saves passes over the largest tensor).

    Returns:
        ``[E, k]``.
    """
    E, k = params.shape[:2]
    likelihood = closed_form_likelihood(model, name)
    if likelihood == "bernoulli":
        logits = params.reshape(E, k, -1)
        x_dot_l = torch.bmm(logits, x.reshape(E, -1, 1).to(logits.dtype)).squeeze(-1)
        return x_dot_l - _softplus_sum(logits, consume)
    if likelihood == "categorical":
        picked = params.gather(-1, x.long().view(E, 1, 1).expand(E, k, 1)).squeeze(-1)
        return picked - torch.logsumexp(params, dim=-1)
    x_rows = x.unsqueeze(1).expand(E, k, *x.shape[1:]).reshape(E * k, *x.shape[1:])
    return model.log_prob(name, params.reshape(E * k, *params.shape[2:]), x_rows).view(E, k)


def _softplus_sum(logits: torch.Tensor, consume: bool) -> torch.Tensor:
    """Σ log(1 + e^l) over the last dimension.

    ``F.softplus`` goes through log1p, several times slower on CPU than exp and log; when the
    logits may be overwritten and e^l cannot overflow, log(1 + e^l) is computed in place
    (for l < −17, 1 + e^l rounds to 1: an absolute error below e^l per pixel).
    """
    if consume and logits.is_contiguous() and float(logits.max()) < 80.0:
        return logits.exp_().add_(1.0).log_().sum(dim=-1)
    return F.softplus(logits).sum(dim=-1)


def shared_log_prob(model, name: str, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x_b | params_s) for every pair: ``params [S, ...]``, ``x [B, ...]`` → ``[B, S]``."""
    B, S = x.shape[0], params.shape[0]
    likelihood = closed_form_likelihood(model, name)
    if likelihood == "bernoulli":
        logits = params.reshape(S, -1)
        return x.reshape(B, -1).to(logits.dtype) @ logits.T - F.softplus(logits).sum(dim=-1)
    if likelihood == "categorical":
        return torch.log_softmax(params, dim=-1)[:, x.long()].T
    return particle_log_prob(model, name, params.unsqueeze(0).expand(B, *params.shape), x)


def default_scorer(model, name: str) -> Scorer:
    """``model.decode`` then :func:`particle_log_prob`, for any model."""

    @torch.inference_mode()
    def score(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        E, k = z.shape[:2]
        params = model.decode(name, z.reshape(E * k, -1))
        return particle_log_prob(model, name, params.view(E, k, *params.shape[1:]), x, consume=True)

    score.fused = False
    return score


class _FusedMLP:
    """The layers of an MLP decoder (Linear, then optional eval-mode BatchNorm1d folded into
    it, optional SiLU; Identity skipped) as whole-chunk products.

    Hidden layers follow the CPU linear kernel (:func:`~mvae_cli.model.linear.cpu_linear_backend`):
    with ``onednn``, oneDNN's linear op with the Swish fused in; with ``aten``, torch's ``addmm``
    (MKL) and the Swish in place. On an AVX2 EPYC, a 4,096 × 512 × 512 layer took 21.3 ms with
    oneDNN's fused Swish and 13.5 ms as ``addmm`` + in-place Swish. The output layer (used by
    the scorers below) stays on oneDNN, whose kernel is as fast there or faster (10 columns: 2×).
    """

    def __init__(self, net: nn.Sequential, rows_hint: int, backend: str = "onednn"):
        modules = [m for m in net if type(m) is not nn.Identity]
        self.layers = []
        i = 0
        while i < len(modules):
            linear = modules[i]
            if not isinstance(linear, nn.Linear) or linear.bias is None:
                raise TypeError("not a Linear/BatchNorm1d/SiLU MLP")
            weight, bias = linear.weight.detach(), linear.bias.detach()
            i += 1
            if i < len(modules) and isinstance(modules[i], nn.BatchNorm1d):  # checked by _agrees
                weight, bias = _fold(weight, bias, modules[i])
                i += 1
            swish = i < len(modules) and type(modules[i]) is nn.SiLU
            i += int(swish)
            self.layers.append((weight, bias, "swish" if swish else "none"))
        if self.layers[-1][2] != "none":
            raise TypeError("the MLP must end with a Linear layer")
        self.rows_hint = rows_hint
        self.backend = backend
        # each hidden weight as its kernel takes it: packed for oneDNN, transposed for addmm
        prepare = self.pack if backend == "onednn" else torch.Tensor.t
        self.hidden_layers = [(prepare(w), b, attr) for w, b, attr in self.layers[:-1]]

    def pack(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), self.rows_hint)

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        for weight, bias, attr in self.hidden_layers:
            if self.backend == "onednn":
                z = torch.ops.mkldnn._linear_pointwise(z, weight, bias, attr, [], "")
                continue
            z = torch.addmm(bias, z, weight)  # a new tensor: the Swish may overwrite it
            if attr == "swish":
                F.silu(z, inplace=True)
        return z


def _fold(weight: torch.Tensor, bias: torch.Tensor, norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear followed by an eval-mode BatchNorm1d as one Linear."""
    if norm.training or norm.running_mean is None:
        raise TypeError("batch normalisation must be in eval mode with running statistics")
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight.detach()
    shift = -norm.running_mean * scale + (norm.bias.detach() if norm.affine else 0.0)
    return weight * scale[:, None], bias * scale + shift


def _fused_categorical(mlp: _FusedMLP) -> Scorer:
    weight, bias, _ = mlp.layers[-1]
    packed = mlp.pack(weight)

    @torch.inference_mode()
    def score(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        E, k = z.shape[:2]
        logits = torch.ops.mkldnn._linear_pointwise(mlp.hidden(z.reshape(E * k, -1)), packed, bias, "none", [], "")
        logits = logits.view(E, k, -1)
        picked = logits.gather(-1, x.long().view(E, 1, 1).expand(E, k, 1)).squeeze(-1)
        return picked - torch.logsumexp(logits, dim=-1)

    return score


def _fused_bernoulli(mlp: _FusedMLP) -> Scorer:
    """Σ x·l − Σ softplus(l) with l = h Wᵀ + b, where Σ x·l = h·(Wᵀx) + b·x (a [512]-long dot
    per particle instead of a pixel-long one) and softplus(l) = −log σ(−l), the sigmoid fused
    into the last linear op on negated weights."""
    weight, bias, _ = mlp.layers[-1]
    negated, negated_bias = mlp.pack(-weight), -bias

    @torch.inference_mode()
    def score(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        E, k = z.shape[:2]
        h = mlp.hidden(z.reshape(E * k, -1))  # [R, H]
        x_flat = x.reshape(E, -1).to(h.dtype)
        x_dot_l = torch.bmm(h.view(E, k, -1), (x_flat @ weight).unsqueeze(-1)).squeeze(-1) + (x_flat @ bias)[:, None]
        s = torch.ops.mkldnn._linear_pointwise(h, negated, negated_bias, "sigmoid", [], "")  # σ(−l), [R, P]
        if float(s.min()) < _TINY:  # logits beyond ~69: take the exact softplus
            softplus = F.softplus(F.linear(h, weight, bias)).sum(dim=-1)
        else:
            softplus = s.log_().sum(dim=-1).neg_()
        return x_dot_l - softplus.view(E, k)

    return score


def fused_scorer(model, name: str, rows_hint: int) -> Scorer | None:
    """The fused CPU scorer of one modality, or None where it does not apply or disagrees."""
    likelihood = closed_form_likelihood(model, name)
    if not (likelihood and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return None
    if type(model).decode is not MultimodalVAE.decode:
        return None
    decoder = model.decoders[name]
    spec = model.specs[model.names.index(name)]
    net = getattr(decoder, "net", None)
    if not isinstance(net, nn.Sequential):
        return None
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in decoder.parameters()):
        return None
    try:
        with torch.inference_mode():
            mlp = _FusedMLP(net, rows_hint, cpu_linear_backend())
            score = (_fused_bernoulli if likelihood == "bernoulli" else _fused_categorical)(mlp)
            if not _agrees(score, default_scorer(model, name), getattr(model, "decoder_dim", model.latent_dim), spec,
                           likelihood):
                return None
    except (TypeError, RuntimeError):
        return None
    score.fused = True
    score.backend = mlp.backend
    return score


def _agrees(fused: Scorer, plain: Scorer, dim: int, spec, likelihood: str) -> bool:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 7, dim, generator=g)
    if likelihood == "bernoulli":
        x = torch.rand(3, *spec.shape, generator=g)
    else:
        x = torch.randint(0, spec.classes, (3,), generator=g)
    expected = plain(z, x)
    scale = float(expected.abs().max()) + 1.0
    return bool(torch.allclose(fused(z, x), expected, rtol=1e-4, atol=1e-5 * scale))


def scorers(model, names, device: torch.device | str, rows_hint: int = 4096) -> dict[str, Scorer]:
    """A scorer per modality: fused where it applies (CPU, MLP decoders), else the default."""
    fused = torch.device(device).type == "cpu"
    out = {}
    for name in names:
        score = fused_scorer(model, name, rows_hint) if fused else None
        out[name] = score or default_scorer(model, name)
    return out
