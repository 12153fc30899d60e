"""Hip muscles as volumes: Gait2392 paths registered to the bones' landmarks, sized by PCSA.

Registers, places and shapes; it never rasterizes and draws random numbers only where given a
generator. Patient frame RAS+ in mm (DESIGN.md 2): +x toward the patient's right (the right hip at
x > 0), +y anterior, +z superior, origin midway between the femoral head centres.

Each muscle owns the part of the lean body (inside the subcutaneous fat) that is nearer to its
belly than to any other, nearness measured from a tube of its PCSA's radius (an additively
weighted Voronoi rule), within a reach of its path that grows with its size, and outside the
pelvic and abdominal cavities unless it lines them (iliacus, psoas, obturator internus). Thin fat
planes separate neighbours.

The scene builder replaces its hand-placed tubes with::

    parts += muscle_parts(landmarks, lean_shape(spec), bulk=spec.muscle_bulk)

painted after the body and before lesions, vessels, nerves, joint spaces and bones, with
``landmarks`` from the bone model (or :func:`standin_landmarks` for the analytic hip).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from nmosim.phantoms import gait2392 as g
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.rasterize import Part
from nmosim.phantoms.shapes import Ellipsoid, Shape, Union

SIDES = ("right", "left")
# Width of the fat planes between neighbouring muscles (mm): 1-2 mm of intermuscular fat.
FAT_PLANE_MM = 1.5
# Reach of a muscle around its path, in radii of its PCSA circle: far enough that healthy
# muscles fill the space between bone and subcutaneous fat, near enough that atrophy (smaller
# radii) leaves fat between them (DOMAIN.md 2.8).
REACH_RADII = 4.5
REACH_MIN_MM = 20.0  # small muscles still reach the bone they lie on
CAVITY_REACH_RADII = 2.0  # reach of the muscles that line the cavities (iliacus, psoas, ...)
CAVITY_CORE_RADII = 1.3  # ... and how far from their path they fill the cavity itself
TILE_MM = 40.0  # points are grouped in cubes of this edge to pick the segments that matter
TILE_POINTS = 4000  # ... when a call brings at least this many
# The fat-plane term turns with the direction to the paths; dividing by this keeps the
# territory bound below the true distance where it turns fastest, near converging paths.
LIPSCHITZ_SLACK = 1.2
UNION_TILE_MM = 24.0  # the union of muscles picks the segments that matter per cube of this edge
# Depth (mm) beyond which the union reports no deeper inside distance: enough for the
# rasterizer's blocks (8 voxels) to be called uniform on grids of 2 mm or finer.
UNION_DEPTH_MM = 24.0
UNION_CHUNK = 4096  # ... and takes at most this many points at a time


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
# Territories
# ----------------------------------------------------------------------------------------------


def _closest(points: np.ndarray, path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) from each point to the polyline ``path`` and the unit vector from the
    nearest path point to the point."""
    starts, dirs = path[:-1], np.diff(path, axis=0)
    inv = 1.0 / np.maximum(np.einsum("ij,ij->i", dirs, dirs), 1e-12)
    best = np.full(points.shape[0], np.inf)
    which = np.zeros(points.shape[0], np.intp)
    for k in range(len(dirs)):
        rel = points - starts[k]
        t = np.clip(rel @ dirs[k] * inv[k], 0.0, 1.0)
        rel -= t[:, None] * dirs[k]
        d2 = np.einsum("ij,ij->i", rel, rel)
        closer = d2 < best
        best[closer] = d2[closer]
        which[closer] = k
    rel = points - starts[which]
    t = np.clip(np.einsum("ij,ij->i", rel, dirs[which]) * inv[which], 0.0, 1.0)
    rel -= t[:, None] * dirs[which]
    d = np.sqrt(np.einsum("ij,ij->i", rel, rel))
    return d, rel / np.maximum(d, 1e-9)[:, None]


