"""Rasterization: partial volumes against analytic volumes, painting order, fractions."""

import numpy as np
import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import N_TISSUES
from nmosim.phantoms.rasterize import Layer, Part, _counts, rasterize
from nmosim.phantoms.shapes import Box, Capsule, Sphere


def test_sphere_volume_from_fractions_matches_the_analytic_volume():
    grid = Grid.centered((40, 40, 40), (1.0, 1.0, 1.0), (0.3, -0.2, 0.1))
    r = rasterize([Part("ball", Sphere((0, 0, 0), 12.3), 1, 2)], grid, supersampling=4)
    volume = r.tissue_fraction(2).sum() * grid.voxel_volume_mm3
    assert volume == pytest.approx(4 / 3 * np.pi * 12.3**3, rel=2e-3)


def test_anisotropic_grid_and_off_centre_position():
    grid = Grid.centered((30, 50, 50), (0.6, 0.6, 2.0))
    shape = Capsule((-8, 5, -20), (-8, 5, 20), 6.0)
    r = rasterize([Part("rod", shape, 1, 2)], grid, supersampling=3)
    k, j, i = np.nonzero(r.structures == 1)
    centre_mm = grid.index_to_mm(np.stack([k, j, i], 1)).mean(axis=0)
    np.testing.assert_allclose(centre_mm[:2], [-8, 5], atol=0.1)
    area = r.tissue_fraction(2)[15].sum() * 0.36
    assert area == pytest.approx(np.pi * 36, rel=0.01)


def test_later_parts_cover_earlier_ones_and_layers_paint_the_core():
    grid = Grid.centered((32, 32, 32), (1.0, 1.0, 1.0))
    parts = [
        Part("box", Box((0, 0, 0), (12, 12, 12)), 1, 1),
        Part("ball", Sphere((0, 0, 0), 8.0), 3, 5, layers=(Layer(2.0, 6),)),
    ]
    r = rasterize(parts, grid, supersampling=2)
    assert r.structures[16, 16, 16] == 3 and r.tissues[16, 16, 16] == 6
    shell = r.tissue_fraction(5).sum()
    expected = 4 / 3 * np.pi * (8**3 - 6**3)
    assert shell == pytest.approx(expected, rel=0.03)
    assert r.structures[16, 16, 4] == 1  # box outside the ball
    assert r.structures[0, 0, 0] == 0


def test_fractions_sum_to_one_and_labels_are_the_dominant_tissue():
    grid = Grid.centered((24, 24, 24), (1.3, 1.3, 1.3))
    parts = [
        Part("a", Sphere((2, 0, 0), 9.0), 1, 1),
        Part("b", Sphere((-3, 1, 0), 6.0), 2, 2),
        Part("c", Capsule((0, -10, -10), (0, 10, 10), 2.0), 3, 5, instance=4),
    ]
    r = rasterize(parts, grid, supersampling=3)
    fractions = np.stack([r.tissue_fraction(t) for t in range(N_TISSUES)])
    np.testing.assert_allclose(fractions.sum(axis=0), 1.0, atol=1e-6)
    dominant = fractions.argmax(axis=0)
    assert np.array_equal(dominant, r.tissues)
    assert np.all(r.instances[r.structures == 3] == 4)
    assert np.all(r.instances[r.structures != 3] == 0)


def test_boundary_shortcuts_match_brute_force_supersampling():
    grid = Grid.centered((20, 36, 36), (1.0, 1.0, 1.0))
    shape = Capsule((-10, -4, -3), (12, 6, 4), 7.0, 3.0)
    r = rasterize([Part("cone", shape, 1, 2)], grid, supersampling=2)
    # Brute force: every sub-sample of every voxel.
    f = np.array([-0.25, 0.25])
    kk, jj, ii = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    centres = grid.index_to_mm(np.stack([kk, jj, ii], -1).reshape(-1, 3))
    counts = np.zeros(len(centres))
    for dz in f:
        for dy in f:
            for dx in f:
                counts += shape.sdf(centres + [dx, dy, dz]) < 0
    expected = (counts / 8).reshape(grid.shape)
    np.testing.assert_allclose(r.tissue_fraction(2), expected, atol=1e-6)


