"""Test models with the MultimodalVAE interface whose answers are known exactly."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.likelihoods import bernoulli_log_prob, categorical_log_prob
from mvae_cli.model.model import ExpertPosterior


class LinearGaussian(ExpertPosterior, nn.Module):
    """z ~ N(0, I_D); x_i = W_i z + b_i + N(0, σ² I) per modality i.

    Each W_i has orthogonal columns (W_iᵀW_i = diag(s_i²)), so the exact posterior given
    any subset of modalities is a product of diagonal Gaussian experts and the prior:
    expert i is N(W_iᵀ(x_i − b_i) / s_i², σ² / s_i²). ``inflate`` scales the experts'
    variances and ``shift`` moves their means, for a proposal that is not exact; ``scales``
    multiplies a modality's W (a small one makes the modality weakly informative).
    ``fusion`` picks how ``posterior`` combines the experts (exact only for ``poe``; the
    others are proposals whose estimates must still converge to the exact log p(x)).
    """

    def __init__(self, dims: dict[str, int], latent_dim: int = 3, sigma: float = 0.5, seed: int = 0,
                 inflate: float = 1.0, shift: float = 0.0, scales: dict[str, float] | None = None,
                 fusion: str = "poe"):
        super().__init__()
        self.fusion = fusion
        g = torch.Generator().manual_seed(seed)
        self.names = list(dims)
        self.latent_dim = latent_dim
        self.sigma = sigma
        self.inflate, self.shift = inflate, shift
        self.W, self.b, self.s = {}, {}, {}
        for name, d in dims.items():
            q, _ = torch.linalg.qr(torch.randn(d, latent_dim, generator=g, dtype=torch.float64))
            s = (0.5 + torch.rand(latent_dim, generator=g, dtype=torch.float64)) * (scales or {}).get(name, 1.0)
            self.W[name], self.s[name] = q * s, s
            self.b[name] = torch.randn(d, generator=g, dtype=torch.float64)
        self.anchor = nn.Parameter(torch.zeros((), dtype=torch.float64))  # gives the module a dtype

    def encode(self, batch, mask):
        mus, logvars = [], []
        for name in self.names:
            s2 = self.s[name] ** 2
            mu = (batch[name] - self.b[name]) @ self.W[name] / s2 + self.shift
            logvar = torch.log(self.sigma ** 2 * self.inflate / s2).expand_as(mu)
            mus.append(mu)
            logvars.append(logvar)
        return torch.stack(mus, dim=1), torch.stack(logvars, dim=1)

    def decode(self, name, z):
        return z @ self.W[name].T + self.b[name]

    def log_prob(self, name, params, x):
        return torch.distributions.Normal(params, self.sigma).log_prob(x).sum(dim=-1)

    def sample(self, n: int, seed: int = 1) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=g, dtype=torch.float64)
        return {name: self.decode(name, z) + self.sigma * torch.randn(n, self.W[name].shape[0], generator=g,
                                                                       dtype=torch.float64)
                for name in self.names}

    def exact_log_prob(self, batch, names) -> torch.Tensor:
        """log N(x; b, W Wᵀ + σ² I) of the stacked modalities ``names``: ``[B]``."""
        W = torch.cat([self.W[n] for n in names])
        b = torch.cat([self.b[n] for n in names])
        x = torch.cat([batch[n] for n in names], dim=1)
        cov = W @ W.T + self.sigma ** 2 * torch.eye(W.shape[0], dtype=torch.float64)
        return torch.distributions.MultivariateNormal(b, cov).log_prob(x)

    def exact_posterior(self, batch, names) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``[B, D]`` and covariance ``[D, D]`` of p(z | x_names), by plain linear algebra."""
        W = torch.cat([self.W[n] for n in names])
        b = torch.cat([self.b[n] for n in names])
        x = torch.cat([batch[n] for n in names], dim=1)
        cov = torch.linalg.inv(torch.eye(self.latent_dim, dtype=torch.float64) + W.T @ W / self.sigma ** 2)
        return (x - b) @ W @ cov / self.sigma ** 2, cov


