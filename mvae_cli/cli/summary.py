"""Rich rendering of a prepared dataset: modalities, split sizes and every training mask.

Shared by ``mvae prepare`` (after writing) and ``mvae info``; any command that shows
a dataset can print the same :func:`dataset_summary`.
"""

from __future__ import annotations

import json

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from mvae_cli.data.format import DatasetFile


def _size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError("unreachable")


def _header(dataset: DatasetFile) -> Text:
    a = dataset.attrs
    text = Text()
    text.append(dataset.name or "?", style="bold")
    text.append(f"  {dataset.path}  ({_size(dataset.path.stat().st_size)})\n")
    text.append(f"format v{a.get('format_version')} · seed {dataset.seed} · "
                f"created {a.get('created', '?')} · mvae {a.get('mvae_version', '?')}", style="dim")
    if "base" in a:
        text.append(f"\nimages from {a['base']}", style="dim")
    for note in _notes(dataset):
        text.append(f"\nnote: {note}", style="yellow")
    return text


def _notes(dataset: DatasetFile) -> list[str]:
    """The root ``notes`` (a JSON list of lines; a plain string is one note)."""
    raw = dataset.attrs.get("notes")
    if raw is None:
        return []
    try:
        notes = json.loads(raw)
    except (TypeError, ValueError):
        return [str(raw)]
    return [str(n) for n in notes] if isinstance(notes, list) else [str(notes)]


def _modalities(dataset: DatasetFile) -> Table:
    table = Table(title="modalities", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("name", "kind", "likelihood", "shape"):
        table.add_column(column)
    table.add_column("classes", justify="right")  # the vocabulary size for a sequence
    for spec in dataset.specs:
        shape = "×".join(str(s) for s in spec.shape) if spec.shape else "scalar"
        if spec.kind == "sequence":
            shape = f"{shape} tokens"
        table.add_row(spec.name, spec.kind, spec.likelihood, shape, str(spec.classes) if spec.classes else "-")
    return table


def _splits(dataset: DatasetFile) -> Table:
    table = Table(title="splits", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("split")
    table.add_column("examples", justify="right")
    for split, n in dataset.sizes.items():
        table.add_row(split, f"{n:,}")
    return table


_SYMBOL = {"supervision": "f", "keep_prob": "p"}
_KIND_ORDER = {"supervision": 0, "keep_prob": 1}


WIDTH = 80  # the masks table is laid out to fit this many columns
_MASKS_PER_TABLE = 7  # mask columns of one transposed table


def _masks(dataset: DatasetFile) -> RenderableType:
    """A row per training mask (paired, each modality alone, empty); with too many modalities to fit
    80 columns (CelebA's 19), transposed: a row per count and a column per mask, 7 masks a table."""
    infos = dataset.mask_info()
    if not infos:
        return Text("no training masks stored (train builds the one it needs)", style="dim")
    infos.sort(key=lambda i: (_KIND_ORDER.get(i.kind, 2), i.kind, i.value, i.seed))
    n_train = dataset.sizes.get("train", 0)
    title = f"train masks ({n_train:,} rows)"
    # The seed column only earns its width when some mask was drawn from another seed.
    show_seed = any(info.seed != dataset.seed for info in infos)
    levels = [f"{_SYMBOL.get(info.kind, info.kind)}={info.value:g}" for info in infos]
    names = dataset.modality_names
    legend = Text("paired: every modality shown · <modality>: only that one · empty: none shown\n"
                  "f: paired fraction (--supervision) · p: keep probability (--keep-prob)", style="dim")
    columns = [["mask", *levels], *([["seed", *(str(i.seed) for i in infos)]] if show_seed else []),
               ["paired", *(f"{i.n_paired:,}" for i in infos)],
               *([name, *(f"{i.n_unimodal[m]:,}" for i in infos)] for m, name in enumerate(names)),
               ["empty", *(f"{i.n_empty:,}" for i in infos)]]
    if sum(max(map(len, c)) for c in columns) + 2 * (len(columns) - 1) <= WIDTH:  # one space each side of a cell
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("mask", no_wrap=True)
        if show_seed:
            table.add_column("seed", justify="right")
        for column in ("paired", *names, "empty"):
            table.add_column(column, justify="right", no_wrap=True)
        for level, info in zip(levels, infos):
            seed = [str(info.seed)] if show_seed else []
            table.add_row(level, *seed, f"{info.n_paired:,}", *(f"{n:,}" for n in info.n_unimodal),
                          f"{info.n_empty:,}")
        return Group(table, legend)
    tables = []
    for start in range(0, len(infos), _MASKS_PER_TABLE):
        part = list(zip(levels, infos))[start:start + _MASKS_PER_TABLE]
        table = Table(title=title if start == 0 else None, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("shown", no_wrap=True)
        for level, _ in part:
            table.add_column(level, justify="right", no_wrap=True)
        if show_seed:
            table.add_row("seed", *(str(info.seed) for _, info in part))
        table.add_row("paired", *(f"{info.n_paired:,}" for _, info in part))
        for m, name in enumerate(names):
            table.add_row(f"{name} only", *(f"{info.n_unimodal[m]:,}" for _, info in part))
        table.add_row("empty", *(f"{info.n_empty:,}" for _, info in part))
        tables.append(table)
    return Group(*tables, legend)


def dataset_summary(dataset: DatasetFile) -> Group:
    """The summary of an open dataset as one rich renderable."""
    return Group(_header(dataset), _modalities(dataset), _splits(dataset), _masks(dataset))


def print_summary(dataset: DatasetFile, console: Console | None = None) -> None:
    """Print :func:`dataset_summary` (to stdout unless a console is given)."""
    (console or Console()).print(dataset_summary(dataset))