def _segment_distance(points: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Distance (mm) from each point to the polyline ``path`` (K, 3)."""
    best = None
    for a, b in zip(path[:-1], path[1:], strict=True):
        ab = b - a
        t = np.clip((points - a) @ ab / max(ab @ ab, 1e-12), 0.0, 1.0)
        q = points - a - t[:, None] * ab
        d2 = np.einsum("ij,ij->i", q, q)
        best = d2 if best is None else np.minimum(best, d2)
    return np.sqrt(best)


@dataclass(frozen=True, eq=False)
class MuscleField:
    """All muscles of both sides: paths (mm), PCSA radii (mm) and reaches (mm), and the shapes
    that bound them. Each muscle's :class:`Territory` reads its neighbours from here."""

    names: tuple[str, ...]
    paths: tuple[np.ndarray, ...]
    radii: np.ndarray
    reaches: np.ndarray
    lean: Shape
    cavity: Shape
    in_cavity: np.ndarray  # bool per muscle: may lie inside ``cavity``
    groups: tuple[str, ...]  # parts of one muscle (same group) meet without a fat plane
    plane_mm: float = FAT_PLANE_MM
    _boxes: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        boxes = np.array([[p.min(axis=0), p.max(axis=0)] for p in self.paths])
        object.__setattr__(self, "_boxes", boxes)

    @functools.cached_property
    def _rivals(self) -> tuple[tuple[np.ndarray, ...], ...]:
        return tuple(self._segments_near(i) for i in range(len(self.paths)))

    @functools.cached_property
    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every path segment, muscle by muscle: starts, directions, 1 / length^2 and owners."""
        starts = np.vstack([p[:-1] for p in self.paths])
        dirs = np.vstack([np.diff(p, axis=0) for p in self.paths])
        owner = np.concatenate([np.full(len(p) - 1, i) for i, p in enumerate(self.paths)])
        inv = 1.0 / np.maximum(np.einsum("ij,ij->i", dirs, dirs), 1e-12)
        return starts, dirs, inv, owner

    @functools.cached_property
    def group_ids(self) -> np.ndarray:
        """One integer per muscle; equal for parts of one muscle (no fat plane between them)."""
        names = sorted(set(self.groups))
        return np.array([names.index(gr) for gr in self.groups])

    def _segments_near(self, i: int) -> tuple[np.ndarray, ...]:
        """Other muscles' path segments that can compete with muscle ``i`` within its reach:
        starts, directions, 1 / length^2 and radii. At a point within R_i of path i, a segment
        of muscle j matters only if it lies nearer than L = R_i - r_i + r_j + plane, so only
        segments within R_i + L of path i are kept (tested on points 2 mm apart, less 1 mm)."""
        starts, dirs, radii, planes, samples_all, owner = [], [], [], [], [], []
        for j, path in enumerate(self.paths):
            if j == i:
                continue
            limit = 2 * self.reaches[i] - self.radii[i] + self.radii[j] + self.plane_mm + 1.0
            for a, b in zip(path[:-1], path[1:], strict=True):
                n = max(int(np.ceil(np.linalg.norm(b - a) / 2.0)), 1)
                samples = a + np.linspace(0.0, 1.0, n + 1)[:, None] * (b - a)
                if _segment_distance(samples, self.paths[i]).min() < limit:
                    samples_all.append(samples)
                    owner.append(np.full(len(samples), len(starts)))
                    starts.append(a)
                    dirs.append(b - a)
                    radii.append(self.radii[j])
                    planes.append(0.0 if self.groups[j] == self.groups[i] else self.plane_mm)
        starts = np.asarray(starts, float).reshape(-1, 3)
        dirs = np.asarray(dirs, float).reshape(-1, 3)
        inv = 1.0 / np.maximum(np.einsum("ij,ij->i", dirs, dirs), 1e-12)
        samples = np.vstack(samples_all) if samples_all else np.zeros((0, 3))
        owner = np.concatenate(owner) if owner else np.zeros(0, int)
        return starts, dirs, inv, np.asarray(radii, float), np.asarray(planes, float), samples, owner

    def bounds(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._boxes[i]
        llo, lhi = self.lean.bounds()
        lo, hi = np.maximum(lo - self.reaches[i], llo), np.minimum(hi + self.reaches[i], lhi)
        return lo, np.maximum(hi, lo)

    def sdf(self, i: int, points: np.ndarray) -> np.ndarray:
        """A lower bound of the signed distance (mm) to muscle ``i``'s volume, exact in sign."""
        pts = np.asarray(points, float)
        d_own, u_own = _closest(pts, self.paths[i])
        out = d_own - self.reaches[i]  # beyond the reach: a lower bound on its own
        todo = np.flatnonzero(out < 0.0)
        if todo.size == 0:
            return out
        p = pts[todo]
        res = np.maximum(out[todo], self._territory(i, p, d_own[todo], u_own[todo]))
        keep = np.flatnonzero(res < 0.0)
        if keep.size:
            q = p[keep]
            lean = self.lean.sdf(q)
            if self.in_cavity[i]:
                # Inside a cavity only the muscle's own belly: within CAVITY_CORE_RADII radii.
                core = d_own[todo[keep]] - CAVITY_CORE_RADII * self.radii[i]
                lean = np.maximum(lean, np.minimum(-self.cavity.sdf(q), core))
            else:
                lean = np.maximum(lean, -self.cavity.sdf(q))
            res[keep] = np.maximum(res[keep], lean)
        out[todo] = res
        return out

    def _territory(self, i: int, points: np.ndarray, d_own: np.ndarray, u_own: np.ndarray) -> np.ndarray:
        """Signed distance bound (mm) to muscle ``i``'s territory: the largest over rival
        segments s of (e_i - e_s) / 2 + (plane_s / 2) |u_i - u_s| / 2, over LIPSCHITZ_SLACK.

        e = distance to the path less the PCSA radius; u = unit vector from the nearest path
        point. (e_i - e_s) / 2 is 1-Lipschitz, a distance bound to the bisector; the plane term
        makes the fat between two muscles ``plane`` wide across it whatever the angle between
        them (it turns slowly: 1 / distance per mm). Rivals far from the path are left out: the
        cap term (e_i - (R_i - r_i)) / 2 lies above them wherever the reach holds. Points are
        taken in tiles; in each, only segments that may win there are read.
        """
        e_i = d_own - self.radii[i]
        starts, dirs, inv, radii, planes, samples, owner = self._rivals[i]
        out = 0.5 * (e_i - (self.reaches[i] - self.radii[i]))
        if radii.size == 0:
            return out / LIPSCHITZ_SLACK
        tiles = np.floor(points / TILE_MM).astype(np.int64)
        if points.shape[0] < TILE_POINTS:
            tiles[:] = 0
        keys = (tiles[:, 0] * 4096 + tiles[:, 1]) * 4096 + tiles[:, 2]
        order = np.argsort(keys, kind="stable")
        cuts = np.flatnonzero(np.diff(keys[order])) + 1
        seg_starts = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
        for group in np.split(order, cuts):
            p, e, u = points[group], e_i[group], u_own[group]
            lo, hi = p.min(axis=0), p.max(axis=0)
            gap = np.maximum(np.maximum(lo - samples, samples - hi), 0.0)
            near = np.minimum.reduceat(np.sqrt(np.einsum("ij,ij->i", gap, gap)), seg_starts)
            # A segment whose nearest sample (less the 1 mm sampling slack) is farther than
            # e_i + plane + r_j at every point of the tile cannot raise the result there.
            use = np.flatnonzero(near - 1.0 - radii < e.max() + planes)
            if use.size == 0:
                continue
            f4 = np.float32
            st, di, iv = starts[use].astype(f4), dirs[use].astype(f4), inv[use].astype(f4)
            pc, uc = p.astype(f4), u.astype(f4)
            rel = [pc[:, a : a + 1] - st[:, a] for a in range(3)]
            t = (rel[0] * di[:, 0] + rel[1] * di[:, 1] + rel[2] * di[:, 2]) * iv
            np.clip(t, 0.0, 1.0, out=t)
            q = [rel[a] - t * di[:, a] for a in range(3)]
            d = np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2])
            qu = q[0] * uc[:, 0:1] + q[1] * uc[:, 1:2] + q[2] * uc[:, 2:3]
            # |u_i - u_s| / 2 = sqrt((1 - cos) / 2), cos = q . u_i / |q|
            half_gap = np.sqrt(np.maximum(0.5 - 0.5 * qu / np.maximum(d, f4(1e-6)), 0.0))
            term = (half_gap * (0.5 * planes[use]).astype(f4) - 0.5 * d + (0.5 * radii[use]).astype(f4)).max(
                axis=1
            )
            # float32 rounding (< 1e-4 mm here) is far below the slack
            term = term.astype(float) + 0.5 * e
            out[group] = np.maximum(out[group], term)
        return out / LIPSCHITZ_SLACK


