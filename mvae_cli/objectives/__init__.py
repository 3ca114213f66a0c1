"""Training objectives over the shared networks: ``objective(model, batch, step) -> (loss, terms)``,
each with ``bound(model, batch) -> [B]``, its own validation bound. Keyed by ``model.name``."""

from mvae_cli.objectives.elbo import subset_elbo
from mvae_cli.objectives.mixture import MMVAEObjective, MoPoEObjective
from mvae_cli.objectives.mmjsd import MMJSDObjective
from mvae_cli.objectives.regularize import beta_at, free_bits_kl
from mvae_cli.objectives.mvae import MVAEObjective, mvae_subsets
from mvae_cli.objectives.paired import BiVCCAObjective, CVAEObjective, JMVAEObjective, VAEObjective

OBJECTIVES = {"mvae": MVAEObjective, "mvae-q": MVAEObjective, "vae": VAEObjective, "cvae": CVAEObjective,
              "bivcca": BiVCCAObjective, "jmvae": JMVAEObjective,
              "mmvae": MMVAEObjective, "mopoe": MoPoEObjective, "mmjsd": MMJSDObjective}

__all__ = ["OBJECTIVES", "BiVCCAObjective", "CVAEObjective", "JMVAEObjective", "MMJSDObjective", "MMVAEObjective",
           "MVAEObjective", "MoPoEObjective", "VAEObjective", "beta_at", "free_bits_kl", "mvae_subsets", "subset_elbo"]
