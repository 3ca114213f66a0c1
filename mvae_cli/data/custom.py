"""``custom``: a user's own arrays (``.npz`` or HDF5) described by a YAML spec.

The spec lists the modalities in order and, optionally, how to split one pool:

```yaml
modalities:
  - {name: image, kind: image, shape: [1, 28, 28]}  # likelihood defaults by kind
  - {name: label, kind: categorical, classes: 10}
  - {name: caption, kind: sequence, vocab: 12}
  - {name: tags, kind: binary}                       # shape [D] taken from the arrays
  - {name: digit, kind: categorical, classes: 10,
     arrays: {train: y_tr, valid: y_va, test: y_te}} # the source's keys, named per split
split: {train: 0.8, valid: 0.1, test: 0.1}           # only with one array per modality
```

The source holds, for modality ``m`` of split ``s``, the key the entry's ``arrays:`` names,
else one of ``s/m`` (an HDF5 group ``s`` with dataset ``m``, or an npz key with a slash),
``s_m``, ``m_s`` or ``m/s``; with a ``split:`` section of three fractions, one array per
modality under the key ``m`` (or ``arrays: {all: key}``), shuffled with the seed and cut by
the fractions. With ``split: {valid: f}`` the source holds train and test arrays (no valid
ones) and a seeded fraction f of the training examples becomes the valid split: the test
set stays the official one and never mixes into training. Sequence rows follow the networks' contract: ``START`` is id
``vocab - 2`` and ``STOP`` is ``vocab - 1``, and ``<name>_length`` (stored beside
them) counts up to and including the first ``STOP`` after position 0.

Arrays are checked against the spec, one clear error per problem:

| kind        | array         | dtype and values                                   | stored      |
| ----------- | ------------- | -------------------------------------------------- | ----------- |
| image       | [N, C, H, W]  | uint8, or floats in [0, 1] (scaled by 255, rounded) | uint8       |
|             | ([N, H, W] is one channel)                                          |             |
| categorical | [N]           | integers in [0, classes)                            | uint8/16/32 |
| binary      | [N, D]        | bool, or numbers that are 0 or 1                    | uint8       |
| sequence    | [N, L]        | integers in [0, vocab)                              | uint8/16/32 |
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from mvae_cli.data.custom_spec import load_spec
from mvae_cli.data.format import SPLITS, ModalitySpec
from mvae_cli.data.text import token_lengths
from mvae_cli.errors import UserError

class _Source:
    """The arrays of an npz or HDF5 file, by key (``train/image``; HDF5 groups joined by ``/``)."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise UserError(f"source {path} does not exist")
        import h5py

        if h5py.is_hdf5(path):
            self._h5 = h5py.File(path, "r")
            self.keys = []
            self._h5.visititems(lambda k, v: self.keys.append(k) if isinstance(v, h5py.Dataset) else None)
            self._get = lambda key: self._h5[key][()]
        elif zipfile.is_zipfile(path):
            try:
                self._npz = np.load(path, allow_pickle=False)
            except (OSError, ValueError, zipfile.BadZipFile) as error:
                raise UserError(f"source {path} is not a readable .npz file ({error})") from None
            self.keys = list(self._npz.files)
            self._get = self._npz.__getitem__
        else:
            raise UserError(f"source {path} is neither an .npz nor an HDF5 file")

    def find(self, *candidates: str) -> str | None:
        return next((k for k in candidates if k in self.keys), None)

    def get(self, key: str) -> np.ndarray:
        try:
            return np.asarray(self._get(key))
        except ValueError as error:  # e.g. object arrays, which need pickle
            raise UserError(f"source {self.path}: array {key!r} cannot be read ({error})") from None

    def close(self) -> None:
        (getattr(self, "_h5", None) or getattr(self, "_npz")).close()


def _smallest_uint(limit: int) -> type:
    return np.uint8 if limit <= 256 else np.uint16 if limit <= 65536 else np.int32


