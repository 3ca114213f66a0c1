"""Canny edge detection (Canny, 1986) in numpy, vectorised over a batch of images.

The MVAE paper (§7) made its ``edges`` modality with scikit-image's default
``skimage.feature.canny``; this follows the same steps and defaults so the result
agrees with it closely without depending on scikit-image or scipy:

1. Gaussian smoothing (sigma 1, kernel truncated at 4 sigma), zero outside the image
   and renormalised by the smoothed all-ones image, so borders are not darkened.
2. Sobel gradients (mirrored borders) and their magnitude.
3. Non-maximum suppression: a pixel survives when its magnitude is at least the
   magnitudes on both sides along the gradient, each interpolated linearly between
   the two nearest neighbours in that direction. The one-pixel image border is dropped.
4. Double threshold and hysteresis: surviving pixels at or above ``low`` are edge
   candidates; a candidate is kept when it is 8-connected through candidates to one
   at or above ``high``.
"""

from __future__ import annotations

import numpy as np

TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian weights ``[2r + 1]``, ``r = round(4 sigma)``."""
    radius = int(TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    return weights / weights.sum()


def _correlate(images: np.ndarray, weights: np.ndarray, axis: int, mode: str) -> np.ndarray:
    """Correlate ``[N, H, W]`` with 1-D ``weights`` along ``axis`` (1 or 2)."""
    radius = len(weights) // 2
    pad = [(0, 0)] * images.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(images, pad, mode=mode)
    size = images.shape[axis]
    out = np.zeros(images.shape, dtype=np.float64)
    window = [slice(None)] * images.ndim
    for k, w in enumerate(weights):
        if w:
            window[axis] = slice(k, k + size)
            out += w * padded[tuple(window)]
    return out


def smooth(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``[N, H, W]`` with zero padding, renormalised at the borders."""
    weights = gaussian_kernel(sigma)

    def blur(x: np.ndarray) -> np.ndarray:
        return _correlate(_correlate(x, weights, 1, "constant"), weights, 2, "constant")

    bleed = blur(np.ones((1,) + images.shape[1:])) + np.finfo(np.float64).eps
    return blur(images) / bleed


def sobel(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel derivatives of ``[N, H, W]`` along rows and columns (unnormalised, mirrored borders)."""
    diff, avg = np.array([-1.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0])
    d_rows = _correlate(_correlate(images, diff, 1, "symmetric"), avg, 2, "symmetric")
    d_cols = _correlate(_correlate(images, diff, 2, "symmetric"), avg, 1, "symmetric")
    return d_rows, d_cols


def non_maximum_suppression(d_rows: np.ndarray, d_cols: np.ndarray, magnitude: np.ndarray,
                            low: float) -> np.ndarray:
    """Thin edges to one pixel: ``bool [N, H, W]``, True where a pixel at or above ``low``
    is a local maximum of ``magnitude`` along its gradient."""
    n, h, w = magnitude.shape
    padded = np.pad(magnitude, ((0, 0), (1, 1), (1, 1)))

    def at(di: int, dj: int) -> np.ndarray:
        return padded[:, 1 + di:1 + di + h, 1 + dj:1 + dj + w]

    # Comparing both sides makes the gradient's sign irrelevant: point it down the rows.
    flip = d_rows < 0
    gi = np.abs(d_rows)
    gj = np.where(flip, -d_cols, d_cols)
    right = gj >= 0
    abs_j = np.abs(gj)
    mostly_rows = gi >= abs_j
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(mostly_rows, abs_j / gi, gi / abs_j)
    weight = np.nan_to_num(weight)

    diag_fwd = np.where(right, at(1, 1), at(1, -1))
    diag_back = np.where(right, at(-1, -1), at(-1, 1))
    side_fwd = np.where(right, at(0, 1), at(0, -1))
    side_back = np.where(right, at(0, -1), at(0, 1))
    near_fwd = np.where(mostly_rows, at(1, 0), side_fwd)
    near_back = np.where(mostly_rows, at(-1, 0), side_back)
    forward = near_fwd * (1 - weight) + diag_fwd * weight
    backward = near_back * (1 - weight) + diag_back * weight

    keep = (magnitude >= low) & (magnitude >= forward) & (magnitude >= backward)
    keep[:, [0, -1], :] = False
    keep[:, :, [0, -1]] = False
    return keep


def hysteresis(candidates: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Keep the 8-connected components of ``candidates`` that hold a ``strong`` pixel.

    Grows ``strong`` inside ``candidates`` one ring of neighbours at a time until it stops.
    """
    edges = strong & candidates
    count = int(edges.sum())
    while True:
        padded = np.pad(edges, ((0, 0), (1, 1), (1, 1)))
        h, w = edges.shape[1:]
        grown = np.zeros_like(edges)
        for di in range(3):
            for dj in range(3):
                grown |= padded[:, di:di + h, dj:dj + w]
        edges = grown & candidates
        new_count = int(edges.sum())
        if new_count == count:
            return edges
        count = new_count


def canny(images: np.ndarray, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> np.ndarray:
    """Canny edges of grey images with values in [0, 1].

    Args:
        images: ``float [H, W]`` or ``[N, H, W]``.
        sigma: the Gaussian's standard deviation in pixels.
        low, high: hysteresis thresholds on the Sobel gradient magnitude (scikit-image's
            defaults for float images: 0.1 and 0.2).

    Returns:
        ``bool`` of the input's shape, True on edges.
    """
    if high < low:
        raise ValueError(f"high threshold {high} is below low threshold {low}")
    images = np.asarray(images, dtype=np.float64)
    single = images.ndim == 2
    batch = images[None] if single else images
    d_rows, d_cols = sobel(smooth(batch, sigma))
    magnitude = np.hypot(d_rows, d_cols)
    candidates = non_maximum_suppression(d_rows, d_cols, magnitude, low)
    edges = hysteresis(candidates, candidates & (magnitude >= high))
    return edges[0] if single else edges
