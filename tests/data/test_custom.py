"""`mvae prepare custom`: a user's arrays in .npz or HDF5, checked against a YAML spec."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from mvae_cli.data.format import read_dataset
from mvae_cli.data.prepare import prepare_dataset
from tests.data.cli_helpers import expect_user_error, invoke, row

SPEC = {"modalities": [
    {"name": "image", "kind": "image", "shape": [1, 6, 5]},
    {"name": "label", "kind": "categorical", "classes": 4},
    {"name": "tags", "kind": "binary"},
    {"name": "caption", "kind": "sequence", "vocab": 7},
]}
SIZES = {"train": 20, "valid": 6, "test": 5}


def arrays(n: int, seed: int) -> dict[str, np.ndarray]:
    """One split's arrays in the forms a user might have them: float images, bool tags."""
    rng = np.random.default_rng(seed)
    caption = rng.integers(0, 5, (n, 4))
    caption[:, 0] = 5  # START = vocab - 2
    caption[np.arange(n), rng.integers(1, 4, n)] = 6  # STOP = vocab - 1
    return {
        "image": rng.random((n, 1, 6, 5)).astype(np.float32),
        "label": rng.integers(0, 4, n),
        "tags": rng.random((n, 3)) < 0.5,
        "caption": caption,
    }


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def write_npz(path: Path, splits: dict[str, dict[str, np.ndarray]], sep: str = "_") -> Path:
    np.savez(path, **{f"{s}{sep}{k}": v for s, a in splits.items() for k, v in a.items()})
    return path


def write_h5(path: Path, splits: dict[str, dict[str, np.ndarray]]) -> Path:
    with h5py.File(path, "w") as handle:
        for split, a in splits.items():
            for name, value in a.items():
                handle[f"{split}/{name}"] = value
    return path


@pytest.fixture
def data() -> dict[str, dict[str, np.ndarray]]:
    return {split: arrays(n, i) for i, (split, n) in enumerate(SIZES.items())}


def _check_round_trip(out: Path, data) -> None:
    with read_dataset(out) as ds:
        assert ds.name == "custom" and ds.modality_names == ["image", "label", "tags", "caption"]
        assert [(s.kind, s.likelihood, s.shape, s.classes) for s in ds.specs] == [
            ("image", "bernoulli", (1, 6, 5), 0), ("categorical", "categorical", (), 4),
            ("binary", "bernoulli", (3,), 0), ("sequence", "categorical", (4,), 7)]
        assert ds.sizes == SIZES
        assert yaml.safe_load(ds.attrs["spec"]) == SPEC
        for split, expected in data.items():
            got = ds.load(split)
            assert all(a.dtype == np.uint8 for a in got.values())
            np.testing.assert_array_equal(got["image"], np.rint(expected["image"] * 255))
            np.testing.assert_array_equal(got["label"], expected["label"])
            np.testing.assert_array_equal(got["tags"], expected["tags"].astype(np.uint8))
            np.testing.assert_array_equal(got["caption"], expected["caption"])
            stops = np.argmax(expected["caption"][:, 1:] == 6, axis=1) + 2
            np.testing.assert_array_equal(ds.array(split, "caption_length")[()], stops)


@pytest.mark.parametrize("fmt", ["npz_", "npz/", "h5"])
def test_round_trip(tmp_path, data, fmt):
    source = (write_h5(tmp_path / "d.h5", data) if fmt == "h5"
              else write_npz(tmp_path / "d.npz", data, sep=fmt[-1]))
    out = prepare_dataset("custom", tmp_path / "c.h5", source=source, spec=write_spec(tmp_path / "s.yaml", SPEC))
    _check_round_trip(out, data)


