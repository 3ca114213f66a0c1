"""The model table (recipe key ``model.name``): every model ``mvae`` trains, one entry each.

An entry says what a model is: its builder (networks + a fusion over the shared per-modality
networks), its objective class, the settings it takes beyond the shared ones, its fusion and its
paper. The recipe's choices, the engine, the report and the figures read this table; nothing else
lists model names. Adding a model is one new file (its networks, or its objective, or both) and one
:func:`register` call.

- ``mvae``: a Gaussian expert per modality fused by the product of experts with the prior expert.
- ``mvae-q``: the same experts fused by the quotient of experts (seed 000).
- ``vae``: the primary modality x alone, q(z|x) and p(x|z).
- ``cvae``: q(z|x, y) and p(x|z, y) (Sohn et al. 2015); it defines log p(x|y) only.
- ``bivcca``: q(z|x) and q(z|y) (one expert per modality, never fused), each reconstructing
  every modality (Wang et al. 2016).
- ``jmvae``: those plus a joint inference network q(z|x, y) (Suzuki et al. 2016).
- ``mmvae``: the experts fused by their mixture, (1/|X|) Σ_{m∈X} q(z|x_m) (Shi et al. 2019).
- ``mopoe``: the mixture over the products of experts of every non-empty subset of the observed
  modalities (Sutter et al. 2021).
- ``mmjsd``: the mixture of experts over a shared block c, with a private block s_m per
  modality (:mod:`~mvae_cli.model.mmjsd`), trained with the JS divergence to a dynamic prior.

``x``, the primary modality, is the first image modality (else the first), as in ``mvae eval``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import nn

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.cvae import CVAE
from mvae_cli.model.jmvae import JMVAE
from mvae_cli.model.mmjsd import MMJSD
from mvae_cli.model.model import MultimodalVAE, primary_modality
from mvae_cli.objectives import (BiVCCAObjective, CVAEObjective, JMVAEObjective, MMJSDObjective, MMVAEObjective,
                                 MoPoEObjective, MVAEObjective, VAEObjective)
from mvae_cli.objectives.base import Objective

# The settings every model takes (recipe keys model.<key>), passed to every builder.
SHARED_SETTINGS = ("latent_dim", "hidden", "image_net", "weights", "likelihoods")
# The settings every objective takes (top-level recipe keys, β annealing in optimiser steps).
COMMON_OBJECTIVE_SETTINGS = ("anneal_steps", "beta", "free_bits")


@dataclass(frozen=True)
class ModelEntry:
    """One model of the table.

    Args:
        name: the recipe's ``model.name``.
        build: ``build(specs, *, latent_dim, hidden, image_net, weights, likelihoods, **settings)``
            -> the model (a :class:`~mvae_cli.model.protocol.Model`); raises ValueError when it
            cannot be built for these modalities.
        objective: its objective class (a :class:`~mvae_cli.objectives.base.Objective`), which
            names the ``objective.*`` keys it takes in ``settings``.
        fusion: how its posterior combines experts, in words (the README's table).
        paper: the paper it follows.
        settings: the ``model.*`` keys it takes beyond :data:`SHARED_SETTINGS`, with their defaults.
    """

    name: str
    build: Callable[..., nn.Module]
    objective: type[Objective]
    fusion: str
    paper: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def objective_settings(self) -> tuple[str, ...]:
        """The recipe's ``objective.*`` keys this model's objective takes."""
        return tuple(self.objective.settings)


_TABLE: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    """Add a model to the table (a new name, or a replacement of the same name)."""
    _TABLE[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove a model from the table (tests that register one of their own)."""
    _TABLE.pop(name, None)


def names() -> tuple[str, ...]:
    """Every model name, in table order."""
    return tuple(_TABLE)


def entry(name: str) -> ModelEntry:
    """The table's entry for ``name``.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    try:
        return _TABLE[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(_TABLE)})") from None


def build(name: str, specs: list[ModalitySpec], latent_dim: int, hidden: int = 512, *, image_net: str = "mlp",
          weights: dict[str, float] | None = None, likelihoods: dict[str, str] | None = None, **settings) -> nn.Module:
    """The model ``name`` over ``specs``: the shared settings plus the model's own (defaults from its entry).

    Raises:
        ValueError: an unknown name, a setting the model does not take, or a model that cannot be
            built for these modalities.
    """
    model = entry(name)
    for key in sorted(set(settings) - set(model.settings)):
        takers = [n for n, e in _TABLE.items() if key in e.settings]
        raise ValueError(f"model.{key}={settings[key]} is for {', '.join(takers) or 'no model'}; {name} does not take it")
    return model.build(specs, latent_dim=latent_dim, hidden=hidden, image_net=image_net, weights=weights,
                       likelihoods=likelihoods, **{**model.settings, **settings})


def objective(name: str, **settings) -> Objective:
    """The objective of model ``name`` with ``settings`` (its own and :data:`COMMON_OBJECTIVE_SETTINGS`).

    Raises:
        ValueError: a setting the model's objective does not take.
    """
    model = entry(name)
    foreign = sorted(set(settings) - set(COMMON_OBJECTIVE_SETTINGS) - set(model.objective_settings))
    if foreign:
        raise ValueError(f"{name}'s objective takes no setting {', '.join(foreign)}")
    return model.objective(**settings)


def _fused(fusion: str, *, name: str, primary_only: bool = False, takes_posterior: bool = False):
    """A builder of the shared per-modality networks under one fusion."""

    def build_fused(specs, *, latent_dim, hidden, image_net, weights, likelihoods, posterior="gaussian"):
        modalities = [primary_modality(specs)] if primary_only else None
        extra = {"posterior": posterior} if takes_posterior else {}
        return MultimodalVAE(specs, latent_dim, hidden, image_net, weights, likelihoods, fusion=fusion,
                             modalities=modalities, name=name, **extra)

    return build_fused


def _own_class(cls):
    """A builder of a model with networks of its own (``cls(specs, latent_dim, hidden, …, **settings)``)."""

    @functools.wraps(cls)
    def build_own(specs, *, latent_dim, hidden, image_net, weights, likelihoods, **settings):
        return cls(specs, latent_dim, hidden, image_net, weights, likelihoods, **settings)

    return build_own


for _entry in (
    ModelEntry("mvae", _fused("poe", name="mvae"), MVAEObjective, "product of experts with the prior expert",
               "Wu & Goodman 2018"),
    ModelEntry("mvae-q", _fused("qoe", name="mvae-q"), MVAEObjective, "quotient of experts", "Wu & Goodman 2018 (MVAE-Q)"),
    ModelEntry("vae", _fused("single", name="vae", primary_only=True), VAEObjective, "q(z|x) alone", "Kingma & Welling 2014"),
    ModelEntry("cvae", _own_class(CVAE), CVAEObjective, "q(z|x, y), decoder p(x|z, y)", "Sohn et al. 2015"),
    ModelEntry("bivcca", _fused("single", name="bivcca"), BiVCCAObjective, "one expert per modality, never fused",
               "Wang et al. 2016"),
    ModelEntry("jmvae", _own_class(JMVAE), JMVAEObjective, "unimodal experts and a joint network",
               "Suzuki et al. 2016"),
    ModelEntry("mmvae", _fused("moe", name="mmvae", takes_posterior=True), MMVAEObjective, "mixture of experts",
               "Shi et al. 2019", settings={"posterior": "gaussian"}),
    ModelEntry("mopoe", _fused("mopoe", name="mopoe"), MoPoEObjective, "mixture of products of experts",
               "Sutter et al. 2021"),
    ModelEntry("mmjsd", _own_class(MMJSD), MMJSDObjective, "mixture of experts, private blocks, dynamic prior",
               "Sutter et al. 2020", settings={"private_dim": 4}),
):
    register(_entry)
