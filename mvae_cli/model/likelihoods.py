"""Likelihoods p(x | params) per modality, chosen in the recipe (``model.likelihoods``).

A decoder returns one unconstrained parameter per dimension of its modality; a
:class:`Likelihood` turns it into a density or mass over the data:

============================  ================  =============================================
recipe value                  modality kinds    p(x | l), l the decoder's output
============================  ================  =============================================
``bernoulli``                 image, binary     Π σ(l)^x (1 − σ(l))^(1−x) (x in [0, 1] allowed)
``continuous-bernoulli``      image             the same times C(σ(l)): a density on [0, 1]
``gaussian[:SCALE]``          image             N(x; σ(l), scale²)
``laplace[:SCALE]``           image             Laplace(x; σ(l), scale)
``categorical``               categorical,      softmax(l)[x]
                              sequence
============================  ================  =============================================

``SCALE`` is a positive number (fixed; default :data:`DEFAULT_SCALE`), ``learned`` (one
scale per modality, shared by all its dimensions) or ``learned-per-dim`` (one per
dimension, e.g. per pixel and channel). A learned scale is a parameter of its likelihood
module, so the model registers it, the optimiser trains it and checkpoints keep it.
Gaussian and Laplace locations go through a sigmoid so they stay in [0, 1] like the
pixels (as MMVAE's and MoPoE's image decoders do).

Every ``log_prob`` returns one value per row, the sum over the example's dimensions, and
``mean`` the distribution's mean (what figures draw). The estimator scores many particles
against one observation: :meth:`Likelihood.particle_log_prob`, :meth:`Likelihood.shared_log_prob`
and :meth:`Likelihood.affine_particle_log_prob` give the same values in the shapes it needs; the
Bernoulli and the categorical compute them without copying the observation per particle.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from mvae_cli.errors import UserError

DEFAULT_SCALE = 0.1  # for pixels in [0, 1]: about 25 grey levels
MIN_SCALE = 1e-3  # a learned scale never falls below this (a constant pixel would drive it to 0)
LEARNED = ("learned", "learned-per-dim")
# Below this |logit| the continuous Bernoulli's log normaliser and mean use their Taylor series:
# the closed forms cancel catastrophically near λ = 1/2 (and divide 0 by 0 at it).
_TAYLOR_BELOW = 0.1


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) for x in [0, 1] (continuous values allowed, as the paper does for MNIST).

    Σ_p x_p l_p − softplus(l_p), written as Σ log σ(|l_p|) − Σ (max(l_p, 0) − x_p l_p): σ(|l|)
    is in [½, 1], so it never underflows, and its logs are summed as the logs of products of 64
    (:func:`_log_sigmoid_abs_sum`). ``F.binary_cross_entropy_with_logits`` goes through
    ``log1p``, slow on CPU: on 480 of the quick start's decoded images, forward and backward,
    19.4 ms against 6.7 ms here (docs/performance-log/2026-12-08-bernoulli-without-log1p.md). The
    gradient is the closed form x − σ(l).

    Args:
        logits: ``[R, *shape]``.
        x: ``[R, *shape]`` in [0, 1].

    Returns:
        ``[R]``.
    """
    dtype = _at_least_float32(logits.dtype)
    if x.is_floating_point():  # in the wider of the two, as torch's own binary ops promote
        dtype = torch.promote_types(dtype, x.dtype)
    return _BernoulliLogProb.apply(logits.to(dtype), x.to(dtype))


