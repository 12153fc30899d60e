"""One line per CuPy facility that nmosim's GPU stages call, on a CUDA machine: ok with the
largest difference from numpy/scipy, or the error. Seconds to run; first in benchmarks/gpu_check.sh,
so that a missing library shows before the tests that would fail on it.

ASTRA is imported first, as nmosim imports it: on the lent machine its CUDA-12 wheel loads the
bundle's libcufft.so.11 shim (five entry points, /work/shared/gpu/cufft_shim.c), and a CuPy built
for CUDA 12 asks for a library of that same name. Run: ``python benchmarks/gpu_smoke.py``.
"""

from __future__ import annotations

import astra  # noqa: F401  (first, as in nmosim: see the docstring)
import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.sparse


def checks(cp, cpx_ndimage, cpx_sparse) -> dict:
    """name -> function returning (ours on the GPU as numpy, the numpy/scipy reference)."""
    rng = np.random.default_rng(0)
    image = rng.random((24, 40), dtype=np.float32)
    rows = rng.random((3, 12, 50), dtype=np.float32)
    coords = rng.uniform(-1.0, 24.0, size=(2, 30, 20))
    matrix = scipy.sparse.random(60, 600, density=0.02, format="csr", dtype=np.float32, random_state=1)
    dense = rng.random((600, 5), dtype=np.float32)
    g = cp.asarray
    return {
        "float32 exp": lambda: (cp.exp(g(-image)).get(), np.exp(-image)),
        "float32 rfft/irfft": lambda: (
            cp.fft.irfft(cp.fft.rfft(g(rows), n=128, axis=-1), n=128, axis=-1).get(),
            scipy.fft.irfft(scipy.fft.rfft(rows, n=128, axis=-1), n=128, axis=-1),
        ),
        "float64 rfftn/irfftn": lambda: (
            cp.fft.irfftn(cp.fft.rfftn(g(image.astype(np.float64))), s=image.shape).get(),
            image.astype(np.float64),
        ),
        "csr @ dense (float32)": lambda: (
            (cpx_sparse.csr_matrix(matrix) @ g(dense.T.copy()).T).get(),
            matrix @ dense,
        ),
        "matmul float64": lambda: (
            (g(dense.astype(np.float64)).T @ g(dense.astype(np.float64))).get(),
            dense.T.astype(np.float64) @ dense.astype(np.float64),
        ),  # fmt: skip
        "map_coordinates order 1": lambda: (
            cpx_ndimage.map_coordinates(g(image), g(coords), order=1, mode="constant", cval=0.0).get(),
            scipy.ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=0.0),
        ),
        "gaussian_filter nearest": lambda: (
            cpx_ndimage.gaussian_filter(g(image), (1.3, 2.1), mode="nearest", truncate=3.0).get(),
            scipy.ndimage.gaussian_filter(image, (1.3, 2.1), mode="nearest", truncate=3.0),
        ),
        "gaussian_filter constant f64": lambda: (
            cpx_ndimage.gaussian_filter(
                g(image.astype(np.float64)), 2.5, mode="constant", truncate=3.0
            ).get(),
            scipy.ndimage.gaussian_filter(image.astype(np.float64), 2.5, mode="constant", truncate=3.0),
        ),
    }


def astra_link(cp) -> str:
    """ASTRA links a contiguous float32 CuPy volume (DLPack) and refuses a strided one."""
    geometry = astra.create_vol_geom(6, 5, 4)
    volume = cp.zeros((4, 6, 5), dtype=cp.float32)
    ids = [astra.data3d.link("-vol", geometry, volume)]
    astra.data3d.delete(ids)
    try:
        astra.data3d.link("-vol", geometry, cp.zeros((4, 6, 10), dtype=cp.float32)[:, :, ::2])
    except ValueError as error:
        return f"ok (strided refused: {error})"
    return "linked a strided array (run3d's fallback will not see a ValueError)"


def main() -> None:
    try:
        import cupy as cp
        import cupyx.scipy.ndimage as cpx_ndimage
        import cupyx.scipy.sparse as cpx_sparse

        print(f"cupy {cp.__version__}, CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}")
    except Exception as error:  # report, do not stop the check
        print(f"cupy: {type(error).__name__}: {error}")
        return
    for name, run in checks(cp, cpx_ndimage, cpx_sparse).items():
        try:
            ours, reference = run()
            scale = max(float(np.abs(reference).max()), 1e-30)
            print(f"cupy {name}: ok, max |diff| {float(np.abs(ours - reference).max()) / scale:.1e} of max")
        except Exception as error:
            print(f"cupy {name}: {type(error).__name__}: {error}")
    try:
        print(f"astra data3d.link of CuPy arrays: {astra_link(cp)}")
    except Exception as error:
        print(f"astra data3d.link of CuPy arrays: {type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
