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


def _masks(dataset: DatasetFile) -> RenderableType:
    infos = dataset.mask_info()
    if not infos:
        return Text("no training masks stored (train builds the one it needs)", style="dim")
    infos.sort(key=lambda i: (_KIND_ORDER.get(i.kind, 2), i.kind, i.value, i.seed))
    n_train = dataset.sizes.get("train", 0)
    table = Table(title=f"train masks ({n_train:,} rows)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    # The seed column only earns its width when some mask was drawn from another seed.
    show_seed = any(info.seed != dataset.seed for info in infos)
    table.add_column("mask", no_wrap=True)
    if show_seed:
        table.add_column("seed", justify="right")
    table.add_column("paired", justify="right")
    for name in dataset.modality_names:
        table.add_column(name, justify="right")
    table.add_column("empty", justify="right")
    for info in infos:
        level = f"{_SYMBOL.get(info.kind, info.kind)}={info.value:g}"
        seed = [str(info.seed)] if show_seed else []
        table.add_row(level, *seed, f"{info.n_paired:,}",
                      *(f"{n:,}" for n in info.n_unimodal), f"{info.n_empty:,}")
    legend = Text("paired: every modality shown · <modality>: only that one · empty: none shown\n"
                  "f: paired fraction (--supervision) · p: keep probability (--keep-prob)", style="dim")
    return Group(table, legend)


def dataset_summary(dataset: DatasetFile) -> Group:
    """The summary of an open dataset as one rich renderable."""
    return Group(_header(dataset), _modalities(dataset), _splits(dataset), _masks(dataset))


def print_summary(dataset: DatasetFile, console: Console | None = None) -> None:
    """Print :func:`dataset_summary` (to stdout unless a console is given)."""
    (console or Console()).print(dataset_summary(dataset))
