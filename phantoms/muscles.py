"""Hip muscles as volumes: Gait2392 paths registered to the bones' landmarks, sized by PCSA.

Registers, places and shapes; it never rasterizes and draws random numbers only where given a
generator. Patient frame RAS+ in mm (DESIGN.md 2): +x toward the patient's right (the right hip at
x > 0), +y anterior, +z superior, origin midway between the femoral head centres.

Each muscle owns the part of the lean body (inside the subcutaneous fat) that is nearer to its
belly than to any other muscle within reach there, nearness measured from a tube of its PCSA's
radius (an additively weighted Voronoi rule), within a reach of its path that grows with its size,
and outside the pelvic and abdominal cavities unless it lines them (iliacus, psoas, obturator
internus). Fat planes FAT_PLANE_MM wide separate neighbours of different muscles.

The rule is evaluated once per anatomy on a lattice (:meth:`MuscleField.sampled`) and read by
trilinear interpolation with distance bounds taken from the samples (:class:`SampledField`): the
volumes are those of the interpolated field, the same for every grid they are rasterized on.

The scene builder replaces its hand-placed tubes with::

    parts += muscle_parts(landmarks, lean_shape(spec), bulk=spec.muscle_bulk)

painted after the body and before lesions, vessels, nerves, joint spaces and bones, with
``landmarks`` from the bone model (or :func:`standin_landmarks` for the analytic hip).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from nmosim.phantoms import gait2392 as g
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.rasterize import Part
from nmosim.phantoms.sampled_field import FIELD_CLAMP_MM, SampledField, sampled_field
from nmosim.phantoms.shapes import Ellipsoid, Points, Shape, Union, array_api_sdf
from nmosim.phantoms.skeleton import SCENE_Z_MM

SIDES = ("right", "left")
# Width of the fat planes between neighbouring muscles (mm): 1-2 mm of intermuscular fat; wider
# than the lattice step (LATTICE_MM), so that sampling never loses one. 1.6 mm leaves the healthy
# proximal thigh at least half muscle under the fitted lean body (1.75 mm left 49.7 %).
FAT_PLANE_MM = 1.6
# Reach of a muscle around its path, in radii of its PCSA circle: far enough that healthy
# muscles fill the space between bone and subcutaneous fat, near enough that atrophy (smaller
# radii) leaves fat between them (DOMAIN.md 2.8).
REACH_RADII = 4.5
REACH_MIN_MM = 20.0  # small muscles still reach the bone they lie on
CAVITY_REACH_RADII = 2.0  # reach of the muscles that line the cavities (iliacus, psoas, ...)
CAVITY_CORE_RADII = 1.3  # ... and how far from their path they fill the cavity itself
# Gluteus maximus is a broad sheet over the whole buttock, the most superficial and largest muscle
# there, 30-60 mm thick in healthy adults and thinner in chronic SCI (DOMAIN.md 3). Its three
# Gait2392 lines of action run along the sheet, so at REACH_RADII it left much of the buttock under
# the subcutaneous fat as fat: in the case of seed 1 (muscle bulk 0.41), fat from the skin to the
# bone 20 mm medial to the head centre. Twice the reach fills it: measured on 1 mm labels through
# the head centre of seeds 1-3 (phase none), 37-45 mm of muscle behind the head centre and 24-43 mm
# 20 mm medial to it, directly under the subcutaneous fat.
SHEET_REACH_SCALE = {"gluteus_maximus": 2.0}
# The field is sampled once per anatomy every LATTICE_MM (fine enough to carry fat planes of
# FAT_PLANE_MM), in cubes of LATTICE_CHUNK nodes, each reading only the muscles that matter there.
LATTICE_MM = 1.5
LATTICE_CHUNK = 32
# The field is held within +-FIELD_CLAMP_MM (sampled_field.py).
# A cube is first sampled every other node; cells of that lattice whose corners all lie farther
# than this (mm) on one side of the surface, held by one muscle, are interpolated.
REFINE_MM = 3.5
ENVELOPE_MM = 4.0  # lean body and cavities, sampled on a coarser lattice
MUSCLE_Z_MM = (SCENE_Z_MM[0] - 12.0, SCENE_Z_MM[1] + 12.0)  # the muscles are drawn in this range
_THREADS = os.cpu_count() or 1  # results do not depend on it
_LOCK = threading.RLock()


# ----------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transform:
    """Similarity ``x -> scale * rotation @ x + translation`` from a Gait2392 body frame, written
    in patient axes (mm), to the patient frame (mm). ``rms_mm``: residual at its landmarks."""

    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    rms_mm: float = 0.0

    def apply(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, float).reshape(-1, 3)
        return self.scale * pts @ self.rotation.T + self.translation


def opensim_to_patient(points, side: str) -> np.ndarray:
    """Gait2392 right-side points (OpenSim axes: x anterior, y superior, z right) in patient
    axes (x right, y anterior, z superior); mirrored through x = 0 for the left side."""
    p = np.asarray(points, float).reshape(-1, 3)
    out = p[:, [2, 0, 1]].copy()
    if side == "left":
        out[:, 0] *= -1.0
    elif side != "right":
        raise ValueError(f"side = {side!r} is not 'right' or 'left'")
    return out


def fit_similarity(source: np.ndarray, target: np.ndarray) -> Transform:
    """Least-squares similarity taking ``source`` onto ``target`` (rows are matching points, mm)
    by Umeyama's method (IEEE TPAMI 13:376, 1991): a proper rotation, one scale."""
    src, dst = np.asarray(source, float), np.asarray(target, float)
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / (a * a).sum() * len(src))
    translation = md - scale * rotation @ ms
    t = Transform(rotation, scale, translation)
    rms = float(np.sqrt(((t.apply(src) - dst) ** 2).sum(axis=1).mean()))
    return Transform(rotation, scale, translation, rms)


