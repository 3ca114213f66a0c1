"""Encoders and decoders. Encoders return ``(mu, logvar)``; decoders return likelihood
parameters (logits). No network computes a loss.

Sizes follow the MVAE paper (§4.1, §4.2): MLPs with two hidden layers of 512 and Swish
for MNIST images; a continuous embedding and a two-layer MLP for labels (this gives the
paper's 1,063,680 inference parameters for MNIST with z=64); a miniature DCGAN (two
convolutions, two transposed convolutions) for FashionMNIST-style images.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MLPEncoder(nn.Module):
    """Flattened input → hidden → hidden → (mu, logvar)."""

    def __init__(self, in_shape: tuple[int, ...], latent_dim: int, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(in_shape), hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x).chunk(2, dim=-1)


class MLPDecoder(nn.Module):
    """z → hidden → hidden → logits of ``out_shape``."""

    def __init__(self, out_shape: tuple[int, ...], latent_dim: int, hidden: int = 512):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, math.prod(self.out_shape)),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)


class CategoricalEncoder(nn.Module):
    """Class id → embedding(hidden) → hidden → (mu, logvar)."""

    def __init__(self, classes: int, latent_dim: int, hidden: int = 512):
        super().__init__()
        self.embed = nn.Embedding(classes, hidden)
        self.net = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(self.embed(x.long())).chunk(2, dim=-1)


class ConvEncoder(nn.Module):
    """Miniature DCGAN encoder: two stride-2 convolutions, then a hidden layer. Needs H, W divisible by 4."""

    def __init__(self, in_shape: tuple[int, int, int], latent_dim: int, hidden: int = 512):
        super().__init__()
        c, h, w = in_shape
        if h % 4 or w % 4:
            raise ValueError(f"the conv encoder needs height and width divisible by 4, got {h}x{w}")
        self.net = nn.Sequential(
            nn.Conv2d(c, 64, 4, 2, 1), nn.SiLU(), nn.Conv2d(64, 128, 4, 2, 1), nn.SiLU(), nn.Flatten(),
            nn.Linear(128 * (h // 4) * (w // 4), hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x).chunk(2, dim=-1)


class ConvDecoder(nn.Module):
    """Miniature DCGAN decoder: a hidden layer, then two stride-2 transposed convolutions → logits."""

    def __init__(self, out_shape: tuple[int, int, int], latent_dim: int, hidden: int = 512):
        super().__init__()
        c, h, w = out_shape
        if h % 4 or w % 4:
            raise ValueError(f"the conv decoder needs height and width divisible by 4, got {h}x{w}")
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, 128 * (h // 4) * (w // 4)), nn.SiLU(),
            nn.Unflatten(1, (128, h // 4, w // 4)),
            nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.SiLU(), nn.ConvTranspose2d(64, c, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def build_encoder(spec, latent_dim: int, hidden: int, image_net: str) -> nn.Module:
    """The encoder for one :class:`~mvae_cli.data.format.ModalitySpec`."""
    if spec.kind == "image":
        return (ConvEncoder if image_net == "conv" else MLPEncoder)(spec.shape, latent_dim, hidden)
    if spec.kind == "categorical":
        return CategoricalEncoder(spec.classes, latent_dim, hidden)
    raise ValueError(f"no encoder for modality kind {spec.kind!r} yet")


def build_decoder(spec, latent_dim: int, hidden: int, image_net: str) -> nn.Module:
    """The decoder for one :class:`~mvae_cli.data.format.ModalitySpec`."""
    if spec.kind == "image":
        return (ConvDecoder if image_net == "conv" else MLPDecoder)(spec.shape, latent_dim, hidden)
    if spec.kind == "categorical":
        return MLPDecoder((spec.classes,), latent_dim, hidden)
    raise ValueError(f"no decoder for modality kind {spec.kind!r} yet")