def test_supersampling_is_validated():
    grid = Grid.centered((4, 4, 4), (1.0, 1.0, 1.0))
    with pytest.raises(SpecError, match="supersampling"):
        rasterize([Part("a", Sphere((0, 0, 0), 1.0), 1, 1)], grid, supersampling=0)


def test_grid_rejects_bad_spacing():
    with pytest.raises(SpecError, match="spacing_mm"):
        Grid((4, 4, 4), (-1.0, 1.0, 1.0), (0, 0, 0))


def _brute_force_fractions(part: Part, grid: Grid, s: int) -> np.ndarray:
    """Tissue fractions (N_TISSUES, z, y, x) of one part from every sub-sample of every voxel."""
    f = (np.arange(s) + 0.5) / s - 0.5
    kk, jj, ii = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    centres = grid.index_to_mm(np.stack([kk, jj, ii], -1).reshape(-1, 3))
    out = np.zeros((N_TISSUES, centres.shape[0]))
    for dz in f:
        for dy in f:
            for dx in f:
                pts = centres + np.array([dx, dy, dz]) * grid.spacing_mm
                d = part.shape.sdf(pts)
                tissue = np.where(d < 0, part.tissue, 0)
                for layer in part.layers:
                    depth = layer.depth_mm(pts) if callable(layer.depth_mm) else layer.depth_mm
                    tissue = np.where(d + depth < 0, layer.tissue, tissue)
                out[tissue, np.arange(centres.shape[0])] += 1.0 / s**3
    return out.reshape(N_TISSUES, *grid.shape)


@pytest.mark.parametrize(
    ("name", "centre", "s"),
    [
        ("pelvis", (88.0, 0.0, 10.0), 2),
        ("muscles", (70.0, -36.0, -8.0), 2),  # short external rotators behind the right hip
        ("muscles", (-70.0, -108.0, 0.0), 3),  # left buttock
        ("body", (-40.0, -156.0, -20.0), 2),
        # Where buttock and thigh blend across the edge of a child's padded box.
        ("body", (-92.0, -104.0, -128.0), 2),
        ("pelvis", (-120.0, 66.0, 64.0), 2),  # the left anterior superior iliac spine
    ],
)
def test_hip_scene_parts_match_brute_force_supersampling(name, centre, s):
    from nmosim.phantoms.anatomy import build_anatomy
    from nmosim.phantoms.spec import AnatomySpec

    parts = {p.name: p for p in build_anatomy(AnatomySpec(), np.random.default_rng(0))}
    part = parts[name]
    grid = Grid.centered((28, 30, 32), (1.3, 1.1, 1.7), centre)
    r = rasterize([part], grid, supersampling=s)
    expected = _brute_force_fractions(part, grid, s)
    assert 0.02 < expected[part.tissue].mean() < 0.98  # the crop holds a surface
    # Where the part is (its structure, the truth of the labels) matches exactly.
    covered = sum(r.tissue_fraction(t) for t in range(N_TISSUES) if t != 0)
    np.testing.assert_array_equal(covered, expected[1:].sum(axis=0).astype(np.float32))
    if name == "pelvis":
        # Bone meshes: depths of the cortex layer read from a sampled distance field, whose values
        # a few mm inside agree with the exact ones to a few tenths of a mm; a few voxels at the
        # cortex-trabecular boundary differ by a sub-sample or two.
        for tissue in range(N_TISSUES):
            differ = r.tissue_fraction(tissue) != expected[tissue].astype(np.float32)
            assert differ.mean() < 0.005
            assert np.abs(r.tissue_fraction(tissue) - expected[tissue])[differ].max(initial=0) <= 3 / s**3
        return
    for tissue in range(N_TISSUES):
        np.testing.assert_array_equal(r.tissue_fraction(tissue), expected[tissue].astype(np.float32))


