"""Brooker grading on small hand-built label volumes with known grades and gaps."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy import ndimage

from nmosim.phantoms import grading
from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grading import BROOKER_GAP_MM, SideGrade, grade_hips, grade_side
from nmosim.phantoms.labels import Structure, Tissue

PELVIS = Structure.PELVIS
FEMUR_R, FEMUR_L = Structure.FEMUR_RIGHT, Structure.FEMUR_LEFT
HO_R, HO_L = Structure.HO_RIGHT, Structure.HO_LEFT
ISO = (1.0, 1.0, 1.0)


def bar_hip(nx: int = 40, pelvis_to: int = 4, femur_from: int = 30) -> np.ndarray:
    """Volume (5, 5, nx): pelvis slab at x < pelvis_to, right femur slab at x >= femur_from."""
    s = np.zeros((5, 5, nx), np.uint8)
    s[:, :, :pelvis_to] = PELVIS
    s[:, :, femur_from:] = FEMUR_R
    return s


def brute_gap_mm(a: np.ndarray, b: np.ndarray, spacing_xyz) -> float:
    """Reference: min over all voxel pairs of the distance between the voxels' boxes (mm)."""
    pa, pb = np.argwhere(a), np.argwhere(b)
    d = np.abs(pa[:, None, :] - pb[None, :, :])
    empty_mm = np.maximum(d - 1, 0) * np.asarray(spacing_xyz[::-1], float)
    return float(np.sqrt((empty_mm**2).sum(-1)).min())


# --- grades 0 and I ----------------------------------------------------------------------------


def test_no_ho_is_grade_0_without_gap():
    g = grade_side(bar_hip(), ISO, "right")
    assert (g.grade, g.gap_mm, g.ho_voxels, g.components) == (0, None, 0, ())


def test_joint_space_alone_is_grade_0():
    s = bar_hip(pelvis_to=10, femur_from=11)  # pelvis and femur one empty voxel apart
    assert grade_side(s, ISO, "right").grade == 0


def test_islands_only_is_grade_1():
    s = bar_hip()
    s[2, 2, 10:13] = HO_R
    s[0, 0, 20] = HO_R  # a second island, not touching the first
    g = grade_side(s, ISO, "right")
    assert (g.grade, g.gap_mm) == (1, None)
    assert (g.n_islands, g.n_pelvic_spurs, g.n_femoral_spurs, g.n_bridges) == (2, 0, 0, 0)
    assert g.ho_voxels == 4


# --- spurs: grades II and III ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spur_to", "gap", "grade"),
    [(18, 12.0, 2), (24, 6.0, 3), (20, 10.0, 2), (21, 9.0, 3), (29, 1.0, 3)],
)
def test_pelvic_spur_gap_counts_empty_voxels(spur_to, gap, grade):
    s = bar_hip(femur_from=30)
    s[2, 2, 4:spur_to] = HO_R  # spur leaves the pelvis, 30 - spur_to empty voxels before the femur
    g = grade_side(s, ISO, "right")
    assert g.gap_mm == pytest.approx(gap, abs=1e-9)
    assert g.grade == grade
    assert (g.n_pelvic_spurs, g.n_femoral_spurs, g.n_islands) == (1, 0, 0)


@pytest.mark.parametrize("n_empty", [40, 77])
def test_exactly_10_mm_is_grade_2_with_fine_spacing(n_empty):
    # n_empty voxels of 10 / n_empty mm; with 77 the distance transform returns 9.999999999999998,
    # and float rounding must not push exactly 10 mm into grade III.
    size = 10.0 / n_empty
    s = np.zeros((3, 3, n_empty + 30), np.uint8)
    s[:, :, :5] = PELVIS
    s[1, 1, 5:20] = HO_R
    s[:, :, 20 + n_empty :] = FEMUR_R
    g = grade_side(s, (size, size, size), "right")
    assert g.gap_mm == pytest.approx(BROOKER_GAP_MM, abs=1e-6)
    assert g.grade == 2


