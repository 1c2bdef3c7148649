"""The imagesift source: a small real extraction (three small images, two scales), and the fixed split's constants."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pqkern.bench import imagesift

SMALL = ("microaneurysms", "clock", "text")  # the three smallest shipped images: a few thousand descriptors
SMALL_SCALES = (1.0, 1.25)


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    reason = imagesift.available()
    if reason:
        pytest.skip(reason)
    return imagesift.extract(SMALL, SMALL_SCALES)


def test_split_constants_are_disjoint_and_known():
    assert not set(imagesift.BASE_IMAGES) & set(imagesift.QUERY_IMAGES)
    assert set(imagesift.BASE_IMAGES) | set(imagesift.QUERY_IMAGES) <= set(imagesift.FILES)
    assert len(set(imagesift.BASE_IMAGES)) == len(imagesift.BASE_IMAGES) and imagesift.QUERY_IMAGES
    assert list(imagesift.SCALES) == sorted(set(imagesift.SCALES)) and imagesift.SCALES[0] == 1.0


def test_extract_shapes_dtypes_and_values(small):
    desc, owner = small
    assert desc.dtype == np.uint8 and desc.ndim == 2 and desc.shape[1] == imagesift.DIM and desc.flags.c_contiguous
    assert 1_000 < len(desc) < 10_000
    assert owner.shape == (len(desc),) and owner.dtype in (np.int16, np.int32)
    assert np.all(np.diff(owner) >= 0) and set(np.unique(owner)) == set(range(len(SMALL)))  # image by image
    assert desc.max() <= 255 and 5 < desc.mean() < 60 and np.all(desc.astype(np.int64).sum(axis=1) > 0)


def test_extract_is_deterministic_and_ordered_image_then_scale(small):
    desc, owner = small
    again, owner_again = imagesift.extract(SMALL, SMALL_SCALES)
    assert again.tobytes() == desc.tobytes() and owner_again.tobytes() == owner.tobytes()
    first, _ = imagesift.extract(SMALL[:1], SMALL_SCALES[:1])
    assert 0 < len(first) < int((owner == 0).sum()) and desc[: len(first)].tobytes() == first.tobytes()


def test_versions_names_every_package():
    assert set(imagesift.versions()) == {"opencv-python-headless", "scikit-image", "numpy"}


def test_import_and_available_without_opencv():
    code = ("import sys; sys.modules['cv2'] = None\n"
            "from pqkern.bench import imagesift\n"
            "print(imagesift.available())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert "opencv-python-headless" in out and imagesift.INSTALL in out and "\n" not in out


def test_the_fixture_is_verified_on_every_load(tmp_path, monkeypatch):
    """A small real extraction through load_fixture: its bytes are not the reference's, so it is a fixture of its own
    (never mixed with the reference's history), refused once a file changes; an older recipe's is moved aside."""
    from pqkern.bench.fixture import FixtureError, load_fixture

    reason = imagesift.available()
    if reason:
        pytest.skip(reason)
    monkeypatch.delenv(imagesift.ACCEPT_ENV, raising=False)
    monkeypatch.setattr(imagesift, "BASE_IMAGES", ("microaneurysms", "clock"))
    monkeypatch.setattr(imagesift, "QUERY_IMAGES", ("text",))
    monkeypatch.setattr(imagesift, "SCALES", (1.0,))
    fx = load_fixture("imagesift", data=tmp_path)
    folder = tmp_path / imagesift.FOLDER
    digest = imagesift.digest(folder)
    record = json.loads((folder / "imagesift.json").read_text())
    assert record["digest"] == digest and record["recipe"] == imagesift.RECIPE
    assert record["versions"]["scikit-image"] == imagesift.versions()["scikit-image"]
    assert fx.fixture_id == f"imagesift-{digest[:12]}" and fx.cache_dir.name == fx.fixture_id
    assert fx.base.dtype == np.uint8 and fx.codes.shape[1] == fx.num_base
    base, _ = imagesift.extract(("microaneurysms", "clock"), (1.0,))
    assert np.array_equal(np.asarray(fx.base), base)  # what was cached is what the extraction gives
    raw = bytearray((folder / imagesift.FILENAMES["base"]).read_bytes())
    raw[-1] ^= 1
    (folder / imagesift.FILENAMES["base"]).write_bytes(bytes(raw))
    with pytest.raises(FixtureError, match="the files changed since.*Delete"):
        load_fixture("imagesift", data=tmp_path)
    raw[-1] ^= 1
    (folder / imagesift.FILENAMES["base"]).write_bytes(bytes(raw))
    del record["recipe"]  # an extraction by the old, SIMD-dependent recipe: kept aside, extracted again
    (folder / "imagesift.json").write_text(json.dumps(record))
    again = load_fixture("imagesift", data=tmp_path)
    assert again.fixture_id == fx.fixture_id and (tmp_path / f"imagesift.recipe1-{digest[:12]}").is_dir()


def test_the_same_bytes_under_every_simd_dispatch_level():
    """Other CPUs, stood in for by OPENCV_CPU_DISABLE: each level this CPU offers, in a fresh process, one digest. With
    OpenCV's optimised paths on (the old recipe) the levels give different bytes, so the test can fail."""
    reason = imagesift.available()
    if reason:
        pytest.skip(reason)
    line = subprocess.run([sys.executable, "-c", "import cv2; print(cv2.getCPUFeaturesLine())"], capture_output=True,
                          text=True, check=True).stdout.split()
    optional = [f[1:] for f in line if f.startswith("*")][::-1]
    if not optional:
        pytest.skip(f"this CPU's OpenCV dispatches no optional SIMD level: {' '.join(line)}")
    code = ("import hashlib, sys\nfrom pqkern.bench import imagesift\n"
            f"d, _ = imagesift.extract({SMALL!r}, {SMALL_SCALES!r})\nprint(hashlib.sha256(d.tobytes()).hexdigest())")
    digests = {}
    for i in range(len(optional) + 1):
        level = ",".join(optional[:i])
        env = dict(os.environ, OPENCV_CPU_DISABLE=level)
        digests[level] = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                        check=True).stdout.split()[-1]
    assert len(set(digests.values())) == 1, digests
