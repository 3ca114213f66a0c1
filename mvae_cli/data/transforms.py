"""``transforms``: image transformations as modalities (the MVAE paper, §7 and Fig. 6).

Every modality is made from one RGB image ``uint8 [3, H, W]`` (CelebA at 64x64 or
``shapes`` at 32x32) and stored as an image modality, ``uint8 [N, C, H, W]``:

| modality    | C | what                                                                          |
| ----------- | - | ----------------------------------------------------------------------------- |
| original    | 3 | the image                                                                     |
| grayscale   | 1 | luminance, ITU-R 601: ``(299 R + 587 G + 114 B + 500) // 1000`` (PIL's "L")    |
| edges       | 1 | Canny edges of the grayscale image (sigma 1, thresholds 0.1/0.2), 0 or 255    |
| landmarks   | 1 | facial-landmark mask, 0 or 255; CelebA only, and only with a detector         |
| obscured    | 3 | the right half (columns ``W // 2`` on) set to black                           |
| watermarked | 3 | a fixed overlay: "MVAE" in a 5x7 pixel font inside a ring, blended 50% white  |

``landmarks`` needs ``face_alignment`` or ``dlib`` (with its 68-point model in
``$MVAE_DLIB_SHAPE_PREDICTOR``); the 68 points are drawn as the usual face outline
(jaw, brows, nose, eyes, lips). Without a detector the modality is left out and the
dataset's root ``notes`` say so.
"""

from __future__ import annotations

import functools
import os
from typing import Callable

import numpy as np

from mvae_cli.data.canny import canny
from mvae_cli.data.format import ModalitySpec

NAMES = ("original", "grayscale", "edges", "landmarks", "obscured", "watermarked")
LUMA = (299, 587, 114)  # per mille
WATERMARK_TEXT = "MVAE"
WATERMARK_OPACITY = 0.5
FONT = {  # 5x7 glyphs, one string per row
    "M": ("10001", "11011", "10101", "10101", "10001", "10001", "10001"),
    "V": ("10001", "10001", "10001", "10001", "10001", "01010", "00100"),
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "E": ("11111", "10000", "10000", "11110", "10000", "10000", "11111"),
}
# The 68-point (iBUG 300-W) layout: runs of points joined by lines; True closes the run.
LANDMARK_RUNS = ((0, 17, False), (17, 22, False), (22, 27, False), (27, 31, False), (31, 36, False),
                 (36, 42, True), (42, 48, True), (48, 60, True), (60, 68, True))

LandmarkDetector = Callable[[np.ndarray], "np.ndarray | None"]
"""``detect(image uint8 [H, W, 3]) -> float [68, 2]`` (x, y) points, or None for no face."""


def transform_specs(channels: int, side: int, landmarks: bool) -> list[ModalitySpec]:
    """The modalities for images ``[channels, side, side]``, in the paper's order."""
    widths = {"original": channels, "grayscale": 1, "edges": 1, "landmarks": 1,
              "obscured": channels, "watermarked": channels}
    return [ModalitySpec(name, "image", "bernoulli", (widths[name], side, side))
            for name in NAMES if landmarks or name != "landmarks"]


