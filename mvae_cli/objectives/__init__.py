"""Training objectives over the shared networks: ``objective(model, batch, step) -> (loss, terms)``,
each with ``bound(model, batch) -> [B]``, its own validation bound, all on one base
(:class:`~mvae_cli.objectives.base.Objective`). The model table (:mod:`mvae_cli.zoo`) says which
model trains with which."""

from mvae_cli.objectives.base import Objective
from mvae_cli.objectives.elbo import decode_log_lik, subset_elbo
from mvae_cli.objectives.mixture import MMVAEObjective, MoPoEObjective
from mvae_cli.objectives.mmjsd import MMJSDObjective
from mvae_cli.objectives.mvae import MVAEObjective, default_k, mvae_subsets
from mvae_cli.objectives.paired import BiVCCAObjective, CVAEObjective, JMVAEObjective, VAEObjective
from mvae_cli.objectives.regularize import beta_at, free_bits_kl

__all__ = ["BiVCCAObjective", "CVAEObjective", "JMVAEObjective", "MMJSDObjective", "MMVAEObjective", "MVAEObjective",
           "MoPoEObjective", "Objective", "VAEObjective", "beta_at", "decode_log_lik", "default_k", "free_bits_kl",
           "mvae_subsets", "subset_elbo"]
