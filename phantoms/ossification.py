"""HO lesion shapes (lobulated masses along muscle planes around the hip) and their maturation into Parts.

Geometry and tissues only: it draws no phase, measures no grade and never rasterizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from nmosim.phantoms.anatomy import HipLandmarks, femur_shape, hip_bone_shape, muscle_field_for
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.muscles import MuscleUnion
from nmosim.phantoms.rasterize import Layer, Part
from nmosim.phantoms.shapes import (
    Ellipsoid,
    Points,
    Shape,
    Sphere,
    Union,
    array_api_sdf,
    clip,
    constants,
    evaluate,
    namespace,
    take,
)
from nmosim.phantoms.spec import AnatomySpec

LOCATIONS = ("anterior", "anteromedial", "lateral", "posterior", "circumferential")
# DOMAIN.md 1.4, "Suggested prior" (a synthesis, not a measured distribution).
LOCATION_PRIOR = {
    "sci": {
        "anterior": 0.50,
        "anteromedial": 0.15,
        "lateral": 0.10,
        "posterior": 0.10,
        "circumferential": 0.15,
    },
    "brain": {
        "anterior": 0.20,
        "anteromedial": 0.40,
        "lateral": 0.05,
        "posterior": 0.20,
        "circumferential": 0.15,
    },
}
SINGLE_LOCATIONS = LOCATIONS[:4]
ATTACHMENTS = ("island", "pelvis", "femur", "bridge")
ANCHOR_DEPTH_MM = 4.0  # spurs and bridges start this deep inside their bone, so they stay attached
LOBE_SPACING_MM = 9.0  # one lobe per this much path length
SMOOTH_MM = 4.0  # blend between lobes


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def point_at_depth(shape: Shape, outside: np.ndarray, inside: np.ndarray, depth_mm: float) -> np.ndarray:
    """Point on the segment ``outside -> inside`` where ``shape`` is ``depth_mm`` deep (bisection)."""
    a, b = np.asarray(outside, float), np.asarray(inside, float)
    for _ in range(40):
        m = 0.5 * (a + b)
        if shape.sdf(m[None, :])[0] > -depth_mm:
            a = m
        else:
            b = m
    return b


@dataclass(frozen=True)
class Sites:
    """Anchor points (mm, right side) on the pelvis and femur for each location, and the neck line."""

    pelvic: dict[str, np.ndarray]
    femoral: dict[str, np.ndarray]
    head_center: np.ndarray
    neck_axis: np.ndarray
    head_radius: float


def hip_sites(spec: AnatomySpec, lm: HipLandmarks, side: str = "right") -> Sites:
    """Where HO of each location starts and ends on ``side``'s hip, in the right-side frame
    (DOMAIN.md 1.4-1.5); ``lm`` are that hip's landmarks (see :func:`hip_landmarks`).

    Anterior: AIIS to the anterior intertrochanteric line; anteromedial: superior pubic ramus to
    the lesser trochanter; lateral: supra-acetabular ilium to the greater trochanter; posterior:
    posterior column above the ischium to the intertrochanteric crest. Each anchor is found by
    walking from a point outside the bone toward a landmark until the bone is ``ANCHOR_DEPTH_MM``
    deep.
    """
    hc, r = lm.head_center, lm.head_radius
    pelvis, femur = hip_bone_shape(spec, side), femur_shape(spec, side)
    d = ANCHOR_DEPTH_MM
    nb, gt, lt, crest = lm.neck_base, lm.greater_trochanter, lm.lesser_trochanter, lm.intertrochanteric_crest
    ramus = 0.5 * (lm.acetabular_center + lm.pubic_tubercle)  # superior pubic ramus, mid-way
    column = 0.5 * (lm.acetabular_center + lm.ischial_spine)  # posterior column, behind the socket
    anterior_line = nb + 0.5 * (lt - nb) + [0.0, 6.0, 0.0]  # intertrochanteric line, anterior face
    pelvic = {
        "anterior": point_at_depth(pelvis, lm.aiis + [0.0, 25.0, -15.0], lm.aiis - [0.0, 4.0, -2.0], d),
        "anteromedial": point_at_depth(pelvis, ramus + [0.0, 25.0, -25.0], ramus, d),
        "lateral": point_at_depth(pelvis, hc + [50.0, -8.0, r + 40.0], hc + [10.0, -8.0, r + 30.0], d),
        "posterior": point_at_depth(pelvis, column + [15.0, -30.0, 0.0], column, d),
    }
    femoral = {
        "anterior": point_at_depth(femur, anterior_line + [0, 45.0, 0], anterior_line - [0, 6.0, 0], d),
        "anteromedial": point_at_depth(femur, lt + [-25.0, 22.0, -4.0], lt, d),
        "lateral": point_at_depth(femur, gt + [20.0, 0.0, 30.0], gt, d),
        "posterior": point_at_depth(femur, crest + [4.0, -40.0, 6.0], crest, d),
    }
    return Sites(pelvic, femoral, hc, unit(lm.neck_axis), r)


# --- the muscle planes ------------------------------------------------------------------------------

MUSCLE_MAP_SPACING_MM = 3.0
MUSCLE_MAP_HALF_MM = (80.0, 80.0, 95.0)  # half-size (x, y, z) of the map around the head centre
# Path bends tried (mm, across the straight line from start to end) to run a lesion in muscle.
PATH_OFFSETS_MM = (-40.0, -20.0, 0.0, 20.0, 40.0)  # the curve moves half as far


@dataclass(frozen=True)
class MuscleMap:
    """One hip's muscles on a coarse grid in the right-hip frame: depth inside the union of that
    side's muscles (mm, > 0 inside, as at the reference time) and where native parts that paint
    over lesions lie (bone, joint space, vessels, nerves). Arrays are indexed (x, y, z)."""

    origin_mm: np.ndarray  # centre of voxel (0, 0, 0), x y z
    spacing_mm: float
    depth: np.ndarray
    blocked: np.ndarray

    def points(self) -> np.ndarray:
        """Voxel centres (N, 3) in mm, in the arrays' C order."""
        axes = [self.origin_mm[a] + self.spacing_mm * np.arange(n) for a, n in enumerate(self.depth.shape)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)

    def _index(self, points: np.ndarray) -> np.ndarray:
        return ((np.asarray(points, float) - self.origin_mm) / self.spacing_mm).T

    def depth_at(self, points: np.ndarray) -> np.ndarray:
        """Muscle depth (mm) at ``points`` (N, 3), trilinear; -50 outside the map."""
        return ndimage.map_coordinates(self.depth, self._index(points), order=1, cval=-50.0)

    def blocked_at(self, points: np.ndarray) -> np.ndarray:
        """Whether a native part lies at ``points`` (N, 3), nearest voxel; False outside the map."""
        return ndimage.map_coordinates(self.blocked.astype(np.uint8), self._index(points), order=0) > 0


