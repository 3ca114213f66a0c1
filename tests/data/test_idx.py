"""The IDX parser on small files written by the test, raw and gzip."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from mvae_cli.data.idx import read_idx
from mvae_cli.errors import UserError


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_round_trip(tmp_path, idx_writer, suffix, dtype):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(7, 5, 3)) * 50).astype(dtype)
    path = idx_writer(tmp_path / f"a-idx3{suffix}", array)
    read = read_idx(path)
    assert read.dtype == np.dtype(dtype).newbyteorder("=")
    assert read.shape == (7, 5, 3)
    np.testing.assert_array_equal(read, array)
    read[0] = 0  # a writable copy, not a view of the file's bytes


def test_exact_bytes_of_a_tiny_label_file(tmp_path):
    # 0x00000801 = uint8, 1 dimension; 3 labels.
    (tmp_path / "labels").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 9]))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), [7, 2, 9])


def test_big_endian_int32_values(tmp_path):
    (tmp_path / "ints").write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFE]))
    np.testing.assert_array_equal(read_idx(tmp_path / "ints"), [256, -2])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown dtype code 0x07"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x04\x05\x06\x07", "needs 4 data bytes, the file has 3"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "needs 1 data bytes, the file has 2"),
        (b"hello, world", "bad magic number"),
        (b"", "bad magic number"),
    ],
)
def test_not_idx_names_the_file(tmp_path, content, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_gz_suffix_on_a_file_that_is_not_gzip(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(UserError, match="not a readable gzip file") as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_truncated_gzip(tmp_path, idx_writer):
    path = idx_writer(tmp_path / "x.gz", np.arange(1000, dtype=np.uint8).reshape(10, 100))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(UserError, match=str(path)):
        read_idx(path)


def test_gzip_of_garbage_is_not_idx(tmp_path):
    path = tmp_path / "g.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\x89PNG not idx")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_idx(tmp_path / "nope")