def _other(side: str) -> str:
    return "left" if side == "right" else "right"


def _pelvis_pairs(landmarks: Mapping[str, np.ndarray], side: str) -> tuple[np.ndarray, np.ndarray]:
    """Matching (model, patient) pelvic points: this side's landmarks, both ASIS and both hips."""
    names = ("asis", "psis", "pubic_tubercle", "head_centre", "ischial_tuberosity")
    model = opensim_to_patient([g.PELVIS_LANDMARKS[n] for n in names], side)
    patient = [landmarks[f"{n}_{side}"] for n in names]
    mirrored = opensim_to_patient([g.PELVIS_LANDMARKS[n] for n in ("asis", "head_centre")], side)
    mirrored[:, 0] *= -1.0  # the model pelvis is symmetric about its mid-sagittal plane
    other = _other(side)
    patient += [landmarks[f"asis_{other}"], landmarks[f"head_centre_{other}"]]
    return np.vstack([model, mirrored]), np.asarray(patient, float)


def _femur_pairs(landmarks: Mapping[str, np.ndarray], side: str) -> tuple[np.ndarray, np.ndarray]:
    names = ["head_centre", "greater_trochanter", "lesser_trochanter", "knee_centre"]
    names += [n for n in ("lateral_epicondyle", "medial_epicondyle") if f"{n}_{side}" in landmarks]
    model = opensim_to_patient([g.FEMUR_LANDMARKS[n] for n in names], side)
    return model, np.asarray([landmarks[f"{n}_{side}"] for n in names], float)


def register(landmarks: Mapping[str, np.ndarray], side: str) -> tuple[Transform, Transform]:
    """Similarities from Gait2392's pelvis and femur frames to the patient frame for ``side``.

    ``landmarks`` (mm, patient frame) holds for both sides ``asis_``, ``psis_``,
    ``pubic_tubercle_``, ``head_centre_``, ``ischial_tuberosity_`` (pelvis) and
    ``greater_trochanter_``, ``lesser_trochanter_``, ``knee_centre_`` (femur), each + side;
    ``lateral_epicondyle_`` / ``medial_epicondyle_`` are used when given.
    """
    return fit_similarity(*_pelvis_pairs(landmarks, side)), fit_similarity(*_femur_pairs(landmarks, side))


def muscle_paths(landmarks: Mapping[str, np.ndarray], side: str) -> dict[str, np.ndarray]:
    """``f"{muscle}_{side}"`` -> (K, 3) path points (mm, patient frame), origin first."""
    pelvis, femur = register(landmarks, side)
    knee = np.asarray(g.KNEE_CENTRE_IN_FEMUR)
    out = {}
    for m in g.MUSCLES:
        pts = []
        for body, p in m.path:
            if body == "pelvis":
                pts.append(pelvis.apply(opensim_to_patient(p, side))[0])
            else:  # tibia points sit in the femur frame with the knee extended
                q = np.asarray(p) + (knee if body == "tibia" else 0.0)
                pts.append(femur.apply(opensim_to_patient(q, side))[0])
        out[f"{m.name}_{side}"] = np.asarray(pts)
    return out


def standin_landmarks(spec) -> dict[str, np.ndarray]:
    """Landmarks of today's analytic hip (``anatomy.hip_landmarks``), right side and its mirror.

    A stand-in until the shape model gives real ones. The analytic hip has no PSIS or pubic
    tubercle: they are Gait2392's, placed by a similarity fitted to the ASIS, AIIS, hip centre
    and ischial tuberosity. The knee centre is 420 mm down the shaft axis from the head centre.
    """
    from nmosim.phantoms.anatomy import hip_landmarks  # the analytic scene, for the stand-in only

    lm = hip_landmarks(spec)
    names = ("asis", "aiis", "head_centre", "ischial_tuberosity")
    model = opensim_to_patient([g.PELVIS_LANDMARKS[n] for n in names], "right")
    ours = np.array([lm.asis, lm.aiis, lm.head_center, lm.ischial_tuberosity])
    flip = np.array([-1.0, 1.0, 1.0])
    # Both sides' points: the right side's alone lie nearly on one line.
    fit = fit_similarity(np.vstack([model, model * flip]), np.vstack([ours, ours * flip]))
    extra = [g.PELVIS_LANDMARKS["psis"], g.PELVIS_LANDMARKS["pubic_tubercle"]]
    psis, pubic = fit.apply(opensim_to_patient(extra, "right"))
    right = {
        "asis": lm.asis,
        "aiis": lm.aiis,
        "psis": psis,
        "pubic_tubercle": pubic,
        "head_centre": lm.head_center,
        "greater_trochanter": lm.greater_trochanter,
        "lesser_trochanter": lm.lesser_trochanter,
        "ischial_tuberosity": lm.ischial_tuberosity,
        "knee_centre": lm.head_center + 420.0 * lm.shaft_axis,
        "shaft_axis": lm.shaft_axis,
    }
    out = {}
    for name, v in right.items():
        v = np.asarray(v, float)
        out[f"{name}_right"] = v.copy()
        out[f"{name}_left"] = v * flip
    return out


