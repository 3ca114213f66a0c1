"""Which points of a sweep train together as one stack (:mod:`mvae_cli.engine.stack`).

Points whose recipes differ only in what the runs are trained on (seed, supervision or keep-prob
level, β, epochs) share one stack key; each such group (of one epoch length, :func:`epoch_key`)
is one unit of work, trained in one process as one stacked model. A group is cut into pieces so that ``--jobs`` processes each get
one, and so that a piece fits the memory budget; a point whose recipe or model does not stack is a
unit of its own, trained alone as before.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from mvae_cli.data.format import read_dataset
from mvae_cli.engine.device import memory_budget, select_device
from mvae_cli.engine.run import build_model
from mvae_cli.engine.stack import stack_key, stack_reason
from mvae_cli.recipe import Recipe

BYTES = 4  # float32
ROWS_PER_EXAMPLE = 8  # (example, subset) rows a step decodes per example, generously (the MVAE's 1 + M + k)
MEMORY_FRACTION = 0.5  # of free memory (GPU) or physical memory (CPU) that one stack may plan on


def run_bytes(recipe: Recipe, model) -> int:
    """A generous estimate of one run's share of a stack's memory: its parameters with their gradients,
    Adam's two moments and the run's own copies (×6), and a step's activations (every layer's outputs
    for ``ROWS_PER_EXAMPLE`` rows per example, kept for the backward, ×3)."""
    params = sum(p.numel() for p in model.parameters())
    widths = sum(m.out_features for m in model.modules() if hasattr(m, "out_features"))
    return BYTES * (6 * params + 3 * recipe.batch_size * ROWS_PER_EXAMPLE * widths)


def epoch_key(recipe: Recipe) -> tuple:
    """What sets a run's epoch length besides the dataset: runs that differ in it train as separate
    stacks (the engine stacks runs of one epoch length, for bit-for-bit resume), so a unit holds only
    runs of one key. Keep-prob masks drop different rows; with ``paired_share`` or ``paired_repeat``
    the paired rows a level holds set the epoch."""
    pairs_shape_epoch = recipe.paired_share is not None or recipe.paired_repeat > 1
    return (recipe.keep_prob, recipe.paired_share, recipe.paired_repeat,
            recipe.supervision if pairs_shape_epoch else None)


def _reason_and_size(recipe: Recipe) -> tuple[str | None, int]:
    why = stack_reason(recipe)
    if why is not None:
        return why, 0
    dataset = read_dataset(recipe.data.resolved_path())
    try:
        model = build_model(recipe, dataset.specs)
    finally:
        dataset.close()
    return stack_reason(recipe, model), run_bytes(recipe, model)


def stack_units(items: Sequence, recipe_of: Callable[[object], Recipe], jobs: int = 1,
                note: Callable[[str], None] = lambda text: None, budget: int | None = None) -> list[list]:
    """``items`` (points to train) cut into units: the items of one stack key together, pieces of at
    most ``ceil(len(items) / jobs)`` and of the memory ``budget`` (bytes; default a fraction of the
    device's), every item of a recipe that does not stack a unit of its own. ``note`` gets one line per
    stack and per split."""
    groups: dict[str, list] = {}
    alone: list[list] = []
    sizes: dict[str, int] = {}
    reasons: dict[str, str | None] = {}
    for item in items:
        recipe = recipe_of(item)
        key = stack_key(recipe)
        if key not in reasons:
            reasons[key], sizes[key] = _reason_and_size(recipe)
        if reasons[key] is None:
            groups.setdefault((key, epoch_key(recipe)), []).append(item)
        else:
            alone.append([item])
    units = []
    per_job = max(1, math.ceil(len(items) / max(1, jobs)))
    for (key, _), group in groups.items():
        if len(group) == 1:
            units.append(group)
            continue
        room = budget if budget is not None else memory_budget(select_device(recipe_of(group[0]).device), MEMORY_FRACTION)
        fits = max(1, room // max(1, sizes[key]))
        size = min(per_job, fits, len(group))
        pieces = [group[a:a + size] for a in range(0, len(group), size)]
        if fits < min(per_job, len(group)):
            note(f"a stack of {len(group)} runs needs about {len(group) * sizes[key] / 2**30:.1f} GiB, more than the "
                 f"{room / 2**30:.1f} GiB budget: split into {len(pieces)} stacks of at most {size}")
        for piece in pieces:
            if len(piece) > 1:
                note(f"{len(piece)} runs train together as one stacked model (--no-stack: one by one)")
        units.extend(pieces)
    if alone:
        reason = reasons[stack_key(recipe_of(alone[0][0]))]
        note(f"{len(alone)} point{'s' if len(alone) > 1 else ''} train one by one: {reason}")
    return units + alone