def _at_least_float32(dtype: torch.dtype) -> torch.dtype:
    """Half precisions are summed in float32: a product of 64 values needs float32's mantissa
    (and float16's range ends above 2⁻⁶⁴)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


# σ(|l|) ≥ ½, so a product of this many is ≥ 2⁻⁶⁴ (a normal float32, and bfloat16's range).
_PRODUCT_OF = 64


def _log_sigmoid_abs_sum(a: torch.Tensor) -> torch.Tensor:
    """Σ log σ(a) over the last dimension of ``a = |l| [..., P]`` (contiguous), which it overwrites.

    One log per group of up to 64 elements, of the group's product (≥ 2⁻⁶⁴: no underflow); the
    product's rounding, under 64 ulp, is a log error below 4e-6 a group, the size of the float32
    sum's own.
    """
    a = a.sigmoid_()
    group = math.gcd(a.shape[-1], _PRODUCT_OF)
    if group > 1:
        a = a.view(*a.shape[:-1], a.shape[-1] // group, group).prod(dim=-1)
    return a.log_().sum(dim=-1)


class _BernoulliLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, x):
        ctx.save_for_backward(logits, x)
        flat = logits.reshape(logits.shape[0], -1)
        # max(l, 0) − x l is ≥ 0 and small where the pixel is fit: its sum does not cancel
        excess = flat.clamp_min(0.0).addcmul_(x.reshape(flat.shape), flat, value=-1.0).sum(dim=1)
        return _log_sigmoid_abs_sum(flat.abs()).sub_(excess)

    @staticmethod
    def backward(ctx, grad):
        logits, x = ctx.saved_tensors
        g = grad.view(-1, *[1] * (logits.dim() - 1))
        grad_logits = torch.sigmoid(logits).sub_(x).mul_(-g) if ctx.needs_input_grad[0] else None  # (x − σ(l)) g
        grad_x = logits * g if ctx.needs_input_grad[1] else None
        return grad_logits, grad_x


def categorical_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) for class ids.

    Args:
        logits: ``[R, C]``.
        x: ``[R]`` integer class ids.

    Returns:
        ``[R]``.
    """
    return -F.cross_entropy(logits, x.long(), reduction="none")


