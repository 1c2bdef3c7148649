"""The pipe protocol between the judge and a kernel's worker process (immutable bench).

A message is an 8-byte little-endian length, a JSON header of that many bytes, then the raw
bytes of the arrays the header declares (``"arrays": [[dtype, shape], ...]``, C order). The
judge never unpickles anything from a worker: it accepts only the dtypes in ``DTYPES``, checks
every declared size against a cap before reading, and views the bytes with ``np.frombuffer``.
"""

from __future__ import annotations

import json
import os
import select
import time

import numpy as np

DTYPES = {"int64": np.int64, "int32": np.int32, "float32": np.float32}
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 1 << 30


class ProtocolError(RuntimeError):
    """The other side sent something malformed, or went away."""


class Deadline(Exception):
    """The other side did not answer before the deadline."""


def send(fd: int, header: dict, *arrays: np.ndarray) -> None:
    """Write one message: the header (with the arrays' dtypes and shapes added) and the arrays' bytes."""
    parts = [np.ascontiguousarray(a) for a in arrays]
    head = json.dumps(dict(header, arrays=[[a.dtype.name, list(a.shape)] for a in parts])).encode()
    payload = b"".join([len(head).to_bytes(8, "little"), head] + [a.tobytes() for a in parts])
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, left = [], n
    while left:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise Deadline()
        chunk = os.read(fd, min(left, 1 << 22))
        if not chunk:
            raise ProtocolError("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd: int, deadline: float | None = None) -> tuple[dict, list[np.ndarray]]:
    """Read one message: ``(header, arrays)``. Raises ProtocolError or Deadline (monotonic seconds)."""
    size = int.from_bytes(_read_exactly(fd, 8, deadline), "little")
    if size > MAX_HEADER:
        raise ProtocolError(f"message header of {size} bytes is over the {MAX_HEADER}-byte cap")
    try:
        header = json.loads(_read_exactly(fd, size, deadline))
        specs = [(DTYPES[dtype], tuple(int(d) for d in shape)) for dtype, shape in header.pop("arrays")]
    except (ValueError, KeyError, TypeError) as e:
        raise ProtocolError(f"malformed message header: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError("malformed message header: not an object")
    sizes = [int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize for dtype, shape in specs]
    if any(s < 0 for s in sizes) or sum(sizes) > MAX_PAYLOAD:
        raise ProtocolError(f"message declares {sum(sizes)} bytes of arrays, over the {MAX_PAYLOAD}-byte cap")
    arrays = [np.frombuffer(_read_exactly(fd, s, deadline), dtype).reshape(shape) if s else np.zeros(shape, dtype)
              for (dtype, shape), s in zip(specs, sizes, strict=True)]
    return header, arrays
