"""Muscles registered from Gait2392 to the bones' landmarks, and their territories as shapes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nmosim.phantoms import gait2392
from nmosim.phantoms.anatomy import body_shape, lean_shape
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.muscles import (
    CAVITY_CORE_RADII,
    FAT_PLANE_MM,
    MuscleUnion,
    Territory,
    _pick,
    fit_similarity,
    muscle_field,
    muscle_parts,
    muscle_paths,
    opensim_to_patient,
    register,
    standin_landmarks,
)
from nmosim.phantoms.rasterize import Part, rasterize
from nmosim.phantoms.shapes import rotation_matrix
from nmosim.phantoms.skeleton import skeleton
from nmosim.phantoms.spec import AnatomySpec

SPEC = AnatomySpec()


@pytest.fixture(scope="module")
def bones():
    return skeleton(SPEC)


@pytest.fixture(scope="module")
def landmarks(bones):
    """The bone model's own landmarks: both sides measured, not mirrored."""
    return bones.bones.landmarks


@pytest.fixture(scope="module")
def field(landmarks):
    return muscle_field(landmarks, lean_shape(SPEC))


def _dist(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def test_right_hip_is_at_positive_x(landmarks):
    # DESIGN.md 2: RAS+, the right hip lies at x > 0.
    assert landmarks["head_centre_right"][0] > 0 > landmarks["head_centre_left"][0]
    paths = muscle_paths(landmarks, "right")
    assert paths["gluteus_medius_1_right"][-1][0] > landmarks["head_centre_right"][0]  # lateral
    assert paths["gluteus_maximus_2_right"][0][1] < 0  # posterior origin


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.normal(0.0, 60.0, (7, 3))
    rot = rotation_matrix((0.3, -1.0, 0.4), 37.0)
    dst = 1.12 * src @ rot.T + np.array([10.0, -4.0, 25.0])
    t = fit_similarity(src, dst)
    assert t.scale == pytest.approx(1.12)
    assert np.allclose(t.rotation, rot)
    assert t.rms_mm < 1e-9


def test_registration_of_the_model_onto_itself_is_exact():
    # Landmarks that are a known similarity of Gait2392's own: the registration finds it.
    rot, scale, shift = rotation_matrix((0, 0, 1), 8.0), 1.07, np.array([3.0, -5.0, 12.0])
    lm = {}
    for side in ("right", "left"):
        for name, p in gait2392.PELVIS_LANDMARKS.items():
            lm[f"{name}_{side}"] = scale * rot @ opensim_to_patient(p, side)[0] + shift
    for side in ("right", "left"):
        for name, p in gait2392.FEMUR_LANDMARKS.items():
            if "epicondyle" not in name:
                lm[f"{name}_{side}"] = 0.95 * opensim_to_patient(p, side)[0] + lm[f"head_centre_{side}"]
    for side in ("right", "left"):
        pelvis, femur = register(lm, side)
        assert pelvis.rms_mm < 1e-6 and femur.rms_mm < 1e-6
        assert pelvis.scale == pytest.approx(scale) and femur.scale == pytest.approx(0.95)
        assert np.allclose(pelvis.rotation, rot)


def test_registration_residuals_on_the_bone_model(landmarks):
    for side in ("right", "left"):
        pelvis, femur = register(landmarks, side)
        # The shape model's mean bones and Gait2392's disagree somewhat (the femur's knee lies
        # further back), so a few mm to a centimetre or so, never gross.
        assert pelvis.rms_mm < 12.0
        assert femur.rms_mm < 16.0
        assert 0.85 < pelvis.scale < 1.2 and 0.9 < femur.scale < 1.2


@pytest.mark.parametrize("side", ["right", "left"])
def test_attachments_lie_on_their_bones(bones, landmarks, side):
    # Each attachment near its bony landmark and on the bone's own surface (the meshes' signed
    # distance), which the registration never sees.
    paths = muscle_paths(landmarks, side)
    lm = {k.removesuffix(f"_{side}"): v for k, v in landmarks.items() if k.endswith(side)}
    femur, pelvis = bones.femurs[side], bones.pelvis

    def path(name):
        return paths[f"{name}_{side}"]

    def on(shape, point, mm):
        return abs(float(shape.sdf(np.atleast_2d(point))[0])) < mm

    gmed = [path(f"gluteus_medius_{k}")[-1] for k in (1, 2, 3)]
    assert _dist(np.mean(gmed, axis=0), lm["greater_trochanter"]) < 15.0
    assert max(_dist(p, lm["greater_trochanter"]) for p in gmed) < 25.0
    assert all(on(femur, p, 6.0) for p in gmed)
    assert _dist(path("piriformis")[-1], lm["greater_trochanter"]) < 25.0
    for name in ("psoas", "iliacus"):
        assert _dist(path(name)[-1], lm["lesser_trochanter"]) < 15.0
        assert on(femur, path(name)[-1], 6.0)
    for name in ("semimembranosus", "semitendinosus", "biceps_femoris_long"):
        # Gait2392's origins sit on the tuberosity's upper posterior face, the landmark at its
        # lowest point.
        assert _dist(path(name)[0], lm["ischial_tuberosity"]) < 45.0
        assert on(pelvis, path(name)[0], 10.0)
    # The AIIS is not a registration landmark: this checks the registration, not the fit.
    assert _dist(path("rectus_femoris")[0], lm["aiis"]) < 22.0
    assert on(pelvis, path("rectus_femoris")[0], 5.0)
    assert _dist(path("sartorius")[0], lm["asis"]) < 20.0
    assert on(pelvis, path("sartorius")[0], 5.0)
    # Long muscles run down the thigh; the scene's slice 115 mm below the hip crosses them.
    for name in ("vastus_lateralis", "adductor_longus", "semimembranosus", "gracilis"):
        assert path(name)[:, 2].min() < -150.0


def test_symmetric_landmarks_give_mirror_paths_and_asymmetric_ones_do_not():
    landmarks = standin_landmarks(SPEC)  # one side and its mirror
    right = muscle_paths(landmarks, "right")
    left = muscle_paths(landmarks, "left")
    flip = np.array([-1.0, 1.0, 1.0])
    for name, p in right.items():
        assert np.allclose(left[name.replace("_right", "_left")], p * flip, atol=1e-9)
    moved = dict(landmarks)
    moved["greater_trochanter_left"] = landmarks["greater_trochanter_left"] + np.array([-8.0, 5.0, -6.0])
    moved["knee_centre_left"] = landmarks["knee_centre_left"] + np.array([-10.0, 0.0, 20.0])
    left2 = muscle_paths(moved, "left")
    right2 = muscle_paths(moved, "right")
    assert np.allclose(right2["vastus_lateralis_right"], right["vastus_lateralis_right"])
    shift = np.linalg.norm(left2["vastus_lateralis_left"] - left["vastus_lateralis_left"], axis=1)
    assert shift.max() > 5.0  # the landmarks moved 11 and 22 mm


def _slice_points(z: float, step: float = 1.0) -> np.ndarray:
    xs = np.arange(-200.0, 200.0, step)
    ys = np.arange(-160.0, 160.0, step)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, z)], axis=1)


