"""The imagesift extraction under each SIMD dispatch level this CPU offers: digest and time, optimised and plain paths.

    .venv/bin/python scripts/imagesift_dispatch.py [--images astronaut camera coffee] [--scales 1 1.5 2]

Each extraction runs in a subprocess with ``OPENCV_CPU_DISABLE`` set (standing in for an older CPU), once with
OpenCV's optimised paths as they are (``cv2.setUseOptimized(True)``, the old recipe) and once with them off (the
recipe of ``pqkern/bench/imagesift.py``), in turn, so both timings share the machine's state.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import hashlib, json, sys, time
import cv2
from pqkern.bench import imagesift
optimised = sys.argv[1] == "optimised"
if optimised:  # the old recipe: leave OpenCV's dispatch as it is
    cv2.setUseOptimized = lambda flag: None
t = time.perf_counter()
desc, _ = imagesift.extract(tuple(json.loads(sys.argv[2])), tuple(json.loads(sys.argv[3])))
print(json.dumps({"rows": len(desc), "sha256": hashlib.sha256(desc.tobytes()).hexdigest(),
                  "seconds": time.perf_counter() - t}))
"""


def levels() -> list[str]:
    """Cumulative ``OPENCV_CPU_DISABLE`` values, from none to every feature the CPU's dispatch line marks as optional."""
    line = subprocess.run([sys.executable, "-c", "import cv2; print(cv2.getCPUFeaturesLine())"], capture_output=True,
                          text=True, check=True).stdout.split()
    optional = [f[1:] for f in line if f.startswith("*")][::-1]  # the newest first
    return [",".join(optional[:i]) for i in range(len(optional) + 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", nargs="+", default=["astronaut", "camera", "coffee"])
    ap.add_argument("--scales", nargs="+", type=float, default=[1.0, 1.5, 2.0])
    args = ap.parse_args()
    print(f"{'OPENCV_CPU_DISABLE':45} {'path':9} {'rows':>7} {'sha256':16} seconds")
    for level in levels():
        for path in ("optimised", "plain"):
            env = dict(os.environ, OPENCV_CPU_DISABLE=level)
            out = subprocess.run([sys.executable, "-c", CHILD, path, json.dumps(args.images), json.dumps(args.scales)],
                                 capture_output=True, text=True, env=env, check=True).stdout
            got = json.loads(out.strip().splitlines()[-1])
            print(f"{level or '(none)':45} {path:9} {got['rows']:7,} {got['sha256'][:16]} {got['seconds']:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