def test_femoral_spur_toward_pelvis():
    s = bar_hip(femur_from=30)
    s[1, 3, 23:30] = HO_R  # from the femur; 19 empty voxels (x = 4..22) before the pelvis
    g = grade_side(s, ISO, "right")
    assert (g.grade, g.gap_mm) == (2, 19.0)
    assert (g.n_pelvic_spurs, g.n_femoral_spurs) == (0, 1)
    assert g.components[0].attachment == "femur"


def test_facing_spurs_gap_is_between_the_tips():
    s = bar_hip(femur_from=30)
    s[2, 2, 4:14] = HO_R  # pelvic spur tip at x = 13
    s[2, 2, 18:30] = HO_R  # femoral spur tip at x = 18: 4 empty voxels between tips
    g = grade_side(s, ISO, "right")
    assert (g.grade, g.gap_mm) == (3, 4.0)
    assert (g.n_pelvic_spurs, g.n_femoral_spurs) == (1, 1)


def test_gap_is_the_smaller_of_the_two_spur_distances():
    # Spurs 18 empty rows apart, so neither faces the other: each is measured to the opposing bone.
    s = np.zeros((3, 20, 40), np.uint8)
    s[..., :4] = PELVIS
    s[..., 30:] = FEMUR_R
    s[1, 0, 4:23] = HO_R  # pelvic spur, tip at x = 22: 7 empty voxels to the femur
    s[1, 19, 15:30] = HO_R  # femoral spur, tip at x = 15: 11 empty voxels to the pelvis
    g = grade_side(s, ISO, "right")
    assert (g.grade, g.gap_mm) == (3, 7.0)
    s[1, 0, 18:23] = 0  # pelvic spur now 12 voxels short of the femur: the femoral spur's 11 wins
    g = grade_side(s, ISO, "right")
    assert (g.grade, g.gap_mm) == (2, 11.0)


def test_island_between_pelvis_and_femur_does_not_shorten_gap():
    s = bar_hip(femur_from=30)
    s[2, 2, 4:18] = HO_R  # 12 empty voxels to the femur
    s[2, 2, 22:26] = HO_R  # island in the gap, 3 voxels from spur and femur
    g = grade_side(s, ISO, "right")
    assert (g.grade, g.gap_mm, g.n_islands, g.n_pelvic_spurs) == (2, 12.0, 1, 1)


def test_joint_space_never_counts_toward_gap():
    # Pelvis and femur one empty voxel apart; a spur leaves the pelvis away from the joint.
    s = np.zeros((5, 30, 30), np.uint8)
    s[:, :10, :14] = PELVIS
    s[:, :10, 15:] = FEMUR_R
    s[2, 10:20, 0:3] = HO_R  # nearest femur voxel: x = 15 vs tip column x = 2 -> 12 empty
    g = grade_side(s, ISO, "right")
    assert (g.grade, g.gap_mm) == (2, 12.0)


def test_gap_beyond_the_first_search_box_is_exact():
    s = bar_hip(nx=80, femur_from=70)
    s[2, 2, 4:10] = HO_R  # 60 empty voxels to the femur
    assert grade_side(s, ISO, "right").gap_mm == 60.0


DIRECTIONS = [(axis, sign) for axis in range(3) for sign in (1, -1)]


def spur_facing_femur(axis: int, sign: int, face: int, spike_at: int, spike_from: int):
    """One-voxel pelvic spur in a corner of a 1 mm grid, the femur toward ``sign`` along ``axis``.

    The femur face lies ``face`` voxels from the spur; a femur spike lies ``spike_at`` voxels from
    it along ``axis`` and ``spike_from`` or more along the next axis. The spur sits one voxel from
    the volume's edges behind it, so the search box is cut there and only its far sides bound it.
    """
    n = 20
    c = 1 if sign > 0 else n - 2
    index = np.indices((n, n, n))
    along = sign * (index[axis] - c)
    across = sign * (index[(axis + 1) % 3] - c)
    s = np.zeros((n, n, n), np.uint8)
    s[(along >= face) | ((along == spike_at) & (across >= spike_from))] = FEMUR_R
    spur = [c, c, c]
    s[tuple(spur)] = HO_R
    spur[axis] -= sign
    s[tuple(spur)] = PELVIS  # the spur's base, behind it
    return s