def grayscale(images: np.ndarray) -> np.ndarray:
    """``uint8 [N, 3, H, W]`` -> luminance ``uint8 [N, 1, H, W]`` (ITU-R 601, rounded half up)."""
    weighted = sum(w * images[:, c].astype(np.int32) for c, w in enumerate(LUMA))
    return ((weighted + 500) // 1000).astype(np.uint8)[:, None]


def edges(gray: np.ndarray) -> np.ndarray:
    """Canny edges of ``uint8 [N, 1, H, W]`` grey images: ``uint8 [N, 1, H, W]``, 255 on edges."""
    return canny(gray[:, 0] / 255.0).astype(np.uint8)[:, None] * 255


def obscure(images: np.ndarray) -> np.ndarray:
    """The images with their right half (columns ``W // 2`` on) black."""
    out = images.copy()
    out[..., images.shape[-1] // 2:] = 0
    return out


@functools.lru_cache(maxsize=8)
def watermark_alpha(height: int, width: int) -> np.ndarray:
    """The fixed watermark's opacity ``float32 [H, W]``: 0 outside, ``WATERMARK_OPACITY`` on it.

    "MVAE" in the 5x7 font, scaled by ``max(1, width // 32)`` and centred, inside a
    ring of radius 0.42 of the smaller side.
    """
    scale = max(1, min(height, width) // 32)
    glyphs = [np.array([[c == "1" for c in row] for row in FONT[ch]]) for ch in WATERMARK_TEXT]
    gap = np.zeros((7, 1), dtype=bool)
    text = np.concatenate(sum(([g, gap] for g in glyphs), [])[:-1], axis=1)
    text = np.kron(text, np.ones((scale, scale), dtype=bool))
    mask = np.zeros((height, width), dtype=bool)
    top, left = (height - text.shape[0]) // 2, (width - text.shape[1]) // 2
    rows, cols = np.nonzero(text)
    inside = (rows + top >= 0) & (rows + top < height) & (cols + left >= 0) & (cols + left < width)
    mask[rows[inside] + top, cols[inside] + left] = True
    y, x = np.mgrid[:height, :width] + 0.5
    radius = np.hypot(y - height / 2, x - width / 2)
    ring = 0.42 * min(height, width)
    mask |= np.abs(radius - ring) <= scale / 2
    alpha = mask.astype(np.float32) * WATERMARK_OPACITY
    alpha.setflags(write=False)
    return alpha


def watermark(images: np.ndarray) -> np.ndarray:
    """The images under the fixed watermark: ``round(x (1 - a) + 255 a)`` per pixel."""
    alpha = watermark_alpha(*images.shape[-2:])
    return np.rint(images * (1 - alpha) + 255 * alpha).astype(np.uint8)


def landmark_mask(points: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """Draw 68 landmark points as the face outline: ``uint8 [1, H, W]``, 255 on the lines.

    Args:
        points: ``float [68, 2]`` (x, y) in pixels, or None (no face: an empty mask).
    """
    mask = np.zeros((height, width), dtype=bool)
    if points is not None:
        points = np.asarray(points, dtype=np.float64)
        for start, stop, closed in LANDMARK_RUNS:
            run = points[start:stop]
            ends = np.concatenate([run[1:], run[:1]]) if closed else run[1:]
            for (x0, y0), (x1, y1) in zip(run, ends):
                steps = int(np.ceil(max(abs(x1 - x0), abs(y1 - y0)))) + 1
                xs = np.rint(np.linspace(x0, x1, steps)).astype(int)
                ys = np.rint(np.linspace(y0, y1, steps)).astype(int)
                ok = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
                mask[ys[ok], xs[ok]] = True
    return mask.astype(np.uint8)[None] * 255


def find_landmark_detector() -> tuple[LandmarkDetector | None, str]:
    """A facial-landmark detector if one is installed, and a line saying which (or why none)."""
    try:
        import face_alignment
    except ImportError:
        face_alignment = None
    if face_alignment is not None:
        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or getattr(face_alignment.LandmarksType, "_2D")
        model = face_alignment.FaceAlignment(kind, device="cpu")

        def detect_fa(image: np.ndarray):
            # The face detector wants faces bigger than 64 pixels: look at a 4x enlargement.
            big = np.kron(image, np.ones((4, 4, 1), dtype=np.uint8))
            found = model.get_landmarks_from_image(big)
            return None if not found else np.asarray(found[0])[:, :2] / 4

        return detect_fa, "landmarks from face_alignment (68 points)"
    try:
        import dlib
    except ImportError:
        return None, ("landmarks left out: no facial-landmark detector is installed "
                      "(pip install face-alignment, or dlib with $MVAE_DLIB_SHAPE_PREDICTOR)")
    predictor_path = os.environ.get("MVAE_DLIB_SHAPE_PREDICTOR", "")
    if not os.path.isfile(predictor_path):
        return None, ("landmarks left out: dlib is installed but $MVAE_DLIB_SHAPE_PREDICTOR does not name "
                      "its 68-point model (shape_predictor_68_face_landmarks.dat)")
    faces, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(predictor_path)

    def detect_dlib(image: np.ndarray):
        found = faces(image, 1)
        # CelebA faces are aligned and fill the frame: without a detection, use the whole image.
        box = found[0] if len(found) else dlib.rectangle(0, 0, image.shape[1] - 1, image.shape[0] - 1)
        shape = predictor(image, box)
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=float)

    return detect_dlib, "landmarks from dlib (68 points)"


def apply_transforms(images: np.ndarray, detector: LandmarkDetector | None = None) -> dict[str, np.ndarray]:
    """Every transformed modality of a batch.

    Args:
        images: ``uint8 [N, 3, H, W]``.
        detector: makes the ``landmarks`` modality; None leaves it out.

    Returns:
        ``{name: uint8 [N, C, H, W]}`` for the names of :func:`transform_specs`.
    """
    gray = grayscale(images)
    out = {"original": images, "grayscale": gray, "edges": edges(gray)}
    if detector is not None:
        h, w = images.shape[-2:]
        out["landmarks"] = np.stack([landmark_mask(detector(np.ascontiguousarray(im.transpose(1, 2, 0))), h, w)
                                     for im in images])
    out["obscured"] = obscure(images)
    out["watermarked"] = watermark(images)
    return out
