"""The body outline fitted to the bones: the lean body (under the subcutaneous fat) and the skin.

The lean body is a smooth union of a trunk, two buttocks and two thighs, each an ellipsoid or a
tapered capsule sized to hold its bones (LLP26 meshes and landmarks) with a margin of muscle
(DOMAIN.md 3: gluteus medius 20-40 mm over the wing, gluteus maximus 30-60 mm); the skin lies
a position-dependent depth of fat and dermis outside it, thicker over the buttocks and the lateral
hips as the AnatomySpec sets. Patient frame RAS+, mm. Builds shapes only; draws nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from nmosim.phantoms.shapes import EXACT_WITHIN_MM, Capsule, Ellipsoid, Offset, Shape, Union
from nmosim.phantoms.skeleton import SIDES, Skeleton, shaft_ring, skeleton
from nmosim.phantoms.spec import AnatomySpec

SKIN_MM = 2.0  # DOMAIN.md 3: dermis 1.5-3 mm
BODY_BLEND_MM = 20.0  # blend radius where trunk, buttocks and thighs meet

# Lean tissue (muscle, fascia) outside the bone, mm at body_scale 1 and healthy bulk.
# DOMAIN.md 3: gluteus medius 20-40 mm over the iliac wing, but the crest itself lies under the
# skin and fat with little muscle; gluteus maximus 30-60 mm behind the pelvis; over the lateral
# greater trochanter only the iliotibial band, the trochanteric bursa and the thin insertions of
# gluteus maximus and TFL (about 10-15 mm [K]); quadriceps, hamstrings and adductors 40-50 mm
# around the femoral shaft in the proximal thigh [K].
CREST_MARGIN_MM = 10.0
ANTERIOR_MARGIN_MM = 12.0  # abdominal wall in front of the ASIS
POSTERIOR_MARGIN_MM = 12.0  # behind the sacrum and PSIS (DOMAIN.md 3: 19.6 mm of soft tissue over PSIS)
GLUTEAL_MARGIN_MM = 50.0  # gluteus maximus behind the ischial tuberosity and posterior hip
TROCHANTER_MARGIN_MM = 10.0
THIGH_MUSCLE_MM = 48.0
THIGH_MEDIAL_SHIFT_MM = 18.0  # the adductors put the thigh's centre medial of the femur
THIGH_BOTTOM_Z_MM = -320.0  # the thighs run on below the scene
TRUNK_TOP_ABOVE_CREST_MM = 80.0  # where the trunk ellipsoid is widest, above the crest
TRUNK_HALF_WIDTH_MM = 70.0  # the trunk piece holds the pelvis within this |x|; the hip bones the rest
HIP_BONE_BELOW_HEAD_MM = 10.0  # the hip bone piece holds the hip bone above this far below the heads
WING_MARGIN_MM = 15.0  # muscle on the faces of the hip bone, grown along its principal axes

# Subcutaneous fat: the AnatomySpec gives it at three sites (DOMAIN.md 3: anterior thigh 8-25 mm,
# over the greater trochanter 15-50, gluteal 20-60); between them it blends over these ramps (mm).
_LATERAL_X_RAMP_MM = 40.0  # from the trochanter's x outward
_LATERAL_Z_FULL_MM = 50.0  # full trochanteric fat within this height of the trochanter ...
_LATERAL_Z_RAMP_MM = 100.0  # ... fading over this much more
_GLUTEAL_Y_RAMP_MM = 80.0  # from the ischial tuberosity backward
_GLUTEAL_Y_START_MM = 15.0  # gluteal fat starts this far behind the ischial tuberosity
_GLUTEAL_Z_RAMP_MM = 100.0  # from the gluteal fold upward
_GLUTEAL_FOLD_BELOW_IT_MM = 50.0  # the gluteal fold lies this far below the ischial tuberosity


_NEWTON_STEPS = 6
# Farther out than this (by the close bound) the bound stands in for the exact distance: the
# scene never needs exact distances beyond its thickest fat.
_EXACT_REACH_MM = 90.0


@dataclass(frozen=True, eq=False)
class ExactEllipsoid(Ellipsoid):
    """An :class:`Ellipsoid` whose distance outside is exact (Newton's method on the closest-point
    equation), so that it can be grown by tens of mm; inside, and beyond
    :data:`_EXACT_REACH_MM`, it keeps the close bound (a lower bound)."""

    def sdf(self, points: np.ndarray) -> np.ndarray:
        d = super().sdf(points)
        out = np.flatnonzero((d > 0) & (d < _EXACT_REACH_MM))
        if out.size == 0:
            return d
        q = points[out] - self.center
        if self._turned:
            q = q @ self.rotation
        a2 = self.radii**2
        aq2 = [a2[i] * q[:, i] ** 2 for i in range(3)]
        # f(t) = sum a^2 q^2 / (a^2 + t)^2 - 1 falls and is convex for t >= 0. Its root lies at or
        # above (distance) x (smallest semi-axis), so Newton's steps from the bound's distance
        # times that rise monotonically to it.
        t = d[out] * self.radii.min()
        for _ in range(_NEWTON_STEPS):
            f, df = -1.0, 0.0
            for i in range(3):
                inv = 1.0 / (a2[i] + t)
                term = aq2[i] * inv * inv
                f = f + term
                df = df - 2.0 * term * inv
            t = t - f / df
        gap = [q[:, i] * t / (a2[i] + t) for i in range(3)]  # q minus its closest point
        d[out] = np.sqrt(gap[0] ** 2 + gap[1] ** 2 + gap[2] ** 2)
        return d


@dataclass(frozen=True, eq=False)
class CutBelow(Shape):
    """``shape`` above the plane z = ``z_mm``: the larger of its distance and the plane's (exact but
    near the rim, where it is a close lower bound)."""

    shape: Shape
    z_mm: float

    def sdf(self, points: np.ndarray) -> np.ndarray:
        return np.maximum(self.shape.sdf(points), self.z_mm - points[:, 2])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.shape.bounds()
        lo = lo.copy()
        lo[2] = max(lo[2], self.z_mm)
        return lo, np.maximum(hi, lo)


def _ramp(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


@dataclass(frozen=True)
class FatField:
    """Skin plus subcutaneous fat (mm) as a function of position: ``base`` everywhere, blending to
    ``trochanteric`` lateral to the greater trochanters and to ``gluteal`` over the buttocks.

    Landmarks are the two sides' mean (|x|), so the field is mirror-symmetric about x = 0.
    """

    base: float
    trochanteric: float
    gluteal: float
    trochanter_x: float  # |x| of the greater trochanters (mm)
    trochanter_z: float
    tuberosity_y: float  # y and z of the ischial tuberosities (mm)
    tuberosity_z: float

    def weights(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lateral and gluteal weights (0 to 1, their sum at most 1) at ``points`` (N, 3)."""
        x, y, z = np.abs(points[:, 0]), points[:, 1], points[:, 2]
        gluteal = _ramp((self.tuberosity_y - _GLUTEAL_Y_START_MM - y) / _GLUTEAL_Y_RAMP_MM) * _ramp(
            (z - self.tuberosity_z + _GLUTEAL_FOLD_BELOW_IT_MM) / _GLUTEAL_Z_RAMP_MM
        )
        dz = np.abs(z - self.trochanter_z) - _LATERAL_Z_FULL_MM
        lateral = _ramp((x - self.trochanter_x) / _LATERAL_X_RAMP_MM) * _ramp(1.0 - dz / _LATERAL_Z_RAMP_MM)
        return lateral * (1.0 - gluteal), gluteal

    def __call__(self, points: np.ndarray) -> np.ndarray:
        lateral, gluteal = self.weights(points)
        fat = self.base + (self.trochanteric - self.base) * lateral + (self.gluteal - self.base) * gluteal
        return SKIN_MM + fat

    @property
    def most(self) -> float:
        return SKIN_MM + max(self.base, self.trochanteric, self.gluteal)

    @property
    def slope(self) -> float:
        """An upper bound of the field's change per mm of position (dimensionless).

        Each weight is a product of ramps along two orthogonal axes, so its gradient is at most
        the hypotenuse of the ramps' slopes; the product lateral * (1 - gluteal) adds both."""
        lat = np.hypot(1.0 / _LATERAL_X_RAMP_MM, 1.0 / _LATERAL_Z_RAMP_MM)
        glu = np.hypot(1.0 / _GLUTEAL_Y_RAMP_MM, 1.0 / _GLUTEAL_Z_RAMP_MM)
        dt, dg = abs(self.trochanteric - self.base), abs(self.gluteal - self.base)
        return float(dt * (lat + glu) + dg * glu)


