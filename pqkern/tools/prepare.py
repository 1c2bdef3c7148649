"""Prepare a fixture: get the TEXMEX files (download with resume, or ``--from``), verify, train, encode, cache.

    scripts/prepare_fixtures.sh                         # sift1m from the TEXMEX corpus
    scripts/prepare_fixtures.sh --from ~/sift.tar.gz    # or an archive / directory you already have
    scripts/prepare_fixtures.sh --source siftsmall --from ../shared/data/siftsmall
    scripts/prepare_fixtures.sh --source synthetic      # the 1M synthetic set (generated)
    scripts/prepare_fixtures.sh --source imagesift      # real SIFT from scikit-image's sample images (extracted)

Idempotent: a second run finds everything verified and cached and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from pqkern.bench.fixture import (
    DIM,
    GT_K,
    HELD_OUT,
    SIFT_FILES,
    SIFT_POOL,
    FixtureError,
    data_dir,
    fixture_id,
    held_out,
    load_fixture,
)
from pqkern.bench.vecs import VecsError, read_vecs

TEXMEX = "ftp://ftp.irisa.fr/local/texmex/corpus/"
ARCHIVES = {"sift1m": "sift.tar.gz", "siftsmall": "siftsmall.tar.gz"}


class PrepareError(RuntimeError):
    """Preparation failed; the message says what to do."""


def say(msg: str) -> None:
    print(f"[prepare] {msg}", file=sys.stderr, flush=True)


def expected_files(source: str) -> dict[str, tuple[int, int]]:
    """File name -> (dimension, count) of a TEXMEX source."""
    _, prefix, parts = SIFT_FILES[source]
    return {f"{prefix}_{p}.{'ivecs' if p == 'groundtruth' else 'fvecs'}": (GT_K if p == "groundtruth" else DIM, n)
            for p, n in parts.items()}


def optional_files(source: str) -> dict[str, tuple[int, int]]:
    """File name -> (dimension, count) of the source's optional pool of fresh queries (siftsmall's learn set)."""
    if source not in SIFT_POOL:
        return {}
    part, count = SIFT_POOL[source]
    return {f"{SIFT_FILES[source][1]}_{part}.fvecs": (DIM, count)}


def verify(source: str, folder: Path) -> None:
    """Check every expected file, and the optional ones that are there."""
    present = {n: v for n, v in optional_files(source).items() if (folder / n).is_file()}
    for name, (dim, count) in {**expected_files(source), **present}.items():
        try:
            read_vecs(folder / name, dim, count)
        except VecsError as e:
            raise PrepareError(f"{e}") from e


def download(url: str, target: Path, sha256: str | None, chunk: int = 1 << 20) -> Path:
    """Download ``url`` to ``target``, resuming a ``.part`` file over HTTP; check ``sha256`` if given."""
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status = getattr(response, "status", None)
            mode = "ab" if have and status == 206 else "wb"
            if have and mode == "wb":
                say(f"the server cannot resume; starting {target.name} again")
            total = response.headers.get("Content-Length")
            say(f"downloading {url} ({'resuming at ' + str(have) + ' bytes, ' if mode == 'ab' else ''}"
                f"{int(total) + (have if mode == 'ab' else 0) if total else '?'} bytes)")
            with open(part, mode) as f:
                shutil.copyfileobj(response, f, chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise PrepareError(f"download of {url} failed ({e}); what arrived is kept in {part} and the next run resumes it. "
                           f"Without a network, download it elsewhere and pass --from PATH") from e
    if sha256:
        h = hashlib.sha256()
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        if h.hexdigest() != sha256.lower():
            part.unlink()
            raise PrepareError(f"{url}: sha256 {h.hexdigest()} does not match the expected {sha256}; "
                               f"the download was deleted: run again, or pass --from PATH")
    part.replace(target)
    return target


def extract(archive: Path, source: str, folder: Path) -> None:
    """Extract the source's files (by name, wherever they sit in the archive; the optional ones when it has them) into
    ``folder``."""
    wanted = set(expected_files(source))
    optional = set(optional_files(source))
    folder.mkdir(parents=True, exist_ok=True)
    found = set()
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and name in wanted | optional:
                    tmp = folder / (name + ".tmp")
                    with tar.extractfile(member) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    tmp.replace(folder / name)
                    found.add(name)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise PrepareError(f"{archive}: the archive is truncated or corrupt ({e}); delete it and download it again") from e
    if wanted - found:
        raise PrepareError(f"{archive}: missing {', '.join(sorted(wanted - found))}; is this the {ARCHIVES[source]} archive?")


def obtain(source: str, origin: str | None, url: str | None, sha256: str | None, data: Path) -> None:
    """Make the source's files present and verified in ``data/<folder>``."""
    folder = data / SIFT_FILES[source][0]
    path = Path(origin).expanduser().resolve() if origin else None
    offered = path is not None and any((path / n).is_file() and not (folder / n).is_file() for n in optional_files(source))
    try:
        verify(source, folder)
        if not offered:
            say(f"{source}: files present and verified in {folder}")
            return
    except PrepareError:
        pass
    if path is not None:
        if path.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            for name in expected_files(source):
                if not (path / name).is_file():
                    raise PrepareError(f"{path}: {name} not found; expected the {source} files there")
            for name in [*expected_files(source), *optional_files(source)]:
                if (path / name).is_file() and (path / name).resolve() != (folder / name).resolve():
                    shutil.copyfile(path / name, folder / name)
        elif path.is_file():
            extract(path, source, folder)
        else:
            raise PrepareError(f"--from {origin}: no such file or directory")
    else:
        archive = download(url or TEXMEX + ARCHIVES[source], data / "downloads" / ARCHIVES[source], sha256)
        extract(archive, source, folder)
    verify(source, folder)
    say(f"{source}: files verified in {folder}")


