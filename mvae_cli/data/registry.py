"""The datasets ``mvae prepare`` can build: name -> builder.

A builder is called as ``build(seed=..., sizes=..., source=..., progress=...)``, plus
the keyword options its entry lists (``base=...``, ``spec=...``), and returns either

- ``{split: {name: array [n, ...]}}`` for train, valid and test, holding the
  modalities of the entry's ``specs`` and possibly sibling arrays (``text_length``),
  all in memory; or
- a :class:`Built`, when the modalities are only known at build time (``custom``,
  ``transforms``) or are too big for memory (CelebA: its images come in chunks).

Builders check everything a user can get wrong before the file is created; a bad
source file found while streaming (a JPEG that does not decode) still raises a
UserError, and the atomic write leaves no trace of the file.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mvae_cli.data import celeba, custom, mnist, multimnist, polymnist, shapes, transforms
from mvae_cli.data.format import ModalitySpec
from mvae_cli.errors import UserError

Splits = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class Stream:
    """Modalities of one split written chunk by chunk, never all in memory.

    Attributes:
        n: rows of the split.
        chunks: returns an iterator of consecutive row blocks ``{name: array [k, ...]}``.
        task: the progress label, e.g. ``images train``.
    """

    n: int
    chunks: Callable[[], Iterator[dict[str, np.ndarray]]]
    task: str


@dataclass
class Built:
    """A built dataset, ready to write.

    Attributes:
        specs: the modalities, in file order.
        arrays: ``{split: {name: array [n, ...]}}`` written whole: in-memory modalities
            and sibling arrays such as ``<name>_length``.
        streams: ``{split: Stream}`` for the modalities of a split not in ``arrays``.
        notes: lines stored in the root attribute ``notes`` (a JSON list) and shown
            by ``mvae info``, e.g. a modality left out.
        attrs: extra root attributes (strings), e.g. ``base`` of ``transforms``.
    """

    specs: list[ModalitySpec]
    arrays: Splits
    streams: dict[str, Stream] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetEntry:
    """One buildable dataset.

    Attributes:
        name: the registry name, also stored as the file's ``name``.
        description: one line for help texts and docs.
        specs: the modalities, in file order; empty where the build decides them.
        build: the builder (see the module docstring).
        default_sizes: ``{split: n}`` used where the caller gives none; empty when the
            source fixes the sizes.
        uses_source: whether ``--source`` means anything.
        options: the extra keyword options the builder takes (``base``, ``spec``).
        requires: what must be given: among ``source`` and the options.
    """

    name: str
    description: str
    specs: tuple[ModalitySpec, ...]
    build: Callable[..., "Splits | Built"]
    default_sizes: dict[str, int] = field(default_factory=dict)
    uses_source: bool = False
    options: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()


def _mnist_entry(name: str, description: str) -> DatasetEntry:
    return DatasetEntry(name, description, tuple(mnist.SPECS),
                        functools.partial(mnist.build_mnist_like, name), uses_source=True)


def _build_celeba(per_attribute: bool, *, seed: int, sizes: dict[str, int], source=None, progress=None) -> Built:
    """CelebA: the images streamed from the JPEGs, the attributes in memory (see :mod:`celeba`)."""
    index = celeba.read_source(source, sizes)
    specs = celeba.SPECS19 if per_attribute else celeba.SPECS
    arrays = {split: celeba.attribute_arrays(part.attributes, per_attribute) for split, part in index.items()}
    streams = {
        split: Stream(len(part.paths), functools.partial(_image_chunks, part.paths), f"images {split}")
        for split, part in index.items()
    }
    # `mvae eval` reports each attribute's accuracy under its name (celeba19's modalities are named already)
    attrs = {} if per_attribute else {"attribute_names": json.dumps({"attributes": list(celeba.ATTRIBUTES)})}
    return Built(list(specs), arrays, streams, attrs=attrs)


def _image_chunks(paths: list[Path]) -> Iterator[dict[str, np.ndarray]]:
    for block in celeba.iter_images(paths):
        yield {"image": block}


def _build_transforms(*, seed: int, sizes: dict[str, int], source=None, progress=None, base=None) -> Built:
    """Image transforms of CelebA or shapes images (see :mod:`transforms`)."""
    if base not in ("celeba", "shapes"):
        raise UserError(f"--base must be celeba or shapes, got {base!r}")
    if base == "shapes":
        if source is not None:
            raise UserError("transforms --base shapes generates its images: it takes no --source")
        images = {split: arrays["image"] for split, arrays in shapes.build_shapes(
            seed=seed, sizes={**shapes.DEFAULT_SIZES, **sizes}, progress=progress).items()}
        detector, note = None, "landmarks left out: shapes are not faces"
        side = shapes.SIDE
        sources = {split: functools.partial(_slices, block) for split, block in images.items()}
        counts = {split: len(block) for split, block in images.items()}
    else:
        index = celeba.read_source(source, sizes)
        detector, note = transforms.find_landmark_detector()
        side = celeba.SIDE
        sources = {split: functools.partial(celeba.iter_images, part.paths) for split, part in index.items()}
        counts = {split: len(part.paths) for split, part in index.items()}
    streams = {
        split: Stream(counts[split], functools.partial(_transformed, sources[split], detector), f"transforms {split}")
        for split in sources
    }
    specs = transforms.transform_specs(3, side, landmarks=detector is not None)
    return Built(specs, {split: {} for split in streams}, streams, notes=[note], attrs={"base": base})


def _slices(images: np.ndarray, chunk: int = celeba.CHUNK) -> Iterator[np.ndarray]:
    for start in range(0, len(images), chunk):
        yield images[start:start + chunk]


def _transformed(blocks: Callable[[], Iterator[np.ndarray]], detector) -> Iterator[dict[str, np.ndarray]]:
    for block in blocks():
        yield transforms.apply_transforms(block, detector)


def _build_custom(*, seed: int, sizes: dict[str, int], source=None, progress=None, spec=None) -> Built:
    """A user's arrays checked against their spec (see :mod:`custom`)."""
    specs, splits = custom.load_custom(source, spec, seed=seed, sizes=sizes)
    return Built(specs, splits, notes=custom.image_range_notes(specs, splits), attrs={"source": str(Path(source).resolve()), "spec": Path(spec).read_text()})