def test_muscles_never_overlap_and_stay_in_the_lean_body(field):
    pts = _slice_points(-40.0, 2.0)
    inside = np.array([field.sdf(i, pts) < 0 for i in range(len(field.names))])
    assert inside.sum(axis=0).max() <= 1
    held = inside.any(axis=0)
    assert held.sum() > 1000
    assert np.all(lean_shape(SPEC).sdf(pts[held]) < 0.5)


def test_territories_follow_the_weighted_nearest_rule(field):
    # Re-derived here from the paths and PCSAs: among the muscles within reach, a point well clear
    # (in weighted distance) of every other group's muscle, inside the reach and the lean body and
    # outside the cavities, is in its nearest muscle; a point in a muscle is nearest to it.
    rng = np.random.default_rng(5)
    lo, hi = np.array([-180.0, -140.0, -140.0]), np.array([180.0, 140.0, 135.0])
    pts = rng.uniform(lo, hi, (2500, 3))
    pcsa = np.array([m.pcsa_mm2 for m in gait2392.MUSCLES] * 2)
    near = [_polyline_distance(pts, p, nearest=True) for p in field.paths]
    d = np.array([n[0] for n in near])
    u = np.array([(pts - n[1]) / np.maximum(n[0], 1e-9)[:, None] for n in near])
    e = np.where(d <= field.reaches[:, None] + FAT_PLANE_MM, d - field.radii[:, None], np.inf)
    lean = lean_shape(SPEC).sdf(pts)
    cavity = field.cavity.sdf(pts)
    groups = np.array(
        [n.rstrip("_0123456789").replace("_left", "").replace("_right", "") for n in field.names]
    )
    groups = np.char.rstrip(
        np.where(np.isin(groups, ["iliacus", "psoas"]), "iliopsoas", groups), "_0123456789"
    )
    sdfs = np.array([field.sdf(j, pts) for j in range(len(field.names))])
    checked = 0
    for k in range(len(pts)):
        order = np.argsort(e[:, k])
        i = order[0]
        if not np.isfinite(e[i, k]):
            assert np.all(sdfs[:, k] >= 0)  # no muscle within reach: fat
            continue
        runner = e[order[1], k]
        b = [j for j in order if groups[j] != groups[i]][0]
        other = e[b, k]
        # the plane is FAT_PLANE_MM times half the chord between the directions from the two paths
        plane = FAT_PLANE_MM * np.linalg.norm(u[i, k] - u[b, k]) / 2
        if runner - e[i, k] > 1.0:  # clear of the part next to it: only the nearest may hold it
            assert np.all(sdfs[np.arange(len(sdfs)) != i, k] >= 0)
        clear = (
            other - e[i, k] > plane + 2.0
            and runner - e[i, k] > 2.0
            and d[i, k] < field.reaches[i] - 2
            and lean[k] < -2
            and (cavity[k] > 2 or (field.in_cavity[i] and d[i, k] < CAVITY_CORE_RADII * field.radii[i] - 2))
        )
        if clear:
            checked += 1
            assert sdfs[i, k] < 0
        if other - e[i, k] < plane - 0.5 or d[i, k] > field.reaches[i] + 1 or lean[k] > 1:
            assert np.all(sdfs[:, k] >= 0)  # in a fat plane, beyond the reach or outside the lean body
    assert checked > 200
    # Bigger muscles (PCSA) own more: radii follow sqrt(PCSA) on each side (each side's own scale).
    n = len(gait2392.MUSCLES)
    for side in (slice(0, n), slice(n, 2 * n)):
        r, a = field.radii[side], pcsa[side]
        assert np.allclose(r / r[0], np.sqrt(a / a[0]), rtol=1e-9)


