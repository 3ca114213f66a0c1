"""The datasets ``mvae prepare`` can build: name -> builder.

A builder is called as ``build(seed=..., sizes=..., source=..., progress=...)`` and
returns ``{split: {modality: array [n, ...]}}`` for train, valid and test, with the
modalities of its ``specs``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mvae_cli.data import mnist, shapes
from mvae_cli.data.format import ModalitySpec
from mvae_cli.errors import UserError

Splits = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class DatasetEntry:
    """One buildable dataset.

    Attributes:
        name: the registry name, also stored as the file's ``name``.
        description: one line for help texts and docs.
        specs: the modalities, in file order.
        build: the builder (see the module docstring).
        default_sizes: ``{split: n}`` used where the caller gives none; empty when the
            source fixes the sizes.
        uses_source: whether ``--source DIR`` means anything.
    """

    name: str
    description: str
    specs: tuple[ModalitySpec, ...]
    build: Callable[..., Splits]
    default_sizes: dict[str, int] = field(default_factory=dict)
    uses_source: bool = False


def _mnist_entry(name: str, description: str) -> DatasetEntry:
    return DatasetEntry(name, description, tuple(mnist.SPECS),
                        functools.partial(mnist.build_mnist_like, name), uses_source=True)


DATASETS: dict[str, DatasetEntry] = {
    "shapes": DatasetEntry(
        "shapes", "generated 32x32 RGB shapes + shape, colour, size, xpos, ypos (no download)",
        tuple(shapes.SPECS), shapes.build_shapes, default_sizes=dict(shapes.DEFAULT_SIZES),
    ),
    "mnist": _mnist_entry("mnist", "MNIST digits 28x28 + label (paper split 50k/10k/10k)"),
    "fashion-mnist": _mnist_entry("fashion-mnist", "Fashion-MNIST 28x28 + label (split 50k/10k/10k)"),
    "binary-mnist": _mnist_entry("binary-mnist", "MNIST binarised once with a fixed seed + label"),
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
