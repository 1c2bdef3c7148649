"""Readers and writers for the TEXMEX ``.fvecs`` / ``.ivecs`` / ``.bvecs`` formats.

Part of the immutable bench. Each record is a little-endian int32 dimension ``d``
followed by ``d`` values (float32, int32 or uint8). Readers memory-map the file,
check its size and every record header, and raise :class:`VecsError` naming the
file, the record and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

VALUE_DTYPES = {".fvecs": np.dtype("<f4"), ".ivecs": np.dtype("<i4"), ".bvecs": np.dtype("u1")}


class VecsError(ValueError):
    """A vector file is missing, truncated or malformed."""


def _value_dtype(path: Path) -> np.dtype:
    try:
        return VALUE_DTYPES[path.suffix]
    except KeyError:
        raise VecsError(f"{path}: unknown vector file type {path.suffix!r} (expected .fvecs, .ivecs or .bvecs)") from None


def read_vecs(path: str | os.PathLike, dim: int | None = None, count: int | None = None) -> np.ndarray:
    """Memory-map a vecs file as a read-only ``(n, d)`` array after validating it.

    ``dim`` and ``count``, when given, are the expected dimension and number of records.
    """
    path = Path(path)
    dtype = _value_dtype(path)
    if not path.is_file():
        raise VecsError(f"{path}: file not found")
    size = path.stat().st_size
    if size < 4:
        raise VecsError(f"{path}: {size} bytes is too short for even one record header (4 bytes)")
    first = int(np.fromfile(path, dtype="<i4", count=1)[0])
    if first <= 0 or first > 1 << 20:
        raise VecsError(f"{path}: record 0: header says dimension {first}, which is not a plausible dimension")
    if dim is not None and first != dim:
        raise VecsError(f"{path}: record 0: header says dimension {first}, expected {dim}")
    record = 4 + first * dtype.itemsize
    n, tail = divmod(size, record)
    if tail:
        raise VecsError(
            f"{path}: {size} bytes is not a whole number of {record}-byte records (dimension {first}); "
            f"record {n} is truncated ({tail} of {record} bytes): re-download or regenerate the file"
        )
    if count is not None and n != count:
        raise VecsError(f"{path}: holds {n} records, expected {count}")
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, record))
    _check_headers(path, raw, first)
    if dtype.itemsize == 1:
        return raw[:, 4:]
    return raw.view(dtype)[:, 1:]


def _check_headers(path: Path, raw: np.ndarray, dim: int, chunk: int = 1 << 20) -> None:
    for start in range(0, raw.shape[0], chunk):
        heads = np.ascontiguousarray(raw[start : start + chunk, :4]).view("<i4")[:, 0]
        bad = np.flatnonzero(heads != dim)
        if bad.size:
            i = start + int(bad[0])
            raise VecsError(f"{path}: record {i}: header says dimension {int(heads[bad[0]])}, expected {dim}")


def write_vecs(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a 2-d array as a vecs file (type from the suffix), atomically."""
    path = Path(path)
    dtype = _value_dtype(path)
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] == 0:
        raise VecsError(f"{path}: can only write a non-empty 2-d array, got shape {array.shape}")
    n, d = array.shape
    out = np.empty((n, 4 + d * dtype.itemsize), dtype=np.uint8)
    out[:, :4] = np.full((n, 1), d, dtype="<i4").view(np.uint8)
    out[:, 4:] = np.ascontiguousarray(array, dtype=dtype).view(np.uint8).reshape(n, -1)
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    out.tofile(tmp)
    os.replace(tmp, path)
