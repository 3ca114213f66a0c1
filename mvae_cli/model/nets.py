"""Encoders and decoders. Encoders return ``(mu, logvar)``; decoders return likelihood
parameters. No network computes a loss (the sequence decoder's teacher-forced pass is its
likelihood's parameterisation, called through :meth:`SequenceDecoder.log_prob`).

Sizes follow the MVAE paper: MLPs with two hidden layers of 512 and Swish for MNIST images
(§4.1); a continuous embedding and a two-layer MLP for labels (with z=64 this gives the
paper's 1,063,680 MNIST inference parameters); a miniature DCGAN (two convolutions, two
transposed convolutions) for FashionMNIST (§4.2); a DCGAN (four of each) for MultiMNIST and
CelebA (§4.3, §4.4); attribute MLPs with batch normalisation (§4.4); a bidirectional GRU text
encoder and a two-layer GRU decoder over a 12-symbol vocabulary (§4.3).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mvae_cli.model.sequence import SequenceDecoder, SequenceEncoder


class RowBatchNorm(nn.BatchNorm1d):
    """Batch normalisation that tolerates a single row in training: under weak supervision a
    modality may be shown by one example of a batch; that row is normalised with the running
    statistics instead of failing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                            training=False, eps=self.eps)
        return super().forward(x)


class MLPEncoder(nn.Module):
    """Flattened input → hidden → hidden → (mu, logvar); optional batch normalisation."""

    def __init__(self, in_shape: tuple[int, ...], latent_dim: int, hidden: int = 512, batch_norm: bool = False):
        super().__init__()
        norm = (lambda: RowBatchNorm(hidden)) if batch_norm else nn.Identity
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(in_shape), hidden), norm(), nn.SiLU(),
            nn.Linear(hidden, hidden), norm(), nn.SiLU(), nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x).chunk(2, dim=-1)


class MLPDecoder(nn.Module):
    """z → hidden → hidden → logits of ``out_shape``; optional batch normalisation."""

    def __init__(self, out_shape: tuple[int, ...], latent_dim: int, hidden: int = 512, batch_norm: bool = False):
        super().__init__()
        norm = (lambda: RowBatchNorm(hidden)) if batch_norm else nn.Identity
        self.out_shape = tuple(out_shape)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), norm(), nn.SiLU(), nn.Linear(hidden, hidden), norm(), nn.SiLU(),
            nn.Linear(hidden, math.prod(self.out_shape)),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)


class CategoricalEncoder(nn.Module):
    """Class id → embedding(hidden) → hidden → (mu, logvar).

    The expert of an example depends on its class alone, so a batch with more examples than
    classes runs the network once per class and picks each example's row: the same values, with
    the network's products on C rows instead of B (MNIST's labels: 10 rather than 100 a step),
    and the gradient of each class summed over its examples by ``index_select``'s backward.
    """

    def __init__(self, classes: int, latent_dim: int, hidden: int = 512):
        super().__init__()
        self.embed = nn.Embedding(classes, hidden)
        self.net = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = x.long()
        if ids.dim() == 1 and ids.shape[0] > self.embed.num_embeddings:
            return self.net(self.embed.weight).index_select(0, ids).chunk(2, dim=-1)
        return self.net(self.embed(ids)).chunk(2, dim=-1)


def _conv_sizes(size: int, layers: int) -> list[int]:
    """Spatial sizes after each stride-2, kernel-4, padding-1 convolution: n → floor(n / 2)."""
    sizes = [size]
    for _ in range(layers):
        sizes.append(sizes[-1] // 2)
    if sizes[-1] < 1:
        raise ValueError(f"an image of size {size} is too small for {layers} stride-2 convolutions")
    return sizes


def _channels(layers: int) -> list[int]:
    return [64, 128] if layers == 2 else [32, 64, 128, 256][:layers]


class ConvEncoder(nn.Module):
    """DCGAN-style encoder: ``layers`` stride-2 convolutions (Swish), a hidden layer, (mu, logvar).

    Two layers is the paper's "miniature DCGAN" (FashionMNIST); four is its DCGAN (MultiMNIST,
    CelebA). Any height and width work.
    """

    def __init__(self, in_shape: tuple[int, int, int], latent_dim: int, hidden: int = 512, layers: int = 2):
        super().__init__()
        c, h, w = in_shape
        hs, ws, chans = _conv_sizes(h, layers), _conv_sizes(w, layers), _channels(layers)
        blocks, prev = [], c
        for out in chans:
            blocks += [nn.Conv2d(prev, out, 4, 2, 1), nn.SiLU()]
            prev = out
        self.net = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(prev * hs[-1] * ws[-1], hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * latent_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x).chunk(2, dim=-1)


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: a hidden layer, then stride-2 transposed convolutions
    whose output padding restores odd sizes exactly (e.g. 3 → 6 → 12 → 25 → 50)."""

    def __init__(self, out_shape: tuple[int, int, int], latent_dim: int, hidden: int = 512, layers: int = 2):
        super().__init__()
        c, h, w = out_shape
        hs, ws, chans = _conv_sizes(h, layers), _conv_sizes(w, layers), _channels(layers)[::-1]
        blocks = [nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, chans[0] * hs[-1] * ws[-1]), nn.SiLU(),
                  nn.Unflatten(1, (chans[0], hs[-1], ws[-1]))]
        outs = chans[1:] + [c]
        for i, out in enumerate(outs):
            target_h, target_w = hs[-2 - i], ws[-2 - i]
            pad = (target_h - 2 * hs[-1 - i], target_w - 2 * ws[-1 - i])
            blocks.append(nn.ConvTranspose2d(chans[i], out, 4, 2, 1, output_padding=pad))
            if i < len(outs) - 1:
                blocks.append(nn.SiLU())
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


_CONV_LAYERS = {"conv": 2, "dcgan": 4}


def build_encoder(spec, latent_dim: int, hidden: int, image_net: str) -> nn.Module:
    """The encoder for one :class:`~mvae_cli.data.format.ModalitySpec`."""
    if spec.kind == "image":
        if image_net in _CONV_LAYERS:
            return ConvEncoder(spec.shape, latent_dim, hidden, _CONV_LAYERS[image_net])
        return MLPEncoder(spec.shape, latent_dim, hidden)
    if spec.kind == "categorical":
        return CategoricalEncoder(spec.classes, latent_dim, hidden)
    if spec.kind == "binary":
        return MLPEncoder(spec.shape, latent_dim, hidden, batch_norm=True)
    if spec.kind == "sequence":
        return SequenceEncoder(spec.classes, latent_dim)
    raise ValueError(f"no encoder for modality kind {spec.kind!r}")


def build_decoder(spec, latent_dim: int, hidden: int, image_net: str) -> nn.Module:
    """The decoder for one :class:`~mvae_cli.data.format.ModalitySpec`."""
    if spec.kind == "image":
        if image_net in _CONV_LAYERS:
            return ConvDecoder(spec.shape, latent_dim, hidden, _CONV_LAYERS[image_net])
        return MLPDecoder(spec.shape, latent_dim, hidden)
    if spec.kind == "categorical":
        return MLPDecoder((spec.classes,), latent_dim, hidden)
    if spec.kind == "binary":
        return MLPDecoder(spec.shape, latent_dim, hidden, batch_norm=True)
    if spec.kind == "sequence":
        return SequenceDecoder(spec.classes, spec.shape[0], latent_dim)
    raise ValueError(f"no decoder for modality kind {spec.kind!r}")
