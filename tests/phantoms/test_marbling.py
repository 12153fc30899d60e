"""Fat streaks of fat-infiltrated muscles: share, shape along the fibres, growth, rasterization."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nmosim.phantoms.anatomy import muscle_shapes
from nmosim.phantoms.case_phantom import MARBLING_FAT, fatty_parts
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import N_TISSUES, Structure, Tissue
from nmosim.phantoms.marbling import fibre_frame, lattice_noise, marbling_part, streak_field
from nmosim.phantoms.materials import tissue_materials
from nmosim.phantoms.rasterize import Part, rasterize
from nmosim.phantoms.shapes import Box, Ellipsoid
from nmosim.phantoms.spec import AnatomySpec

SPEC = dataclasses.replace(AnatomySpec(), muscle_bulk=0.6)  # wasted muscles, as when fat-infiltrated
NAME = "vastus_lateralis_right"
# A straight oblique path and a block of muscle around it: the streaks' field alone.
PATH = np.array([[0.0, 0.0, -80.0], [30.0, 15.0, 0.0], [60.0, 30.0, 80.0]])
AXIS = (PATH[-1] - PATH[0]) / np.linalg.norm(PATH[-1] - PATH[0])
BLOCK = Box((30.0, 15.0, 0.0), (70.0, 70.0, 110.0))


@pytest.fixture(scope="module")
def muscle():
    return muscle_shapes(SPEC)[NAME]


def _belly(muscle) -> np.ndarray:
    """A point on the muscle's path half way along it (mm)."""
    path = muscle.muscles.paths[muscle.index]
    return 0.5 * (path[0] + path[-1])


def _inside_points(muscle, n: int, seed: int) -> np.ndarray:
    lo, hi = muscle.bounds()
    centre = _belly(muscle)
    pts = np.random.default_rng(seed).uniform(
        np.maximum(lo, centre - 60), np.minimum(hi, centre + 60), (n, 3)
    )
    return pts[muscle.sdf(pts) < 0]


def test_infiltrated_muscle_reads_streaks_not_one_value(muscle):
    # DOMAIN.md 2.8: chronic muscle is heterogeneous, fat streaks in it, not one lowered HU.
    from nmosim.simulate.physics import hu_at_energy

    parts = fatty_parts(NAME, muscle, 0.6, seed=11, marbled=True)
    assert [p.name for p in parts] == [f"{NAME}_fatty", f"{NAME}_fatty_marbling"]
    assert [(p.structure, p.tissue) for p in parts] == [
        (Structure.MUSCLE, Tissue.MUSCLE_ATROPHIC),
        (Structure.MUSCLE, Tissue.FAT),
    ]
    grid = Grid.centered((4, 44, 44), (1.0, 1.0, 1.0), tuple(_belly(muscle)))
    r = rasterize(parts, grid, supersampling=2, threads=2)
    materials = tissue_materials()
    hu_of = np.zeros(N_TISSUES)
    for tissue in (Tissue.FAT, Tissue.MUSCLE_ATROPHIC):
        hu_of[int(tissue)] = hu_at_energy(materials[tissue], 64.0)
    held = r.tissue_fraction(Tissue.FAT) + r.tissue_fraction(Tissue.MUSCLE_ATROPHIC)
    inside = held > 0.999  # voxels wholly in the muscle
    assert inside.sum() > 1500
    hu = r.weighted_sum(hu_of)[inside]
    fat = r.tissue_fraction(Tissue.FAT)[inside]
    between = hu_of[int(Tissue.MUSCLE_ATROPHIC)]
    # Most voxels read atrophic muscle between streaks, some pure fat, many a blend.
    assert np.mean(np.isclose(hu, between, atol=0.5)) > 0.3
    assert np.mean(hu < -90.0) > 0.03
    assert np.mean((hu > -90.0) & (hu < between - 10.0)) > 0.05
    assert hu.std() > 25.0
    share = MARBLING_FAT[0] + MARBLING_FAT[1] * 0.6
    assert abs(fat.mean() - share) < 0.08


@pytest.mark.parametrize("fraction", [0.1, 0.25])
def test_fat_share_in_the_muscle_is_the_target(muscle, fraction):
    pts = _inside_points(muscle, 20000, seed=1)
    assert len(pts) > 1500
    shares = []
    for seed in range(3):
        part = marbling_part(
            NAME, muscle, muscle.muscles.paths[muscle.index], 80.0, fraction, np.random.default_rng(seed)
        )
        shares.append(np.mean(part.shape.sdf(pts) < 0))
    assert all(abs(s - fraction) < 0.05 for s in shares), shares
    assert abs(np.mean(shares) - fraction) < 0.03, shares


def test_streaks_outside_the_muscle_are_none(muscle):
    part = marbling_part(
        NAME, muscle, muscle.muscles.paths[muscle.index], 80.0, 0.3, np.random.default_rng(5)
    )
    lo, hi = part.shape.bounds()
    pts = np.random.default_rng(2).uniform(lo, hi, (20000, 3))
    fat = part.shape.sdf(pts) < 0
    assert fat.sum() > 100
    assert np.all(muscle.sdf(pts[fat]) < 0)


def _correlation_length(indicator: np.ndarray, step_mm: float) -> float:
    """Lag (mm) where the autocorrelation of rows of a 0/1 array along its second axis falls below 1/e."""
    x = indicator.astype(float)
    m = x.mean()
    var = m - m * m
    for lag in range(1, x.shape[1]):
        c = (np.mean(x[:, :-lag] * x[:, lag:]) - m * m) / var
        if c < np.exp(-1.0):
            return lag * step_mm
    return x.shape[1] * step_mm


