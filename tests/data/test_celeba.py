"""CelebA and CelebA19 from a tiny source in the official layout: partition, crop, attributes, bad input."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mvae_cli.data import celeba
from mvae_cli.data.format import read_dataset
from mvae_cli.data.prepare import prepare_dataset
from mvae_cli.errors import UserError
from tests.data.celeba_fixture import (ALL_ATTRIBUTES, attribute_value, face_colour, make_tiny_celeba,
                                       partition_of)
from tests.data.cli_helpers import expect_user_error, invoke, row

N = 12


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_tiny_celeba(tmp_path_factory.mktemp("celeba"), n=N)


def _indices(split: str) -> list[int]:
    code = {"train": 0, "valid": 1, "test": 2}[split]
    return [i for i in range(N) if partition_of(i, N) == code]


def _expected_attributes(split: str) -> np.ndarray:
    columns = [ALL_ATTRIBUTES.index(a) for a in celeba.ATTRIBUTES]
    return np.array([[attribute_value(i, j) == 1 for j in columns] for i in _indices(split)], dtype=np.uint8)


@pytest.fixture(scope="module")
def celeba_file(source, tmp_path_factory) -> Path:
    calls = []
    out = prepare_dataset("celeba", tmp_path_factory.mktemp("out") / "c.h5", source=source,
                          supervision=[0.5], progress=lambda *a: calls.append(a))
    assert ("images train", 7, 7) in calls and ("images test", 2, 2) in calls
    return out


def test_partition_attributes_and_images(celeba_file):
    with read_dataset(celeba_file) as ds:
        assert ds.sizes == {"train": 7, "valid": 3, "test": 2}
        assert ds.modality_names == ["image", "attributes"]
        assert ds.specs[1].kind == "binary" and ds.specs[1].likelihood == "bernoulli" and ds.specs[1].shape == (18,)
        assert ds.array("train", "image").chunks is not None  # filled piece by piece
        for split in ds.sizes:
            data = ds.load(split)
            np.testing.assert_array_equal(data["attributes"], _expected_attributes(split))
            assert data["image"].shape == (ds.sizes[split], 3, 64, 64) and data["image"].dtype == np.uint8
            for image, i in zip(data["image"], _indices(split)):
                # The centred 148x148 crop holds only the face colour; the green border is cut off.
                error = np.abs(image.astype(int) - np.array(face_colour(i))[:, None, None])
                assert error.mean() < 4, (split, i, error.mean())
                assert error[:, 4:-4, 4:-4].max() <= 6
        assert [m.n_paired for m in ds.mask_info()] == [4]


def test_attribute_values_are_the_files(source):
    # Cross-check the parser against the text itself: "Smiling" of image 000005.jpg.
    lines = (source / "list_attr_celeba.txt").read_text().splitlines()
    header, fifth = lines[1].split(), lines[2 + 4].split()
    value = fifth[1 + header.index("Smiling")]
    table = celeba.read_attributes(source / "list_attr_celeba.txt")
    assert table["000005.jpg"][celeba.ATTRIBUTES.index("Smiling")] == (value == "1")


def test_celeba19_has_one_modality_per_attribute(source, tmp_path):
    out = prepare_dataset("celeba19", tmp_path / "c19.h5", source=source, sizes={"train": 5})
    with read_dataset(out) as ds:
        assert len(ds.specs) == 19
        assert ds.modality_names[1:] == [a.lower() for a in celeba.ATTRIBUTES]
        assert ds.modality_names[1] == "bald" and "smiling" in ds.modality_names
        assert all(s.kind == "binary" and s.shape == (1,) for s in ds.specs[1:])
        assert ds.sizes == {"train": 5, "valid": 3, "test": 2}
        data = ds.load("train")
        expected = _expected_attributes("train")[:5]
        for j, attribute in enumerate(celeba.ATTRIBUTES):
            np.testing.assert_array_equal(data[attribute.lower()], expected[:, [j]])


def test_cli_summary(source, tmp_path):
    result = invoke("prepare", "celeba", "--source", source, "--out", tmp_path / "c.h5", "--n-train", 3)
    assert result.exit_code == 0, result.output
    assert row(result.stdout, "attributes") == ["binary", "bernoulli", "18", "-"]
    assert row(result.stdout, "image") == ["image", "bernoulli", "3×64×64", "-"]
    assert row(result.stdout, "train") == ["3"]


@pytest.fixture
def broken(tmp_path) -> tuple[Path, Path]:
    """A fresh tiny source to break, and an existing output that must survive."""
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    return make_tiny_celeba(tmp_path / "src", n=6), out


def _run_broken(source: Path, out: Path, *fragments: str) -> None:
    expect_user_error(invoke("prepare", "celeba", "--source", source, "--out", out, "--force"), *fragments)
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.h5", "src"]


def test_missing_attribute_file(broken):
    source, out = broken
    (source / "list_attr_celeba.txt").unlink()
    _run_broken(source, out, "list_attr_celeba.txt", "--source DIR")


def test_missing_partition_file(broken):
    source, out = broken
    (source / "list_eval_partition.txt").unlink()
    _run_broken(source, out, "list_eval_partition.txt")


def test_jpeg_that_does_not_decode(broken):
    source, out = broken
    bad = source / "img_align_celeba" / "000004.jpg"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated
    _run_broken(source, out, str(bad), "not a readable image")
    bad.write_bytes(b"<html>quota exceeded</html>")
    _run_broken(source, out, str(bad), "not a readable image")


def test_missing_column(broken):
    source, out = broken
    path = source / "list_attr_celeba.txt"
    lines = [line.split() for line in path.read_text().splitlines()]
    drop = lines[1].index("Smiling")
    lines[1].pop(drop)
    for cells in lines[2:]:
        cells.pop(drop + 1)
    path.write_text("\n".join(" ".join(c) for c in lines) + "\n")
    _run_broken(source, out, "has no column Smiling")


def test_missing_image_and_malformed_row(broken):
    source, out = broken
    (source / "img_align_celeba" / "000002.jpg").unlink()
    _run_broken(source, out, "000002.jpg", "does not exist")
    make_tiny_celeba(source, n=6)
    path = source / "list_attr_celeba.txt"
    path.write_text(path.read_text().replace("000003.jpg -1", "000003.jpg 0", 1))
    _run_broken(source, out, "line 5", "1 or -1")


def test_more_than_the_partition_holds(source, tmp_path):
    with pytest.raises(UserError, match="--n-valid 4 is more than the 3 valid images"):
        prepare_dataset("celeba", tmp_path / "c.h5", source=source, sizes={"valid": 4})
    assert not (tmp_path / "c.h5").exists()


def test_failed_download_says_how_to_get_the_data(tmp_path, monkeypatch):
    class CelebA:
        def __init__(self, root, split, target_type, download):
            raise RuntimeError("Failed to resolve 'drive.google.com'\n(network unreachable)")

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(CelebA=CelebA)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setenv("MVAE_CACHE", str(tmp_path / "cache"))
    line = expect_user_error(invoke("prepare", "celeba", "--out", tmp_path / "c.h5"),
                             "could not download CelebA", "list_attr_celeba.txt", "list_eval_partition.txt",
                             "img_align_celeba", "--source DIR")
    assert "network unreachable" in line
    assert not (tmp_path / "c.h5").exists()


def test_download_is_read_from_the_cache(tmp_path, monkeypatch):
    class CelebA:
        def __init__(self, root, split, target_type, download):
            make_tiny_celeba(Path(root) / "celeba", n=4)

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(CelebA=CelebA)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setenv("MVAE_CACHE", str(tmp_path / "cache"))
    out = prepare_dataset("celeba", tmp_path / "c.h5")
    with read_dataset(out) as ds:
        assert sum(ds.sizes.values()) == 4
    assert os.path.isdir(tmp_path / "cache" / "celeba" / "img_align_celeba")
