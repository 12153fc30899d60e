"""The adult hip as an analytic scene: pelvis, femurs, muscles, fat, skin, vessels, nerves, viscera.

Builds labelled shapes from an AnatomySpec; it draws no random numbers but the few it is given
and it never rasterizes. Positions follow DOMAIN.md section 3 (patient frame RAS+, mm).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from nmosim.phantoms.envelope import SKIN_MM, body_shape, fat_field, lean_shape, sampled_body_shape
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.muscles import MuscleField, MuscleUnion, Territory, muscle_field
from nmosim.phantoms.rasterize import Layer, Part
from nmosim.phantoms.shapes import (
    Difference,
    Ellipsoid,
    HalfSpace,
    Intersection,
    MirrorX,
    Offset,
    Points,
    Shape,
    Sphere,
    Union,
    array_api_sdf,
    clip,
    constants,
    namespace,
    rotation_matrix,
    tube,
)
from nmosim.phantoms.skeleton import SCENE_Z_MM, SIDES, HipLandmarks, _pelvis_mesh, hip_landmarks, skeleton
from nmosim.phantoms.spec import AnatomySpec

__all__ = ["SCENE_Z_MM", "HipLandmarks", "body_shape", "fat_field", "hip_landmarks", "lean_shape"]

BLADDER_WALL_MM = 3.0  # distended bladder wall 2-3 mm (clinical ultrasound/CT norm)
# Pelvic cortex by region [K]: a thin shell over the iliac fossa and wing (about 0.5-1.2 mm),
# thick under the acetabular roof and along the sciatic buttress that carries load from the
# roof to the sacro-iliac joint, and over the ischial tuberosity (about 2-3.5 mm); CT-based
# pelvis models report 0.4-4 mm (e.g. Anderson et al. 2005, J Biomech Eng 127:364; Dalstra et
# al. 1995, J Biomech Eng 117:272). Thin cortices read 600-1200 HU on CT (DOMAIN.md 4.1).
PELVIS_CORTEX_MM = 1.0  # iliac wing and everywhere away from the thick regions
BUTTRESS_CORTEX_MM = 2.6  # acetabular roof and sciatic buttress
TUBEROSITY_CORTEX_MM = 2.0  # ischial tuberosity
CORTEX_SPREAD_MM = 14.0  # Gaussian fall-off (SD) of a thick region about its centre line
HEAD_CORTEX_MM = 1.0  # DOMAIN.md 3: subchondral cortex 0.5-1.5 mm


def _own_frame(lm: HipLandmarks, side: str) -> HipLandmarks:
    """``lm`` (given in the right-side frame) back in the patient frame of ``side``."""
    return lm if side == "right" else lm.mirrored()


def _to_right_frame(shape: Shape, side: str) -> Shape:
    return shape if side == "right" else MirrorX(shape)


# ----------------------------------------------------------------------------------------------
# Bones
# ----------------------------------------------------------------------------------------------


def femur_shape(spec: AnatomySpec, side: str = "right") -> Shape:
    """Outer surface of ``side``'s femur (LLP26), in the right-side frame (the left one mirrored)."""
    return _to_right_frame(skeleton(spec).femur(side), side)


def hip_bone_shape(spec: AnatomySpec, side: str = "right") -> Shape:
    """The pelvis with ``side``'s socket carved, in the right-side frame (mirrored for the left).

    The pelvis is one bone here (both hip bones and the sacrum); code that works about one hip
    reads it near that hip.
    """
    return _to_right_frame(pelvis_shape(spec), side)


def socket_shape(spec: AnatomySpec, lm: HipLandmarks) -> Shape:
    """Space carved out of the pelvis around the head: the head grown by the joint space.

    The shape model's heads overlap their acetabula a little; carving sets the joint space."""
    return Sphere(lm.head_center, lm.head_radius + spec.joint_space_mm)


def pelvis_shape(spec: AnatomySpec) -> Shape:
    """The pelvis (LLP26: both hip bones and the sacrum) with both sockets carved, patient frame."""
    sk = skeleton(spec)
    sockets = tuple(socket_shape(spec, _own_frame(sk.landmarks[s], s)) for s in SIDES)
    return Difference(sk.pelvis, Union(sockets))


