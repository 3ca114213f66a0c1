"""mmJSD's latent (Sutter et al. 2020): a shared block c and a private block s_m per modality.

z = [c, s_1, …, s_M] ``[B, D_c + M·D_s]``. Each modality's encoder gives q(c|x_m) q(s_m|x_m)
(one Gaussian over [c, s_m], ``[B, M, D_c + D_s]`` from :meth:`MMJSD.encode`), and its decoder
takes [c, s_m]. Given the modalities X,

    q(z | X) = [(1/|X|) Σ_{j∈X} q(c|x_j)] Π_{m∈X} q(s_m|x_m) Π_{m∉X} p(s_m),

built as the mixture of experts (the one ``moe`` fusion) of M components over the whole z
that share their private blocks, so the estimator, accuracy and sampling use it as any other
posterior: a private block of a modality not given is its prior (a cross-modal generation
draws the target's private part from p(s_m)).
"""

from __future__ import annotations

import torch

from mvae_cli.model.model import MultimodalVAE


class MMJSD(MultimodalVAE):
    """The mmJSD model over the shared per-modality networks, widened by a private block.

    Args:
        latent_dim: D_c, the shared block.
        private_dim: D_s, each modality's private block (0: no private latents).
        (the rest as :class:`~mvae_cli.model.model.MultimodalVAE`)
    """

    plain_decoders = False  # each decoder sees its own part of z

    def __init__(self, specs, latent_dim, hidden=512, image_net="mlp", weights=None, likelihoods=None,
                 private_dim: int = 4):
        super().__init__(specs, latent_dim + private_dim, hidden, image_net, weights, likelihoods, fusion="moe", name="mmjsd")
        self.shared_dim, self.private_dim = latent_dim, private_dim
        self.latent_dim = latent_dim + len(self.names) * private_dim  # the whole z

    def split(self, mu: torch.Tensor, logvar: torch.Tensor):
        """Experts ``[B, M, D_c + D_s]`` → (c part ``(mu, logvar) [B, M, D_c]``, private part ``[B, M, D_s]``)."""
        c = self.shared_dim
        return (mu[..., :c], logvar[..., :c]), (mu[..., c:], logvar[..., c:])

    def widen(self, mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor):
        """Experts ``[B, M, D_c + D_s]`` → ``[B, M, D]``: component j is [c_j, s_1, …, s_M], each
        private block its modality's posterior where ``mask`` shows it, else N(0, I)."""
        (c_mu, c_logvar), (s_mu, s_logvar) = self.split(mu, logvar)
        shown = mask.unsqueeze(-1)
        s_mu, s_logvar = torch.where(shown, s_mu, 0.0), torch.where(shown, s_logvar, 0.0)
        B, M = mask.shape
        s_mu = s_mu.reshape(B, 1, M * self.private_dim).expand(-1, M, -1)
        s_logvar = s_logvar.reshape(B, 1, M * self.private_dim).expand(-1, M, -1)
        return torch.cat([c_mu, s_mu], dim=-1), torch.cat([c_logvar, s_logvar], dim=-1)

    def fuse(self, mu, logvar, mask):
        """The mixture of the given experts' shared blocks, with their private blocks: ``[B, M, D]`` components."""
        return super().fuse(*self.widen(mu, logvar, mask), mask)

    def decode(self, name: str, z: torch.Tensor) -> torch.Tensor:
        """p(x_m | c, s_m): the decoder of ``name`` on [c, s_m] of ``z [R, D]``."""
        j = self.names.index(name)
        start = self.shared_dim + j * self.private_dim
        return self.decoders[name](torch.cat([z[..., :self.shared_dim], z[..., start:start + self.private_dim]], dim=-1))
