"""The shapes generator: deterministic for a seed, its attributes recoverable from its pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mvae_cli.data import shapes

SIZES = {"train": 600, "valid": 50, "test": 50}


@pytest.fixture(scope="module")
def data():
    return shapes.build_shapes(seed=0, sizes=SIZES)


def test_arrays_match_the_specs(data):
    assert [s.name for s in shapes.SPECS] == ["image", "shape", "colour", "size", "xpos", "ypos"]
    for split, n in SIZES.items():
        assert data[split]["image"].shape == (n, 3, 32, 32)
        assert data[split]["image"].dtype == np.uint8
        for spec in shapes.SPECS[1:]:
            values = data[split][spec.name]
            assert values.shape == (n,) and values.dtype == np.uint8
            assert values.max() < spec.classes
    assert [s.classes for s in shapes.SPECS[1:]] == [3, 4, 2, 3, 3]


def test_deterministic_for_a_seed(data):
    again = shapes.build_shapes(seed=0, sizes=SIZES)
    other = shapes.build_shapes(seed=1, sizes=SIZES)
    for split in SIZES:
        for name in data[split]:
            np.testing.assert_array_equal(again[split][name], data[split][name])
        assert not np.array_equal(other[split]["image"], data[split]["image"])


def test_splits_use_their_own_streams(data):
    # Changing the training size leaves valid and test as they were.
    bigger = shapes.build_shapes(seed=0, sizes={**SIZES, "train": 700})
    for split in ("valid", "test"):
        np.testing.assert_array_equal(bigger[split]["image"], data[split]["image"])
    assert not np.array_equal(data["valid"]["image"], data["test"]["image"])


def test_attributes_are_roughly_uniform():
    train = shapes.build_shapes(seed=5, sizes={"train": 6000, "valid": 1, "test": 1})["train"]
    for spec in shapes.SPECS[1:]:
        p = 1 / spec.classes
        freq = np.bincount(train[spec.name], minlength=spec.classes) / 6000
        assert np.all(np.abs(freq - p) < 4 * math.sqrt(p * (1 - p) / 6000)), spec.name


def _recover(image: np.ndarray) -> dict[str, int]:
    """Read the five attributes back from one image ``uint8 [3, 32, 32]``."""
    bright = image.max(axis=0) > 100
    ys, xs = np.nonzero(bright)
    count = bright.sum()
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = count / (height * width)  # a square fills its bounding box
    rows = bright.sum(axis=1)[ys.min():ys.max() + 1]
    widening = int(rows[-1]) - int(rows[0])  # a triangle (apex up) widens by >= 6 px, a circle by <= 4
    mean_colour = image[:, bright].mean(axis=1)
    centres = np.asarray(shapes.CENTRES)
    # Pixel i covers [i, i + 1), so its centre is i + 0.5.
    cx, cy = (xs.min() + xs.max()) / 2 + 0.5, (ys.min() + ys.max()) / 2 + 0.5
    return {
        "shape": 0 if fill > 0.95 else 2 if widening >= 5 else 1,
        "colour": int(np.argmin(((shapes.PALETTE - mean_colour) ** 2).sum(axis=1))),
        "size": int(count > 68),  # areas 36 and 100 pixels
        "xpos": int(np.argmin(np.abs(centres - cx))),
        "ypos": int(np.argmin(np.abs(centres - cy))),
    }


def test_attributes_are_recoverable_from_pixels(data):
    train = data["train"]
    for i in range(SIZES["train"]):
        recovered = _recover(train["image"][i])
        expected = {name: int(train[name][i]) for name in shapes.ATTRIBUTES}
        assert recovered == expected, (i, recovered, expected)


def test_background_and_shape_are_separated_by_brightness(data):
    brightness = data["train"]["image"].max(axis=1)
    # Background tops out at 32 + 12, the dimmest paint at 200 - 20 - 12.
    assert brightness[brightness <= 100].max() <= 44
    assert brightness[brightness > 100].min() >= 168


def test_progress_reports_every_chunk():
    calls = []
    shapes.build_shapes(seed=0, sizes={"train": shapes.CHUNK + 5, "valid": 3, "test": 3},
                        progress=lambda task, done, total: calls.append((task, done, total)))
    assert calls == [("generating train", shapes.CHUNK, shapes.CHUNK + 5),
                     ("generating train", shapes.CHUNK + 5, shapes.CHUNK + 5),
                     ("generating valid", 3, 3), ("generating test", 3, 3)]
