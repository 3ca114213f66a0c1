"""The JMVAE (Suzuki et al. 2016): unimodal inference networks q(z|x_i) and a joint one q(z|x, y)
over the shared per-modality networks; trained with JMVAE-kl (:mod:`~mvae_cli.objectives.paired`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.model import MultimodalVAE
from mvae_cli.model.rows import host_mask, where, with_host_mask


class JointEncoder(nn.Module):
    """q(z | every modality): a first layer per modality (an MLP layer on the flattened input, an
    embedding for class ids), concatenated, then hidden → (mu, logvar).

    For MNIST (an image branch and a label branch of 512, 1024 → 512 → 2·64) this has the
    997,504 parameters that make JMVAE's 2,061,184 of Table 1.
    """

    def __init__(self, specs: list[ModalitySpec], latent_dim: int, hidden: int = 512):
        super().__init__()
        branches = {}
        for spec in specs:
            if spec.kind == "categorical":
                branches[spec.name] = nn.Embedding(spec.classes, hidden)
            elif spec.kind in ("image", "binary"):
                branches[spec.name] = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(spec.shape), hidden))
            else:
                raise ValueError(f"jmvae's joint network takes image, binary and categorical modalities, "
                                 f"not {spec.kind} ({spec.name})")
        self.kinds = {s.name: s.kind for s in specs}
        self.branches = nn.ModuleDict(branches)
        self.net = nn.Sequential(nn.SiLU(), nn.Linear(len(specs) * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent_dim))

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [branch(batch[name].long() if self.kinds[name] == "categorical" else batch[name])
                 for name, branch in self.branches.items()]
        return self.net(torch.cat(parts, dim=-1)).chunk(2, dim=-1)


class JMVAE(MultimodalVAE):
    """The JMVAE: unimodal inference networks q(z|x_i) and a joint one q(z|all).

    ``encode`` returns M + 1 experts ``[B, M + 1, D]``, the last the joint network's (computed on
    the rows that show every modality, zeros elsewhere); ``posterior`` given every modality is
    the joint network's, given one modality that modality's network.
    """

    def __init__(self, specs, latent_dim, hidden=512, image_net="mlp", weights=None, likelihoods=None):
        super().__init__(specs, latent_dim, hidden, image_net, weights, likelihoods, fusion="single", name="jmvae")
        if image_net != "mlp":
            raise ValueError("jmvae's joint network is built for model.image_net=mlp")
        self.joint = JointEncoder(self.specs, latent_dim, hidden)

    def inference_modules(self) -> list[nn.Module]:
        return [*self.encoders.values(), self.joint]

    def encode(self, batch, mask):
        shown = host_mask(batch, mask)
        if mask.shape[-1] == len(self.names) + 1:  # a mask over the M + 1 experts: the joint slot shows all
            mask = mask[:, :-1] | mask[:, -1:]
            shown = shown[:, :-1] | shown[:, -1:]
            batch = with_host_mask({**batch, "mask": mask}, shown)
        mu, logvar = super().encode(batch, mask)
        rows = where(shown.all(axis=1), mask.device)
        joint_mu = joint_logvar = mu.new_zeros(mask.shape[0], self.latent_dim)
        if rows is None:
            joint_mu, joint_logvar = self.joint(batch)
        elif rows.numel():
            m, lv = self.joint({n: batch[n][rows] for n in self.names})
            joint_mu, joint_logvar = joint_mu.index_copy(0, rows, m), joint_logvar.index_copy(0, rows, lv)
        return torch.cat([mu, joint_mu[:, None]], dim=1), torch.cat([logvar, joint_logvar[:, None]], dim=1)

    def given_mask(self, given, rows, device):
        """``bool [rows, M + 1]``: the joint network's slot for rows given every modality."""
        if torch.is_tensor(given) and given.shape[-1] == len(self.names) + 1:
            return given.to(device=device, dtype=torch.bool).expand(rows, -1)
        mask = super().given_mask(given, rows, device)
        full = mask.all(dim=1, keepdim=True)
        return torch.cat([mask & ~full, full], dim=1)

    def posterior_reason(self, given):
        given = set(given)
        if given == set(self.names) or len(given) == 1:
            return None
        return f"jmvae has no inference network q(z|{','.join(sorted(given))})"
