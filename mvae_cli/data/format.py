"""The prepared-dataset contract: one HDF5 file.

```
/                         attrs: format="mvae-dataset", format_version, name, mvae_version, seed, created,
                          class_names (JSON {modality: [names]}, where the dataset names its classes),
                                 modality_order (JSON list of names)
/modalities/<name>        attrs: kind, likelihood, shape, classes
/train|valid|test/<name>  the arrays, N first (images uint8 [N, C, H, W], labels integer [N])
/train/masks/<mask>       bool [N_train, M], columns in modality order; attrs: kind, value, seed
```
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from mvae_cli import __version__
from mvae_cli.atomic import atomic_path
from mvae_cli.data.layout import LayoutError, check_layout, shown
# ModalitySpec and SPLITS live in data/spec.py, below the layout checks; callers may import them from here.
from mvae_cli.data.spec import SPLITS, ModalitySpec
from mvae_cli.errors import UserError

FORMAT = "mvae-dataset"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class MaskInfo:
    name: str
    kind: str
    value: float
    seed: int
    n_paired: int  # rows showing every modality
    n_unimodal: tuple[int, ...]  # per modality: rows showing that modality alone
    n_empty: int  # rows showing nothing (skipped by training)


class DatasetWriter:
    """Writes the arrays of a dataset file; obtained from :func:`create_dataset_file`."""

    def __init__(self, handle: h5py.File, specs: list[ModalitySpec]):
        self._h5 = handle
        self.specs = list(specs)
        group = handle.create_group("modalities", track_order=True)
        for spec in self.specs:
            g = group.create_group(spec.name)
            g.attrs.update(kind=spec.kind, likelihood=spec.likelihood,
                           shape=np.asarray(spec.shape, dtype=np.int64), classes=spec.classes)
        handle.attrs["modality_order"] = json.dumps([s.name for s in self.specs])
        for split in SPLITS:
            handle.create_group(split)

    def set_attrs(self, **attrs) -> None:
        """Extra root attributes (e.g. ``notes``, ``base``, ``source``)."""
        self._h5.attrs.update(attrs)

    def write_array(self, split: str, name: str, array: np.ndarray) -> None:
        """Store a whole array ``[N, ...]`` for one modality of one split."""
        self._h5[split].create_dataset(name, data=array, chunks=True if array.ndim > 1 else None)

    def create_array(self, split: str, name: str, shape: tuple[int, ...], dtype) -> h5py.Dataset:
        """Create a chunked array to be filled piece by piece (for data too big for memory)."""
        chunk = (min(shape[0], 256),) + tuple(shape[1:]) if shape[0] else None
        return self._h5[split].create_dataset(name, shape=shape, dtype=dtype, chunks=chunk)

    def write_mask(self, name: str, mask: np.ndarray, kind: str, value: float, seed: int) -> None:
        """Store a training mask ``bool[N_train, M]``."""
        if mask.shape[1] != len(self.specs):
            raise ValueError(f"mask {name!r} has {mask.shape[1]} columns, expected {len(self.specs)}")
        masks = self._h5["train"].require_group("masks")
        ds = masks.create_dataset(name, data=mask.astype(bool), compression="gzip")
        ds.attrs.update(kind=kind, value=float(value), seed=int(seed))


@contextlib.contextmanager
def create_dataset_file(
    path: str | os.PathLike, name: str, specs: list[ModalitySpec], seed: int, force: bool = False
) -> Iterator[DatasetWriter]:
    """Write a dataset file atomically: to a temporary file renamed onto ``path`` at the end.

    An existing ``path`` is never touched unless ``force``; an error or interruption
    inside the block leaves ``path`` as it was.
    """
    path = Path(path)
    if path.exists() and not force:
        raise UserError(f"{path} already exists; pass --force to overwrite it")
    with atomic_path(path, suffix=".h5.tmp") as tmp, _GuardedFile(tmp) as raw:
        with h5py.File(raw, "w", track_order=True) as handle:
            handle.attrs.update(
                format=FORMAT, format_version=FORMAT_VERSION, name=name, mvae_version=__version__,
                seed=int(seed), created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            )
            yield DatasetWriter(handle, specs)
        raw.raise_fault()


class _GuardedFile:
    """The file HDF5 writes through (h5py's file-object driver), keeping write faults from HDF5.

    When HDF5 itself meets a full disk or a file-size limit, it cannot close the file, floods
    stderr from every object it frees and can crash the interpreter at exit. So a failed write
    is recorded and reported to HDF5 as done; HDF5 closes cleanly, and :meth:`raise_fault`
    raises the recorded OSError, which the atomic write turns into one line (the temporary
    file is removed, so what HDF5 believed it wrote never matters).
    """

    def __init__(self, path: Path):
        self._file = open(path, "w+b")
        self.fault: OSError | None = None

    def __enter__(self) -> "_GuardedFile":
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def write(self, data) -> int:
        if self.fault is None and not self._file.closed:
            try:
                return self._file.write(data)
            except OSError as error:
                self.fault = error
        return len(memoryview(data).cast("B"))

    # Once closed (an interrupt unwound the `with` before h5py freed its file), HDF5's last calls
    # from the garbage collector find nothing to do instead of printing a traceback at exit.
    def read(self, size: int = -1) -> bytes:
        return b"" if self._file.closed else self._file.read(size)

    def readinto(self, buffer) -> int:
        return 0 if self._file.closed else self._file.readinto(buffer)

    def seek(self, offset: int, whence: int = 0) -> int:
        return offset if self._file.closed else self._file.seek(offset, whence)

    def tell(self) -> int:
        return 0 if self._file.closed else self._file.tell()

    def truncate(self, size: int | None = None) -> int:
        if self.fault is None and not self._file.closed:
            try:
                return self._file.truncate(size)
            except OSError as error:
                self.fault = error
        return size if size is not None else self.tell()

    def flush(self) -> None:
        if self.fault is None and not self._file.closed:
            try:
                self._file.flush()
            except OSError as error:
                self.fault = error

    def raise_fault(self) -> None:
        """Raise the first write fault, if any (after a flush, so a buffered write counts too)."""
        self.flush()
        if self.fault is not None:
            raise self.fault


def write_dataset(
    path: str | os.PathLike,
    name: str,
    specs: list[ModalitySpec],
    splits: dict[str, dict[str, np.ndarray]],
    seed: int,
    masks: list[tuple[str, np.ndarray, str, float, int]] = (),
    force: bool = False,
) -> None:
    """Write a whole in-memory dataset: ``splits[split][modality] = array``;
    ``masks`` holds ``(name, mask, kind, value, seed)`` tuples."""
    with create_dataset_file(path, name, specs, seed, force=force) as writer:
        for split, arrays in splits.items():
            for spec in specs:
                writer.write_array(split, spec.name, arrays[spec.name])
        for mask_name_, mask, kind, value, mask_seed in masks:
            writer.write_mask(mask_name_, mask, kind, value, mask_seed)


class DatasetFile:
    """A prepared dataset opened for reading. Use :func:`read_dataset`.

    Attributes:
        path, name, seed, attrs: from the file.
        specs: the modalities in order.
        sizes: ``{split: N}``.
    """

    def __init__(self, path: Path, handle: h5py.File):
        self.path = path
        self._h5 = handle
        self.attrs = dict(handle.attrs)
        self.name = str(self.attrs.get("name", ""))
        self.seed = int(self.attrs.get("seed", 0))
        self.specs, self.sizes = check_layout(handle)

    @property
    def modality_names(self) -> list[str]:
        return [s.name for s in self.specs]

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> "DatasetFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def array(self, split: str, name: str) -> h5py.Dataset:
        """The on-disk array of one modality (for streaming)."""
        return self._h5[split][name]

    def load(self, split: str) -> dict[str, np.ndarray]:
        """Read every modality of a split into memory: ``{name: array [N, ...]}``."""
        if split not in self.sizes:
            raise UserError(f"{self.path} has no {split!r} split (it has: {', '.join(self.sizes)})")
        return {s.name: self._h5[split][s.name][()] for s in self.specs}

    def mask_names(self) -> list[str]:
        return list(self._h5["train"]["masks"]) if "masks" in self._h5["train"] else []

    def mask(self, name: str) -> np.ndarray:
        return self._h5["train"]["masks"][name][()]

    def find_mask(self, kind: str, value: float, seed: int) -> np.ndarray | None:
        """The stored mask of that kind, level and seed, or None."""
        for name in self.mask_names():
            a = self._h5["train"]["masks"][name].attrs
            if str(a["kind"]) == kind and np.isclose(float(a["value"]), value) and int(a["seed"]) == seed:
                return self.mask(name)
        return None

    def mask_info(self) -> list[MaskInfo]:
        """Counts of paired, unimodal-only and empty rows for every stored mask."""
        out = []
        for name in self.mask_names():
            ds = self._h5["train"]["masks"][name]
            m = ds[()]
            visible = m.sum(axis=1)
            out.append(MaskInfo(
                name=name, kind=str(ds.attrs["kind"]), value=float(ds.attrs["value"]),
                seed=int(ds.attrs["seed"]), n_paired=int((visible == m.shape[1]).sum()),
                n_unimodal=tuple(int(((visible == 1) & m[:, j]).sum()) for j in range(m.shape[1])),
                n_empty=int((visible == 0).sum()),
            ))
        return out


CLASS_NAMES_ATTR = "class_names"  # root attribute: JSON {categorical modality: [name of class 0, ...]}


def class_names(file_attrs, specs) -> dict[str, list[str]]:
    """The names of the classes of each categorical modality, from a dataset file's root attribute
    ``class_names``; modalities it does not name (or names with the wrong count) are left out."""
    try:
        given = json.loads(file_attrs.get(CLASS_NAMES_ATTR) or "{}")
    except (TypeError, ValueError):
        given = {}
    given = given if isinstance(given, dict) else {}
    return {s.name: [str(n) for n in given[s.name]] for s in specs
            if s.kind == "categorical" and isinstance(given.get(s.name), list) and len(given[s.name]) == s.classes}


def read_dataset(path: str | os.PathLike) -> DatasetFile:
    """Open a prepared dataset, checking that it is one this version can read.

    Raises:
        UserError: missing file, a folder, not HDF5, not an mvae dataset, an unknown
            format_version, or a layout that is damaged (:func:`check_layout`, naming what).
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a dataset file; give the .h5 file `mvae prepare` wrote")
    if not path.is_file():
        raise UserError(f"{path} does not exist; build it with `mvae prepare`")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise UserError(f"{path} is not an HDF5 file (or it is truncated); build a dataset with `mvae prepare`") from None
    try:
        fmt = handle.attrs.get("format")
        if fmt != FORMAT:
            raise UserError(f"{path} is not an mvae dataset (no format={FORMAT!r}); build one with `mvae prepare`")
        version = handle.attrs.get("format_version")
        if version is None or isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)):
            raise UserError(f"{path} is damaged: its format_version {shown(version)} is not a whole number; "
                            "rebuild it with `mvae prepare`")
        if int(version) != FORMAT_VERSION:
            raise UserError(f"{path} has format_version {int(version)}, this mvae reads version {FORMAT_VERSION}; "
                            "re-run `mvae prepare` with this version")
        try:
            return DatasetFile(path, handle)
        except LayoutError as error:
            raise UserError(f"{path} is damaged: {error}; rebuild it with `mvae prepare`") from None
    except BaseException:
        handle.close()
        raise