# ----------------------------------------------------------------------------------------------
# Territories: one field per anatomy, sampled on a lattice and read by interpolation
# ----------------------------------------------------------------------------------------------


def _segments(path: np.ndarray) -> tuple:
    """Per segment of ``path``, in float32: its vector ``ab`` (3 scalars), ``|ab|^2``, the inverse
    of that, and its start's offset from the path's first point (3 scalars); worked out once per
    path (the sweep reads them for every block of points)."""
    p = np.ascontiguousarray(path)
    return _segment_table(p.tobytes(), p.dtype.str, p.shape[0])


@functools.lru_cache(maxsize=1024)
def _segment_table(raw: bytes, dtype: str, n: int) -> tuple:
    path = np.frombuffer(raw, dtype).reshape(n, 3)
    out = []
    for a, b in zip(path[:-1], path[1:], strict=True):
        ab = (b - a).astype(np.float32)
        dd = np.float32(max(float(ab @ ab), 1e-12))
        out.append((tuple(ab), dd, np.float32(1.0) / dd, tuple((a - path[0]).astype(np.float32))))
    return tuple(out)


def _segment_sweep(ax, ay, az, path: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance (mm, float32) to the polyline ``path`` of the points whose offsets from its first
    point are ``ax``, ``ay``, ``az`` (float32, broadcast together), with the index (int8) of the
    nearest segment and the position ``t`` (0 to 1) of the nearest point along it."""
    best = seg = where = None
    r2 = ax * ax + ay * ay + az * az
    for k, (ab, dd, inv, (sx, sy, sz)) in enumerate(_segments(path)):
        # |p - a - t ab|^2 = |p - a|^2 - t (2 (p - a).ab - t |ab|^2), t clipped to the segment
        if k == 0:
            tn, rel2 = ax * ab[0] + ay * ab[1] + az * ab[2], r2
        else:
            bx, by, bz = ax - sx, ay - sy, az - sz
            tn, rel2 = bx * ab[0] + by * ab[1] + bz * ab[2], bx * bx + by * by + bz * bz
        t = np.clip(tn * inv, 0.0, 1.0)
        d2 = rel2 - t * (np.float32(2.0) * tn - t * dd)
        if best is None:
            best, seg, where = d2, np.zeros(d2.shape, np.int8), t
        else:  # nearer segments overwrite in place (best, seg and where are arrays of their own)
            closer = d2 < best
            np.copyto(best, d2, where=closer)
            np.copyto(seg, np.int8(k), where=closer)
            np.copyto(where, t, where=closer)
    return np.sqrt(np.maximum(best, 0.0)), seg, where


def _polyline_distance(x: np.ndarray, y: np.ndarray, z: np.ndarray, path: np.ndarray):
    """:func:`_segment_sweep` on the lattice of axes ``x``, ``y``, ``z`` (mm), arrays [z, y, x]."""
    a = path[0]
    ax = np.asarray(x - a[0], np.float32)[None, None, :]
    ay = np.asarray(y - a[1], np.float32)[None, :, None]
    az = np.asarray(z - a[2], np.float32)[:, None, None]
    shape = (az.shape[0], ay.shape[1], ax.shape[2])
    return tuple(np.broadcast_to(v, shape) for v in _segment_sweep(ax, ay, az, path))


def _point_distance(columns: tuple[np.ndarray, np.ndarray, np.ndarray], path: np.ndarray):
    """:func:`_segment_sweep` at points given as contiguous columns x, y, z (float64, mm)."""
    rel = [(c - path[0][a]).astype(np.float32) for a, c in enumerate(columns)]
    return _segment_sweep(rel[0], rel[1], rel[2], path)


def _interpolate(values: np.ndarray, origin: np.ndarray, step: float, axes) -> np.ndarray:
    """Trilinear interpolation (float32 [z, y, x]) of ``values`` (nodes ``step`` apart from
    ``origin``, x y z) on the lattice of ``axes`` (x, y, z in mm); clamped at the edges."""
    cells, crop = [], [slice(None)] * 3
    for axis, coords in zip((2, 1, 0), axes, strict=True):
        n = values.shape[axis]
        u = np.clip((np.asarray(coords, float) - origin[2 - axis]) / step, 0.0, n - 1.0)
        i0 = np.minimum(np.floor(u).astype(np.intp), n - 2)
        shape = [1, 1, 1]
        shape[axis] = -1
        first = int(i0.min())
        crop[axis] = slice(first, int(i0.max()) + 2)  # only the nodes read: the same numbers
        cells.append((axis, i0 - first, (u - i0).astype(np.float32).reshape(shape)))
    out = values[tuple(crop)]
    for axis, i0, w in cells:
        out = np.take(out, i0, axis=axis) * (1.0 - w) + np.take(out, i0 + 1, axis=axis) * w
    return out


def _argmin(stack: np.ndarray) -> np.ndarray:
    """``np.argmin(stack, axis=0)`` for a stack without NaN: the first index of the least value,
    found from the least value row by row (numpy's argmin along a leading axis is slow)."""
    least = stack.min(axis=0)
    k = np.zeros(least.shape, np.intp)
    for j in range(stack.shape[0] - 1, -1, -1):  # the first row that holds it is written last
        np.copyto(k, j, where=stack[j] == least)
    return k


def _pick(stack: np.ndarray, k: np.ndarray, value: Any = None) -> np.ndarray | None:
    """``stack[k[p], p]`` at every point ``p`` (``stack``: one contiguous array per muscle, along
    axis 0; ``k``: integers of the points' shape); with ``value``, writes it there instead."""
    flat = stack.reshape(-1)
    index = k.reshape(-1) * k.size + np.arange(k.size)
    if value is not None:
        flat[index] = value
        return None
    return flat[index].reshape(k.shape)


@dataclass(frozen=True, eq=False)
class MuscleField:
    """All muscles of both sides: paths (mm), PCSA radii (mm) and reaches (mm), and the shapes
    that bound them.

    The rule, at a point: each muscle within its reach plus a fat plane competes by its weighted
    distance e = distance to its path less its PCSA radius; the nearest muscle A holds the point
    if it lies within A's reach, at least a fat plane (in e) nearer to A than to the nearest muscle
    B of another group, inside the lean body and out of the cavities (but for the belly of the
    muscles that line them). As a field, negative inside (mm):

        f_A = max(d_A - R_A, min((e_A - e_B + w) / 2, R_B + plane - d_B), cavity_A, bar_A)

    with w = plane times the chord of half the angle between the directions from the two paths
    (a fat plane ``plane`` wide however they meet) and bar_A the largest R_j + plane - d_j of the
    muscles nearer than A in e that no longer compete (a plane at the end of their reach, and a
    field continuous as they leave the competition). The union is min(f_A, f_2), f_2 the same
    bar for the next muscle A2, raised to the lean body's distance and clamped to
    +-FIELD_CLAMP_MM. It is sampled once, every LATTICE_MM over the lean body within
    ``z_range_mm``, and read by interpolation (:class:`SampledField`); beyond that range
    there is no muscle.
    """

    names: tuple[str, ...]
    paths: tuple[np.ndarray, ...]
    radii: np.ndarray
    reaches: np.ndarray
    lean: Shape
    cavity: Shape
    in_cavity: np.ndarray  # bool per muscle: may lie inside ``cavity``
    groups: tuple[str, ...]  # parts of one muscle (same group) meet without a fat plane
    plane_mm: float = FAT_PLANE_MM
    z_range_mm: tuple[float, float] = MUSCLE_Z_MM
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    @functools.cached_property
    def group_ids(self) -> np.ndarray:
        """One integer per muscle; equal for parts of one muscle (no fat plane between them)."""
        names = sorted(set(self.groups))
        return np.array([names.index(gr) for gr in self.groups])

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The lattice's axes x, y, z (mm): the lean body and the muscles' reach, in ``z_range_mm``."""
        lo = np.min([p.min(axis=0) - r for p, r in zip(self.paths, self.reaches, strict=True)], axis=0)
        hi = np.max([p.max(axis=0) + r for p, r in zip(self.paths, self.reaches, strict=True)], axis=0)
        llo, lhi = self.lean.bounds()
        lo, hi = np.maximum(lo, llo), np.minimum(hi, lhi)
        lo[2], hi[2] = max(lo[2], self.z_range_mm[0]), min(hi[2], self.z_range_mm[1])
        h = LATTICE_MM
        lo = np.floor(lo / h) * h - 2 * h
        n = np.ceil((np.maximum(hi, lo + h) - lo) / h).astype(int) + 3
        return tuple(lo[a] + h * np.arange(n[a]) for a in range(3))

    def _envelope(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lean body and cavity distances (mm, float32 [z, y, x]) on a lattice, interpolated from
        a coarse one (ENVELOPE_MM): both are smooth blends of ellipsoids and capsules."""
        if "envelope" not in self._cache:
            self._build_envelope()
        lean, cavity, lo = self._cache["envelope"]
        axes = (x, y, z)
        return _interpolate(lean, lo, ENVELOPE_MM, axes), _interpolate(cavity, lo, ENVELOPE_MM, axes)

    def _build_envelope(self) -> None:
        with _LOCK:
            if "envelope" not in self._cache:
                ax = self.axes()
                h = ENVELOPE_MM
                lo = np.array([a[0] for a in ax]) - h
                n = np.ceil((np.array([a[-1] for a in ax]) + h - lo) / h).astype(int) + 1
                cz, cy, cx = (lo[a] + h * np.arange(n[a]) for a in (2, 1, 0))
                gz, gy, gx = np.meshgrid(cz, cy, cx, indexing="ij")
                pts = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1)
                lean = self.lean.sdf(pts).reshape(gz.shape).astype(np.float32)
                cavity = self.cavity.sdf(pts).reshape(gz.shape).astype(np.float32)
                self._cache["envelope"] = (lean, cavity, lo)

    def lattice_field(
        self, x: np.ndarray, y: np.ndarray, z: np.ndarray, muscles=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rule's field (mm, float32 [z, y, x]) and the nearest muscle's index (int8, -1 where
        none is within reach) on the lattice of axes ``x``, ``y``, ``z`` (mm), from ``muscles``
        (indices; default all)."""
        lean, cav = self._envelope(x, y, z)
        coords = (
            np.asarray(x, np.float32)[None, None, :],
            np.asarray(y, np.float32)[None, :, None],
            np.asarray(z, np.float32)[:, None, None],
        )
        return self._rule(lean, cav, muscles, lambda path: _polyline_distance(x, y, z, path), coords)

    def point_field(self, points: np.ndarray, muscles=None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`lattice_field` at ``points`` (N, 3) (mm)."""
        pts = np.asarray(points, float).reshape(-1, 3)
        if "envelope" not in self._cache:
            self._build_envelope()
        lean, cavity, lo = self._cache["envelope"]
        u = ((pts - lo) / ENVELOPE_MM)[:, ::-1].T
        lean = ndimage.map_coordinates(lean, u, order=1, mode="nearest").astype(np.float32)
        cav = ndimage.map_coordinates(cavity, u, order=1, mode="nearest").astype(np.float32)
        columns = tuple(np.ascontiguousarray(pts[:, a]) for a in range(3))
        coords = tuple(c.astype(np.float32) for c in columns)
        return self._rule(lean, cav, muscles, lambda path: _point_distance(columns, path), coords)

    def _rule(
        self, lean: np.ndarray, cav: np.ndarray, muscles, distance, coords
    ) -> tuple[np.ndarray, np.ndarray]:
        """The field and nearest muscle from ``distance`` (path -> distance, nearest segment and
        position along it) at the points of ``coords`` (x, y, z, float32, broadcast to
        ``lean.shape``), given the lean body's and the cavities' distances there."""
        shape = lean.shape
        if lean.min() >= FIELD_CLAMP_MM:  # out of the lean body
            return np.full(shape, np.float32(FIELD_CLAMP_MM)), np.full(shape, -1, np.int8)
        if muscles is None:
            muscles = range(len(self.paths))
        order = np.array(sorted(muscles, key=lambda j: (self.group_ids[j], j)), np.intp)
        if order.size == 0:
            return np.full(shape, np.float32(FIELD_CLAMP_MM)), np.full(shape, -1, np.int8)
        inf = np.float32(np.inf)
        plane = np.float32(self.plane_mm)
        dist = np.empty((order.size, *shape), np.float32)
        seg = np.empty((order.size, *shape), np.int8)
        along = np.empty((order.size, *shape), np.float32)
        for k, j in enumerate(order):
            dist[k], seg[k], along[k] = distance(self.paths[j])
        col = (slice(None),) + (None,) * len(shape)
        beyond = dist - self.reaches[order].astype(np.float32)[col]  # d - R
        outside = np.minimum(beyond.min(axis=0), np.float32(FIELD_CLAMP_MM))
        weighted = dist - self.radii[order].astype(np.float32)[col]  # e, within reach or not
        e = np.where(beyond <= plane, weighted, inf)  # e of the muscles that compete
        # A: the nearest muscle; A2: the next (any group); B: the nearest of another group than A
        k_a = _argmin(e)
        e_a = _pick(e, k_a)
        rest = e.copy()
        _pick(rest, k_a, inf)
        k_2 = _argmin(rest)
        e_2 = _pick(rest, k_2)
        group = self.group_ids[order]
        rest[group[col] == group[k_a][None]] = inf
        k_b = _argmin(rest)
        e_b = _pick(rest, k_b)
        x_a, x_2, x_b = (_pick(beyond, k) for k in (k_a, k_2, k_b))
        d_a, d_2 = (_pick(dist, k) for k in (k_a, k_2))
        w_a, w_2 = (_pick(weighted, k) for k in (k_a, k_2))
        core = (CAVITY_CORE_RADII * self.radii[order]).astype(np.float32)
        lining = self.in_cavity[order]
        # Out of the cavities, but for the belly of the muscles that line them.
        c_a = np.where(lining[k_a], np.minimum(-cav, d_a - core[k_a]), -cav)
        c_2 = np.where(lining[k_2], np.minimum(-cav, d_2 - core[k_2]), -cav)
        x_b = np.where(np.isfinite(e_b), x_b, inf)
        # A muscle nearer (in e) than A or A2 but beyond its reach and a plane does not compete:
        # it bars them up to that limit, plane - (d - R), which keeps the field continuous as
        # muscles leave the competition (for A2, A itself bars it wherever A competes).
        slack = plane - beyond
        bar_a = np.where(weighted < w_a, slack, -inf).max(axis=0)
        bar_2 = np.where(weighted < w_2, slack, -inf).max(axis=0)
        # The plane, in e, is ``plane`` times half the angle's chord between the directions from
        # the two paths: e_B - e_A grows across the bisector at that chord's rate, so the fat plane
        # is ``plane`` wide however the muscles meet. B bars A up to its own limit, plane - (d - R).
        d_b = _pick(dist, k_b)
        cos = self._dot(order, seg, along, coords, k_a, k_b) / np.maximum(d_a * d_b, np.float32(1e-6))
        chord = np.sqrt(np.clip(0.5 - 0.5 * cos, 0.0, 1.0))
        with np.errstate(invalid="ignore"):
            width = plane * chord
            f_a = np.maximum(np.maximum(x_a, np.minimum(0.5 * (e_a - e_b + width), plane - x_b)), c_a)
            f_a = np.maximum(f_a, bar_a)
            f_2 = np.maximum(np.maximum(x_2, c_2), bar_2)
            f_2 = np.where(np.isfinite(e_2), f_2, inf)
            held = np.isfinite(e_a)
            out = np.where(held, np.minimum(f_a, f_2), outside)
        label = np.where(held, order[k_a], -1).astype(np.int8)
        out = np.clip(np.maximum(out, lean), -FIELD_CLAMP_MM, FIELD_CLAMP_MM).astype(np.float32)
        return out, label

    def _dot(self, order, seg, along, coords, k_a, k_b) -> np.ndarray:
        """(p - q_A) . (p - q_B) at the points ``coords``, q the nearest points of the paths of
        muscles ``order[k_a]`` and ``order[k_b]`` (their segments ``seg`` and positions ``along``)."""
        n = max(len(self.paths[j]) for j in order) - 1
        starts = np.zeros((order.size, n, 3), np.float32)
        steps = np.zeros((order.size, n, 3), np.float32)
        for k, j in enumerate(order):
            path = self.paths[j]
            starts[k, : len(path) - 1] = path[:-1]
            steps[k, : len(path) - 1] = np.diff(path, axis=0)
        # One component at a time, each gathered from its own contiguous table (the same numbers).
        starts = [np.ascontiguousarray(starts[..., c]).reshape(-1) for c in range(3)]
        steps = [np.ascontiguousarray(steps[..., c]).reshape(-1) for c in range(3)]
        (q_a, t_a), (q_b, t_b) = ((k * n + _pick(seg, k), _pick(along, k)) for k in (k_a, k_b))
        out = np.zeros(k_a.shape, np.float32)
        for c in range(3):
            foot_a = coords[c] - starts[c][q_a] - t_a * steps[c][q_a]
            foot_b = coords[c] - starts[c][q_b] - t_b * steps[c][q_b]
            out += foot_a * foot_b
        return out

    def _relevant(self, centres: np.ndarray, half: np.ndarray) -> list[np.ndarray]:
        """Per cube (centre, half-diagonal, mm): the muscles that may set the field in it. A
        muscle farther than its reach plus the clamp changes nothing; nor does one whose weighted
        distance exceeds, all over the cube, that of two other groups' muscles in reach there; nor
        one farther than its reach, a plane and REFINE_MM all over the cube where another is in
        reach all over it."""
        starts = np.vstack([p[:-1] for p in self.paths])
        dirs = np.vstack([np.diff(p, axis=0) for p in self.paths])
        owner = np.concatenate([np.full(len(p) - 1, i) for i, p in enumerate(self.paths)])
        runs = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
        inv = 1.0 / np.maximum(np.einsum("ij,ij->i", dirs, dirs), 1e-12)
        rel = centres[:, None, :] - starts[None, :, :]
        t = np.clip(np.einsum("csj,sj->cs", rel, dirs) * inv, 0.0, 1.0)
        q = rel - t[:, :, None] * dirs[None, :, :]
        dc = np.minimum.reduceat(np.sqrt(np.einsum("csj,csj->cs", q, q)), runs, axis=1)
        slack = half[:, None] + 1e-3  # and float32 rounding
        d_lo, d_hi = np.maximum(dc - slack, 0.0), dc + slack
        near = d_lo <= self.reaches + FIELD_CLAMP_MM
        sure = d_hi <= self.reaches + self.plane_mm
        e_hi = np.where(sure, d_hi - self.radii, np.inf)
        ngroups = int(self.group_ids.max()) + 1
        by_group = np.full((centres.shape[0], ngroups), np.inf)
        for j in range(len(self.paths)):
            g = self.group_ids[j]
            by_group[:, g] = np.minimum(by_group[:, g], e_hi[:, j])
        second = np.sort(by_group, axis=1)[:, 1]
        # Beyond its reach (plus a plane) all over the cube, a muscle only sets the field where no
        # muscle is within reach, or bars a muscle farther in e by plane - (d - R): deeper than
        # REFINE_MM, where the sign and the refinement no longer depend on it, when it lies that
        # much farther still.
        some = d_lo <= self.reaches + self.plane_mm + REFINE_MM
        keep = (some & (d_lo - self.radii <= second[:, None])) | (near & ~sure.any(axis=1)[:, None])
        return [np.flatnonzero(row) for row in keep]

    def _cube(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, muscles: np.ndarray):
        """:meth:`lattice_field` on a small lattice, from every other node first: nodes of the
        cells of that coarser lattice whose corners all lie on one side, farther than
        REFINE_MM from the surface, and share one muscle take the interpolation of the corners."""
        shape = (z.size, y.size, x.size)
        if muscles.size == 0:
            return np.full(shape, np.float32(FIELD_CLAMP_MM)), np.full(shape, -1, np.int8)
        picks = [np.unique(np.r_[np.arange(0, n, 2), n - 1]) for n in shape]
        if any(p.size < 2 for p in picks):
            return self.lattice_field(x, y, z, muscles)
        coarse, held = self.lattice_field(x[picks[2]], y[picks[1]], z[picks[0]], muscles)
        if coarse.min() >= FIELD_CLAMP_MM:
            return np.full(shape, np.float32(FIELD_CLAMP_MM)), np.full(shape, -1, np.int8)
        corner_lo = coarse.copy()
        corner_hi = coarse.copy()
        lab_lo = held.copy()
        lab_hi = held.copy()
        for axis in range(3):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(None, -1), slice(1, None)
            lo, hi = tuple(lo), tuple(hi)
            corner_lo = np.minimum(corner_lo[lo], corner_lo[hi])
            corner_hi = np.maximum(corner_hi[lo], corner_hi[hi])
            lab_lo = np.minimum(lab_lo[lo], lab_lo[hi])
            lab_hi = np.maximum(lab_hi[lo], lab_hi[hi])
        settled = ((corner_lo > REFINE_MM) | (corner_hi < -REFINE_MM)) & (lab_lo == lab_hi)
        cells, weights = [], []
        for n, p in zip(shape, picks, strict=True):
            i = np.arange(n)
            j = np.clip(np.searchsorted(p, i, side="right") - 1, 0, p.size - 2)
            cells.append(j)
            weights.append(((i - p[j]) / (p[j + 1] - p[j])).astype(np.float32))
        out = coarse
        for axis in range(3):
            w = weights[axis].reshape([-1 if a == axis else 1 for a in range(3)])
            j = cells[axis]
            out = np.take(out, j, axis=axis) * (1.0 - w) + np.take(out, j + 1, axis=axis) * w
        label = held[np.ix_(cells[0], cells[1], cells[2])]
        todo = np.argwhere(~settled[np.ix_(cells[0], cells[1], cells[2])])
        if todo.size:
            pts = np.stack([x[todo[:, 2]], y[todo[:, 1]], z[todo[:, 0]]], axis=1)
            f, lab = self.point_field(pts, muscles)
            out[tuple(todo.T)] = f
            label[tuple(todo.T)] = lab
        return out.astype(np.float32), label

    def sampled(self) -> tuple[np.ndarray, np.ndarray]:
        """The rule's field (float32) and nearest muscle (int8) at the lattice's nodes [z, y, x],
        computed once, cube by cube with only the muscles that matter there."""
        with _LOCK:
            if "sampled" in self._cache:
                return self._cache["sampled"]
            self._build_envelope()
            x, y, z = self.axes()
            shape = (z.size, y.size, x.size)
            values = np.empty(shape, np.float32)
            label = np.empty(shape, np.int8)
            c = LATTICE_CHUNK
            cuts = [np.arange(0, n, c) for n in shape]
            cubes = [(a, b, d) for a in cuts[0] for b in cuts[1] for d in cuts[2]]
            lo = np.array([[x[d], y[b], z[a]] for a, b, d in cubes])
            hi = np.array(
                [
                    [x[min(d + c, x.size) - 1], y[min(b + c, y.size) - 1], z[min(a + c, z.size) - 1]]
                    for a, b, d in cubes
                ]
            )
            relevant = self._relevant((lo + hi) / 2, np.linalg.norm(hi - lo, axis=1) / 2)

            def fill(k: int) -> None:
                a, b, d = cubes[k]
                sl = (slice(a, a + c), slice(b, b + c), slice(d, d + c))
                values[sl], label[sl] = self._cube(x[sl[2]], y[sl[1]], z[sl[0]], relevant[k])

            with ThreadPoolExecutor(max_workers=_THREADS) as pool:
                list(pool.map(fill, range(len(cubes))))
            # No muscle on the lattice's faces, and a slope of 1 up to them: the field stays closed
            # and its gradient bounded there.
            ramp = np.float32(0.5 * LATTICE_MM) - LATTICE_MM * np.arange(int(FIELD_CLAMP_MM / LATTICE_MM) + 1)
            for axis in range(3):
                for k, floor in enumerate(ramp[: values.shape[axis] // 2]):
                    for end in (k, values.shape[axis] - 1 - k):
                        face = [slice(None)] * 3
                        face[axis] = end
                        values[tuple(face)] = np.maximum(values[tuple(face)], floor)
            self._cache["sampled"] = (values, label)
            return values, label

    def sdf(self, i: int, points: np.ndarray) -> np.ndarray:
        """Signed distance bound (mm) to muscle ``i``'s volume (:class:`Territory`)."""
        return self.shape_of((i,)).sdf(points)

    def bounds(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """A box (mm) that holds muscle ``i``."""
        return self.shape_of((i,)).bounds()

    def _held_boxes(self) -> list[tuple[slice, slice, slice] | None]:
        """Per muscle, the box (slices [z, y, x] of the lattice) of the nodes it holds inside
        (negative field), or None: found in one pass over the lattice for all muscles."""
        with _LOCK:
            if "boxes" not in self._cache:
                values, label = self.sampled()
                held = np.where(values < 0.0, label.astype(np.int16) + 1, 0)
                self._cache["boxes"] = ndimage.find_objects(held, max_label=len(self.paths))
            return self._cache["boxes"]

    def shape_of(self, members: tuple[int, ...]) -> SampledField:
        """The volume of the muscles ``members`` (indices) as a :class:`SampledField`. Nodes held
        by another muscle read the field's absolute value: two territories that share a cell of
        the lattice then hold opposite values there and never overlap."""
        key = ("shape", tuple(sorted(set(members))))
        with _LOCK:
            if key in self._cache:
                return self._cache[key]
            values, label = self.sampled()
            x, y, z = self.axes()
            origin = np.array([x[0], y[0], z[0]])
            if len(key[1]) < len(self.paths):
                boxes = [b for b in (self._held_boxes()[i] for i in key[1]) if b is not None]
                if not boxes:
                    lo = np.zeros(3, int)
                    sub = np.full((2, 2, 2), FIELD_CLAMP_MM, np.float32)
                else:
                    first = np.min([[s.start for s in b] for b in boxes], axis=0)
                    last = np.max([[s.stop - 1 for s in b] for b in boxes], axis=0)
                    lo = np.maximum(first - 3, 0)
                    hi = np.minimum(last + 4, values.shape)
                    sl = tuple(slice(lo[a], hi[a]) for a in range(3))
                    mine = np.isin(label[sl], np.array(key[1], np.int8))
                    sub = np.where(mine, values[sl], np.abs(values[sl]))
                origin = origin + lo[::-1] * LATTICE_MM
                values = sub
            shape = sampled_field(values, origin, LATTICE_MM)
            self._cache[key] = shape
            return shape


@dataclass(frozen=True, eq=False)
class Territory(Shape):
    """Muscle ``index`` of a :class:`MuscleField` as a Shape."""

    muscles: MuscleField
    index: int

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        return self.muscles.shape_of((self.index,)).sdf(points)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.muscles.shape_of((self.index,)).bounds()


@dataclass(frozen=True, eq=False)
class MuscleUnion(Shape):
    """The union of the muscles ``members`` (indices into ``muscles``) as one Shape: the field
    of :class:`MuscleField` read once for all of them."""

    muscles: MuscleField
    members: tuple[int, ...]

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        return self.muscles.shape_of(self.members).sdf(points)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.muscles.shape_of(self.members).bounds()


def cavity_shape(landmarks: Mapping[str, np.ndarray]) -> Shape:
    """The pelvic and abdominal cavities (organs, no muscle but those lining them), from the
    landmarks: ellipsoids in a pelvic frame set by the hip centres, ASIS and PSIS.

    Sizes are in units of the inter-hip distance (175 mm in the analytic hip): the lesser pelvis
    holds bladder and rectum; the abdomen starts at the pelvic brim, inside the iliac wings; the
    ischioanal fossae lie below the lesser pelvis, between the ischial tuberosities.
    """
    hr, hl = (
        np.asarray(landmarks["head_centre_right"], float),
        np.asarray(landmarks["head_centre_left"], float),
    )
    o = (hr + hl) / 2.0
    x = (hr - hl) / np.linalg.norm(hr - hl)
    front = (
        landmarks["asis_right"] + landmarks["asis_left"] - landmarks["psis_right"] - landmarks["psis_left"]
    ) / 2.0
    y = front - (front @ x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    rot = np.stack([x, y, z], axis=1)
    s = np.linalg.norm(hr - hl) / 175.0
    lesser = Ellipsoid(o + rot @ (np.array([0.0, -10.0, 8.0]) * s), np.array([42.0, 76.0, 58.0]) * s, rot)
    abdomen = Ellipsoid(o + rot @ (np.array([0.0, 0.0, 150.0]) * s), np.array([92.0, 62.0, 128.0]) * s, rot)
    # The ischioanal fossae: fat between the ischial tuberosities, behind the urogenital region,
    # from the pelvic floor to the perineum, around the anal canal (Gray's Anatomy 1918, "The
    # Ischiorectal Fossa"); the adductor magnus and gluteus maximus border it, never fill it.
    fossae = Ellipsoid(o + rot @ (np.array([0.0, -45.0, -68.0]) * s), np.array([36.0, 28.0, 38.0]) * s, rot)
    return Union((lesser, abdomen, fossae), smooth_mm=20.0 * s)


def _group(name: str) -> str:
    """The muscle a part belongs to: parts of one muscle meet without a fat plane. Iliacus and
    psoas share one tendon onto the lesser trochanter (iliopsoas)."""
    name = name.rstrip("_0123456789")
    return "iliopsoas" if name in ("iliacus", "psoas") else name


def muscle_field(landmarks: Mapping[str, np.ndarray], lean: Shape, bulk: float = 1.0) -> MuscleField:
    """Every muscle of both sides, sized for ``bulk`` (1 healthy; 0.5 half the cross-section)."""
    if not 0.05 <= bulk <= 1.5:
        raise ValueError(f"bulk = {bulk!r} is outside [0.05, 1.5]")
    names, paths, radii, cavity, groups, sheet = [], [], [], [], [], []
    for side in SIDES:
        for name, path in muscle_paths(landmarks, side).items():
            names.append(name)
            paths.append(path)
        pelvis, _ = register(landmarks, side)
        for m in g.MUSCLES:
            # PCSA = F_max / specific tension, scaled by bulk and by the registration's area scale.
            radii.append(np.sqrt(bulk * m.pcsa_mm2 / np.pi) * pelvis.scale)
            cavity.append(m.name in g.CAVITY_MUSCLES)
            groups.append(f"{_group(m.name)}_{side}")
            sheet.append(SHEET_REACH_SCALE.get(_group(m.name), 1.0))
    radii = np.asarray(radii)
    # Wasting shrinks the reach as bulk squared: measured on the proximal thigh, muscle area
    # then falls to 0.88 of healthy at bulk 0.7 and 0.39 at bulk 0.4 (DOMAIN.md 2.8: CSA -30
    # to -60 % after spinal cord injury), fat taking its place.
    reaches = np.maximum(REACH_RADII * radii / np.sqrt(bulk), REACH_MIN_MM) * bulk**2.0
    # Inside the cavities nothing bounds the iliopsoas but its own size: a shorter reach there.
    lining = np.asarray(cavity)
    reaches[lining] = np.minimum(reaches[lining], CAVITY_REACH_RADII * radii[lining])
    reaches *= np.asarray(sheet)
    return MuscleField(
        tuple(names),
        tuple(paths),
        radii,
        reaches,
        lean,
        cavity_shape(landmarks),
        np.asarray(cavity),
        tuple(groups),
    )


def muscle_names() -> tuple[str, ...]:
    """``f"{muscle}_{side}"`` of every muscle, right side first: the names of :func:`muscle_parts`."""
    return tuple(f"{m.name}_{side}" for side in SIDES for m in g.MUSCLES)


def muscle_parts(landmarks: Mapping[str, np.ndarray], lean: Shape, bulk: float = 1.0) -> list[Part]:
    """One muscle Part per muscle and side (names ``f"{muscle}_{side}"``), right side first.

    ``lean``: the surface under the subcutaneous fat; ``bulk`` scales every PCSA (atrophy,
    DOMAIN.md 2.8). Parts do not overlap; paint them before bones, vessels and nerves.
    """
    mf = muscle_field(landmarks, lean, bulk)
    return [Part(name, Territory(mf, i), Structure.MUSCLE, Tissue.MUSCLE) for i, name in enumerate(mf.names)]
