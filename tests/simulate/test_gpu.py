"""CPU-GPU parity and the cone-beam geometries on the GPU (skipped without one), and the
array-API FBP that the GPU runs, exercised here on numpy (its CUDA kernel compiled for the CPU)."""

from __future__ import annotations

import dataclasses

import astra
import numpy as np
import pytest

from nmosim.phantoms.grid import Grid
from nmosim.simulate import arrays, ct, physics, reconstruct
from nmosim.simulate import geometry3d as g3
from nmosim.simulate.backend import forward_project
from nmosim.simulate.scanner import make_protocol

HAS_CUDA = bool(astra.use_cuda())
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU available to ASTRA")
needs_cupy = pytest.mark.skipif(not (HAS_CUDA and arrays.has_gpu_arrays()), reason="no CuPy with a GPU")


def blobs(grid: Grid) -> np.ndarray:
    """Smooth (Gaussian) attenuation, 1/mm, off-centre: no edges finer than a few pixels."""
    x, y = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)
    out = np.zeros(grid.shape[1:], np.float64)
    for cx, cy, s, mu in ((3.0, 1.0, 4.0, 0.02), (-5.0, -4.0, 2.5, 0.03), (6.0, -6.0, 2.0, 0.015)):
        out += mu * np.exp(-((x[None, :] - cx) ** 2 + (y[:, None] - cy) ** 2) / (2 * s * s))
    return np.broadcast_to(out.astype(np.float32), grid.shape).copy()


def test_array_api_fbp_on_numpy_matches_the_cpu_fbp():
    p = make_protocol("quick", n_views=120, n_bins=192, bin_width_mm=1.5, recon_fov_mm=96)
    grid = Grid.centered((2, 96, 80), (1.0, 1.2, 1.0), (2.0, -1.0, 0.0))
    volume = np.random.default_rng(0).random(grid.shape, dtype=np.float32)
    sino = forward_project(volume, grid, p, threads=1)
    cpu = reconstruct.fbp(sino, grid, p, threads=1, device="cpu")
    xp = arrays.namespace("cpu")
    same = reconstruct.fbp_array_api(sino, grid, p, p.kernel, xp, block=1)
    assert np.abs(same - cpu).max() < 1e-5 * np.abs(cpu).max()


@needs_cuda
def test_cuda_projection_matches_cpu_for_smooth_objects():
    """Both ray models integrate a smooth map alike (within 1 % of the largest line integral)."""
    grid = Grid.centered((2, 96, 96), (0.25, 0.25, 1.0), (1.0, -1.0, 0.0))
    p = make_protocol("quick", n_views=90, n_bins=128, bin_width_mm=1.0, recon_fov_mm=20)
    volume = blobs(grid)
    cpu = forward_project(volume, grid, p, device="cpu")
    gpu = forward_project(volume, grid, p, device="cuda")
    assert np.abs(gpu - cpu).max() < 0.01 * cpu.max()
    # the integral over each view (mass seen) agrees closer still
    np.testing.assert_allclose(gpu.sum(axis=2), cpu.sum(axis=2), rtol=2e-3)


@needs_cupy
def test_cuda_fbp_is_the_cpu_model():
    p = make_protocol("quick", n_views=180, n_bins=256, bin_width_mm=1.5, recon_fov_mm=128)
    grid = Grid.centered((3, 128, 128), (1.0, 1.0, 1.0), (2.0, -1.0, 0.0))
    sino = forward_project(blobs(grid), grid, p, device="cpu")
    cpu = reconstruct.fbp(sino, grid, p, device="cpu")
    gpu = reconstruct.fbp(sino, grid, p, device="cuda")
    assert np.abs(gpu - cpu).max() < 1e-4 * np.abs(cpu).max()


def _water_region(hu: np.ndarray, rec: Grid) -> np.ndarray:
    x, y = rec.voxel_centers_axis(0), rec.voxel_centers_axis(1)
    return hu[:, np.hypot(x[None, :], y[:, None]) < 60.0]