def pelvis_cortex_depth(spec: AnatomySpec) -> Callable[[Points], Any]:
    """Cortical thickness of the pelvis (mm) as a smooth function of position (patient frame):
    :data:`PELVIS_CORTEX_MM` on the wings, rising to :data:`BUTTRESS_CORTEX_MM` along each side's
    line from the acetabular roof to the sciatic buttress above the greater sciatic notch, and
    to :data:`TUBEROSITY_CORTEX_MM` over the ischial tuberosities (Gaussian fall-offs). Runs on
    the array API."""
    m = skeleton(spec).bones.landmarks
    lines, spots = [], []
    for side in SIDES:

        def p(name: str, side: str = side) -> np.ndarray:
            return np.asarray(m[f"{name}_{side}"], float)

        roof = p("acetabular_centre") + np.array([0.0, 0.0, float(m[f"head_radius_{side}"]) + 4.0])
        notch = p("ischial_spine") + 0.3 * (p("psis") - p("ischial_spine"))
        lines.append((roof, 0.5 * (notch + p("psis")) + np.array([0.0, 0.0, -10.0])))
        spots.append(p("ischial_tuberosity"))
    thick, tuber = BUTTRESS_CORTEX_MM - PELVIS_CORTEX_MM, TUBEROSITY_CORTEX_MM - PELVIS_CORTEX_MM
    spread = 2.0 * CORTEX_SPREAD_MM**2

    held = SimpleNamespace(
        starts=np.stack([a for a, _ in lines]),
        steps=np.stack([b - a for a, b in lines]),
        spots=np.stack(spots),
    )
    lengths2 = [float((b - a) @ (b - a)) for a, b in lines]

    @array_api_sdf
    def depth(points: Points) -> Any:
        xp = namespace(points)
        starts, steps, centres = constants(held, points, "starts", "steps", "spots")

        def norm(v: Any) -> Any:  # np.linalg.norm's sum, in its order
            return xp.sqrt(xp.sum(v * v, axis=1))

        def to_line(i: int) -> Any:  # distance (mm) to segment i
            a, ab = starts[i, :], steps[i, :]
            t = clip(xp, (points - a) @ ab / lengths2[i], 0.0, 1.0)
            return norm(points - (a + t[:, None] * ab))

        near_line = functools.reduce(xp.minimum, [to_line(i) for i in range(len(lines))])
        near_spot = functools.reduce(xp.minimum, [norm(points - centres[i, :]) for i in range(len(spots))])
        return (
            PELVIS_CORTEX_MM
            + thick * xp.exp(-(near_line**2) / spread)
            + tuber * xp.exp(-(near_spot**2) / spread)
        )

    return depth


def femur_cortex_depth(spec: AnatomySpec, lm: HipLandmarks) -> Callable[[Points], Any]:
    """Cortical thickness (mm) as a function of position in ``lm``'s frame: thin over the head and
    neck, full in the shaft (DOMAIN.md 3: subchondral 0.5-1.5 mm, neck 1.6-3.9 mm, shaft 5-8 mm).
    Runs on the array API."""
    held = SimpleNamespace(
        lesser=np.asarray(lm.lesser_trochanter, float), axis=np.asarray(lm.shaft_axis, float)
    )
    top, t = HEAD_CORTEX_MM + 0.5, float(spec.shaft_cortical_thickness_mm)
    slope = (t - top) / (30.0 - (-5.0))

    @array_api_sdf
    def depth(points: Points) -> Any:
        xp = namespace(points)
        lesser, axis = constants(held, points, "lesser", "axis")
        below = (points - lesser) @ axis  # mm distal of the lesser trochanter
        # np.interp(below, [-5, 30], [top, t]) in its arithmetic: the end values at and beyond the ends
        ramp = slope * (below - (-5.0)) + top
        return xp.where(below <= -5.0, top, xp.where(below >= 30.0, t, ramp))

    return depth


def shaft_canal_shape(spec: AnatomySpec, femur: Shape, lm: HipLandmarks) -> Shape:
    """Marrow canal of the femoral diaphysis (yellow marrow): the shaft inside its cortex, from
    12 mm below the lesser trochanter down."""
    top = lm.lesser_trochanter + 12.0 * lm.shaft_axis
    return Intersection((Offset(femur, -spec.shaft_cortical_thickness_mm), HalfSpace(top, -lm.shaft_axis)))


