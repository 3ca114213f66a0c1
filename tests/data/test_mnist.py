"""The MNIST family: the paper split from IDX files, binarisation, the torchvision download path."""

from __future__ import annotations

import hashlib
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mvae_cli.data import mnist
from mvae_cli.data.format import read_dataset
from mvae_cli.data.prepare import prepare_dataset
from mvae_cli.errors import UserError

REAL_MNIST = Path("/work/shared/data/mnist")


def _load(path: Path) -> dict[str, dict[str, np.ndarray]]:
    with read_dataset(path) as ds:
        assert ds.modality_names == ["image", "label"]
        return {split: ds.load(split) for split in ("train", "valid", "test")}


def test_paper_split_from_a_source_folder(tmp_path, fake_mnist):
    folder, arrays = fake_mnist
    out = prepare_dataset("mnist", tmp_path / "m.h5", source=folder)
    data = _load(out)
    images, labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte.gz"]
    n_fit = len(images) - 10_000
    np.testing.assert_array_equal(data["train"]["image"][:, 0], images[:n_fit])
    np.testing.assert_array_equal(data["train"]["label"], labels[:n_fit])
    np.testing.assert_array_equal(data["valid"]["image"][:, 0], images[n_fit:])
    np.testing.assert_array_equal(data["valid"]["label"], labels[n_fit:])
    np.testing.assert_array_equal(data["test"]["image"][:, 0], arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(data["test"]["label"], arrays["t10k-labels-idx1-ubyte.gz"])
    assert data["train"]["image"].shape[1:] == (1, 28, 28) and data["train"]["image"].dtype == np.uint8


def test_sizes_take_the_first_examples_of_each_split(tmp_path, fake_mnist):
    folder, arrays = fake_mnist
    out = prepare_dataset("fashion-mnist", tmp_path / "f.h5", source=folder,
                          sizes={"train": 30, "valid": 20, "test": 10})
    data = _load(out)
    assert {s: len(d["label"]) for s, d in data.items()} == {"train": 30, "valid": 20, "test": 10}
    n_fit = len(arrays["train-images-idx3-ubyte"]) - 10_000
    np.testing.assert_array_equal(data["valid"]["image"][:, 0], arrays["train-images-idx3-ubyte"][n_fit:n_fit + 20])
    with read_dataset(out) as ds:
        assert ds.name == "fashion-mnist"


def test_more_than_the_source_holds(tmp_path, fake_mnist):
    with pytest.raises(UserError, match="--n-test 41 is more than the 40 test images"):
        prepare_dataset("mnist", tmp_path / "m.h5", source=fake_mnist[0], sizes={"test": 41})
    assert not (tmp_path / "m.h5").exists()


def test_binarize_samples_each_pixel_once():
    images = np.tile(np.array([0, 64, 128, 255], dtype=np.uint8), (20_000, 1))
    binary = mnist.binarize(images, seed=0, chunk=7_000)
    assert set(np.unique(binary)) <= {0, 255}
    rate = (binary == 255).mean(axis=0)
    p = np.array([0, 64, 128, 255]) / 255
    assert rate[0] == 0 and rate[3] == 1
    assert np.all(np.abs(rate - p) <= 4 * np.sqrt(p * (1 - p) / 20_000))
    # Chunking does not change the draws' order.
    np.testing.assert_array_equal(binary, mnist.binarize(images, seed=0, chunk=7_000))


def test_binary_mnist_is_the_same_for_every_seed(tmp_path, fake_mnist):
    a = _load(prepare_dataset("binary-mnist", tmp_path / "a.h5", source=fake_mnist[0], seed=0))
    b = _load(prepare_dataset("binary-mnist", tmp_path / "b.h5", source=fake_mnist[0], seed=7))
    for split in a:
        np.testing.assert_array_equal(a[split]["image"], b[split]["image"])
        assert set(np.unique(a[split]["image"])) <= {0, 255}
    # Mean intensity is kept: E[binary] = x.
    grey = fake_mnist[1]["train-images-idx3-ubyte"][:120].astype(float)
    assert abs(a["train"]["image"].mean() - grey.mean()) < 4 * 255 * 0.5 / math.sqrt(grey.size)


def test_missing_file_is_named(tmp_path, fake_mnist_writer):
    fake_mnist_writer(tmp_path / "src")
    (tmp_path / "src" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="has no t10k-labels-idx1-ubyte"):
        prepare_dataset("mnist", tmp_path / "m.h5", source=tmp_path / "src")
    with pytest.raises(UserError, match="does not exist"):
        prepare_dataset("mnist", tmp_path / "m.h5", source=tmp_path / "elsewhere")
    assert not (tmp_path / "m.h5").exists()


def test_wrong_arrays_are_named(tmp_path, fake_mnist_writer, idx_writer):
    fake_mnist_writer(tmp_path / "src")
    idx_writer(tmp_path / "src" / "t10k-images-idx3-ubyte", np.zeros((40, 32, 32), np.uint8))
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte holds uint8 \\[40, 32, 32\\]"):
        prepare_dataset("mnist", tmp_path / "m.h5", source=tmp_path / "src")
    idx_writer(tmp_path / "src" / "t10k-images-idx3-ubyte", np.zeros((40, 28, 28), np.uint8))
    idx_writer(tmp_path / "src" / "t10k-labels-idx1-ubyte.gz", np.full(40, 10, np.uint8))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz does not hold 40 labels 0-9"):
        prepare_dataset("mnist", tmp_path / "m.h5", source=tmp_path / "src")


def _fake_torchvision(fake_mnist_writer, fail: bool = False) -> types.ModuleType:
    """A stand-in for torchvision whose dataset classes write IDX files like the real download."""

    class _Downloaded:
        def __init__(self, root, train, download):
            assert download and not train
            if fail:
                raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")
            self.raw_folder = str(Path(root) / type(self).__name__ / "raw")
            fake_mnist_writer(Path(self.raw_folder))

    module = types.ModuleType("torchvision")
    module.datasets = types.SimpleNamespace(MNIST=type("MNIST", (_Downloaded,), {}),
                                            FashionMNIST=type("FashionMNIST", (_Downloaded,), {}))
    return module


def test_download_goes_to_the_cache(tmp_path, monkeypatch, fake_mnist_writer):
    monkeypatch.setitem(sys.modules, "torchvision", _fake_torchvision(fake_mnist_writer))
    monkeypatch.setenv("MVAE_CACHE", str(tmp_path / "cache"))
    out = prepare_dataset("fashion-mnist", tmp_path / "f.h5", sizes={"train": 5})
    assert (tmp_path / "cache" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert _load(out)["test"]["label"].shape == (40,)


def test_failed_download_says_to_use_source(tmp_path, monkeypatch, fake_mnist_writer):
    monkeypatch.setitem(sys.modules, "torchvision", _fake_torchvision(fake_mnist_writer, fail=True))
    monkeypatch.setenv("MVAE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="could not download mnist.*--source DIR"):
        prepare_dataset("mnist", tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_cache_dir_default(monkeypatch):
    monkeypatch.delenv("MVAE_CACHE", raising=False)
    assert mnist.cache_dir() == Path.home() / ".cache" / "mvae"


# The published md5 sums of the uncompressed files (see /work/shared/data/mnist/README.md).
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


@pytest.mark.slow
@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="needs the real MNIST files")
def test_real_mnist(tmp_path, idx_writer):
    from mvae_cli.data.idx import read_idx

    for name, md5 in MD5.items():
        array = read_idx(REAL_MNIST / f"{name}.gz")
        idx_writer(tmp_path / name, array)  # re-encoding what we parsed gives back the exact file
        assert hashlib.md5((tmp_path / name).read_bytes()).hexdigest() == md5, name
    out = prepare_dataset("mnist", tmp_path / "mnist.h5", source=REAL_MNIST, supervision=[0.01, 0.1, 1])
    data = _load(out)
    assert {s: len(d["label"]) for s, d in data.items()} == {"train": 50_000, "valid": 10_000, "test": 10_000}
    assert data["train"]["label"][:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first digits
    assert data["test"]["label"][:3].tolist() == [7, 2, 1]
    with read_dataset(out) as ds:
        assert [m.n_paired for m in ds.mask_info()] == [500, 5_000, 50_000]
    binary = _load(prepare_dataset("binary-mnist", tmp_path / "b.h5", source=REAL_MNIST))
    assert set(np.unique(binary["train"]["image"])) == {0, 255}
    assert abs(binary["train"]["image"].mean() - data["train"]["image"].mean()) < 0.5
