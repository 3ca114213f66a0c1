"""CelebA (Liu et al., 2015): aligned faces at 64x64 and the 18 attributes of Perarnau et al. (2016).

The source is a folder in the official layout,

```
DIR/img_align_celeba/000001.jpg ...   the aligned and cropped JPEGs (178x218)
DIR/list_attr_celeba.txt              a count line, a line of 40 names, then "file v1 ... v40" with 1/-1
DIR/list_eval_partition.txt           "file p" with p = 0 train, 1 valid, 2 test
```

or, without one, torchvision's download into ``$MVAE_CACHE/celeba`` (needs the
internet and gdown). Each image is cut to its centred square of side
``min(148, width, height)`` (the common 148x148 crop of the 178x218 images, offsets
15 and 35) and resized to 64x64 RGB with PIL's bicubic filter (antialiased), stored
``uint8 [N, 3, 64, 64]``. The splits are the official partition in file order.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mvae_cli.data.format import ModalitySpec
from mvae_cli.data.mnist import cache_dir, torchvision_datasets
from mvae_cli.errors import UserError

ATTRIBUTES = (
    "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses",
    "Gray_Hair", "Heavy_Makeup", "Male", "Mouth_Slightly_Open", "Mustache", "Pale_Skin",
    "Receding_Hairline", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Hat",
)
IMAGE_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
PARTITIONS = {"train": 0, "valid": 1, "test": 2}
SIDE = 64
CROP = 148
CHUNK = 256  # images decoded and written at once

IMAGE_SPEC = ModalitySpec("image", "image", "bernoulli", (3, SIDE, SIDE))
SPECS = [IMAGE_SPEC, ModalitySpec("attributes", "binary", "bernoulli", (len(ATTRIBUTES),))]
SPECS19 = [IMAGE_SPEC] + [ModalitySpec(a.lower(), "binary", "bernoulli", (1,)) for a in ATTRIBUTES]

HOW_TO_GET = (
    "download img_align_celeba.zip, list_attr_celeba.txt and list_eval_partition.txt from the CelebA "
    "site (mmlab.ie.cuhk.edu.hk/projects/CelebA.html, its Google Drive) into one folder DIR, unzip the "
    "images there (DIR/img_align_celeba/000001.jpg ...) and pass --source DIR; or run with internet access"
)


@dataclass(frozen=True)
class CelebASplit:
    """One split of the source: image paths and their 18 attributes (``uint8 [n, 18]``, 1/0)."""

    paths: list[Path]
    attributes: np.ndarray


def download() -> Path:
    """Fetch CelebA through torchvision into ``$MVAE_CACHE/celeba``; returns that folder.

    Raises:
        UserError: any failure (offline, Google Drive quota, no gdown), saying how to get the data.
    """
    datasets = torchvision_datasets(f"downloading celeba; or {HOW_TO_GET}")
    root = cache_dir()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the summary
            datasets.CelebA(root=str(root), split="all", target_type="attr", download=True)
    except Exception as error:  # network, quota and missing-gdown failures come in many types
        reason = " ".join(str(error).split())[:200]
        raise UserError(f"could not download CelebA into {root} ({type(error).__name__}: {reason}); "
                        f"{HOW_TO_GET}") from None
    return root / "celeba"


def _lines(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise UserError(f"the CelebA source has no {path.name} (looked for {path}); {HOW_TO_GET}")
    try:
        return [line.split() for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file") from None


def read_attributes(path: Path) -> dict[str, np.ndarray]:
    """Read ``list_attr_celeba.txt``: ``{file name: uint8 [18]}`` (1 where the file says 1, else 0).

    Raises:
        UserError: missing file, a missing one of the 18 columns, a malformed row.
    """
    lines = _lines(path)
    if len(lines) < 2 or len(lines[0]) != 1 or not lines[0][0].isdigit():
        raise UserError(f"{path} does not start with a count line and a line of attribute names")
    names = lines[1]
    missing = [a for a in ATTRIBUTES if a not in names]
    if missing:
        raise UserError(f"{path} has no column {', '.join(missing)} (needs the 18 attributes "
                        f"{', '.join(ATTRIBUTES)})")
    columns = [names.index(a) + 1 for a in ATTRIBUTES]  # +1: the file name comes first
    table = {}
    for number, row in enumerate(lines[2:], start=3):
        if len(row) != len(names) + 1 or any(v not in ("1", "-1") for v in row[1:]):
            raise UserError(f"{path} line {number}: expected a file name and {len(names)} values of 1 or -1")
        table[row[0]] = np.array([row[c] == "1" for c in columns], dtype=np.uint8)
    if len(table) != int(lines[0][0]):
        raise UserError(f"{path} announces {lines[0][0]} images but lists {len(table)}")
    return table


def read_partition(path: Path) -> dict[str, list[str]]:
    """Read ``list_eval_partition.txt``: ``{split: [file name, ...]}`` in file order.

    Raises:
        UserError: missing file, a malformed row, a split with no image.
    """
    splits: dict[str, list[str]] = {s: [] for s in PARTITIONS}
    names = {v: k for k, v in PARTITIONS.items()}
    for number, row in enumerate(_lines(path), start=1):
        if len(row) != 2 or row[1] not in ("0", "1", "2"):
            raise UserError(f"{path} line {number}: expected a file name and a partition 0, 1 or 2")
        splits[names[int(row[1])]].append(row[0])
    for split, files in splits.items():
        if not files:
            raise UserError(f"{path} puts no image in the {split} partition ({PARTITIONS[split]})")
    return splits


def read_source(source: str | os.PathLike | None, sizes: dict[str, int] | None = None) -> dict[str, CelebASplit]:
    """Index a CelebA source: the official partition with every image's path and attributes.

    Nothing is decoded yet; every listed image must exist.

    Args:
        source: the folder (official layout), or None to download it.
        sizes: ``{split: n}`` keeps the first n of a partition.

    Raises:
        UserError: a missing folder or file (named), a malformed list, an image without
            attributes, a size beyond the partition.
    """
    folder = download() if source is None else Path(source)
    if not folder.is_dir():
        raise UserError(f"CelebA source folder {folder} does not exist; {HOW_TO_GET}")
    image_dir = folder / IMAGE_DIR
    attributes = read_attributes(folder / ATTR_FILE)
    partition = read_partition(folder / PARTITION_FILE)
    if not image_dir.is_dir():
        raise UserError(f"the CelebA source has no {IMAGE_DIR} folder (looked for {image_dir}); {HOW_TO_GET}")
    present = set(os.listdir(image_dir))
    out = {}
    for split, files in partition.items():
        n = (sizes or {}).get(split, len(files))
        if n > len(files):
            raise UserError(f"--n-{split} {n} is more than the {len(files)} {split} images of the CelebA source")
        files = files[:n]
        for name in files:
            if name not in attributes:
                raise UserError(f"{name} is in {PARTITION_FILE} but not in {ATTR_FILE}")
            if name not in present:
                raise UserError(f"{image_dir / name} is listed in {PARTITION_FILE} but does not exist")
        out[split] = CelebASplit([image_dir / f for f in files], np.stack([attributes[f] for f in files]))
    return out


def load_image(path: Path, side: int = SIDE) -> np.ndarray:
    """Decode one image, cut its centred square of side ``min(148, w, h)`` and resize it.

    Returns:
        ``uint8 [3, side, side]``.

    Raises:
        UserError: naming a file that does not decode.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserError(f"{path} is not a readable image ({' '.join(str(error).split())})") from None
    width, height = image.size
    crop = min(CROP, width, height)
    left, top = (width - crop) // 2, (height - crop) // 2
    image = image.crop((left, top, left + crop, top + crop)).resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def iter_images(paths: list[Path], chunk: int = CHUNK,
                progress: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """Decode images in order, ``chunk`` at a time: yields ``uint8 [k, 3, 64, 64]`` blocks.

    Args:
        paths: the image files.
        progress: called with the number of images done after every block.
    """
    for start in range(0, len(paths), chunk):
        block = paths[start:start + chunk]
        yield np.stack([load_image(p) for p in block])
        if progress is not None:
            progress(start + len(block))


def attribute_arrays(attributes: np.ndarray, per_attribute: bool) -> dict[str, np.ndarray]:
    """The attribute modalities: ``{"attributes": uint8 [n, 18]}``, or (celeba19) one
    ``uint8 [n, 1]`` per attribute named in lower case."""
    if not per_attribute:
        return {"attributes": np.ascontiguousarray(attributes, dtype=np.uint8)}
    return {a.lower(): np.ascontiguousarray(attributes[:, [j]], dtype=np.uint8) for j, a in enumerate(ATTRIBUTES)}
