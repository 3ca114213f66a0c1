"""What an evaluation of a model computes, decided once from the model before anything is computed.

For the scored modality x and the conditioning ones y, the proposals are q(z|x), q(z|x,y) and
q(z|y) (Eq. 7), each that the model defines (``model.posterior_reason``); the targets are {x}
and {x} ∪ y, each that it generates (``model.generation_reason``). Every figure of
``eval.json``'s three families under every proposal is then either read from one
(proposal, target) pair of log weights or not defined, with its reason:

==================  =============================================  ===========================================
family              a joint model p(x, y | z)                       a conditional decoder p(x | z, y) (CVAE)
==================  =============================================  ===========================================
``log_px``          target {x}                                      not defined: the model has no p(x)
``log_pxy``         target {x} ∪ y                                  target {x} ∪ y (y is not generated: undefined)
``log_px_given_y``  target {x} ∪ y less log p̂(y) (Eq. 7)           target {x}: log p(x | y) itself
==================  =============================================  ===========================================

A figure under a proposal the model does not define is not defined for that reason first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from mvae_cli.errors import UserError
from mvae_cli.evaluate.accuracy import AccuracyTally

FAMILIES = ("log_px", "log_pxy", "log_px_given_y")
VARIANCE = {"log_px": "marginal", "log_pxy": "joint", "log_px_given_y": "conditional"}  # var_log_w's keys


def resolve_modalities(specs, x: str | None, y: Sequence[str] | None) -> tuple[str, list[str]]:
    """x (default: the first image modality, else the first) and y (default: every other modality).

    Raises:
        UserError: an unknown name, x also in y, or no modality left for y.
    """
    names = [s.name for s in specs]
    known = ", ".join(names)
    if x is None:
        x = next((s.name for s in specs if s.kind == "image"), names[0])
    elif x not in names:
        raise UserError(f"--x: unknown modality {x!r} (known: {known})")
    if y is None:
        y = [n for n in names if n != x]
    else:
        y = list(dict.fromkeys(y))
        for name in y:
            if name not in names:
                raise UserError(f"--y: unknown modality {name!r} (known: {known})")
        if x in y:
            raise UserError(f"--y must not contain x ({x!r}); y is conditioned on, x is scored")
    if not y:
        raise UserError(f"nothing to condition on: y is empty (modalities: {known}); eval needs two or more")
    return x, y


@dataclass(frozen=True)
class Figure:
    """One figure of ``eval.json`` (``family`` under ``proposal``): read from the log weights of
    proposal ``at[0]`` and target ``at[1]`` of the plan, or not defined (``at`` None) for ``reason``."""

    family: str  # one of FAMILIES
    proposal: str  # the proposal's name: modality names joined by "+"
    at: tuple[int, int] | None  # (index in EvalPlan.proposals, index in EvalPlan.targets)
    reason: str | None
    less_log_py: bool = False  # Eq. 7: log p(x | y) = log p(x, y) − log p̂(y)

    @property
    def path(self) -> str:
        """Its key in ``eval_examples.npz`` and ``not_defined``: ``log_pxy.image+label``."""
        return f"{self.family}.{self.proposal}"


@dataclass(frozen=True)
class EvalPlan:
    """What to compute for one model, x and y, and why each figure left out is left out.

    Attributes:
        x, y: the scored modality and the conditioning ones.
        proposals: ``{name: given modalities}`` of the proposals the model defines, in eval.json's order.
        targets: the modality sets whose log weights are estimated under every proposal.
        figures: every figure of the three families under every proposal (defined or not), in
            the order eval.json records them.
        predicted: the y modalities whose accuracy is measured from the mean of q(z|x).
        accuracy_reason: why ``accuracy`` is not defined (y has labels the model cannot predict); None if it is.
    """

    x: str
    y: list[str]
    proposals: dict[str, list[str]]
    targets: list[list[str]]
    figures: list[Figure]
    predicted: list[str]
    accuracy_reason: str | None

    @property
    def decoded(self) -> list[str]:
        """The modalities the targets decode, x first."""
        scored = [self.x, *self.y]
        return sorted({m for target in self.targets for m in target}, key=scored.index)

    @property
    def estimates(self) -> bool:
        """Whether any likelihood figure is defined (so importance sampling runs at all)."""
        return any(f.at is not None for f in self.figures)

    @property
    def needs_log_py(self) -> bool:
        """Whether a figure needs log p̂(y) from prior samples."""
        return any(f.at is not None and f.less_log_py for f in self.figures)

    @property
    def joint(self) -> int | None:
        """The index of the target {x} ∪ y, where estimated."""
        scored = [self.x, *self.y]
        return self.targets.index(scored) if scored in self.targets else None


def _family_targets(model, x: str, y: list[str]) -> dict[str, tuple[list[str], str | None, bool]]:
    """``{family: (target, why the model leaves it undefined, less log p̂(y))}``, in the order
    eval.json records a proposal's figures (see the module docstring's table)."""
    scored = [x, *y]
    if model.conditional:  # p(x | z, y): the target {x} is log p(x | y) itself
        return {"log_px_given_y": ([x], model.generation_reason([x]), False),
                "log_px": ([x], f"{model.model_name} models p({x} | {', '.join(y)}), not p({x})", False),
                "log_pxy": (scored, model.generation_reason(scored), False)}
    joint_reason = model.generation_reason(scored)
    return {"log_px": ([x], model.generation_reason([x]), False),
            "log_pxy": (scored, joint_reason, False),
            "log_px_given_y": (scored, joint_reason or model.generation_reason(y), True)}


def plan_evaluation(model, x: str | None = None, y: Sequence[str] | None = None) -> EvalPlan:
    """The plan of an evaluation of ``model`` (x, y resolved by :func:`resolve_modalities`).

    Raises:
        UserError: an unknown modality, x also in y, or nothing to condition on.
    """
    x, y = resolve_modalities(model.specs, x, y)
    scored = [x, *y]
    candidates = {"+".join(given): given for given in ([x], scored, y)}  # q(z|x), q(z|x,y), q(z|y)
    reasons = {name: model.posterior_reason(given) for name, given in candidates.items()}
    proposals = {name: candidates[name] for name, reason in reasons.items() if reason is None}
    targets = [target for target in ([x], scored) if model.generation_reason(target) is None]
    families = _family_targets(model, x, y)
    figures = []
    for name, reason in reasons.items():
        for family, (target, undefined, less_log_py) in families.items():
            why = reason or undefined
            at = None if why else (list(proposals).index(name), targets.index(target))
            figures.append(Figure(family, name, at, why, less_log_py))
    predictable = [s.name for s in model.specs if s.name in y and s.kind in AccuracyTally.KINDS]
    x_reason = model.posterior_reason([x])
    predicted = [] if x_reason else [n for n in predictable if model.generation_reason([n]) is None]
    accuracy_reason = (x_reason or model.generation_reason(predictable)) if predictable and not predicted else None
    return EvalPlan(x, y, proposals, targets, figures, predicted, accuracy_reason)