# The class names of each dataset's categorical modalities, stored in the file's `class_names`.
CLASS_NAMES: dict[str, dict[str, list[str]]] = {
    "shapes": {name: list(values) for name, values in shapes.ATTRIBUTES.items()},
    **{name: {"label": labels} for name, labels in mnist.CLASS_NAMES.items()},
}


DATASETS: dict[str, DatasetEntry] = {
    "shapes": DatasetEntry(
        "shapes", "generated 32x32 RGB shapes + shape, colour, size, xpos, ypos (no download)",
        tuple(shapes.SPECS), shapes.build_shapes, default_sizes=dict(shapes.DEFAULT_SIZES),
    ),
    "mnist": _mnist_entry("mnist", "MNIST digits 28x28 + label (paper split 50k/10k/10k)"),
    "fashion-mnist": _mnist_entry("fashion-mnist", "Fashion-MNIST 28x28 + label (split 50k/10k/10k)"),
    "binary-mnist": _mnist_entry("binary-mnist", "MNIST binarised once with a fixed seed + label"),
    "multimnist": DatasetEntry(
        "multimnist", "0-4 MNIST digits at 4 fixed places on a 50x50 canvas + their text (sequence)",
        tuple(multimnist.SPECS), multimnist.build_multimnist, default_sizes=dict(multimnist.DEFAULT_SIZES),
        uses_source=True,
    ),
    "polymnist": DatasetEntry(
        "polymnist", "five 28x28 RGB images of MNIST digits of one class on five backgrounds + label (MoPoE)",
        tuple(polymnist.SPECS), polymnist.build_polymnist, default_sizes=dict(polymnist.DEFAULT_SIZES),
        uses_source=True, options=("backgrounds",),
    ),
    "celeba": DatasetEntry(
        "celeba", "CelebA faces 64x64 RGB + 18 attributes as one binary modality (official split)",
        tuple(celeba.SPECS), functools.partial(_build_celeba, False), uses_source=True,
    ),
    "celeba19": DatasetEntry(
        "celeba19", "CelebA faces 64x64 RGB + each of the 18 attributes as its own modality",
        tuple(celeba.SPECS19), functools.partial(_build_celeba, True), uses_source=True,
    ),
    "transforms": DatasetEntry(
        "transforms", "image transforms as modalities: original, grayscale, edges, (landmarks), "
        "obscured, watermarked, of --base celeba or shapes",
        (), _build_transforms, uses_source=True, options=("base",), requires=("base",),
    ),
    "custom": DatasetEntry(
        "custom", "your own arrays (--source .npz or .h5) described by --spec SPEC.yaml",
        (), _build_custom, uses_source=True, options=("spec",), requires=("source", "spec"),
    ),
}


def dataset_names() -> list[str]:
    """The known dataset names, in registry order."""
    return list(DATASETS)


def get_dataset(name: str) -> DatasetEntry:
    """The registry entry of ``name``.

    Raises:
        UserError: unknown name, listing the known ones.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}") from None
