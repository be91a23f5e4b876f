"""IDX files (the MNIST format), plain or gzipped.

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <number of dimensions>``, then one
big-endian int32 per dimension, then the data, row-major, in the type the code names (all
multi-byte values big-endian). :func:`read_idx` checks all of it and raises one
:class:`~rnnlab.errors.ConfigError` line naming the file for anything missing, truncated or
corrupt; :func:`write_idx` writes the same format (tests build tiny files with it).
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

from ..errors import ConfigError

#: IDX type code -> big-endian NumPy dtype.
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code
          for code, dt in IDX_DTYPES.items()}
GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str) -> bytes:
    if not os.path.isfile(path):
        raise ConfigError(f"IDX file {path} does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == GZIP_MAGIC else open
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ConfigError(f"IDX file {path} cannot be read (corrupt or truncated gzip: "
                          f"{exc})") from None


def read_idx(path, ndim: int | None = None) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzipped or not, told by its first bytes), in
    native byte order.

    Parameters
    ----------
    path : str or os.PathLike
    ndim : int, optional
        The number of dimensions the caller expects (3 for images, 1 for labels).

    Raises
    ------
    ConfigError
        One line naming the file: it is missing, unreadable, has a bad magic number, an
        unknown type code, zero or unexpected dimensions, or a data size that does not match
        its header (truncated or with trailing bytes).
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ConfigError(f"IDX file {path} is truncated: {len(data)} bytes, shorter than "
                          "the 4-byte magic number")
    zero, code, dims = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise ConfigError(f"IDX file {path} has a bad magic number 0x{data[:4].hex()} "
                          "(expected 0x0000 then a type code and a dimension count)")
    if code not in IDX_DTYPES:
        raise ConfigError(f"IDX file {path} has an unknown type code 0x{code:02x} (expected "
                          f"one of {', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})")
    if dims == 0:
        raise ConfigError(f"IDX file {path} declares 0 dimensions")
    if ndim is not None and dims != ndim:
        raise ConfigError(f"IDX file {path} has {dims} dimensions; expected {ndim}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise ConfigError(f"IDX file {path} is truncated inside its header ({len(data)} bytes, "
                          f"the header of {dims} dimensions needs {header})")
    shape = struct.unpack(f">{dims}I", data[4:header])
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header says"
        raise ConfigError(f"IDX file {path} is {what}: shape {shape} of {dtype.name} needs "
                          f"{expected} data bytes, found {actual}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path, array) -> None:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as an IDX file,
    gzipped when ``path`` ends in ``.gz``."""
    path = os.fspath(path)
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=") if array.dtype.itemsize > 1 else array.dtype
    if key not in _CODES or array.ndim == 0 or array.ndim > 255:
        raise ConfigError(f"write_idx cannot store an array of dtype {array.dtype} with "
                          f"{array.ndim} dimensions")
    code = _CODES[key]
    payload = (struct.pack(">HBB", 0, code, array.ndim)
               + struct.pack(f">{array.ndim}I", *array.shape)
               + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes())
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)
