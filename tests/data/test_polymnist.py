"""PolyMNIST: five modalities of one class, each a crop of its own background inverted under the digit's ink."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mvae_cli.data import polymnist
from mvae_cli.data.format import read_dataset
from mvae_cli.errors import UserError
from tests.data.cli_helpers import expect_user_error, invoke

N_TRAIN_DIGITS = 40
SIZES = {"train": 120, "valid": 30, "test": 30}


def _digit(i: int, label: int) -> np.ndarray:
    """Digit ``i`` of the fake source: its class in ink as a bar at row 2 + 2·label, plus noise ink."""
    image = np.zeros((28, 28), np.uint8)
    image[2 + 2 * label, 4:24] = 255
    image[np.random.default_rng(i).random((28, 28)) < 0.05] = 200
    image[22:26, 2:6] = 100  # grey below the ink threshold: never inverts
    return image


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    from tests.data.conftest import write_idx

    folder = tmp_path_factory.mktemp("polymnist_src")
    labels = (np.arange(N_TRAIN_DIGITS + 10_000) % 10).astype(np.uint8)
    images = np.stack([_digit(i, l) for i, l in enumerate(labels)])
    write_idx(folder / "train-images-idx3-ubyte", images)
    write_idx(folder / "train-labels-idx1-ubyte", labels)
    write_idx(folder / "t10k-images-idx3-ubyte", images[:50])
    write_idx(folder / "t10k-labels-idx1-ubyte", labels[:50])
    return folder


def test_the_procedural_textures_are_fixed_distinct_and_textured():
    first, second = polymnist.procedural_textures(), polymnist.procedural_textures()
    assert first.shape == (5, 128, 128, 3) and first.dtype == np.uint8
    assert np.array_equal(first, second)
    means = first.reshape(5, -1, 3).mean(axis=1)
    assert min(np.abs(means[i] - means[j]).max() for i in range(5) for j in range(i + 1, 5)) > 10
    assert (first.reshape(5, -1).std(axis=1) > 15).all()  # textures, not flat colours


def test_ink_inverts_the_crop_and_the_rest_is_the_crop():
    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    digits = rng.choice(np.array([0, 100, 127, 128, 255], np.uint8), (3, 28, 28))
    rows, cols = np.array([0, 12, 5]), np.array([22, 0, 9])
    out = polymnist.compose(digits, background, rows, cols)
    assert out.shape == (3, 3, 28, 28)
    for k in range(3):
        crop = background[rows[k]:rows[k] + 28, cols[k]:cols[k] + 28].transpose(2, 0, 1)
        ink = digits[k] > 127
        assert np.array_equal(out[k][:, ink], 255 - crop[:, ink])
        assert np.array_equal(out[k][:, ~ink], crop[:, ~ink])


def test_every_modality_shows_a_digit_of_the_examples_class():
    labels = (np.arange(200) % 10).astype(np.uint8)
    images = np.stack([_digit(i, l) for i, l in enumerate(labels)])
    flat = [np.zeros((30, 30, 3), np.uint8)] * 5  # ink shows as 255, the rest as 0
    split = polymnist.generate_split(images, labels, 150, flat, np.random.SeedSequence(0))
    assert split["label"].shape == (150,) and np.bincount(split["label"], minlength=10).min() > 0
    for m in range(5):
        bars = (split[f"m{m}"][:, 0, :, 4:24] == 255).all(axis=2)  # [n, 28]: rows fully inked
        shown = bars[:, 2:22:2].argmax(axis=1)  # the class bar of row 2 + 2·class
        assert np.array_equal(shown, split["label"]), m
    # The five digits are drawn independently: modalities do not repeat one image.
    assert not np.array_equal(split["m0"], split["m1"])


def test_prepare_writes_five_rgb_modalities_and_the_label(source):
    from mvae_cli.data.prepare import prepare_dataset

    out = prepare_dataset("polymnist", source.parent / "poly.h5", source=source, sizes=SIZES, seed=3)
    with read_dataset(out) as ds:
        assert [s.name for s in ds.specs] == ["m0", "m1", "m2", "m3", "m4", "label"]
        for split, n in SIZES.items():
            assert ds.array(split, "m4").shape == (n, 3, 28, 28) and ds.array(split, "label").shape == (n,)


def test_the_same_seed_builds_the_same_file_and_another_seed_does_not(source, tmp_path):
    from mvae_cli.data.prepare import prepare_dataset

    arrays = []
    for seed, name in ((1, "a"), (1, "b"), (2, "c")):
        out = prepare_dataset("polymnist", tmp_path / f"{name}.h5", source=source, sizes=SIZES, seed=seed)
        with read_dataset(out) as ds:
            arrays.append(ds.array("test", "m2")[:])
    assert np.array_equal(arrays[0], arrays[1]) and not np.array_equal(arrays[0], arrays[2])


def test_backgrounds_of_your_own_are_used_in_file_name_order(source, tmp_path):
    from PIL import Image

    from mvae_cli.data.prepare import prepare_dataset

    folder = tmp_path / "bg"
    folder.mkdir()
    for m in range(5):  # flat colours: every uninked pixel of modality m has colour 40·(m+1)
        Image.fromarray(np.full((30, 33, 3), 40 * (m + 1), np.uint8)).save(folder / f"{m}.png")
    out = prepare_dataset("polymnist", tmp_path / "own.h5", source=source, sizes=SIZES, backgrounds=folder)
    with read_dataset(out) as ds:
        for m in range(5):
            image = ds.array("valid", f"m{m}")[:][0]
            assert set(np.unique(image)) == {40 * (m + 1), 255 - 40 * (m + 1)}


@pytest.mark.parametrize("count, side, message", [
    (4, 30, "holds 4 images; polymnist needs exactly five"),
    (5, 20, "it must be at least 28x28"),
])
def test_bad_backgrounds_are_one_line(tmp_path, count, side, message):
    from PIL import Image

    for m in range(count):
        Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(tmp_path / f"{m}.png")
    with pytest.raises(UserError, match=message):
        polymnist.load_backgrounds(tmp_path)


def test_the_cli_builds_polymnist_and_refuses_backgrounds_elsewhere(source, tmp_path):
    result = invoke("prepare", "polymnist", "--source", source, "--out", tmp_path / "p.h5",
                    "--n-train", "50", "--n-valid", "10", "--n-test", "10", "--supervision", "0.1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.h5").is_file()
    result = invoke("prepare", "shapes", "--backgrounds", str(tmp_path), "--out", str(tmp_path / "s.h5"))
    expect_user_error(result, "--backgrounds is only for polymnist")
    assert not (tmp_path / "s.h5").exists()