def test_sampled_nodes_follow_the_rule_read_from_every_muscle(field):
    # The lattice is filled cube by cube from the muscles that matter there, every other node
    # first; at its nodes it must agree with the rule read from all muscles at once.
    values, label = field.sampled()
    x, y, z = field.axes()
    # Each cube straddles surfaces (the fitted lean body fills the buttock at (-60, -80, 40) with
    # muscle but for thin fat planes: the cube there moved 20 mm medially).
    for centre in ((70.0, -36.0, -8.0), (-40.0, 60.0, -80.0), (100.0, 0.0, -115.0), (-40.0, -80.0, 40.0)):
        i0, j0, k0 = (int(np.searchsorted(a, c)) - 10 for a, c in zip((x, y, z), centre, strict=True))
        sl = (slice(k0, k0 + 20), slice(j0, j0 + 20), slice(i0, i0 + 20))
        exact, held = field.lattice_field(x[sl[2]], y[sl[1]], z[sl[0]])
        got = values[sl]
        assert 0.05 < (exact < 0).mean() < 0.95
        np.testing.assert_array_equal(got < 0, exact < 0)
        np.testing.assert_array_equal(label[sl][exact < 0], held[exact < 0])
        near = np.abs(exact) < 0.5  # near the surface every node is computed, not interpolated
        np.testing.assert_allclose(got[near], exact[near], atol=1e-3)


def _polyline_distance(points: np.ndarray, path: np.ndarray, nearest: bool = False):
    best = np.full(len(points), np.inf)
    where = np.zeros_like(points)
    for a, b in zip(path[:-1], path[1:], strict=True):
        for t in np.linspace(0.0, 1.0, 201):  # brute force: 201 points per segment
            q = a + t * (b - a)
            d = np.linalg.norm(points - q, axis=1)
            where[d < best] = q
            best = np.minimum(best, d)
    return (best, where) if nearest else best


