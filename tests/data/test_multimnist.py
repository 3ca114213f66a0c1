"""MultiMNIST: digits at four fixed places, max-combined, and a text that reads them row by row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mvae_cli.data import multimnist
from mvae_cli.data.format import read_dataset
from mvae_cli.data.prepare import prepare_dataset
from mvae_cli.data.text import decode_tokens
from tests.data.cli_helpers import invoke, row

N_TRAIN_DIGITS = 30
N_TEST_DIGITS = 20
SIZES = {"train": 300, "valid": 40, "test": 50}


def _digit(i: int) -> np.ndarray:
    """Digit ``i`` of the fake source: ink only in rows/cols 6..21, every ink pixel = 8 (i + 1).

    Ink that stays 6 pixels inside its patch cannot reach a neighbouring patch (they
    overlap by 6), so each patch region of a canvas shows exactly one source digit,
    identified by its ink value.
    """
    image = np.zeros((28, 28), np.uint8)
    rng = np.random.default_rng(i)
    image[6:22, 6:22] = np.where(rng.random((16, 16)) < 0.5, 8 * (i + 1), 0)
    image[13, 6:22] = 8 * (i + 1)  # never empty
    return image


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A source whose 30 training digits are identifiable; the paper keeps the last 10,000 for validation."""
    from tests.data.conftest import write_idx

    folder = tmp_path_factory.mktemp("multimnist_src")
    train = np.stack([_digit(i) for i in range(N_TRAIN_DIGITS)])
    labels = (np.arange(N_TRAIN_DIGITS) * 7 % 10).astype(np.uint8)
    rng = np.random.default_rng(1)
    valid = rng.integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
    write_idx(folder / "train-images-idx3-ubyte", np.concatenate([train, valid]))
    write_idx(folder / "train-labels-idx1-ubyte.gz",
              np.concatenate([labels, rng.integers(0, 10, 10_000, dtype=np.uint8)]))
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (N_TEST_DIGITS, 28, 28), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte", rng.integers(0, 10, N_TEST_DIGITS, dtype=np.uint8))
    return folder, train, labels


@pytest.fixture(scope="module")
def built(source, tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    out = prepare_dataset("multimnist", tmp_path_factory.mktemp("mm") / "mm.h5", source=source[0],
                          seed=5, sizes=SIZES)
    with read_dataset(out) as ds:
        assert [s.name for s in ds.specs] == ["image", "text"]
        assert ds.specs[1].kind == "sequence" and ds.specs[1].classes == 12 and ds.specs[1].shape == (6,)
        splits = {split: ds.load(split) for split in SIZES}
        for split in SIZES:
            splits[split]["text_length"] = ds.array(split, "text_length")[()]
    return splits


def test_canvases_show_the_digits_their_text_names(built, source):
    _, digits, labels = source
    train = built["train"]
    assert train["image"].shape == (300, 1, 50, 50) and train["image"].dtype == np.uint8
    assert train["text"].dtype == np.uint8 and train["text_length"].dtype == np.uint8
    for canvas, tokens, length in zip(train["image"][:, 0], train["text"], train["text_length"]):
        expected = ""
        for row_, col in multimnist.OFFSETS:
            region = canvas[row_:row_ + 28, col:col + 28]
            if not region.any():
                continue
            i = region.max() // 8 - 1  # the ink value names the source digit
            np.testing.assert_array_equal(region, digits[i])
            expected += str(labels[i])
        assert decode_tokens(tokens) == expected
        assert length == len(expected) + 2
        assert tokens[0] == 10 and (tokens[1 + len(expected):] == 11).all()


def test_counts_and_places_are_uniform():
    images = np.zeros((10, 28, 28), np.uint8)
    out = multimnist.generate_split(images, np.arange(10, dtype=np.uint8), 5_000, np.random.SeedSequence(0))
    counts = out["text_length"].astype(int) - 2
    freq = np.bincount(counts, minlength=5) / 5_000
    assert np.all(np.abs(freq - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 5_000)), freq


def test_compose_max_combines_overlaps():
    digits = np.zeros((1, 4, 28, 28), np.uint8)
    digits[0, 0] = 100  # top-left patch, everywhere
    digits[0, 3] = 50   # bottom-right patch
    digits[0, 1] = 200  # top-right patch, but not shown
    canvas = multimnist.compose(digits, np.array([[True, False, False, True]]))[0, 0]
    assert canvas[0, 0] == 100 and canvas[49, 49] == 50
    assert canvas[25, 25] == 100  # both patches cover it: the larger wins
    assert canvas[0, 49] == 0 and canvas[49, 0] == 0


def test_splits_draw_from_their_own_pool(built, source):
    _, digits, _ = source
    ink = {int(v) for v in np.unique(digits)}
    assert set(np.unique(built["train"]["image"])) <= ink
    # valid and test canvases use the random-noise digits, which have bright pixels train lacks.
    assert built["valid"]["image"].max() > max(ink) and built["test"]["image"].max() > max(ink)
    assert {s: len(a["text"]) for s, a in built.items()} == SIZES


def test_deterministic_for_a_seed(built, source, tmp_path):
    again = prepare_dataset("multimnist", tmp_path / "a.h5", source=source[0], seed=5, sizes=SIZES)
    other = prepare_dataset("multimnist", tmp_path / "b.h5", source=source[0], seed=6, sizes=SIZES)
    with read_dataset(again) as a, read_dataset(other) as b:
        np.testing.assert_array_equal(a.load("train")["image"], built["train"]["image"])
        np.testing.assert_array_equal(a.load("test")["text"], built["test"]["text"])
        assert not np.array_equal(b.load("train")["text"], built["train"]["text"])


def test_cli_summary_and_masks(source, tmp_path):
    result = invoke("prepare", "multimnist", "--source", source[0], "--out", tmp_path / "m.h5",
                    "--n-train", 100, "--n-valid", 10, "--n-test", 10, "--supervision", "0.1")
    assert result.exit_code == 0, result.output
    assert row(result.stdout, "text") == ["sequence", "categorical", "6", "tokens", "12"]
    assert row(result.stdout, "image") == ["image", "bernoulli", "1×50×50", "-"]
    assert row(result.stdout, "f=0.1") == ["10", "45", "45", "0"]