@pytest.mark.parametrize(("axis", "sign"), DIRECTIONS)
def test_nearest_bone_just_outside_the_first_search_box(axis, sign):
    # The search starts with a box padded by _FIRST_MARGIN_MM around the spur. The femur face,
    # 13 mm away, lies just outside it; a femur spike inside it is farther (sqrt(11^2 + 8^2) mm).
    pad = round(grading._FIRST_MARGIN_MM)  # voxels on a 1 mm grid
    s = spur_facing_femur(axis, sign, face=pad + 2, spike_at=pad, spike_from=9)
    g = grade_side(s, ISO, "right")
    assert (g.grade, g.gap_mm) == (2, 13.0)


@pytest.mark.parametrize(("axis", "sign"), DIRECTIONS)
def test_bone_one_voxel_past_the_first_search_box_is_seen(axis, sign):
    # The femur face one voxel past the first box is 12 mm away; a spike inside is sqrt(11^2 + 5^2).
    pad = round(grading._FIRST_MARGIN_MM)
    s = spur_facing_femur(axis, sign, face=pad + 1, spike_at=pad, spike_from=6)
    assert grade_side(s, ISO, "right").gap_mm == 12.0


def test_scattered_femur_voxels_match_brute_force():
    # Femur = random voxels 8 to 18 voxels from a one-voxel spur, around the first search box edge.
    rng = np.random.default_rng(5)
    for _ in range(30):
        spacing = tuple(float(v) for v in rng.choice([0.5, 1.0, 1.5], size=3))
        s = np.zeros((9, 40, 40), np.uint8)
        s[:, :, :4] = PELVIS
        s[4, 20, 4] = HO_R
        offsets = rng.integers(-18, 19, size=(12, 3))
        far = np.abs(offsets).max(axis=1) >= 8
        for dz, dy, dx in offsets[far]:
            s[np.clip(4 + dz, 0, 8), 20 + dy, np.clip(4 + dx, 5, 39)] = FEMUR_R
        want = brute_gap_mm(s == HO_R, s == FEMUR_R, spacing)
        assert grade_side(s, spacing, "right").gap_mm == pytest.approx(want, abs=1e-9)


def test_spur_without_opposing_femur_is_grade_2_with_undefined_gap():
    s = bar_hip()
    s[s == FEMUR_R] = 0
    s[2, 2, 4:8] = HO_R
    g = grade_side(s, ISO, "right")
    assert (g.grade, g.gap_mm) == (2, None)


# --- anisotropic spacing -----------------------------------------------------------------------

ANISO = (0.5, 0.5, 2.0)  # (x, y, z) mm


def test_anisotropic_gap_along_z():
    s = np.zeros((12, 5, 5), np.uint8)
    s[:2] = PELVIS
    s[2:5, 2, 2] = HO_R  # spur along z, tip at z = 4
    s[8:] = FEMUR_R  # 3 empty slices of 2 mm
    g = grade_side(s, ANISO, "right")
    assert (g.grade, g.gap_mm) == (3, 6.0)
    s[8:10] = 0  # 5 empty slices: exactly 10 mm
    g = grade_side(s, ANISO, "right")
    assert (g.grade, g.gap_mm) == (2, 10.0)


def test_anisotropic_gap_along_x():
    s = np.zeros((3, 3, 40), np.uint8)
    s[..., :4] = PELVIS
    s[1, 1, 4:8] = HO_R  # tip at x = 7
    s[..., 20:] = FEMUR_R  # 12 empty columns of 0.5 mm
    g = grade_side(s, ANISO, "right")
    assert (g.grade, g.gap_mm) == (3, 6.0)


