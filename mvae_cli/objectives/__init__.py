"""Training objectives over the shared networks: ``objective(model, batch, step) -> (loss, terms)``,
each with ``bound(model, batch) -> [B]``, its own validation bound. Keyed by ``model.name``."""

from mvae_cli.objectives.elbo import beta_at, subset_elbo
from mvae_cli.objectives.mixture import MMVAEObjective, MoPoEObjective
from mvae_cli.objectives.mmjsd import MMJSDObjective
from mvae_cli.objectives.mvae import MVAEObjective, mvae_subsets
from mvae_cli.objectives.paired import BiVCCAObjective, CVAEObjective, JMVAEObjective, VAEObjective

OBJECTIVES = {"mvae": MVAEObjective, "mvae-q": MVAEObjective, "vae": VAEObjective, "cvae": CVAEObjective,
              "bivcca": BiVCCAObjective, "jmvae": JMVAEObjective,
              "mmvae": MMVAEObjective, "mopoe": MoPoEObjective, "mmjsd": MMJSDObjective}

__all__ = ["OBJECTIVES", "BiVCCAObjective", "CVAEObjective", "JMVAEObjective", "MMJSDObjective", "MMVAEObjective", "MVAEObjective", "MoPoEObjective", "VAEObjective", "beta_at",
           "mvae_subsets", "subset_elbo"]
