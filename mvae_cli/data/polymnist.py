"""``polymnist``: five image modalities showing MNIST digits of one class, each on its own
background, plus the label (PolyMNIST, Sutter et al. 2021, the MoPoE-VAE paper, §5).

Every example draws its class through an anchor digit of its split's MNIST pool
(train: the first 50,000 training digits; valid: the last 10,000; test: the 10,000
test digits); each of the five modalities shows a digit of that class drawn
independently (with replacement) from the pool, so the modalities share only the
class. Modality m is a random 28x28 crop of background m, and where the digit has
ink (pixel > 127) the crop's colours are inverted (255 − value), as in the MoPoE
authors' generator.

Backgrounds: five RGB images. By default they are textures generated here
procedurally from the fixed seed :data:`TEXTURE_SEED` (so every installation builds
the same ones, offline): ``clouds`` (octaves of smooth noise, blue–white), ``stripes``
(warped diagonal waves, brown–orange), ``checks`` (a noisy checkerboard, greens),
``cells`` (Voronoi cells of random colours) and ``marble`` (a turbulent sine, purple–grey),
:data:`TEXTURE_SIDE` pixels square. ``--backgrounds DIR`` takes five images of your own
instead (the MoPoE paper's are photographs), used in file-name order.

Modalities: ``m0`` … ``m4`` ``uint8 [N, 3, 28, 28]`` and ``label`` (10 classes). Each split
draws from its own stream, ``SeedSequence(seed).spawn(3)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mvae_cli.data import mnist
from mvae_cli.data.format import ModalitySpec
from mvae_cli.errors import UserError

N_MODALITIES = 5
SIDE = 28
TEXTURE_SEED = 20210301
TEXTURE_SIDE = 128
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPECS = [ModalitySpec(f"m{m}", "image", "bernoulli", (3, SIDE, SIDE)) for m in range(N_MODALITIES)] + [
    ModalitySpec("label", "categorical", "categorical", (), 10)]
DEFAULT_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
CHUNK = 5_000  # examples composed at once: bounds memory to tens of MB


def _smooth_noise(rng: np.random.Generator, side: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled uniform noise of ``cells`` x ``cells`` knots, tiling: ``float [side, side]`` in [0, 1]."""
    knots = rng.random((cells, cells))
    t = np.arange(side) * cells / side
    i0 = np.floor(t).astype(int)
    f = t - i0
    i1 = (i0 + 1) % cells
    rows = knots[i0] * (1 - f)[:, None] + knots[i1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i1] * f[None, :]


def _blend(field: np.ndarray, low, high) -> np.ndarray:
    """Map ``field [H, W]`` in [0, 1] onto the colour ramp low → high: ``uint8 [H, W, 3]``."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    return np.clip(low + (high - low) * field[..., None], 0, 255).round().astype(np.uint8)


def procedural_textures(seed: int = TEXTURE_SEED, side: int = TEXTURE_SIDE) -> np.ndarray:
    """The five default backgrounds: ``uint8 [5, side, side, 3]``, the same for the same seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    clouds = sum(_smooth_noise(rng, side, 2 ** k) / 2 ** (k - 1) for k in range(2, 7)) / 2
    warp = _smooth_noise(rng, side, 4)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (6 * (x + y) + 1.5 * warp))
    checker = ((np.floor(x * 8) + np.floor(y * 8)) % 2) * 0.6 + 0.4 * _smooth_noise(rng, side, 32)
    seeds = rng.random((24, 2))
    distance = np.hypot(x[..., None] - seeds[:, 0], y[..., None] - seeds[:, 1])
    palette = rng.integers(30, 256, (24, 3))
    cells = palette[distance.argmin(axis=-1)].astype(np.uint8)
    turbulence = sum(_smooth_noise(rng, side, 2 ** k) / 2 ** k for k in range(2, 6))
    marble = 0.5 + 0.5 * np.sin(2 * np.pi * (3 * x + 2.5 * turbulence))
    return np.stack([
        _blend(clouds / clouds.max(), (40, 70, 160), (235, 240, 255)),
        _blend(stripes, (90, 50, 20), (250, 170, 60)),
        _blend(checker / checker.max(), (10, 60, 20), (150, 230, 120)),
        cells,
        _blend(marble, (70, 30, 90), (215, 210, 225)),
    ])


