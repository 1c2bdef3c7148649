"""The seeded baseline kernel, in-process, against the reference ADC."""

from __future__ import annotations

import numpy as np

from pqkern import kernels
from pqkern.bench import reference
from pqkern.bench.fixture import load_fixture


def test_baseline_topk_equals_reference_adc_topk(data_dir):
    fx = load_fixture("smoke")
    codes, codebook = np.asarray(fx.codes), np.asarray(fx.codebook)
    index = kernels.prepare(codes, codebook)
    for qi in range(fx.queries.shape[0]):
        ids, dists = kernels.search(index, np.asarray(fx.queries[qi]), 10)
        assert ids.dtype == np.int64 and dists.dtype == np.float32 and ids.shape == dists.shape == (10,)
        _, ref_d = reference.adc_topk(codes, codebook, fx.queries[qi], 10)
        np.testing.assert_allclose(dists, ref_d, rtol=1e-5)  # ids may swap on ties; distances may not
        np.testing.assert_allclose(dists, reference.adc_distances(codes, codebook, fx.queries[qi], ids), rtol=1e-5)


def test_kernel_module_imports_only_numpy_numba_math():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(kernels.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert names <= {"numpy", "numba", "math"}
