"""Faults of the machine become one line naming the path and the cause; anything else stays a bug."""

import errno

import pytest

from mvae_cli.atomic import atomic_path
from mvae_cli.errors import UserError, file_fault


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "disk is full"), (errno.EFBIG, "ulimit -f"),
                                         (errno.EROFS, "read-only"), (errno.EACCES, "permission denied")])
def test_faults_name_the_path_and_the_cause(code, cause):
    fault = file_fault(OSError(code, "whatever", "/tmp/x/.y.tmp"), "out/y.h5")
    assert isinstance(fault, UserError)
    assert str(fault).startswith("cannot write out/y.h5: ") and cause in str(fault)


def test_h5py_puts_errno_in_its_text():
    error = OSError("Unable to synchronously write data (file write failed: errno = 28, error message = 'x')")
    assert "No space left on device" in str(file_fault(error, "d.h5"))


def test_other_errors_are_not_faults():
    assert file_fault(OSError(errno.ENOENT, "gone")) is None
    assert file_fault(ValueError("a bug")) is None


def test_a_write_that_meets_a_full_disk_leaves_nothing(tmp_path):
    with pytest.raises(UserError, match="cannot write .*out.txt: No space left on device"):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_path_through_a_file_names_the_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="its folder .* is a file, not a folder"):
        with atomic_path(tmp_path / "f" / "x.json"):
            pass
