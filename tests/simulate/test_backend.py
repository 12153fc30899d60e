"""Tests for nmosim.simulate.backend: device choice, fan-beam line integrals, threads, ASTRA clean-up."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import astra
import numpy as np
import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.simulate import backend
from nmosim.simulate.backend import forward_project, select_device
from nmosim.simulate.scanner import make_protocol

REPO = Path(__file__).resolve().parents[2]
HAS_CUDA = bool(astra.use_cuda())
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU available to ASTRA")


def raster_ellipse(grid, center_xy, axes, angle_rad, value, supersample=6):
    """Ellipse rasterized on one slice of ``grid`` with ``supersample**2`` points per pixel."""
    xs, ys = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)
    dx, dy = grid.spacing_mm[:2]
    off = (np.arange(supersample) + 0.5) / supersample - 0.5
    x = xs[None, :, None, None] + off[None, None, None, :] * dx - center_xy[0]
    y = ys[:, None, None, None] + off[None, None, :, None] * dy - center_xy[1]
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    u, v = x * c + y * s, -x * s + y * c
    inside = (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0
    return (value * inside.mean(axis=(2, 3))).astype(np.float32)


def fan_rays_from_convention(protocol):
    """Source and bin-centre positions (x, y) in mm, written out from the documented convention."""
    b = 2 * np.pi * np.arange(protocol.n_views) / protocol.n_views
    d_si, d_sd = protocol.source_to_iso_mm, protocol.source_to_detector_mm
    source = d_si * np.stack([np.sin(b), np.cos(b)], axis=1)
    centre = -(d_sd - d_si) * np.stack([np.sin(b), np.cos(b)], axis=1)
    along = np.stack([np.cos(b), -np.sin(b)], axis=1)
    offsets = (np.arange(protocol.n_bins) - (protocol.n_bins - 1) / 2) * protocol.bin_width_mm
    bins = centre[:, None, :] + offsets[None, :, None] * along[:, None, :]
    return source[:, None, :], bins


def ellipse_chords(source, target, center_xy, axes, angle_rad):
    """Chord length (mm) of the line source->target through the ellipse, and the cosine of the
    angle between the ray and the edge normal (the smaller of entry and exit)."""
    d = target - source
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    rot = np.array([[c, s], [-s, c]])
    o = (source - np.asarray(center_xy)) @ rot.T
    dd = d @ rot.T
    a_ax = np.asarray(axes, dtype=float)
    qa = ((dd / a_ax) ** 2).sum(-1)
    qb = 2 * ((o / a_ax) * (dd / a_ax)).sum(-1)
    qc = ((o / a_ax) ** 2).sum(-1) - 1
    disc = qb**2 - 4 * qa * qc
    root = np.sqrt(np.maximum(disc, 0.0))
    chord = np.where(disc > 0, root / qa, 0.0)
    cosines = []
    for sign in (-1.0, 1.0):
        point = o + ((-qb + sign * root) / (2 * qa))[..., None] * dd
        normal = point / a_ax**2
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        cosines.append(np.abs((normal * dd).sum(-1)))
    return chord, np.minimum(*cosines)


@pytest.mark.parametrize(
    "grid",
    [
        Grid.centered((1, 256, 256), (0.25, 0.25, 1.0), (3.0, -2.0, 0.0)),
        Grid.centered((1, 200, 256), (0.25, 0.32, 2.5), (3.0, -2.0, 7.0)),  # non-square, off-centre
    ],
    ids=["square", "anisotropic"],
)
@pytest.mark.parametrize("reused", [False, True], ids=["astra", "matrix"])
def test_projection_matches_analytic_ellipse_chords(grid, reused):
    protocol = make_protocol("quick", n_views=90, n_bins=192, bin_width_mm=1.0, recon_fov_mm=20)
    center, axes, angle, mu = (5.0, -4.0), (25.0, 16.0), 0.4, 0.02
    volume = raster_ellipse(grid, center, axes, angle, mu)[None]
    with backend.reused_projections() if reused else contextlib.nullcontext():
        sino = forward_project(volume, grid, protocol, threads=1)[0]
    source, bins = fan_rays_from_convention(protocol)
    chord, cos_edge = ellipse_chords(source, bins, center, axes, angle)
    expected = mu * chord
    # Rays that meet the edge within 60 degrees of its normal; shallower ones cross many
    # partial-volume pixels, where a raster differs from the ellipse by design.
    steep = (expected > 0) & (cos_edge >= 0.5)
    assert steep.sum() > 0.8 * (expected > 0).sum()
    error = np.abs(sino - expected)[steep].max() / expected.max()
    assert error < 0.01
    # rays that miss the ellipse by more than two pixels see nothing
    far = ellipse_chords(source, bins, center, (axes[0] + 0.7, axes[1] + 0.7), angle)[0] == 0
    assert np.abs(sino[far]).max() < 1e-6


@pytest.mark.parametrize(
    "grid",
    [
        Grid.centered((3, 96, 112), (1.0, 1.0, 1.0), (3.0, -2.0, 0.0)),
        Grid.centered((3, 80, 112), (1.0, 1.25, 2.5), (-4.0, 6.0, 0.0)),
    ],
    ids=["square", "anisotropic"],
)
def test_a_body_in_air_projects_as_its_whole_grid(grid):
    """Only the box around what differs from the surrounding value is projected, plus that value
    times the grid's chords: the same line integrals as projecting every pixel."""
    protocol = make_protocol("quick", n_views=60, n_bins=200, bin_width_mm=1.5, recon_fov_mm=20)
    body = raster_ellipse(grid, (6.0, -5.0), (30.0, 18.0), 0.3, 1.0)
    volume = np.stack([0.05 + body * (1.0 + 0.2 * k) for k in range(grid.shape[0])]).astype(np.float32)
    value, (rows, cols) = backend.content_box(volume)
    assert value == pytest.approx(0.05) and (rows.stop - rows.start) < 0.7 * grid.shape[1]
    whole = backend._project(volume, grid, protocol, 1, "cpu", (0.0, 0.0, 0.0))
    cropped = forward_project(volume, grid, protocol, threads=2)
    # ASTRA's kernel steps through the grid in float32, so where it starts moves the sums a little
    assert np.abs(cropped - whole).max() < 1e-3 * whole.max()
    # content filling the slice (here: all but the first pixel): every pixel projected, as is
    volume[0, 0, 0] = 0.0
    assert backend.content_box(volume) is None
    assert np.array_equal(forward_project(volume, grid, protocol, threads=1), backend._project(
        volume, grid, protocol, 1, "cpu", (0.0, 0.0, 0.0)))  # fmt: skip


