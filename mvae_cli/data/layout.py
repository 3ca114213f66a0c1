"""Validating a dataset file's layout on open (docs/DESIGN.md, "Data contract"), and its fingerprint.

A damaged but readable file (an attribute edited, a group deleted, an array cut short) must be
one error naming what is wrong, never a traceback from deep inside a command.
"""

from __future__ import annotations

import hashlib
import json
import os

import h5py
import numpy as np

from mvae_cli.data.spec import KINDS, LIKELIHOODS, SPLITS, ModalitySpec


def fingerprint(path: str | os.PathLike, blocks: int = 16, block_bytes: int = 1 << 16) -> str:
    """A cheap fingerprint of a dataset file's bytes: its size and a hash of ``blocks`` evenly
    spaced blocks (the first and the last included), so that a file rebuilt or replaced at the
    same path is told apart from the one a run was trained on, without reading gigabytes.

    Returns:
        ``"<size>:<sha256 hex of the sampled blocks>"``.
    """
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        span = max(size - block_bytes, 0)
        for i in range(blocks):
            handle.seek(span * i // max(blocks - 1, 1))
            digest.update(handle.read(block_bytes))
    return f"{size}:{digest.hexdigest()}"


class LayoutError(Exception):
    """What is wrong with the layout of a dataset file (turned into a UserError naming the file)."""


def shown(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return repr(value.item() if isinstance(value, np.generic) else value)


def _order(handle: h5py.File) -> list[str]:
    if "modality_order" not in handle.attrs:
        raise LayoutError("the root attribute modality_order is missing")
    text = handle.attrs["modality_order"]
    try:
        order = json.loads(text)
    except (TypeError, ValueError):
        raise LayoutError(f"the root attribute modality_order {shown(text)} is not JSON") from None
    if not isinstance(order, list) or not all(isinstance(n, str) and n for n in order):
        raise LayoutError(f"the root attribute modality_order {shown(text)} is not a JSON list of names")
    if not order:
        raise LayoutError("the root attribute modality_order lists no modality")
    if len(set(order)) != len(order):
        raise LayoutError(f"the root attribute modality_order {shown(text)} repeats a name")
    return order


def _spec(handle: h5py.File, name: str) -> ModalitySpec:
    where = f"/modalities/{name}"
    if "modalities" not in handle or name not in handle["modalities"]:
        raise LayoutError(f"the group {where} of modality {name!r} is missing")
    attrs = handle["modalities"][name].attrs
    missing = [key for key in ("kind", "likelihood", "shape", "classes") if key not in attrs]
    if missing:
        raise LayoutError(f"modality {name!r} ({where}) lacks the attribute {', '.join(missing)}")
    kind, likelihood = str(attrs["kind"]), str(attrs["likelihood"])
    if kind not in KINDS:
        raise LayoutError(f"modality {name!r} has an unknown kind {kind!r} (known: {', '.join(KINDS)})")
    if likelihood not in LIKELIHOODS:
        raise LayoutError(f"modality {name!r} has an unknown likelihood {likelihood!r}")
    shape, classes = np.asarray(attrs["shape"]), np.asarray(attrs["classes"])
    if shape.ndim > 1 or not np.issubdtype(shape.dtype, np.integer) or (shape < 1).any():
        raise LayoutError(f"modality {name!r} has a shape {shown(attrs['shape'])} that is not a list of sizes")
    if classes.ndim != 0 or not np.issubdtype(classes.dtype, np.integer) or classes < 0:
        raise LayoutError(f"modality {name!r} has a classes attribute {shown(attrs['classes'])} that is not a count")
    return ModalitySpec(name=name, kind=kind, likelihood=likelihood,
                        shape=tuple(int(v) for v in shape.reshape(-1)), classes=int(classes))


def check_layout(handle: h5py.File) -> tuple[list[ModalitySpec], dict[str, int]]:
    """Validate the whole layout of an open dataset file (docs/DESIGN.md) without reading the arrays.

    Returns:
        ``(specs, sizes)``: the modalities in order and ``{split: N}`` for the splits present.

    Raises:
        LayoutError: the first thing that is wrong, named by its HDF5 path.
    """
    order = _order(handle)
    specs = [_spec(handle, name) for name in order]
    sizes = {}
    for split in SPLITS:
        if split not in handle:
            continue
        group = handle[split]
        if not any(spec.name in group for spec in specs):
            continue  # a split group with no arrays: the split is absent (a file may lack valid)
        rows = None
        for spec in specs:
            where = f"/{split}/{spec.name}"
            if spec.name not in group or not isinstance(group[spec.name], h5py.Dataset):
                raise LayoutError(f"the array {where} is missing")
            array = group[spec.name]
            if tuple(array.shape[1:]) != spec.shape:
                raise LayoutError(f"the array {where} has examples of shape {tuple(array.shape[1:])}, "
                                  f"its modality says {spec.shape}")
            if rows is not None and array.shape[0] != rows:
                raise LayoutError(f"the array {where} has {array.shape[0]} rows, /{split}/{specs[0].name} has {rows}")
            rows = array.shape[0]
        sizes[split] = int(rows)
    if "train" in handle and "masks" in handle["train"]:
        for name, mask in handle["train"]["masks"].items():
            shape = getattr(mask, "shape", None)
            if shape != (sizes.get("train"), len(specs)):
                raise LayoutError(f"the mask /train/masks/{name} has shape {shape}, expected "
                                  f"({sizes.get('train')}, {len(specs)}): a row per training example, "
                                  "columns one per modality")
            if any(key not in mask.attrs for key in ("kind", "value", "seed")):
                raise LayoutError(f"the mask /train/masks/{name} lacks its kind, value or seed attribute")
    return specs, sizes
