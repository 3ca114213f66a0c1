"""`mvae prepare` and `mvae info` through the real CLI: the summary, and one line + exit 2 for bad input."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import h5py
import pytest

from typer.testing import CliRunner

from mvae_cli.cli.app import app
from tests.data.cli_helpers import expect_user_error
from mvae_cli.cli.prepare import parse_float_list
from mvae_cli.errors import UserError

SMALL = ["--n-train", "60", "--n-valid", "7", "--n-test", "5"]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("cli") / "shapes.h5"
    result = invoke("prepare", "--out", out, *SMALL, "--supervision", "0.1,1", "--keep-prob", "0.5")
    assert result.exit_code == 0, result.output
    return out, result.stdout


def _row(stdout: str, first: str) -> list[str]:
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0] == first:
            return cells[1:]
    raise AssertionError(f"no row {first!r} in:\n{stdout}")


def test_prepare_prints_the_summary(prepared):
    out, stdout = prepared
    assert out.is_file()
    for name, kind, likelihood, shape, classes in [
        ("image", "image", "bernoulli", "3×32×32", "-"), ("shape", "categorical", "categorical", "scalar", "3"),
        ("colour", "categorical", "categorical", "scalar", "4"), ("size", "categorical", "categorical", "scalar", "2"),
        ("xpos", "categorical", "categorical", "scalar", "3"), ("ypos", "categorical", "categorical", "scalar", "3"),
    ]:
        assert _row(stdout, name) == [kind, likelihood, shape, classes]
    assert _row(stdout, "train") == ["60"] and _row(stdout, "valid") == ["7"] and _row(stdout, "test") == ["5"]
    # paired, then one column per modality, then empty.
    assert _row(stdout, "f=0.1") == ["6", "9", "9", "9", "9", "9", "9", "0"]
    assert _row(stdout, "f=1") == ["60", "0", "0", "0", "0", "0", "0", "0"]
    keep = [int(c) for c in _row(stdout, "p=0.5")]
    assert len(keep) == 8 and keep[0] + sum(keep[1:7]) + keep[7] <= 60


def test_info_prints_the_same_summary(prepared):
    out, stdout = prepared
    result = invoke("info", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == stdout


def test_default_out_is_data_dataset_h5(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("prepare", *SMALL)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "shapes.h5").is_file()
    assert "no training masks stored" in result.stdout


def test_force_overwrites(tmp_path):
    out = tmp_path / "s.h5"
    assert invoke("prepare", "--out", out, *SMALL).exit_code == 0
    result = invoke("prepare", "--out", out, "--n-train", "30", "--force")
    assert result.exit_code == 0, result.output
    assert _row(result.stdout, "train") == ["30"]


def test_help_lists_every_dataset():
    from mvae_cli.data.registry import dataset_names

    result = invoke("prepare", "--help")
    assert result.exit_code == 0
    for name in dataset_names():
        assert name in result.stdout


@pytest.fixture
def precious(tmp_path) -> Path:
    """An existing output file: bad input must leave it byte for byte as it was."""
    path = tmp_path / "out.h5"
    path.write_bytes(b"precious bytes")
    os.utime(path, (1_000_000, 1_000_000))
    return path


def _unchanged(path: Path) -> bool:
    """Same bytes, same mtime, and no temporary file (``.out.h5.*.tmp``) left beside it."""
    leftovers = [p for p in path.parent.iterdir() if p.name.startswith(".")]
    return path.read_bytes() == b"precious bytes" and path.stat().st_mtime == 1_000_000 and not leftovers


@pytest.mark.parametrize("args, fragments", [
    (["cifar"], ["unknown dataset 'cifar'", "shapes, mnist, fashion-mnist, binary-mnist"]),
    (["--supervision", "0.1,1.5"], ["--supervision value 1.5", "[0, 1]"]),
    (["--supervision", "-0.1"], ["--supervision value -0.1", "[0, 1]"]),
    (["--keep-prob", "0"], ["--keep-prob value 0", "(0, 1]"]),
    (["--keep-prob", "0.5,1.01"], ["--keep-prob value 1.01", "(0, 1]"]),
    (["--supervision", "0.1,abc"], ["--supervision: 'abc' is not a number"]),
    (["--keep-prob", "0.1,,0.2"], ["--keep-prob: '' is not a number"]),
    (["--seed", "-3"], ["--seed must be a whole number of at least 0"]),
    (["--n-valid", "0"], ["--n-valid must be a whole number of at least 1, got 0"]),
    (["--source", "."], ["shapes is generated, not read"]),
])
def test_bad_prepare_input(precious, args, fragments):
    expect_user_error(invoke("prepare", "--out", precious, "--force", *SMALL, *args), *fragments)
    assert _unchanged(precious)


def test_existing_output_without_force(precious):
    expect_user_error(invoke("prepare", "--out", precious, *SMALL), str(precious), "--force")
    assert _unchanged(precious)


def test_source_missing_a_file(precious, tmp_path, fake_mnist_writer):
    source = tmp_path / "src"
    fake_mnist_writer(source)
    (source / "train-images-idx3-ubyte").unlink()
    expect_user_error(invoke("prepare", "mnist", "--source", source, "--out", precious, "--force"),
                       "train-images-idx3-ubyte")
    assert _unchanged(precious)


def test_source_file_that_is_not_idx(precious, tmp_path, fake_mnist_writer):
    source = tmp_path / "src"
    fake_mnist_writer(source)
    (source / "t10k-labels-idx1-ubyte.gz").unlink()
    (source / "t10k-labels-idx1-ubyte").write_text("<html>404 not found</html>")
    expect_user_error(invoke("prepare", "mnist", "--source", source, "--out", precious, "--force"),
                       str(source / "t10k-labels-idx1-ubyte"), "not an IDX file")
    assert _unchanged(precious)


def test_info_on_a_missing_file(tmp_path):
    expect_user_error(invoke("info", tmp_path / "nope.h5"), "does not exist")


def test_info_on_a_file_that_is_not_hdf5(precious):
    expect_user_error(invoke("info", precious), "is not an HDF5 file")
    assert _unchanged(precious)


def test_info_on_hdf5_that_is_not_an_mvae_dataset(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = [1, 2, 3]
    expect_user_error(invoke("info", path), "is not an mvae dataset")


def test_info_on_an_unknown_format_version(tmp_path, prepared):
    path = tmp_path / "future.h5"
    shutil.copy(prepared[0], path)
    with h5py.File(path, "a") as handle:
        handle.attrs["format_version"] = 99
    before = path.read_bytes()
    expect_user_error(invoke("info", path), "format_version 99")
    assert path.read_bytes() == before


def test_parse_float_list():
    assert parse_float_list("0.001, 0.01,0.1,1", "--supervision") == [0.001, 0.01, 0.1, 1.0]
    assert parse_float_list("", "--supervision") == [] and parse_float_list(None, "--x") == []
    with pytest.raises(UserError, match=re.escape("--keep-prob: '1e' is not a number")):
        parse_float_list("0.5,1e", "--keep-prob")