def test_fat_planes_separate_neighbours(field):
    # Lines across the thigh 115 mm below the hips: wherever one muscle gives way to another
    # (not a part of the same muscle) a gap of fat lies between them, about FAT_PLANE_MM wide.
    names = list(field.names)
    groups = [n.rsplit("_", 1)[0].rstrip("_0123456789") for n in names]
    rng = np.random.default_rng(4)
    step = 0.05
    gaps = []
    for _ in range(12):
        angle = rng.uniform(0, np.pi)
        centre = np.array([rng.choice([-1, 1]) * 110.0, 0.0, -115.0])
        direction = np.array([np.cos(angle), np.sin(angle), 0.0])
        line = centre + np.arange(-70.0, 70.0, step)[:, None] * direction
        owner = np.full(len(line), -1)
        for i in range(len(names)):
            owner[field.sdf(i, line) < 0] = i
        held = np.flatnonzero(owner >= 0)
        for a, b in zip(held[:-1], held[1:], strict=True):
            if groups[owner[a]] != groups[owner[b]]:
                gaps.append((b - a) * step)
    gaps = np.array(gaps)
    assert len(gaps) > 20
    assert gaps.min() > 0.5 * FAT_PLANE_MM  # neighbours never touch
    assert np.median(gaps) < 2.5 * FAT_PLANE_MM  # and the planes are thin


def _at_height(path: np.ndarray, z: float) -> np.ndarray:
    for a, b in zip(path[:-1], path[1:], strict=True):
        if (a[2] - z) * (b[2] - z) <= 0 and a[2] != b[2]:
            return a + (z - a[2]) / (b[2] - a[2]) * (b - a)
    raise AssertionError("path does not cross z")


@pytest.mark.parametrize(
    "name", ["gluteus_medius_2_right", "gluteus_minimus_1_right", "adductor_brevis_left", "iliacus_right"]
)
def test_sdf_never_overstates_the_distance(field, name):
    i = field.names.index(name)
    lo, hi = field.bounds(i)
    centre = np.clip(np.mean(field.paths[i], axis=0), lo, hi)
    h = 0.5
    axes = [np.arange(c - 24.0, c + 24.0, h) for c in centre]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    d = field.sdf(i, grid)
    inside = (d < 0).reshape(len(axes[0]), len(axes[1]), len(axes[2]))
    assert 0.02 < inside.mean() < 0.98
    # Distance from each node to the nearest node on the other side: at least the distance to
    # the surface, so an sdf above 1.1 times it overstates beyond what the rasterizer allows.
    to_out = ndimage.distance_transform_edt(inside, sampling=h)
    to_in = ndimage.distance_transform_edt(~inside, sampling=h)
    nearest_other = np.where(inside, to_out, to_in).ravel()
    border = np.min([np.minimum(grid[:, a] - axes[a][0], axes[a][-1] - grid[:, a]) for a in range(3)], axis=0)
    ok = nearest_other < border  # the nearest other-side node is not cut off by the box
    assert ok.mean() > 0.1
    assert np.all(np.abs(d[ok]) <= 1.1 * nearest_other[ok] + 1e-6)


def _thigh_scene(bulk: float):
    """Soft tissue and femurs of the proximal thighs, 100-130 mm below the hips, at 2.5 mm."""
    bones = skeleton(SPEC)
    lean = lean_shape(SPEC)
    mf = muscle_field(bones.bones.landmarks, lean, bulk)
    parts = [
        Part("body", body_shape(SPEC), Structure.SOFT_TISSUE, Tissue.FAT),
        Part("muscles", MuscleUnion(mf, tuple(range(len(mf.names)))), Structure.MUSCLE, Tissue.MUSCLE),
        Part("femur_right", bones.femurs["right"], Structure.FEMUR_RIGHT, Tissue.CORTICAL_BONE),
        Part("femur_left", bones.femurs["left"], Structure.FEMUR_LEFT, Tissue.CORTICAL_BONE),
    ]
    grid = Grid((12, 128, 160), (2.5, 2.5, 2.5), (-198.75, -158.75, -128.75))
    return grid, rasterize(parts, grid, supersampling=2, threads=2)