def test_split_fractions_shuffle_one_pool(tmp_path):
    pool = arrays(50, 0)
    np.savez(tmp_path / "pool.npz", **pool)
    spec = write_spec(tmp_path / "s.yaml", {**SPEC, "split": {"train": 0.8, "valid": 0.1, "test": 0.1}})
    result = invoke("prepare", "custom", "--source", tmp_path / "pool.npz", "--spec", spec,
                    "--out", tmp_path / "a.h5", "--seed", 3, "--supervision", "0.5")
    assert result.exit_code == 0, result.output
    assert row(result.stdout, "train") == ["40"] and row(result.stdout, "test") == ["5"]
    assert row(result.stdout, "caption") == ["sequence", "categorical", "4", "tokens", "7"]
    prepare_dataset("custom", tmp_path / "b.h5", source=tmp_path / "pool.npz", spec=spec, seed=3)
    prepare_dataset("custom", tmp_path / "c.h5", source=tmp_path / "pool.npz", spec=spec, seed=4)
    with read_dataset(tmp_path / "a.h5") as a, read_dataset(tmp_path / "b.h5") as b, \
            read_dataset(tmp_path / "c.h5") as c:
        labels = {s: a.load(s)["label"] for s in SIZES}
        # Every example lands in exactly one split: the captions (nearly unique rows) partition the pool.
        rows = np.concatenate([a.load(s)["caption"] for s in SIZES])
        assert sorted(map(bytes, rows)) == sorted(map(bytes, pool["caption"].astype(np.uint8)))
        assert np.bincount(np.concatenate(list(labels.values())), minlength=4).tolist() == \
            np.bincount(pool["label"], minlength=4).tolist()
        np.testing.assert_array_equal(b.load("train")["label"], labels["train"])  # same seed, same split
        assert not np.array_equal(c.load("train")["caption"], a.load("train")["caption"])
        assert a.mask_info()[0].n_paired == 20


def test_first_n_of_each_split(tmp_path, data):
    source = write_npz(tmp_path / "d.npz", data)
    out = prepare_dataset("custom", tmp_path / "c.h5", source=source, spec=write_spec(tmp_path / "s.yaml", SPEC),
                          sizes={"train": 7})
    with read_dataset(out) as ds:
        assert ds.sizes == {"train": 7, "valid": 6, "test": 5}
        np.testing.assert_array_equal(ds.load("train")["label"], data["train"]["label"][:7])


def test_shapes_come_from_the_arrays_and_uint8_images_pass(tmp_path, data):
    spec = {"modalities": [{"name": "image", "kind": "image"}, {"name": "label", "kind": "categorical",
                                                                 "classes": 300}]}
    for split, a in data.items():
        a["image"] = (a["image"][:, 0] * 255).astype(np.uint8)  # [N, H, W]: one channel
        a["label"] = a["label"] * 70
    out = prepare_dataset("custom", tmp_path / "c.h5", source=write_npz(tmp_path / "d.npz", data),
                          spec=write_spec(tmp_path / "s.yaml", spec))
    with read_dataset(out) as ds:
        assert ds.specs[0].shape == (1, 6, 5)
        got = ds.load("valid")
        np.testing.assert_array_equal(got["image"][:, 0], data["valid"]["image"])
        assert got["label"].dtype == np.uint16 and got["label"].max() == data["valid"]["label"].max()


# One clear error per problem, through the CLI: (how to break the data or the spec, fragments of the message)
def _set(split, name, value):
    def change(data, spec):
        data[split][name] = value(data[split][name]) if callable(value) else value
    return change


def _spec(change_spec):
    def change(data, spec):
        change_spec(spec)
    return change


def _drop(split, name):
    def change(data, spec):
        del data[split][name]
    return change