# ----------------------------------------------------------------------------------------------
# Soft tissue
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def muscle_field_for(spec: AnatomySpec) -> MuscleField:
    """Gait2392's muscles of both hips registered to the bone model's landmarks, inside the lean
    body and sized by ``spec.muscle_bulk`` (:mod:`nmosim.phantoms.muscles`); one per anatomy, so
    that its field is sampled once."""
    return muscle_field(skeleton(spec).bones.landmarks, lean_shape(spec), spec.muscle_bulk)


def muscle_shapes(spec: AnatomySpec) -> dict[str, Shape]:
    """Each muscle's own volume, ``f"{muscle}_{side}"`` -> Shape (patient frame, mm): for the
    overlays that change one muscle (fatty infiltration, oedema). The scene paints the muscles
    as one part, ``muscles``, whose volume is the union of these."""
    mf = muscle_field_for(spec)
    return {name: Territory(mf, i) for i, name in enumerate(mf.names)}


def _muscle_part(mf: MuscleField) -> Part:
    """Every muscle of both hips as one part, ``muscles``: the union of :func:`muscle_shapes`,
    evaluated in one pass over all paths (far cheaper than a part per muscle)."""
    return Part("muscles", MuscleUnion(mf, tuple(range(len(mf.names)))), Structure.MUSCLE, Tissue.MUSCLE)


# Vessels and nerves (radii mm): femoral artery 8-10 mm across, vein a little wider, femoral nerve
# 5-7 mm, sciatic nerve flat and 10-20 mm wide (DOMAIN.md 3) [K]. They keep this far from bone.
ARTERY_RADIUS_MM = 4.0
VEIN_RADIUS_MM = 5.5
FEMORAL_NERVE_RADIUS_MM = 3.0
SCIATIC_RADII_MM = (5.0, 5.5, 6.5, 6.5, 6.0)
BONE_CLEARANCE_MM = 2.0
_STEP_MM = 10.0  # paths are resampled this finely before they are pushed clear of bone
_DISTAL_BELOW_HEAD_MM = 230.0  # the paths run on down the thigh to this far below the head


def _bone_distance(sk) -> Callable[[np.ndarray], np.ndarray]:
    """Distance (mm) from points (N, 3) to the nearest bone, pelvis or either femur, close to the
    truth also where the bones' distance grids give only a loose lower bound (outside them): there
    the distance to the nearest mesh vertex, less half an edge, stands in when larger."""
    meshes = [_pelvis_mesh(sk.bones.pelvis), sk.bones.femur_right, sk.bones.femur_left]
    vertices = np.vstack([mesh.vertices for mesh in meshes])
    tree = cKDTree(vertices)
    edges = [
        np.linalg.norm(mesh.vertices[mesh.faces[:, 0]] - mesh.vertices[mesh.faces[:, 1]], axis=1)
        for mesh in meshes
    ]
    half_edge = 0.5 * float(np.max([e.max() for e in edges]))

    def distance(points: np.ndarray) -> np.ndarray:
        d = sk.pelvis.sdf(points)
        for side in SIDES:
            d = np.minimum(d, sk.femur(side).sdf(points))
        outside = np.flatnonzero(d > 0.0)
        if outside.size:
            near, _ = tree.query(points[outside])
            d[outside] = np.maximum(d[outside], near - half_edge)
        return d

    return distance


def _clear_path(points, radii, away, distance) -> tuple[np.ndarray, np.ndarray]:
    """The polyline ``points`` resampled every few mm, each point then moved along its ``away``
    direction (one per given point, interpolated) until bone is at least its radius plus
    :data:`BONE_CLEARANCE_MM` away. Returns the points and their radii."""
    points, radii, away = (np.asarray(a, float) for a in (points, radii, away))
    pts, rs, dirs = [points[:1]], [radii[:1]], [away[:1]]
    for i in range(len(points) - 1):
        n = max(int(np.ceil(np.linalg.norm(points[i + 1] - points[i]) / _STEP_MM)), 1)
        t = np.linspace(0.0, 1.0, n + 1)[1:, None]
        pts.append(points[i] + t * (points[i + 1] - points[i]))
        rs.append(radii[i] + t[:, 0] * (radii[i + 1] - radii[i]))
        dirs.append(away[i] + t * (away[i + 1] - away[i]))
    pts, rs, dirs = np.vstack(pts), np.concatenate(rs), np.vstack(dirs)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    # Each point and nine points inside each segment must clear the bone; a segment that does
    # not moves both its ends.
    t = np.linspace(0.0, 1.0, 11)[1:-1, None, None]
    for _ in range(60):  # at most 60 mm
        close = distance(pts) < rs + BONE_CLEARANCE_MM
        inner = (pts[:-1] + t * (pts[1:] - pts[:-1])).reshape(-1, 3)
        inner_r = (rs[:-1] + t[:, :, 0] * (rs[1:] - rs[:-1])).reshape(-1)
        bad = (distance(inner) < inner_r + BONE_CLEARANCE_MM).reshape(len(t), -1).any(axis=0)
        close[:-1] |= bad
        close[1:] |= bad
        if not close.any():
            break
        pts[close] += dirs[close]
    return pts, rs