def check_array(entry: dict, array: np.ndarray, split: str) -> np.ndarray:
    """Check one array against its modality and convert it to the stored dtype.

    Args:
        entry: from :func:`load_spec`; its ``shape`` must be set.
        array: the user's array ``[N, ...]``.
        split: for messages (``train``, ``valid``, ``test`` or ``all``).

    Raises:
        UserError: "modality 'x' (split): what is wrong".
    """
    where = f"modality {entry['name']!r} ({split})"
    kind, shape = entry["kind"], entry["shape"]
    if array.dtype.kind not in "biuf":
        raise UserError(f"{where}: dtype {array.dtype} is not numeric")
    if array.shape[1:] != shape:
        raise UserError(f"{where}: examples have shape {list(array.shape[1:])}, expected {list(shape)} "
                        f"(from {entry.get('shape_from', 'the spec')})")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UserError(f"{where}: holds NaN or infinite values")
    if kind == "image":
        if array.dtype == np.uint8:
            return array
        if array.dtype.kind != "f":
            raise UserError(f"{where}: images must be uint8 or floats in [0, 1], got {array.dtype}")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise UserError(f"{where}: float images must lie in [0, 1], found [{array.min():g}, {array.max():g}]")
        return np.rint(array * 255).astype(np.uint8)
    if kind == "binary":
        if array.size and not np.isin(array, (0, 1)).all():
            raise UserError(f"{where}: binary values must be 0 or 1, found {_first_other(array, (0, 1))}")
        return array.astype(np.uint8)
    # categorical and sequence: integer ids
    if array.dtype.kind not in "iu":
        raise UserError(f"{where}: ids must be integers, got {array.dtype}")
    limit, word = entry["classes"], "classes" if kind == "categorical" else "vocab"
    if array.size and (array.min() < 0 or array.max() >= limit):
        bad = array.min() if array.min() < 0 else array.max()
        raise UserError(f"{where}: id {bad} is outside [0, {limit}) ({word}: {limit})")
    return array.astype(_smallest_uint(limit))


def _first_other(array: np.ndarray, allowed) -> str:
    return f"{array[~np.isin(array, allowed)].flat[0]:g}"


def _example_shape(entry: dict, array: np.ndarray, split: str) -> np.ndarray:
    """Bring [N, H, W] images and [N] binaries to their full rank; fix the entry's shape."""
    if entry["kind"] == "image" and array.ndim == 3:
        array = array[:, None]
    if entry["kind"] == "binary" and array.ndim == 1:
        array = array[:, None]
    if entry["shape"] is None:
        entry["shape"] = () if entry["kind"] == "categorical" else tuple(array.shape[1:])
        entry["shape_from"] = "the spec" if entry["kind"] == "categorical" else f"the {split} arrays"
    return array


def _read_split(source: _Source, entries: list[dict], split: str | None) -> dict[str, np.ndarray]:
    arrays, first = {}, None
    label = split or "all"
    for entry in entries:
        name = entry["name"]
        named = entry.get("arrays", {}).get(split or "all")
        candidates = ((named,) if named else (name,) if split is None
                      else (f"{split}/{name}", f"{split}_{name}", f"{name}_{split}", f"{name}/{split}"))
        key = source.find(*candidates)
        if key is None:
            hint = ("; or give one array per modality and a split: section in the spec"
                    if split is not None and source.find(name) else "")
            raise UserError(f"source {source.path} has no array for modality {name!r} ({label}): "
                            f"looked for {' and '.join(repr(c) for c in candidates)}{hint}")
        array = source.get(key)
        if array.ndim == 0:
            raise UserError(f"modality {name!r} ({label}): {key!r} is a single value, not an array [N, ...]")
        array = check_array(entry, _example_shape(entry, array, label), label)
        if first is None:
            first = (name, array.shape[0])
        elif array.shape[0] != first[1]:
            raise UserError(f"split {label}: modality {name!r} has {array.shape[0]} examples, "
                            f"{first[0]!r} has {first[1]}")
        arrays[name] = array
        if entry["kind"] == "sequence":
            arrays[f"{name}_length"] = token_lengths(array, stop=entry["classes"] - 1)
    if first[1] == 0:
        raise UserError(f"split {label} of {source.path} has no examples")
    return arrays