def test_anisotropic_diagonal_gap_combines_axes():
    s = np.zeros((8, 5, 16), np.uint8)
    s[:3, :, :4] = PELVIS
    s[2, 2, 4] = HO_R  # one-voxel spur on the pelvis face
    s[5:, :, 11:] = FEMUR_R  # 2 empty slices (2 mm) and 6 empty columns (0.5 mm)
    g = grade_side(s, ANISO, "right")
    assert g.gap_mm == pytest.approx(math.hypot(2 * 2.0, 6 * 0.5))  # 5 mm
    assert g.grade == 3


# --- connectivity: attachment and grade IV -----------------------------------------------------


def test_bridge_is_grade_4():
    s = bar_hip(femur_from=30)
    s[2, 2, 4:30] = HO_R
    g = grade_side(s, ISO, "right")
    assert (g.grade, g.gap_mm, g.n_bridges) == (4, 0.0, 1)
    assert g.components[0].attachment == "bridge"


def test_corner_contact_attaches_to_pelvis():
    s = np.zeros((6, 6, 20), np.uint8)
    s[:2, :2, :2] = PELVIS
    s[2, 2, 2] = HO_R  # touches the pelvis voxel [1, 1, 1] only at a corner
    s[:, :, 15:] = FEMUR_R
    g = grade_side(s, ISO, "right")
    assert g.components[0].attachment == "pelvis"
    assert (g.grade, g.gap_mm) == (2, 12.0)
    s[2, 2, 2], s[3, 3, 3] = 0, HO_R  # one voxel farther: no contact, an island
    assert grade_side(s, ISO, "right").grade == 1


def test_diagonal_chain_bridges_pelvis_and_femur():
    s = np.zeros((8, 8, 8), np.uint8)
    s[0, 0, 0] = PELVIS
    s[7, 7, 7] = FEMUR_R
    for i in range(1, 7):
        s[i, i, i] = HO_R  # a staircase connected only through corners
    g = grade_side(s, ISO, "right")
    assert (g.grade, len(g.components)) == (4, 1)


# --- sides -------------------------------------------------------------------------------------


def two_hips() -> np.ndarray:
    """Right hip at x < 40 (femur_right), left at x >= 40 (femur_left), pelvis across the top."""
    s = np.zeros((5, 20, 80), np.uint8)
    s[:, :4, :] = PELVIS
    s[:, 16:, 2:38] = FEMUR_R
    s[:, 16:, 42:78] = FEMUR_L
    return s


def test_other_sides_ho_does_not_affect_this_side():
    s = two_hips()
    s[2, 4:8, 10] = HO_R  # right pelvic spur, 8 empty rows (y = 8..15) to the right femur
    alone = grade_side(s, ISO, "right")
    assert (alone.grade, alone.gap_mm) == (3, 8.0)
    s[2, 4:16, 60] = HO_L  # left bridge
    s[3, 7:11, 10] = HO_L  # left HO inside the right gap, touching the right spur
    s[2, 4:15, 39] = HO_L  # left spur reaching next to the right femur
    both = grade_hips(s, ISO)
    assert (both["right"].grade, both["right"].gap_mm) == (3, 8.0)
    assert both["right"].ho_voxels == alone.ho_voxels
    assert (both["left"].grade, both["left"].gap_mm, both["left"].n_bridges) == (4, 0.0, 1)


def test_femur_of_other_side_is_not_opposing_bone():
    s = two_hips()
    s[:, 16:, 2:38] = 0  # no right femur at all
    s[2, 4:15, 39] = HO_R  # right spur ending next to the left femur
    g = grade_side(s, ISO, "right")
    assert (g.grade, g.gap_mm, g.n_pelvic_spurs, g.n_bridges) == (2, None, 1, 0)


# --- components and output ---------------------------------------------------------------------


