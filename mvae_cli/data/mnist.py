"""MNIST, Fashion-MNIST and a binarised MNIST: ``image`` ``uint8 [N, 1, 28, 28]`` + ``label`` ``uint8 [N]``.

The four standard IDX files come from ``--source DIR`` (raw or ``.gz``) or, without
one, from torchvision's download into the cache folder (``$MVAE_CACHE``, else
``~/.cache/mvae``), read from the ``raw`` folder torchvision writes with the same
parser. The split is the MVAE paper's: the first 50,000 training images train, the
last 10,000 validate, the 10,000 test images test.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from mvae_cli.data.format import ModalitySpec
from mvae_cli.data.idx import read_idx
from mvae_cli.errors import UserError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
N_VALID = 10_000  # the last training images, as in the MVAE paper
SPECS = [
    ModalitySpec("image", "image", "bernoulli", (1, 28, 28)),
    ModalitySpec("label", "categorical", "categorical", (), classes=10),
]
BINARIZE_SEED = 0  # fixed, so that every --seed sees the same binary digits
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "binary-mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle boot"],
}
TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def cache_dir() -> Path:
    """Where downloads go: ``$MVAE_CACHE``, else ``~/.cache/mvae``."""
    return Path(os.environ.get("MVAE_CACHE") or Path.home() / ".cache" / "mvae")


def find_files(source: str | os.PathLike) -> dict[str, Path]:
    """Locate the four IDX files in a folder, each raw or ``.gz``.

    Returns:
        ``{"train_images" | "train_labels" | "test_images" | "test_labels": path}``.

    Raises:
        UserError: the folder is missing, or naming the first file it lacks.
    """
    folder = Path(source)
    if not folder.is_dir():
        raise UserError(f"source folder {folder} does not exist")
    found = {}
    for key, name in FILES.items():
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            raise UserError(f"source folder {folder} has no {name} (nor {name}.gz)")
    return found


def torchvision_datasets(purpose: str):
    """Import ``torchvision.datasets`` for a download, or raise one line saying why it cannot.

    A torchvision built for another torch fails at import with a RuntimeError, not an
    ImportError; both end here.
    """
    try:
        from torchvision import datasets
    except Exception as error:  # ImportError, or a torch/torchvision build mismatch
        reason = " ".join(str(error).split())[:160]
        raise UserError(f"{purpose} needs a working torchvision, and importing it failed "
                        f"({type(error).__name__}: {reason}); install torch and torchvision together "
                        "(pip install --upgrade torch torchvision)") from None
    return datasets


def download(dataset: str) -> Path:
    """Download ``mnist`` or ``fashion-mnist`` through torchvision into the cache.

    Returns:
        The ``raw`` folder holding the four IDX files.
    """
    datasets = torchvision_datasets(f"downloading {dataset}; or pass --source DIR")
    root = cache_dir()
    cls = getattr(datasets, TORCHVISION_CLASSES[dataset])
    try:
        # torchvision reports its download on stdout; keep stdout for our summary.
        with contextlib.redirect_stdout(sys.stderr):
            ds = cls(root=str(root), train=False, download=True)
    except Exception as error:  # network and mirror failures come in many types
        reason = " ".join(str(error).split())  # torchvision lists every mirror on its own line
        raise UserError(
            f"could not download {dataset} into {root} ({type(error).__name__}: {reason}); "
            "fetch the four IDX files by hand and pass --source DIR"
        ) from None
    return Path(ds.raw_folder)


def _check(arrays: dict[str, np.ndarray], files: dict[str, Path]) -> None:
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise UserError(f"{files[f'{split}_images']} holds {images.dtype} {list(images.shape)}, "
                            "not uint8 images of 28x28")
        if labels.shape != images.shape[:1] or labels.dtype != np.uint8 or labels.max(initial=0) > 9:
            raise UserError(f"{files[f'{split}_labels']} does not hold {images.shape[0]} labels 0-9")
    if arrays["train_images"].shape[0] <= N_VALID:
        raise UserError(f"{files['train_images']} has {arrays['train_images'].shape[0]} images; "
                        f"the paper split needs more than {N_VALID}")


def binarize(images: np.ndarray, seed: int = BINARIZE_SEED, chunk: int = 10_000) -> np.ndarray:
    """Sample every pixel once: 255 with probability x/255, else 0.

    Args:
        images: ``uint8 [N, ...]``.
        seed: numpy ``default_rng`` seed; the draws run over rows in order, in chunks.

    Returns:
        ``uint8 [N, ...]`` with values in {0, 255}.
    """
    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk]
        # u < x / 255 without a float copy of the images.
        out[start:start + chunk] = np.where(rng.random(block.shape, dtype=np.float32) * 255 < block, 255, 0)
    return out


def build_mnist_like(
    dataset: str, *, source=None, seed: int = 0, sizes: dict[str, int], progress=None
) -> dict[str, dict[str, np.ndarray]]:
    """Build ``mnist``, ``fashion-mnist`` or ``binary-mnist`` (a registry builder).

    ``binary-mnist`` is MNIST with every pixel sampled once as Bernoulli(x / 255) from
    numpy ``default_rng(BINARIZE_SEED)`` over the 60,000 training then the 10,000 test
    images, stored as 0/255. It stands in for Larochelle's fixed binarisation, which
    cannot be downloaded here; it is the same for every ``--seed``.

    Args:
        dataset: the registry name.
        source: a folder with the four IDX files, or None to download through torchvision.
        seed: unused; the data do not depend on it (the masks do).
        sizes: ``{split: n}``: the first n of each paper split (at most 50,000/10,000/10,000).
        progress: ``progress(task, done, total)``.

    Returns:
        ``{split: {"image": uint8 [n, 1, 28, 28], "label": uint8 [n]}}``.
    """
    if source is None:
        if progress is not None:
            progress(f"downloading {dataset}", 0, 1)
        source = download("fashion-mnist" if dataset == "fashion-mnist" else "mnist")
    files = find_files(source)
    arrays = {}
    for i, (key, path) in enumerate(files.items()):
        if progress is not None:
            progress("reading IDX files", i, len(files))
        arrays[key] = read_idx(path)
    if progress is not None:
        progress("reading IDX files", len(files), len(files))
    _check(arrays, files)
    train_images, test_images = arrays["train_images"], arrays["test_images"]
    if dataset == "binary-mnist":
        if progress is not None:
            progress("binarising", 0, 1)
        binary = binarize(np.concatenate([train_images, test_images]))
        train_images, test_images = binary[: len(train_images)], binary[len(train_images):]
        if progress is not None:
            progress("binarising", 1, 1)
    n_fit = train_images.shape[0] - N_VALID
    pools = {
        "train": (train_images[:n_fit], arrays["train_labels"][:n_fit]),
        "valid": (train_images[n_fit:], arrays["train_labels"][n_fit:]),
        "test": (test_images, arrays["test_labels"]),
    }
    splits = {}
    for split, (images, labels) in pools.items():
        n = sizes.get(split, images.shape[0])
        if n > images.shape[0]:
            raise UserError(f"--n-{split} {n} is more than the {images.shape[0]} {split} images of {dataset}")
        splits[split] = {"image": np.ascontiguousarray(images[:n, None]), "label": labels[:n].copy()}
    return splits
