"""Collapse checks: findings, with remedies, when a run's latent is unused or y is predicted at chance.

A weak-supervision study asks whether unpaired data help; a model whose posterior ignores its
input (KL ≈ 0, no active unit) or whose predictions sit at chance cannot answer that, and the
tool must say so rather than draw a curve. The checks take plain numbers (from
:mod:`~mvae_cli.evaluate.latent`, the accuracy tally and :mod:`~mvae_cli.evaluate.baseline`),
so ``train``, ``eval`` and the sweep summary share them; the library returns
:class:`Finding`\\ s and the lines that say them, and the CLI prints them: one line per kind of
finding (:func:`grouped_lines`, every posterior or modality it concerns named on it) and each
remedy once (:func:`remedy_lines`), however many findings call for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

# A posterior whose KL to the prior is below this (nats, summed over units) carries next to no
# information about its input.
KL_COLLAPSED = 0.1
# Accuracy within this of chance counts as "at chance" (test sets of ~1,000 examples put the
# standard error of an accuracy near 0.015).
CHANCE_MARGIN = 0.02

# A probe this far above chance says the code carries the class.
ALIGNED_MARGIN = 0.2
PAIRED_REMEDY = "`paired_repeat=10`"

REMEDIES = ("a β target below 1 (`beta=0.5`), free bits, a KL floor in nats per latent unit "
            "(`free_bits=0.25`), more weight on the predicted modality (λ: `model.weights.<name>=50`), "
            "or a likelihood that does not drown the others (`model.likelihoods.<image>=continuous-bernoulli`)")
ALIGNMENT = ("more paired rows align the unimodal codes: a higher supervision level, the paired rows "
             f"shown more often ({PAIRED_REMEDY}, or a share of every batch: `paired_share=0.2`), or cross "
             "reconstruction on them (mvae, mvae-q: `objective.cross.<x>:<y>=1`)")

INACTIVE, CHANCE, UNALIGNED, BELOW_BASELINE = "inactive", "chance", "unaligned", "below_baseline"
# kind -> (what the grouped line says before the names, the remedy it calls for or None)
KINDS = {
    INACTIVE: ("inactive latent (posterior collapse: it ignores its input)", REMEDIES),
    CHANCE: ("predicted from {x} at chance (nothing usable learnt)", REMEDIES),
    UNALIGNED: ("predicted from {x} at chance, though a linear probe reads the class from q(z | {x}) "
                "(the unimodal codes are not aligned)", ALIGNMENT),
    BELOW_BASELINE: ("predicted from {x} worse than by a classifier trained on the paired rows alone", None),
}
REMEDY_NAMES = {REMEDIES: "against collapse and chance", ALIGNMENT: "to align the codes"}


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a run (or a grid point, over its seeds).

    Attributes:
        kind: one of :data:`KINDS`.
        subject: what it is about: a posterior (``q(z | shape)``) or a predicted modality (``shape``).
        figures: its numbers in a few words (``0 of 16 units, KL 0.001``), shown for one run.
        x: the modality predicted from (accuracy findings).
        where: the grid point (its values), shown instead of the numbers in a sweep's lines.
        sentence: the finding said in full (``eval.json``'s ``latent_warnings`` adds its remedy: :meth:`with_remedy`).
    """

    kind: str
    subject: str
    figures: str
    sentence: str
    x: str = "x"
    where: str = ""

    def at(self, where: str) -> "Finding":
        return Finding(self.kind, self.subject, self.figures, self.sentence, self.x, where)

    def with_remedy(self) -> str:
        """The sentence and its remedy, as ``eval.json``'s ``latent_warnings`` has always kept them."""
        remedy = KINDS[self.kind][1]
        return f"{self.sentence}; remedies: {remedy}" if remedy else self.sentence


