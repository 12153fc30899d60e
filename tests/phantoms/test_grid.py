"""Grid windows: a sub-range of voxels keeps its voxels where they were."""

from __future__ import annotations

import numpy as np
import pytest

from nmosim.phantoms.grid import Grid


def test_a_window_keeps_its_voxel_centres():
    grid = Grid.centered((6, 10, 12), (0.75, 1.25, 3.0), (4.0, -7.0, 11.0))
    zs, ys, xs = slice(2, 5), slice(3, 9), slice(1, None)
    sub = grid.window(zs, ys, xs)
    assert sub.shape == (3, 6, 11) and sub.spacing_mm == grid.spacing_mm
    for axis, part in ((0, xs), (1, ys), (2, zs)):
        np.testing.assert_allclose(
            sub.voxel_centers_axis(axis), grid.voxel_centers_axis(axis)[part], rtol=0, atol=1e-12
        )
    assert grid.window() == grid


def test_a_window_takes_contiguous_ranges_only():
    with pytest.raises(ValueError, match="contiguous"):
        Grid.centered((4, 4, 4), (1.0, 1.0, 1.0)).window(xs=slice(0, 4, 2))
