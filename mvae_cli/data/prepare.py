"""Build a prepared dataset file: the arrays of a registry dataset plus its training masks.

Used by ``mvae prepare``, by ``mvae train`` (shapes on the fly) and by ``mvae sweep``
(prepare when missing). Everything a user can get wrong is checked before anything
is generated, downloaded or written.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterable

from mvae_cli.data.format import SPLITS, create_dataset_file
from mvae_cli.data.masks import build_mask, mask_name
from mvae_cli.data.registry import get_dataset
from mvae_cli.errors import UserError

ProgressFn = Callable[[str, int, int], None]
"""``progress(task, done, total)``: called as long steps advance; the CLI draws the bars."""


def plan_masks(supervision: Iterable[float] = (), keep_prob: Iterable[float] = ()) -> list[tuple[str, float]]:
    """Check mask levels and list them once each as ``(kind, value)``.

    Args:
        supervision: paired fractions, each in [0, 1].
        keep_prob: keep probabilities, each in (0, 1].

    Raises:
        UserError: naming the first value outside its range.
    """
    plan: dict[str, tuple[str, float]] = {}
    for kind, values, option, low_open in (("supervision", supervision, "--supervision", False),
                                           ("keep_prob", keep_prob, "--keep-prob", True)):
        for value in values:
            value = float(value)
            ok = math.isfinite(value) and ((0 < value <= 1) if low_open else (0 <= value <= 1))
            if not ok:
                allowed = "(0, 1]" if low_open else "[0, 1]"
                raise UserError(f"{option} value {value:g} is outside the allowed range {allowed}")
            # Names are the dedup key: 0.1 and 0.10 are one mask.
            plan.setdefault(mask_name(kind, value, 0), (kind, value))
    return list(plan.values())


def resolve_sizes(default: dict[str, int], sizes: dict[str, int] | None) -> dict[str, int]:
    """Merge requested split sizes over a dataset's defaults; each must be at least 1.

    Raises:
        UserError: a size below 1.
        ValueError: a key that is not a split (a caller's bug).
    """
    sizes = {k: v for k, v in (sizes or {}).items() if v is not None}
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; splits are {SPLITS}")
    for split, n in sizes.items():
        if int(n) != n or n < 1:
            raise UserError(f"--n-{split} must be a whole number of at least 1, got {n}")
    return {**default, **{k: int(v) for k, v in sizes.items()}}


def prepare_dataset(
    name: str,
    out: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    seed: int = 0,
    supervision: Iterable[float] = (),
    keep_prob: Iterable[float] = (),
    force: bool = False,
    sizes: dict[str, int] | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Build dataset ``name`` into the HDF5 file ``out`` (DESIGN.md layout), atomically.

    Masks ``bool [N_train, M]`` are stored as ``mask_name(kind, value, seed)`` and built
    by ``masks.build_mask`` from ``seed``: one per supervision level (kind
    ``supervision``) and one per keep probability (kind ``keep_prob``).

    Args:
        name: a registry name (``shapes``, ``mnist``, ``fashion-mnist``, ``binary-mnist``).
        out: the file to write.
        source: a folder of source files (MNIST family); None downloads them.
        seed: seeds the generated data (shapes) and every mask; at least 0.
        supervision: paired fractions f in [0, 1].
        keep_prob: keep probabilities p in (0, 1].
        force: replace an existing ``out``; without it an existing file is never touched.
        sizes: ``{split: n}`` overriding the dataset's sizes (MNIST family: the first n).
        progress: ``progress(task, done, total)``.

    Returns:
        ``out`` as a Path.

    Raises:
        UserError: unknown dataset, a level out of range, a bad size or seed, an existing
            ``out`` without ``force``, a missing or malformed source file.
    """
    entry = get_dataset(name)
    plan = plan_masks(supervision, keep_prob)
    sizes = resolve_sizes(entry.default_sizes, sizes)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise UserError(f"--seed must be a whole number of at least 0, got {seed}")
    seed = int(seed)
    if source is not None and not entry.uses_source:
        raise UserError(f"{name} is generated, not read: it takes no --source")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out} is a folder; --out takes a file path such as data/{name}.h5")
    if out.exists() and not force:  # checked again on write; this saves a wasted build
        raise UserError(f"{out} already exists; pass --force to overwrite it")

    splits = entry.build(seed=seed, sizes=sizes, source=source, progress=progress)

    specs = list(entry.specs)
    total = len(SPLITS) * len(specs) + len(plan)
    done = 0
    with create_dataset_file(out, name, specs, seed, force=force) as writer:
        for split in SPLITS:
            for spec in specs:
                writer.write_array(split, spec.name, splits[split][spec.name])
                done += 1
                if progress is not None:
                    progress("writing", done, total)
        n_train = splits["train"][specs[0].name].shape[0]
        for kind, value in plan:
            mask = build_mask(kind, value, n_train, len(specs), seed)
            writer.write_mask(mask_name(kind, value, seed), mask, kind, value, seed)
            done += 1
            if progress is not None:
                progress("writing", done, total)
    return out
