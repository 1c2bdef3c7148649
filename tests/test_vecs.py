"""The TEXMEX vector readers and writers, on files we write and break."""

from __future__ import annotations

import numpy as np
import pytest

from pqkern.bench.vecs import VecsError, read_vecs, write_vecs


@pytest.mark.parametrize("suffix, dtype", [(".fvecs", np.float32), (".ivecs", np.int32), (".bvecs", np.uint8)])
def test_round_trip(tmp_path, suffix, dtype):
    data = (np.arange(5 * 7) % 200).reshape(5, 7).astype(dtype)
    path = tmp_path / f"x{suffix}"
    write_vecs(path, data)
    assert path.stat().st_size == 5 * (4 + 7 * np.dtype(dtype).itemsize)
    back = read_vecs(path, dim=7, count=5)
    assert back.dtype == dtype and np.array_equal(back, data)
    assert not back.flags.writeable


def test_truncated_file_names_file_and_record(tmp_path):
    path = tmp_path / "base.fvecs"
    write_vecs(path, np.ones((4, 8), np.float32))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(VecsError, match=r"base\.fvecs.*record 3 is truncated"):
        read_vecs(path)


def test_bad_header_names_the_record(tmp_path):
    path = tmp_path / "gt.ivecs"
    write_vecs(path, np.zeros((6, 4), np.int32))
    raw = bytearray(path.read_bytes())
    raw[4 * 20 : 4 * 20 + 4] = np.array([3], "<i4").tobytes()  # record 4's header (20-byte records)
    path.write_bytes(bytes(raw))
    with pytest.raises(VecsError, match=r"gt\.ivecs: record 4: header says dimension 3, expected 4"):
        read_vecs(path)


def test_expected_dimension_and_count(tmp_path):
    path = tmp_path / "q.fvecs"
    write_vecs(path, np.zeros((3, 16), np.float32))
    with pytest.raises(VecsError, match="record 0: header says dimension 16, expected 128"):
        read_vecs(path, dim=128)
    with pytest.raises(VecsError, match="holds 3 records, expected 10"):
        read_vecs(path, count=10)


def test_garbage_and_empty_files(tmp_path):
    empty = tmp_path / "e.fvecs"
    empty.write_bytes(b"")
    with pytest.raises(VecsError, match="too short"):
        read_vecs(empty)
    junk = tmp_path / "j.fvecs"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(VecsError, match="not a plausible dimension"):
        read_vecs(junk)
    with pytest.raises(VecsError, match="file not found"):
        read_vecs(tmp_path / "missing.fvecs")
    with pytest.raises(VecsError, match="unknown vector file type"):
        read_vecs(tmp_path / "x.npy")
