"""Canny edges: exact on simple scenes, and in agreement with scikit-image's canny where it is installed."""

from __future__ import annotations

import numpy as np
import pytest

from mvae_cli.data import shapes
from mvae_cli.data.canny import canny, gaussian_kernel, smooth, sobel


def test_gaussian_kernel():
    k = gaussian_kernel(1.0)
    assert k.shape == (9,) and np.isclose(k.sum(), 1) and np.allclose(k, k[::-1])
    assert np.isclose(k[4] / k[5], np.exp(0.5))


def test_smoothing_keeps_a_flat_image_flat_up_to_the_border():
    flat = np.full((1, 12, 15), 0.7)
    np.testing.assert_allclose(smooth(flat, 1.0), flat)


def _step(contrast: np.ndarray, width: int = 20) -> np.ndarray:
    """A vertical step at column 10 with one contrast per row; column 9 at 30% of it, so that
    the gradient peaks on one column (a symmetric step ties, and float noise breaks ties)."""
    image = np.zeros((len(contrast), width))
    image[:, 10:] = contrast[:, None]
    image[:, 9] = 0.3 * contrast
    return image


def test_a_vertical_step_gives_one_vertical_line():
    edges = canny(_step(np.ones(20)))
    assert set(np.nonzero(edges.any(axis=0))[0]) == {9}
    assert edges[1:-1, 9].all()
    assert not edges[[0, -1]].any()  # the border is never an edge


def test_flat_and_faint_images_have_no_edges():
    assert not canny(np.full((16, 16), 0.3)).any()
    assert not canny(_step(np.full(16, 0.01))).any()  # gradient far below the low threshold


def test_hysteresis_keeps_weak_pixels_only_when_linked_to_strong_ones():
    contrast = np.linspace(1.0, 0.08, 30)  # fades from strong to weak along one edge
    image = _step(contrast)
    d_rows, d_cols = sobel(smooth(image[None], 1.0))
    peak = np.hypot(d_rows, d_cols)[0].max(axis=1)
    weak = (peak >= 0.1) & (peak < 0.5)
    weak[[0, -1]] = False
    assert weak.sum() >= 3
    edges = canny(image, low=0.1, high=0.5)
    assert edges[weak].any(axis=1).all()  # weak rows survive: they continue a strong edge
    faded = _step(np.full(30, contrast[weak].max()))  # the same weak edge with no strong part
    assert not canny(faded, low=0.1, high=0.5).any()
    assert canny(faded, low=0.1, high=peak[weak].min()).any()


def test_batch_equals_one_by_one():
    images = np.random.default_rng(0).random((3, 16, 16))
    batch = canny(images)
    for b, image in zip(batch, images):
        np.testing.assert_array_equal(b, canny(image))


def _test_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    generated = shapes.generate_split(6, np.random.SeedSequence(3))["image"]
    grey = [(0.299 * im[0] + 0.587 * im[1] + 0.114 * im[2]) / 255 for im in generated]
    blobs = smooth(rng.random((3, 48, 40)), 2.5)
    blobs = [(b - b.min()) / (b.max() - b.min()) for b in blobs]
    return grey + blobs + [rng.random((24, 30))]


def test_agrees_with_scikit_image():
    feature = pytest.importorskip("skimage.feature")
    for image in _test_images():
        mine, theirs = canny(image), feature.canny(image)
        assert theirs.any()
        agree = (mine == theirs).mean()
        iou = (mine & theirs).sum() / (mine | theirs).sum()
        assert agree > 0.99 and iou > 0.95, (agree, iou)