def muscle_map(
    spec: AnatomySpec, lm: HipLandmarks, side: str, blocked: Callable[[np.ndarray], np.ndarray]
) -> MuscleMap:
    """The :class:`MuscleMap` of ``side``'s hip for ``spec`` (the anatomy at the reference time);
    ``blocked`` tells for points in the patient frame (N, 3) whether a native part lies there."""
    mf = muscle_field_for(spec)
    union = MuscleUnion(mf, tuple(i for i, name in enumerate(mf.names) if name.endswith(side)))
    half = np.asarray(MUSCLE_MAP_HALF_MM)
    counts = tuple(int(n) for n in np.ceil(2.0 * half / MUSCLE_MAP_SPACING_MM) + 1)
    origin = lm.head_center - half  # landmarks of either hip are in the right-hip frame
    empty = MuscleMap(origin, MUSCLE_MAP_SPACING_MM, np.zeros(counts), np.zeros(counts, bool))
    pts = empty.points()
    patient = pts if side == "right" else pts * [-1.0, 1.0, 1.0]
    depth = -union.sdf(patient).reshape(counts)
    return MuscleMap(origin, MUSCLE_MAP_SPACING_MM, depth, np.asarray(blocked(patient)).reshape(counts))


def muscle_path(
    sites: Sites, start: np.ndarray, end: np.ndarray, clearance_mm: float, muscle: MuscleMap | None
) -> np.ndarray:
    """As :func:`bowed_path`, with the middle bent (up to 24 mm either way) to run the path through
    the deepest muscle of ``muscle`` and clear of native parts: HO forms in muscle (DOMAIN.md 1.4-1.5).
    The bend never brings the path's middle nearer the neck than three quarters of ``clearance_mm``."""
    control = bowed_path(sites, start, end, clearance_mm)
    if muscle is None:
        return control
    chord = unit(end - start)
    e1 = unit(np.cross(chord, [0.0, 0.0, 1.0]) if abs(chord[2]) < 0.9 else np.cross(chord, [1.0, 0.0, 0.0]))
    e2 = np.cross(chord, e1)
    u = np.linspace(0.15, 0.85, 15)
    best, best_score = control, -np.inf
    for a in PATH_OFFSETS_MM:
        for b in PATH_OFFSETS_MM:
            trial = control.copy()
            trial[1] = control[1] + a * e1 + b * e2
            mid = bezier(trial, np.array([0.5]))[0] - sites.head_center
            radial = np.linalg.norm(mid - (mid @ sites.neck_axis) * sites.neck_axis)
            if radial < 0.75 * clearance_mm:
                continue
            pts = bezier(trial, u)
            depth = np.clip(muscle.depth_at(pts), -10.0, 8.0)
            score = float(depth.mean() - 20.0 * muscle.blocked_at(pts).mean())
            if score > best_score + 1e-9:
                best, best_score = trial, score
    return best


