"""Fixture preparation: the download path against a local HTTP server, --from, idempotence."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SHARED_SIFTSMALL, SIFTSMALL_FILES

from pqkern.bench.fixture import load_fixture
from pqkern.bench.vecs import write_vecs


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one in-memory archive, honouring ``Range: bytes=N-``."""

    payload = b""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        start = 0
        if self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload) - start))
        self.end_headers()
        self.wfile.write(self.payload[start:])
        type(self).served.append(start)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def archive() -> bytes:
    if not all((SHARED_SIFTSMALL / f).is_file() for f in SIFTSMALL_FILES):
        pytest.skip(f"real siftsmall files not found in {SHARED_SIFTSMALL}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in SIFTSMALL_FILES:
            tar.add(SHARED_SIFTSMALL / f, arcname=f"siftsmall/{f}")
    return buf.getvalue()


def serve(payload: bytes):
    handler = type("Handler", (RangeHandler,), {"payload": payload, "served": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler, f"http://127.0.0.1:{server.server_port}/siftsmall.tar.gz"


def prepare(data: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "scripts" / "prepare_fixtures.sh"), "--source", "siftsmall", *args],
                          env=dict(os.environ, PQKERN_DATA=str(data), PATH=os.path.dirname(sys.executable) + ":" +
                                   os.environ["PATH"]), capture_output=True, text=True, timeout=600)


def test_download_resumes_verifies_and_prepares(tmp_path, archive):
    data = tmp_path / "data"
    part = data / "downloads" / "siftsmall.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(archive[: len(archive) // 2])  # an interrupted earlier download
    server, handler, url = serve(archive)
    try:
        p = prepare(data, "--url", url, "--sha256", hashlib.sha256(archive).hexdigest())
    finally:
        server.shutdown()
    assert p.returncode == 0, p.stderr
    assert handler.served == [len(archive) // 2]  # it asked only for the rest
    assert "resuming at" in p.stderr and "no siftsmall_learn.fvecs: its last 2,000 base rows are held out" in p.stderr
    assert "fixture siftsmall-heldout2000" in p.stderr and (data / "cache" / "siftsmall-heldout2000").is_dir()
    assert (data / "downloads" / "siftsmall.tar.gz").read_bytes() == archive
    again = prepare(data, "--url", url)
    assert again.returncode == 0 and "nothing to do" in again.stderr and "downloading" not in again.stderr


def test_checksum_failure_deletes_the_download(tmp_path, archive):
    server, _, url = serve(archive)
    try:
        p = prepare(tmp_path / "data", "--url", url, "--sha256", "0" * 64)
    finally:
        server.shutdown()
    assert p.returncode == 1 and "does not match the expected" in p.stderr and "--from" in p.stderr
    assert not list((tmp_path / "data" / "downloads").iterdir())


def test_truncated_archive_is_reported(tmp_path, archive):
    server, _, url = serve(archive[: len(archive) * 2 // 3])
    try:
        p = prepare(tmp_path / "data", "--url", url)
    finally:
        server.shutdown()
    assert p.returncode == 1 and "truncated or corrupt" in p.stderr


def test_failed_download_points_to_from(tmp_path):
    p = prepare(tmp_path / "data", "--url", "http://127.0.0.1:9/siftsmall.tar.gz")
    assert p.returncode == 1 and "download of" in p.stderr and "--from PATH" in p.stderr


def test_prepare_from_a_directory(tmp_path, archive):
    p = prepare(tmp_path / "data", "--from", str(SHARED_SIFTSMALL))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "data" / "siftsmall" / "siftsmall_base.fvecs").stat().st_size == 5_160_000
    assert (tmp_path / "data" / "cache" / "siftsmall-heldout2000" / "codebook.sha256").is_file()


def learn_standin(folder: Path) -> Path:
    """A stand-in for the archive's siftsmall_learn.fvecs (25,000 SIFT-like integer vectors; the shared copy has none)."""
    path = folder / "siftsmall_learn.fvecs"
    write_vecs(path, np.random.default_rng(0).integers(0, 120, (25_000, 128)).astype(np.float32))
    return path


def test_the_archives_learn_set_is_kept_as_the_pool_of_fresh_queries(tmp_path, archive):
    learn = learn_standin(tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in SIFTSMALL_FILES:
            tar.add(SHARED_SIFTSMALL / f, arcname=f"siftsmall/{f}")
        tar.add(learn, arcname="siftsmall/siftsmall_learn.fvecs")
    (tmp_path / "siftsmall.tar.gz").write_bytes(buf.getvalue())
    data = tmp_path / "data"
    p = prepare(data, "--from", str(tmp_path / "siftsmall.tar.gz"))
    assert p.returncode == 0, p.stderr
    assert (data / "siftsmall" / "siftsmall_learn.fvecs").read_bytes() == learn.read_bytes()
    assert "fresh queries come from its 25,000 learn vectors" in p.stderr
    fx = load_fixture("siftsmall", data=data)  # the whole base and its shipped ground truth, as before
    assert fx.fixture_id == "siftsmall" and fx.num_base == 10_000
    assert (data / "cache" / "siftsmall" / "codebook.sha256").is_file()


def test_a_learn_set_offered_later_is_copied(tmp_path, archive):
    data = tmp_path / "data"
    assert prepare(data, "--from", str(SHARED_SIFTSMALL)).returncode == 0
    folder = tmp_path / "with-learn"
    folder.mkdir()
    for f in SIFTSMALL_FILES:
        (folder / f).symlink_to(SHARED_SIFTSMALL / f)
    learn_standin(folder)
    p = prepare(data, "--from", str(folder))
    assert p.returncode == 0 and (data / "siftsmall" / "siftsmall_learn.fvecs").is_file(), p.stderr
    assert "fresh queries come from its 25,000 learn vectors" in p.stderr
