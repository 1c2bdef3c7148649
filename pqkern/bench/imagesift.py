"""Real SIFT descriptors from the sample images shipped in the scikit-image wheel (fixture source ``imagesift``).

128-d, integer values 0..255, like TEXMEX SIFT1M, computed with OpenCV's SIFT from the images in
``skimage/data/`` (only those shipped in the wheel: nothing is ever downloaded; the files are read
directly, never through ``skimage.data``'s fetcher). Synthetic drawings (checkerboard, colorwheel,
horse, logo, phantom) and the 25x25 lfw faces are left out; the other 20 shipped images are used.

Fixed recipe, in this order for each image of ``BASE_IMAGES + QUERY_IMAGES`` and each scale of ``SCALES``:

- decode with ``cv2.imread(..., IMREAD_UNCHANGED)`` (the same pixels as ``skimage.data``);
- grayscale uint8 by the integer formula ``(77 R + 150 G + 29 B + 128) >> 8`` (BT.601 in 1/256
  steps; alpha dropped; grayscale files kept as they are);
- resize to ``int(w * s + 0.5) x int(h * s + 0.5)`` with ``cv2.INTER_LINEAR_EXACT`` (bit-exact fixed point);
- ``cv2.SIFT_create(**SIFT_PARAMS)`` on one thread, descriptors in OpenCV's keypoint order. OpenCV's
  float descriptors are already whole numbers in 0..255; they are rounded and clipped anyway.

The contrast threshold (0.005, an eighth of OpenCV's default 0.04) keeps faint features: even so,
at 1.0x the 20 images give only 77,243 rows, hence the upscaled copies. Upscaling adds features finer
than SIFT sees at native size: on six of the images, 15% are under one original pixel at 2x, 39% at
2.5x and 51% at 3x (interpolation, not image content), so scales stop at 2.0, short of 1M. An image's
upscaled copies give related, not identical, descriptors (no two rows are equal): in a 2,000-row
sample, 60% of base rows have an other-scale copy closer than 124, the 5th percentile of the distance
to the nearest row of another image (median 85 against 259). Queries are whole held-out images
(every scale). No base image overlaps them: RANSAC homographies on one-to-one ratio-test matches at
1.0x find one overlapping pair among the 20 images, the motorcycle stereo pair (912 inliers; all
others 6 or fewer), kept together in the base. A query's nearest base row is at median 231
(astronaut 225, rocket 223), as far as another image's is (per base image 172..276, median 251).

Measured (opencv-python-headless 5.0.0.93, scikit-image 0.26.0, numpy 2.4.6, 2 shared vCPUs):
621,969 rows, all distinct, mean value 27.6; base 594,966, query pool 27,003; 25-52 s wall, 2 GB
peak (retina at 2x).

Determinism: OpenCV picks SIMD code paths per CPU at run time (SSE4, AVX, AVX2, AVX-512), and they round
differently: with them on, each dispatch level gave other bytes. So extraction runs with OpenCV's optimised paths
off (``cv2.setUseOptimized(False)``): then every x86-64 dispatch level gives the same bytes
(``tests/test_imagesift.py`` extracts under each ``OPENCV_CPU_DISABLE`` level the CPU offers, in fresh processes;
``scripts/imagesift_dispatch.py`` prints digests and times: 6.3-7.2 s against 5.7-6.6 s for three images, about 8%
slower). Covered: x86-64 CPUs, with the pinned versions of the packages above. Not covered: other architectures
(ARM's NEON paths were never measured) and other builds of OpenCV, scikit-image's images or numpy. A machine that
gives other bytes is told at once (``CANARY``: a 1-second extraction of two small images, before the minutes of the
whole), and its extraction becomes a fixture of its own, ``imagesift-<digest>``, never mixed with the reference
history.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np

from pqkern.bench.vecs import read_vecs, write_vecs

DIM = 128
INSTALL = "pip install -e '.[imagesift]'"
FILES = {  # name in skimage.data -> file shipped in skimage/data/
    "astronaut": "astronaut.png", "brick": "brick.png", "camera": "camera.png", "cell": "cell.png",
    "chelsea": "chelsea.png", "clock": "clock_motion.png", "coffee": "coffee.png", "coins": "coins.png",
    "grass": "grass.png", "gravel": "gravel.png", "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png", "microaneurysms": "microaneurysms.png", "moon": "moon.png",
    "motorcycle_left": "motorcycle_left.png", "motorcycle_right": "motorcycle_right.png",  # stereo_motorcycle
    "page": "page.png", "retina": "retina.jpg", "rocket": "rocket.jpg", "text": "text.png",
}
QUERY_IMAGES = ("astronaut", "rocket")
BASE_IMAGES = tuple(name for name in FILES if name not in QUERY_IMAGES)
SCALES = (1.0, 1.5, 2.0)
SIFT_PARAMS = {"nfeatures": 0, "nOctaveLayers": 3, "contrastThreshold": 0.005, "edgeThreshold": 10.0, "sigma": 1.6,
               "enable_precise_upscale": False}
GRAY_WEIGHTS = (77, 150, 29)  # R, G, B; they sum to 256
DISTRIBUTIONS = ("opencv-python-headless", "scikit-image", "numpy")
FOLDER = "imagesift"  # in the data directory, beside sift/ and siftsmall/
FILENAMES = {"base": "imagesift_base.bvecs", "queries": "imagesift_query.bvecs"}
RECIPE = 2  # 2: OpenCV's optimised paths off (the same bytes on every x86-64 CPU); 1 (no record): dispatched per CPU
# What the pinned packages (opencv-python-headless 5.0.0.93, scikit-image 0.26.0) give with this recipe on x86-64:
# sha256 over the two files' digests, base then queries (the query pool in its stored, shuffled order).
REFERENCE_DIGEST = "b4628a7600f4462df99dc147b6311bdde1211bb52325ae6fa68e8727eea3fb2b"
# A quick extraction whose bytes say, before the whole is extracted, whether this machine gives the reference descriptors.
CANARY = (("coins", "text"), (1.0, 2.0), "b2c1257fb95828e054ef9bbc1837ea65f46f9044e8919dd8192159abbb1c21ae")
ACCEPT_ENV = "PQKERN_IMAGESIFT_DIGEST"  # set to a digest to accept descriptors that differ from the reference
SHUFFLE_SEED = 0  # the query pool is stored in a fixed random order, so its first rows mix both images and every scale


class ImagesiftError(RuntimeError):
    """The descriptors cannot be built or do not match; the message says why and what to do."""


def _image_dir() -> Path:
    """The wheel's own ``skimage/data`` directory (not pooch's download cache)."""
    import skimage.data

    return Path(skimage.data.__file__).parent


def _missing(names: Sequence[str]) -> list[str]:
    folder = _image_dir()
    return [name for name in names if not (folder / FILES[name]).is_file()]


def available() -> str:
    """'' when cv2, skimage and every image are there, else a one-line reason."""
    for module, dist in (("cv2", "opencv-python-headless"), ("skimage", "scikit-image")):
        try:
            __import__(module)
        except ImportError:
            return f"imagesift needs {dist} ({module} does not import): {INSTALL}"
    missing = _missing(tuple(FILES))
    if missing:
        return f"imagesift: scikit-image {versions()['scikit-image']} does not ship {', '.join(missing)}: {INSTALL}"
    return ""


def versions() -> dict[str, str]:
    """Installed versions of the packages the descriptors depend on."""
    out = {}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def _gray(path: Path) -> np.ndarray:
    """One image as grayscale uint8, by the fixed integer formula."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint8:
        raise ValueError(f"{path}: not an 8-bit image OpenCV can read")
    if img.ndim == 2:
        return img
    b, g, r = (img[..., c].astype(np.int32) for c in range(3))
    wr, wg, wb = GRAY_WEIGHTS
    return ((wr * r + wg * g + wb * b + 128) >> 8).astype(np.uint8)


