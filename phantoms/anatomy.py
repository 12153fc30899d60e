"""The adult hip as an analytic scene: pelvis, femurs, muscles, fat, skin, vessels, nerves, viscera.

Builds labelled shapes from an AnatomySpec; it draws no random numbers but the few it is given
and it never rasterizes. Positions follow DOMAIN.md section 3 (patient frame RAS+, mm).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.rasterize import Layer, Part
from nmosim.phantoms.shapes import (
    Capsule,
    Difference,
    Ellipsoid,
    Intersection,
    MirrorX,
    Offset,
    Plate,
    Shape,
    Sphere,
    Union,
    rotation_matrix,
    tube,
)
from nmosim.phantoms.spec import AnatomySpec

SKIN_MM = 2.0  # DOMAIN.md 3: dermis 1.5-3 mm
PELVIS_CORTEX_MM = 1.5  # DOMAIN.md 4.1: thin cortices (acetabulum) read 600-1200 HU
HEAD_CORTEX_MM = 1.0  # DOMAIN.md 3: subchondral cortex 0.5-1.5 mm
BONE_CLEARANCE_MM = 4.0  # pelvis is kept this far from the femur: bones never touch natively


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, float) / np.linalg.norm(v)


@dataclass(frozen=True)
class HipLandmarks:
    """Key points of the right hip (mm, patient frame); the left hip is their mirror image.

    ``neck_axis`` points from the neck base toward the head centre; ``acetabular_axis`` is
    the outward normal of the acetabular opening.
    """

    head_center: np.ndarray
    head_radius: float
    neck_axis: np.ndarray
    neck_base: np.ndarray
    shaft_top: np.ndarray
    shaft_axis: np.ndarray
    shaft_radius: float
    greater_trochanter: np.ndarray
    lesser_trochanter: np.ndarray
    acetabular_axis: np.ndarray
    aiis: np.ndarray
    asis: np.ndarray
    ischial_tuberosity: np.ndarray
    pelvic_scale: float

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}


def hip_landmarks(spec: AnatomySpec) -> HipLandmarks:
    """Landmarks of the right hip computed from ``spec`` (DOMAIN.md section 3)."""
    h = spec.inter_hip_distance_mm / 2.0
    ps = spec.inter_hip_distance_mm / 175.0  # pelvic points below are drawn for a 175 mm hip
    head = np.array([h, 0.0, 0.0])
    r = spec.head_radius_mm
    a = np.deg2rad(spec.neck_shaft_angle_deg)
    v = np.deg2rad(spec.femoral_anteversion_deg)
    # Neck axis (base -> head): the neck-shaft angle opens medially between this axis and the
    # distal shaft; anteversion turns the head forward (+y). Right side, so medial is -x.
    neck_axis = np.array([-np.sin(a) * np.cos(v), np.sin(a) * np.sin(v), -np.cos(a)])
    neck_base = head - (r + spec.neck_length_mm - 4.0) * neck_axis  # neck meets the shaft axis
    rs = spec.shaft_outer_diameter_mm / 2.0
    inc = np.deg2rad(spec.acetabular_inclination_deg)
    ant = np.deg2rad(spec.acetabular_anteversion_deg)
    # Radiographic definitions (Murray): inclination from the body axis in the coronal plane,
    # anteversion out of the coronal plane.
    acetabular_axis = np.array([np.sin(inc) * np.cos(ant), np.sin(ant), -np.cos(inc) * np.cos(ant)])
    return HipLandmarks(
        head_center=head,
        head_radius=r,
        neck_axis=neck_axis,
        neck_base=neck_base,
        shaft_top=neck_base + np.array([0.0, 0.0, 8.0]),
        shaft_axis=np.array([0.0, 0.0, -1.0]),
        shaft_radius=rs,
        # DOMAIN.md 3: tip 0-10 mm above the head centre, 55-70 mm lateral, posterolateral.
        greater_trochanter=np.array([neck_base[0] + 0.55 * rs + 5.0, neck_base[1] - 7.0, -10.0]),
        # DOMAIN.md 3: 50-65 mm distal to the head centre, posteromedial.
        lesser_trochanter=np.array([neck_base[0] - 0.8 * rs, neck_base[1] - 0.55 * rs, -57.0]),
        acetabular_axis=acetabular_axis,
        # DOMAIN.md 3: AIIS 30-40 mm superior-anterior-lateral of the head; ASIS per Bell 1989.
        aiis=head + np.array([18.0, 34.0, 36.0]) * ps,
        asis=head + np.array([34.0, 53.0, 72.0]) * ps,
        ischial_tuberosity=np.array([62.0, -30.0, -66.0]) * ps,
        pelvic_scale=ps,
    )


# ----------------------------------------------------------------------------------------------
# Bones
# ----------------------------------------------------------------------------------------------


def femur_shape(spec: AnatomySpec, lm: HipLandmarks) -> Shape:
    """Outer surface of the right femur: head, neck, trochanters and shaft."""
    head, proximal = _femur_pieces(spec, lm)
    return Union((head, proximal), smooth_mm=5.0)


def _femur_pieces(spec: AnatomySpec, lm: HipLandmarks) -> tuple[Shape, Shape]:
    """The femoral head, and the rest of the femur (neck, trochanters, shaft)."""
    r, rs = lm.head_radius, lm.shaft_radius
    d = 2 * r
    head = Sphere(lm.head_center, r)
    neck = Capsule(lm.head_center - 0.35 * r * lm.neck_axis, lm.neck_base, 0.30 * d, 0.40 * d)
    lt_z = lm.lesser_trochanter[2]
    axis_xy = lm.neck_base[:2]
    shaft = tube(
        [lm.shaft_top, [*axis_xy, lt_z - 22.0], [*axis_xy, -260.0]],
        [0.42 * d, rs, rs],
    )
    greater = Ellipsoid(lm.greater_trochanter, (12.0, 17.0, 22.0), rotation_matrix((0, 1, 0), -12.0))
    lesser = Capsule([*axis_xy, lt_z + 6.0], lm.lesser_trochanter + np.array([0.0, 0.0, -3.0]), 7.0, 5.0)
    intertrochanteric = Capsule(lm.greater_trochanter, lm.lesser_trochanter, 8.0, 7.0)
    proximal = Union((neck, shaft, greater, lesser, intertrochanteric), smooth_mm=10.0)
    return head, proximal


def femur_cortex_depth(spec: AnatomySpec, lm: HipLandmarks):
    """Cortical thickness (mm) as a function of position: thin at the head, full in the shaft."""
    lt_z = lm.lesser_trochanter[2]
    t = spec.shaft_cortical_thickness_mm

    def depth(points: np.ndarray) -> np.ndarray:
        # DOMAIN.md 3: subchondral 0.5-1.5 mm, neck 1.6-3.9 mm, shaft 5-8 mm.
        return np.interp(points[:, 2], [lt_z - 30.0, lt_z + 5.0], [t, HEAD_CORTEX_MM + 0.5])

    return depth


def shaft_canal_shape(spec: AnatomySpec, lm: HipLandmarks) -> Shape:
    """Marrow canal of the femoral diaphysis (yellow marrow)."""
    lt_z = lm.lesser_trochanter[2]
    axis_xy = lm.neck_base[:2]
    inner = lm.shaft_radius - spec.shaft_cortical_thickness_mm
    return Capsule([*axis_xy, lt_z - 12.0], [*axis_xy, -300.0], inner)


def hip_bone_shape(spec: AnatomySpec, lm: HipLandmarks) -> Shape:
    """Outer surface of the right hip bone (ilium, acetabulum, ischium, pubis), without socket."""
    ps = lm.pelvic_scale
    r = lm.head_radius
    hc = lm.head_center

    def p(x: float, y: float, z: float) -> np.ndarray:
        return np.array([x, y, z]) * ps

    acetabular_mass = Ellipsoid(hc + np.array([-7.0, -4.0, 8.0]), (r + 11, r + 12, r + 15))
    # Ilium wing: a strip of plates between the crest and the line just above the acetabulum.
    crest = [lm.asis, p(132, 30, 97), p(140, 0, 108), p(118, -42, 114), p(58, -88, 92)]
    base = [lm.aiis, p(82, 20, 30), p(80, -14, 30), p(70, -44, 40), p(48, -78, 50)]
    plates = []
    for i in range(len(crest) - 1):
        plates.append(Plate(crest[i], crest[i + 1], base[i], 6.5))
        plates.append(Plate(crest[i + 1], base[i + 1], base[i], 6.5))
    crest_rim = tube(crest, [5.5, 7.0, 6.5, 7.0, 8.0])
    anterior_border = tube([lm.asis, lm.aiis, p(90, 26, 18)], [5.0, 7.0, 10.0])
    pillar = tube([p(80, -6, 22), p(128, 2, 100)], [11.0, 6.0])  # iliac pillar to tubercle
    posterior_column = tube([p(72, -40, 38), p(70, -34, 0), lm.ischial_tuberosity], [11, 12, 10])
    tuberosity = Ellipsoid(lm.ischial_tuberosity + p(0, 0, -2), (13 * ps, 17 * ps, 15 * ps))
    ischial_ramus = tube([lm.ischial_tuberosity, p(40, 6, -72), p(14, 44, -52)], [10, 7, 8])
    superior_ramus = tube([p(74, 16, -4), p(40, 44, -10), p(12, 58, -24)], [12.0, 9.0, 10.0])
    pubic_body = Ellipsoid(p(14, 56, -34), (10 * ps, 11 * ps, 20 * ps))
    spine = Capsule(p(62, -46, -12), p(50, -58, -14), 6.0, 3.0)  # ischial spine
    return Union(
        (
            acetabular_mass,
            *plates,
            crest_rim,
            anterior_border,
            pillar,
            posterior_column,
            tuberosity,
            ischial_ramus,
            superior_ramus,
            pubic_body,
            spine,
        ),
        smooth_mm=8.0,
    )


def sacrum_shape(lm: HipLandmarks) -> Shape:
    """Sacrum and coccyx on the midline, joined to both ilia at the sacro-iliac joints."""
    ps = lm.pelvic_scale

    def p(x: float, y: float, z: float) -> np.ndarray:
        return np.array([x, y, z]) * ps

    tilt = rotation_matrix((1, 0, 0), -35.0)  # sacral slope: the base faces antero-superiorly
    body = Ellipsoid(p(0, -70, 80), (46 * ps, 20 * ps, 44 * ps), tilt)
    base = Ellipsoid(p(0, -56, 112), (24 * ps, 18 * ps, 12 * ps), tilt)
    lower = Ellipsoid(p(0, -86, 32), (26 * ps, 14 * ps, 24 * ps), rotation_matrix((1, 0, 0), -20))
    coccyx = tube([p(0, -88, 10), p(0, -78, -12)], [9.0, 5.0])
    return Union((body, base, lower, coccyx), smooth_mm=8.0)


def socket_shape(spec: AnatomySpec, lm: HipLandmarks) -> Shape:
    """Space carved out of the hip bone for the head: joint space plus the acetabular opening."""
    outer = lm.head_radius + spec.joint_space_mm
    opening = Capsule(lm.head_center, lm.head_center + 90.0 * lm.acetabular_axis, 0.86 * outer)
    return Union((Sphere(lm.head_center, outer), opening))


# ----------------------------------------------------------------------------------------------
# Soft tissue
# ----------------------------------------------------------------------------------------------


BODY_BLEND_MM = 40.0  # blend radius where trunk, buttocks and thighs meet


def _lean_pieces(spec: AnatomySpec) -> tuple[Shape, ...]:
    s = spec.body_scale * (0.85 + 0.15 * min(spec.muscle_bulk, 1.0))
    trunk = Ellipsoid((0, -8, 170), (130 * s, 92 * s, 330))
    butt = [Ellipsoid((sx * 62 * s, -62 * s, -28), (64 * s, 50 * s, 80)) for sx in (1, -1)]
    thighs = [Capsule((sx * 96 * s, 4, -30), (sx * 90 * s, 8, -280), 72 * s, 58 * s) for sx in (1, -1)]
    return (trunk, *butt, *thighs)


def lean_shape(spec: AnatomySpec) -> Shape:
    """Surface of the lean body under the subcutaneous fat: trunk, buttocks, proximal thighs.

    Scales with ``body_scale`` and shrinks a little as muscle wastes (DOMAIN.md 2.8).
    """
    return Union(_lean_pieces(spec), smooth_mm=BODY_BLEND_MM)


# Subcutaneous fat is thicker over the buttocks and thinner over the thighs (DOMAIN.md 3: thigh
# 8-25 mm, trochanter 15-50, gluteal 20-60): relative changes spread over these distances (mm).
_POSTERIOR_RAMP_MM = 220.0
_THIGH_RAMP_MM = 200.0


def fat_depth(spec: AnatomySpec):
    """Skin plus subcutaneous fat (mm) over the lean body, as a function of position."""
    f = spec.subcutaneous_fat_mm

    def depth(points: np.ndarray) -> np.ndarray:
        posterior = np.clip(-points[:, 1] / _POSTERIOR_RAMP_MM, 0.0, 1.0)
        thigh = np.clip(-(points[:, 2] + 60.0) / _THIGH_RAMP_MM, 0.0, 1.0)
        return SKIN_MM + f * (1.0 + 1.4 * posterior - 0.6 * thigh)

    return depth


def _fat_depth_slope(spec: AnatomySpec) -> float:
    """Largest change of :func:`fat_depth` per mm of position (dimensionless)."""
    f = spec.subcutaneous_fat_mm
    return f * (1.4 / _POSTERIOR_RAMP_MM + 0.6 / _THIGH_RAMP_MM)


@dataclass(frozen=True, eq=False)
class _Rescaled(Shape):
    """``shape``'s distance divided by ``factor`` >= 1: keeps it a true lower bound of the distance
    when ``shape`` is an offset by a depth that varies with position."""

    shape: Shape
    factor: float

    def sdf(self, points: np.ndarray) -> np.ndarray:
        return self.shape.sdf(points) / self.factor

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.shape.bounds()


def body_shape(spec: AnatomySpec) -> Shape:
    """Skin surface: the lean body grown by skin and subcutaneous fat.

    Each piece is grown before the blend, so distances stay exact however thick the fat.
    """
    depth, most = fat_depth(spec), SKIN_MM + 2.4 * spec.subcutaneous_fat_mm
    factor = 1.0 + _fat_depth_slope(spec)
    grown = tuple(_Rescaled(Offset(piece, depth, most), factor) for piece in _lean_pieces(spec))
    return Union(grown, smooth_mm=BODY_BLEND_MM)


@dataclass(frozen=True)
class MuscleDef:
    name: str
    points: tuple[tuple[float, float, float], ...]
    radii: tuple[float, ...]


def _muscles_right(lm: HipLandmarks) -> list[MuscleDef]:
    """Muscle groups of the right hip as tapered tubes (DOMAIN.md 3, 'Muscle groups')."""
    hx = lm.head_center[0]
    gx, gy, gz = lm.greater_trochanter
    lx, ly, lz = lm.lesser_trochanter
    sx, sy = lm.neck_base[:2]
    ax, ay, az = lm.aiis
    px, py, pz = lm.asis
    tx, ty, tz = lm.ischial_tuberosity
    return [
        MuscleDef(
            "gluteus_maximus",
            ((52, -104, 78), (hx - 4, -92, 10), (gx + 12, -50, -70), (sx + 28, -22, -150)),
            (30, 38, 30, 14),
        ),
        MuscleDef(
            "gluteus_maximus_lower",
            ((32, -100, 20), (hx - 20, -80, -40), (gx + 10, -40, -95)),
            (24, 30, 18),
        ),
        MuscleDef(
            "gluteus_medius",
            ((126, -26, 100), (hx + 56, -18, 50), (gx + 6, gy - 4, gz + 22)),
            (22, 26, 14),
        ),
        MuscleDef(
            "gluteus_minimus",
            ((112, -10, 72), (hx + 30, -2, 40), (gx - 2, gy + 10, gz + 14)),
            (12, 16, 9),
        ),
        MuscleDef("iliacus", ((118, 6, 92), (hx + 14, 24, 50), (hx - 6, 34, 14)), (18, 24, 17)),
        MuscleDef(
            "psoas",
            ((32, -26, 150), (52, 2, 70), (hx - 18, 34, 6), (lx + 2, ly + 10, lz + 6)),
            (20, 19, 15, 8),
        ),
        MuscleDef(
            "rectus_femoris",
            ((ax, ay, az - 2), (hx + 12, 52, -30), (sx + 6, 66, -150), (sx + 4, 68, -260)),
            (7, 14, 19, 16),
        ),
        MuscleDef(
            "sartorius",
            ((px, py, pz - 4), (hx + 18, 66, -10), (hx - 20, 58, -120), (hx - 52, 26, -240)),
            (7, 11, 12, 12),
        ),
        MuscleDef(
            "tensor_fasciae_latae",
            ((px + 6, py - 12, pz - 8), (hx + 60, 28, -10), (gx + 20, 16, -80)),
            (10, 16, 10),
        ),
        MuscleDef(
            "pectineus",
            ((34, 50, -12), (hx - 30, 32, -42), (lx + 4, ly + 14, lz - 10)),
            (11, 14, 9),
        ),
        MuscleDef(
            "adductor_longus",
            ((20, 56, -42), (hx - 52, 40, -100), (sx - 20, 24, -220)),
            (11, 18, 14),
        ),
        MuscleDef(
            "adductor_brevis",
            ((24, 36, -58), (hx - 48, 14, -100), (sx - 12, 8, -170)),
            (10, 17, 12),
        ),
        MuscleDef(
            "adductor_magnus",
            ((tx - 16, ty + 4, tz - 10), (hx - 48, -16, -120), (sx - 18, -10, -260)),
            (18, 32, 28),
        ),
        MuscleDef(
            "hamstrings",
            ((tx, ty - 6, tz - 8), (hx - 22, -44, -140), (sx - 8, -48, -260)),
            (13, 24, 24),
        ),
        MuscleDef(
            "piriformis",
            ((30, -72, 70), (hx - 10, -46, 28), (gx - 6, gy - 6, gz + 16)),
            (12, 12, 7),
        ),
        MuscleDef(
            "obturator_internus_gemelli",
            ((hx - 24, -42, -6), (hx + 8, -34, -10), (gx - 8, gy - 8, gz)),
            (8, 9, 7),
        ),
        MuscleDef("quadratus_femoris", ((tx - 2, ty - 4, tz + 16), (gx - 14, gy - 16, gz - 34)), (11, 11)),
        MuscleDef(
            "obturator_externus",
            ((hx - 52, 26, -36), (hx - 24, 4, -40), (gx - 20, gy - 12, gz - 10)),
            (12, 11, 6),
        ),
        MuscleDef(
            "obturator_internus_pelvic",
            ((hx - 42, 14, -8), (hx - 44, -24, -24), (hx - 34, -38, -40)),
            (9, 11, 8),
        ),
        MuscleDef(
            "vastus_lateralis",
            ((gx + 2, gy + 6, gz - 40), (sx + 34, 2, -120), (sx + 30, 8, -260)),
            (14, 26, 26),
        ),
        MuscleDef(
            "vastus_intermedius",
            ((sx + 8, sy + 20, lz + 10), (sx + 6, 24, -140), (sx + 4, 24, -260)),
            (12, 19, 19),
        ),
        MuscleDef(
            "vastus_medialis",
            ((lx + 2, ly + 26, lz - 10), (sx - 24, 26, -150), (sx - 26, 26, -260)),
            (9, 16, 20),
        ),
        MuscleDef("erector_spinae", ((30, -118, 220), (30, -112, 120), (22, -106, 70)), (30, 28, 14)),
        MuscleDef("rectus_abdominis", ((38, 104, 240), (36, 100, 80), (18, 84, -10)), (10, 10, 7)),
    ]


# The tube radii below are drawn for slender bellies; this factor fills the space between the
# bones and the subcutaneous fat as a healthy adult's muscles do, leaving thin fat planes.
MUSCLE_RADIUS_SCALE = 1.4


def _muscle_shape(m: MuscleDef, bulk: float, inner: Shape) -> Shape:
    radii = [MUSCLE_RADIUS_SCALE * r * np.sqrt(bulk) for r in m.radii]  # bulk scales the area
    return Intersection((tube(m.points, radii, smooth_mm=6.0), inner))


def _vessels_nerves_right(lm: HipLandmarks) -> list[tuple[str, Shape, Structure]]:
    """Femoral artery, vein and nerve (lateral to medial: nerve, artery, vein) and sciatic nerve."""
    hx = lm.head_center[0]
    # DOMAIN.md 3: the femoral bundle lies 15-30 mm anterior, slightly medial to the head centre.
    artery_path = [
        (52, 8, 110),
        (hx - 30, 24, 40),
        (hx - 16, 30, 0),
        (hx - 22, 34, -60),
        (hx - 44, 24, -240),
    ]
    shift = np.array([-12.0, 0.0, 0.0])
    vein_path = [tuple(np.add(p, shift)) for p in artery_path]
    nerve_path = [tuple(np.add(p, -shift * 0.9)) for p in artery_path[1:]]
    # Sciatic: out of the greater sciatic notch, 30-50 mm behind the head, flat, 10-20 mm wide.
    sciatic = [(56, -70, 48), (hx - 12, -50, 6), (hx - 16, -48, -50), (hx - 22, -44, -240)]
    return [
        ("femoral_artery", tube(artery_path, [4.0] * 5), Structure.VESSEL),
        ("femoral_vein", tube(vein_path, [5.5] * 5), Structure.VESSEL),
        ("femoral_nerve", tube(nerve_path, [3.0] * 4), Structure.NERVE),
        ("sciatic_nerve", tube(sciatic, [5.0, 6.5, 6.5, 6.0]), Structure.NERVE),
    ]


def _viscera(lm: HipLandmarks, rng: np.random.Generator | None) -> list[Part]:
    """Bladder, rectum with gas, and loops of bowel in the false pelvis (placed by ``rng``; none
    without one: the parts that lesions are measured against never include them)."""
    ps = lm.pelvic_scale
    soft, gas = Tissue.SOFT_TISSUE_OTHER, Tissue.AIR
    parts = [
        Part(
            "bladder",
            Ellipsoid(np.array([0, 38, -2]) * ps, (36, 26, 28)),
            Structure.SOFT_TISSUE,
            soft,
        ),
        Part(
            "rectum",
            tube([(0, -60, 70), (0, -70, 10), (0, -52, -46)], [14, 16, 13]),
            Structure.SOFT_TISSUE,
            soft,
        ),
        Part("rectal_gas", tube([(0, -60, 62), (0, -68, 14)], [6, 7]), Structure.BACKGROUND, gas),
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


def _sides(shape: Shape) -> tuple[Shape, Shape]:
    """A right-side shape and its mirror image on the left."""
    return shape, MirrorX(shape)


def build_anatomy(
    spec: AnatomySpec, rng: np.random.Generator | None = None, lesions: Sequence[Part] = ()
) -> list[Part]:
    """The labelled parts of the hip, in painting order (later parts cover earlier ones).

    ``rng`` only places loops of bowel (left out without it); the same spec and generator state
    give the same scene.
    ``lesions`` (heterotopic bone, confounders) are painted over muscle and fat but under
    vessels, nerves, the joint space and native bone, so they never overlap those.
    """
    lm = hip_landmarks(spec)
    parts: list[Part] = []
    body = body_shape(spec)
    parts.append(
        Part(
            "body",
            body,
            Structure.SOFT_TISSUE,
            Tissue.SOFT_TISSUE_OTHER,
            layers=(Layer(SKIN_MM, Tissue.FAT),),
        )
    )
    inner = lean_shape(spec)
    parts.extend(_viscera(lm, rng))

    for muscle in _muscles_right(lm):
        right, left = _sides(_muscle_shape(muscle, spec.muscle_bulk, inner))
        parts.append(Part(f"{muscle.name}_right", right, Structure.MUSCLE, Tissue.MUSCLE))
        parts.append(Part(f"{muscle.name}_left", left, Structure.MUSCLE, Tissue.MUSCLE))
    parts.extend(lesions)
    for name, shape, structure in _vessels_nerves_right(lm):
        right, left = _sides(shape)
        parts.append(Part(f"{name}_right", right, structure, Tissue.SOFT_TISSUE_OTHER))
        parts.append(Part(f"{name}_left", left, structure, Tissue.SOFT_TISSUE_OTHER))

    femur = femur_shape(spec, lm)
    socket = socket_shape(spec, lm)
    # Joint space: cartilage of head and acetabulum fills the socket around the head.
    cartilage = Intersection((socket, Sphere(lm.head_center, lm.head_radius + spec.joint_space_mm)))
    for side, (cart, fem) in zip(
        ("right", "left"), zip(_sides(cartilage), _sides(femur), strict=True), strict=True
    ):
        parts.append(Part(f"joint_space_{side}", cart - fem, Structure.SOFT_TISSUE, Tissue.SOFT_TISSUE_OTHER))

    # Pelvis: both hip bones and the sacrum, socket carved, kept clear of the femurs.
    hip_bone = Difference(hip_bone_shape(spec, lm), socket)
    # Around the head the socket sets the joint space (which narrows in ankylosis); elsewhere
    # the hip bone keeps a fixed clearance from the femur.
    clearance = Offset(_femur_pieces(spec, lm)[1], BONE_CLEARANCE_MM)
    hip_bone = Difference(hip_bone, clearance)
    right_hip, left_hip = _sides(hip_bone)
    pelvis = Union((right_hip, left_hip, sacrum_shape(lm)))
    parts.append(
        Part(
            "pelvis",
            pelvis,
            Structure.PELVIS,
            Tissue.CORTICAL_BONE,
            layers=(Layer(PELVIS_CORTEX_MM, Tissue.TRABECULAR_BONE),),
        )
    )

    cortex = Layer(femur_cortex_depth(spec, lm), Tissue.TRABECULAR_BONE)
    canal = shaft_canal_shape(spec, lm)
    for side, structure in (("right", Structure.FEMUR_RIGHT), ("left", Structure.FEMUR_LEFT)):
        mirror = (lambda s: s) if side == "right" else MirrorX
        # The cortex depth depends on height only, so it reads the same on both sides.
        parts.append(Part(f"femur_{side}", mirror(femur), structure, Tissue.CORTICAL_BONE, layers=(cortex,)))
        parts.append(Part(f"femur_{side}_canal", mirror(canal), structure, Tissue.MARROW_YELLOW))
    return parts


SCENE_Z_MM = (-140.0, 135.0)  # from below the lesser trochanters to above the iliac crests


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
    body = body_shape(spec)
    lo, hi = body.bounds()
    xs = np.arange(lo[0], hi[0] + step_mm, step_mm)
    ys = np.arange(lo[1], hi[1] + step_mm, step_mm)
    zs = np.arange(SCENE_Z_MM[0], SCENE_Z_MM[1] + step_mm, 4 * step_mm)
    inside_x = np.zeros(xs.size, bool)
    inside_y = np.zeros(ys.size, bool)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    for z in zs:
        pts = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, z)], axis=1)
        inside = (body.sdf(pts) < 0).reshape(gx.shape)
        inside_x |= inside.any(axis=1)
        inside_y |= inside.any(axis=0)
    if not inside_x.any():
        raise ValueError("the body surface holds no sampled point")
    lower = np.array([xs[inside_x].min(), ys[inside_y].min()]) - step_mm
    upper = np.array([xs[inside_x].max(), ys[inside_y].max()]) + step_mm
    return lower, upper
