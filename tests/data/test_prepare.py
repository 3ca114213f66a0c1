"""prepare_dataset: the HDF5 round trip, the stored masks, and checks before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from mvae_cli.data import prepare as prepare_module
from mvae_cli.data import shapes
from mvae_cli.data.format import FORMAT, FORMAT_VERSION, read_dataset
from mvae_cli.data.masks import build_mask, mask_name
from mvae_cli.data.prepare import plan_masks, prepare_dataset
from mvae_cli.data.registry import dataset_names, get_dataset
from mvae_cli.errors import UserError

SIZES = {"train": 60, "valid": 7, "test": 5}


def test_round_trip(tmp_path):
    calls = []
    out = prepare_dataset("shapes", tmp_path / "sub" / "s.h5", seed=3, sizes=SIZES,
                          supervision=[0.0, 0.1, 1], keep_prob=[0.5],
                          progress=lambda *a: calls.append(a))
    expected = shapes.build_shapes(seed=3, sizes=SIZES)
    with read_dataset(out) as ds:
        assert ds.attrs["format"] == FORMAT and ds.attrs["format_version"] == FORMAT_VERSION
        assert ds.name == "shapes" and ds.seed == 3
        assert ds.specs == shapes.SPECS
        assert ds.sizes == SIZES
        for split in SIZES:
            loaded = ds.load(split)
            for name, array in expected[split].items():
                assert loaded[name].dtype == array.dtype
                np.testing.assert_array_equal(loaded[name], array)
        names = [mask_name("supervision", f, 3) for f in (0.0, 0.1, 1)] + [mask_name("keep_prob", 0.5, 3)]
        assert sorted(ds.mask_names()) == sorted(names)
        for kind, value in [("supervision", 0.0), ("supervision", 0.1), ("supervision", 1), ("keep_prob", 0.5)]:
            np.testing.assert_array_equal(ds.find_mask(kind, value, 3), build_mask(kind, value, 60, 6, 3))
        info = {i.name: i for i in ds.mask_info()}
    # 60 rows, 6 modalities: f=0.1 pairs 6 and deals 54 as 9 per modality.
    assert (info["supervision=0.1,seed=3"].n_paired, info["supervision=0.1,seed=3"].n_unimodal) == (6, (9,) * 6)
    assert (info["supervision=0,seed=3"].n_paired, info["supervision=0,seed=3"].n_unimodal) == (0, (10,) * 6)
    assert info["supervision=1,seed=3"].n_paired == 60 and info["supervision=1,seed=3"].n_empty == 0
    assert info["keep_prob=0.5,seed=3"].kind == "keep_prob" and info["keep_prob=0.5,seed=3"].value == 0.5
    assert calls[-1] == ("writing", 3 * 6 + 4, 3 * 6 + 4)
    assert list(tmp_path.joinpath("sub").iterdir()) == [out]  # no temporary file left


def test_levels_are_stored_once():
    assert plan_masks([0.1, 0.10, 1, 1.0], [0.5, 0.5]) == [("supervision", 0.1), ("supervision", 1.0),
                                                           ("keep_prob", 0.5)]


@pytest.mark.parametrize("kwargs, message", [
    ({"supervision": [0.1, 1.5]}, r"--supervision value 1.5 is outside the allowed range \[0, 1\]"),
    ({"supervision": [-0.01]}, r"--supervision value -0.01 is outside the allowed range \[0, 1\]"),
    ({"supervision": [float("nan")]}, r"--supervision value nan"),
    ({"keep_prob": [0]}, r"--keep-prob value 0 is outside the allowed range \(0, 1\]"),
    ({"keep_prob": [1.2]}, r"--keep-prob value 1.2 is outside the allowed range \(0, 1\]"),
    ({"seed": -1}, "--seed must be a whole number of at least 0"),
    ({"sizes": {"train": 0}}, "--n-train must be a whole number of at least 1, got 0"),
    ({"source": "/tmp"}, "shapes is generated, not read: it takes no --source"),
])
def test_bad_input_changes_nothing(tmp_path, kwargs, message):
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")
    with pytest.raises(UserError, match=message):
        prepare_dataset("shapes", out, force=True, **{"sizes": SIZES, **kwargs})
    assert out.read_bytes() == b"precious"
    assert list(tmp_path.iterdir()) == [out]


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'cifar'; known datasets: shapes, mnist, "
                                        "fashion-mnist, binary-mnist"):
        prepare_dataset("cifar", tmp_path / "c.h5")
    assert dataset_names() == ["shapes", "mnist", "fashion-mnist", "binary-mnist", "multimnist", "polymnist",
                               "celeba", "celeba19", "transforms", "custom"]
    assert get_dataset("mnist").uses_source and not get_dataset("shapes").uses_source


def test_existing_output_needs_force_and_is_checked_before_building(tmp_path):
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")
    calls = []
    with pytest.raises(UserError, match="already exists; pass --force"):
        prepare_dataset("shapes", out, sizes=SIZES, progress=lambda *a: calls.append(a))
    assert out.read_bytes() == b"precious" and calls == []
    prepare_dataset("shapes", out, sizes=SIZES, force=True)
    with read_dataset(out) as ds:
        assert ds.sizes == SIZES


def test_out_is_a_folder(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        prepare_dataset("shapes", tmp_path, sizes=SIZES, force=True)


def test_failure_while_writing_leaves_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(prepare_module, "build_mask", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_dataset("shapes", out, sizes=SIZES, supervision=[0.5], force=True)
    assert out.read_bytes() == b"precious"
    assert list(tmp_path.iterdir()) == [out]


def test_the_guarded_file_is_silent_once_closed(tmp_path):
    """After an interrupt closes the file first, h5py's last calls at garbage collection (a flush,
    a truncate) must not print a traceback over the one-line message."""
    from mvae_cli.data.format import _GuardedFile

    with _GuardedFile(tmp_path / "f.tmp") as raw:
        raw.write(b"abc")
    assert raw.truncate(8) == 8 and raw.write(b"xy") == 2 and raw.seek(4) == 4
    raw.flush()
    assert raw.tell() == 0 and raw.read(2) == b"" and raw.readinto(bytearray(2)) == 0
    raw.raise_fault()  # nothing recorded: closing is not a fault
    assert (tmp_path / "f.tmp").read_bytes() == b"abc"
