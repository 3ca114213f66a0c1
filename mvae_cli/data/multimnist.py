"""``multimnist``: 0 to 4 MNIST digits on a 50x50 canvas, and the text of their classes (paper §4.3).

Layout: the four fixed locations are the corners of the canvas, each a full 28x28
MNIST patch, at (row, column) offsets

```
top-left (0, 0)       top-right (0, 22)
bottom-left (22, 0)   bottom-right (22, 22)
```

Neighbouring patches overlap by 6 pixels in the middle of the canvas, where MNIST
digits have their empty margin (their ink lies in the central 20x20 of a patch), so
digits keep their full resolution and rarely touch; where they do, pixels combine by
maximum.

Each canvas draws its digit count n uniformly from 0..4, then which n locations are
filled uniformly among the subsets of that size, then a digit for each filled
location uniformly (with replacement) from its split's MNIST pool: train canvases
from the first 50,000 training digits, valid from the last 10,000, test from the
10,000 test digits. The text is the filled locations' classes read from top-left to
bottom-right (row-major), encoded as in :mod:`mvae_cli.data.text`.

Modalities: ``image`` ``uint8 [N, 1, 50, 50]`` and ``text`` ``uint8 [N, 6]``
(sequence, vocabulary 12), with ``text_length`` ``uint8 [N]`` beside them. Each
split draws from its own stream, ``SeedSequence(seed).spawn(3)``.
"""

from __future__ import annotations

import numpy as np

from mvae_cli.data import mnist, text
from mvae_cli.data.format import ModalitySpec

SIDE = 50
PATCH = 28
OFFSETS = ((0, 0), (0, SIDE - PATCH), (SIDE - PATCH, 0), (SIDE - PATCH, SIDE - PATCH))  # row-major
SPECS = [
    ModalitySpec("image", "image", "bernoulli", (1, SIDE, SIDE)),
    ModalitySpec("text", "sequence", "categorical", (text.MAX_LEN,), classes=text.VOCAB),
]
DEFAULT_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
CHUNK = 5_000  # canvases composed at once: bounds memory to tens of MB


def compose(digits: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Place digits on canvases.

    Args:
        digits: ``uint8 [N, 4, 28, 28]``, one patch per location (row-major).
        filled: ``bool [N, 4]``, which locations show their patch.

    Returns:
        ``uint8 [N, 1, 50, 50]``: every shown patch at its location, overlaps max-combined.
    """
    n = digits.shape[0]
    canvas = np.zeros((n, 1, SIDE, SIDE), dtype=np.uint8)
    for j, (row, col) in enumerate(OFFSETS):
        region = canvas[:, 0, row:row + PATCH, col:col + PATCH]
        np.maximum(region, digits[:, j] * filled[:, j, None, None].astype(np.uint8), out=region)
    return canvas


def tokens_of(labels: np.ndarray, filled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The text of canvases: the classes of filled locations in row-major order.

    Args:
        labels: ``int [N, 4]`` the class of each location's digit.
        filled: ``bool [N, 4]``.

    Returns:
        ``(tokens uint8 [N, MAX_LEN], lengths uint8 [N])`` as :func:`text.encode_text` writes them.
    """
    n = labels.shape[0]
    tokens = np.full((n, text.MAX_LEN), text.PAD, dtype=np.uint8)
    tokens[:, 0] = text.START
    position = np.cumsum(filled, axis=1)  # 1-based slot after START of each filled location
    rows, cols = np.nonzero(filled)
    tokens[rows, position[rows, cols]] = labels[rows, cols]
    lengths = (filled.sum(axis=1) + 2).astype(np.uint8)
    return tokens, lengths


def generate_split(images: np.ndarray, labels: np.ndarray, n: int, seed: np.random.SeedSequence,
                   progress=None) -> dict[str, np.ndarray]:
    """Compose ``n`` canvases from one pool of digits.

    Args:
        images: ``uint8 [P, 28, 28]`` the pool's digits; ``labels``: ``uint8 [P]``.
        n: canvases to make.
        seed: the split's own seed sequence.
        progress: called with the number of canvases done after every chunk.

    Returns:
        ``{"image": uint8 [n, 1, 50, 50], "text": uint8 [n, 6], "text_length": uint8 [n]}``.
    """
    rng = np.random.default_rng(seed)
    count = rng.integers(0, 5, size=n)
    # Ranking four uniforms gives a uniform order of the locations; fill the first `count`.
    rank = rng.random((n, 4)).argsort(axis=1).argsort(axis=1)
    filled = rank < count[:, None]
    pick = rng.integers(0, images.shape[0], size=(n, 4))
    canvases = np.empty((n, 1, SIDE, SIDE), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        canvases[start:stop] = compose(images[pick[start:stop]], filled[start:stop])
        if progress is not None:
            progress(stop)
    tokens, lengths = tokens_of(labels[pick], filled)
    return {"image": canvases, "text": tokens, "text_length": lengths}


def build_multimnist(*, seed: int, sizes: dict[str, int], source=None, progress=None
                     ) -> dict[str, dict[str, np.ndarray]]:
    """Build the train, valid and test canvases (a registry builder).

    Args:
        seed: the dataset seed.
        sizes: ``{split: n}`` canvases per split.
        source: a folder with the four MNIST IDX files, or None to download them.
        progress: ``progress(task, done, total)``.

    Returns:
        ``{split: {"image", "text", "text_length": array [n, ...]}}``.
    """
    pools = mnist.build_mnist_like("mnist", source=source, seed=seed, sizes={}, progress=progress)
    streams = np.random.SeedSequence(seed).spawn(3)
    splits = {}
    for split, stream in zip(("train", "valid", "test"), streams):
        n = sizes[split]
        report = None
        if progress is not None:
            def report(done: int, task: str = f"composing {split}", total: int = n) -> None:
                progress(task, done, total)
        pool = pools[split]
        splits[split] = generate_split(pool["image"][:, 0], pool["label"], n, stream, report)
    return splits
