"""The multimodal VAE: one encoder (Gaussian expert) and one decoder per modality over a shared z.

It holds networks and a fusion (:mod:`~mvae_cli.model.fusion`); :meth:`MultimodalVAE.posterior`
is the only way any caller (objectives, the estimator, accuracy, figures) gets q(z | subset).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.fusion import ANY_FAMILY, FUSIONS
from mvae_cli.model.likelihoods import build_likelihoods
from mvae_cli.model.nets import build_decoder, build_encoder
from mvae_cli.model.posterior import FAMILIES, DiagonalGaussian
from mvae_cli.model.rows import cells, computing, host_mask, index, place
from mvae_cli.model.stack import group_rows, net_groups, run_group


class _Defaulted:
    """An attribute that reads as another one of the same object (``fallback``) until it is set."""

    def __init__(self, fallback: str):
        self.fallback = fallback

    def __set_name__(self, owner, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj.__dict__.get(self.slot)
        return getattr(obj, self.fallback) if value is None else value

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.slot] = value


class ExpertPosterior:
    """q(z | subset) from per-modality experts: :meth:`posterior`, for any module with ``names``,
    ``fusion`` and ``encode(batch, mask) -> (mu, logvar) [B, M, D]`` (the test models use it too)."""

    model_name = "model"  # the model table's name (mvae_cli.zoo)
    fusion = "poe"
    family = DiagonalGaussian  # the experts' and the prior's family (:data:`~mvae_cli.model.posterior.FAMILIES`)
    conditional = False  # True where a decoder also takes y (the CVAE's p(x | z, y))
    # what the model infers z from, what it generates, a decoder's input width: every modality and z
    # unless a model sets them (the VAE models one modality; the CVAE's decoders also take y)
    encoded = _Defaulted("names")
    decoded = _Defaulted("names")
    decoder_dim = _Defaulted("latent_dim")

    def decoder_context(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """``[B, C]`` appended to z before decoding (the CVAE's y); None: decoders take z alone."""
        return None

    def given_mask(self, given, rows: int, device: torch.device | str) -> torch.Tensor:
        """``bool [rows, M]`` from modality names (the same subset for every row), ``bool [M]`` or ``bool [rows, M]``."""
        if torch.is_tensor(given):
            return given.to(device=device, dtype=torch.bool).expand(rows, len(self.names))
        unknown = set(given) - set(self.names)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)} (known: {', '.join(self.names)})")
        return torch.tensor([n in given for n in self.names], device=device).expand(rows, -1)

    def posterior(self, batch: dict[str, torch.Tensor] | None, given,
                  experts: tuple[torch.Tensor, torch.Tensor] | None = None):
        """q(z | the ``given`` modalities of each row): the model's fusion of its experts.

        Args:
            batch: ``{name: [B, ...]}`` holding the given modalities (unused when ``experts`` is given).
            given: modality names, or ``bool [B, M]`` / ``[M]``.
            experts: ``(mu, logvar) [B, M, D]`` from :meth:`encode`, when already computed
                (rows must show at least the given modalities).

        Returns:
            A posterior with B rows (:mod:`~mvae_cli.model.posterior`).
        """
        if experts is None:
            rows = next(iter(v for k, v in batch.items() if k != "mask")).shape[0]
            device = next(iter(batch.values())).device
            # encoders run on the given modalities (a model's own mask, as the CVAE's, may say less)
            wide = torch.is_tensor(given) and given.shape[-1] != len(self.names)
            experts = self.encode(batch, given if wide else ExpertPosterior.given_mask(self, given, rows, device))
            mask = self.given_mask(given, rows, device)
        else:
            mask = self.given_mask(given, experts[0].shape[0], experts[0].device)
        return self.fuse(experts[0], experts[1], mask)

    def fuse(self, mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor):
        """The model's fusion (:data:`~mvae_cli.model.fusion.FUSIONS`) of experts ``[B, M, D]`` given ``mask``."""
        if self.fusion in ANY_FAMILY:  # the products take Gaussians only (checked when the model is built)
            return FUSIONS[self.fusion](mu, logvar, mask, family=self.family)
        return FUSIONS[self.fusion](mu, logvar, mask)

    def posterior_reason(self, given) -> str | None:
        """Why q(z | given) is not defined by this model (None when it is), ``given`` a list of names."""
        given = set(given)
        missing = given - set(self.encoded)
        if missing:
            return f"{self.model_name} has no inference network for {', '.join(sorted(missing))}"
        if self.fusion == "single" and len(given) != 1:
            return f"{self.model_name} has no joint inference network q(z|{','.join(sorted(given))})"
        if self.fusion in ("moe", "mopoe") and not given:
            return "a mixture posterior needs at least one modality"
        return None

    def generation_reason(self, names) -> str | None:
        """Why p(names | z) is not defined by this model (None when it is)."""
        missing = set(names) - set(self.decoded)
        if missing:
            return f"{self.model_name} does not generate {', '.join(sorted(missing))}"
        return None

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), N(0, I) or the family's prior: ``[..., D]`` → ``[...]``."""
        return self.family.prior_log_prob(z)

    def prior_from_noise(self, eps: torch.Tensor) -> torch.Tensor:
        """Draws of p(z) from standard-normal noise ``eps [..., D]`` (itself for N(0, I))."""
        return self.family.noise(eps)


