"""Per-particle log-likelihoods log p(x_e | z_{e,k}): decode, then score, for the estimator's hot loop.

A scorer maps latents ``z [E, k, D]`` and observations ``x [E, ...]`` to ``[E, k]``. The
default one is ``model.decode`` followed by :func:`particle_log_prob`, which asks the
modality's likelihood object (:meth:`~mvae_cli.model.likelihoods.Likelihood.particle_log_prob`).
Where the CPU speed-ups are on (:func:`mvae_cli.accel.enabled`), the MLP decoders of a
:class:`~mvae_cli.model.model.MultimodalVAE` get a fused scorer instead: the decoder as
whole-chunk products on the CPU's fast kernels (:class:`mvae_cli.accel.fused.FusedMLP`), its
last layer handed to the likelihood
(:meth:`~mvae_cli.model.likelihoods.Likelihood.affine_particle_log_prob`). The fused kernels
are private ``torch.ops.mkldnn`` ops, so every fused scorer is checked against the default one
when it is built and is not used when the ops are missing or disagree.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

from mvae_cli import accel
from mvae_cli.accel.fused import FusedMLP, fused_kernels_available
from mvae_cli.accel.linear import cpu_linear_backend
from mvae_cli.model.likelihoods import Likelihood
from mvae_cli.model.model import MultimodalVAE

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _ScoredByModel(Likelihood):
    """A modality the model scores itself (a sequence decoder's teacher-forced pass, or a model
    with its own ``log_prob``): the default particle forms over ``model.log_prob``."""

    def __init__(self, model, name: str):
        super().__init__()
        self._log_prob = functools.partial(model.log_prob, name)  # a partial: not registered as a submodule

    def log_prob(self, params, x):
        return self._log_prob(params, x)


def likelihood_of(model, name: str) -> Likelihood:
    """What scores modality ``name``: the model's likelihood object where it scores with the
    library's likelihoods on its decoder's output (``model.likelihoods``), else ``model.log_prob``
    (a decoder that owns its likelihood, as the sequence decoder does, or any other model)."""
    builtin = isinstance(model, MultimodalVAE) and type(model).log_prob is MultimodalVAE.log_prob
    if builtin and not hasattr(model.decoders[name], "log_prob"):
        return model.likelihoods[name]
    return _ScoredByModel(model, name)


def particle_log_prob(model, name: str, params: torch.Tensor, x: torch.Tensor, *, consume: bool = False) -> torch.Tensor:
    """log p(x_e | params_{e,k}): ``params [E, k, ...]``, ``x [E, ...]`` → ``[E, k]``
    (``consume``: ``params`` may be overwritten)."""
    return likelihood_of(model, name).particle_log_prob(params, x, consume=consume)


def shared_log_prob(model, name: str, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x_b | params_s) for every pair: ``params [S, ...]``, ``x [B, ...]`` → ``[B, S]``."""
    return likelihood_of(model, name).shared_log_prob(params, x)


def default_scorer(model, name: str) -> Scorer:
    """``model.decode`` then :func:`particle_log_prob`, for any model."""
    likelihood = likelihood_of(model, name)

    @torch.inference_mode()
    def score(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        E, k = z.shape[:2]
        params = model.decode(name, z.reshape(E * k, -1))
        return likelihood.particle_log_prob(params.view(E, k, *params.shape[1:]), x, consume=True)

    score.fused = False
    return score


def fused_scorer(model, name: str, rows_hint: int) -> Scorer | None:
    """The fused CPU scorer of one modality (an MLP decoder of a
    :class:`~mvae_cli.model.model.MultimodalVAE`, float32 on CPU), or None where it does not
    apply, the kernels are missing, or it disagrees with :func:`default_scorer`."""
    likelihood = likelihood_of(model, name)
    if isinstance(likelihood, _ScoredByModel) or type(model).decode is not MultimodalVAE.decode:
        return None
    decoder = model.decoders[name]
    net = getattr(decoder, "net", None)
    if not (fused_kernels_available() and isinstance(net, nn.Sequential)):
        return None
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in decoder.parameters()):
        return None
    try:
        with torch.inference_mode():
            mlp = FusedMLP(net, rows_hint, cpu_linear_backend())

            @torch.inference_mode()
            def score(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
                E, k = z.shape[:2]
                h = mlp.hidden(z.reshape(E * k, -1))
                return likelihood.affine_particle_log_prob(h.view(E, k, -1), mlp.output, x)

            spec = model.specs[model.names.index(name)]
            if not _agrees(score, default_scorer(model, name), model.decoder_dim, spec):
                return None
    except (TypeError, RuntimeError):
        return None
    score.fused = True
    score.backend = mlp.backend
    return score


def _agrees(fused: Scorer, plain: Scorer, dim: int, spec) -> bool:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 7, dim, generator=g)
    if spec.kind in ("categorical", "sequence"):
        x = torch.randint(0, spec.classes, (3, *spec.shape), generator=g)
    else:
        x = torch.rand(3, *spec.shape, generator=g)
    expected = plain(z, x)
    scale = float(expected.abs().max()) + 1.0
    return bool(torch.allclose(fused(z, x), expected, rtol=1e-4, atol=1e-5 * scale))


def scorers(model, names, device: torch.device | str, rows_hint: int = 4096) -> dict[str, Scorer]:
    """A scorer per modality: fused where the CPU speed-ups are on and it applies (MLP decoders
    on CPU), else the default."""
    fused = torch.device(device).type == "cpu" and accel.enabled()
    out = {}
    for name in names:
        score = fused_scorer(model, name, rows_hint) if fused else None
        out[name] = score or default_scorer(model, name)
    return out
