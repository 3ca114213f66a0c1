"""The multimodal VAE: one encoder (Gaussian expert) and one decoder per modality over a shared z.

It holds networks only; objectives (``mvae_cli.objectives``) and the estimator
(``mvae_cli.evaluate``) combine them with :func:`~mvae_cli.model.poe.product_of_experts`.
"""

from __future__ import annotations

import torch
from torch import nn

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.likelihoods import build_likelihoods
from mvae_cli.model.nets import build_decoder, build_encoder


class MultimodalVAE(nn.Module):
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
    """

    def __init__(self, specs: list[ModalitySpec], latent_dim: int, hidden: int = 512,
                 image_net: str = "mlp", weights: dict[str, float] | None = None,
                 likelihoods: dict[str, str] | None = None):
        super().__init__()
        self.specs = list(specs)
        self.names = [s.name for s in self.specs]
        self.latent_dim = latent_dim
        self.encoders = nn.ModuleDict({s.name: build_encoder(s, latent_dim, hidden, image_net) for s in self.specs})
        self.decoders = nn.ModuleDict({s.name: build_decoder(s, latent_dim, hidden, image_net) for s in self.specs})
        weights = weights or {}
        self.weights = [float(weights.get(n, 1.0)) for n in self.names]
        self.likelihoods = nn.ModuleDict(build_likelihoods(self.specs, likelihoods))

    def encode(self, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run every encoder once, on the rows that show its modality.

        Args:
            batch: ``{name: [B, ...]}``.
            mask: ``bool[B, M]``.

        Returns:
            ``(mu, logvar)``, each ``[B, M, D]``; rows a modality does not show are zeros
            (finite, and ignored by the product of experts through the mask).
        """
        mus, logvars = [], []
        for j, name in enumerate(self.names):
            column = mask[:, j]
            rows = None if bool(column.all()) else column.nonzero(as_tuple=True)[0]
            if rows is None:
                mu, logvar = self.encoders[name](batch[name])
            elif rows.numel() == 0:  # nobody shows this modality: its expert is dropped anyway
                mu = logvar = torch.zeros(mask.shape[0], self.latent_dim, device=mask.device)
            else:
                mu_rows, logvar_rows = self.encoders[name](batch[name][rows])
                shape = (mask.shape[0], self.latent_dim)
                mu = mu_rows.new_zeros(shape).index_copy(0, rows, mu_rows)
                logvar = logvar_rows.new_zeros(shape).index_copy(0, rows, logvar_rows)
            mus.append(mu)
            logvars.append(logvar)
        return torch.stack(mus, dim=1), torch.stack(logvars, dim=1)

    def decode(self, name: str, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters (logits) of modality ``name`` for ``z [R, D]``."""
        return self.decoders[name](z)

    def log_prob(self, name: str, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | params) of modality ``name``: ``[R]``, unweighted."""
        decoder = self.decoders[name]
        if hasattr(decoder, "log_prob"):  # autoregressive decoders own their likelihood
            return decoder.log_prob(params, x)
        return self.likelihoods[name].log_prob(params, x)
