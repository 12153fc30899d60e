"""Signed-distance shapes in the patient frame (mm): primitives and the ways to combine them.

A shape is negative inside, positive outside, and knows its bounding box; it never rasterizes.

Distances are written once on the Python array API: ``sdf(points)`` takes points of any array-API
namespace (numpy, CuPy on a GPU, array_api_strict in the tests) and returns distances in the same
namespace and on the same device. A shape's constants (centres, matrices, grids) are copied to
that namespace on first use and kept. Shapes whose ``sdf`` is numpy only (defined elsewhere,
without :func:`array_api_sdf`) run on the host through :func:`on_host`; :func:`evaluate` picks
the way and :func:`runs_on_array_api` tells which one a shape takes. Bounds are always numpy.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

Points = Any  # (N, 3) float64 array of any array-API namespace, (x, y, z) in mm

# Weak: depth fields are closures made per phantom, and go when their phantom goes.
_ARRAY_API_FUNCTIONS: weakref.WeakSet[Callable] = weakref.WeakSet()
_NUMPY = array_api_compat.array_namespace(np.empty(0))


def array_api_sdf(function: Callable) -> Callable:
    """Mark ``function`` (an ``sdf`` method or a depth field of points) as written on the array API."""
    _ARRAY_API_FUNCTIONS.add(function)
    return function


def runs_on_array_api(shape: Shape) -> bool:
    """True when ``shape.sdf`` runs in the points' own namespace; False when it runs on the host."""
    return type(shape).sdf in _ARRAY_API_FUNCTIONS


def _is_host(points: Any) -> bool:
    """True for numpy arrays and for what numpy takes as one (lists, tuples, numbers)."""
    return isinstance(points, np.ndarray) or not array_api_compat.is_array_api_obj(points)


def namespace(points: Points) -> ModuleType:
    """The array-API namespace of ``points`` (numpy's through ``array_api_compat`` for numpy,
    lists and numbers)."""
    if _is_host(points):
        return _NUMPY
    return array_api_compat.array_namespace(points)


def to_host(array: Any) -> np.ndarray:
    """A numpy copy (or view) of an array of any namespace."""
    if isinstance(array, np.ndarray):
        return array
    if array_api_compat.is_cupy_array(array):
        return array.get()
    try:
        return np.asarray(array)
    except (TypeError, ValueError, RuntimeError):  # namespaces that offer only DLPack
        return np.from_dlpack(array)


def on_host(function: Callable[[np.ndarray], np.ndarray], points: Points) -> Any:
    """``function(points)`` for a numpy-only ``function``: the points go to the host and the result
    comes back to their namespace and device. The one place where array-API code leaves the device."""
    if _is_host(points):
        return function(points)
    xp = namespace(points)
    result = np.asarray(function(to_host(points)))
    return xp.asarray(result, device=array_api_compat.device(points))


def evaluate(shape: Shape, points: Points) -> Any:
    """``shape.sdf(points)`` for points of any namespace: in place or, for numpy-only shapes, on the host."""
    if _is_host(points) or runs_on_array_api(shape):
        return shape.sdf(points)
    return on_host(shape.sdf, points)


def field_at(value: float | Callable[[Points], Any], points: Points) -> Any:
    """A number, or a field of position (points -> values) evaluated at ``points`` in their namespace."""
    if not callable(value):
        return float(value)
    if _is_host(points) or value in _ARRAY_API_FUNCTIONS:
        return value(points)
    return on_host(value, points)


def take(xp: ModuleType, array: Any, index: Any, axis: int = 0) -> Any:
    """``array`` at 1-D integer ``index`` along ``axis`` (numpy's own indexing: no wrapper overhead)."""
    if isinstance(array, np.ndarray):
        return array[index] if axis == 0 else np.take(array, index, axis=axis)
    return xp.take(array, index, axis=axis)


def clip(xp: ModuleType, array: Any, lo: float, hi: float) -> Any:
    """``array`` clipped to ``[lo, hi]`` (numpy's own ``clip`` for numpy: the wrapper is slow)."""
    if isinstance(array, np.ndarray):
        return np.clip(array, lo, hi)
    return xp.clip(array, lo, hi)


def put(xp: ModuleType, array: Any, index: Any, values: Any) -> None:
    """``array[index] = values`` for sorted, distinct 1-D integer ``index`` (rows of ``array``).

    The standard has no integer-array assignment; numpy and CuPy have it. Elsewhere the index
    becomes a mask (found by ``searchsorted``), whose assignment takes the values in order.
    """
    if isinstance(array, np.ndarray) or array_api_compat.is_cupy_array(array):
        array[index] = values
        return
    n = index.shape[0]
    if n == 0:
        return
    rows = xp.arange(array.shape[0], dtype=index.dtype, device=array_api_compat.device(array))
    pos = xp.clip(xp.searchsorted(index, rows), 0, n - 1)
    array[xp.take(index, pos) == rows] = values