class PerfectClassifier(ExpertPosterior, nn.Module):
    """An image that is the one-hot code of its class, and a latent that copies it.

    Encoders put a confident expert on the one-hot code; the label decoder's logits are
    z itself, so decoding at the mean of q(z | image) recovers the class exactly.
    """

    def __init__(self, classes: int = 4, scale: float = 6.0):
        super().__init__()
        self.specs = [ModalitySpec("image", "image", "bernoulli", (1, 1, classes)),
                      ModalitySpec("label", "categorical", "categorical", (), classes)]
        self.names = [s.name for s in self.specs]
        self.latent_dim = classes
        self.scale = scale
        self.anchor = nn.Parameter(torch.zeros(()))

    def encode(self, batch, mask):
        image = batch["image"].flatten(1) * self.scale
        label = nn.functional.one_hot(batch["label"].long(), self.latent_dim).float() * self.scale
        logvar = torch.full_like(image, math.log(0.1))
        return torch.stack([image, label], dim=1), torch.stack([logvar, logvar], dim=1)

    def decode(self, name, z):
        return z.view(-1, 1, 1, self.latent_dim) * 2 - self.scale if name == "image" else z

    def log_prob(self, name, params, x):
        return (bernoulli_log_prob if name == "image" else categorical_log_prob)(params, x)


class _RoundingDecoder:
    """Greedy decoding of :class:`PerfectPredictor`'s text: START, then each state entry rounded."""

    def __init__(self, start: int, vocab: int):
        self.start, self.vocab = start, vocab

    def generate(self, state: torch.Tensor) -> torch.Tensor:
        tokens = state.round().long().clamp(0, self.vocab - 1)
        return torch.cat([torch.full_like(tokens[:, :1], self.start), tokens], dim=1)


class PerfectPredictor(ExpertPosterior, nn.Module):
    """An image that spells out its attributes and its text, and a latent that copies them.

    The image ``[1, 1, A + 1 + L − 1]`` holds the A bits of ``attrs`` and the bit of ``flag``
    as 0/255 and the tokens 1..L−1 of ``text`` as 40·token. Every expert puts a confident
    mean on the code (bits as ±scale, tokens as themselves); ``attrs`` and ``flag`` decode to
    their coordinates as logits, and ``text`` greedily decodes by rounding its coordinates.
    So predicting from the image is exactly as right as the image's code.
    """

    def __init__(self, attributes: int = 3, length: int = 5, vocab: int = 6, scale: float = 6.0):
        super().__init__()
        self.A, self.L, self.vocab, self.scale = attributes, length, vocab, scale
        self.latent_dim = attributes + 1 + length - 1
        self.specs = [ModalitySpec("image", "image", "bernoulli", (1, 1, self.latent_dim)),
                      ModalitySpec("attrs", "binary", "bernoulli", (attributes,)),
                      ModalitySpec("flag", "binary", "bernoulli", (1,)),
                      ModalitySpec("text", "sequence", "categorical", (length,), vocab)]
        self.names = [s.name for s in self.specs]
        self.decoders = {"text": _RoundingDecoder(vocab - 2, vocab)}
        self.anchor = nn.Parameter(torch.zeros(()))

    def image_of(self, attrs: np.ndarray, flag: np.ndarray, text: np.ndarray) -> np.ndarray:
        """``uint8 [N, 1, 1, D]`` spelling out the other modalities."""
        code = np.concatenate([attrs * 255, flag * 255, text[:, 1:] * 40], axis=1).astype(np.uint8)
        return code[:, None, None, :]

    def _code(self, bits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([(2 * bits - 1) * self.scale, tokens], dim=1)

    def encode(self, batch, mask):
        image = batch["image"].flatten(1) * 255
        from_image = self._code(image[:, :self.A + 1] / 255, image[:, self.A + 1:] / 40)
        B = image.shape[0]
        text = batch["text"][:, 1:].float()
        bits = torch.cat([batch["attrs"], batch["flag"]], dim=1)
        others = self._code(bits, text)
        mus = torch.stack([from_image, others, others, others], dim=1)
        return mus, torch.full_like(mus, math.log(1e-4)).expand(B, 4, -1)

    def decode(self, name, z):
        if name == "image":
            return z.view(-1, 1, 1, self.latent_dim)
        if name == "attrs":
            return z[:, :self.A]
        if name == "flag":
            return z[:, self.A:self.A + 1]
        return z[:, self.A + 1:]

    def log_prob(self, name, params, x):
        if name == "text":
            return torch.distributions.Normal(params, 1.0).log_prob(x[:, 1:].float()).sum(dim=-1)
        return bernoulli_log_prob(params, x)