def bowed_path(sites: Sites, start: np.ndarray, end: np.ndarray, clearance_mm: float) -> np.ndarray:
    """Control points (3, 3) of a quadratic Bezier from ``start`` to ``end`` that keeps its middle at
    least ``clearance_mm`` from the neck axis line: HO runs in the muscle planes around the joint."""
    mid = 0.5 * (start + end)
    rel = mid - sites.head_center
    radial = rel - (rel @ sites.neck_axis) * sites.neck_axis
    dist = float(np.linalg.norm(radial))
    if dist < clearance_mm:
        direction = radial / dist if dist > 1e-6 else unit(np.cross(sites.neck_axis, [0.0, 0.0, 1.0]))
        mid = mid + (clearance_mm - dist) * direction * 2.0  # the curve reaches half the control offset
    return np.stack([start, mid, end])


def bezier(control: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Points (N, 3) of the quadratic Bezier ``control`` at parameters ``u`` (N,)."""
    u = np.asarray(u, float)[:, None]
    return (1 - u) ** 2 * control[0] + 2 * (1 - u) * u * control[1] + u**2 * control[2]


def _frame(tangent: np.ndarray, roll: float) -> np.ndarray:
    """Rotation whose first column is ``tangent``, the others turned by ``roll`` (rad) about it."""
    t = unit(tangent)
    helper = np.array([0.0, 0.0, 1.0]) if abs(t[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    n1 = unit(np.cross(t, helper))
    n2 = np.cross(t, n1)
    c, s = np.cos(roll), np.sin(roll)
    return np.stack([t, c * n1 + s * n2, -s * n1 + c * n2], axis=1)


@dataclass(frozen=True)
class Lobe:
    """One ellipsoidal lobe at reference size: centre (mm), semi-axes (mm), rotation (columns)."""

    center: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray


@dataclass(frozen=True, eq=False)
class SampledDistances(Shape):
    """A shape given by signed distances (mm) sampled on a grid, indexed (x, y, z), trilinear
    between samples. The shape lies inside the grid's box; outside it the distance is a lower
    bound: the larger of the distance to the box and the nearest sample's value less that distance.

    Distances run on the array API; the samples are copied to the points' namespace once.
    """

    origin_mm: np.ndarray  # centre of sample (0, 0, 0)
    spacing_mm: float
    values: np.ndarray

    @property
    def _upper(self) -> np.ndarray:
        return self.bounds()[1]

    @property
    def _flat(self) -> np.ndarray:
        return self.values.reshape(-1)

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        if isinstance(points, np.ndarray) or not hasattr(points, "shape"):
            points = np.asarray(points, dtype=float)
        xp = namespace(points)
        p = xp.reshape(xp.asarray(points, dtype=xp.float64), (-1, 3))
        origin, upper = constants(self, p, "origin_mm", "_upper")
        gap = xp.maximum(xp.maximum(origin - p, p - upper), 0.0)
        outside = xp.sqrt(xp.sum(gap * gap, axis=1))  # np.linalg.norm's sum, in its order
        inner = self._trilinear(xp, p, (p - origin) / float(self.spacing_mm))
        return xp.where(outside > 0.0, xp.maximum(inner - outside, outside), inner)

    def _trilinear(self, xp: ModuleType, p: Points, index: Any) -> Any:
        """Samples at fractional grid ``index`` (N, 3), nearest sample's beyond the grid: the
        arithmetic of ``scipy.ndimage.map_coordinates`` at order 1, mode "nearest" (the same bytes
        on numpy: weights ``1 - x`` and ``1 - (1 - x)``, corners summed with the last axis fastest,
        the sum rounded to the samples' float32). numpy takes scipy's own, which is faster."""
        if isinstance(p, np.ndarray):
            return ndimage.map_coordinates(self.values, index.T, order=1, mode="nearest").astype(float)
        (flat,) = constants(self, p, "_flat")
        counts = self.values.shape
        corners, weights = [], []
        for a, n in enumerate(counts):
            cc = clip(xp, index[:, a], 0.0, float(n - 1))
            start = xp.floor(cc)
            w0 = 1.0 - (cc - start)
            i0 = xp.astype(start, xp.int64)
            corners.append((i0, xp.minimum(i0 + 1, n - 1)))  # the second weighs 0 at the last sample
            weights.append((w0, 1.0 - w0))
        total = None
        for ix in (0, 1):
            for iy in (0, 1):
                row = (corners[0][ix] * counts[1] + corners[1][iy]) * counts[2]
                for iz in (0, 1):
                    v = xp.astype(take(xp, flat, row + corners[2][iz]), xp.float64)
                    term = v * weights[0][ix] * weights[1][iy] * weights[2][iz]
                    total = 0.0 + term if total is None else total + term
        sampled = xp.float32 if self.values.dtype == np.float32 else xp.float64
        return xp.astype(xp.astype(total, sampled), xp.float64)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.origin_mm.copy(), self.origin_mm + self.spacing_mm * (np.asarray(self.values.shape) - 1)

    def mirrored(self) -> SampledDistances:
        """The field reflected through x = 0."""
        lo, hi = self.bounds()
        return SampledDistances(np.array([-hi[0], lo[1], lo[2]]), self.spacing_mm, self.values[::-1].copy())


@dataclass(frozen=True, eq=False)
class Scaled(Shape):
    """``shape`` scaled by ``scale`` about ``center_mm`` (distances scale with it)."""

    shape: Shape
    center_mm: np.ndarray
    scale: float

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        if isinstance(points, np.ndarray) or not hasattr(points, "shape"):
            points = np.asarray(points, dtype=float)
        (c,) = constants(self, points, "center_mm")
        s = float(self.scale)
        return s * evaluate(self.shape, c + (points - c) / s)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.shape.bounds()
        c, s = self.center_mm, self.scale
        return c + s * (lo - c), c + s * (hi - c)


@dataclass(frozen=True)
class LesionGeometry:
    """A lesion at its reference size (the time the phase was honoured), grown about ``seed_mm``.

    ``shape(scale)`` scales every lobe about the seed (the attachment point of a spur or bridge,
    the centre of an island): scale 1 is the reference size; growth only ever raises it, so the
    lesion keeps its place and identity along a series.
    """

    seed_mm: np.ndarray
    lobes: tuple[Lobe, ...]
    bumps: tuple[tuple[np.ndarray, float], ...] = field(default=())  # (centre mm, radius mm)
    mass: SampledDistances | None = None  # a mass of many lobes, as sampled distances (exact depth inside)

    def shape(self, scale: float = 1.0) -> Shape | None:
        """The lesion at ``scale`` times its reference size; None when too small to exist (< 0.05)."""
        if scale < 0.05:
            return None
        s, c = float(scale), self.seed_mm
        parts: list[Shape] = [
            Ellipsoid(c + s * (lobe.center - c), s * lobe.radii, lobe.rotation) for lobe in self.lobes
        ]
        parts += [Sphere(c + s * (p - c), s * r) for p, r in self.bumps]
        if self.mass is not None:
            parts.append(self.mass if s == 1.0 else Scaled(self.mass, c, s))
        return Union(tuple(parts), smooth_mm=SMOOTH_MM * s)


def lobulated_mass(
    rng: np.random.Generator,
    control: np.ndarray,
    u_start: float,
    u_end: float,
    thickness_mm: tuple[float, float],
    seed_mm: np.ndarray,
) -> LesionGeometry:
    """Lobes along the Bezier ``control`` from ``u_start`` to ``u_end`` with a random lobulation.

    ``thickness_mm`` (start, end) is the transverse semi-axis of the lobes, tapering along the
    path: a thick base and a thinner tip for a spur, an even width for a bridge.
    """
    u_dense = np.linspace(u_start, u_end, 64)
    pts = bezier(control, u_dense)
    length = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
    n = max(2, int(np.ceil(length / LOBE_SPACING_MM)) + 1)
    us = np.linspace(u_start, u_end, n)
    centres = bezier(control, us)
    tangents = np.gradient(centres, axis=0)
    step = length / (n - 1)
    lobes = []
    for i, (centre, tangent) in enumerate(zip(centres, tangents, strict=True)):
        f = i / (n - 1)
        t = thickness_mm[0] + f * (thickness_mm[1] - thickness_mm[0])
        tip = i == n - 1
        # Elongated along the path (the muscle plane), flattened across it (DOMAIN.md 1.5).
        along = (0.5 * t if tip else max(0.75 * step, t)) * rng.uniform(0.9, 1.3)
        radii = np.array([along, t * rng.uniform(0.85, 1.15), t * rng.uniform(0.55, 0.9)])
        rot = _frame(tangent, rng.uniform(0.0, np.pi))
        jitter = 0.0 if (i == 0 or tip) else 0.25 * t
        offset = rot[:, 1:] @ rng.normal(0.0, jitter, size=2) if jitter else np.zeros(3)
        lobes.append(Lobe(centre + offset, radii, rot))
    bumps = []
    for _ in range(int(rng.integers(2, 3 + n))):
        lobe = lobes[int(rng.integers(0, max(1, n - 1)))]  # never on the tip: it sets the gap
        direction = lobe.rotation[:, 1:] @ unit(rng.normal(size=2))
        r = float(lobe.radii[1] * rng.uniform(0.3, 0.55))
        bumps.append((lobe.center + direction * lobe.radii[1] * rng.uniform(0.6, 0.9), r))
    return LesionGeometry(np.asarray(seed_mm, float), tuple(lobes), tuple(bumps))


# An ankylosing mass (Brooker IV): lobes in the muscle within this reach of its bridge's path,
# each of a radius up to the muscle's depth at its centre (plus a little), until the volume is met.
MASS_REACH_MM = 80.0
MASS_LOBE_MM = (5.0, 14.0)  # lobe radius range
LOBE_STRETCH = 1.15  # a lobe's longest semi-axis over its radius
MASS_MIN_DEPTH_MM = 2.0  # lobe centres lie at least this deep in muscle
MAX_MASS_LOBES = 1000
MASS_FIELD_SPACING_MM = 1.0
# The map counts the mass at 3 mm; native parts painted over it at finer grids (vessels, nerves,
# bone) take a little of it: the count aims this much higher.
MASS_COUNT_MARGIN = 1.1


def mass_lobes(
    rng: np.random.Generator,
    muscle: MuscleMap,
    control: np.ndarray,
    volume_mm3: float,
    room_mm: np.ndarray | None = None,
) -> tuple[Lobe, ...]:
    """Lobes of a mass of about ``volume_mm3`` (counted on the map, outside native parts) filling
    the muscle around the Bezier ``control`` outward from the path, with a random lobulation: a
    mature ankylosing mass grows in the muscle planes and envelops its bridge (DOMAIN.md 1.5-1.6).

    ``room_mm``: per map point (the map's C order), the largest extent (mm) a lobe centred there may
    have, e.g. its distance to a bone the mass must keep clear of; no limit when None. A lobe whose
    room is under the smallest lobe radius is not placed."""
    pts = muscle.points()
    depth, free = muscle.depth.ravel(), ~muscle.blocked.ravel()
    room = np.full(depth.size, np.inf) if room_mm is None else np.asarray(room_mm, float).ravel()
    path = bezier(control, np.linspace(0.05, 0.95, 64))
    dist, _ = cKDTree(path).query(pts, distance_upper_bound=MASS_REACH_MM)
    roomy = room >= LOBE_STRETCH * MASS_LOBE_MM[0]
    idx = np.flatnonzero(np.isfinite(dist) & free & (depth >= MASS_MIN_DEPTH_MM) & roomy)
    order = idx[np.argsort(dist[idx] * rng.uniform(0.7, 1.3, idx.size), kind="stable")]
    tree = cKDTree(pts)
    covered = np.zeros(depth.size, bool)
    needed, count = MASS_COUNT_MARGIN * volume_mm3 / muscle.spacing_mm**3, 0
    lobes: list[Lobe] = []
    for i in order:
        if covered[i]:
            continue
        r = float(np.clip(depth[i] + 1.5, *MASS_LOBE_MM))
        r = min(r, float(room[i]) / LOBE_STRETCH)
        radii = r * np.array([rng.uniform(1.0, LOBE_STRETCH), rng.uniform(0.85, 1.0), rng.uniform(0.7, 0.9)])
        rotation = _frame(rng.normal(size=3), rng.uniform(0.0, np.pi))
        near = np.asarray(tree.query_ball_point(pts[i], float(radii.max())), int)
        inside = near[((((pts[near] - pts[i]) @ rotation) / radii) ** 2).sum(axis=1) <= 1.0]
        fresh = inside[~covered[inside] & free[inside]]
        covered[inside] = True
        count += fresh.size
        lobes.append(Lobe(pts[i].copy(), radii, rotation))
        if count >= needed or len(lobes) >= MAX_MASS_LOBES:
            break
    return tuple(lobes)


def mass_field(lobes: tuple[Lobe, ...]) -> SampledDistances:
    """The union of ``lobes`` as sampled signed distances on a :data:`MASS_FIELD_SPACING_MM` grid,
    closed over :data:`SMOOTH_MM` / 2 (the blend of a smooth union). Inside, the distance is exact
    (a union of many lobes would understate the depth where lobes overlap, putting a cortex
    between lobes): the mature mass has one cortical shell over a trabecular core (DOMAIN.md 2.5-2.6)."""
    h = MASS_FIELD_SPACING_MM
    pad = 2.0 * SMOOTH_MM + 2.0 * h
    lo = np.min([lobe.center - lobe.radii.max() for lobe in lobes], axis=0) - pad
    hi = np.max([lobe.center + lobe.radii.max() for lobe in lobes], axis=0) + pad
    counts = tuple(int(n) for n in np.ceil((hi - lo) / h) + 1)
    inside = np.zeros(counts, bool)
    for lobe in lobes:
        r = float(lobe.radii.max())
        a = np.maximum(np.floor((lobe.center - r - lo) / h).astype(int), 0)
        b = np.minimum(np.ceil((lobe.center + r - lo) / h).astype(int) + 1, counts)
        axes = [lo[k] + h * np.arange(a[k], b[k]) for k in range(3)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        local = ((pts - lobe.center) @ lobe.rotation) / lobe.radii
        inside[a[0] : b[0], a[1] : b[1], a[2] : b[2]] |= (local**2).sum(axis=-1) <= 1.0
    radius = max(1, int(round(0.5 * SMOOTH_MM / h)))
    ball = np.linalg.norm(np.mgrid[-radius : radius + 1, -radius : radius + 1, -radius : radius + 1], axis=0)
    inside = ndimage.binary_closing(inside, structure=ball <= radius)
    # Half a sample between the centres of the last voxel in and the first out.
    outside_d = ndimage.distance_transform_edt(~inside, sampling=h)
    inside_d = ndimage.distance_transform_edt(inside, sampling=h)
    values = np.where(inside, 0.5 * h - inside_d, outside_d - 0.5 * h).astype(np.float32)
    return SampledDistances(lo, h, values)


def with_mass(geometry: LesionGeometry, lobes: tuple[Lobe, ...]) -> LesionGeometry:
    """``geometry`` with a mass of ``lobes`` added (same seed, so it grows with the lesion)."""
    if not lobes:
        return geometry
    return LesionGeometry(geometry.seed_mm, geometry.lobes, geometry.bumps, mass_field(lobes))


def mirror(geometry: LesionGeometry) -> LesionGeometry:
    """The lesion reflected to the other side (x -> -x)."""
    flip = np.array([-1.0, 1.0, 1.0])
    lobes = tuple(Lobe(lo.center * flip, lo.radii, lo.rotation * flip[:, None]) for lo in geometry.lobes)
    bumps = tuple((p * flip, r) for p, r in geometry.bumps)
    mass = None if geometry.mass is None else geometry.mass.mirrored()
    return LesionGeometry(geometry.seed_mm * flip, lobes, bumps, mass)


# --- maturation -----------------------------------------------------------------------------------


def maturation_layers(stage: str, shell_mm: float) -> tuple[int, tuple[Layer, ...]]:
    """Outer tissue and deeper layers of a lesion at ``stage`` (DOMAIN.md 2.5-2.6: zonal pattern).

    Mineral proceeds from the margin inward: calcifying lesions are amorphous mineral throughout;
    immature ones have a woven-bone rim over a calcifying centre; maturing ones a thin cortex over
    woven bone with trabeculation starting deep; mature ones a 1-3 mm cortex (``shell_mm``) over a
    trabecular core with fatty marrow.
    """
    if stage == "calcifying":
        return Tissue.HO_CALCIFYING, ()
    if stage == "immature":
        return Tissue.HO_IMMATURE, (Layer(shell_mm + 1.0, Tissue.HO_CALCIFYING),)
    if stage == "maturing":
        thin = max(1.0, 0.6 * shell_mm)
        return Tissue.HO_CORTEX, (Layer(thin, Tissue.HO_IMMATURE), Layer(thin + 3.0, Tissue.HO_TRABECULAR))
    if stage == "mature":
        return Tissue.HO_CORTEX, (Layer(shell_mm, Tissue.HO_TRABECULAR),)
    raise ValueError(f"stage = {stage!r} has no ossified tissue")


def lesion_part(name: str, shape: Shape, side: str, instance: int, stage: str, shell_mm: float) -> Part:
    """A lesion as a Part: structure ho_right/ho_left, tissue by maturity, its own instance id."""
    tissue, layers = maturation_layers(stage, shell_mm)
    structure = Structure.HO_RIGHT if side == "right" else Structure.HO_LEFT
    return Part(name, shape, structure, tissue, instance=instance, layers=layers)
