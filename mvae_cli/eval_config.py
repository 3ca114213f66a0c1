"""The settings of an evaluation, in one place: a recipe's ``eval`` section and ``mvae eval``'s options.

:class:`EvalConfig` holds every setting that changes what an evaluation computes, with its
default; the recipe validates it (:func:`mvae_cli.recipe.check_eval`: its choices and ranges
beside every other key's), and ``mvae eval`` reads its option defaults from it. How an
evaluation runs (device, memory, batch size, progress) is not a setting: the same figures come
out either way. This module imports nothing heavy, so the CLI reads the defaults at start-up.

``eval.json`` records the settings it was computed with (all but :data:`NOT_RECORDED`), so a
sweep can tell an evaluation that is current from one that is stale (:func:`stale_settings`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping


@dataclass
class EvalConfig:
    particles: int = 1000  # K importance samples per example and proposal
    prior_samples: int = 5000  # S samples of p(z) for log p(y) in log p(x|y) = log p(x,y) − log p(y)
    split: str = "test"  # test | valid
    checkpoint: str = "best"  # best (validation ELBO) | last
    x: str | None = None  # the scored modality; default: the first image modality
    y: list[str] | None = None  # the conditioning modalities; default: every other modality
    limit: int | None = None  # evaluate the first N examples only
    seed: int = 0  # seeds the particles; the figures do not depend on chunk or batch size
    baseline: bool = True  # chance and a classifier trained on the paired rows only, beside the accuracy
    precision: str = "fp32"  # fp32 | bf16 (autocast of the networks; likelihoods stay fp32)


# Settings eval.json does not record: it keeps n_examples rather than limit, and its "baseline"
# is the baseline's figures, not the switch.
NOT_RECORDED = ("limit", "seed", "baseline")
RECORDED_SETTINGS = tuple(f.name for f in dataclasses.fields(EvalConfig) if f.name not in NOT_RECORDED)
# Recorded only when not the default, so the eval.json of an fp32 evaluation keeps the keys it always had.
UNLESS_DEFAULT = ("precision",)


def recorded_value(config: EvalConfig, name: str):
    """How eval.json records setting ``name`` of ``config`` (y without repeats, as evaluated)."""
    value = getattr(config, name)
    return list(dict.fromkeys(value)) if name == "y" and value is not None else value


def stale_settings(evaluation: Mapping, config: EvalConfig) -> list[str]:
    """The recorded settings of ``config`` that an ``eval.json`` mapping was not computed with.

    A setting the file lacks reads as its default (an fp32 evaluation leaves ``precision`` out,
    and files written before a setting existed lack it), so old evaluations stay current. x and
    y left to their defaults (None) are not compared: the defaults follow from the run's modalities.

    Returns:
        The names, in :class:`EvalConfig`'s order; empty when ``evaluation`` is current.
    """
    defaults = EvalConfig()
    stale = []
    for name in RECORDED_SETTINGS:
        wanted = recorded_value(config, name)
        if wanted is None:
            continue
        if evaluation.get(name, getattr(defaults, name)) != wanted:
            stale.append(name)
    return stale