def softplus_sum(logits: torch.Tensor, consume: bool = False) -> torch.Tensor:
    """Σ log(1 + e^l) over the last dimension: ``[..., P]`` → ``[...]``.

    As Σ max(l, 0) − Σ log σ(|l|) (:func:`_log_sigmoid_abs_sum`): ``F.softplus`` goes through
    log1p, several times slower on CPU than a sigmoid and a log of products. Where the logits may
    be overwritten (``consume``), their absolute values are taken in place.
    """
    if logits.dtype != _at_least_float32(logits.dtype):
        logits, consume = logits.float(), True  # a float32 copy of half-precision logits
    positive = logits.clamp_min(0.0).sum(dim=-1)
    a = logits.abs_() if consume and logits.is_contiguous() else logits.abs()
    return positive.sub_(_log_sigmoid_abs_sum(a))


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(λ) of the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019, Eq. 7), λ = σ(l).

    C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ), which in the logit is l / tanh(l / 2): even in l,
    log C = log|l| − log tanh(|l|/2) = log|l| − log(−expm1(−|l|)) + log1p(e^(−|l|)), stable
    for large |l|. Near l = 0 (λ = ½) that difference of logs cancels, so the series
    log 2 + l²/12 − 7 l⁴/1440 + 31 l⁶/90720 is used below |l| = 0.1 (error < 1e-12).

    Args:
        logits: any shape.

    Returns:
        The same shape.
    """
    a = logits.abs()
    small = a < _TAYLOR_BELOW
    safe = torch.where(small, torch.ones_like(a), a)  # keeps the unused branch (and its gradient) finite
    closed = torch.log(safe) - torch.log(-torch.expm1(-safe)) + torch.log1p(torch.exp(-safe))
    l2 = logits * logits
    series = math.log(2.0) + l2 * (1.0 / 12 + l2 * (-7.0 / 1440 + l2 * (31.0 / 90720)))
    return torch.where(small, series, closed)


def continuous_bernoulli_mean(logits: torch.Tensor) -> torch.Tensor:
    """E[x] of the continuous Bernoulli: 1 / (1 − e^(−l)) − 1 / l; ½ + l/12 − l³/720 near l = 0."""
    small = logits.abs() < _TAYLOR_BELOW
    safe = torch.where(small, torch.ones_like(logits), logits)
    closed = -1.0 / torch.expm1(-safe) - 1.0 / safe
    series = 0.5 + logits / 12 - logits ** 3 / 720
    return torch.where(small, series, closed)


class AffineLogits(Protocol):
    """A decoder's last layer, l = h Wᵀ + b, as a fast path hands it to
    :meth:`Likelihood.affine_particle_log_prob` (:class:`mvae_cli.accel.fused.FusedOutput` is one)."""

    weight: torch.Tensor  # [P, H]
    bias: torch.Tensor  # [P]

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """The logits l: ``[R, H]`` → ``[R, P]``."""

    def softplus_sum(self, h: torch.Tensor) -> torch.Tensor:
        """Σ_p softplus(l_p): ``[R, H]`` → ``[R]``."""


class Likelihood(nn.Module):
    """p(x | params) of one modality. Subclasses set ``name`` and ``kinds`` (the modality kinds it fits)."""

    name = ""
    kinds: tuple[str, ...] = ()
    copies_x = True  # whether the particle forms copy x per particle (the defaults, through log_prob)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | params), summed over each row's dimensions: ``[R, ...]``, ``[R, ...]`` → ``[R]``."""
        raise NotImplementedError

    def particle_log_prob(self, params: torch.Tensor, x: torch.Tensor, *, consume: bool = False) -> torch.Tensor:
        """log p(x_e | params_{e,k}) for E examples with k particles each.

        By default :meth:`log_prob` on every (example, particle) row, x repeated per particle.

        Args:
            params: ``[E, k, ...]``.
            x: ``[E, ...]``.
            consume: ``params`` may be overwritten (saves passes over the largest tensor).

        Returns:
            ``[E, k]``.
        """
        E, k = params.shape[:2]
        x_rows = x.unsqueeze(1).expand(E, k, *x.shape[1:]).reshape(E * k, *x.shape[1:])
        return self.log_prob(params.reshape(E * k, *params.shape[2:]), x_rows).view(E, k)

    def shared_log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_b | params_s) for every pair, the S parameters shared by all B examples (prior
        samples): ``params [S, ...]``, ``x [B, ...]`` → ``[B, S]``."""
        return self.particle_log_prob(params.unsqueeze(0).expand(x.shape[0], *params.shape), x)

    def affine_particle_log_prob(self, h: torch.Tensor, layer: AffineLogits, x: torch.Tensor) -> torch.Tensor:
        """:meth:`particle_log_prob` of the logits ``layer(h)`` of a decoder's last layer.

        Args:
            h: ``[E, k, H]``, the last hidden layer's activations per particle.
            layer: the last layer (:class:`AffineLogits`).
            x: ``[E, ...]``.

        Returns:
            ``[E, k]``.
        """
        E, k = h.shape[:2]
        logits = layer(h.reshape(E * k, -1))
        return self.particle_log_prob(logits.view(E, k, *self._params_shape(x)), x, consume=True)

    def _params_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """The shape of one row's parameters, given observations ``x [E, ...]``."""
        return tuple(x.shape[1:])

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x | params]: ``[R, ...]`` → the data's shape ``[R, ...]``."""
        raise NotImplementedError

    def describe(self) -> str:
        """The recipe value that builds this likelihood."""
        return self.name