def test_streaks_run_along_the_fibres():
    part = marbling_part("block", BLOCK, PATH, 40.0, 0.2, np.random.default_rng(4))
    frame = fibre_frame(PATH)
    assert np.allclose(frame[:, 2], AXIS)
    rng = np.random.default_rng(0)
    starts = rng.uniform((10, 0, -50), (50, 30, -10), (400, 3))
    step = 0.5
    lags = np.arange(120) * step
    along = part.shape.sdf((starts[:, None, :] + lags[None, :, None] * AXIS).reshape(-1, 3)) < 0
    across_dir = np.cross(AXIS, [0.0, 1.0, 0.0])
    across_dir /= np.linalg.norm(across_dir)
    across = part.shape.sdf((starts[:, None, :] + lags[None, :, None] * across_dir).reshape(-1, 3)) < 0
    n = len(lags)
    length_along = _correlation_length(along.reshape(-1, n), step)
    length_across = _correlation_length(across.reshape(-1, n), step)
    assert 0.1 < along.mean() < 0.3 and 0.1 < across.mean() < 0.3
    assert 0.5 <= length_across <= 4.0  # streaks a few mm across
    assert length_along > 3.0 * length_across


def test_more_spread_only_adds_fat(muscle):
    pts = _inside_points(muscle, 20000, seed=3)
    early = fatty_parts(NAME, muscle, 0.2, seed=7, marbled=True)[1].shape
    late = fatty_parts(NAME, muscle, 0.8, seed=7, marbled=True)[1].shape
    fat_early, fat_late = early.sdf(pts) < 0, late.sdf(pts) < 0
    assert fat_late.mean() > fat_early.mean() + 0.08
    assert np.all(fat_late[fat_early])  # nested: every early streak point is still fat


def test_the_field_does_not_depend_on_its_box():
    # The lattice box follows the muscle, which wastes with time: where two boxes overlap, the
    # field (and so every streak) is the same, so a streak does not move as the muscle shrinks.
    small = lattice_noise(99, np.array([-3, 4, 10]), (5, 6, 7))
    large = lattice_noise(99, np.array([-10, 0, 0]), (20, 20, 30))
    assert np.array_equal(small, large[7:12, 4:10, 10:17])
    assert abs(large.mean()) < 0.05 and abs(large.std() - np.sqrt(1 / 12)) < 0.02
    frame = fibre_frame(PATH)
    a = streak_field(frame, np.array([-20.0, -20.0, -60.0]), np.array([20.0, 20.0, 60.0]), key=5)
    b = streak_field(frame, np.array([-5.0, -12.0, -20.0]), np.array([30.0, 10.0, 90.0]), key=5)
    lo = np.maximum(a.start, b.start)
    hi = np.minimum(a.start + a.levels.shape, b.start + b.levels.shape)
    shared = [
        tuple(slice(int(x), int(y)) for x, y in zip(lo - f.start, hi - f.start, strict=True)) for f in (a, b)
    ]
    assert a.levels[shared[0]].size > 1000
    assert np.array_equal(a.levels[shared[0]], b.levels[shared[1]])
    # Another muscle's key: another field.
    c = streak_field(frame, np.array([-20.0, -20.0, -60.0]), np.array([20.0, 20.0, 60.0]), key=6)
    assert np.mean(c.levels == a.levels) < 0.2


def test_rasterized_streaks_agree_with_supersampling_the_distance():
    # The rasterizer decides whole blocks from one distance each: right only if the streaks'
    # distance is a true bound. Brute force: the sign at every sub-sample of every voxel.
    muscle = Ellipsoid((30.0, 15.0, 0.0), (14.0, 11.0, 60.0), fibre_frame(PATH))
    part = marbling_part("m", muscle, PATH, 30.0, 0.25, np.random.default_rng(8))
    for spacing in (1.0, 0.6):
        grid = Grid.centered((48, 40, 40), (spacing, spacing, spacing), (30.0, 15.0, 0.0))
        r = rasterize([Part("m", part.shape, Structure.MUSCLE, Tissue.FAT)], grid, supersampling=2, threads=2)
        fraction = r.tissue_fraction(Tissue.FAT)
        f = (np.arange(2) + 0.5) / 2 - 0.5
        offsets = np.stack(np.meshgrid(f, f, f, indexing="ij"), axis=-1).reshape(-1, 3) * spacing
        index = np.stack(np.unravel_index(np.arange(np.prod(grid.shape)), grid.shape), axis=1)
        centres = grid.index_to_mm(index)
        inside = part.shape.sdf((centres[:, None, :] + offsets[None, :, :]).reshape(-1, 3)) < 0
        brute = inside.reshape(-1, 8).mean(axis=1).reshape(grid.shape)
        assert brute.mean() > 0.03  # streaks in the box
        assert np.mean(brute != fraction) < 1e-4
        assert abs(fraction.sum() - brute.sum()) <= 1e-4 * brute.sum()


def test_same_seed_same_bytes(muscle):
    grid = Grid.centered((4, 40, 40), (1.0, 1.0, 1.0), tuple(_belly(muscle)))
    first = rasterize(fatty_parts(NAME, muscle, 0.5, seed=3, marbled=True), grid, threads=1)
    again = rasterize(fatty_parts(NAME, muscle, 0.5, seed=3, marbled=True), grid, threads=2)
    other = rasterize(fatty_parts(NAME, muscle, 0.5, seed=4, marbled=True), grid, threads=2)
    assert first.tissues.tobytes() == again.tissues.tobytes()
    assert first.mixed_fractions.tobytes() == again.mixed_fractions.tobytes()
    assert first.tissues.tobytes() != other.tissues.tobytes()