@needs_cuda
def test_cuda_and_cpu_scans_agree_in_hu_and_noise():
    """A water cylinder: median HU within 2 HU, quantum noise SD within 5 %. Noise is measured
    as scanners' QA does, from the difference of two scans (seeds 5 and 6), which removes the
    deterministic pattern that each projector leaves (the CPU line kernel's is larger)."""
    p = make_protocol("quick", recon_fov_mm=256, n_bins=300, mas=100.0)
    stats = {}
    for device in ("cpu", "cuda"):
        scans = [
            ct.simulate_water_cylinder(p, 180.0, np.random.default_rng(seed), n_slices=6, device=device)
            for seed in (5, 6)
        ]
        rec = scans[0][1]
        a, b = (_water_region(hu, rec) for hu, _ in scans)
        clean = _water_region(ct.simulate_water_cylinder(p, 180.0, None, n_slices=2, device=device)[0], rec)
        stats[device] = (float(np.median(a)), float((a - b).std() / np.sqrt(2)), float(clean.std()))
    print("water cylinder (median HU, noise SD HU, noiseless SD HU):", stats)
    assert abs(stats["cuda"][0] - stats["cpu"][0]) < 2.0
    assert abs(stats["cuda"][1] / stats["cpu"][1] - 1.0) < 0.05