BAD = {
    "image shape": (_set("valid", "image", lambda a: a[:, :, :5]),
                    ["modality 'image' (valid)", "shape [1, 5, 5]", "expected [1, 6, 5] (from the spec)"]),
    "image dtype": (_set("train", "image", lambda a: (a * 255).astype(np.int64)),
                    ["modality 'image' (train)", "uint8 or floats in [0, 1], got int64"]),
    "image range": (_set("test", "image", lambda a: a * 2),
                    ["modality 'image' (test)", "float images must lie in [0, 1]"]),
    "image nan": (_set("train", "image", lambda a: np.where(a > 0.5, np.nan, a)),
                  ["modality 'image' (train)", "NaN"]),
    "binary value": (_set("valid", "tags", lambda a: a.astype(int) * 2),
                     ["modality 'tags' (valid)", "binary values must be 0 or 1, found 2"]),
    "class id": (_set("test", "label", lambda a: a + 1),
                 ["modality 'label' (test)", "id 4 is outside [0, 4)", "classes: 4"]),
    "class dtype": (_set("train", "label", lambda a: a.astype(np.float32)),
                    ["modality 'label' (train)", "ids must be integers, got float32"]),
    "label rank": (_set("train", "label", lambda a: a[:, None]),
                   ["modality 'label' (train)", "shape [1]", "expected [] (from the spec)"]),
    "token id": (_set("valid", "caption", lambda a: a + 2),
                 ["modality 'caption' (valid)", "outside [0, 7)", "vocab: 7"]),
    "text dtype": (_set("valid", "caption", lambda a: a.astype("U1")),
                   ["modality 'caption' (valid)", "is not numeric"]),
    "row counts": (_set("train", "label", lambda a: a[:-1]),
                   ["split train", "'label' has 19 examples", "'image' has 20"]),
    "missing array": (_drop("valid", "tags"),
                      ["no array for modality 'tags' (valid)", "'valid/tags' and 'valid_tags'"]),
    "shape across splits": (_set("test", "tags", lambda a: np.concatenate([a, a], axis=1)),
                            ["modality 'tags' (test)", "shape [6]", "expected [3] (from the train arrays)"]),
    "unknown kind": (_spec(lambda s: s["modalities"][1].update(kind="label")),
                     ["modality 'label'", "kind must be one of image, binary, categorical, sequence"]),
    "no classes": (_spec(lambda s: s["modalities"][1].pop("classes")),
                   ["modality 'label'", "needs `classes:`"]),
    "no vocab": (_spec(lambda s: s["modalities"][3].pop("vocab")), ["modality 'caption'", "needs `vocab:`"]),
    "likelihood": (_spec(lambda s: s["modalities"][0].update(likelihood="categorical")),
                   ["modality 'image'", "takes likelihood bernoulli, not 'categorical'"]),
    "key for kind": (_spec(lambda s: s["modalities"][0].update(classes=3)),
                     ["modality 'image'", "key 'classes' is not for kind image"]),
    "duplicate": (_spec(lambda s: s["modalities"][1].update(name="image")), ["modality 'image'", "taken"]),
    "top key": (_spec(lambda s: s.update(splits={"train": 1})), ["unknown key 'splits'"]),
    "fractions": (_spec(lambda s: s.update(split={"train": 0.8, "valid": 0.1, "test": 0.2})),
                  ["split fractions sum to 1.1"]),
    "spec shape rank": (_spec(lambda s: s["modalities"][0].update(shape=[6, 5])),
                        ["modality 'image'", "a image shape has 3 entries, got [6, 5]"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_mismatch_is_one_clear_error(tmp_path, data, case):
    change, fragments = BAD[case]
    spec = json.loads(json.dumps(SPEC))
    change(data, spec)
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    result = invoke("prepare", "custom", "--source", write_npz(tmp_path / "d.npz", data),
                    "--spec", write_spec(tmp_path / "s.yaml", spec), "--out", out, "--force")
    expect_user_error(result, *fragments)
    assert out.read_bytes() == b"precious"


def test_pool_without_a_split_section(tmp_path):
    np.savez(tmp_path / "pool.npz", **arrays(30, 0))
    expect_user_error(invoke("prepare", "custom", "--source", tmp_path / "pool.npz", "--spec",
                             write_spec(tmp_path / "s.yaml", SPEC), "--out", tmp_path / "c.h5"),
                      "no array for modality 'image' (train)", "split: section in the spec")


def test_split_that_leaves_a_split_empty(tmp_path):
    np.savez(tmp_path / "pool.npz", **arrays(8, 0))
    spec = write_spec(tmp_path / "s.yaml", {**SPEC, "split": {"train": 0.9, "valid": 0.05, "test": 0.05}})
    expect_user_error(invoke("prepare", "custom", "--source", tmp_path / "pool.npz", "--spec", spec,
                             "--out", tmp_path / "c.h5"), "leaves valid empty")


@pytest.mark.parametrize("args, fragments", [
    ([], ["custom needs --source and --spec"]),
    (["--spec", "s.yaml"], ["custom needs --source"]),
    (["--source", "nope.npz", "--spec", "s.yaml"], ["source nope.npz does not exist"]),
    (["--source", "d.npz", "--spec", "nope.yaml"], ["spec nope.yaml does not exist"]),
    (["--source", "s.yaml", "--spec", "s.yaml"], ["neither an .npz nor an HDF5 file"]),
    (["--source", "d.npz", "--spec", "d.npz"], ["is not valid YAML"]),
    (["--source", "d.npz", "--spec", "empty.yaml"], ["needs a `modalities:` list"]),
])
def test_bad_files(tmp_path, monkeypatch, data, args, fragments):
    monkeypatch.chdir(tmp_path)
    write_npz(tmp_path / "d.npz", data)
    write_spec(tmp_path / "s.yaml", SPEC)
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    expect_user_error(invoke("prepare", "custom", "--out", "c.h5", *args), *fragments)
    assert not (tmp_path / "c.h5").exists()


def test_spec_only_for_custom(tmp_path):
    expect_user_error(invoke("prepare", "shapes", "--spec", "s.yaml", "--out", tmp_path / "s.h5"),
                      "--spec is only for custom, not shapes")