@pytest.fixture(scope="module")
def thigh():
    return _thigh_scene(1.0)[1]


def test_muscle_fills_most_of_the_thigh_soft_tissue(thigh):
    fat = thigh.tissue_fraction(Tissue.FAT).sum()
    muscle = thigh.tissue_fraction(Tissue.MUSCLE).sum()
    assert muscle / (fat + muscle) >= 0.5


def test_atrophy_leaves_less_muscle(thigh):
    thin = _thigh_scene(0.4)[1]
    # DOMAIN.md 2.8: cross-sections fall 30-60 % in chronic spinal cord injury.
    assert thin.tissue_fraction(Tissue.MUSCLE).sum() < 0.7 * thigh.tissue_fraction(Tissue.MUSCLE).sum()


def test_same_input_same_bytes(thigh):
    again = _thigh_scene(1.0)[1]
    assert again.tissues.tobytes() == thigh.tissues.tobytes()
    assert again.mixed_fractions.tobytes() == thigh.mixed_fractions.tobytes()


def test_fat_planes_and_asymmetry_in_the_thigh(thigh):
    muscle = thigh.tissue_fraction(Tissue.MUSCLE)
    fat = thigh.tissue_fraction(Tissue.FAT)
    lean = lean_shape(SPEC)
    g = Grid((12, 128, 160), (2.5, 2.5, 2.5), (-198.75, -158.75, -128.75))
    kk, jj, ii = np.meshgrid(*[np.arange(n) for n in g.shape], indexing="ij")
    centres = g.index_to_mm(np.stack([kk, jj, ii], -1).reshape(-1, 3))
    deep = (lean.sdf(centres) < -5.0).reshape(g.shape)
    # Fat planes: fat between the muscles, well inside the lean body, in most thigh slices.
    assert (fat[deep] > 0.25).mean() > 0.02
    assert (muscle[deep] > 0.5).mean() > 0.6
    # The grid is symmetric about x = 0: the hips' own landmarks make the sides differ.
    assert np.allclose(centres[:, 0].reshape(g.shape)[..., ::-1], -centres[:, 0].reshape(g.shape))
    differ = np.abs(muscle - muscle[..., ::-1]) > 0.5
    assert 0.005 < differ[deep].mean() < 0.3


@pytest.mark.parametrize("centre", [(70.0, -36.0, -8.0), (-40.0, 60.0, -80.0)])
def test_union_part_is_the_union_of_the_muscles(field, centre):
    # The one-pass union holds every muscle and little else (slivers where three meet in a cell
    # of the lattice), and its distance bound never overstates the distance to the other side
    # (nearest node across, on a 0.5 mm lattice).
    union = MuscleUnion(field, tuple(range(len(field.names))))
    h = 0.5
    axes = [np.arange(c - 10.0, c + 10.0, h) for c in centre]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    d = union.sdf(grid)
    each = (np.array([field.sdf(i, grid) for i in range(len(field.names))]) < 0).sum(axis=0)
    assert each.max() <= 1  # muscles never overlap
    assert np.all(d[each > 0] < 0)
    assert ((d < 0) != (each > 0)).mean() < 0.005
    inside = (d < 0).reshape(*(len(a) for a in axes))
    assert 0.05 < inside.mean() < 0.95
    to_out = ndimage.distance_transform_edt(inside, sampling=h)
    to_in = ndimage.distance_transform_edt(~inside, sampling=h)
    nearest_other = np.where(inside, to_out, to_in).ravel()
    border = np.min([np.minimum(grid[:, a] - axes[a][0], axes[a][-1] - grid[:, a]) for a in range(3)], axis=0)
    ok = nearest_other < border
    assert ok.mean() > 0.1
    assert np.all(np.abs(d[ok]) <= 1.1 * nearest_other[ok] + 1e-6)