def _mean_landmark(sk: Skeleton, name: str) -> np.ndarray:
    """``name`` averaged over both sides, as |x| (the right side's frame)."""
    m = sk.bones.landmarks
    right = np.asarray(m[f"{name}_right"], float)
    left = np.asarray(m[f"{name}_left"], float) * np.array([-1.0, 1.0, 1.0])
    return (right + left) / 2.0


def fat_field(spec: AnatomySpec) -> FatField:
    """The skin-plus-fat depth of ``spec`` (its three fat thicknesses, placed by its bones)."""
    sk = skeleton(spec)
    gt, it = _mean_landmark(sk, "greater_trochanter"), _mean_landmark(sk, "ischial_tuberosity")
    return FatField(
        base=spec.subcutaneous_fat_mm,
        trochanteric=spec.trochanteric_fat_mm,
        gluteal=spec.gluteal_fat_mm,
        trochanter_x=float(gt[0]),
        trochanter_z=float(gt[2]),
        tuberosity_y=float(it[1]),
        tuberosity_z=float(it[2]),
    )


# ----------------------------------------------------------------------------------------------
# Lean body
# ----------------------------------------------------------------------------------------------


def _margin_scale(spec: AnatomySpec) -> float:
    """Muscle margins scale with body size and shrink a little as muscle wastes (DOMAIN.md 2.8)."""
    return spec.body_scale * (0.85 + 0.15 * min(spec.muscle_bulk, 1.0))