def row_dot(xp: ModuleType, a: Any, b: Any) -> Any:
    """Dot product of each row of two (N, 3) arrays.

    numpy's ``einsum``, as before; elsewhere the products summed in the order einsum adds them on
    x86-64 ((x + z) + y), so that namespaces wrapping numpy give the same bytes.
    """
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.einsum("ij,ij->i", a, b)
    p = a * b
    return (p[:, 0] + p[:, 2]) + p[:, 1]


class _Constants:
    """A shape's constant arrays per namespace and device, copied there on first use."""

    def __init__(self) -> None:
        self._by_place: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, owner: Any, points: Points, names: tuple[str, ...]) -> tuple[Any, ...]:
        if _is_host(points):
            return tuple(getattr(owner, n) for n in names)
        xp = namespace(points)
        device = array_api_compat.device(points)
        place = self._by_place.setdefault((xp.__name__, str(device)), {})
        out = []
        for n in names:
            if n not in place:
                place[n] = xp.asarray(np.asarray(getattr(owner, n)), device=device)
            out.append(place[n])
        return tuple(out)


def constants(owner: Any, points: Points, *names: str) -> tuple[Any, ...]:
    """``owner``'s numpy attributes ``names`` in the namespace and on the device of ``points`` (cached)."""
    cache = owner.__dict__.get("_xp_constants")
    if cache is None:
        cache = owner.__dict__.setdefault("_xp_constants", _Constants())
    return cache.get(owner, points, names)


def _vec(v: Sequence[float]) -> np.ndarray:
    return np.asarray(v, dtype=float).reshape(3)


def _box_distance(points: Points, lo: Any, hi: Any) -> Any:
    """Euclidean distance (mm) from each point to an axis-aligned box; 0 inside it."""
    xp = namespace(points)
    gap = xp.maximum(xp.maximum(lo - points, points - hi), 0.0)
    return xp.sqrt(row_dot(xp, gap, gap))


def _norm(v: Any) -> Any:
    """Euclidean norm of each row of an (N, 3) array (much faster than ``np.linalg.norm``)."""
    xp = namespace(v)
    return xp.sqrt(row_dot(xp, v, v))


def _in_box(points: Points, lo: Any, hi: Any) -> Any:
    xp = namespace(points)
    return xp.all((points >= lo) & (points <= hi), axis=1)


