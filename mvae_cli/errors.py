"""Errors a user can cause: shown as one line, exit code 2, no traceback."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path


class UserError(Exception):
    """Bad input from the user: a path, a value, a file that is not what it should be.

    The CLI prints ``str(error)`` on one line and exits with code 2. Anything else
    that escapes is a bug and keeps its traceback.
    """


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped a command; ``str(error)`` says where it stands and how to go on.

    The CLI prints it on one line and exits with code 130.
    """


# Faults of the machine, not bugs: a full disk, a file-size limit, a read-only or forbidden folder,
# a file where a folder should be (or the reverse). They are reported like bad input.
_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up; free some space or write elsewhere",
    errno.EFBIG: "the file-size limit (ulimit -f) is below what it needs; raise the limit or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.EISDIR: "it is a folder; give a file path",
    errno.ENOTDIR: "a part of its path is a file, not a folder",
    errno.EIO: "the device reported an input/output error",
}


def file_fault(error: BaseException, path: str | os.PathLike | None = None) -> UserError | None:
    """The one-line error for an OSError that is a fault of the machine, naming ``path`` and the
    cause; None for any other error (a bug keeps its traceback).

    Args:
        error: what was raised (OSError from Python, or from h5py, which puts errno in its text).
        path: the file being written, when the caller knows it better than the error does
            (the target of an atomic write rather than its temporary file).
    """
    if not isinstance(error, OSError):
        return None
    code = error.errno
    if code is None:  # h5py: "... errno = 28, error message = ..."
        match = re.search(r"errno = (\d+)", str(error))
        code = int(match.group(1)) if match else None
    if code not in _ADVICE:
        return None
    path = path if path is not None else error.filename
    name = f" {path}" if path is not None else ""
    if code == errno.ENOTDIR and path is not None:
        blocker = next((p for p in reversed(Path(path).parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return UserError(f"cannot write {path}: {blocker} is a file, not a folder; choose another path")
    return UserError(f"cannot write{name}: {os.strerror(code)} ({_ADVICE[code]})")