def _pelvis_vertices(sk: Skeleton) -> np.ndarray:
    pelvis = sk.bones.pelvis
    parts = [pelvis] if hasattr(pelvis, "vertices") else list(pelvis)
    return np.concatenate([p.vertices for p in parts])


def _trunk(sk: Skeleton, s: float) -> CutBelow:
    """Trunk: a tall ellipsoid about the midline holding the sacrum and the pubis (the pelvis within
    the sacro-iliac joints) with anterior and posterior margins, cut level at the perineum."""
    m = sk.bones.landmarks
    v = _pelvis_vertices(sk)
    tuberosity_z = 0.5 * (m["ischial_tuberosity_right"][2] + m["ischial_tuberosity_left"][2])
    v = v[(np.abs(v[:, 0]) < TRUNK_HALF_WIDTH_MM) & (v[:, 2] > tuberosity_z)]
    crest = float(_pelvis_vertices(sk)[:, 2].max())
    zc, c = crest + TRUNK_TOP_ABOVE_CREST_MM, 3.0 * (crest - tuberosity_z)
    y_lo, y_hi = float(v[:, 1].min()), float(v[:, 1].max())
    yc = 0.5 * (y_lo + y_hi)
    a0, b0 = TRUNK_HALF_WIDTH_MM, 0.5 * (y_hi - y_lo)
    # Smallest scale of (a0, b0) that holds every vertex in the ellipsoid's section at its height.
    room = 1.0 - ((v[:, 2] - zc) / c) ** 2
    need = (v[:, 0] / a0) ** 2 + ((v[:, 1] - yc) / b0) ** 2
    k = float(np.sqrt(np.max(need / room)))
    front, back = ANTERIOR_MARGIN_MM * s, POSTERIOR_MARGIN_MM * s
    radii = (k * a0 + CREST_MARGIN_MM * s, k * b0 + 0.5 * (front + back), c)
    return CutBelow(Ellipsoid((0.0, yc + 0.5 * (front - back), zc), radii), tuberosity_z - 10.0)