def test_cavities_hold_only_the_muscles_that_line_them(field):
    # The bladder's centre (anatomy._viscera) and a point in front of the sacrum, where the rectum
    # runs; its lower part and the anal canal run between the buttocks, which the scene paints over.
    organs = np.array([[0.0, 38.0, -2.0], [0.0, -60.0, 70.0]])
    for i in range(len(field.names)):
        assert np.all(field.sdf(i, organs) > 0), field.names[i]
    rng = np.random.default_rng(2)
    pts = rng.uniform((-150, -120, -60), (150, 120, 135), (3000, 3))
    pts = pts[field.cavity.sdf(pts) < -2.0]
    assert len(pts) > 100
    for i, name in enumerate(field.names):
        if not field.in_cavity[i]:
            assert np.all(field.sdf(i, pts) > 0), name


def test_bulk_outside_its_range_is_refused(landmarks):
    with pytest.raises(ValueError, match="bulk"):
        muscle_parts(landmarks, lean_shape(SPEC), bulk=0.0)


def test_marbling_streaks_run_along_the_fibres(field):
    from nmosim.phantoms.marbling import marbling_part

    i = field.names.index("vastus_lateralis_right")
    muscle = Territory(field, i)
    path = field.paths[i]
    part = marbling_part("vastus_lateralis_right", muscle, path, 30.0, 0.2, np.random.default_rng(7))
    again = marbling_part("vastus_lateralis_right", muscle, path, 30.0, 0.2, np.random.default_rng(7))
    assert part.tissue == Tissue.FAT and part.structure == Structure.MUSCLE
    rng = np.random.default_rng(0)
    a, b = path[0], path[2]
    axis = (b - a) / np.linalg.norm(b - a)
    pts = a + rng.uniform(0.2, 0.8, (8000, 1)) * (b - a) + rng.normal(0.0, 12.0, (8000, 3))
    pts = pts[muscle.sdf(pts) < 0]
    fat = part.shape.sdf(pts) < 0
    assert np.array_equal(fat, again.shape.sdf(pts) < 0)  # same generator, same streaks
    assert 0.08 < fat.mean() < 0.35  # about the 20 % asked for
    assert np.all(muscle.sdf(pts[fat]) < 0)  # streaks stay inside the muscle
    # Streaks: a fat point's neighbour 5 mm along the fibres is much more often fat than
    # its neighbour 5 mm across them.
    across = np.cross(axis, [1.0, 0.0, 0.0])
    across /= np.linalg.norm(across)
    seed = pts[fat]
    along_fat = part.shape.sdf(seed + 5.0 * axis) < 0
    across_fat = part.shape.sdf(seed + 5.0 * across) < 0
    assert along_fat.mean() > 1.5 * across_fat.mean()


def test_marbling_for_a_muscle_part(landmarks):
    from nmosim.phantoms.marbling import marbling_for

    parts = {p.name: p for p in muscle_parts(landmarks, lean_shape(SPEC), bulk=0.6)}
    muscle = parts["gluteus_medius_2_right"]
    streaks = marbling_for(muscle, 0.15, np.random.default_rng(3))
    assert streaks.name == "gluteus_medius_2_right_marbling"
    lo, hi = muscle.shape.bounds()
    pts = np.random.default_rng(1).uniform(lo, hi, (60000, 3))
    pts = pts[muscle.shape.sdf(pts) < 0]
    assert len(pts) > 1000
    assert 0.04 < (streaks.shape.sdf(pts) < 0).mean() < 0.3