def test_projection_is_linear_in_value_and_units_are_mm():
    grid = Grid.centered((2, 32, 32), (2.0, 2.0, 1.0))
    protocol = make_protocol("quick", n_views=8, n_bins=96, bin_width_mm=2.0, recon_fov_mm=20)
    ones = np.ones(grid.shape, dtype=np.float32)
    ones[1] *= 3.0
    sino = forward_project(ones, grid, protocol, threads=1)
    np.testing.assert_allclose(sino[1], 3.0 * sino[0], rtol=1e-6)
    # view 0: source anterior, central ray along -y crosses the 64 mm square
    assert sino[0, 0, protocol.n_bins // 2] == pytest.approx(64.0, rel=1e-3)


def test_threads_do_not_change_the_result_bitwise():
    grid = Grid.centered((5, 48, 40), (1.0, 1.2, 1.0), (4.0, -3.0, 0.0))
    protocol = make_protocol("quick", n_views=45, n_bins=128, bin_width_mm=1.5, recon_fov_mm=20)
    volume = np.random.default_rng(3).random(grid.shape, dtype=np.float32)
    one = forward_project(volume, grid, protocol, threads=1)
    two = forward_project(volume, grid, protocol, threads=2)
    assert np.array_equal(one, two)


def test_every_astra_object_is_deleted(monkeypatch):
    created, deleted = [], []

    def spy(owner, name, kind, creates):
        original = getattr(owner, name)

        def wrapper(arg, *args, **kwargs):
            result = original(arg, *args, **kwargs)
            if creates:
                created.append((kind, result))
            else:
                deleted.extend((kind, i) for i in np.atleast_1d(arg).tolist())
            return result

        monkeypatch.setattr(owner, name, wrapper)

    for owner, kind, create in (
        (astra.data2d, "data", "create"),
        (astra.algorithm, "algorithm", "create"),
        (astra.projector, "projector", None),
    ):
        if create:
            spy(owner, create, kind, True)
        spy(owner, "delete", kind, False)
    spy(astra, "create_projector", "projector", True)

    grid = Grid.centered((3, 16, 16), (1.0, 1.0, 1.0))
    protocol = make_protocol("quick", n_views=6, n_bins=64, bin_width_mm=1.0, recon_fov_mm=10)
    forward_project(np.ones(grid.shape, np.float32), grid, protocol, threads=2)

    def failing(k):
        raise RuntimeError("input failed")

    with pytest.raises(RuntimeError, match="input failed"):
        backend.run_slices(
            "FP",
            2,
            failing,
            np.empty((2, 6, 64), np.float32),
            backend.volume_geometry(grid),
            backend.fan_geometry(grid, protocol)[0],
            device="cpu",
            threads=1,
        )
    assert {kind for kind, _ in created} == {"data", "projector", "algorithm"}
    assert sorted(created) == sorted(deleted)


def test_shape_mismatch_is_an_error():
    grid = Grid.centered((2, 16, 16), (1.0, 1.0, 1.0))
    protocol = make_protocol("quick", n_views=6, n_bins=64, bin_width_mm=1.0, recon_fov_mm=10)
    with pytest.raises(ValueError, match="does not match grid shape"):
        forward_project(np.ones((2, 16, 15), np.float32), grid, protocol)


def test_select_device_by_argument_and_environment(monkeypatch):
    monkeypatch.delenv(backend.DEVICE_ENV, raising=False)
    assert select_device() == ("cuda" if HAS_CUDA else "cpu")
    assert select_device("cpu") == "cpu"
    monkeypatch.setenv(backend.DEVICE_ENV, "CPU")
    assert select_device() == "cpu"
    monkeypatch.setenv(backend.DEVICE_ENV, "tpu")
    with pytest.raises(SpecError, match=r"NMOSIM_DEVICE = 'tpu' is not one of \{cpu, cuda\}"):
        select_device()
    with pytest.raises(SpecError, match=r"device = 'gpu' is not one of"):
        select_device("gpu")


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present")
def test_cuda_without_gpu_raises_clear_error(monkeypatch):
    monkeypatch.setenv(backend.DEVICE_ENV, "cuda")
    with pytest.raises(SpecError, match="NMOSIM_DEVICE = 'cuda' but no CUDA GPU is available"):
        select_device()
    with pytest.raises(SpecError, match="no CUDA GPU"):
        backend.run_slices("FP", 1, lambda k: None, np.empty((1, 1, 8)), {}, {}, device="cuda", threads=1)


def test_forcing_cuda_never_crashes_the_process():
    code = (
        "import numpy as np\n"
        "from nmosim.phantoms.errors import SpecError\n"
        "from nmosim.phantoms.grid import Grid\n"
        "from nmosim.simulate.backend import forward_project\n"
        "from nmosim.simulate.scanner import make_protocol\n"
        "g = Grid.centered((1, 8, 8), (1.0, 1.0, 1.0))\n"
        "p = make_protocol('quick', n_views=4, n_bins=32, bin_width_mm=1.0, recon_fov_mm=10)\n"
        "try:\n"
        "    forward_project(np.ones(g.shape, np.float32), g, p)\n"
        "    print('PROJECTED')\n"
        "except SpecError as e:\n"
        "    print('SPECERROR', e)\n"
    )
    env = {**os.environ, backend.DEVICE_ENV: "cuda"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    if HAS_CUDA:
        assert "PROJECTED" in done.stdout
    else:
        assert "SPECERROR NMOSIM_DEVICE = 'cuda' but no CUDA GPU is available to ASTRA" in done.stdout


@needs_cuda
def test_cuda_projection_matches_cpu():
    """The CUDA projector interpolates along each ray (Joseph), the CPU one intersects pixels
    (line kernel): at a sharp edge they differ by design. On rays that cross the edge steeply
    both give the ellipse's chord (the CPU within 1 %, Joseph's rounding of the raster's edge
    over about a pixel along the ray within 1.5 %), and the mass each view sees agrees within
    0.5 %. Smooth maps agree within 1 % ray by ray (tests/simulate/test_gpu.py)."""
    grid = Grid.centered((2, 256, 256), (0.25, 0.25, 1.0), (3.0, -2.0, 0.0))
    protocol = make_protocol("quick", n_views=90, n_bins=192, bin_width_mm=1.0, recon_fov_mm=20)
    center, axes, angle, mu = (5.0, -4.0), (25.0, 16.0), 0.4, 0.02
    volume = raster_ellipse(grid, center, axes, angle, mu)[None].repeat(2, axis=0)
    cpu = forward_project(volume, grid, protocol, device="cpu")
    gpu = forward_project(volume, grid, protocol, device="cuda")
    source, bins = fan_rays_from_convention(protocol)
    chord, cos_edge = ellipse_chords(source, bins, center, axes, angle)
    expected = mu * chord
    steep = (expected > 0) & (cos_edge >= 0.5)
    errors = [float(np.abs(sino[0] - expected)[steep].max() / expected.max()) for sino in (cpu, gpu)]
    print(f"largest error on steep rays, of the largest chord: cpu {errors[0]:.4f}, cuda {errors[1]:.4f}")
    assert errors[0] < 0.01 and errors[1] < 0.015
    np.testing.assert_allclose(gpu.sum(axis=2), cpu.sum(axis=2), rtol=5e-3)


def test_run3d_copies_through_the_host_when_astra_will_not_link_gpu_data(monkeypatch):
    """ASTRA's DLPack link refuses data that is not contiguous float32 with a ValueError (its
    algorithms refuse linked data with an AstraError): run3d then goes through host memory. A
    strided numpy array stands in for such a CuPy array; ASTRA links CPU arrays by the same
    checks, and no CUDA algorithm is made."""
    grid = Grid.centered((4, 6, 8), (1.0, 1.0, 1.0))
    gpu_like = np.zeros((4, 6, 16), np.float32)[:, :, ::2]  # what the link refuses
    projections = np.zeros((3, 5, 7), np.float32)
    monkeypatch.setattr(backend.arrays, "is_cupy", lambda a: a is gpu_like)

    def no_algorithm(cfg):
        raise AssertionError(f"{cfg['type']} was created")

    monkeypatch.setattr(astra.algorithm, "create", no_algorithm)
    real_once, host_calls = backend._run3d_once, []

    def once(method, vol_geom, proj_geom, volume, proj, iterations):
        if volume is gpu_like:  # the GPU attempt: ASTRA's own link must refuse it
            return real_once(method, vol_geom, proj_geom, volume, proj, iterations)
        host_calls.append((volume.flags.c_contiguous, volume.dtype, proj.shape))
        proj[...] = 2.5  # the host run's result

    monkeypatch.setattr(backend, "_run3d_once", once)
    with pytest.warns(RuntimeWarning, match="did not take GPU arrays"):
        backend.run3d("FP3D", backend.volume_geometry_3d(grid), {"type": "cone"}, gpu_like, projections)
    assert host_calls == [(True, np.dtype(np.float32), (3, 5, 7))]
    assert np.all(projections == 2.5)