def fixture_cached(source: str, data: Path) -> bool:
    cache = data / "cache" / fixture_id(source, data=data)
    sha = cache / "codebook.sha256"
    return sha.is_file() and (cache / f"codes-{sha.read_text().strip()[:16]}.npy").is_file() and (
        cache / "queries.npy").is_file() and (source in SIFT_FILES or (cache / "groundtruth.ivecs").is_file()) and (
        source != "imagesift" or (data / "imagesift" / "imagesift.json").is_file())


def pool_note(source: str, data: Path) -> str:
    """Where the source's fresh queries come from, and what its codebook is trained on."""
    name = next(iter(optional_files(source)))
    base = SIFT_FILES[source][2]["base"]
    if held_out(source, data):
        return (f"{source}: no {name}: its last {HELD_OUT[source]:,} base rows are held out as the pool of fresh queries "
                f"(fixture {fixture_id(source, data=data)}); the codebook is trained on the other "
                f"{base - HELD_OUT[source]:,} base vectors")
    return (f"{source}: fresh queries come from its {SIFT_POOL[source][1]:,} learn vectors ({name}); the codebook is "
            f"trained on its {base:,} base vectors")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prepare_fixtures.sh", description=__doc__.split("\n")[0])
    p.add_argument("--source", default="sift1m", choices=["sift1m", "siftsmall", "synthetic", "imagesift"])
    p.add_argument("--from", dest="origin", help="an already-downloaded archive (.tar.gz) or directory of the files")
    p.add_argument("--url", help="download from here instead of the TEXMEX corpus")
    p.add_argument("--sha256", help="expected sha256 of the downloaded archive")
    args = p.parse_args(argv)
    data = data_dir()
    start = time.monotonic()
    try:
        if args.source in SIFT_FILES:
            obtain(args.source, args.origin, args.url, args.sha256, data)
            say(f"step: files ready ({time.monotonic() - start:.1f}s)")
        elif args.origin or args.url:
            raise PrepareError(f"{args.source} data is made here: --from and --url apply to sift1m and siftsmall")
        if fixture_cached(args.source, data):
            say(f"{args.source}: fixture already prepared in {data / 'cache' / fixture_id(args.source, data=data)}: "
                "nothing to do")
            return 0
        if args.source in SIFT_POOL:
            say(pool_note(args.source, data))
        t = time.monotonic()
        fx = load_fixture(args.source, data=data)
        say(f"step: codebook, codes and ground truth cached ({time.monotonic() - t:.1f}s)")
    except (PrepareError, FixtureError) as e:
        print(f"prepare_fixtures: {e}", file=sys.stderr)
        return 1
    say(f"{fx.fixture_id}: prepared in {time.monotonic() - start:.1f}s (codebook sha256 {fx.codebook_sha256[:16]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
