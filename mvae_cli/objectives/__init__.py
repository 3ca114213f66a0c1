"""Training objectives over the shared networks: ``objective(model, batch, step) -> (loss, terms)``."""

from mvae_cli.objectives.elbo import subset_elbo
from mvae_cli.objectives.regularize import beta_at, free_bits_kl
from mvae_cli.objectives.mvae import MVAEObjective, mvae_subsets

OBJECTIVES = {"mvae": MVAEObjective}

__all__ = ["OBJECTIVES", "MVAEObjective", "beta_at", "free_bits_kl", "mvae_subsets", "subset_elbo"]
