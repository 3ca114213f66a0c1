"""``shapes``: a procedurally generated multimodal dataset that needs no download.

Every example is an RGB image ``uint8 [3, 32, 32]`` of one filled shape on a dark,
noisy background, plus the five attributes that drew it, each a categorical modality
``uint8 []``:

| modality | classes | values                                   |
| -------- | ------- | ---------------------------------------- |
| shape    | 3       | square, circle, triangle                 |
| colour   | 4       | red, green, blue, yellow                 |
| size     | 2       | small (area ~36 px), large (area ~100 px) |
| xpos     | 3       | left, centre, right (centre x 8, 16, 24)  |
| ypos     | 3       | top, middle, bottom (centre y 8, 16, 24)  |

Attributes are drawn independently and uniformly. Position is jittered by up to one
pixel and colour by up to 20 levels per channel; every pixel gets uniform noise in
[-12, 12]. The attributes stay recoverable from the pixels: shape pixels are brighter
than 160 in some channel and background pixels darker than 45, so thresholding gives
the shape's mask exactly; its mean colour, pixel count and bounding-box centre give
colour, size and position.

Each split draws from its own stream, ``SeedSequence(seed).spawn(3)``, so a split does
not change when another split's size does.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mvae_cli.data.format import ModalitySpec

SHAPE_NAMES = ("square", "circle", "triangle")
COLOUR_NAMES = ("red", "green", "blue", "yellow")
PALETTE = np.array([[220, 40, 40], [40, 200, 60], [50, 90, 235], [230, 210, 40]], dtype=np.int16)
SIZE_NAMES = ("small", "large")
AREAS = (36.0, 100.0)  # pixels; each shape is scaled to cover the same area at a size
XPOS_NAMES = ("left", "centre", "right")
YPOS_NAMES = ("top", "middle", "bottom")
CENTRES = (8.0, 16.0, 24.0)  # in pixel units, with pixel i covering [i, i + 1)
SIDE = 32
POSITION_JITTER = 1.0
COLOUR_JITTER = 20
NOISE = 12
BACKGROUND = (8, 32)  # the range of the per-image grey level
CHUNK = 1024  # images generated at once: bounds memory to a few tens of MB

ATTRIBUTES = {
    "shape": SHAPE_NAMES,
    "colour": COLOUR_NAMES,
    "size": SIZE_NAMES,
    "xpos": XPOS_NAMES,
    "ypos": YPOS_NAMES,
}
SPECS = [ModalitySpec("image", "image", "bernoulli", (3, SIDE, SIDE))] + [
    ModalitySpec(name, "categorical", "categorical", (), classes=len(values))
    for name, values in ATTRIBUTES.items()
]
DEFAULT_SIZES = {"train": 20_000, "valid": 2_000, "test": 2_000}


def draw_attributes(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw ``n`` independent, uniform attribute tuples: ``{name: uint8 [n]}``."""
    return {name: rng.integers(0, len(values), size=n).astype(np.uint8)
            for name, values in ATTRIBUTES.items()}


def render(attributes: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Draw the images of given attributes, vectorised over the batch.

    Args:
        attributes: ``{name: int [n]}`` for shape, colour, size, xpos, ypos.
        rng: the source of position jitter, colour jitter and pixel noise.

    Returns:
        ``uint8 [n, 3, 32, 32]``.
    """
    shape, colour, size = (attributes[k].astype(np.intp) for k in ("shape", "colour", "size"))
    n = shape.size
    centres = np.asarray(CENTRES)
    cx = centres[attributes["xpos"]] + rng.uniform(-POSITION_JITTER, POSITION_JITTER, n)
    cy = centres[attributes["ypos"]] + rng.uniform(-POSITION_JITTER, POSITION_JITTER, n)
    area = np.asarray(AREAS)[size][:, None, None]
    # A pixel belongs to the shape when its centre does.
    grid = np.arange(SIDE, dtype=np.float64) + 0.5
    dx = grid[None, None, :] - cx[:, None, None]  # [n, 1, 32]
    dy = grid[None, :, None] - cy[:, None, None]  # [n, 32, 1]

    half_side = np.sqrt(area) / 2
    square = (np.abs(dx) <= half_side) & (np.abs(dy) <= half_side)
    circle = dx**2 + dy**2 <= area / np.pi
    # Apex up, base = height = b, so the area b^2 / 2 matches; centred on its bounding box.
    half_base = np.sqrt(2 * area) / 2
    triangle = (np.abs(dy) <= half_base) & (np.abs(dx) <= (dy + half_base) / 2)
    inside = np.select([shape[:, None, None] == k for k in range(3)], [square, circle, triangle])

    background = rng.integers(BACKGROUND[0], BACKGROUND[1] + 1, size=(n, 1, 1, 1), dtype=np.int16)
    paint = PALETTE[colour] + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, (n, 3), dtype=np.int16)
    image = np.where(inside[:, None], paint[:, :, None, None], background)
    image = image + rng.integers(-NOISE, NOISE + 1, size=(n, 3, SIDE, SIDE), dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def generate_split(
    n: int, seed: np.random.SeedSequence, progress: Callable[[int], None] | None = None
) -> dict[str, np.ndarray]:
    """Generate one split: ``{"image": uint8 [n, 3, 32, 32], attribute: uint8 [n]}``.

    Args:
        n: number of examples.
        seed: the split's own seed sequence.
        progress: called with the number of images done after every chunk.
    """
    rng = np.random.default_rng(seed)
    arrays = draw_attributes(n, rng)
    images = np.empty((n, 3, SIDE, SIDE), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        images[start:stop] = render({k: v[start:stop] for k, v in arrays.items()}, rng)
        if progress is not None:
            progress(stop)
    return {"image": images, **arrays}


def build_shapes(
    *, seed: int, sizes: dict[str, int], progress=None, source=None
) -> dict[str, dict[str, np.ndarray]]:
    """Generate the train, valid and test splits (a registry builder).

    Args:
        seed: the dataset seed.
        sizes: ``{split: n}`` for train, valid and test.
        progress: ``progress(task, done, total)`` after every chunk.
        source: unused (``shapes`` needs no source files).

    Returns:
        ``{split: {modality: array [n, ...]}}``.
    """
    streams = np.random.SeedSequence(seed).spawn(3)
    splits = {}
    for split, stream in zip(("train", "valid", "test"), streams):
        n = sizes[split]
        report = None
        if progress is not None:
            def report(done: int, task: str = f"generating {split}", total: int = n) -> None:
                progress(task, done, total)
        splits[split] = generate_split(n, stream, report)
    return splits