def test_same_scene_gives_the_same_bytes():
    from nmosim.phantoms.anatomy import build_anatomy
    from nmosim.phantoms.spec import AnatomySpec

    parts = build_anatomy(AnatomySpec(), np.random.default_rng(0))
    grid = Grid.centered((40, 44, 48), (6.0, 6.0, 6.0), (0.0, 0.0, 0.0))
    a, b = rasterize(parts, grid, 2), rasterize(parts[::-1][::-1], grid, 2)
    for field in ("structures", "tissues", "instances", "mixed_index", "mixed_fractions"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes()
    assert a.mixed_index.size and np.all(np.diff(a.mixed_index) > 0)
    assert np.all((a.mixed_fractions < 1).all(axis=1))  # listed voxels hold several tissues


def test_thread_count_changes_no_byte_and_is_validated():
    from nmosim.phantoms.anatomy import build_anatomy
    from nmosim.phantoms.errors import SpecError
    from nmosim.phantoms.spec import AnatomySpec

    parts = build_anatomy(AnatomySpec(), np.random.default_rng(0))
    grid = Grid.centered((30, 34, 40), (7.0, 7.0, 7.0), (0.0, 0.0, 0.0))
    one, three = rasterize(parts, grid, 2, threads=1), rasterize(parts, grid, 2, threads=3)
    for field in ("structures", "tissues", "instances", "mixed_index", "mixed_fractions"):
        assert getattr(one, field).tobytes() == getattr(three, field).tobytes()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(SpecError, match="threads"):
            rasterize(parts, grid, 2, threads=bad)


@pytest.mark.xfail(
    reason="known: an ellipsoid's distance is not 1-Lipschitz, so VOXEL_SAFETY misses a few voxels of "
    "some lesion unions (seed 3, phase d: 6 of 53760 fractions differ)",
    strict=True,  # passes once the bug is fixed: then drop the mark
)
def test_lesion_part_matches_brute_force_supersampling():
    from nmosim.phantoms.lesions import build_case_phantom

    phantom = build_case_phantom(np.random.default_rng(3), phase="d")
    part = next(p for p in phantom.parts if p.name.startswith("ho_"))
    lo, hi = part.shape.bounds()
    grid = Grid.centered((30, 28, 32), (1.1, 1.3, 1.2), tuple((lo + hi) / 2))
    for s in (2, 3):
        r = rasterize([part], grid, supersampling=s)
        expected = _brute_force_fractions(part, grid, s)
        assert 0.02 < expected[part.tissue].mean() + expected[part.layers[0].tissue].mean() < 0.98
        for tissue in range(N_TISSUES):
            np.testing.assert_array_equal(r.tissue_fraction(tissue), expected[tissue].astype(np.float32))


@pytest.mark.parametrize("centre", [(0.0, -20.0, -95.0), (192.0, 10.0, 0.0), (-60.0, -138.0, -40.0)])
def test_skin_part_matches_brute_force_supersampling(centre):
    """The skin read from its sampled lattice, at the perineum, lateral hip and left buttock."""
    from nmosim.phantoms.anatomy import build_anatomy
    from nmosim.phantoms.spec import AnatomySpec

    part = next(p for p in build_anatomy(AnatomySpec()) if p.name == "body")
    grid = Grid.centered((26, 28, 30), (1.3, 1.1, 1.7), centre)
    r = rasterize([part], grid, supersampling=2)
    expected = _brute_force_fractions(part, grid, 2)
    assert 0.02 < expected[part.tissue].mean() < 0.98
    for tissue in range(N_TISSUES):
        np.testing.assert_array_equal(r.tissue_fraction(tissue), expected[tissue].astype(np.float32))


def test_counts_per_row_match_a_count_of_each_value():
    values = np.random.default_rng(1).integers(0, 7, size=(200, 27)).astype(np.uint8)
    expect = np.array([[np.sum(row == v) for v in range(9)] for row in values])
    np.testing.assert_array_equal(_counts(values, 9), expect)