def load_backgrounds(folder: str | Path) -> list[np.ndarray]:
    """Five background images from ``folder`` (file-name order) as ``uint8 [H, W, 3]`` each.

    Raises:
        UserError: not a folder, not exactly five images, an image that does not decode
            or is smaller than 28x28.
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--backgrounds {folder} is not a folder; give a folder with five images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) != N_MODALITIES:
        raise UserError(f"--backgrounds {folder} holds {len(files)} images; polymnist needs exactly five "
                        f"(one per modality, in file-name order; {', '.join(IMAGE_SUFFIXES)})")
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as error:
            raise UserError(f"background {path} is not a readable image ({error})") from None
        if array.shape[0] < SIDE or array.shape[1] < SIDE:
            raise UserError(f"background {path} is {array.shape[1]}x{array.shape[0]}; "
                            f"it must be at least {SIDE}x{SIDE}")
        images.append(array)
    return images


def compose(digits: np.ndarray, background: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Digits on crops of one background, their ink inverting the crop's colours.

    Args:
        digits: ``uint8 [n, 28, 28]``.
        background: ``uint8 [H, W, 3]``.
        rows, cols: ``int [n]``, the top-left corner of each crop.

    Returns:
        ``uint8 [n, 3, 28, 28]``.
    """
    offsets = np.arange(SIDE)
    crops = background[(rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]]
    ink = (digits > 127)[..., None]
    return np.where(ink, 255 - crops, crops).transpose(0, 3, 1, 2)


def generate_split(images: np.ndarray, labels: np.ndarray, n: int, backgrounds: list[np.ndarray],
                   seed: np.random.SeedSequence, progress=None) -> dict[str, np.ndarray]:
    """Compose ``n`` PolyMNIST examples from one pool of digits.

    Args:
        images: ``uint8 [P, 28, 28]`` the pool; ``labels``: ``uint8 [P]``.
        n: examples to make.
        backgrounds: five ``uint8 [H, W, 3]`` images.
        seed: the split's own seed sequence.
        progress: called with the number of examples done after every chunk.

    Returns:
        ``{"m0": uint8 [n, 3, 28, 28], …, "m4": …, "label": uint8 [n]}``.
    """
    rng = np.random.default_rng(seed)
    label = labels[rng.integers(0, len(labels), size=n)]
    by_class = [np.flatnonzero(labels == c) for c in range(10)]
    picks = np.empty((n, N_MODALITIES), dtype=np.int64)
    for c in np.unique(label):
        rows = np.flatnonzero(label == c)
        picks[rows] = by_class[c][rng.integers(0, len(by_class[c]), size=(len(rows), N_MODALITIES))]
    corners = [(rng.integers(0, bg.shape[0] - SIDE + 1, size=n), rng.integers(0, bg.shape[1] - SIDE + 1, size=n))
               for bg in backgrounds]
    out = {f"m{m}": np.empty((n, 3, SIDE, SIDE), dtype=np.uint8) for m in range(N_MODALITIES)}
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        for m, (background, (rows, cols)) in enumerate(zip(backgrounds, corners)):
            out[f"m{m}"][start:stop] = compose(images[picks[start:stop, m]], background,
                                               rows[start:stop], cols[start:stop])
        if progress is not None:
            progress(stop)
    out["label"] = label.astype(np.uint8)
    return out


def build_polymnist(*, seed: int, sizes: dict[str, int], source=None, progress=None, backgrounds=None
                    ) -> dict[str, dict[str, np.ndarray]]:
    """Build the train, valid and test splits (a registry builder).

    Args:
        seed: the dataset seed.
        sizes: ``{split: n}`` examples per split.
        source: a folder with the four MNIST IDX files, or None to download them.
        progress: ``progress(task, done, total)``.
        backgrounds: a folder with five background images, or None for the procedural textures.
    """
    images = procedural_textures() if backgrounds is None else load_backgrounds(backgrounds)
    pools = mnist.build_mnist_like("mnist", source=source, seed=seed, sizes={}, progress=progress)
    splits = {}
    for split, stream in zip(("train", "valid", "test"), np.random.SeedSequence(seed).spawn(3)):
        n = sizes[split]
        report = None
        if progress is not None:
            def report(done: int, task: str = f"composing {split}", total: int = n) -> None:
                progress(task, done, total)
        pool = pools[split]
        if len(pool["label"]) == 0 and n > 0:
            raise UserError(f"the MNIST source has no {split} digits to draw {n} examples from")
        splits[split] = generate_split(pool["image"][:, 0], pool["label"], n, list(images), stream, report)
    return splits