def load_custom(source: str | os.PathLike, spec: str | os.PathLike, *, seed: int = 0,
                sizes: dict[str, int] | None = None) -> tuple[list[ModalitySpec], dict[str, dict[str, np.ndarray]]]:
    """Read and check a user's arrays against their spec.

    Args:
        source: an ``.npz`` or HDF5 file.
        spec: the YAML spec.
        seed: shuffles a pool before the ``split:`` fractions cut it.
        sizes: ``{split: n}`` keeps the first n of a split.

    Returns:
        ``(specs, {split: {name: array [n, ...]}})``; sequences come with ``<name>_length``.

    Raises:
        UserError: one per problem, naming the modality, the split and what is wrong.
    """
    entries, fractions = load_spec(spec)
    data = _Source(Path(source))
    try:
        if fractions is None:
            splits = {split: _read_split(data, entries, split) for split in SPLITS}
        elif set(fractions) == {"valid"}:
            splits = _carve_valid(_read_split(data, entries, "train"), fractions["valid"], seed)
            splits["test"] = _read_split(data, entries, "test")
        else:
            splits = _cut(_read_split(data, entries, None), fractions, seed)
    finally:
        data.close()
    for split, arrays in splits.items():
        n = (sizes or {}).get(split)
        have = next(iter(arrays.values())).shape[0]
        if n is not None:
            if n > have:
                raise UserError(f"--n-{split} {n} is more than the {have} {split} examples of {source}")
            splits[split] = {k: v[:n] for k, v in arrays.items()}
    specs = [ModalitySpec(e["name"], e["kind"], e["likelihood"], e["shape"], e["classes"]) for e in entries]
    return specs, splits


def _carve_valid(train: dict[str, np.ndarray], fraction: float, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Split the training arrays into train and valid (round(f·N) seeded examples); nothing else is read."""
    n = next(iter(train.values())).shape[0]
    count = int(math.floor(fraction * n + 0.5))
    if not 1 <= count < n:
        raise UserError(f"split: valid {fraction:g} of the {n} training examples leaves "
                        f"{'valid' if count < 1 else 'train'} empty")
    order = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0]).permutation(n)
    valid, kept = np.sort(order[:count]), np.sort(order[count:])
    return {"train": {k: v[kept] for k, v in train.items()}, "valid": {k: v[valid] for k, v in train.items()}}


def image_range_notes(specs: list[ModalitySpec], splits: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """A line per image modality whose training values do not span [0, 255].

    Images are read as x/255 under a Bernoulli likelihood, so an image set whose ink tops out
    at 240 never asks for a full pixel; the line says how to rescale.
    """
    notes = []
    for spec in specs:
        if spec.kind != "image" or "train" not in splits or not splits["train"][spec.name].size:
            continue
        array = splits["train"][spec.name]
        low, high = int(array.min()), int(array.max())
        if low > 0 or high < 255:
            notes.append(f"warning: images of {spec.name!r} span [{low}, {high}], not [0, 255]; they are read as "
                         f"x/255, so the brightest pixel counts as {high / 255:.2f}. If {high} means full intensity, "
                         f"rescale the arrays to [0, 255] (x · 255 / {high}) and prepare again")
    return notes


def _cut(arrays: dict[str, np.ndarray], fractions: dict[str, float], seed: int) -> dict[str, dict[str, np.ndarray]]:
    n = next(iter(arrays.values())).shape[0]
    counts = {s: int(math.floor(fractions[s] * n + 0.5)) for s in ("train", "valid")}
    counts["test"] = n - counts["train"] - counts["valid"]
    for split, count in counts.items():
        if count < 1:
            raise UserError(f"split: {fractions[split]:g} of {n} examples leaves {split} empty")
    # Its own stream: the masks draw from default_rng(seed) too.
    order = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0]).permutation(n)
    bounds = np.cumsum([0, counts["train"], counts["valid"], counts["test"]])
    return {s: {k: v[order[bounds[i]:bounds[i + 1]]] for k, v in arrays.items()} for i, s in enumerate(SPLITS)}