class Bernoulli(Likelihood):
    """Bernoulli on logits: a mass function on {0, 1}; on grey levels in [0, 1] it is not a normalised density."""

    name, kinds = "bernoulli", ("image", "binary")
    copies_x = False

    def log_prob(self, params, x):
        return bernoulli_log_prob(params, x)

    def particle_log_prob(self, params, x, *, consume=False):
        """Σ x·l − Σ softplus(l), the x·l sums as one batched product."""
        E, k = params.shape[:2]
        logits = params.reshape(E, k, -1)
        x_dot_l = torch.bmm(logits, x.reshape(E, -1, 1).to(logits.dtype)).squeeze(-1)
        return x_dot_l - softplus_sum(logits, consume)

    def shared_log_prob(self, params, x):
        logits = params.reshape(params.shape[0], -1)
        return x.reshape(x.shape[0], -1).to(logits.dtype) @ logits.T - softplus_sum(logits)

    def affine_particle_log_prob(self, h, layer, x):
        """With l = h Wᵀ + b, Σ x·l = h·(Wᵀx) + b·x: an H-long dot per particle instead of a
        pixel-long one, and the logits are not formed here (the layer sums their softplus)."""
        E, k = h.shape[:2]
        x_flat = x.reshape(E, -1).to(h.dtype)
        x_dot_l = torch.bmm(h, (x_flat @ layer.weight).unsqueeze(-1)).squeeze(-1) + (x_flat @ layer.bias)[:, None]
        return x_dot_l - layer.softplus_sum(h.reshape(E * k, -1)).view(E, k)

    def mean(self, params):
        return torch.sigmoid(params)


class ContinuousBernoulli(Likelihood):
    """The continuous Bernoulli on logits: C(λ) λ^x (1 − λ)^(1−x), a normalised density on [0, 1]."""

    name, kinds = "continuous-bernoulli", ("image",)

    def log_prob(self, params, x):
        return bernoulli_log_prob(params, x) + continuous_bernoulli_log_norm(params).flatten(1).sum(dim=1)

    def mean(self, params):
        return continuous_bernoulli_mean(params)


class Categorical(Likelihood):
    """Categorical on logits ``[R, C]`` for class ids ``[R]`` (sequence decoders score their own tokens)."""

    name, kinds = "categorical", ("categorical", "sequence")
    copies_x = False

    def log_prob(self, params, x):
        return categorical_log_prob(params, x)

    def mean(self, params):
        return torch.softmax(params, dim=-1)

    def particle_log_prob(self, params, x, *, consume=False):
        """l[x] − logsumexp(l), x gathered per particle."""
        E, k = params.shape[:2]
        picked = params.gather(-1, x.long().view(E, 1, 1).expand(E, k, 1)).squeeze(-1)
        return picked - torch.logsumexp(params, dim=-1)

    def shared_log_prob(self, params, x):
        return (params[:, x.long()] - torch.logsumexp(params, dim=-1, keepdim=True)).T

    def _params_shape(self, x):
        return (-1,)


class _LocationScale(Likelihood):
    """A location-scale density on the real line with location σ(params).

    Args:
        shape: the modality's shape (for a per-dimension scale).
        scale: a positive number (fixed), ``learned`` or ``learned-per-dim``.
    """

    kinds = ("image",)

    def __init__(self, shape: tuple[int, ...], scale: float | str = DEFAULT_SCALE):
        super().__init__()
        self.scale_option = scale
        if scale in LEARNED:
            size = tuple(shape) if scale == "learned-per-dim" else ()
            # scale = MIN_SCALE + softplus(raw): smooth, positive, starting at DEFAULT_SCALE
            start = math.log(math.expm1(DEFAULT_SCALE - MIN_SCALE))
            self.raw_scale = nn.Parameter(torch.full(size, start))
        else:
            self.fixed_scale = float(scale)

    def scale(self) -> torch.Tensor | float:
        """The scale: a float when fixed, else a tensor of shape ``()`` or the modality's shape."""
        if self.scale_option in LEARNED:
            return MIN_SCALE + F.softplus(self.raw_scale)
        return self.fixed_scale

    def mean(self, params):
        return torch.sigmoid(params)

    def describe(self) -> str:
        option = self.scale_option
        return f"{self.name}:{option if option in LEARNED else repr(float(option))}"

    def _log_scale(self, scale, like: torch.Tensor) -> torch.Tensor:
        if isinstance(scale, float):
            return torch.full((), math.log(scale), dtype=like.dtype, device=like.device)
        return torch.log(scale)


