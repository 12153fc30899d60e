"""Signed-distance shapes in the patient frame (mm): primitives and the ways to combine them.

A shape is negative inside, positive outside, and knows its bounding box; it never rasterizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Points = np.ndarray  # (N, 3) float64, (x, y, z) in mm


def _vec(v: Sequence[float]) -> np.ndarray:
    return np.asarray(v, dtype=float).reshape(3)


def _box_distance(points: Points, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) from each point to an axis-aligned box; 0 inside it."""
    gap = np.maximum(np.maximum(lo - points, points - hi), 0.0)
    return np.sqrt(np.einsum("ij,ij->i", gap, gap))


def _norm(v: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row of an (N, 3) array (much faster than ``np.linalg.norm``)."""
    return np.sqrt(np.einsum("ij,ij->i", v, v))


def _in_box(points: Points, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.all((points >= lo) & (points <= hi), axis=1)


def rotation_matrix(axis: Sequence[float], angle_deg: float) -> np.ndarray:
    """3x3 matrix rotating by ``angle_deg`` about ``axis`` (right-hand rule)."""
    a = _vec(axis) / np.linalg.norm(axis)
    t = np.deg2rad(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


class Shape:
    """Base of all shapes: ``sdf(points) -> distances`` (mm, negative inside) and ``bounds()``."""

    def sdf(self, points: Points) -> np.ndarray:
        raise NotImplementedError

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box ``(lower, upper)`` in mm that contains the whole shape."""
        raise NotImplementedError

    def contains(self, points: Points) -> np.ndarray:
        return self.sdf(np.atleast_2d(points)) < 0.0

    def __or__(self, other: Shape) -> Shape:
        return Union((self, other))

    def __and__(self, other: Shape) -> Shape:
        return Intersection((self, other))

    def __sub__(self, other: Shape) -> Shape:
        return Difference(self, other)


@dataclass(frozen=True, eq=False)
class Sphere(Shape):
    center: np.ndarray
    radius: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", _vec(self.center))

    def sdf(self, points: Points) -> np.ndarray:
        return _norm(points - self.center) - self.radius

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center - self.radius, self.center + self.radius


@dataclass(frozen=True, eq=False)
class Ellipsoid(Shape):
    """Ellipsoid with semi-axes ``radii`` (mm) along the columns of ``rotation``.

    Uses the close distance bound ``k0 (k0 - 1) / k1`` (exact on the surface, sign always right).
    """

    center: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", _vec(self.center))
        object.__setattr__(self, "radii", _vec(self.radii))
        object.__setattr__(self, "rotation", np.asarray(self.rotation, dtype=float))
        object.__setattr__(self, "_turned", not np.array_equal(self.rotation, np.eye(3)))

    def sdf(self, points: Points) -> np.ndarray:
        q = points - self.center
        if self._turned:
            q = q @ self.rotation  # coordinates in the ellipsoid's own axes
        k0 = _norm(q / self.radii)
        k1 = _norm(q / self.radii**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = k0 * (k0 - 1.0) / k1
        return np.where(k1 > 0, d, -self.radii.min())

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.sqrt(((self.rotation * self.radii) ** 2).sum(axis=1))
        return self.center - half, self.center + half


@dataclass(frozen=True, eq=False)
class Capsule(Shape):
    """Segment ``a``-``b`` swept by a sphere whose radius goes linearly from ``radius_a`` to
    ``radius_b`` (mm): a cylinder with round ends when both are equal."""

    a: np.ndarray
    b: np.ndarray
    radius_a: float
    radius_b: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _vec(self.a))
        object.__setattr__(self, "b", _vec(self.b))
        if self.radius_b is None:
            object.__setattr__(self, "radius_b", self.radius_a)

    def sdf(self, points: Points) -> np.ndarray:
        ab = self.b - self.a
        t = np.clip((points - self.a) @ ab / max(ab @ ab, 1e-12), 0.0, 1.0)
        closest = self.a + t[:, None] * ab
        radius = self.radius_a + t * (self.radius_b - self.radius_a)
        return _norm(points - closest) - radius

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = max(self.radius_a, self.radius_b)
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r


@dataclass(frozen=True, eq=False)
class Box(Shape):
    """Box of ``half_sizes`` (mm) along the columns of ``rotation``, edges rounded by ``rounding``."""

    center: np.ndarray
    half_sizes: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    rounding: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", _vec(self.center))
        object.__setattr__(self, "half_sizes", _vec(self.half_sizes))
        object.__setattr__(self, "rotation", np.asarray(self.rotation, dtype=float))

    def sdf(self, points: Points) -> np.ndarray:
        q = np.abs((points - self.center) @ self.rotation) - (self.half_sizes - self.rounding)
        outside = _norm(np.maximum(q, 0.0))
        inside = np.minimum(q.max(axis=1), 0.0)
        return outside + inside - self.rounding

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.abs(self.rotation) @ self.half_sizes
        return self.center - half, self.center + half


@dataclass(frozen=True, eq=False)
class Plate(Shape):
    """Triangle ``a, b, c`` thickened to a plate of ``thickness`` mm with rounded edges."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    thickness: float

    def __post_init__(self) -> None:
        for name in ("a", "b", "c"):
            object.__setattr__(self, name, _vec(getattr(self, name)))

    def sdf(self, points: Points) -> np.ndarray:
        return _triangle_distance(points, self.a, self.b, self.c) - self.thickness / 2.0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        corners = np.stack([self.a, self.b, self.c])
        r = self.thickness / 2.0
        return corners.min(axis=0) - r, corners.max(axis=0) + r


def _triangle_distance(p: Points, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Unsigned distance (mm) from points to the triangle ``abc``."""
    ba, cb, ac = b - a, c - b, a - c
    pa, pb, pc = p - a, p - b, p - c
    nor = np.cross(ba, ac)
    s = np.sign(pa @ np.cross(ba, nor)) + np.sign(pb @ np.cross(cb, nor)) + np.sign(pc @ np.cross(ac, nor))

    def edge(pv: np.ndarray, e: np.ndarray) -> np.ndarray:
        t = np.clip(pv @ e / (e @ e), 0.0, 1.0)
        d = pv - t[:, None] * e
        return np.einsum("ij,ij->i", d, d)

    edges = np.minimum(np.minimum(edge(pa, ba), edge(pb, cb)), edge(pc, ac))
    plane = (pa @ nor) ** 2 / (nor @ nor)
    return np.sqrt(np.where(s < 2.0, edges, plane))


@dataclass(frozen=True, eq=False)
class HalfSpace(Shape):
    """Points with ``(p - point) . normal < 0``; bounded by ``extent_mm`` around ``point``."""

    point: np.ndarray
    normal: np.ndarray
    extent_mm: float = 1000.0

    def __post_init__(self) -> None:
        n = _vec(self.normal)
        object.__setattr__(self, "normal", n / np.linalg.norm(n))
        object.__setattr__(self, "point", _vec(self.point))

    def sdf(self, points: Points) -> np.ndarray:
        return (points - self.point) @ self.normal

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.point - self.extent_mm, self.point + self.extent_mm


EXACT_WITHIN_MM = 15.0  # unions report exact distances up to this value (see Union)


def _smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum with blend radius ``k`` (mm); ``min`` when ``k == 0``."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


@dataclass(frozen=True, eq=False)
class Union(Shape):
    """Union of ``children``, blended over ``smooth_mm`` where they meet.

    Each child is evaluated only within :data:`EXACT_WITHIN_MM` of its bounding box; farther
    out the distance to that box stands in. The result is therefore exact wherever it is below
    ``EXACT_WITHIN_MM`` and at least that large elsewhere, which keeps offsets, layers and
    differences exact to that depth and never changes a sign.

    In a smooth union a stand-in may still blend with a large running result that a later
    child brings down near the surface; points where a stand-in changed the running result,
    and no later child's plain minimum washed that out, are evaluated again with every child
    wherever the result ends below ``EXACT_WITHIN_MM``.
    """

    children: tuple[Shape, ...]
    smooth_mm: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", tuple(self.children))
        object.__setattr__(self, "_boxes", [c.bounds() for c in self.children])

    def sdf(self, points: Points) -> np.ndarray:
        k = self.smooth_mm
        pad = max(k, EXACT_WITHIN_MM)
        # A child farther than its stand-in distance (>= pad) leaves a running result at or
        # below pad - k untouched (min, and no blend): such points skip that child.
        settled = pad - max(k, 0.0)
        smooth = k > 0
        columns = np.ascontiguousarray(points.T)  # per-axis arrays: much faster than (N, 3) math
        x = columns[0]
        result = None
        approx = None  # smooth unions: points whose running result a stand-in has lowered
        for child, (lo, hi) in zip(self.children, self._boxes, strict=True):
            # Outside the padded box the child is at least max(box distance, pad) away: a lower
            # bound that leaves the blend untouched, since the blend acts only within smooth_mm.
            near = (lo[0] - x <= pad) & (x - hi[0] <= pad)
            candidates = np.flatnonzero(near)
            for a in (1, 2):
                c = columns[a, candidates]
                candidates = candidates[(lo[a] - c <= pad) & (c - hi[a] <= pad)]
            if result is None:
                result = self._stand_in(columns, lo, hi, pad)
                if smooth:
                    approx = np.ones(result.size, dtype=bool)
                    approx[candidates] = False
                if candidates.size:
                    result[candidates] = child.sdf(points[candidates])
                continue
            far = result > settled
            far[candidates] = False
            far = np.flatnonzero(far)
            if far.size:
                stand_in = self._stand_in(columns[:, far], lo, hi, pad)
                if smooth:
                    # Only where the stand-in comes within k of the running result does it act.
                    acts = stand_in < result[far] + k
                    far, stand_in = far[acts], stand_in[acts]
                    approx[far] = True
                result[far] = _smooth_min(result[far], stand_in, k)
            if candidates.size:
                d = child.sdf(points[candidates])
                before = result[candidates]
                if smooth:
                    # A plain minimum (d at least k below) drops whatever came before.
                    approx[candidates[d <= before - k]] = False
                result[candidates] = _smooth_min(before, d, k)
        if smooth:
            redo = np.flatnonzero(approx & (result < EXACT_WITHIN_MM))
            if redo.size:
                result[redo] = self._fold(points[redo])
        return result

    def _fold(self, points: Points) -> np.ndarray:
        """The blend of every child at ``points``, without stand-ins."""
        result = self.children[0].sdf(points)
        for child in self.children[1:]:
            result = _smooth_min(result, child.sdf(points), self.smooth_mm)
        return result

    @staticmethod
    def _stand_in(columns: np.ndarray, lo: np.ndarray, hi: np.ndarray, pad: float) -> np.ndarray:
        """max(distance to the box ``lo``-``hi``, pad) for points given as (3, N) columns."""
        gaps = [np.maximum(np.maximum(lo[a] - columns[a], columns[a] - hi[a]), 0.0) for a in range(3)]
        d = np.sqrt(gaps[0] * gaps[0] + gaps[1] * gaps[1] + gaps[2] * gaps[2])
        return np.maximum(d, pad, out=d)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        los, his = zip(*(c.bounds() for c in self.children), strict=True)
        # The blend adds material up to smooth_mm / 4 beyond the children.
        pad = self.smooth_mm / 4.0
        return np.min(los, axis=0) - pad, np.max(his, axis=0) + pad


@dataclass(frozen=True, eq=False)
class Intersection(Shape):
    """Points inside every one of ``children``.

    Inside, and outside within the children's common box, the distance is the exact maximum of
    the children's. Outside that box the distance to the box stands in: a lower bound with the
    right sign, so an intersection should not be grown or layered from outside.
    """

    children: tuple[Shape, ...]

    def sdf(self, points: Points) -> np.ndarray:
        lo, hi = self.bounds()
        result = _box_distance(points, lo, hi)  # a lower bound outside the common box
        todo = np.flatnonzero(_in_box(points, lo, hi))
        result[todo] = -np.inf
        for child in self.children:
            # Once a point is EXACT_WITHIN_MM outside one child it is at least that far outside
            # the intersection; the other children need not be evaluated there.
            if todo.size == 0:
                break
            result[todo] = np.maximum(result[todo], child.sdf(points[todo]))
            todo = todo[result[todo] < EXACT_WITHIN_MM]
        return result

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        los, his = zip(*(c.bounds() for c in self.children), strict=True)
        lo, hi = np.max(los, axis=0), np.min(his, axis=0)
        return lo, np.maximum(hi, lo)


@dataclass(frozen=True, eq=False)
class Difference(Shape):
    """``base`` with ``cut`` removed."""

    base: Shape
    cut: Shape

    def sdf(self, points: Points) -> np.ndarray:
        d = self.base.sdf(points)
        lo, hi = self.cut.bounds()
        bound = -_box_distance(points, lo, hi)  # -cut <= bound; bound is 0 inside the cut's box
        # Where d >= bound the cut cannot win, so d is exact; elsewhere evaluate the cut.
        need = d < bound
        if need.any():
            d[need] = np.maximum(d[need], -self.cut.sdf(points[need]))
        return d

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.base.bounds()


@dataclass(frozen=True, eq=False)
class Offset(Shape):
    """``shape`` grown by ``mm`` (shrunk when negative); ``mm`` may vary with position."""

    shape: Shape
    mm: float | Callable[[Points], np.ndarray]
    max_mm: float | None = None

    def sdf(self, points: Points) -> np.ndarray:
        amount = self.mm(points) if callable(self.mm) else self.mm
        return self.shape.sdf(points) - amount

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        grow = self.max_mm if self.max_mm is not None else self.mm
        lo, hi = self.shape.bounds()
        grow = max(float(grow), 0.0)
        return lo - grow, hi + grow


@dataclass(frozen=True, eq=False)
class MirrorX(Shape):
    """``shape`` reflected through the mid-sagittal plane x = 0 (right side to left side)."""

    shape: Shape

    def sdf(self, points: Points) -> np.ndarray:
        return self.shape.sdf(points * np.array([-1.0, 1.0, 1.0]))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.shape.bounds()
        flip = np.array([-1.0, 1.0, 1.0])
        a, b = lo * flip, hi * flip
        return np.minimum(a, b), np.maximum(a, b)


def tube(points: Sequence[Sequence[float]], radii: Sequence[float], smooth_mm: float = 0.0) -> Shape:
    """A tapered tube through ``points`` (mm) with ``radii`` (mm) at each point."""
    if len(points) != len(radii) or len(points) < 2:
        raise ValueError("a tube needs at least two points and one radius per point")
    segments = [Capsule(points[i], points[i + 1], radii[i], radii[i + 1]) for i in range(len(points) - 1)]
    return segments[0] if len(segments) == 1 else Union(tuple(segments), smooth_mm)
