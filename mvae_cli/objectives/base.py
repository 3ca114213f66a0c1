"""What every training objective shares: β annealed towards its target, the validation bound, the
refusal of free bits where the posterior has no KL per unit, and the per-modality metrics.

An objective is called as ``objective(model, batch, step) -> (loss, terms)``; ``bound(model, batch)
-> [B]`` is its own per-example bound at β = 1, which validation uses to pick ``best.pt``. A
subclass writes :meth:`Objective.per_example`, and :meth:`Objective.loss` where its loss is not
minus the mean of that (the MVAE sums over subset rows; the MMVAE's DReG surrogate).

Each subclass names the recipe's ``objective.*`` keys it takes in :attr:`Objective.settings` and
takes them as keyword arguments; the model table (:mod:`mvae_cli.zoo`) passes a model's objective
exactly those, so a setting meant for another model never reaches it unnoticed.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from mvae_cli.errors import UserError
from mvae_cli.model.protocol import Model
from mvae_cli.model.rows import as_device, index, run_of, run_starts
from mvae_cli.objectives.regularize import beta_at


class Objective:
    """β annealing, the validation bound and the per-modality metrics of one objective.

    Args:
        anneal_steps: optimiser steps over which β rises linearly from 0 to ``beta``.
        beta: the β target (1 in the papers; below 1 against posterior collapse).
        free_bits: a KL floor in nats per latent unit (:func:`~mvae_cli.objectives.regularize.free_bits_kl`);
            refused where :attr:`gaussian_kl` is False.
    """

    settings: ClassVar[tuple[str, ...]] = ()  # the recipe's objective.* keys this objective takes
    # True where :meth:`loss` takes a stacked batch (mvae_cli.model.rows) and returns each run's loss and terms [N]
    stacks: ClassVar[bool] = False
    gaussian_kl: ClassVar[bool] = True  # a Gaussian posterior with a KL per unit (free bits possible)

    def __init__(self, *, anneal_steps: int = 0, beta: float = 1.0, free_bits: float = 0.0):
        if free_bits > 0 and not self.gaussian_kl:
            raise UserError("free_bits needs a Gaussian posterior (a KL per latent unit); "
                            "this model's posterior is a mixture: use beta below 1 instead")
        self.anneal_steps, self.beta_target, self.free_bits = anneal_steps, beta, free_bits

    def per_example(self, model: Model, batch: dict[str, torch.Tensor], beta: float,
                    free_bits: float = 0.0) -> tuple[torch.Tensor, dict]:
        """The objective of each example ``[B]`` at ``beta`` (its KL floored at ``free_bits`` nats
        per unit) and its terms for the metrics."""
        raise NotImplementedError

    def loss(self, model: Model, batch: dict[str, torch.Tensor], beta: float) -> tuple[torch.Tensor, dict]:
        """The training loss at ``beta`` (minus the mean of :meth:`per_example`) and its terms; for a
        stacked batch each run's loss ``[N]``."""
        values, terms = self.per_example(model, batch, beta, self.free_bits)
        if run_starts(batch) is None:
            return -values.mean(), terms
        examples = RowTerms(batch, np.arange(values.shape[0]), values.device)
        return -examples.per_example(values), terms

    def bound(self, model: Model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The objective's bound at β = 1 and without a KL floor, per example: ``[B]`` (validation)."""
        return self.per_example(model, batch, 1.0)[0]

    def __call__(self, model: Model, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict]:
        beta = beta_at(step, self.anneal_steps, self.beta_target)
        loss, terms = self.loss(model, batch, beta)
        return loss, {"beta": beta, **terms}

    @staticmethod
    def log_lik_terms(model: Model, shown: torch.Tensor, log_lik: torch.Tensor) -> dict[str, torch.Tensor]:
        """``log_lik_<name>``: the mean of ``log_lik [R, M]`` over the rows ``shown bool [R, M]``
        marks for each modality (0 where no row has it); ``shown`` on the host or the device."""
        if isinstance(shown, np.ndarray):
            shown = as_device(shown, log_lik.device)
        return {f"log_lik_{name}": log_lik[:, j].detach().masked_fill(~shown[:, j], 0).sum()
                / shown[:, j].sum().clamp(min=1) for j, name in enumerate(model.names)}


def per_example_sum(values: torch.Tensor, example: torch.Tensor, n: int) -> torch.Tensor:
    """Σ of ``values [R]`` over each example's rows: ``[n]``."""
    return values.new_zeros(n).index_add(0, example, values)


def per_example_mean(values: torch.Tensor, example: torch.Tensor, n: int) -> torch.Tensor:
    """Mean of ``values [R]`` over each example's rows: ``[n]`` (0 for an example with none)."""
    count = values.new_zeros(n).index_add(0, example, torch.ones_like(values))
    return per_example_sum(values, example, n) / count.clamp(min=1)


class RowTerms:
    """The metrics (and the loss) of an objective's rows, for one run or for each run of a stack.

    ``examples`` (host ``int [R]``) are the examples of the rows being reduced. For a batch of one
    run every reduction is a scalar, computed as it always was; for a stacked batch
    (:mod:`~mvae_cli.model.rows`) it is ``[N]``, one value per run over that run's rows and
    examples, so each run of a stack reports what it would report alone.
    """

    def __init__(self, batch: dict, examples: np.ndarray, device):
        starts = run_starts(batch)
        self.stacked = starts is not None
        self.n_examples = batch["mask"].shape[0]
        if not self.stacked:
            return
        self.n = starts.size - 1
        self.runs = run_of(batch, examples)
        self.device = device
        self._index = index(self.runs, device)
        self.sizes = torch.from_numpy(np.diff(starts).astype(np.float32)).to(device)  # examples per run [N]
        self.counts = np.bincount(self.runs, minlength=self.n)

    def _sums(self, values: torch.Tensor) -> torch.Tensor:
        return values.new_zeros(self.n).index_add(0, self._index, values)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values [R]`` over the rows (each run's rows)."""
        if not self.stacked:
            return values.mean()
        counts = torch.from_numpy(np.maximum(self.counts, 1).astype(np.float32)).to(self.device)
        return self._sums(values.detach()) / counts

    def per_example(self, values: torch.Tensor) -> torch.Tensor:
        """Σ ``values [R]`` over the rows divided by the examples of the batch (of each run)."""
        if not self.stacked:
            return values.sum() / self.n_examples
        return self._sums(values) / self.sizes

    def per_example_by(self, values: torch.Tensor, groups: np.ndarray, n_groups: int) -> torch.Tensor:
        """:meth:`per_example` of each group of rows (``groups int [R]``, host): ``[G]``, or ``[N, G]``."""
        if not self.stacked:
            return values.new_zeros(n_groups).index_add(0, index(groups, values.device), values) / self.n_examples
        cell = index(self.runs * n_groups + groups, self.device)
        sums = values.new_zeros(self.n * n_groups).index_add(0, cell, values).view(self.n, n_groups)
        return sums / self.sizes.unsqueeze(1)

    def log_lik_terms(self, model: Model, shown: np.ndarray, log_lik: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`Objective.log_lik_terms`, of each run for a stack."""
        if not self.stacked:
            return Objective.log_lik_terms(model, shown, log_lik)
        shown = np.asarray(shown, dtype=bool)
        values = log_lik.detach().masked_fill(~as_device(shown, log_lik.device), 0)  # [R, M]
        sums = values.new_zeros(self.n, values.shape[1]).index_add(0, self._index, values)
        counts = np.zeros((self.n, shown.shape[1]))
        np.add.at(counts, self.runs, shown)
        counts = torch.from_numpy(np.maximum(counts, 1).astype(np.float32)).to(log_lik.device)
        return {f"log_lik_{name}": sums[:, j] / counts[:, j] for j, name in enumerate(model.names)}
