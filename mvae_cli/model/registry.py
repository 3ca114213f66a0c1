"""The model registry (recipe key ``model.name``): the MVAE and the MVAE paper's comparison models
(§4, Table 1), all over the same per-modality networks; only the inference structure differs.

- ``mvae``: a Gaussian expert per modality fused by the product of experts with the prior expert.
- ``mvae-q``: the same experts fused by the quotient of experts (seed 000).
- ``vae``: the primary modality x alone, q(z|x) and p(x|z).
- ``bivcca``: q(z|x) and q(z|y) (one expert per modality, never fused), each reconstructing
  every modality (Wang et al. 2016).
- ``jmvae``: those plus a joint inference network q(z|x, y) (Suzuki et al. 2016).
- ``cvae``: q(z|x, y) and p(x|z, y) (Sohn et al. 2015); it defines log p(x|y) only.
- ``mmvae``: the experts fused by their mixture, (1/|X|) Σ_{m∈X} q(z|x_m) (Shi et al. 2019).
- ``mmjsd``: the mixture of experts over a shared block c, with a private block s_m per
  modality (:mod:`~mvae_cli.model.mmjsd`), trained with the JS divergence to a dynamic prior.
- ``mopoe``: the mixture over the products of experts of every non-empty subset of the observed
  modalities (Sutter et al. 2021).

``x``, the primary modality, is the first image modality (else the first), as in ``mvae eval``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.linear import Linear
from mvae_cli.model.model import MultimodalVAE

MODEL_NAMES = ("mvae", "mvae-q", "vae", "cvae", "bivcca", "jmvae", "mmvae", "mopoe", "mmjsd")


def primary_modality(specs: list[ModalitySpec]) -> str:
    """The first image modality, else the first modality."""
    return next((s.name for s in specs if s.kind == "image"), specs[0].name)


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
                branches[spec.name] = nn.Sequential(nn.Flatten(), Linear(math.prod(spec.shape), hidden))
            else:
                raise ValueError(f"jmvae's joint network takes image, binary and categorical modalities, "
                                 f"not {spec.kind} ({spec.name})")
        self.kinds = {s.name: s.kind for s in specs}
        self.branches = nn.ModuleDict(branches)
        self.net = nn.Sequential(nn.SiLU(), Linear(len(specs) * hidden, hidden), nn.SiLU(), Linear(hidden, 2 * latent_dim))

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

    model_name = "jmvae"

    def __init__(self, specs, latent_dim, hidden=512, image_net="mlp", weights=None, likelihoods=None):
        super().__init__(specs, latent_dim, hidden, image_net, weights, likelihoods, fusion="single")
        if image_net != "mlp":
            raise ValueError("jmvae's joint network is built for model.image_net=mlp")
        self.joint = JointEncoder(self.specs, latent_dim, hidden)

    def inference_modules(self) -> list[nn.Module]:
        return [*self.encoders.values(), self.joint]

    def encode(self, batch, mask):
        if mask.shape[-1] == len(self.names) + 1:  # a mask over the M + 1 experts: the joint slot shows all
            mask = mask[:, :-1] | mask[:, -1:]
        mu, logvar = super().encode(batch, mask)
        full = mask.all(dim=1)
        rows = full.nonzero(as_tuple=True)[0]
        joint_mu = joint_logvar = mu.new_zeros(mask.shape[0], self.latent_dim)
        if rows.numel() == mask.shape[0]:
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


def build(name: str, specs: list[ModalitySpec], latent_dim: int, hidden: int = 512, image_net: str = "mlp",
          weights: dict[str, float] | None = None, likelihoods: dict[str, str] | None = None,
          private_dim: int = 4, posterior: str = "gaussian") -> MultimodalVAE:
    """The model ``name`` (one of :data:`MODEL_NAMES`) over ``specs``; ``posterior`` (the experts'
    and the prior's family) may be ``laplace`` for the MMVAE, as its paper uses.

    Raises:
        ValueError: an unknown name, or a model that cannot be built for these modalities.
    """
    if posterior != "gaussian" and name != "mmvae":
        raise ValueError(f"model.posterior={posterior} is for mmvae (a mixture of experts); {name} takes gaussian")
    if name == "mvae":
        return MultimodalVAE(specs, latent_dim, hidden, image_net, weights, likelihoods)
    if name == "mvae-q":
        model = MultimodalVAE(specs, latent_dim, hidden, image_net, weights, likelihoods, fusion="qoe")
    elif name == "vae":
        model = MultimodalVAE(specs, latent_dim, hidden, image_net, weights, likelihoods, fusion="single",
                              modalities=[primary_modality(specs)])
    elif name == "bivcca":
        model = MultimodalVAE(specs, latent_dim, hidden, image_net, weights, likelihoods, fusion="single")
    elif name == "mmvae":
        model = MultimodalVAE(specs, latent_dim, hidden, image_net, weights, likelihoods, fusion="moe",
                              posterior=posterior)
    elif name == "mopoe":
        model = MultimodalVAE(specs, latent_dim, hidden, image_net, weights, likelihoods, fusion="mopoe")
    elif name == "mmjsd":
        from mvae_cli.model.mmjsd import MMJSD

        return MMJSD(specs, latent_dim, hidden, image_net, weights, likelihoods, private_dim)
    elif name == "jmvae":
        return JMVAE(specs, latent_dim, hidden, image_net, weights, likelihoods)
    elif name == "cvae":
        return CVAE(specs, latent_dim, hidden, image_net, weights, likelihoods)
    else:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(MODEL_NAMES)})")
    model.model_name = name
    return model


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"inference": parameters of the inference networks (Table 1), "total": every parameter}``."""
    inference = sum(p.numel() for m in model.inference_modules() for p in m.parameters())
    return {"inference": inference, "total": sum(p.numel() for p in model.parameters())}


def _context_size(spec: ModalitySpec) -> int:
    return spec.classes if spec.kind == "categorical" else math.prod(spec.shape)


class CVAE(MultimodalVAE):
    """The conditional VAE (Sohn et al. 2015): q(z | x, y) and p(x | z, y), defining log p(x | y) only.

    y (every modality but x, categorical or binary) enters as a context vector c — one-hot class
    ids and binary attributes, concatenated — appended to x's flattened input in the inference
    network and to z in x's decoder (``decoder_context``). For MNIST the inference network is
    784 + 10 → 512 → 512 → 2·64: Table 1's 735,360 parameters.
    """

    model_name = "cvae"
    conditional = True

    def __init__(self, specs, latent_dim, hidden=512, image_net="mlp", weights=None, likelihoods=None):
        super().__init__(specs, latent_dim, hidden, image_net, weights, likelihoods, fusion="single", modalities=[])
        from mvae_cli.model.nets import MLPDecoder, MLPEncoder

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
        parts = [nn.functional.one_hot(batch[s.name].long(), s.classes).float() if s.kind == "categorical"
                 else batch[s.name].reshape(batch[s.name].shape[0], -1).float() for s in self.y_specs]
        return torch.cat(parts, dim=1)

    def encode(self, batch, mask):
        """q(z | x, y) in x's column for the rows that show every modality; zeros elsewhere: ``[B, M, D]``."""
        B, D = mask.shape[0], self.latent_dim
        mu = logvar = torch.zeros(B, len(self.names), D, device=mask.device)
        rows = mask.all(dim=1).nonzero(as_tuple=True)[0]
        if rows.numel():
            part = {n: batch[n][rows] for n in self.names}
            inputs = torch.cat([part[self.x].reshape(rows.numel(), -1).float(), self.decoder_context(part)], dim=1)
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