def test_component_geometry_uses_origin_and_spacing():
    s = np.zeros((4, 4, 6), np.uint8)
    s[1, 2, 3:5] = HO_R  # island: x = 3, 4; y = 2; z = 1
    g = grade_side(s, ANISO, "right", origin_mm=(10.0, 20.0, 30.0))
    (c,) = g.components
    assert c.n_voxels == 2
    assert c.volume_mm3 == pytest.approx(2 * 0.5 * 0.5 * 2.0)
    assert c.centroid_mm == pytest.approx((10.0 + 3.5 * 0.5, 20.0 + 2 * 0.5, 30.0 + 1 * 2.0))
    assert c.bbox_zyx == ((1, 2, 3), (2, 3, 5))
    assert g.ho_volume_mm3 == pytest.approx(1.0)


def test_to_dict_is_json_ready():
    s = bar_hip()
    s[2, 2, 4:18] = HO_R
    s[0, 0, 22] = HO_R
    out = json.loads(json.dumps(grade_hips(s, ISO)["right"].to_dict()))
    assert out["grade"] == 2 and out["gap_mm"] == 12.0
    assert sorted(c["attachment"] for c in out["components"]) == ["island", "pelvis"]
    assert json.loads(json.dumps(grade_side(bar_hip(), ISO, "left").to_dict()))["gap_mm"] is None


def test_random_volumes_match_brute_force():
    # Random HO rods (from the pelvis, from the femur, or free) between a pelvis slab and a femur
    # slab on anisotropic grids; the reference labels the whole volume and measures every voxel
    # pair by the box rule.
    rng = np.random.default_rng(1973)
    cube = np.ones((3, 3, 3), bool)
    grades = set()
    for _ in range(40):
        shape = (int(rng.integers(3, 8)), int(rng.integers(3, 8)), 60)
        spacing = tuple(float(v) for v in rng.choice([0.3, 0.5, 1.0, 2.0], size=3))
        s = np.zeros(shape, np.uint8)
        s[..., :3] = PELVIS
        s[..., 57:] = FEMUR_R
        for _ in range(int(rng.integers(1, 5))):
            z, y = rng.integers(0, shape[:2])
            dz, dy = rng.integers(1, 3, size=2)
            x0, x1 = np.sort(rng.integers(3, 58, size=2))
            x0, x1 = [(3, x1), (x0, 57), (x0, x1)][rng.integers(3)]
            s[z : z + dz, y : y + dy, x0 : x1 + 1] = HO_R
        got = grade_side(s, spacing, "right")

        ho = s == HO_R
        lab, n = ndimage.label(ho, cube)
        near_p = ndimage.binary_dilation(s == PELVIS, cube)
        near_f = ndimage.binary_dilation(s == FEMUR_R, cube)
        on_p = {i for i in range(1, n + 1) if (near_p & (lab == i)).any()}
        on_f = {i for i in range(1, n + 1) if (near_f & (lab == i)).any()}
        ho_p = np.isin(lab, list(on_p - on_f))
        ho_f = np.isin(lab, list(on_f - on_p))
        if on_p & on_f:
            want = (4, 0.0)
        elif not (on_p | on_f):
            want = (1, None)
        else:
            gap = min(
                brute_gap_mm(ho_p, (s == FEMUR_R) | ho_f, spacing) if ho_p.any() else math.inf,
                brute_gap_mm(ho_f, (s == PELVIS) | ho_p, spacing) if ho_f.any() else math.inf,
            )
            want = (2 if gap >= 10 - 1e-9 else 3, pytest.approx(gap, abs=1e-9))
        assert (got.grade, got.gap_mm) == want
        assert got.ho_voxels == int(ho.sum())
        grades.add(got.grade)
    assert grades == {1, 2, 3, 4}  # the draw exercises every grade with HO


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"side": "up"}, "side = 'up' is not one of {right, left}"),
        ({"spacing_mm": (1.0, 0.0, 1.0)}, "spacing_mm"),
        ({"spacing_mm": (1.0, 1.0)}, "spacing_mm"),
        ({"spacing_mm": (1.0, float("nan"), 1.0)}, "spacing_mm"),
        ({"spacing_mm": "abc"}, "spacing_mm"),
        ({"structures": np.zeros((4, 4), np.uint8)}, "structures"),
        ({"structures": np.zeros((4, 4, 4), np.float32)}, "structures"),
        ({"structures": [[[0]]]}, "structures"),
        ({"origin_mm": (0.0, math.inf, 0.0)}, "origin_mm"),
    ],
)
def test_bad_input_raises_spec_error_naming_parameter(kwargs, name):
    args = {"structures": bar_hip(), "spacing_mm": ISO, "side": "right", **kwargs}
    with pytest.raises(SpecError, match="^" + re.escape(name)):
        grade_side(**args)