def _scaled(img: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale == 1.0:
        return img
    h, w = img.shape
    return cv2.resize(img, (int(w * scale + 0.5), int(h * scale + 0.5)), interpolation=cv2.INTER_LINEAR_EXACT)


def extract(names: Sequence[str], scales: Sequence[float] = SCALES,
            progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of ``names`` at ``scales``: uint8 ``(n, 128)`` and each row's index in ``names`` (int16).

    Rows come image by image, scale by scale, in OpenCV's keypoint order.
    """
    import cv2

    missing = _missing(names)
    if missing:
        raise FileNotFoundError(f"not shipped with this scikit-image: {', '.join(missing)}")
    cv2.setNumThreads(1)
    cv2.setUseOptimized(False)  # the plain C++ paths: the same bytes whatever SIMD the CPU has (see the docstring)
    sift = cv2.SIFT_create(**SIFT_PARAMS)
    rows, owner = [], []
    for i, name in enumerate(names):
        img = _gray(_image_dir() / FILES[name])
        for scale in scales:
            desc = sift.detectAndCompute(_scaled(img, scale), None)[1]
            desc = np.zeros((0, DIM), np.float32) if desc is None else desc
            rows.append(np.clip(np.rint(desc), 0, 255).astype(np.uint8))
            owner.append(np.full(len(desc), i, np.int16))
        if progress:
            progress(i + 1, len(names))
    return np.ascontiguousarray(np.concatenate(rows)), np.concatenate(owner)


def _one(name: str, scales: tuple[float, ...]) -> np.ndarray:
    return extract((name,), scales)[0]


def build(progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The fixed split: (base uint8 ``(nb, 128)``, query pool uint8 ``(nq, 128)``).

    Images are extracted in ``workers`` processes (each on one thread; every core by default) and
    assembled in the fixed order, so the bytes are those of :func:`extract` on all of them."""
    names = BASE_IMAGES + QUERY_IMAGES
    missing = _missing(names)
    if missing:
        raise FileNotFoundError(f"not shipped with this scikit-image: {', '.join(missing)}")
    order = sorted(names, key=lambda n: -(_image_dir() / FILES[n]).stat().st_size)  # the big ones first
    done: dict[str, np.ndarray] = {}
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the caller's threads
    with ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=context) as pool:
        for name, desc in zip(order, pool.map(_one, order, [tuple(SCALES)] * len(order)), strict=True):
            done[name] = desc
            if progress:
                progress(len(done), len(names))
    base = np.concatenate([done[n] for n in BASE_IMAGES])
    queries = np.concatenate([done[n] for n in QUERY_IMAGES])
    return np.ascontiguousarray(base), np.ascontiguousarray(queries)


def fixture_id(folder: Path) -> str:
    """``imagesift`` for the reference descriptors; ``imagesift-<digest>`` for another extraction (a fixture of its own),
    as the extraction in ``folder`` recorded it (the reference when nothing is extracted yet; :func:`load` verifies)."""
    try:
        found = json.loads((folder / "imagesift.json").read_text()).get("digest", REFERENCE_DIGEST)
    except (OSError, ValueError):
        found = REFERENCE_DIGEST
    return "imagesift" if found == REFERENCE_DIGEST else f"imagesift-{found[:12]}"


def canary() -> str:
    """'' when this machine extracts the canary images as the reference machine did, else what differs."""
    names, scales, expected = CANARY
    found = hashlib.sha256(extract(names, scales)[0].tobytes()).hexdigest()
    if found == expected:
        return ""
    return (f"this machine's OpenCV extracts other SIFT bytes than the reference (canary {found[:16]}..., reference "
            f"{expected[:16]}...; {versions()}): its descriptors will be a fixture of their own, never mixed with the "
            f"reference history")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def digest(folder: Path) -> str:
    """The fixture digest of the two files in ``folder``."""
    return hashlib.sha256("".join(_file_digest(folder / FILENAMES[p]) for p in ("base", "queries")).encode()).hexdigest()


def _extract_into(folder: Path, progress) -> None:
    """Extract the descriptors into ``folder``, atomically: built in a private folder beside it, then renamed (if another
    process got there first, its folder stands and this one is dropped)."""
    reason = available()
    if reason:
        raise ImagesiftError(reason)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        base, queries = build(progress)
        queries = queries[np.random.default_rng(SHUFFLE_SEED).permutation(len(queries))]
        for part, array in (("base", base), ("queries", queries)):
            write_vecs(tmp / FILENAMES[part], array)
        (tmp / "imagesift.json").write_text(json.dumps({
            "versions": versions(), "digest": digest(tmp), "rows": {"base": len(base), "queries": len(queries)},
            "scales": SCALES, "sift": SIFT_PARAMS, "base_images": BASE_IMAGES, "query_images": QUERY_IMAGES,
            "recipe": RECIPE}, indent=1) + "\n")
        os.rename(tmp, folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(folder: Path, progress: Callable[[int, int], None] | None = None,
         say: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(base, query pool), memory-mapped: extracted into ``folder`` once, then verified on every load.

    Accepted: the reference digest; another digest named in ``PQKERN_IMAGESIFT_DIGEST``; or the digest recorded when this
    recipe extracted the files here (another CPU or build: a fixture of its own, :func:`fixture_id`). An extraction by
    an older recipe is moved aside and extracted again. Files that changed since they were extracted are an
    ImagesiftError naming both digests."""
    say = say or (lambda msg: None)
    paths = {p: folder / name for p, name in FILENAMES.items()}
    record = folder / "imagesift.json"
    made = _record(record)
    if folder.exists() and made.get("recipe") != RECIPE and made.get("digest") != os.environ.get(ACCEPT_ENV):
        aside = folder.with_name(f"{folder.name}.recipe{made.get('recipe', 1)}-{str(made.get('digest', 'unknown'))[:12]}")
        say(f"imagesift: {folder} was extracted by an older recipe (SIMD-dependent bytes): moved to {aside}, "
            f"extracting again")
        os.rename(folder, aside)
    if not folder.exists():
        reason = available()
        if reason:
            raise ImagesiftError(reason)
        differs = canary()
        if differs:
            say(f"imagesift: {differs}")
        _extract_into(folder, progress)
        made = _record(record)
    missing = [p.name for p in (*paths.values(), record) if not p.is_file()]
    if missing:
        raise ImagesiftError(f"{folder}: {', '.join(missing)} missing: delete {folder} to extract the descriptors again")
    found = digest(folder)
    if found not in (REFERENCE_DIGEST, os.environ.get(ACCEPT_ENV), made.get("digest")):
        raise ImagesiftError(
            f"{folder}: the descriptors have digest {found[:16]}..., neither the reference {REFERENCE_DIGEST[:16]}... nor "
            f"the {str(made.get('digest', 'unknown'))[:16]}... recorded when they were extracted "
            f"({made.get('versions', 'unknown versions')}): the files changed since. Delete {folder} to extract them again")
    if found != REFERENCE_DIGEST:
        say(f"imagesift: using descriptors that differ from the reference (digest {found[:16]}...): fixture "
            f"imagesift-{found[:12]}, recorded as such in results.tsv and asv")
    return tuple(read_vecs(paths[p], DIM) for p in ("base", "queries"))


def _record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