def test_fat_infiltrated_muscle_is_marbled_not_uniform():
    # DOMAIN.md 2.8: wasted muscle reads heterogeneous, fat streaks in it, not one lowered value.
    from nmosim.phantoms.anatomy import muscle_shapes
    from nmosim.phantoms.case_phantom import fatty_parts

    name = "vastus_lateralis_right"
    muscle = muscle_shapes(SPEC)[name]
    parts = fatty_parts(name, muscle, 0.6, seed=11, marbled=True)
    assert [p.name for p in parts] == [f"{name}_fatty", f"{name}_fatty_marbling"]
    assert [p.tissue for p in parts] == [Tissue.MUSCLE_ATROPHIC, Tissue.FAT]
    assert [p.name for p in fatty_parts(name, muscle, 0.6, seed=11, marbled=False)] == [f"{name}_fatty"]
    centre = _at_height(muscle.muscles.paths[muscle.index], -115.0)  # through the belly
    grid = Grid.centered((6, 50, 50), (1.0, 1.0, 1.0), tuple(centre))
    r = rasterize(parts, grid, supersampling=2, threads=2)
    fat = r.tissue_fraction(Tissue.FAT)
    held = fat + r.tissue_fraction(Tissue.MUSCLE_ATROPHIC)
    inside = held > 0.99  # voxels wholly in the muscle
    assert inside.sum() > 2000
    share = fat[inside]
    # Fat-equivalent fractions spread from none to all across the muscle, about the planned share.
    assert (share == 0).mean() > 0.3 and (share > 0.9).mean() > 0.03
    assert 0.04 < share.mean() < 0.5 and share.std() > 0.15
    again = rasterize(fatty_parts(name, muscle, 0.6, seed=11, marbled=True), grid, supersampling=2, threads=2)
    assert again.tissues.tobytes() == r.tissues.tobytes()
    other = rasterize(fatty_parts(name, muscle, 0.6, seed=12, marbled=True), grid, supersampling=2, threads=2)
    assert other.tissues.tobytes() != r.tissues.tobytes()


def test_a_muscle_lattice_is_cut_from_the_whole_one_around_its_nodes(field):
    """A muscle's lattice: the whole field's, 3 nodes beyond the nodes it holds inside (found
    here by a scan of every node), other muscles' nodes read as their absolute value."""
    values, label = field.sampled()
    x, y, z = field.axes()
    for members in ((0,), (3, len(field.names) - 1)):
        mine = np.isin(label, members)
        held = np.argwhere(mine & (values < 0.0))
        assert held.size
        lo = np.maximum(held.min(axis=0) - 3, 0)
        hi = np.minimum(held.max(axis=0) + 4, values.shape)
        cut = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        shape = field.shape_of(members)
        np.testing.assert_array_equal(shape.values, np.where(mine[cut], values[cut], np.abs(values[cut])))
        np.testing.assert_allclose(shape.origin_mm, [x[lo[2]], y[lo[1]], z[lo[0]]])


def test_pick_reads_and_writes_one_muscle_per_point():
    rng = np.random.default_rng(0)
    stack = rng.normal(size=(5, 3, 4, 6)).astype(np.float32)
    k = rng.integers(0, 5, size=(3, 4, 6))
    np.testing.assert_array_equal(_pick(stack, k), np.take_along_axis(stack, k[None], axis=0)[0])
    expect = stack.copy()
    np.put_along_axis(expect, k[None], np.inf, axis=0)
    _pick(stack, k, np.inf)
    np.testing.assert_array_equal(stack, expect)


def test_argmin_over_the_stack_is_numpys_first_least_index():
    from nmosim.phantoms.muscles import _argmin

    rng = np.random.default_rng(5)
    for m in (1, 2, 7):
        stack = rng.integers(0, 4, (m, 6, 50)).astype(np.float32)  # many ties
        stack[stack == 3] = np.inf
        stack[:, 0, :] = np.inf  # columns with no finite value
        np.testing.assert_array_equal(_argmin(stack), np.argmin(stack, axis=0))


def test_envelope_interpolation_equals_the_whole_lattice_form():
    from nmosim.phantoms.muscles import _interpolate

    rng = np.random.default_rng(6)
    values = rng.normal(0.0, 10.0, (9, 11, 13)).astype(np.float32)
    origin, step = np.array([-20.0, 5.0, -7.0]), 4.0
    axes = (np.arange(-30.0, 10.0, 1.5), np.arange(12.0, 30.0, 1.5), np.arange(0.0, 9.0, 1.5))
    out = values  # the same steps on every node of ``values``: x, then y, then z
    for axis, coords in zip((2, 1, 0), axes, strict=True):
        n = values.shape[axis]
        u = np.clip((coords - origin[2 - axis]) / step, 0.0, n - 1.0)
        i0 = np.minimum(np.floor(u).astype(np.intp), n - 2)
        w = (u - i0).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(3)])
        out = np.take(out, i0, axis=axis) * (1.0 - w) + np.take(out, i0 + 1, axis=axis) * w
    np.testing.assert_array_equal(_interpolate(values, origin, step, axes), out)
