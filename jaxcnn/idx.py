"""The IDX file format of MNIST and Fashion-MNIST (raw or gzip), read with validation.

`read_idx` checks the magic number, the dtype code, the number of dims and the size the header
claims (against the file's size and NumPy's limits) before it allocates anything, and reads gzip
streams in chunks, so a damaged or hostile file is the library's error naming the file, never a huge
allocation. `jaxcnn.datasets.load_mnist` builds on it.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from typing import Any

import numpy as np

from jaxcnn._checks import fail

__all__ = ["read_idx"]

# IDX type code -> big-endian dtype as stored in the file.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Deflate cannot expand data by more than ~1032:1; a header claiming more than this many times the
# compressed size cannot be honest, whatever the stream holds.
_GZIP_MAX_RATIO = 1100
_CHUNK = 1 << 20
# NumPy's limits: at most 64 dimensions (32 before NumPy 2), and an array's bytes, counting its
# non-zero dimensions, must fit in an intp (an empty array of absurd other dimensions is refused).
_MAX_DIMS = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32
_MAX_BYTES = int(np.iinfo(np.intp).max)


def _read_upto(stream: Any, n: int) -> bytearray:
    """Up to `n` bytes from `stream` (fewer only at end of file), read in chunks, so that memory
    grows with what the stream really holds, not with what a header claims."""
    buf = bytearray()
    while len(buf) < n:
        part = stream.read(min(n - len(buf), _CHUNK))
        if not part:
            break
        buf += part
    return buf


def _read_idx_stream(path: str, stream: Any, size: int, *, gzipped: bool) -> np.ndarray:
    """Parse an IDX stream; `size` is the file's size on disk (compressed if `gzipped`)."""
    fn = "read_idx"
    magic = _read_upto(stream, 4)
    if len(magic) < 4:
        raise fail(fn, f"'{path}' is truncated: {len(magic)} bytes, shorter than the IDX magic")
    if magic[:2] != b"\x00\x00":
        raise fail(
            fn, f"'{path}' is not an IDX file: bad magic {magic.hex()} (must start with 0000)"
        )
    code, ndim = magic[2], magic[3]
    if code not in _IDX_DTYPES:
        raise fail(
            fn,
            f"'{path}' has bad IDX dtype code 0x{code:02x}; expected one of "
            + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES),
        )
    if ndim == 0:
        raise fail(fn, f"'{path}' has an IDX header with 0 dimensions")
    if ndim > _MAX_DIMS:
        raise fail(fn, f"'{path}' has an IDX header with {ndim} dimensions; arrays have at most {_MAX_DIMS}")
    raw_dims = _read_upto(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise fail(fn, f"'{path}' is truncated inside its header ({ndim} dimensions expected)")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    dtype = _IDX_DTYPES[code]
    header = 4 + 4 * ndim
    nbytes = math.prod(dims) * dtype.itemsize  # Python int: no overflow
    what = f"header dims {dims} of {dtype.newbyteorder('=').name} need {nbytes} data bytes"
    if math.prod(d for d in dims if d) * dtype.itemsize > _MAX_BYTES:
        raise fail(fn, f"'{path}' has absurd dimensions: header dims {dims} of "
                       f"{dtype.newbyteorder('=').name} exceed the largest possible array")

    if not gzipped:
        if size < header + nbytes:
            raise fail(fn, f"'{path}' is truncated: {what}, but only {size - header} follow")
        if size > header + nbytes:
            raise fail(
                fn,
                f"'{path}' has {size - header - nbytes} trailing bytes: {what}, "
                f"but {size - header} follow",
            )
    elif nbytes > _GZIP_MAX_RATIO * size + _CHUNK:
        raise fail(
            fn,
            f"'{path}' has absurd dimensions: {what}, more than a {size}-byte gzip file can hold",
        )
    payload = _read_upto(stream, nbytes)
    if len(payload) < nbytes:  # a gzip stream, or a raw file that shrank while being read
        raise fail(fn, f"'{path}' is truncated: {what}, but only {len(payload)} follow")
    if stream.read(1):
        raise fail(fn, f"'{path}' has trailing bytes: {what}, but more follow")
    data = np.frombuffer(payload, dtype=dtype)  # writable: backed by a bytearray
    return data.astype(dtype.newbyteorder("="), copy=False).reshape(dims)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (the format of MNIST and Fashion-MNIST), raw or gzip-compressed.

    Layout: two zero bytes, a dtype code (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float,
    0x0E double), the number of dimensions, each dimension as a big-endian uint32, then the
    big-endian data in row-major order. Everything is checked before the data is allocated: the
    magic, the dtype code, the header, and that the data size is exactly ``prod(dims) * itemsize``
    (for a raw file from its size on disk; for gzip, by reading at most that many bytes and then
    checking for end of file, after rejecting sizes no gzip file of its size could hold).
    Compression is detected from the content (gzip magic ``1f 8b``), not from the name.

    Args:
      path: the file.

    Returns:
      An array shaped ``dims`` in native byte order: uint8, int8, int16, int32, float32 or float64.
      MNIST's image files give ``(N, 28, 28)`` uint8, its label files ``(N,)`` uint8.

    Raises:
      FileNotFoundError: `path` does not exist. IsADirectoryError: `path` is a folder (other
        OSErrors of ``open`` keep their type); each message names the path.
      ValueError: bad magic or dtype code, more dimensions than NumPy allows, dimensions too big
        for any array, truncated data, trailing bytes, or a corrupt gzip stream; the message
        names the file.
    """
    path = os.fspath(path)
    try:
        raw = open(path, "rb")  # closed by the `with raw` below
    except IsADirectoryError as err:
        raise fail("read_idx", f"'{path}' is a directory, not an IDX file", IsADirectoryError) from err
    except FileNotFoundError as err:
        raise fail("read_idx", f"'{path}' does not exist", FileNotFoundError) from err
    except OSError as err:
        raise fail("read_idx", f"cannot open '{path}': {err.strerror or err}", type(err)) from err
    with raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        size = os.fstat(raw.fileno()).st_size
        if not is_gzip:
            return _read_idx_stream(path, raw, size, gzipped=False)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_idx_stream(path, stream, size, gzipped=True)
        except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise fail("read_idx", f"'{path}' is not a valid gzip file: {err}") from err
