"""Atomic file writes: a temporary file in the target folder, renamed into place."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from mvae_cli.errors import UserError, file_fault


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    If the block raises (or the process dies), the target is untouched and the
    temporary file is removed (or left under a hidden ``.name.*.tmp`` name).

    Raises:
        UserError: the target is a folder, or the write meets a fault of the machine (a full disk,
            a file-size limit, a read-only folder, a file where a folder should be), naming the target.
    """
    target = Path(target)
    if target.is_dir():
        raise UserError(f"cannot write {target}: it is a folder; move it away or choose another path")
    check_folder(target.parent, f"cannot write {target}: its folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    except OSError as error:
        raise file_fault(error, target) or error from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; results should read like any file
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException as error:
        tmp_path.unlink(missing_ok=True)
        fault = file_fault(error, target)  # a full disk or a file-size limit: one line naming the target
        if fault is not None:
            raise fault from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive advisory lock tied to ``target`` for the block (``flock`` on a hidden
    ``.name.lock`` beside it), so that evaluations running side by side in a sweep compute a shared
    cache once: the second waits, then finds the first's entry.

    With ``wait=False`` the block runs at once and is told whether it holds the lock (``with
    exclusive_lock(path, wait=False) as held``): False when another process holds it, so the
    caller can do other work first.

    Where no lock can be taken (no ``fcntl`` on the platform, a read-only folder) the block runs
    unlocked, told True: the lock only saves time, it never guards correctness.
    """
    target = Path(target)
    try:
        import fcntl

        fd = os.open(target.with_name(f".{target.name}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    except (ImportError, OSError):
        yield True
        return
    try:
        held = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = False
        except OSError:
            pass
        yield held
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_folder(path: str | os.PathLike, what: str) -> None:
    """Refuse, before any work, a folder path that is a file or runs through one.

    Raises:
        UserError: naming ``what`` (e.g. "the run directory") and the file in the way.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder; choose another path")
    blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"{what} {path} cannot be made: {blocker} is a file, not a folder; choose another path")


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
