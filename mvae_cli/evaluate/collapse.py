"""Collapse checks: warnings, with remedies, when a run's latent is unused or y is predicted at chance.

A weak-supervision study asks whether unpaired data help; a model whose posterior ignores its
input (KL ≈ 0, no active unit) or whose predictions sit at chance cannot answer that, and the
tool must say so rather than draw a curve. The checks take plain numbers (from
:mod:`~mvae_cli.evaluate.latent`, the accuracy tally and :mod:`~mvae_cli.evaluate.baseline`),
so ``train``, ``eval`` and the sweep summary share them; the library returns the lines and the
CLI prints them.
"""

from __future__ import annotations

from typing import Mapping

# A posterior whose KL to the prior is below this (nats, summed over units) carries next to no
# information about its input.
KL_COLLAPSED = 0.1
# Accuracy within this of chance counts as "at chance" (test sets of ~1,000 examples put the
# standard error of an accuracy near 0.015).
CHANCE_MARGIN = 0.02

# A probe this far above chance says the code carries the class.
ALIGNED_MARGIN = 0.2
PAIRED_REMEDY = "`paired_repeat=10`"

REMEDIES = ("remedies: a β target below 1 (`beta=0.5`), free bits, a KL floor in nats per latent unit "
            "(`free_bits=0.25`), more weight on the predicted modality (λ: `model.weights.<name>=50`), "
            "or a likelihood that does not drown the others (`model.likelihoods.<image>=continuous-bernoulli`)")


def latent_warnings(name: str, active: int, latent_dim: int, kl: float) -> list[str]:
    """A warning when the posterior ``name`` (e.g. ``q(z | image)``) has no active unit or a KL near 0.

    Args:
        name: how to call the posterior in the message.
        active: active units (:func:`~mvae_cli.evaluate.latent.active_units`).
        latent_dim: D.
        kl: mean KL to the prior in nats.
    """
    if active == 0 or kl < KL_COLLAPSED:
        return [f"the latent is inactive: {name} has {active} of {latent_dim} active units and KL {kl:.3g} nats "
                f"to the prior, so it ignores its input (posterior collapse); {REMEDIES}"]
    return []


def accuracy_warnings(accuracy: Mapping[str, float], chance: Mapping[str, float],
                      baseline: Mapping[str, float] | None = None, x: str = "x",
                      probe: Mapping[str, float] | None = None, probed: str | None = None) -> list[str]:
    """Warnings for each predicted modality at chance, and for one below its paired-only baseline.

    A prediction at chance has two causes with different cures. Either the code of ``x`` carries
    nothing about the target (the remedies against collapse), or it does but the target's decoder
    reads the target elsewhere in the latent space: the unimodal codes are not aligned, which only
    more paired rows fix. A linear probe on the mean of q(z | x) that reads the class well above
    chance tells the second from the first.

    Args:
        accuracy: ``{modality: accuracy}`` of the model (``mean`` and ``name/attribute`` keys ignored).
        chance: ``{modality: accuracy of always predicting the most frequent class}``.
        baseline: ``{modality: accuracy of the classifier trained on the paired rows only}``.
        x: the modality predicted from.
        probe: ``{subset: accuracy of a linear probe reading the class from q(z | subset)}``
            (:mod:`~mvae_cli.evaluate.latent_probe`); its entry for ``x`` is used.
        probed: the modality the probe reads (the class); the probe says nothing of the others.
    """
    lines = []
    read = (probe or {}).get(x)
    for name, value in accuracy.items():
        if name == "mean" or "/" in name or name not in chance:
            continue
        aligned_question = name == probed and read is not None
        if value <= chance[name] + CHANCE_MARGIN and aligned_question and read > chance[name] + ALIGNED_MARGIN:
            lines.append(f"{name} is predicted from {x} at chance ({value:.3f}; chance {chance[name]:.3f}), yet a "
                         f"linear probe reads the class from the mean of q(z | {x}) at {read:.3f}: the code of {x} "
                         f"carries it, but p({name} | z) reads {name} in another part of the latent space (the "
                         f"unimodal codes are not aligned). More paired rows align them: a higher supervision "
                         f"level, or the paired rows shown more often ({PAIRED_REMEDY})")
        elif value <= chance[name] + CHANCE_MARGIN:
            lines.append(f"{name} is predicted from {x} at chance ({value:.3f}; chance {chance[name]:.3f}): "
                         f"the model has learnt nothing usable about {name}; {REMEDIES}")
        elif baseline and name in baseline and value < baseline[name] - CHANCE_MARGIN:
            lines.append(f"{name} is predicted from {x} worse ({value:.3f}) than by a classifier trained on the "
                         f"paired rows alone ({baseline[name]:.3f}): the multimodal model does not beat its "
                         f"paired-only baseline")
    return lines