class MultimodalVAE(ExpertPosterior, nn.Module):
    """p(z) Π_i p(x_i | z) with one Gaussian expert q(z | x_i) per modality.

    Args:
        specs: the modalities, in dataset order (mask columns follow it).
        latent_dim: D.
        hidden: hidden width of every network.
        image_net: ``mlp`` or ``conv`` for image modalities.
        weights: λ_i per modality name (default 1).
        likelihoods: the recipe's ``model.likelihoods``, ``{name: "continuous-bernoulli" | "gaussian:learned" | …}``
            (:func:`~mvae_cli.model.likelihoods.build_likelihoods`); default the dataset's own.
            Learned scales are parameters of ``self.likelihoods``.
        fusion: how experts combine (:data:`~mvae_cli.model.fusion.FUSIONS`): ``poe`` (MVAE),
            ``qoe`` (MVAE-Q), ``moe``, ``mopoe``, ``single``.
        posterior: the family of the experts and the prior, ``gaussian`` or ``laplace``
            (mixtures and single experts only).
        modalities: the modalities that get an encoder and a decoder (default: all; the VAE
            models one). Mask columns still follow ``specs``.
        name: the model's name in the model table (:mod:`mvae_cli.zoo`), in messages and run.json.
    """

    # decode(name, z) is decoders[name](z), log_prob the likelihood's: a stack may compute like
    # decoders of several modalities as one group (mvae_cli.model.stack.NetGroup)
    plain_decoders = True

    def __init__(self, specs: list[ModalitySpec], latent_dim: int, hidden: int = 512,
                 image_net: str = "mlp", weights: dict[str, float] | None = None,
                 likelihoods: dict[str, str] | None = None, fusion: str = "poe",
                 modalities: list[str] | None = None, posterior: str = "gaussian", name: str = "mvae"):
        super().__init__()
        self.model_name = name
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r} (known: {', '.join(FUSIONS)})")
        if posterior not in FAMILIES:
            raise ValueError(f"unknown posterior family {posterior!r} (known: {', '.join(FAMILIES)})")
        if posterior != "gaussian" and fusion not in ANY_FAMILY:
            raise ValueError(f"model.posterior={posterior} needs a mixture of experts (mmvae): a product of "
                             f"{posterior} experts has no closed form")
        self.fusion = fusion
        self.family = FAMILIES[posterior]
        self.specs = list(specs)
        self.names = [s.name for s in self.specs]
        self.latent_dim = latent_dim
        self.expert_dim = latent_dim  # an expert's width (mmJSD's experts cover a part of z)
        modelled = [s for s in self.specs if modalities is None or s.name in modalities]
        self.encoded = self.decoded = [s.name for s in modelled]
        self.encoders = nn.ModuleDict({s.name: build_encoder(s, latent_dim, hidden, image_net) for s in modelled})
        self.decoders = nn.ModuleDict({s.name: build_decoder(s, latent_dim, hidden, image_net) for s in modelled})
        weights = weights or {}
        self.weights = [float(weights.get(n, 1.0)) for n in self.names]
        self.likelihoods = nn.ModuleDict(build_likelihoods(self.specs, likelihoods))

    def encode(self, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run every encoder once, on the rows that show its modality.

        Args:
            batch: ``{name: [B, ...]}``.
            mask: ``bool[B, M]``.

        Returns:
            ``(mu, logvar)``, each ``[B, M, D]`` (D = ``expert_dim``); rows a modality does not show are zeros
            (finite, and ignored by the product of experts through the mask).
        """
        shown = host_mask(batch, mask)  # the rows are found on the host: no device sync
        B, M = shown.shape
        parts, slots = [], []  # each network's (mu, logvar) rows, and where they go in [B·M]
        for names in net_groups(self.encoders, [n for n in self.names if n in self.encoders]):
            rows, at = cells(shown, [self.names.index(n) for n in names])
            if not at.size:  # nobody shows it: its expert is dropped anyway
                continue
            if len(names) == 1:
                whole = rows[0].size == B
                with computing(batch, None if whole else rows[0]):
                    parts.append(self.encoders[names[0]](
                        batch[names[0]] if whole else group_rows(batch, names, rows, mask.device)))
            else:  # like networks of a stack, in one call (mvae_cli.model.stack.NetGroup)
                parts.append(run_group(self.encoders, names, batch, group_rows(batch, names, rows, mask.device), rows))
            slots.append(at)
        if not parts:
            zeros = torch.zeros(B, M, self.expert_dim, device=mask.device)
            return zeros, zeros
        at = index(np.concatenate(slots), mask.device)
        # a modality not shown (or without an encoder: the VAE's y) has zeros, finite and masked out of the fusion
        mu, logvar = (place(torch.cat(p), at, (B, M)) for p in zip(*parts))
        return mu, logvar

    def inference_modules(self) -> list[nn.Module]:
        """The inference networks (Table 1 counts their parameters)."""
        return list(self.encoders.values())

    def decode(self, name: str, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters (logits) of modality ``name`` for ``z [R, D]``."""
        return self.decoders[name](z)

    def log_prob(self, name: str, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | params) of modality ``name``: ``[R]``, unweighted."""
        decoder = self.decoders[name]
        if hasattr(decoder, "log_prob"):  # autoregressive decoders own their likelihood
            return decoder.log_prob(params, x)
        return self.likelihoods[name].log_prob(params, x)


def rescaled_weights(specs: list[ModalitySpec], weights: dict[str, float] | None = None) -> dict[str, float]:
    """Likelihood rescaling (MultiVae's ``rescale_factors``): each modality's λ (``weights``, default 1)
    times D_max / D_m, where D_m is the number of values its likelihood scores (an image's pixels, a
    binary vector's attributes, a sequence's tokens, 1 for a class id), so that every modality's
    log-likelihood counts as much as the largest one's.

    Returns:
        ``{name: λ_m · D_max / D_m}`` for every modality.
    """
    dims = {s.name: max(1, math.prod(s.shape)) for s in specs}
    top = max(dims.values())
    weights = weights or {}
    return {name: float(weights.get(name, 1.0)) * top / d for name, d in dims.items()}


def primary_modality(specs: list[ModalitySpec]) -> str:
    """x, the primary modality: the first image modality, else the first modality."""
    return next((s.name for s in specs if s.kind == "image"), specs[0].name)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"inference": parameters of the inference networks (Table 1), "total": every parameter}``."""
    inference = sum(p.numel() for m in model.inference_modules() for p in m.parameters())
    return {"inference": inference, "total": sum(p.numel() for p in model.parameters())}
