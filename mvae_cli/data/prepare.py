"""Build a prepared dataset file: the arrays of a registry dataset plus its training masks.

Used by ``mvae prepare``, by ``mvae train`` (shapes on the fly) and by ``mvae sweep``
(prepare when missing). Everything a user can get wrong is checked before anything
is generated, downloaded or written, except what only reading the data reveals (a
JPEG that does not decode): that error comes while writing, and the atomic write
leaves ``out`` as it was.

Builders return arrays in memory or a :class:`~mvae_cli.data.registry.Built` whose
streamed modalities are written block by block into chunked arrays.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable

from mvae_cli.atomic import check_folder
from mvae_cli.data.format import CLASS_NAMES_ATTR, SPLITS, create_dataset_file
from mvae_cli.data.masks import build_mask, mask_name
from mvae_cli.data.registry import CLASS_NAMES, DATASETS, Built, Stream, get_dataset
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


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}"
        n /= 1024


def check_size(specs, sizes: dict[str, int], out: Path) -> None:
    """Refuse split sizes whose arrays cannot fit, before anything is generated or allocated.

    The estimate is the uint8 arrays of every modality (``specs``; nothing for datasets whose
    modalities the build decides) over every split. Generated data are held in memory while the
    file is written, so the estimate must fit in the available memory and on the disk of ``out``.

    Raises:
        UserError: naming the largest split's option, the estimate and what is available.
    """
    import shutil

    per_example = sum(math.prod(s.shape) for s in specs)
    need = per_example * sum(sizes.values())
    if not need:
        return
    try:
        memory = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        memory = None
    folder = next((p for p in [out.parent, *out.parent.parents] if p.is_dir()), Path("."))
    disk = shutil.disk_usage(folder).free
    largest = max(sizes, key=sizes.get)
    flag = f"--n-{largest} {sizes[largest]:,}"
    if memory is not None and need > memory:
        raise UserError(f"{flag}: the dataset would take about {_human(need)}, more than the {_human(memory)} of "
                        "memory available; ask for fewer examples")
    if need > disk:
        raise UserError(f"{flag}: the dataset would take about {_human(need)}, more than the {_human(disk)} free "
                        f"on the disk of {folder}; ask for fewer examples or write elsewhere")


OPTION_FLAGS = {"source": "--source", "base": "--base", "spec": "--spec", "backgrounds": "--backgrounds"}


def _check_options(entry, source, options: dict[str, object]) -> None:
    """Options a dataset does not take, and those it needs, as UserErrors."""
    if source is not None and not entry.uses_source:
        raise UserError(f"{entry.name} is generated, not read: it takes no --source")
    for option, value in options.items():
        if value is not None and option not in entry.options:
            takers = [e.name for e in DATASETS.values() if option in e.options]
            raise UserError(f"{OPTION_FLAGS[option]} is only for {' and '.join(takers)}, not {entry.name}")
    given = {"source": source, **options}
    missing = [OPTION_FLAGS[r] for r in entry.requires if given.get(r) is None]
    if missing:
        usage = {"transforms": "--base celeba or --base shapes",
                 "custom": "--source FILE (.npz or .h5) and --spec SPEC.yaml"}.get(entry.name, " and ".join(missing))
        raise UserError(f"{entry.name} needs {' and '.join(missing)} (give {usage})")


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
    base: str | None = None,
    spec: str | os.PathLike | None = None,
    backgrounds: str | os.PathLike | None = None,
) -> Path:
    """Build dataset ``name`` into the HDF5 file ``out`` (the layout of :mod:`mvae_cli.data.format`), atomically.

    Masks ``bool [N_train, M]`` are stored as ``mask_name(kind, value, seed)`` and built
    by ``masks.build_mask`` from ``seed``: one per supervision level (kind
    ``supervision``) and one per keep probability (kind ``keep_prob``).

    Args:
        name: a registry name (``shapes``, ``mnist``, ``fashion-mnist``, ``binary-mnist``,
            ``multimnist``, ``polymnist``, ``celeba``, ``celeba19``, ``transforms``, ``custom``).
        out: the file to write.
        source: a folder of source files (MNIST family, multimnist, polymnist, celeba, transforms on
            celeba) where None downloads them; the arrays file of ``custom``.
        seed: seeds the generated data (shapes, multimnist), the custom split and every
            mask; at least 0.
        supervision: paired fractions f in [0, 1].
        keep_prob: keep probabilities p in (0, 1].
        force: replace an existing ``out``; without it an existing file is never touched.
        sizes: ``{split: n}`` overriding the dataset's sizes (read datasets: the first n).
        progress: ``progress(task, done, total)``.
        base: ``transforms`` only: ``celeba`` or ``shapes``, the images transformed.
        spec: ``custom`` only: the YAML spec of the arrays.
        backgrounds: ``polymnist`` only: a folder of five background images (default:
            the procedural textures).

    Returns:
        ``out`` as a Path.

    Raises:
        UserError: unknown dataset, a level out of range, a bad size or seed, an option
            the dataset does not take or lacks, an existing ``out`` without ``force``,
            a missing or malformed source file.
    """
    entry = get_dataset(name)
    plan = plan_masks(supervision, keep_prob)
    sizes = resolve_sizes(entry.default_sizes, sizes)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise UserError(f"--seed must be a whole number of at least 0, got {seed}")
    seed = int(seed)
    options = {"base": base, "spec": spec, "backgrounds": backgrounds}
    _check_options(entry, source, options)
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out} is a folder; --out takes a file path such as data/{name}.h5")
    check_folder(out.parent, f"--out {out}: its folder")
    if out.exists() and not force:  # checked again on write; this saves a wasted build
        raise UserError(f"{out} already exists; pass --force to overwrite it")

    check_size(entry.specs, sizes, out)
    chosen = {k: v for k, v in options.items() if k in entry.options}
    built = entry.build(seed=seed, sizes=sizes, source=source, progress=progress, **chosen)
    if not isinstance(built, Built):
        built = Built(list(entry.specs), built)
    if name in CLASS_NAMES:  # sample grids and reports name classes, not ids
        built.attrs.setdefault(CLASS_NAMES_ATTR, json.dumps(CLASS_NAMES[name]))
    _write(out, name, built, plan, seed, force, progress)
    return out


def _write(out: Path, name: str, built: Built, plan: list[tuple[str, float]], seed: int, force: bool,
           progress: ProgressFn | None) -> None:
    specs = built.specs
    whole = {split: _array_order(built, split) for split in SPLITS}
    total = sum(len(names) for names in whole.values()) + len(plan)
    done = 0
    with create_dataset_file(out, name, specs, seed, force=force) as writer:
        if built.notes:
            writer.set_attrs(notes=json.dumps(list(built.notes)))
        writer.set_attrs(**built.attrs)
        for split in SPLITS:
            for array_name in whole[split]:
                writer.write_array(split, array_name, built.arrays[split][array_name])
                done += 1
                if progress is not None:
                    progress("writing", done, total)
            if split in built.streams:
                _write_stream(writer, split, built.streams[split], specs, progress)
        n_train = _rows(built, specs[0].name)
        for kind, value in plan:
            mask = build_mask(kind, value, n_train, len(specs), seed)
            writer.write_mask(mask_name(kind, value, seed), mask, kind, value, seed)
            done += 1
            if progress is not None:
                progress("writing", done, total)


def _array_order(built: Built, split: str) -> list[str]:
    """The in-memory arrays of a split: its modalities in order, then sibling arrays by name."""
    arrays = built.arrays.get(split, {})
    names = [s.name for s in built.specs if s.name in arrays]
    return names + sorted(set(arrays) - set(names))


def _rows(built: Built, first: str) -> int:
    if first in built.arrays.get("train", {}):
        return built.arrays["train"][first].shape[0]
    return built.streams["train"].n


def _write_stream(writer, split: str, stream: Stream, specs, progress: ProgressFn | None) -> None:
    """Fill the streamed modalities of one split block by block into chunked arrays."""
    shapes = {s.name: s.shape for s in specs}
    arrays: dict = {}
    done = 0
    for block in stream.chunks():
        for array_name, values in block.items():
            if array_name not in arrays:
                arrays[array_name] = writer.create_array(split, array_name, (stream.n, *shapes[array_name]),
                                                         values.dtype)
            arrays[array_name][done:done + len(values)] = values
        done += len(next(iter(block.values())))
        if progress is not None:
            progress(stream.task, done, stream.n)
    if done != stream.n:
        raise RuntimeError(f"stream {stream.task} gave {done} rows, expected {stream.n}")


def ensure_dataset(data) -> Path:
    """The dataset file of a recipe's ``data`` section, prepared first (seed 0) when it is missing.

    Args:
        data: a recipe's :class:`~mvae_cli.recipe.DataConfig` (``dataset``, ``resolved_path()``,
            ``source``, ``base``, ``spec``).
    """
    path = data.resolved_path()
    if not path.exists():
        prepare_dataset(data.dataset, path, source=data.source, seed=0, base=data.base, spec=data.spec)
    return path
