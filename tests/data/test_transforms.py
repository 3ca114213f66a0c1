"""Image transforms as modalities (paper §7): built from shapes offline, and from a tiny CelebA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mvae_cli.data import shapes, transforms
from mvae_cli.data.format import read_dataset
from mvae_cli.data.prepare import prepare_dataset
from mvae_cli.errors import UserError
from tests.data.celeba_fixture import make_tiny_celeba
from tests.data.cli_helpers import expect_user_error, invoke, row

SIZES = {"train": 40, "valid": 6, "test": 5}


@pytest.fixture(scope="module")
def from_shapes(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    out = prepare_dataset("transforms", tmp_path_factory.mktemp("tr") / "t.h5", base="shapes", seed=2,
                          sizes=SIZES, supervision=[0.5])
    with read_dataset(out) as ds:
        return out, ds.load("train")


def test_modalities_and_notes(from_shapes):
    out, _ = from_shapes
    with read_dataset(out) as ds:
        assert ds.modality_names == ["original", "grayscale", "edges", "obscured", "watermarked"]
        assert [s.shape for s in ds.specs] == [(3, 32, 32), (1, 32, 32), (1, 32, 32), (3, 32, 32), (3, 32, 32)]
        assert all(s.kind == "image" and s.likelihood == "bernoulli" for s in ds.specs)
        assert ds.sizes == SIZES
        assert ds.attrs["base"] == "shapes"
        assert json.loads(ds.attrs["notes"]) == ["landmarks left out: shapes are not faces"]
        assert ds.mask_info()[0].n_paired == 20


def test_original_is_the_shapes_image(from_shapes):
    expected = shapes.build_shapes(seed=2, sizes=SIZES)["train"]["image"]
    np.testing.assert_array_equal(from_shapes[1]["original"], expected)


def test_grayscale_is_the_luminance(from_shapes):
    rgb = from_shapes[1]["original"].astype(np.int64)
    luma = (299 * rgb[:, 0] + 587 * rgb[:, 1] + 114 * rgb[:, 2] + 500) // 1000
    np.testing.assert_array_equal(from_shapes[1]["grayscale"][:, 0], luma)
    # and PIL's "L" conversion is the same formula
    from PIL import Image

    pil = np.asarray(Image.fromarray(from_shapes[1]["original"][0].transpose(1, 2, 0)).convert("L"))
    np.testing.assert_array_equal(pil, from_shapes[1]["grayscale"][0, 0])


def test_obscured_right_half_is_black(from_shapes):
    original, obscured = from_shapes[1]["original"], from_shapes[1]["obscured"]
    assert (obscured[..., 16:] == 0).all()
    np.testing.assert_array_equal(obscured[..., :16], original[..., :16])


def test_watermark_is_fixed_and_deterministic(from_shapes):
    original, marked = (from_shapes[1][k].astype(np.float64) for k in ("original", "watermarked"))
    alpha = transforms.watermark_alpha(32, 32)
    assert set(np.unique(alpha)) == {0.0, 0.5} and 0.05 < (alpha > 0).mean() < 0.5
    np.testing.assert_array_equal(marked, np.rint(original * (1 - alpha) + 255 * alpha))
    # Over a black image the overlay itself shows: the same pixels at every size of call.
    black = np.zeros((2, 3, 32, 32), np.uint8)
    np.testing.assert_array_equal(transforms.watermark(black)[0], transforms.watermark(black)[1])
    np.testing.assert_array_equal(transforms.watermark(black)[0, 0], np.rint(alpha * 255))
    assert transforms.watermark_alpha(64, 64).shape == (64, 64)


def test_edges_trace_the_shape_boundary(from_shapes):
    original, edges = from_shapes[1]["original"], from_shapes[1]["edges"][:, 0]
    assert set(np.unique(edges)) <= {0, 255}
    for image, edge in zip(original, edges > 0):
        inside = image.max(axis=0) > 100  # shape pixels are brighter than 160 in some channel
        boundary = inside & ~_erode(inside) | ~inside & _dilate(inside)
        near = _dilate(boundary)  # within a pixel of the boundary
        assert edge.any()
        assert edge[near].sum() >= 0.9 * edge.sum()  # edges sit on the boundary
        inner_boundary = inside & ~_erode(inside)
        assert _dilate(edge)[inner_boundary].mean() > 0.7  # and follow most of it


def _dilate(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    return np.any([padded[i:i + mask.shape[0], j:j + mask.shape[1]] for i in range(3) for j in range(3)], axis=0)


def _erode(mask: np.ndarray) -> np.ndarray:
    return ~_dilate(~mask)


def test_deterministic_for_a_seed(from_shapes, tmp_path):
    out = prepare_dataset("transforms", tmp_path / "t.h5", base="shapes", seed=2, sizes=SIZES)
    with read_dataset(out) as ds:
        again = ds.load("train")
    for name, array in from_shapes[1].items():
        np.testing.assert_array_equal(again[name], array)


def test_landmark_mask_draws_the_outline():
    points = np.stack([np.linspace(5, 58, 68), np.linspace(10, 50, 68)], axis=1)
    mask = transforms.landmark_mask(points, 64, 64)
    assert mask.shape == (1, 64, 64) and set(np.unique(mask)) == {0, 255}
    assert mask[0, 10, 5] == 255 and mask[0, 50, 58] == 255
    assert not transforms.landmark_mask(None, 64, 64).any()


@pytest.fixture(scope="module")
def celeba_source(tmp_path_factory) -> Path:
    return make_tiny_celeba(tmp_path_factory.mktemp("celeba"), n=6)


def test_celeba_base_without_a_detector(celeba_source, tmp_path, monkeypatch):
    monkeypatch.setattr(transforms, "find_landmark_detector", lambda: (None, "landmarks left out: none here"))
    result = invoke("prepare", "transforms", "--base", "celeba", "--source", celeba_source, "--out", tmp_path / "t.h5")
    assert result.exit_code == 0, result.output
    assert "note: landmarks left out: none here" in result.stdout
    assert row(result.stdout, "original") == ["image", "bernoulli", "3×64×64", "-"]
    with read_dataset(tmp_path / "t.h5") as ds:
        assert "landmarks" not in ds.modality_names and ds.sizes == {"train": 4, "valid": 1, "test": 1}
        data = ds.load("train")
    assert (data["obscured"][..., 32:] == 0).all() and data["edges"].shape == (4, 1, 64, 64)


def test_celeba_base_with_a_detector(celeba_source, tmp_path, monkeypatch):
    seen = []

    def detector(image):
        seen.append(image.shape)
        return np.stack([np.linspace(8, 56, 68), np.full(68, 32.0)], axis=1)  # a horizontal line

    monkeypatch.setattr(transforms, "find_landmark_detector", lambda: (detector, "landmarks from a fake"))
    out = prepare_dataset("transforms", tmp_path / "t.h5", base="celeba", source=celeba_source)
    with read_dataset(out) as ds:
        assert ds.modality_names == list(transforms.NAMES)
        landmarks = ds.load("test")["landmarks"]
        assert json.loads(ds.attrs["notes"]) == ["landmarks from a fake"]
    assert seen[0] == (64, 64, 3) and len(seen) == 6
    assert (landmarks[0, 0, 32, 8:57] == 255).all() and landmarks[0, 0].sum() == 49 * 255


def test_without_a_detector_the_note_says_what_to_install():
    try:
        import dlib  # noqa: F401
        pytest.skip("dlib is installed")
    except ImportError:
        pass
    try:
        import face_alignment  # noqa: F401
        pytest.skip("face_alignment is installed")
    except ImportError:
        pass
    detector, note = transforms.find_landmark_detector()
    assert detector is None and note.startswith("landmarks left out") and "face-alignment" in note


@pytest.mark.parametrize("args, fragments", [
    ([], ["transforms needs --base", "--base celeba or --base shapes"]),
    (["--base", "cifar"], ["--base must be celeba or shapes, got 'cifar'"]),
    (["--base", "shapes", "--source", "."], ["takes no --source"]),
])
def test_bad_base(tmp_path, args, fragments):
    expect_user_error(invoke("prepare", "transforms", "--out", tmp_path / "t.h5", *args), *fragments)
    assert not (tmp_path / "t.h5").exists()


def test_base_only_for_transforms(tmp_path):
    with pytest.raises(UserError, match="--base is only for transforms, not shapes"):
        prepare_dataset("shapes", tmp_path / "s.h5", base="celeba")
