"""The model interface: what the engine, the objectives and the estimator call on a model.

Every model of the table (:mod:`mvae_cli.zoo`) is a :class:`~mvae_cli.model.model.MultimodalVAE`
and so satisfies it; the tests' closed-form models satisfy it through
:class:`~mvae_cli.model.model.ExpertPosterior`. Nothing calls a model through ``getattr`` with a
fallback: an attribute the interface names is there.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import torch

from mvae_cli.data.format import ModalitySpec


@runtime_checkable
class Model(Protocol):
    """A multimodal VAE as its callers see it.

    Attributes:
        model_name: its name in the model table.
        specs, names: the modalities, in dataset (mask column) order.
        encoded, decoded: the modalities it infers z from, and those it generates.
        latent_dim: D, the width of z; ``decoder_dim`` a decoder's input (z, plus y for a conditional decoder).
        weights: λ_i per modality, in ``names`` order.
        family: the posterior family of its experts and prior (:mod:`~mvae_cli.model.posterior`).
        conditional: whether a decoder also takes y (the CVAE's p(x | z, y)).
        fusion: how its experts combine (:data:`~mvae_cli.model.fusion.FUSIONS`).
    """

    model_name: str
    specs: list[ModalitySpec]
    names: list[str]
    encoded: list[str]
    decoded: list[str]
    latent_dim: int
    decoder_dim: int
    weights: list[float]
    family: Any
    conditional: bool
    fusion: str

    def encode(self, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Experts ``(mu, logvar) [B, M, D]`` of the rows ``mask bool [B, M]`` shows."""

    def posterior(self, batch: dict[str, torch.Tensor] | None, given, experts=None):
        """q(z | the given modalities of each row)."""

    def decode(self, name: str, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters of modality ``name`` for ``z [R, decoder_dim]``."""

    def log_prob(self, name: str, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | params) of modality ``name``: ``[R]``."""

    def decoder_context(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """``[B, C]`` appended to z before decoding, or None."""

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): ``[..., D]`` → ``[...]``."""

    def prior_from_noise(self, eps: torch.Tensor) -> torch.Tensor:
        """Draws of p(z) from standard-normal noise ``[..., D]``."""

    def posterior_reason(self, given: Sequence[str]) -> str | None:
        """Why q(z | given) is undefined for this model (None when it is defined)."""

    def generation_reason(self, names: Sequence[str]) -> str | None:
        """Why p(names | z) is undefined for this model (None when it is defined)."""

    def inference_modules(self) -> list[torch.nn.Module]:
        """The inference networks (Table 1 counts their parameters)."""