@dataclass(frozen=True, eq=False)
class Territory(Shape):
    """Muscle ``index`` of a :class:`MuscleField` as a Shape."""

    muscles: MuscleField
    index: int

    def sdf(self, points: np.ndarray) -> np.ndarray:
        return self.muscles.sdf(self.index, points)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.muscles.bounds(self.index)


@dataclass(frozen=True, eq=False)
class MuscleUnion(Shape):
    """The union of the muscles ``members`` (indices into ``muscles``) as one Shape, evaluated in
    one pass over all paths: the same volume as the union of their :class:`Territory` shapes.

    At a point, with 1 the weighted-nearest muscle (least e = distance to path less PCSA radius):
    the point is muscle if 1 is a member, within its reach, not within a fat plane of a rival,
    inside the lean body and out of the cavities (:meth:`MuscleField.sdf`'s rule, for muscle 1
    only). Any other member i lies at least (e_i - e_1) / 2 / LIPSCHITZ_SLACK away (the bisector
    bound), so the distance bound is the least of muscle 1's and those.
    """

    muscles: MuscleField
    members: tuple[int, ...]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        boxes = [self.muscles.bounds(i) for i in self.members]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def sdf(self, points: np.ndarray) -> np.ndarray:
        mf = self.muscles
        pts = np.asarray(points, float).reshape(-1, 3)
        n = pts.shape[0]
        g1, others, d1 = np.empty(n), np.empty(n), np.empty(n)
        first = np.empty(n, np.intp)
        cells = np.floor(pts / UNION_TILE_MM).astype(np.int64)
        keys = (cells[:, 0] * 4096 + cells[:, 1]) * 4096 + cells[:, 2]
        order = np.argsort(keys, kind="stable")
        cuts = np.flatnonzero(np.diff(keys[order])) + 1
        groups = np.split(order, cuts)
        heads = np.array([gr[0] for gr in groups], np.intp).reshape(-1)
        keep, floor = self._prune((cells[heads] + 0.5) * UNION_TILE_MM, 0.5 * np.sqrt(3.0) * UNION_TILE_MM)
        for k, group in enumerate(groups):
            for start in range(0, group.size, UNION_CHUNK):
                idx = group[start : start + UNION_CHUNK]
                g1[idx], others[idx], d1[idx], first[idx] = self._tile(pts[idx], keep[k], floor[k])
        out = np.minimum(g1, others)
        inside = np.flatnonzero(g1 < 0.0)
        if inside.size:
            # Muscle 1's volume: inside the lean body, out of the cavities but for its own belly
            # where it lines them (MuscleField.sdf).
            p, i1 = pts[inside], first[inside]
            cavity = -mf.cavity.sdf(p)
            lining = mf.in_cavity[i1]
            core = d1[inside] - CAVITY_CORE_RADII * mf.radii[i1]
            cavity[lining] = np.minimum(cavity[lining], core[lining])
            bound = np.maximum(mf.lean.sdf(p), cavity)
            out[inside] = np.minimum(np.maximum(g1[inside], bound), others[inside])
        return out

    def _prune(self, centres: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
        """Per cube (centre, half-diagonal ``half``, mm): which segments to read (bool, cubes x
        segments) and a lower bound of each muscle's distance over the others (cubes x muscles)."""
        mf = self.muscles
        starts, dirs, inv, owner = mf.segments
        runs = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
        rel = centres[:, None, :] - starts[None, :, :]
        t = np.clip(np.einsum("tsj,sj->ts", rel, dirs) * inv, 0.0, 1.0)
        q = rel - t[:, :, None] * dirs[None, :, :]
        dc = np.sqrt(np.einsum("tsj,tsj->ts", q, q))
        dlo = np.maximum(dc - half, 0.0)
        # No point of a cube has e_1 (distance less PCSA radius) above ub.
        ub = (np.minimum.reduceat(dc + half, runs, axis=1) - mf.radii).min(axis=1)
        near = np.minimum.reduceat(dlo, runs, axis=1) - mf.radii <= ub[:, None]
        span = np.where(near, mf.reaches - mf.radii, -np.inf).max(axis=1) + mf.plane_mm
        # Inside values are held above -UNION_DEPTH_MM: a rival s then counts only where
        # e_s < e_1 + plane + 2 * slack * depth.
        span = np.minimum(span, ub + mf.plane_mm + 2.0 * LIPSCHITZ_SLACK * UNION_DEPTH_MM)
        # Segments beyond this decide no point: not nearest, and a rival s only counts within
        # R_1 - r_1 + r_s + plane of a point inside muscle 1's reach (MuscleField._segments_near).
        limit = np.maximum(ub, span)[:, None] + mf.radii[owner] + 1e-6  # rounding
        keep = dlo <= limit
        floor = np.minimum.reduceat(np.where(keep, np.inf, dlo), runs, axis=1)
        return keep, floor

    def _tile(self, p: np.ndarray, keep: np.ndarray, floor: np.ndarray):
        """Muscle 1's bound, the other members' bound, muscle 1's path distance (mm) and index."""
        mf = self.muscles
        starts, dirs, inv, owner = mf.segments
        keep = np.flatnonzero(keep)
        f4 = np.float32
        pc = p.astype(f4)
        st, di, iv = starts[keep].astype(f4), dirs[keep].astype(f4), inv[keep].astype(f4)
        rel3 = [pc[:, a : a + 1] - st[:, a] for a in range(3)]
        tt = (rel3[0] * di[:, 0] + rel3[1] * di[:, 1] + rel3[2] * di[:, 2]) * iv
        np.clip(tt, 0.0, 1.0, out=tt)
        qs = [rel3[a] - tt * di[:, a] for a in range(3)]
        d = np.sqrt(qs[0] * qs[0] + qs[1] * qs[1] + qs[2] * qs[2])
        own = owner[keep]
        rows = np.arange(p.shape[0])
        e_seg = d - mf.radii[own].astype(f4)
        nearest = np.argmin(e_seg, axis=1)  # a segment of the weighted-nearest muscle 1
        first = own[nearest]
        d1 = d[rows, nearest].astype(float)
        e1 = d1 - mf.radii[first]
        # Muscle 1's direction from its path; each rival segment's against it, as in _territory.
        q1 = [qs[a][rows, nearest][:, None] for a in range(3)]
        qu = (q1[0] * qs[0] + q1[1] * qs[1] + q1[2] * qs[2]) / np.maximum(d * d[rows, nearest][:, None], 1e-6)
        half_gap = np.sqrt(np.maximum(0.5 - 0.5 * qu, 0.0))
        groups = mf.group_ids
        planes = np.where(groups[own][None, :] != groups[first][:, None], f4(0.5 * mf.plane_mm), f4(0.0))
        terms = f4(0.5) * (e1[:, None].astype(f4) - e_seg) + planes * half_gap
        terms[own[None, :] == first[:, None]] = -np.inf
        territory = np.maximum(terms.max(axis=1), 0.5 * (d1 - mf.reaches[first])) / LIPSCHITZ_SLACK
        g1 = np.maximum(np.maximum(d1 - mf.reaches[first], territory), -UNION_DEPTH_MM)
        member = self._member
        g1[~member[first]] = np.inf
        # Every other member: beyond its reach or across the bisector with muscle 1, from the
        # nearest kept segment or the bound on those left out (segments run muscle by muscle).
        runs = np.flatnonzero(np.r_[True, np.diff(own) != 0])
        read = own[runs]
        dist = np.minimum(np.minimum.reduceat(d, runs, axis=1), floor[read].astype(f4))
        others = np.maximum(
            dist - mf.reaches[read].astype(f4),
            (dist - mf.radii[read].astype(f4) - e1[:, None].astype(f4)) * f4(0.5 / LIPSCHITZ_SLACK),
        )
        others[read[None, :] == first[:, None]] = np.inf
        others[:, ~member[read]] = np.inf
        least = others.min(axis=1).astype(float)
        # Members none of whose segments were read: max(min a_j, min b_j - e_1 / 2.4) bounds
        # min_j max(a_j, b_j - e_1 / 2.4) from below (a = floor - R, b = (floor - r) / 2.4).
        unread = member.copy()
        unread[read] = False
        if unread.any():
            a = float((floor - mf.reaches)[unread].min())
            b = float((floor - mf.radii)[unread].min())
            least = np.minimum(least, np.maximum(a, 0.5 * (b - e1) / LIPSCHITZ_SLACK))
        # Never below 0: muscle 1 is the nearest, so no other member holds the point.
        return g1, np.maximum(least, 0.0), d1, first

    @functools.cached_property
    def _member(self) -> np.ndarray:
        member = np.zeros(len(self.muscles.paths), bool)
        member[list(self.members)] = True
        return member


def cavity_shape(landmarks: Mapping[str, np.ndarray]) -> Shape:
    """The pelvic and abdominal cavities (organs, no muscle but those lining them), from the
    landmarks: ellipsoids in a pelvic frame set by the hip centres, ASIS and PSIS.

    Sizes are in units of the inter-hip distance (175 mm in the analytic hip): the lesser pelvis
    holds bladder and rectum; the abdomen starts at the pelvic brim, inside the iliac wings.
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
    return Union((lesser, abdomen), smooth_mm=20.0 * s)


def _group(name: str) -> str:
    """The muscle a part belongs to: parts of one muscle meet without a fat plane. Iliacus and
    psoas share one tendon onto the lesser trochanter (iliopsoas)."""
    name = name.rstrip("_0123456789")
    return "iliopsoas" if name in ("iliacus", "psoas") else name


def muscle_field(landmarks: Mapping[str, np.ndarray], lean: Shape, bulk: float = 1.0) -> MuscleField:
    """Every muscle of both sides, sized for ``bulk`` (1 healthy; 0.5 half the cross-section)."""
    if not 0.05 <= bulk <= 1.5:
        raise ValueError(f"bulk = {bulk!r} is outside [0.05, 1.5]")
    names, paths, radii, cavity, groups = [], [], [], [], []
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
    radii = np.asarray(radii)
    # Wasting shrinks the reach as bulk squared: measured on the proximal thigh, muscle area
    # then falls to 0.88 of healthy at bulk 0.7 and 0.39 at bulk 0.4 (DOMAIN.md 2.8: CSA -30
    # to -60 % after spinal cord injury), fat taking its place.
    reaches = np.maximum(REACH_RADII * radii / np.sqrt(bulk), REACH_MIN_MM) * bulk**2.0
    # Inside the cavities nothing bounds the iliopsoas but its own size: a shorter reach there.
    lining = np.asarray(cavity)
    reaches[lining] = np.minimum(reaches[lining], CAVITY_REACH_RADII * radii[lining])
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