def _hip_bone(sk: Skeleton, side: str, s: float) -> Ellipsoid:
    """One hip bone (ilium, ischium, pubis) in an ellipsoid along its principal axes, grown by the
    muscle on both faces of the wing (gluteus medius outside, iliacus inside)."""
    v = _pelvis_vertices(sk)
    sx = 1.0 if side == "right" else -1.0
    heads_z = 0.5 * (sk.bones.landmarks["head_centre_right"][2] + sk.bones.landmarks["head_centre_left"][2])
    # The wing and the acetabulum; below, the trunk, buttock and thigh hold ischium and pubis.
    v = v[(v[:, 0] * sx > TRUNK_HALF_WIDTH_MM * 0.5) & (v[:, 2] > heads_z - HIP_BONE_BELOW_HEAD_MM)]
    centre = v.mean(axis=0)
    _, _, vt = np.linalg.svd(v - centre, full_matrices=False)
    rot = vt.T  # columns: principal axes
    q = (v - centre) @ rot
    centre = centre + rot @ (0.5 * (q.max(axis=0) + q.min(axis=0)))
    q = (v - centre) @ rot
    half = np.maximum(np.abs(q).max(axis=0), 1.0)
    k = float(np.sqrt(np.max(((q / half) ** 2).sum(axis=1))))
    return Ellipsoid(centre, k * half + WING_MARGIN_MM * s, rot)


def _buttock(sk: Skeleton, side: str, s: float) -> Ellipsoid:
    """One buttock: gluteus maximus as an ellipsoid from the ischial tuberosity's medial side to
    beyond the greater trochanter, from below the tuberosity up to the posterior iliac spine, and
    from the trochanter back to a gluteal margin behind the ischium."""
    m = sk.bones.landmarks

    def p(name: str) -> np.ndarray:
        return np.asarray(m[f"{name}_{side}"], float)

    sx = 1.0 if side == "right" else -1.0
    it, gt, psis, spine = p("ischial_tuberosity"), p("greater_trochanter"), p("psis"), p("ischial_spine")
    x = sorted((it[0] - sx * 15.0, gt[0] + sx * TROCHANTER_MARGIN_MM * s))
    y = (min(it[1], spine[1]) - GLUTEAL_MARGIN_MM * s, gt[1])
    z = (it[2] - 25.0 * s, psis[2])
    lo, hi = np.array([x[0], y[0], z[0]]), np.array([x[1], y[1], z[1]])
    return Ellipsoid(0.5 * (lo + hi), 0.5 * (hi - lo))


def _thigh(sk: Skeleton, side: str, s: float) -> Capsule:
    """One thigh: a tapered capsule along the femoral shaft (its centre shifted medially), wide
    enough at the top to hold the greater trochanter with the lateral margin."""
    m = sk.bones.landmarks
    femur = getattr(sk.bones, f"femur_{side}").vertices
    axis = np.asarray(m[f"shaft_axis_{side}"], float)
    axis = axis / np.linalg.norm(axis)
    lesser = np.asarray(m[f"lesser_trochanter_{side}"], float)
    sx = 1.0 if side == "right" else -1.0
    ring = shaft_ring(femur, lesser, axis)
    centre = ring.mean(axis=0) - ((ring.mean(axis=0) - lesser) @ axis) * axis  # on the lesser's plane
    shaft_r = float(np.mean(np.linalg.norm(ring - ring.mean(axis=0), axis=1)))
    centre = centre + np.array([-sx * THIGH_MEDIAL_SHIFT_MM * s, 0.0, 0.0])
    # The capsule's top lies level with the highest point of the trochanter lateral to the axis.
    lateral = femur[(femur[:, 0] - centre[0]) * sx > 0.0]
    lateral = lateral[(lateral - lesser) @ axis < 40.0]
    top_t = float(((lateral - centre) @ axis).min())
    a = centre + top_t * axis
    t_bottom = (THIGH_BOTTOM_Z_MM - centre[2]) / axis[2]
    b = centre + t_bottom * axis
    rel = lateral - a
    radial = np.linalg.norm(rel - (rel @ axis)[:, None] * axis, axis=1)
    r_top = float(radial.max()) + TROCHANTER_MARGIN_MM * s
    r_bottom = shaft_r + THIGH_MEDIAL_SHIFT_MM * s + THIGH_MUSCLE_MM * s
    return Capsule(a, b, r_top, max(r_bottom, r_top * 0.8))


def lean_pieces(spec: AnatomySpec) -> tuple[Shape, ...]:
    """Trunk, hip bones, buttocks and thighs (right before left) whose smooth union is the lean body."""
    return _lean_pieces(spec)


@functools.lru_cache(maxsize=16)
def _lean_pieces(spec: AnatomySpec) -> tuple[Shape, ...]:
    sk, s = skeleton(spec), _margin_scale(spec)
    return (
        _trunk(sk, s),
        *(_hip_bone(sk, side, s) for side in SIDES),
        *(_buttock(sk, side, s) for side in SIDES),
        *(_thigh(sk, side, s) for side in SIDES),
    )


