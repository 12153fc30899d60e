"""Anatomy measured from rasterized labels, never read back from the parameters it was built from."""

import numpy as np
import pytest
from scipy import ndimage

from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import N_TISSUES, Structure, Tissue
from nmosim.phantoms.phantom import build_phantom
from nmosim.phantoms.spec import sample_anatomy

SEEDS = (1, 2, 3)
SPACINGS = (1.0, 1.6)


def femur_labels(anatomy, spacing):
    """Rasterize both femurs (only) on a grid covering the hips and proximal thighs."""
    phantom = build_phantom(anatomy, np.random.default_rng(0))
    parts = [p for p in phantom.parts if p.name.startswith("femur_")]
    grid = Grid.covering((-150, -70, -150), (150, 70, 45), spacing)
    from nmosim.phantoms.rasterize import rasterize

    return rasterize(parts, grid, supersampling=2), grid


def head_center_and_radius(labels, grid, structure):
    """Head centre (mm) from the deepest point of the top of the femur, radius from the volume
    of the femur above the centre (a hemisphere: the neck leaves the head below it)."""
    mask = labels.structures == structure
    spacing_zyx = grid.spacing_mm[::-1]
    depth = ndimage.distance_transform_edt(mask, sampling=spacing_zyx)
    top = np.nonzero(mask.any(axis=(1, 2)))[0].max()
    depth[: max(top - int(30 / grid.spacing_mm[2]), 0)] = 0  # only the top 30 mm: the head
    guess = grid.index_to_mm(np.array(np.unravel_index(depth.argmax(), mask.shape)))
    # Refine: centroid of the femur inside a ball of 10 mm around the guess (symmetric in a sphere).
    k, j, i = np.nonzero(mask)
    pts = grid.index_to_mm(np.stack([k, j, i], 1))
    near = np.linalg.norm(pts - guess, axis=1) < 10
    centre = pts[near].mean(axis=0)
    # Bone volume above the centre, within 40 mm: the upper hemisphere of the head.
    frac = sum(labels.tissue_fraction(t) for t in (Tissue.CORTICAL_BONE, Tissue.TRABECULAR_BONE))
    frac = np.where(mask | (frac > 0), frac, 0)
    kk, jj, ii = np.nonzero(frac)
    p = grid.index_to_mm(np.stack([kk, jj, ii], 1))
    sel = (p[:, 2] > centre[2]) & (np.linalg.norm(p - centre, axis=1) < 40)
    sel &= np.abs(p[:, 0]) > 20  # this femur only
    sel &= np.sign(p[:, 0]) == np.sign(centre[0])
    volume = frac[kk[sel], jj[sel], ii[sel]].sum() * grid.voxel_volume_mm3
    radius = (3 * volume / (2 * np.pi)) ** (1 / 3)
    return centre, radius


def shaft_axis(labels, grid, structure):
    """Direction (pointing up) of the line through the centroids of diaphysis slices."""
    mask = labels.structures == structure
    zs = grid.voxel_centers_axis(2)
    rows = [k for k in range(mask.shape[0]) if zs[k] < -100 and mask[k].any()]
    cents = []
    for k in rows:
        j, i = np.nonzero(mask[k])
        cents.append(grid.index_to_mm(np.stack([np.full(j.size, k), j, i], 1)).mean(axis=0))
    cents = np.array(cents)
    _, _, vt = np.linalg.svd(cents - cents.mean(axis=0))
    axis = vt[0]
    return axis if axis[2] > 0 else -axis, rows


