"""Tests for nmosim.simulate.fan_matrix and the reuse of its matrices by the projection backend."""

from __future__ import annotations

import astra
import numpy as np
import pytest

from nmosim.phantoms.grid import Grid
from nmosim.simulate import backend, fan_matrix
from nmosim.simulate.scanner import make_protocol

PROTOCOL = make_protocol("quick", n_views=72, n_bins=160, bin_width_mm=2.0, recon_fov_mm=20)
GRIDS = [
    Grid.centered((2, 40, 52), (3.0, 3.0, 1.5), (4.0, -6.0, 0.0)),
    Grid.centered((2, 41, 37), (3.0, 2.0, 1.5), (-5.0, 3.0, 0.0)),  # non-square: a stretched frame
]


def astra_matrix(grid: Grid, protocol=PROTOCOL, sub_ray=(0.0, 0.0, 0.0)):
    """ASTRA's own exported matrix of its CPU line kernel, for the same geometry."""
    proj_geom, _ = backend.fan_geometry(grid, protocol, sub_ray)
    proj_id = astra.create_projector("line_fanflat", proj_geom, backend.volume_geometry(grid))
    matrix_id = astra.projector.matrix(proj_id)
    try:
        return astra.matrix.get(matrix_id).astype(np.float32)
    finally:
        astra.matrix.delete(matrix_id)
        astra.projector.delete(proj_id)


def our_matrix(grid: Grid, protocol=PROTOCOL, sub_ray=(0.0, 0.0, 0.0), threads=1) -> fan_matrix.FanMatrix:
    proj_geom, _ = backend.fan_geometry(grid, protocol, sub_ray)
    return fan_matrix.line_fanflat_matrix(backend.volume_geometry(grid), proj_geom, threads=threads)


def smooth_slices(grid: Grid) -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    return (1.0 + np.sin(x / 5.0 + z) * np.cos(y / 7.0)).astype(np.float32)


@pytest.mark.parametrize("grid", GRIDS, ids=["square", "stretched"])
@pytest.mark.parametrize("sub_ray", [(0.0, 0.0, 0.0), (0.3, -0.4, 0.002)], ids=["centre", "sub-ray"])
def test_matrix_is_astras_kernel(grid, sub_ray):
    reference = astra_matrix(grid, sub_ray=sub_ray)
    ours = our_matrix(grid, sub_ray=sub_ray).to_csr()
    assert ours.shape == reference.shape
    assert abs(ours.nnz - reference.nnz) <= 1e-4 * reference.nnz
    # each ray's length through each row (or column), about 3 mm here, is split between two
    # pixels; the split of near-axial rays is sensitive to float32 rounding, the ray's total
    # (some 100 mm) only where it leaves the grid
    np.testing.assert_allclose(ours.sum(axis=1).A1, reference.sum(axis=1).A1, rtol=0, atol=0.01)
    difference = np.abs((ours - reference).tocoo().data)
    assert np.mean(difference > 1e-3) < 1e-3 and difference.max() < 0.02
    image = smooth_slices(grid)[0].ravel()
    expected = reference @ image
    assert np.abs(ours @ image - expected).max() < 1e-4 * expected.max()


def test_threads_change_neither_the_matrix_nor_the_projection():
    grid = GRIDS[1]
    one, three = our_matrix(grid, threads=1), our_matrix(grid, threads=3)
    for a, b in zip(one.blocks, three.blocks, strict=True):
        assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
        assert np.array_equal(a.data, b.data)
    slices = smooth_slices(grid)
    once, twice = (fan_matrix.project(one, slices, threads=n) for n in (1, 2))
    assert np.array_equal(once, twice)


@pytest.mark.parametrize("grid", GRIDS, ids=["square", "stretched"])
def test_estimate_bounds_the_weights(grid):
    proj_geom, _ = backend.fan_geometry(grid, PROTOCOL)
    estimate = fan_matrix.estimated_weights(backend.volume_geometry(grid), proj_geom)
    nnz = our_matrix(grid).nnz
    assert nnz <= estimate <= 1.6 * nnz


@pytest.mark.parametrize("grid", GRIDS, ids=["square", "stretched"])
def test_reused_projections_give_astras_line_integrals(grid):
    """Inside the block the CPU projects through the matrix: the same line integrals as ASTRA's,
    mm path lengths included on a non-square grid; the matrix is built once and freed on exit."""
    volume = smooth_slices(grid)
    sub_ray = (0.2, 0.1, 0.0)
    direct = backend.forward_project(volume, grid, PROTOCOL, threads=1, sub_ray=sub_ray)
    with backend.reused_projections():
        first = backend.forward_project(volume, grid, PROTOCOL, threads=2, sub_ray=sub_ray)
        with backend.reused_projections():  # nested: shares the outer block's matrices
            again = backend.forward_project(volume[::-1], grid.window(slice(0, 2)), PROTOCOL, sub_ray=sub_ray)
        held = [m for m in backend._reuse.matrices.values() if m is not None]
    assert len(held) == 1
    assert np.abs(first - direct).max() < 1e-4 * direct.max()
    assert np.array_equal(again, first[::-1])
    assert backend._reuse.matrices is None


def test_a_plane_over_the_budget_goes_through_astra(monkeypatch):
    grid = GRIDS[0]
    volume = smooth_slices(grid)
    direct = backend.forward_project(volume, grid, PROTOCOL, threads=1)
    monkeypatch.setattr(backend, "MATRIX_MAX_WEIGHTS", 1000)
    with backend.reused_projections():
        inside = backend.forward_project(volume, grid, PROTOCOL, threads=1)
        assert list(backend._reuse.matrices.values()) == [None]
    assert np.array_equal(inside, direct)