class Gaussian(_LocationScale):
    """N(x; σ(l), scale²) per dimension: a density on the real line (it puts mass outside [0, 1])."""

    name = "gaussian"

    def log_prob(self, params, x):
        scale = self.scale()
        z = (x - torch.sigmoid(params)) / scale
        ll = -0.5 * z * z - self._log_scale(scale, z) - 0.5 * math.log(2 * math.pi)
        return ll.flatten(1).sum(dim=1)


class Laplace(_LocationScale):
    """Laplace(x; σ(l), scale) per dimension: a density on the real line (mass outside [0, 1])."""

    name = "laplace"

    def log_prob(self, params, x):
        scale = self.scale()
        ll = -(x - torch.sigmoid(params)).abs() / scale - self._log_scale(scale, params) - math.log(2.0)
        return ll.flatten(1).sum(dim=1)


LIKELIHOODS = {cls.name: cls for cls in (Bernoulli, ContinuousBernoulli, Gaussian, Laplace, Categorical)}


def parse_likelihood(key: str, text: str) -> tuple[str, float | str | None]:
    """Read a recipe value ``NAME`` or ``NAME:SCALE``: ``(name, scale)``, scale None where it takes none.

    Raises:
        UserError: an unknown name, a scale on a likelihood without one, or a scale that is
            not a positive number, ``learned`` or ``learned-per-dim``; the message names ``key``.
    """
    name, _, option = str(text).partition(":")
    name, option = name.strip(), option.strip()
    if name not in LIKELIHOODS:
        raise UserError(f"recipe key {key!r}: unknown likelihood {name!r} (known: {', '.join(LIKELIHOODS)})")
    if not issubclass(LIKELIHOODS[name], _LocationScale):
        if option:
            raise UserError(f"recipe key {key!r}: likelihood {name!r} takes no scale, got {text!r}")
        return name, None
    if not option:
        return name, DEFAULT_SCALE
    if option in LEARNED:
        return name, option
    try:
        scale = float(option)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise UserError(f"recipe key {key!r}: the scale of {name!r} must be a positive number, "
                        f"'learned' or 'learned-per-dim', got {option!r}")
    return name, scale


def build_likelihoods(specs, choices: dict[str, str] | None = None, key: str = "model.likelihoods") -> dict[str, Likelihood]:
    """The likelihood of every modality: the recipe's choice, else the dataset's own.

    Args:
        specs: the :class:`~mvae_cli.data.format.ModalitySpec` of every modality.
        choices: ``{modality: recipe value}``.
        key: the recipe key the choices come from (for error messages).

    Returns:
        ``{modality: Likelihood}`` in the order of ``specs``.

    Raises:
        UserError: a choice names an unknown modality, is not a likelihood, or does not fit
            the modality's kind; the message names ``key.<modality>``.
    """
    choices = dict(choices or {})
    by_name = {s.name: s for s in specs}
    for name in choices:
        if name not in by_name:
            raise UserError(f"recipe key {key + '.' + name!r}: no modality {name!r} (modalities: {', '.join(by_name)})")
    out = {}
    for spec in specs:
        where = f"{key}.{spec.name}"
        name, scale = parse_likelihood(where, choices.get(spec.name, spec.likelihood))
        cls = LIKELIHOODS[name]
        if spec.kind not in cls.kinds:
            fits = [n for n, c in LIKELIHOODS.items() if spec.kind in c.kinds]
            raise UserError(f"recipe key {where!r}: likelihood {name!r} does not fit {spec.kind} modalities "
                            f"(they take: {', '.join(fits)})")
        out[spec.name] = cls(spec.shape, scale) if scale is not None else cls()
    return out
