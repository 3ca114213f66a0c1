"""Helpers for the data tests: an IDX writer independent of the parser, and a fake MNIST folder."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
             np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: magic, big-endian dims, big-endian values."""
    dtype = array.dtype.newbyteorder("=")
    header = bytes([0, 0, IDX_CODES[dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as IDX, gzip-compressed when ``path`` ends in ``.gz``."""
    data = idx_bytes(array)
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=1) as handle:
            handle.write(data)
    else:
        path.write_bytes(data)
    return path


N_FAKE_TRAIN = 10_000 + 120  # the paper split keeps the last 10,000 for validation
N_FAKE_TEST = 40


def write_fake_mnist(folder: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Four small MNIST-shaped IDX files (images raw, labels gzip) in ``folder``; returns their arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_FAKE_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, N_FAKE_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_FAKE_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, N_FAKE_TEST, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array)
    return arrays


@pytest.fixture(scope="session")
def fake_mnist(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """A read-only-by-convention fake MNIST source folder and its arrays."""
    folder = tmp_path_factory.mktemp("fake_mnist")
    return folder, write_fake_mnist(folder)


@pytest.fixture
def idx_writer():
    """The :func:`write_idx` helper (fixtures spare tests a package-relative import)."""
    return write_idx


@pytest.fixture
def fake_mnist_writer():
    """The :func:`write_fake_mnist` helper."""
    return write_fake_mnist