def rotation_matrix(axis: Sequence[float], angle_deg: float) -> np.ndarray:
    """3x3 matrix rotating by ``angle_deg`` about ``axis`` (right-hand rule)."""
    a = _vec(axis) / np.linalg.norm(axis)
    t = np.deg2rad(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


class Shape:
    """Base of all shapes: ``sdf(points) -> distances`` (mm, negative inside) and ``bounds()``."""

    def sdf(self, points: Points) -> Any:
        raise NotImplementedError

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box ``(lower, upper)`` in mm that contains the whole shape."""
        raise NotImplementedError

    def contains(self, points: Points) -> Any:
        if _is_host(points):
            points = np.atleast_2d(points)
        return evaluate(self, points) < 0.0

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

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        (center,) = constants(self, points, "center")
        return _norm(points - center) - float(self.radius)

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
        object.__setattr__(self, "_radii2", self.radii**2)

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        xp = namespace(points)
        center, radii, radii2, rotation = constants(self, points, "center", "radii", "_radii2", "rotation")
        q = points - center
        if self._turned:
            q = q @ rotation  # coordinates in the ellipsoid's own axes
        k0 = _norm(q / radii)
        k1 = _norm(q / radii2)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = k0 * (k0 - 1.0) / k1
        return xp.where(k1 > 0, d, -float(self.radii.min()))

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
        object.__setattr__(self, "_ab", self.b - self.a)

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        xp = namespace(points)
        a, ab = constants(self, points, "a", "_ab")
        length2 = float(max(self._ab @ self._ab, 1e-12))
        t = clip(xp, (points - a) @ ab / length2, 0.0, 1.0)
        closest = a + t[:, None] * ab
        radius = float(self.radius_a) + t * float(self.radius_b - self.radius_a)
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
        object.__setattr__(self, "_core", self.half_sizes - self.rounding)

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        xp = namespace(points)
        center, rotation, core = constants(self, points, "center", "rotation", "_core")
        q = xp.abs((points - center) @ rotation) - core
        outside = _norm(xp.maximum(q, 0.0))
        inside = xp.minimum(xp.max(q, axis=1), 0.0)
        return outside + inside - float(self.rounding)

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
        object.__setattr__(self, "_triangle", _Triangle(self.a, self.b, self.c))

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        return self._triangle.distance(points) - float(self.thickness / 2.0)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        corners = np.stack([self.a, self.b, self.c])
        r = self.thickness / 2.0
        return corners.min(axis=0) - r, corners.max(axis=0) + r


class _Triangle:
    """The constants of a triangle's distance: vertices, edges, normal and the edge normals."""

    def __init__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
        self.a, self.b, self.c = a, b, c
        self.ba, self.cb, self.ac = b - a, c - b, a - c
        self.nor = np.cross(self.ba, self.ac)
        self.side_ba = np.cross(self.ba, self.nor)
        self.side_cb = np.cross(self.cb, self.nor)
        self.side_ac = np.cross(self.ac, self.nor)

    def distance(self, p: Points) -> Any:
        """Unsigned distance (mm) from points to the triangle."""
        xp = namespace(p)
        names = ("a", "b", "c", "ba", "cb", "ac", "nor", "side_ba", "side_cb", "side_ac")
        a, b, c, ba, cb, ac, nor, side_ba, side_cb, side_ac = constants(self, p, *names)
        pa, pb, pc = p - a, p - b, p - c
        s = xp.sign(pa @ side_ba) + xp.sign(pb @ side_cb) + xp.sign(pc @ side_ac)

        def edge(pv: Any, e: Any, e2: float) -> Any:
            t = clip(xp, pv @ e / e2, 0.0, 1.0)
            d = pv - t[:, None] * e
            return row_dot(xp, d, d)

        edges = xp.minimum(
            xp.minimum(edge(pa, ba, float(self.ba @ self.ba)), edge(pb, cb, float(self.cb @ self.cb))),
            edge(pc, ac, float(self.ac @ self.ac)),
        )
        plane = (pa @ nor) ** 2 / float(self.nor @ self.nor)
        return xp.sqrt(xp.where(s < 2.0, edges, plane))


def _triangle_distance(p: Points, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Any:
    """Unsigned distance (mm) from points to the triangle ``abc``."""
    return _Triangle(_vec(a), _vec(b), _vec(c)).distance(p)


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

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        point, normal = constants(self, points, "point", "normal")
        return (points - point) @ normal

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.point - self.extent_mm, self.point + self.extent_mm


EXACT_WITHIN_MM = 15.0  # unions report exact distances up to this value (see Union)


def _smooth_min(a: Any, b: Any, k: float) -> Any:
    """Polynomial smooth minimum with blend radius ``k`` (mm); ``min`` when ``k == 0``."""
    xp = namespace(a)
    if k <= 0:
        return xp.minimum(a, b)
    h = xp.maximum(k - xp.abs(a - b), 0.0) / k
    return xp.minimum(a, b) - h * h * k * 0.25


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

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        xp = namespace(points)
        k = float(self.smooth_mm)
        pad = max(k, EXACT_WITHIN_MM)
        # A child farther than its stand-in distance (>= pad) leaves a running result at or
        # below pad - k untouched (min, and no blend): such points skip that child.
        settled = pad - max(k, 0.0)
        smooth = k > 0
        # per-axis arrays: much faster than (N, 3) math
        columns = xp.stack([points[:, 0], points[:, 1], points[:, 2]])
        x = columns[0, :]
        result = None
        approx = None  # smooth unions: points whose running result a stand-in has lowered
        for child, (lo, hi) in zip(self.children, self._boxes, strict=True):
            lo, hi = [float(v) for v in lo], [float(v) for v in hi]
            # Outside the padded box the child is at least max(box distance, pad) away: a lower
            # bound that leaves the blend untouched, since the blend acts only within smooth_mm.
            near = (lo[0] - x <= pad) & (x - hi[0] <= pad)
            candidates = xp.nonzero(near)[0]
            for a in (1, 2):
                c = take(xp, columns[a, :], candidates)
                candidates = candidates[(lo[a] - c <= pad) & (c - hi[a] <= pad)]
            n_candidates = int(candidates.shape[0])
            if result is None:
                result = self._stand_in(columns, lo, hi, pad)
                if smooth:
                    approx = xp.ones(result.shape[0], dtype=xp.bool, device=array_api_compat.device(points))
                    put(xp, approx, candidates, False)
                if n_candidates:
                    put(xp, result, candidates, evaluate(child, take(xp, points, candidates)))
                continue
            far = result > settled
            put(xp, far, candidates, False)
            far = xp.nonzero(far)[0]
            if far.shape[0]:
                stand_in = self._stand_in(take(xp, columns, far, axis=1), lo, hi, pad)
                running = take(xp, result, far)
                if smooth:
                    # Only where the stand-in comes within k of the running result does it act.
                    acts = stand_in < running + k
                    far, stand_in, running = far[acts], stand_in[acts], running[acts]
                    put(xp, approx, far, True)
                put(xp, result, far, _smooth_min(running, stand_in, k))
            if n_candidates:
                d = evaluate(child, take(xp, points, candidates))
                before = take(xp, result, candidates)
                if smooth:
                    # A plain minimum (d at least k below) drops whatever came before.
                    put(xp, approx, candidates[d <= before - k], False)
                put(xp, result, candidates, _smooth_min(before, d, k))
        if smooth:
            redo = xp.nonzero(approx & (result < EXACT_WITHIN_MM))[0]
            if redo.shape[0]:
                put(xp, result, redo, self._fold(take(xp, points, redo)))
        return result

    def _fold(self, points: Points) -> Any:
        """The blend of every child at ``points``, without stand-ins."""
        result = evaluate(self.children[0], points)
        for child in self.children[1:]:
            result = _smooth_min(result, evaluate(child, points), float(self.smooth_mm))
        return result

    @staticmethod
    def _stand_in(columns: Any, lo: Sequence[float], hi: Sequence[float], pad: float) -> Any:
        """max(distance to the box ``lo``-``hi``, pad) for points given as (3, N) columns."""
        xp = namespace(columns)
        gaps = [xp.maximum(xp.maximum(lo[a] - columns[a, :], columns[a, :] - hi[a]), 0.0) for a in range(3)]
        d = xp.sqrt(gaps[0] * gaps[0] + gaps[1] * gaps[1] + gaps[2] * gaps[2])
        return xp.maximum(d, pad)

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

    def __post_init__(self) -> None:
        lo, hi = self.bounds()
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        xp = namespace(points)
        lo, hi = constants(self, points, "_lo", "_hi")
        result = _box_distance(points, lo, hi)  # a lower bound outside the common box
        todo = xp.nonzero(_in_box(points, lo, hi))[0]
        put(xp, result, todo, -np.inf)
        for child in self.children:
            # Once a point is EXACT_WITHIN_MM outside one child it is at least that far outside
            # the intersection; the other children need not be evaluated there.
            if todo.shape[0] == 0:
                break
            d = xp.maximum(take(xp, result, todo), evaluate(child, take(xp, points, todo)))
            put(xp, result, todo, d)
            todo = todo[d < EXACT_WITHIN_MM]
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

    def __post_init__(self) -> None:
        lo, hi = self.cut.bounds()
        object.__setattr__(self, "_cut_lo", lo)
        object.__setattr__(self, "_cut_hi", hi)

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        xp = namespace(points)
        d = evaluate(self.base, points)
        lo, hi = constants(self, points, "_cut_lo", "_cut_hi")
        bound = -_box_distance(points, lo, hi)  # -cut <= bound; bound is 0 inside the cut's box
        # Where d >= bound the cut cannot win, so d is exact; elsewhere evaluate the cut.
        need = d < bound
        if bool(xp.any(need)):
            d[need] = xp.maximum(d[need], -evaluate(self.cut, points[need]))
        return d

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.base.bounds()


@dataclass(frozen=True, eq=False)
class Offset(Shape):
    """``shape`` grown by ``mm`` (shrunk when negative); ``mm`` may vary with position.

    A field ``mm`` (points -> mm) runs on the host unless marked with :func:`array_api_sdf`.
    """

    shape: Shape
    mm: float | Callable[[Points], Any]
    max_mm: float | None = None

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        amount = field_at(self.mm, points)
        return evaluate(self.shape, points) - amount

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        grow = self.max_mm if self.max_mm is not None else self.mm
        lo, hi = self.shape.bounds()
        grow = max(float(grow), 0.0)
        return lo - grow, hi + grow


_FLIP_X = np.array([-1.0, 1.0, 1.0])


@dataclass(frozen=True, eq=False)
class MirrorX(Shape):
    """``shape`` reflected through the mid-sagittal plane x = 0 (right side to left side)."""

    shape: Shape

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        (flip,) = constants(self, points, "_flip")
        return evaluate(self.shape, points * flip)

    @property
    def _flip(self) -> np.ndarray:
        return _FLIP_X

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.shape.bounds()
        a, b = lo * _FLIP_X, hi * _FLIP_X
        return np.minimum(a, b), np.maximum(a, b)


def tube(points: Sequence[Sequence[float]], radii: Sequence[float], smooth_mm: float = 0.0) -> Shape:
    """A tapered tube through ``points`` (mm) with ``radii`` (mm) at each point."""
    if len(points) != len(radii) or len(points) < 2:
        raise ValueError("a tube needs at least two points and one radius per point")
    segments = [Capsule(points[i], points[i + 1], radii[i], radii[i + 1]) for i in range(len(points) - 1)]
    return segments[0] if len(segments) == 1 else Union(tuple(segments), smooth_mm)