def lean_shape(spec: AnatomySpec) -> Shape:
    """Surface of the lean body under the subcutaneous fat: trunk, buttocks, proximal thighs."""
    return Union(lean_pieces(spec), smooth_mm=BODY_BLEND_MM)


@dataclass(frozen=True, eq=False)
class _RescaledUnion(Union):
    """A smooth :class:`Union` whose distances are divided by ``factor`` >= 1: keeps them true lower
    bounds when the children are offsets by a depth that varies with position (the union itself
    compares and blends the children's own distances, so its stand-ins stay valid)."""

    factor: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "_plain", Union(self.children, self.smooth_mm))

    def sdf(self, points: np.ndarray) -> np.ndarray:
        d = self._plain.sdf(points)
        # The plain union is exact up to EXACT_WITHIN_MM; scaled, exact up to that as well.
        redo = np.flatnonzero((d >= EXACT_WITHIN_MM) & (d < EXACT_WITHIN_MM * self.factor))
        if redo.size:
            d[redo] = np.maximum(self._plain._fold(points[redo]), EXACT_WITHIN_MM)
        return d / self.factor

    def _fold(self, points: np.ndarray) -> np.ndarray:
        return self._plain._fold(points) / self.factor


def _exact(piece: Shape) -> Shape:
    """``piece`` with exact distances outside (its ellipsoids made :class:`ExactEllipsoid`)."""
    if isinstance(piece, CutBelow):
        return CutBelow(_exact(piece.shape), piece.z_mm)
    if isinstance(piece, Ellipsoid) and not isinstance(piece, ExactEllipsoid):
        return ExactEllipsoid(piece.center, piece.radii, piece.rotation)
    return piece


def _grown(piece: Shape, depth: FatField) -> Shape:
    """``piece`` of the lean body grown by the skin-plus-fat ``depth`` (exact distances: the
    close bound of an ellipsoid would grow it too far sideways)."""
    return Offset(_exact(piece), depth, depth.most)


def body_shape(spec: AnatomySpec) -> Shape:
    """Skin surface: the lean body grown by skin and subcutaneous fat (:func:`fat_field`).

    Each piece is grown before the blend, so distances stay exact however thick the fat.
    """
    depth = fat_field(spec)
    factor = 1.0 + depth.slope
    grown = tuple(_grown(piece, depth) for piece in lean_pieces(spec))
    return _RescaledUnion(grown, smooth_mm=BODY_BLEND_MM, factor=factor)


# The skin read from a lattice: the exact outline is costly to evaluate where the fat is thick
# (Newton steps on every piece), and the scene reads it millions of times.
SKIN_LATTICE_MM = 3.0
_SKIN_CLAMP_MM = (-30.0, EXACT_WITHIN_MM)  # the body's distance is exact up to EXACT_WITHIN_MM outside
_SKIN_BAND_MM = 5.0  # read as the exact distance this deep: the skin layer (SKIN_MM) and its margin
_SKIN_REFINE_MM = 6.0
_SKIN_Z_MARGIN_MM = 32.0  # sampled this far above and below the scene


def sampled_body_shape(spec: AnatomySpec) -> Shape:
    """:func:`body_shape` sampled once per anatomy every SKIN_LATTICE_MM over the scene's height
    (:class:`~nmosim.phantoms.sampled_field.BandedField`): the same skin within a few hundredths
    of a mm where it is smooth, a distance that is a true lower bound, and the exact shape above
    and below the lattice."""
    return _sampled_body_shape(spec)


@functools.lru_cache(maxsize=4)
def _sampled_body_shape(spec: AnatomySpec) -> Shape:
    from nmosim.phantoms.sampled_field import banded_field
    from nmosim.phantoms.skeleton import SCENE_Z_MM

    body = body_shape(spec)
    lo, hi = body.bounds()
    lo[2] = max(lo[2], SCENE_Z_MM[0] - _SKIN_Z_MARGIN_MM)
    hi[2] = min(hi[2], SCENE_Z_MM[1] + _SKIN_Z_MARGIN_MM)
    return banded_field(body, lo, hi, SKIN_LATTICE_MM, _SKIN_CLAMP_MM, _SKIN_BAND_MM, _SKIN_REFINE_MM)