def test_grade_hips_validates_and_returns_both_sides():
    with pytest.raises(SpecError, match="^spacing_mm"):
        grade_hips(bar_hip(), (1.0, -1.0, 1.0))
    out = grade_hips(bar_hip(), ISO)
    assert list(out) == ["right", "left"]
    assert all(isinstance(g, SideGrade) and g.side == k for k, g in out.items())


# --- what counts as HO bone ----------------------------------------------------------------------

T = Tissue


def bridge_with_tissues(*runs: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A right HO bar joining the pelvis (x < 4) to the femur (x >= 30), its tissue set per x run
    ``(from, to, tissue)``; the slabs are native bone tissue."""
    s = bar_hip()
    s[2, 2, 4:30] = HO_R
    t = np.where(s > 0, int(T.CORTICAL_BONE), 0).astype(np.uint8)
    for lo, hi, tissue in runs:
        t[2, 2, lo:hi] = int(tissue)
    return s, t


def test_a_calcifying_bridge_is_not_bone_and_grades_0():
    s, t = bridge_with_tissues((4, 30, T.HO_CALCIFYING))
    assert grade_side(s, ISO, "right").grade == 4  # labels alone: every HO voxel counts
    g = grade_side(s, ISO, "right", tissues=t)
    assert (g.grade, g.ho_voxels, g.ho_volume_mm3) == (0, 0, 0.0)


@pytest.mark.parametrize("tissue", [T.HO_IMMATURE, T.HO_CORTEX, T.HO_TRABECULAR])
def test_an_immature_or_mature_bridge_is_brooker_iv(tissue):
    s, t = bridge_with_tissues((4, 30, tissue))
    g = grade_side(s, ISO, "right", tissues=t)
    assert (g.grade, g.n_bridges, g.ho_voxels) == (4, 1, 26)


def test_a_calcifying_middle_leaves_two_spurs_and_its_length_as_the_gap():
    # Ossified at both ends (6 voxels each), amorphous mineral over the 14 voxels between.
    s, t = bridge_with_tissues((4, 10, T.HO_IMMATURE), (10, 24, T.HO_CALCIFYING), (24, 30, T.HO_CORTEX))
    g = grade_hips(s, ISO, tissues=t)["right"]
    assert (g.grade, g.gap_mm, g.n_pelvic_spurs, g.n_femoral_spurs) == (2, 14.0, 1, 1)
    s, t = bridge_with_tissues((4, 12, T.HO_IMMATURE), (12, 18, T.HO_CALCIFYING), (18, 30, T.HO_CORTEX))
    assert (grade_side(s, ISO, "right", tissues=t).grade, grade_side(s, ISO, "right", tissues=t).gap_mm) == (
        3,
        6.0,
    )


def test_counted_tissues_are_the_ossified_ho_classes_and_tissue_shape_is_checked():
    assert set(grading.COUNTED_HO_TISSUE_NAMES) == {"ho_immature", "ho_cortex", "ho_trabecular"}
    s, t = bridge_with_tissues((4, 30, T.HO_IMMATURE))
    with pytest.raises(SpecError, match="tissues shape"):
        grade_side(s, ISO, "right", tissues=t[:, :, :10])
