"""The conditional VAE (Sohn et al. 2015) over the shared networks: q(z | x, y) and p(x | z, y)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.model import MultimodalVAE, primary_modality
from mvae_cli.model.rows import computing, host_mask, index
from mvae_cli.model.nets import MLPDecoder, MLPEncoder


def _context_size(spec: ModalitySpec) -> int:
    return spec.classes if spec.kind == "categorical" else math.prod(spec.shape)


class CVAE(MultimodalVAE):
    """The conditional VAE (Sohn et al. 2015): q(z | x, y) and p(x | z, y), defining log p(x | y) only.

    y (every modality but x, categorical or binary) enters as a context vector c — one-hot class
    ids and binary attributes, concatenated — appended to x's flattened input in the inference
    network and to z in x's decoder (``decoder_context``). For MNIST the inference network is
    784 + 10 → 512 → 512 → 2·64: Table 1's 735,360 parameters.
    """

    conditional = True

    def __init__(self, specs, latent_dim, hidden=512, image_net="mlp", weights=None, likelihoods=None):
        super().__init__(specs, latent_dim, hidden, image_net, weights, likelihoods, fusion="single", modalities=[], name="cvae")
        self.x = primary_modality(self.specs)
        x_spec = self.specs[self.names.index(self.x)]
        self.y_specs = [s for s in self.specs if s.name != self.x]
        if image_net != "mlp" or x_spec.kind not in ("image", "binary"):
            raise ValueError("cvae is built for an image (or binary) x with model.image_net=mlp")
        bad = [s.name for s in self.y_specs if s.kind not in ("categorical", "binary")]
        if bad:
            raise ValueError(f"cvae conditions on categorical and binary modalities, not {', '.join(bad)}")
        context = sum(_context_size(s) for s in self.y_specs)
        self.decoder_dim = latent_dim + context
        self.encoded = self.decoded = [self.x]
        self.encoders = nn.ModuleDict({self.x: MLPEncoder((math.prod(x_spec.shape) + context,), latent_dim, hidden)})
        self.decoders = nn.ModuleDict({self.x: MLPDecoder(x_spec.shape, self.decoder_dim, hidden)})

    def decoder_context(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """c ``[B, C]``: y's one-hot class ids and attributes, concatenated."""
        # one-hot by comparison: F.one_hot reads the largest id back to the host to check it
        parts = [(batch[s.name].long()[:, None] == torch.arange(s.classes, device=batch[s.name].device)).float()
                 if s.kind == "categorical"
                 else batch[s.name].reshape(batch[s.name].shape[0], -1).float() for s in self.y_specs]
        return torch.cat(parts, dim=1)

    def encode(self, batch, mask):
        """q(z | x, y) in x's column for the rows that show every modality; zeros elsewhere: ``[B, M, D]``."""
        B, D = mask.shape[0], self.latent_dim
        mu = logvar = torch.zeros(B, len(self.names), D, device=mask.device)
        full = host_mask(batch, mask).all(axis=1)
        rows = index(np.flatnonzero(full), mask.device)
        if rows.numel():
            part = {n: batch[n][rows] for n in self.names}
            inputs = torch.cat([part[self.x].reshape(rows.numel(), -1).float(), self.decoder_context(part)], dim=1)
            with computing(batch, np.flatnonzero(full)):  # a stacked network's rows (mvae_cli.model.stack)
                m, lv = self.encoders[self.x](inputs)
            j = self.names.index(self.x)
            mu, logvar = mu.to(m.dtype).clone(), logvar.to(m.dtype).clone()
            mu[rows, j], logvar[rows, j] = m, lv
        return mu, logvar

    def given_mask(self, given, rows, device):
        """x's column for the rows given every modality (the one inference network)."""
        full = super().given_mask(given, rows, device).all(dim=1)
        mask = torch.zeros(rows, len(self.names), dtype=torch.bool, device=device)
        mask[:, self.names.index(self.x)] = full
        return mask

    def posterior_reason(self, given):
        if set(given) == set(self.names):
            return None
        return f"cvae has one inference network, q(z|{','.join(self.names)})"

    def generation_reason(self, names):
        extra = set(names) - {self.x}
        return f"cvae does not generate {', '.join(sorted(extra))}" if extra else None
