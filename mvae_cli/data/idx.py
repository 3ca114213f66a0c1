"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al., http://yann.lecun.com/exdb/mnist/).

```
bytes 0-1   zero
byte  2     dtype code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
byte  3     number of dimensions D
4*D bytes   the dimensions, big-endian uint32
the rest    the values, big-endian, C order
```
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from mvae_cli.errors import UserError

DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise UserError(f"{path} is not a readable gzip file ({error})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file, raw or gzip-compressed (by a ``.gz`` suffix).

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz``.

    Returns:
        An array with the file's dimensions (e.g. ``uint8 [60000, 28, 28]``), in native byte order.

    Raises:
        UserError: naming the file, when it is missing, not IDX (bad magic number or dtype
            code) or its byte count does not match its header.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UserError(f"{path} is not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in DTYPES:
        raise UserError(f"{path} is not an IDX file (unknown dtype code 0x{code:02X})")
    if ndim == 0:
        raise UserError(f"{path} is not an IDX file (zero dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path} is truncated: its header promises {ndim} dimensions")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise UserError(
            f"{path} is not a valid IDX file: header {list(dims)} of {dtype.name} needs "
            f"{expected} data bytes, the file has {len(data) - header}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    # A native-order, writable copy: frombuffer arrays are read-only views of `data`.
    return array.astype(dtype.newbyteorder("="))