def _shaft_point(m: dict, side: str, z: float, sk) -> tuple[np.ndarray, float]:
    """Centre of ``side``'s femoral shaft at height ``z`` (mm) and the shaft's outer radius."""
    lesser = np.asarray(m[f"lesser_trochanter_{side}"], float)
    axis = np.asarray(m[f"shaft_axis_{side}"], float)
    lm = sk.landmarks[side]
    centre = lesser + ((z - lesser[2]) / axis[2]) * axis
    # The lesser trochanter juts out posteromedially; the shaft's centre lies a radius lateral of it.
    sx = 1.0 if side == "right" else -1.0
    return centre + np.array([sx * lm.shaft_radius, 0.0, 0.0]), lm.shaft_radius


def vessel_nerve_paths(spec: AnatomySpec, side: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Centre lines (mm, patient frame) and radii (mm) of ``side``'s femoral artery, vein and
    nerve and sciatic nerve, placed from the bone model's landmarks.

    Femoral bundle [K]: under the inguinal ligament (ASIS to pubic tubercle) the artery passes
    the mid-inguinal point (midway between ASIS and pubic symphysis), the nerve lateral and the
    vein medial to it ("NAV"); above, the external iliac vessels come from the iliac bifurcation
    in front of the sacro-iliac joint and the nerve from the groove between psoas and iliacus;
    below, they run down the femoral triangle on iliopsoas and pectineus (DOMAIN.md 3: 15-30 mm
    in front of the head, a little medial to it) toward the adductor canal, anteromedial to the
    femoral shaft, the vein turning behind the artery. The nerve fans out 4-6 cm below the
    ligament. Sciatic nerve [K]: from the sacral plexus in front of the sacrum through the greater
    sciatic notch (above the ischial spine, below piriformis), behind the posterior column 30-50
    mm behind the head centre (DOMAIN.md 3), between the ischial tuberosity and the greater
    trochanter, then down the back of the thigh behind the femur.
    """
    sk = skeleton(spec)
    m = sk.bones.landmarks
    sx = 1.0 if side == "right" else -1.0

    def p(name: str) -> np.ndarray:
        return np.asarray(m[f"{name}_{side}"], float)

    head, asis = p("head_centre"), p("asis")
    symphysis, promontory = np.asarray(m["pubic_symphysis"], float), np.asarray(m["sacral_promontory"], float)
    distance = _bone_distance(sk)
    lateral, forward, back, up = (
        np.array([sx, 0, 0.0]),
        np.array([0, 1.0, 0]),
        np.array([0, -1.0, 0]),
        np.array([0, 0, 1.0]),
    )

    mid_inguinal = 0.5 * (asis + symphysis)
    ligament = mid_inguinal - 10.0 * forward - 6.0 * up  # just behind and below the ligament
    bifurcation = np.array([sx * 0.8 * abs(p("psis")[0]), promontory[1], promontory[2] - 10.0])
    iliac = ligament + 0.55 * (bifurcation - ligament)
    z_distal = head[2] - _DISTAL_BELOW_HEAD_MM
    shaft, shaft_r = _shaft_point(m, side, z_distal, sk)
    canal = shaft - lateral * (shaft_r + 14.0) + 8.0 * forward  # adductor canal, anteromedial
    spacing_av = ARTERY_RADIUS_MM + VEIN_RADIUS_MM + 2.0
    spacing_an = ARTERY_RADIUS_MM + FEMORAL_NERVE_RADIUS_MM + 2.0
    a = ARTERY_RADIUS_MM
    # The apex of the femoral triangle, 100 mm below the head: in front of the adductors,
    # anteromedial to the shaft.
    shaft_apex, _ = _shaft_point(m, side, head[2] - 100.0, sk)
    apex = shaft_apex - lateral * (shaft_r + 8.0) + forward * (shaft_r + 22.0)
    artery = _clear_path([iliac, ligament, apex, canal], [a] * 4, [forward] * 4, distance)
    vein = _clear_path(
        [
            iliac - lateral * spacing_av,
            ligament - lateral * spacing_av,
            apex - lateral * spacing_av * 0.7 + back * 5.0,
            canal - lateral * 3.0 + back * 10.0,
        ],
        [VEIN_RADIUS_MM] * 4,
        [forward] * 4,
        distance,
    )
    fan = ligament + 0.25 * (canal - ligament)  # about 60 mm below the ligament
    nerve = _clear_path(
        [
            ligament + lateral * 24.0 + back * 12.0 + up * 45.0,
            ligament + lateral * spacing_an,
            fan + lateral * spacing_an,
        ],
        [FEMORAL_NERVE_RADIUS_MM] * 3,
        [forward] * 3,
        distance,
    )

    spine, psis, tuberosity, trochanter = (
        p("ischial_spine"),
        p("psis"),
        p("ischial_tuberosity"),
        p("greater_trochanter"),
    )
    notch = spine + 0.3 * (psis - spine)
    plexus = notch - lateral * 8.0 + forward * 6.0 + up * 12.0  # leaving the pelvis
    column = np.array([0.5 * (tuberosity[0] + head[0]), head[1] - 45.0, head[2]])
    between = np.array(
        [tuberosity[0] + 0.4 * (trochanter[0] - tuberosity[0]), tuberosity[1] - 18.0, tuberosity[2]]
    )
    shaft, shaft_r = _shaft_point(m, side, z_distal, sk)
    thigh = shaft - lateral * 8.0 + back * (shaft_r + 22.0)
    sciatic = _clear_path([plexus, notch, column, between, thigh], SCIATIC_RADII_MM, [back] * 5, distance)
    return {"femoral_artery": artery, "femoral_vein": vein, "femoral_nerve": nerve, "sciatic_nerve": sciatic}


@functools.lru_cache(maxsize=4)
def _vessel_nerve_parts(spec: AnatomySpec) -> tuple[Part, ...]:
    """The vessels and nerves of both sides: built once per anatomy (pushing the paths clear of
    bone reads the bones' distance many times)."""
    parts = []
    for side in SIDES:
        for name, (points, radii) in vessel_nerve_paths(spec, side).items():
            vessel = name.endswith(("artery", "vein"))
            structure = Structure.VESSEL if vessel else Structure.NERVE
            tissue = Tissue.BLOOD if vessel else Tissue.NERVE
            parts.append(Part(f"{name}_{side}", tube(points, radii), structure, tissue))
    return tuple(parts)


# Pelvic organs between the bladder and the rectum, in units of the pelvic scale (mm at an
# inter-hip distance of 175 mm), from the bladder's centre (BLADDER_CENTRE). Sizes from Gray's
# Anatomy of the Human Body (20th ed., 1918; public domain): prostate 4 cm across, 2 cm
# anteroposterior, 3 cm high; uterus 7.5 cm long, 5 cm broad, 2.5 cm thick, here anteverted over
# the back of the bladder with its cervix toward the rectum; ovaries 4 x 2 x 0.8 cm on the side
# walls; the seminal vesicles (7.5 cm unrolled) coiled to 5 cm behind the bladder base, rising
# laterally. Not in DOMAIN.md, which gives no organ sizes. The prostate sits 2 cm behind the
# symphysis (the retropubic fat), so that the rectum behind it runs between the ischial
# tuberosities, where the anal canal lies.
BLADDER_CENTRE = np.array([0.0, 38.0, -2.0])
BLADDER_RADII = (36.0, 26.0, 28.0)
MALE_ORGANS = (  # name, centre offset, semi-axes, rotation (axis, degrees)
    ("prostate", (0.0, -38.0, -40.0), (20.0, 10.0, 15.0), ((1.0, 0.0, 0.0), 0.0)),
    ("seminal_vesicle_right", (20.0, -40.0, -18.0), (25.0, 7.0, 8.0), ((0.0, 1.0, 0.0), -30.0)),
    ("seminal_vesicle_left", (-20.0, -40.0, -18.0), (25.0, 7.0, 8.0), ((0.0, 1.0, 0.0), 30.0)),
)
FEMALE_ORGANS = (
    ("uterus", (0.0, -34.0, 30.0), (25.0, 12.5, 37.5), ((1.0, 0.0, 0.0), -50.0)),
    ("cervix", (0.0, -66.0, -6.0), (12.5, 12.5, 15.0), ((1.0, 0.0, 0.0), -20.0)),
    ("ovary_right", (45.0, -40.0, 22.0), (20.0, 10.0, 4.0), ((1.0, 0.0, 0.0), 0.0)),
    ("ovary_left", (-45.0, -40.0, 22.0), (20.0, 10.0, 4.0), ((1.0, 0.0, 0.0), 0.0)),
)


def pelvic_organs(lm: HipLandmarks, sex: str) -> list[Part]:
    """The soft-tissue organs of the lesser pelvis of ``sex`` ("male": prostate and seminal
    vesicles; "female": uterus, cervix and ovaries), placed from the bladder and sized by the
    pelvic scale; paint them before the bladder and rectum, which cover any overlap."""
    ps = lm.pelvic_scale
    organs = MALE_ORGANS if sex == "male" else FEMALE_ORGANS
    return [
        Part(
            name,
            Ellipsoid((BLADDER_CENTRE + offset) * ps, np.asarray(radii) * ps, rotation_matrix(*turn)),
            Structure.SOFT_TISSUE,
            Tissue.SOFT_TISSUE_OTHER,
        )
        for name, offset, radii, turn in organs
    ]


# The rectum (Gray's Anatomy of the Human Body, 20th ed., 1918, public domain; XI Splanchnology,
# 2g "The Rectum" and "The Anal Canal"): it begins at the third sacral vertebra and follows the
# curve of the sacrum and coccyx in front of them; its lower part lies behind the prostate in men
# (the vagina in women, which takes the same place here); at the apex of the prostate it turns
# back into the anal canal, 2.5-4 cm long, which runs downward and backward to the anus at the
# skin of the perineum (the body's surface ends the tube).
# Centre-line stations (pelvic-scale mm): S3, the sacral apex (the ampulla, widest), behind the
# middle of the prostate, at its apex (the anorectal junction), and the anal canal's lower end.
RECTUM_RADII_MM = np.array([14.0, 16.0, 14.0, 12.0, 10.0])
S3_ABOVE_APEX_MM = 40.0  # S3, below the promontory that juts forward higher up (the sacrum is ~10 cm high)
PRESACRAL_FAT_MM = 8.0  # [K] the retrorectal fat between rectum and sacrum, normally under 10-15 mm
ANAL_CANAL_MM = (-12.0, -25.0)  # [K] y, z from the anorectal junction: 2.8 cm, down and back
PROSTATE_PRESS_MM = 2.0  # the rectum's front wall runs this far into the prostate's back (painted over it)
RECTAL_GAS_FRACTION = 0.45  # the gas column's radius, a fraction of the rectum's


def rectum_path(sacrum: np.ndarray, lm: HipLandmarks) -> tuple[np.ndarray, np.ndarray]:
    """Centre line (5, 3) and radii (5,) in mm of the rectum and anal canal: in front of the
    sacrum whose mesh vertices are ``sacrum`` (N, 3) mm, then behind the prostate (see
    :data:`MALE_ORGANS`), touching it, down to the anus."""
    ps = lm.pelvic_scale
    radii = RECTUM_RADII_MM * ps
    midline_x = float(np.median(sacrum[:, 0]))
    midline = sacrum[np.abs(sacrum[:, 0] - midline_x) < 10.0 * ps]
    apex_z = float(sacrum[:, 2].min())

    def in_front_of_sacrum(z: float, radius: float) -> list[float]:
        near = midline[np.abs(midline[:, 2] - z) < 4.0 * ps]
        return [midline_x, float(near[:, 1].max()) + PRESACRAL_FAT_MM * ps + radius, z]

    _, offset, semi_axes, _ = MALE_ORGANS[0]  # the prostate
    back_y = (BLADDER_CENTRE[1] + offset[1] - semi_axes[1] + PROSTATE_PRESS_MM) * ps  # its back
    middle_z = (BLADDER_CENTRE[2] + offset[2]) * ps
    junction = [0.0, back_y - radii[3], middle_z - semi_axes[2] * ps]  # at the prostate's apex
    points = [
        in_front_of_sacrum(apex_z + S3_ABOVE_APEX_MM * ps, radii[0]),
        in_front_of_sacrum(apex_z, radii[1]),
        [0.0, back_y - radii[2], middle_z],
        junction,
        [0.0, junction[1] + ANAL_CANAL_MM[0] * ps, junction[2] + ANAL_CANAL_MM[1] * ps],
    ]
    return np.asarray(points), radii


def _viscera(
    lm: HipLandmarks, sacrum: np.ndarray, body: Shape, rng: np.random.Generator | None, sex: str
) -> list[Part]:
    """The pelvic organs of ``sex``, bladder, rectum with gas (in front of the ``sacrum``, its
    mesh vertices, and inside the ``body``), and loops of bowel in the false pelvis (placed by
    ``rng``; none without one: the parts that lesions are measured against never include them)."""
    ps = lm.pelvic_scale
    rectum, rectum_radii = rectum_path(sacrum, lm)
    soft, gas = Tissue.SOFT_TISSUE_OTHER, Tissue.AIR
    parts = [
        *pelvic_organs(lm, sex),
        Part(
            "bladder",
            Ellipsoid(BLADDER_CENTRE * ps, BLADDER_RADII),
            Structure.SOFT_TISSUE,
            soft,
            layers=(Layer(BLADDER_WALL_MM, Tissue.URINE),),
        ),
        Part("rectum", Intersection((tube(rectum, rectum_radii), body)), Structure.SOFT_TISSUE, soft),
        # gas in the ampulla, along the sacral part
        Part(
            "rectal_gas",
            tube(rectum[:2], RECTAL_GAS_FRACTION * rectum_radii[:2]),
            Structure.BACKGROUND,
            gas,
        ),
    ]
    if rng is None:
        return parts
    for i in range(7):
        start = np.array([rng.uniform(-70, 70), rng.uniform(-20, 60), rng.uniform(50, 140)]) * ps
        bend = rng.normal(0, 25, size=3)
        end = start + np.array(
            [rng.choice([-1, 1]) * rng.uniform(30, 60), rng.uniform(-20, 20), rng.uniform(-20, 20)]
        )
        radius = float(rng.uniform(11, 15))
        parts.append(
            Part(
                f"bowel_{i}",
                tube([start, (start + end) / 2 + bend, end], [radius] * 3),
                Structure.SOFT_TISSUE,
                soft,
            )
        )
        if rng.random() < 0.6:
            parts.append(
                Part(
                    f"bowel_gas_{i}",
                    Sphere((start + end) / 2 + bend * 0.5, radius * 0.55),
                    Structure.BACKGROUND,
                    gas,
                )
            )
    return parts


def build_anatomy(
    spec: AnatomySpec, rng: np.random.Generator | None = None, lesions: Sequence[Part] = ()
) -> list[Part]:
    """The labelled parts of the hip, in painting order (later parts cover earlier ones): body,
    muscles (one part, see :func:`muscle_shapes`), viscera, lesions, vessels and nerves,
    joint spaces, bones.

    ``rng`` only places loops of bowel (left out without it); the same spec and generator state
    give the same scene.
    ``lesions`` (heterotopic bone, confounders) are painted over muscle and fat but under
    vessels, nerves, the joint space and native bone, so they never overlap those.
    """
    sk = skeleton(spec)
    parts: list[Part] = []
    body = sampled_body_shape(spec)
    parts.append(
        Part(
            "body",
            body,
            Structure.SOFT_TISSUE,
            Tissue.SOFT_TISSUE_OTHER,
            layers=(Layer(SKIN_MM, Tissue.FAT),),
        )
    )
    parts.append(_muscle_part(muscle_field_for(spec)))
    # Bowel loops and the rectum lie where the iliopsoas and the buttock muscles reach: over them.
    parts.extend(_viscera(sk.landmarks["right"], sk.bones.pelvis[2].vertices, body, rng, spec.sex))
    parts.extend(lesions)
    parts.extend(_vessel_nerve_parts(spec))

    # Joint space: cartilage of head and acetabulum fills the socket between the head and the
    # acetabulum (not the open side of the head).
    for side in SIDES:
        lm = _own_frame(sk.landmarks[side], side)
        near_pelvis = Offset(sk.pelvis, spec.joint_space_mm + 2.0)
        cartilage = Intersection((socket_shape(spec, lm), near_pelvis))
        parts.append(
            Part(
                f"joint_space_{side}",
                cartilage - sk.femur(side),
                Structure.SOFT_TISSUE,
                Tissue.SOFT_TISSUE_OTHER,
            )
        )

    parts.append(
        Part(
            "pelvis",
            pelvis_shape(spec),
            Structure.PELVIS,
            Tissue.CORTICAL_BONE,
            layers=(Layer(pelvis_cortex_depth(spec), Tissue.TRABECULAR_BONE),),
        )
    )
    for side, structure in (("right", Structure.FEMUR_RIGHT), ("left", Structure.FEMUR_LEFT)):
        lm = _own_frame(sk.landmarks[side], side)
        femur = sk.femur(side)
        cortex = Layer(femur_cortex_depth(spec, lm), Tissue.TRABECULAR_BONE)
        parts.append(Part(f"femur_{side}", femur, structure, Tissue.CORTICAL_BONE, layers=(cortex,)))
        parts.append(
            Part(f"femur_{side}_canal", shaft_canal_shape(spec, femur, lm), structure, Tissue.MARROW_YELLOW)
        )
    return parts


def scene_bounds(spec: AnatomySpec) -> tuple[np.ndarray, np.ndarray]:
    """A box (mm) that holds the body from above the iliac crests to below the lesser trochanters.

    Measured on the skin surface itself (sampled every 2 mm, plus that step), which is much
    tighter than the bounds of the shapes it is built from.
    """
    lo, hi = _scene_bounds(spec)
    return lo.copy(), hi.copy()


@functools.lru_cache(maxsize=64)
def _scene_bounds(spec: AnatomySpec) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = body_extent(spec)
    return np.array([lo[0], lo[1], SCENE_Z_MM[0]]), np.array([hi[0], hi[1], SCENE_Z_MM[1]])


def body_extent(spec: AnatomySpec, step_mm: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """In-plane box (mm, x y) of the skin between the scene's z limits, sampled on a lattice."""
    lower, upper, _ = _skin_extent(spec, step_mm)
    return lower.copy(), upper.copy()


def body_radius(spec: AnatomySpec, step_mm: float = 2.0) -> float:
    """The skin's largest distance (mm) from the z axis between the scene's z limits, sampled as
    :func:`body_extent` (plus the step): what a scanner's field of view must hold, the rotation
    axis being the z axis."""
    return _skin_extent(spec, step_mm)[2]


@functools.lru_cache(maxsize=64)
def _skin_extent(spec: AnatomySpec, step_mm: float) -> tuple[np.ndarray, np.ndarray, float]:
    """``(lower, upper, radius)``: :func:`body_extent`'s box and :func:`body_radius`."""
    body = sampled_body_shape(spec)
    lo, hi = body.bounds()
    xs = np.arange(lo[0], hi[0] + step_mm, step_mm)
    ys = np.arange(lo[1], hi[1] + step_mm, step_mm)
    zs = np.arange(SCENE_Z_MM[0], SCENE_Z_MM[1] + step_mm, 4 * step_mm)
    inside_x = np.zeros(xs.size, bool)
    inside_y = np.zeros(ys.size, bool)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    reach = np.hypot(gx, gy)
    radius = -np.inf
    for z in zs:
        pts = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, z)], axis=1)
        inside = (body.sdf(pts) < 0).reshape(gx.shape)
        inside_x |= inside.any(axis=1)
        inside_y |= inside.any(axis=0)
        if inside.any():
            radius = max(radius, float(reach[inside].max()))
    if not inside_x.any():
        raise ValueError("the body surface holds no sampled point")
    lower = np.array([xs[inside_x].min(), ys[inside_y].min()]) - step_mm
    upper = np.array([xs[inside_x].max(), ys[inside_y].max()]) + step_mm
    return lower, upper, radius + step_mm
