"""Fatty infiltration of a wasted muscle as marbling: fat streaks along its fibres.

Builds shapes from a muscle's path and a generator; it never rasterizes. DOMAIN.md 2.8: chronic
paraplegic muscle reads 10-35 HU, heterogeneous with fat streaks, not a uniform drop in HU.

The streaks are the low values of a band-limited random field: white noise on a lattice in the
muscle's fibre frame (lattice axes across, across, along the line from origin to insertion),
smoothed by a Gaussian several times longer along the fibres than across them. Its trilinear
interpolant, less a threshold, over a bound on its gradient is a distance bound to the streaks,
read with one lookup per point. A higher threshold only adds fat: the streaks of a muscle grow
with time as nested level sets of one field.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, optimize, special

from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.rasterize import Part
from nmosim.phantoms.shapes import (
    Points,
    Shape,
    array_api_sdf,
    clip,
    constants,
    evaluate,
    namespace,
    put,
    row_dot,
    take,
)

# Lattice spacing (mm) across and along the fibres, and the Gaussian that smooths the noise on it
# (standard deviations, mm): streaks 1-4 mm across and some tens of mm long, the fat seams of a
# marbled muscle on CT (DOMAIN.md 2.8).
LATTICE_MM = (1.0, 1.0, 4.0)
SMOOTH_MM = (1.2, 1.2, 10.0)
TRUNCATE = 3.0  # the smoothing kernel reaches this many standard deviations
# Cells per block of the local gradient bounds: the blocks next to a point's block reach at least
# the smallest block edge from it (2 mm).
BLOCK_CELLS = (2, 2, 1)
_BLOCK_REACH_MM = float(min(n * h for n, h in zip(BLOCK_CELLS, LATTICE_MM, strict=True)))
LEVELS_PER_SD = 32.0  # the field is stored in uint8 levels: 1/32 of its standard deviation each
LEVEL_ZERO = 128.0  # ... about this level for its mean, so that +-4 standard deviations fit
# The muscle's distance is sampled once on a coarse lattice of this spacing (mm, in the fibre
# frame): a node's value, less (or plus) the way to the node, bounds the distance at points near it,
# so the muscle's own (costly) distance is read only within a few mm of its surface ...
COARSE_MM = 2.5
# ... with the node values taken as overstating the distance by up to this factor, as the
# rasterizer allows a blended shape (rasterize.BLOCK_SAFETY) ...
COARSE_SAFETY = 1.3
# ... and only inside the streaks (their distance below this, mm): elsewhere that alone is a
# distance bound to their intersection.
LAZY_MM = 0.0
# Muscles seldom reach farther from their path than this many PCSA radii (their neighbours take
# the space); the lattice covers that much, about 1 MB (uint8) for the largest muscle.
SPREAD_RADII = 3.0

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def fibre_frame(path: np.ndarray) -> np.ndarray:
    """Rotation (3, 3) whose columns are two unit vectors across the fibres and the fibre
    direction, from the first to the last point of ``path`` (K, 3) mm."""
    path = np.asarray(path, float)
    d = path[-1] - path[0]
    norm = np.linalg.norm(d)
    if not norm > 0:
        raise ValueError("path has no length: its ends coincide")
    d = d / norm
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    a = np.cross(d, helper)
    a /= np.linalg.norm(a)
    return np.stack([a, np.cross(d, a), d], axis=1)


def _to_frame(points: Points, rotation: Any) -> Any:
    """Coordinates (mm) of ``points`` (N, 3) along the columns of ``rotation`` (3, 3), in the
    points' namespace. numpy's ``einsum`` as before; elsewhere its sums in its order on x86-64
    ((x + y) + z), so that namespaces wrapping numpy give the same bytes."""
    if isinstance(points, np.ndarray) or not hasattr(points, "shape"):
        return np.einsum("ij,jk->ik", np.asarray(points, float).reshape(-1, 3), rotation)
    x, y, z = points[:, 0:1], points[:, 1:2], points[:, 2:3]
    return (x * rotation[0, :] + y * rotation[1, :]) + z * rotation[2, :]


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer (Steele, Lea & Flood 2014, public domain reference code) on uint64."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


def lattice_noise(key: int, start: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """White noise (float32, uniform in [-0.5, 0.5)) at lattice nodes ``start + (i, j, k)``.

    Each node's value depends only on ``key`` and its own lattice index, so any box of the
    lattice reads the same noise where boxes overlap.
    """
    idx = [np.arange(s, dtype=np.int64) + int(o) for s, o in zip(shape, start, strict=True)]
    with np.errstate(over="ignore"):
        h = _splitmix(np.uint64(key % 2**64) ^ idx[0].astype(np.uint64))
        h = _splitmix(h[:, None] ^ idx[1].astype(np.uint64)[None, :])
        h = _splitmix(h[:, :, None] ^ idx[2].astype(np.uint64)[None, None, :])
    return ((h >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24) - np.float32(0.5)).astype(
        np.float32
    )


@dataclass(frozen=True, eq=False)
class StreakField:
    """A smooth random field of unit variance on a lattice in a fibre frame, stored in steps of
    ``1 / LEVELS_PER_SD`` standard deviations about ``LEVEL_ZERO`` (uint8).

    ``rotation`` columns: frame axes in the patient frame; ``start`` the lattice index of
    ``levels[0, 0, 0]``, node ``n`` lying at frame coordinates ``n * LATTICE_MM``. Bounds on the
    gradient of the levels' trilinear interpolant (levels/mm): ``gradient`` over the whole box,
    ``block_gradient`` over the blocks of ``BLOCK_CELLS`` cells next to each block (3 x 3 x 3).
    """

    rotation: np.ndarray
    start: np.ndarray
    levels: np.ndarray
    gradient: float
    block_gradient: np.ndarray

    @functools.cached_property
    def _flat32(self) -> np.ndarray:
        """The levels as float32 (the same numbers): read without a conversion per point."""
        return self.levels.reshape(-1).astype(np.float32)

    @property
    def _lattice(self) -> np.ndarray:
        return np.asarray(LATTICE_MM)

    @property
    def _inverse_lattice(self) -> np.ndarray:
        return 1.0 / np.asarray(LATTICE_MM)

    @property
    def _start_mm(self) -> np.ndarray:
        return self.start.astype(float)  # lattice units, as a float for the array API

    @property
    def _corner_max(self) -> np.ndarray:
        return np.asarray(self.levels.shape, float) - 2.0

    @property
    def _last_node(self) -> np.ndarray:
        return np.asarray(self.levels.shape, float) - 1.0

    @property
    def _block_flat(self) -> np.ndarray:
        return self.block_gradient.reshape(-1)

    def frame_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners (mm, frame coordinates) of the lattice box."""
        h = np.asarray(LATTICE_MM)
        lo = self.start * h
        return lo, lo + (np.asarray(self.levels.shape) - 1) * h

    def value(self, points: Points) -> Any:
        """Interpolated levels at ``points`` (N, 3) mm; the nearest face's beyond the box."""
        if isinstance(points, np.ndarray) or not hasattr(points, "shape"):
            points = np.asarray(points, float).reshape(-1, 3)
        (rotation,) = constants(self, points, "rotation")
        return self._interpolate(_to_frame(points, rotation))[0]

    def _interpolate(self, frame_points: Any) -> tuple[Any, Any, Any]:
        """Levels at frame points (mm), their lattice cells (N, 3) and lattice coordinates, in the
        points' namespace: the levels are copied there once."""
        xp = namespace(frame_points)
        n = self.levels.shape
        names = ("_inverse_lattice", "_start_mm", "_corner_max", "_flat32")
        inverse, start, corner_max, flat = constants(self, frame_points, *names)
        u = frame_points * inverse - start
        corner = xp.minimum(xp.maximum(xp.floor(u), 0.0), corner_max)
        t = xp.astype(clip(xp, u - corner, 0.0, 1.0), xp.float32)
        cell = xp.astype(corner, xp.int64)
        s0, s1 = n[1] * n[2], n[2]
        base = (cell[:, 0] * n[1] + cell[:, 1]) * n[2] + cell[:, 2]
        t0, t1, t2 = t[:, 0], t[:, 1], t[:, 2]
        rows = []
        for offset in (0, s1, s0, s0 + s1):  # along axis 2 on the cell's four edges
            v0 = take(xp, flat, base + offset)
            v1 = take(xp, flat, base + (offset + 1))
            rows.append(v0 + t2 * (v1 - v0))
        low = rows[0] + t1 * (rows[1] - rows[0])
        high = rows[2] + t1 * (rows[3] - rows[2])
        return xp.astype(low + t0 * (high - low), xp.float64), cell, u

    def signed_distance(self, frame_points: Any, threshold: float) -> Any:
        """A distance bound (mm, negative inside) to the part of the lattice box where the levels
        are below ``threshold``, at frame points (N, 3) mm of any array-API namespace."""
        xp = namespace(frame_points)
        value, cell, u = self._interpolate(frame_points)
        h, last, blocks = constants(self, frame_points, "_lattice", "_last_node", "_block_flat")
        out = xp.maximum(-u, u - last) * h
        box = xp.maximum(xp.maximum(out[:, 0], out[:, 1]), out[:, 2])  # <= the distance to the box
        f = value - float(threshold)
        size = xp.abs(f)
        # Within the blocks next to a point's block (at least REACH_MM away), the block bound holds.
        b, nb = BLOCK_CELLS, self.block_gradient.shape
        c0, c1, c2 = (cell[:, a] if b[a] == 1 else cell[:, a] // b[a] for a in range(3))
        row = (c0 * nb[1] + c1) * nb[2] + c2
        local = take(xp, blocks, row)
        reach = xp.maximum(size / float(self.gradient), xp.minimum(size / local, _BLOCK_REACH_MM))
        return xp.maximum(xp.copysign(reach, f), box)


def _kernel(sigma: float) -> np.ndarray:
    """The normalized 1-D Gaussian weights of ``gaussian_filter`` with ``sigma`` (lattice units)."""
    radius = int(TRUNCATE * sigma + 0.5)
    w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return w / w.sum()


def _smoothed_std(sigma: np.ndarray) -> float:
    """Standard deviation of uniform noise in [-0.5, 0.5) after ``gaussian_filter`` with ``sigma``
    (lattice units) and ``TRUNCATE``: the noise's 1/12 variance times the squared kernel weights."""
    return float(np.sqrt(np.prod([np.sum(_kernel(s) ** 2) for s in sigma]) / 12.0))


def streak_field(rotation: np.ndarray, lo_mm: np.ndarray, hi_mm: np.ndarray, key: int) -> StreakField:
    """The field of ``key`` over the box ``lo_mm``..``hi_mm`` (mm, coordinates in the frame whose
    axes are the columns of ``rotation``). A node's level depends only on ``key``, the frame and
    the node, not on the box."""
    h, sigma = np.asarray(LATTICE_MM), np.asarray(SMOOTH_MM) / np.asarray(LATTICE_MM)
    pad = np.ceil(TRUNCATE * sigma).astype(np.int64)
    start = np.floor(np.asarray(lo_mm) / h).astype(np.int64)
    stop = np.ceil(np.asarray(hi_mm) / h).astype(np.int64) + 1
    noise = lattice_noise(key, start - pad, tuple(int(n) for n in stop - start + 2 * pad))
    # Zero padding beyond the kernel's reach leaves the box's values those of the infinite lattice.
    smooth = ndimage.gaussian_filter(noise, sigma, mode="constant", truncate=TRUNCATE)
    core = smooth[tuple(slice(int(p), int(p) + int(n)) for p, n in zip(pad, stop - start, strict=True))]
    scaled = core * np.float32(LEVELS_PER_SD / _smoothed_std(sigma)) + np.float32(LEVEL_ZERO)
    levels = np.ascontiguousarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
    cells = _cell_gradients(levels)
    gradient = float(cells.max()) * (1.0 + 1e-6) + 1e-9
    # Largest over each block of cells, then over the blocks next to it.
    b = np.asarray(BLOCK_CELLS)
    nb = -(-np.asarray(cells.shape) // b)
    padded = np.zeros(tuple(nb * b), np.float32)
    padded[: cells.shape[0], : cells.shape[1], : cells.shape[2]] = cells
    blocks = padded.reshape(nb[0], b[0], nb[1], b[1], nb[2], b[2]).max(axis=(1, 3, 5))
    near = ndimage.maximum_filter(blocks, size=3, mode="nearest") * np.float32(1.0 + 1e-6) + np.float32(1e-9)
    return StreakField(np.asarray(rotation, float), start, levels, gradient, near)


def _cell_gradients(levels: np.ndarray) -> np.ndarray:
    """A bound (levels/mm) on the gradient of the trilinear interpolant in each lattice cell.

    In a cell the derivative along an axis is a weighted mean of the differences along that
    axis's four edges, over the spacing: at most their largest.
    """
    v = levels.astype(np.int16)
    total = np.zeros(tuple(n - 1 for n in v.shape), np.float32)
    for a in range(3):
        edge = np.abs(np.diff(v, axis=a)).astype(np.float32)
        others = [b for b in range(3) if b != a]
        steep = None
        for i in (0, 1):
            for j in (0, 1):
                index = [slice(None)] * 3
                index[others[0]] = slice(i, i + v.shape[others[0]] - 1)
                index[others[1]] = slice(j, j + v.shape[others[1]] - 1)
                e = edge[tuple(index)]
                steep = e if steep is None else np.maximum(steep, e)
        total += (steep / np.float32(LATTICE_MM[a])) ** 2
    return np.sqrt(total)


@functools.cache
def _interpolated_sds() -> np.ndarray:
    """Standard deviations (in node standard deviations) of the trilinear interpolant at points
    spread evenly over a lattice cell: between nodes it averages them, and varies less."""
    t = (np.arange(8) + 0.5) / 8
    total = np.ones(1)
    for s in np.asarray(SMOOTH_MM) / np.asarray(LATTICE_MM):
        w = _kernel(s)
        rho = float(np.sum(w[1:] * w[:-1]) / np.sum(w * w))  # correlation of neighbouring nodes
        variance = (1 - t) ** 2 + t**2 + 2 * t * (1 - t) * rho
        total = (total[:, None] * variance[None, :]).reshape(-1)
    return np.sqrt(total)


def streak_level(fraction: float) -> float:
    """The level below which ``fraction`` of the interpolated field lies, on average over space:
    a Gaussian field whose variance varies over each cell as :func:`_interpolated_sds` says."""
    if fraction <= 0.0:
        return -np.inf
    if fraction >= 1.0:
        return np.inf
    sds = _interpolated_sds()
    z = optimize.brentq(lambda z: float(np.mean(special.ndtr(z / sds))) - fraction, -10.0, 10.0, xtol=1e-9)
    return LEVEL_ZERO + LEVELS_PER_SD * z


@dataclass(frozen=True, eq=False)
class CoarseDistances:
    """A shape's distance bounds (mm) at the nodes ``(start + n) * COARSE_MM`` (frame coordinates)
    of a coarse lattice in the frame whose axes are the columns of ``rotation``."""

    rotation: np.ndarray
    start: np.ndarray
    values: np.ndarray

    @staticmethod
    def sample(shape: Shape, rotation: np.ndarray, lo_mm: np.ndarray, hi_mm: np.ndarray) -> CoarseDistances:
        """``shape``'s distance at the nodes of a lattice that covers the frame box ``lo_mm``..``hi_mm``."""
        start = np.floor(np.asarray(lo_mm) / COARSE_MM).astype(np.int64)
        stop = np.ceil(np.asarray(hi_mm) / COARSE_MM).astype(np.int64) + 1
        axes = [np.arange(a, b) * COARSE_MM for a, b in zip(start, stop, strict=True)]
        nodes = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        values = shape.sdf(nodes @ np.asarray(rotation).T).reshape(tuple(len(a) for a in axes))
        return CoarseDistances(np.asarray(rotation, float), start, values.astype(np.float32))

    @property
    def _flat(self) -> np.ndarray:
        return self.values.reshape(-1)

    @property
    def _last_node(self) -> np.ndarray:
        return np.asarray(self.values.shape, np.int64) - 1

    def nearest(self, frame_points: Any) -> tuple[Any, Any]:
        """The value at each point's nearest node and the way to it (mm), in the points' namespace."""
        xp = namespace(frame_points)
        start, last, flat = constants(self, frame_points, "start", "_last_node", "_flat")
        index = xp.astype(xp.round(frame_points / COARSE_MM), xp.int64) - start
        index = xp.minimum(xp.maximum(index, 0), last)
        way = frame_points - xp.astype(index + start, xp.float64) * COARSE_MM
        n = self.values.shape
        value = xp.astype(take(xp, flat, (index[:, 0] * n[1] + index[:, 1]) * n[2] + index[:, 2]), xp.float64)
        return value, xp.sqrt(row_dot(xp, way, way))


@dataclass(frozen=True, eq=False)
class Marbling(Shape):
    """Fat streaks in a muscle: points of the lattice box where the field is below ``threshold``
    (levels), inside ``muscle``. The distance bound is the field less the threshold over its
    gradient bound, with the box's and the muscle's distance where they are larger.

    ``coarse`` holds the muscle's distance on a coarse lattice: a point whose nearest node lies
    ``m`` from the surface, ``r`` from the point, is outside by at least ``m / COARSE_SAFETY - r``
    when that is positive and inside by at least ``-m / COARSE_SAFETY - r`` when that is; only
    between the two is the muscle's own distance read.
    """

    field: StreakField
    threshold: float
    muscle: Shape
    coarse: CoarseDistances

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        if isinstance(points, np.ndarray) or not hasattr(points, "shape"):
            points = np.asarray(points, float)
        xp = namespace(points)
        p = xp.reshape(xp.asarray(points, dtype=xp.float64), (-1, 3))
        (rotation,) = constants(self.field, p, "rotation")
        q = _to_frame(p, rotation)
        out = self.field.signed_distance(q, self.threshold)
        m, way = self.coarse.nearest(q)
        m = m * (1.0 / COARSE_SAFETY)
        outside, inside = m - way, m + way
        # Outside the muscle by at least ``outside``; inside it by at least ``-inside``: with the
        # streaks' bound, the larger is a bound on the distance to their intersection.
        out = xp.where(outside > 0.0, xp.maximum(out, outside), out)
        out = xp.where(inside < 0.0, xp.maximum(out, inside), out)
        near = xp.nonzero((outside <= 0.0) & (inside >= 0.0) & (out < LAZY_MM))[0]
        if near.shape[0]:
            # The muscle's own distance: in place where it runs on the array API, else on the host.
            muscle = evaluate(self.muscle, take(xp, p, near))
            put(xp, out, near, xp.maximum(take(xp, out, near), muscle))
        return out

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = _world_box(self.field.rotation, *self.field.frame_box())
        mlo, mhi = self.muscle.bounds()
        lo, hi = np.maximum(lo, mlo), np.minimum(hi, mhi)
        return lo, np.maximum(hi, lo)


def _corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def _world_box(rotation: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box (mm) around the frame box ``lo``..``hi`` of ``rotation``'s frame."""
    world = _corners(lo, hi) @ rotation.T
    return world.min(axis=0), world.max(axis=0)


def streak_shape(
    muscle: Shape, path: np.ndarray, spread_mm: float, fraction: float, rng: np.random.Generator
) -> Marbling | None:
    """Streaks along ``path`` (K, 3) mm making ``fraction`` of ``muscle``'s volume, on average
    over the field, up to ``spread_mm`` from the path's box in its fibre frame; None when there
    are none. Draws the noise key from ``rng``, nothing else.

    The threshold is the ``fraction`` quantile of the field's Gaussian distribution, the same
    for every muscle shape, so that a growing ``fraction`` only adds fat, whatever the muscle.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction = {fraction!r} is outside [0, 1]")
    path = np.asarray(path, float)
    rotation = fibre_frame(path)
    key = int(rng.integers(2**63))
    q = path @ rotation
    lo, hi = q.min(axis=0) - spread_mm, q.max(axis=0) + spread_mm
    cq = _corners(*muscle.bounds()) @ rotation
    lo, hi = np.maximum(lo, cq.min(axis=0)), np.minimum(hi, cq.max(axis=0))
    if fraction == 0.0 or np.any(hi <= lo):
        return None
    coarse = CoarseDistances.sample(muscle, rotation, lo, hi)
    return Marbling(streak_field(rotation, lo, hi, key), streak_level(fraction), muscle, coarse)


def marbling_part(
    name: str, muscle: Shape, path: np.ndarray, spread_mm: float, fraction: float, rng: np.random.Generator
) -> Part | None:
    """A fat Part of streaks inside ``muscle`` (painted over it), named ``f"{name}_marbling"``.

    ``fraction`` is the share of fat across the muscle (DOMAIN.md 2.8: intramuscular fat 2 % in
    health, about 6 % six weeks after injury, far more in chronic wasting); ``spread_mm`` is how
    far from its path the streaks extend (the muscle's reach marbles all of it).
    """
    streaks = streak_shape(muscle, path, spread_mm, fraction, rng)
    if streaks is None:
        return None
    return Part(f"{name}_marbling", streaks, Structure.MUSCLE, Tissue.FAT)


def marbling_for(muscle: Part, fraction: float, rng: np.random.Generator) -> Part | None:
    """:func:`marbling_part` for a Part made by ``muscles.muscle_parts``: its path and size come
    from the part's territory; the streaks spread over up to ``SPREAD_RADII`` PCSA radii of its path."""
    territory = muscle.shape
    field, i = territory.muscles, territory.index
    spread = float(min(field.reaches[i], SPREAD_RADII * field.radii[i]))
    return marbling_part(muscle.name, territory, field.paths[i], spread, fraction, rng)
