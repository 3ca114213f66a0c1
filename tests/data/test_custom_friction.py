"""Own data without friction: array names per split, a valid split carved from train only, a range warning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mvae_cli.data.custom import load_custom
from mvae_cli.data.format import read_dataset
from mvae_cli.data.prepare import prepare_dataset
from mvae_cli.errors import UserError
from tests.data.test_custom import write_spec

SPEC = {"modalities": [{"name": "image", "kind": "image", "shape": [1, 2, 2]},
                       {"name": "label", "kind": "categorical", "classes": 3}]}


def _split(n, offset):
    """Images whose first pixel is the example's id, so every row can be traced."""
    image = np.zeros((n, 1, 2, 2), dtype=np.uint8)
    image[:, 0, 0, 0] = np.arange(offset, offset + n)
    image[:, 0, 1, 1] = 255
    return image, (np.arange(n) % 3)


def test_image_train_names_are_accepted_and_arrays_can_be_named_per_split(tmp_path):
    (xt, yt), (xv, yv), (xs, ys) = _split(10, 0), _split(4, 100), _split(5, 200)
    source = tmp_path / "digits.npz"
    np.savez(source, image_train=xt, image_valid=xv, image_test=xs, y_tr=yt, y_va=yv, y_te=ys)
    spec = {"modalities": [SPEC["modalities"][0],
                           {**SPEC["modalities"][1], "arrays": {"train": "y_tr", "valid": "y_va", "test": "y_te"}}]}
    _, splits = load_custom(source, write_spec(tmp_path / "spec.yaml", spec))
    assert splits["valid"]["image"][:, 0, 0, 0].tolist() == [100, 101, 102, 103]
    assert splits["test"]["label"].tolist() == ys.tolist()


def test_a_valid_split_is_carved_from_the_training_arrays_only(tmp_path):
    (xt, yt), (xs, ys) = _split(40, 0), _split(7, 200)
    source = tmp_path / "digits.npz"
    np.savez(source, train_image=xt, train_label=yt, test_image=xs, test_label=ys)
    spec = write_spec(tmp_path / "spec.yaml", {**SPEC, "split": {"valid": 0.25}})
    _, splits = load_custom(source, spec, seed=3)
    train_ids, valid_ids = (splits[s]["image"][:, 0, 0, 0].tolist() for s in ("train", "valid"))
    assert len(valid_ids) == 10 and len(train_ids) == 30  # round(0.25 · 40)
    assert sorted(train_ids + valid_ids) == list(range(40))  # a partition of the training rows
    assert splits["test"]["image"][:, 0, 0, 0].tolist() == list(range(200, 207))  # the official test set, whole
    assert load_custom(source, spec, seed=3)[1]["valid"]["image"].tolist() == splits["valid"]["image"].tolist()
    with pytest.raises(UserError, match="valid must lie in"):
        load_custom(source, write_spec(tmp_path / "bad.yaml", {**SPEC, "split": {"valid": 1.5}}))


def test_images_that_do_not_span_0_to_255_are_noted_in_the_file(tmp_path):
    (xt, yt), (xv, yv), (xs, ys) = _split(10, 0), _split(4, 100), _split(5, 200)
    xt[:, 0, 1, 1] = 240  # ink tops out at 240, as the 8×8 digits do
    source = tmp_path / "digits.npz"
    np.savez(source, train_image=xt, train_label=yt, valid_image=xv, valid_label=yv, test_image=xs, test_label=ys)
    out = prepare_dataset("custom", tmp_path / "d.h5", source=source, spec=write_spec(tmp_path / "s.yaml", SPEC))
    with read_dataset(out) as dataset:
        (note,) = json.loads(dataset.attrs["notes"])
    assert "images of 'image' span [0, 240], not [0, 255]" in note and "x · 255 / 240" in note


def test_no_message_points_at_a_file_that_does_not_exist():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    outputs = {"report.md"}  # files the tool writes, not documents it points at
    for path in (root / "mvae_cli").rglob("*.py"):
        for name in set(re.findall(r"(?<![\w/.-])(?:[A-Za-z0-9_-]+/)*[A-Za-z0-9_.-]+\.md\b", path.read_text())) - outputs:
            assert (root / name).exists(), f"{path} points at {name}, which does not exist"