def neck_direction(labels, grid, structure, centre, radius):
    """Direction from the head centre to the centroid of the femur in a shell just past the head."""
    mask = labels.structures == structure
    k, j, i = np.nonzero(mask)
    pts = grid.index_to_mm(np.stack([k, j, i], 1))
    dist = np.linalg.norm(pts - centre, axis=1)
    band = (dist > radius + 4) & (dist < radius + 12)
    v = pts[band].mean(axis=0) - centre
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("seed", SEEDS)
def test_femoral_geometry_measured_from_labels_matches_the_spec(seed, spacing):
    anatomy = sample_anatomy(np.random.default_rng(seed))
    labels, grid = femur_labels(anatomy, spacing)
    right, r_right = head_center_and_radius(labels, grid, Structure.FEMUR_RIGHT)
    left, r_left = head_center_and_radius(labels, grid, Structure.FEMUR_LEFT)
    assert 2 * r_right == pytest.approx(anatomy.femoral_head_diameter_mm, abs=spacing)
    assert 2 * r_left == pytest.approx(anatomy.femoral_head_diameter_mm, abs=spacing)
    assert np.linalg.norm(right - left) == pytest.approx(anatomy.inter_hip_distance_mm, abs=spacing)
    assert right[0] > 0 > left[0]  # the right hip lies at x > 0

    up, _ = shaft_axis(labels, grid, Structure.FEMUR_RIGHT)
    neck = neck_direction(labels, grid, Structure.FEMUR_RIGHT, right, r_right)
    # The neck-shaft angle opens between the distal shaft and the neck axis toward the head.
    angle = np.degrees(np.arccos(np.clip(np.dot(-neck, -up), -1, 1)))
    assert angle == pytest.approx(anatomy.neck_shaft_angle_deg, abs=3.0)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_shaft_cortical_thickness_measured_from_labels(spacing):
    anatomy = sample_anatomy(np.random.default_rng(11))
    labels, grid = femur_labels(anatomy, spacing)
    zs = grid.voxel_centers_axis(2)
    cortex = labels.tissue_fraction(Tissue.CORTICAL_BONE)
    femur = labels.structures == Structure.FEMUR_RIGHT
    bone = sum(labels.tissue_fraction(t) for t in range(N_TISSUES) if t != Tissue.AIR)
    thickness = []
    for k in np.nonzero((zs < -110) & (zs > -140))[0]:
        region = ndimage.binary_dilation(femur[k], iterations=2)
        outer_area = (bone[k] * region).sum() * grid.spacing_mm[0] * grid.spacing_mm[1]
        cortex_area = (cortex[k] * region).sum() * grid.spacing_mm[0] * grid.spacing_mm[1]
        r_out = np.sqrt(outer_area / np.pi)
        r_in = np.sqrt((outer_area - cortex_area) / np.pi)
        thickness.append(r_out - r_in)
        assert 2 * r_out == pytest.approx(anatomy.shaft_outer_diameter_mm, abs=spacing)
    assert np.median(thickness) == pytest.approx(anatomy.shaft_cortical_thickness_mm, abs=spacing)


@pytest.fixture(scope="module")
def coarse_scene():
    anatomy = sample_anatomy(np.random.default_rng(5))
    phantom = build_phantom(anatomy, np.random.default_rng(0))
    grid = phantom.grid(3.0)
    return phantom, phantom.rasterize(grid, supersampling=2)


def test_whole_scene_fractions_sum_to_one_and_labels_are_dominant(coarse_scene):
    _, labels = coarse_scene
    fractions = np.stack([labels.tissue_fraction(t) for t in range(N_TISSUES)])
    np.testing.assert_allclose(fractions.sum(axis=0), 1.0, atol=1e-5)
    assert np.array_equal(fractions.argmax(axis=0), labels.tissues)


def test_every_structure_of_the_hip_is_present(coarse_scene):
    _, labels = coarse_scene
    present = set(np.unique(labels.structures).tolist())
    for s in (
        Structure.SOFT_TISSUE,
        Structure.MUSCLE,
        Structure.PELVIS,
        Structure.FEMUR_RIGHT,
        Structure.FEMUR_LEFT,
        Structure.VESSEL,
        Structure.NERVE,
    ):
        assert s in present, s.name


@pytest.mark.parametrize("seed", (4, 8))
def test_pelvis_and_femur_never_touch_on_a_fine_grid(seed):
    """Brooker grading relies on it: bone bridges only through heterotopic bone."""
    anatomy = sample_anatomy(np.random.default_rng(seed))
    phantom = build_phantom(anatomy, np.random.default_rng(0))
    head = phantom.landmarks.head_center
    grid = Grid.covering(head - [60, 50, 60], head + [50, 50, 50], 1.0)
    labels = phantom.rasterize(grid, supersampling=2)
    pelvis = labels.structures == Structure.PELVIS
    femur = labels.structures == Structure.FEMUR_RIGHT
    assert pelvis.sum() > 1000 and femur.sum() > 1000
    grown = ndimage.binary_dilation(pelvis, structure=np.ones((3, 3, 3), bool))
    assert not np.any(grown & femur), "pelvis touches the femur"


def test_tissues_of_the_scene(coarse_scene):
    _, labels = coarse_scene
    present = set(np.unique(labels.tissues).tolist())
    for t in (
        Tissue.AIR,
        Tissue.FAT,
        Tissue.MUSCLE,
        Tissue.CORTICAL_BONE,
        Tissue.TRABECULAR_BONE,
        Tissue.MARROW_YELLOW,
        Tissue.SOFT_TISSUE_OTHER,
    ):
        assert t in present, t.name
    lesion_tissues = (
        Tissue.HO_CALCIFYING,
        Tissue.HO_IMMATURE,
        Tissue.HO_CORTEX,
        Tissue.HO_TRABECULAR,
        Tissue.CALCIFICATION,
    )
    assert not any(t in present for t in lesion_tissues), "no lesion tissue without lesions"
