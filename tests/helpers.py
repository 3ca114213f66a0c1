"""Small synthetic datasets written through the real HDF5 contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mvae_cli.data.format import ModalitySpec, write_dataset

IMAGE_LABEL = [
    ModalitySpec("image", "image", "bernoulli", (1, 8, 8)),
    ModalitySpec("label", "categorical", "categorical", (), 4),
]


def make_dataset(path: Path, specs=IMAGE_LABEL, sizes=(200, 60, 60), seed: int = 0) -> Path:
    """Images that depend on their label (a bright block per class), so there is something to learn."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> dict[str, np.ndarray]:
        out = {}
        label = rng.integers(0, 4, n)
        for spec in specs:
            if spec.kind == "image":
                x = rng.integers(0, 60, (n, *spec.shape)).astype(np.uint8)
                for c in range(4):
                    x[label == c, :, 2 * c:2 * c + 2, :] = 230
                out[spec.name] = x
            else:
                out[spec.name] = ((label + rng.integers(0, 2, n) * (spec.name != "label")) % spec.classes).astype(np.uint8)
        return out

    write_dataset(path, "tiny", list(specs), {s: split(n) for s, n in zip(("train", "valid", "test"), sizes)}, seed=seed)
    return path
