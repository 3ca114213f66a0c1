"""Training objectives over the shared networks: ``objective(model, batch, step) -> (loss, terms)``."""

from mvae_cli.objectives.elbo import beta_at, subset_elbo
from mvae_cli.objectives.mvae import MVAEObjective, mvae_subsets

OBJECTIVES = {"mvae": MVAEObjective}

__all__ = ["OBJECTIVES", "MVAEObjective", "beta_at", "mvae_subsets", "subset_elbo"]