def latent_findings(name: str, active: int | float, latent_dim: int, kl: float) -> list[Finding]:
    """A finding when the posterior ``name`` (e.g. ``q(z | image)``) has no active unit or a KL near 0.

    Args:
        name: how to call the posterior in the message.
        active: active units (:func:`~mvae_cli.evaluate.latent.active_units`; a mean over seeds may be fractional).
        latent_dim: D.
        kl: mean KL to the prior in nats.
    """
    if active == 0 or kl < KL_COLLAPSED:
        return [Finding(INACTIVE, name, f"{active:g} of {latent_dim} units, KL {kl:.2g}",
                        f"the latent is inactive: {name} has {active:g} of {latent_dim} active units and KL "
                        f"{kl:.3g} nats to the prior, so it ignores its input (posterior collapse)")]
    return []


def accuracy_findings(accuracy: Mapping[str, float], chance: Mapping[str, float],
                      baseline: Mapping[str, float] | None = None, x: str = "x",
                      probe: Mapping[str, float] | None = None, probed: str | None = None) -> list[Finding]:
    """Findings for each predicted modality at chance, and for one below its paired-only baseline.

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
    found = []
    read = (probe or {}).get(x)
    for name, value in accuracy.items():
        if name == "mean" or "/" in name or name not in chance:
            continue
        at_chance = value <= chance[name] + CHANCE_MARGIN
        if at_chance and name == probed and read is not None and read > chance[name] + ALIGNED_MARGIN:
            found.append(Finding(UNALIGNED, name, f"{value:.3f}, chance {chance[name]:.3f}, probe {read:.3f}",
                                 f"{name} is predicted from {x} at chance ({value:.3f}; chance {chance[name]:.3f}), "
                                 f"yet a linear probe reads the class from the mean of q(z | {x}) at {read:.3f}: the "
                                 f"code of {x} carries it, but p({name} | z) reads {name} in another part of the "
                                 f"latent space (the unimodal codes are not aligned)", x))
        elif at_chance:
            found.append(Finding(CHANCE, name, f"{value:.3f}, chance {chance[name]:.3f}",
                                 f"{name} is predicted from {x} at chance ({value:.3f}; chance {chance[name]:.3f}): "
                                 f"the model has learnt nothing usable about {name}", x))
        elif baseline and name in baseline and value < baseline[name] - CHANCE_MARGIN:
            found.append(Finding(BELOW_BASELINE, name, f"{value:.3f} vs {baseline[name]:.3f}",
                                 f"{name} is predicted from {x} worse ({value:.3f}) than by a classifier trained on "
                                 f"the paired rows alone ({baseline[name]:.3f}): the multimodal model does not beat "
                                 f"its paired-only baseline", x))
    return found


def grouped_lines(findings: Iterable[Finding]) -> list[str]:
    """One line per kind of finding, naming each subject once: with its numbers for one run
    (``shape 0.351, chance 0.348; colour …``), with the grid points it holds at in a sweep
    (``shape [0.01, 0.1]; colour [0.01]``). In the order of :data:`KINDS`."""
    by_kind: dict[tuple[str, str], dict[str, list[Finding]]] = {}
    for f in findings:
        by_kind.setdefault((f.kind, f.x), {}).setdefault(f.subject, []).append(f)
    lines = []
    for kind in KINDS:
        for (k, x), subjects in by_kind.items():
            if k != kind:
                continue
            named = []
            for subject, items in subjects.items():
                points = [f.where for f in items if f.where]
                named.append(f"{subject} [{', '.join(points)}]" if points else f"{subject} ({items[0].figures})")
            lines.append(f"{KINDS[kind][0].format(x=x)}: {'; '.join(named)}")
    return lines


def remedy_lines(findings: Iterable[Finding]) -> list[str]:
    """Each remedy the findings call for, once, after what it is for (``against collapse and chance: …``)."""
    remedies = []
    for f in findings:
        remedy = KINDS[f.kind][1]
        if remedy and remedy not in remedies:
            remedies.append(remedy)
    return [f"{REMEDY_NAMES[r]}: {r}" for r in remedies]
