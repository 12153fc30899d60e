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
from nmosim.phantoms.muscles import MuscleField, MuscleUnion, Territory, muscle_field
from nmosim.phantoms.rasterize import Layer, Part
from nmosim.phantoms.shapes import (
    Capsule,
    Difference,
    Ellipsoid,
    HalfSpace,
    Intersection,
    MirrorX,
    Offset,
    Shape,
    Sphere,
    Union,
    tube,
)
from nmosim.phantoms.skeleton import SCENE_Z_MM, SIDES, HipLandmarks, hip_landmarks, skeleton
from nmosim.phantoms.spec import AnatomySpec

__all__ = ["SCENE_Z_MM", "HipLandmarks", "hip_landmarks"]

BLADDER_WALL_MM = 3.0  # distended bladder wall 2-3 mm (clinical ultrasound/CT norm)
SKIN_MM = 2.0  # DOMAIN.md 3: dermis 1.5-3 mm
PELVIS_CORTEX_MM = 1.5  # DOMAIN.md 4.1: thin cortices (acetabulum) read 600-1200 HU
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


def femur_cortex_depth(spec: AnatomySpec, lm: HipLandmarks):
    """Cortical thickness (mm) as a function of position in ``lm``'s frame: thin over the head and
    neck, full in the shaft (DOMAIN.md 3: subchondral 0.5-1.5 mm, neck 1.6-3.9 mm, shaft 5-8 mm)."""
    lesser, axis = lm.lesser_trochanter, lm.shaft_axis
    t = spec.shaft_cortical_thickness_mm

    def depth(points: np.ndarray) -> np.ndarray:
        below = (points - lesser) @ axis  # mm distal of the lesser trochanter
        return np.interp(below, [-5.0, 30.0], [HEAD_CORTEX_MM + 0.5, t])

    return depth


def shaft_canal_shape(spec: AnatomySpec, femur: Shape, lm: HipLandmarks) -> Shape:
    """Marrow canal of the femoral diaphysis (yellow marrow): the shaft inside its cortex, from
    12 mm below the lesser trochanter down."""
    top = lm.lesser_trochanter + 12.0 * lm.shaft_axis
    return Intersection((Offset(femur, -spec.shaft_cortical_thickness_mm), HalfSpace(top, -lm.shaft_axis)))


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
            layers=(Layer(BLADDER_WALL_MM, Tissue.URINE),),
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
    parts.append(_muscle_part(muscle_field_for(spec)))
    # Bowel loops and the rectum lie where the iliopsoas and the buttock muscles reach: over them.
    parts.extend(_viscera(sk.landmarks["right"], rng))
    parts.extend(lesions)
    for side in SIDES:
        for name, shape, structure in _vessels_nerves_right(sk.landmarks[side]):
            tissue = Tissue.BLOOD if structure == Structure.VESSEL else Tissue.NERVE
            parts.append(Part(f"{name}_{side}", _to_right_frame(shape, side), structure, tissue))

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
            layers=(Layer(PELVIS_CORTEX_MM, Tissue.TRABECULAR_BONE),),
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
