"""What a modality is, and the names a dataset file may use for its splits, kinds and likelihoods.

The lowest module of ``data/``: the file format (:mod:`~mvae_cli.data.format`), its layout checks
(:mod:`~mvae_cli.data.layout`), the dataset builders and the model all read these, and this
module reads none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "valid", "test")
KINDS = ("image", "categorical", "binary", "sequence")
LIKELIHOODS = ("bernoulli", "categorical")


@dataclass(frozen=True)
class ModalitySpec:
    """What one modality is.

    Attributes:
        name: unique name, e.g. ``image`` or ``label``.
        kind: ``image`` (uint8 pixels, values x/255 in [0, 1]), ``categorical`` (class ids),
            ``binary`` (0/1 vector) or ``sequence`` (token ids).
        likelihood: ``bernoulli`` or ``categorical``.
        shape: the shape of one example, e.g. ``(1, 28, 28)`` or ``()`` for a class id.
        classes: number of classes (categorical), vocabulary size (sequence), else 0.
    """

    name: str
    kind: str
    likelihood: str
    shape: tuple[int, ...]
    classes: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"modality {self.name!r}: unknown kind {self.kind!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"modality {self.name!r}: unknown likelihood {self.likelihood!r}")