@needs_cuda
def test_cone_beam_middle_row_is_the_fan_beam_projection():
    """A map uniform along z: the middle row of a cone-beam view lies in the source plane and
    must equal the fan-beam line integrals (orientation, units and bin order), whatever the
    voxels' height."""
    p = make_protocol("quick", n_views=90, n_bins=128, bin_width_mm=1.0, recon_fov_mm=20, geometry="axial",
                      detector_rows=17, row_pitch_mm=0.5)  # fmt: skip
    plane = Grid.centered((1, 96, 96), (0.25, 0.25, 0.5), (1.0, -1.0, 0.0))
    fan = forward_project(blobs(plane), plane, p, device="cpu")[0]
    views = np.arange(p.n_views)
    geometry = astra.create_proj_geom(
        "cone_vec", p.detector_rows, p.n_bins, g3.cone_vectors(p, views, 0 * views)
    )
    for dz in (0.5, 2.0):
        grid = Grid.centered((12, 96, 96), (0.25, 0.25, dz), (1.0, -1.0, 0.0))
        cone = g3.forward_project_cone(blobs(grid), grid, geometry)
        assert cone.shape == (p.detector_rows, p.n_views, p.n_bins)
        assert np.abs(cone[p.detector_rows // 2] - fan).max() < 0.01 * fan.max(), dz
    # the circular 'cone' geometry used by FDK sees the same data with the bins reversed
    circular = g3.forward_project_cone(blobs(grid), grid, g3.circular_cone_geometry(p))
    assert np.abs(circular - g3.to_astra_cone(cone)).max() < 1e-3 * fan.max()


@needs_cuda
@pytest.mark.parametrize("geometry, method", [("axial", "fbp"), ("helical", "fbp"), ("axial", "sirt")])
def test_cone_beam_water_cylinder_is_water(geometry, method):
    p = make_protocol("quick", geometry=geometry, detector_rows=16, recon_fov_mm=256, n_bins=300, pitch=0.8,
                      recon_method=method, recon_iterations=30)  # fmt: skip
    # a cylinder longer than the scan's reach along z; the middle slices are judged
    hu, rec = ct.simulate_water_cylinder(p, 180.0, np.random.default_rng(2), n_slices=16)
    x, y = rec.voxel_centers_axis(0), rec.voxel_centers_axis(1)
    r = np.hypot(x[None, :], y[:, None])
    middle = hu[4:12]
    water, air = middle[:, r < 60.0], middle[:, (r > 100.0) & (r < 120.0)]
    fan, _ = ct.simulate_water_cylinder(dataclasses.replace(p, geometry="fan2d"), 180.0,
                                        np.random.default_rng(2), n_slices=16)  # fmt: skip
    fan = fan[4:12]
    print("per-slice water medians:", np.round(np.median(hu[:, r < 60.0], axis=1), 1))
    print(
        f"{geometry} {method}: water {np.median(water):.1f} HU SD {water.std():.1f}, "
        f"air {np.median(air):.0f}; fan2d SD {fan[:, r < 60.0].std():.1f}"
    )
    assert abs(np.median(water)) < 5.0
    assert abs(np.median(air) + 1000.0) < 20.0
    assert water.std() < 3.0 * fan[:, r < 60.0].std()


@needs_cuda
def test_tv_ray_transform_on_the_gpu_matches_our_fan_beam():
    from nmosim.simulate import tv

    p = make_protocol("quick", n_views=90, n_bins=128, bin_width_mm=1.0, recon_fov_mm=20)
    grid = Grid.centered((1, 96, 96), (0.25, 0.25, 1.0), (1.0, -1.0, 0.0))
    volume = blobs(grid)
    ours = forward_project(volume, grid, p, device="cpu")[0]
    theirs = tv.ray_transform(grid, p, "cuda")(tv.to_odl(volume[0])).asarray()
    assert np.abs(theirs - ours).max() < 0.01 * ours.max()


def test_array_api_counts_on_numpy_are_the_cpu_counts_byte_for_byte():
    p = make_protocol("quick")
    spectrum = ct.projection_spectrum(p)
    geometry = ct.reading_geometry(p, 1.5)
    rng = np.random.default_rng(0)
    lw = rng.random((2, 30, 40), dtype=np.float32) * 30
    lb = rng.random((2, 30, 40), dtype=np.float32) * 3
    lb[0, :5] = 0.0
    cpu = physics.expected_counts(lw, lb, spectrum, **geometry)
    same = physics.expected_counts_array_api(arrays.namespace("cpu"), lw, lb, spectrum, **geometry)
    assert np.array_equal(cpu.mean, same.mean) and np.array_equal(cpu.variance, same.variance)


@needs_cupy
def test_cuda_counts_match_the_cpu_counts():
    p = make_protocol("quick")
    spectrum = ct.projection_spectrum(p)
    geometry = ct.reading_geometry(p, 1.5)
    rng = np.random.default_rng(0)
    lw = rng.random((3, 60, 70), dtype=np.float32) * 30
    lb = rng.random((3, 60, 70), dtype=np.float32) * 3
    cpu = physics.expected_counts(lw, lb, spectrum, **geometry)
    gpu = physics.expected_counts_array_api(arrays.namespace("cuda"), lw, lb, spectrum, **geometry)
    np.testing.assert_allclose(gpu.mean, cpu.mean, rtol=1e-5, atol=1e-6 * cpu.mean.max())
    np.testing.assert_allclose(gpu.variance, cpu.variance, rtol=1e-5, atol=1e-6 * cpu.variance.max())


def _projection_case():
    from nmosim.simulate.radiograph import RadiographGeometry

    geometry = RadiographGeometry(
        detector_width_mm=120, detector_height_mm=100, pixel_mm=1.0, detector_pitch_mm=0.25,
        projection_mm=1.5, center_z_mm=5.0,
    )  # fmt: skip
    grid = Grid.centered((30, 36, 40), (2.0, 1.5, 2.5), (3.0, -4.0, 1.0))
    volume = np.random.default_rng(4).random(grid.shape, dtype=np.float32)
    volume[:, 5:9] = 0.0  # empty planes are skipped
    return volume, grid, geometry


def test_array_api_cone_projection_on_numpy_is_the_bytes_of_before():
    """sha256 of the projection taken from the numpy-only code before it moved to the array API."""
    import hashlib

    from nmosim.simulate.radiograph import cone_projection

    volume, grid, geometry = _projection_case()
    image = cone_projection(volume, grid, geometry, 1.5, xp=arrays.namespace("cpu"))
    assert image.shape == (67, 80) and image.dtype == np.float32
    assert hashlib.sha256(image.tobytes()).hexdigest()[:16] == "e37e0f5cc9e4e319"


@needs_cupy
def test_cuda_cone_projection_matches_the_cpu_one():
    from nmosim.simulate.radiograph import cone_projection

    volume, grid, geometry = _projection_case()
    cpu = cone_projection(volume, grid, geometry, 1.5)
    gpu = cone_projection(volume, grid, geometry, 1.5, xp=arrays.namespace("cuda"))
    assert isinstance(gpu, np.ndarray) and gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-5 * float(cpu.max()))


@pytest.fixture(scope="module")
def backprojection_kernel_on_host(tmp_path_factory):
    """The CUDA backprojection kernel of the GPU's FBP, compiled for the CPU."""
    from cuda_on_host import HostKernel, compiler

    if compiler() is None:
        pytest.skip("no C++ compiler to build the CUDA kernel for the CPU")
    return HostKernel(reconstruct._BP_KERNEL, "backproject", tmp_path_factory.mktemp("kernel"))


def test_the_cuda_backprojection_kernel_is_the_array_api_backprojection(
    backprojection_kernel_on_host, monkeypatch
):
    """The kernel the GPU runs, launched by the same code with the same arguments, gives the
    numpy backprojection's bytes: its indexing over a non-square stack of slices, the clamp at
    both ends of the detector, the threads beyond the last voxel, and the float32 rounding order.
    """
    rng = np.random.default_rng(3)
    nz, n_theta, n_t = 2, 13, 20
    rows = rng.standard_normal((nz, n_theta, n_t)).astype(np.float32)
    # the grid reaches past the detector's ends (|t| up to 1.6 x the half width): clamped rays
    x_mm = np.linspace(-14.0, 17.0, 9)
    y_mm = np.linspace(-12.0, 9.0, 7)
    angles = np.linspace(0.0, np.pi, n_theta, endpoint=False) + 0.1
    xp = arrays.namespace("cpu")
    expected = reconstruct.backproject_array_api(xp, rows, x_mm, y_mm, angles, 1.0)
    assert (np.abs(y_mm[:, None] * np.sin(angles) - x_mm.max() * np.cos(angles)) > n_t / 2).any()

    monkeypatch.setattr(reconstruct.arrays, "is_cupy", lambda array: True)
    monkeypatch.setattr(reconstruct, "_cupy_backprojector", lambda: backprojection_kernel_on_host)
    on_kernel = reconstruct.backproject_array_api(xp, rows, x_mm, y_mm, angles, 1.0)
    assert on_kernel.shape == expected.shape == (nz, 7, 9)
    np.testing.assert_array_equal(on_kernel, expected)


_ABSENT_ON_THE_GPU_MACHINE = """
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"array_api_strict", "skimage"}:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _Absent())
"""


def test_the_gpu_check_test_files_collect_without_test_only_packages(tmp_path):
    """The lent GPU machine has neither array_api_strict nor scikit-image unless they are bundled;
    one test file that cannot import stops pytest before it runs any test of benchmarks/gpu_check.sh.
    Collected with both absent, every file must load and the CuPy tests be there."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = re.findall(r"tests/\S+\.py", (root / "benchmarks" / "gpu_check.sh").read_text())
    assert "tests/phantoms/test_rasterize_xp.py" in files and "tests/simulate/test_pipeline_xp.py" in files
    (tmp_path / "sitecustomize.py").write_text(_ABSENT_ON_THE_GPU_MACHINE)
    path = os.pathsep.join([str(tmp_path), str(root), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *files],
        cwd=root, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for test in (
        "test_cuda_rasterization_matches_numpy",
        "test_cuda_case_matches_numpys",
        "test_cuda_distances_and_depths_match_numpy",
    ):
        assert test in done.stdout, test


def test_cupy_in_either_form_gets_cupyx_sparse_matrices_and_ndimage(monkeypatch):
    """``cupy`` itself, like ``array_api_compat``'s wrapper of it, is given cupyx's sparse matrix
    and ndimage: a scipy matrix cannot multiply CuPy arrays. Stand-in modules record the calls."""
    import sys
    import types

    import scipy.sparse

    made = []
    modules = {name: types.ModuleType(name) for name in ("cupy", "cupyx", "cupyx.scipy", "cupyx.scipy.sparse",
                                                         "cupyx.scipy.ndimage")}  # fmt: skip
    modules["cupyx"].scipy = modules["cupyx.scipy"]
    modules["cupyx.scipy"].sparse = modules["cupyx.scipy.sparse"]
    modules["cupyx.scipy"].ndimage = modules["cupyx.scipy.ndimage"]
    modules["cupyx.scipy.sparse"].csr_matrix = lambda m: made.append(m) or "device matrix"
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    matrix = scipy.sparse.identity(3, format="csr", dtype=np.float32)
    assert arrays.sparse_matrix(modules["cupy"], matrix) == "device matrix" and made == [matrix]
    assert arrays.ndimage(modules["cupy"]) is modules["cupyx.scipy.ndimage"]
    assert arrays.sparse_matrix(arrays.namespace("cpu"), matrix) is matrix
