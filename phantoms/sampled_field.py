"""Shapes read from distances sampled once on a lattice: trilinear interpolation with gradient bounds.

Samples and reads; never rasterizes. Lattices are [z, y, x], nodes ``step_mm`` apart from
``origin_mm`` (x, y, z, mm); distances are in mm, negative inside. Reading runs on the Python array
API (numpy, CuPy, array_api_strict), with the lattice copied to the points' namespace on first use.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import edt  # exact Euclidean distance transform (seung-lab, LGPL-3.0-or-later)
import numpy as np

from nmosim.phantoms.shapes import Points, Shape, array_api_sdf, constants, evaluate, namespace, put, take

_THREADS = os.cpu_count() or 1  # results do not depend on it
_CHUNK = 1 << 16  # points per distance call while sampling
_SLAB = 8  # cells along z per slab of the corner slopes


def corner_slopes(values: np.ndarray, step_mm: float) -> np.ndarray:
    """The largest gradient norm (per mm) of the trilinear interpolant over each cell of ``values``.

    Along an edge through a corner, a trilinear interpolant's partial derivative in that direction
    is constant, and its gradient norm is convex along every axis; so its largest value over a cell
    lies at a corner and is the norm of that corner's three edge differences over ``step_mm``.
    Worked in slabs of ``_SLAB`` cells along z (the same numbers, held in cache).
    """
    v = np.asarray(values, np.float32)
    n0, n1, n2 = (k - 1 for k in v.shape)
    best = np.empty((n0, n1, n2), np.float32)
    g = np.empty((min(_SLAB, n0), n1, n2), np.float32)
    for z0 in range(0, n0, _SLAB):
        m = min(_SLAB, n0 - z0)
        w = v[z0 : z0 + m + 1]
        dz, dy, dx = (np.square(np.diff(w, axis=axis)) for axis in range(3))
        out, gm = best[z0 : z0 + m], g[:m]
        for k, (cz, cy, cx) in enumerate(itertools.product((0, 1), repeat=3)):
            np.add(dx[cz : cz + m, cy : cy + n1, :], dy[cz : cz + m, :, cx : cx + n2], out=gm)
            gm += dz[:, cy : cy + n1, cx : cx + n2]
            if k == 0:
                out[...] = gm
            else:
                np.maximum(out, gm, out=out)
    np.sqrt(best, out=best)
    best /= np.float32(step_mm)
    return best


def _max_filter(a: np.ndarray, reach: int) -> np.ndarray:
    """Largest value within ``reach`` nodes along each axis (a cube ``2 reach + 1`` a side), edges
    clamped: ``ndimage.maximum_filter(a, 2 reach + 1, mode="nearest")`` by shifted maxima, worked
    in slabs of ``_SLAB`` planes along the first axis (maxima are exact: the same numbers)."""
    out = np.empty_like(a)
    n0 = a.shape[0]
    for z0 in range(0, n0, _SLAB):
        z1 = min(z0 + _SLAB, n0)
        slab = a[z0:z1].copy()
        for s in range(1, reach + 1):  # along the first axis, from the planes around the slab
            if z0 + s < n0:
                np.maximum(slab[: n0 - z0 - s], a[z0 + s : z1 + s], out=slab[: n0 - z0 - s])
            if z1 - s > 0:
                lo = max(s - z0, 0)
                np.maximum(slab[lo:], a[z0 + lo - s : z1 - s], out=slab[lo:])
        for axis in range(1, a.ndim):
            src, slab = slab, slab.copy()
            for s in range(1, min(reach, src.shape[axis] - 1) + 1):
                up = tuple(slice(s, None) if b == axis else slice(None) for b in range(a.ndim))
                down = tuple(slice(None, -s) if b == axis else slice(None) for b in range(a.ndim))
                np.maximum(slab[up], src[down], out=slab[up])
                np.maximum(slab[down], src[up], out=slab[down])
        out[z0:z1] = slab
    return out


def _pad_edge(a: np.ndarray) -> np.ndarray:
    """``a`` with one more node at the end of each axis, a copy of the last: ``np.pad(a, 1 at the
    end, mode="edge")``."""
    out = np.empty(tuple(n + 1 for n in a.shape), a.dtype)
    out[:-1, :-1, :-1] = a
    out[-1, :-1, :-1] = a[-1]
    out[:, -1, :-1] = out[:, -2, :-1]
    out[:, :, -1] = out[:, :, -2]
    return out


def _upsample(v: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of a lattice at the nodes of one twice as fine (2 n - 1 a side)."""
    out = v
    for axis in range(3):
        n = out.shape[axis]
        shape = list(out.shape)
        shape[axis] = 2 * n - 1
        fine = np.empty(shape, out.dtype)
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        even[axis], odd[axis] = slice(0, None, 2), slice(1, None, 2)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        fine[tuple(even)] = out
        fine[tuple(odd)] = 0.5 * (out[tuple(lo)] + out[tuple(hi)])
        out = fine
    return out


def _cell_closure(cells: np.ndarray) -> np.ndarray:
    """Nodes (2 n + 1 a side) of a lattice twice as fine that lie on the flagged cells (n a side)."""
    out = cells
    for axis in range(3):
        n = out.shape[axis]
        shape = list(out.shape)
        shape[axis] = 2 * n + 1
        nodes = np.zeros(shape, bool)
        odd = [slice(None)] * 3
        odd[axis] = slice(1, None, 2)
        nodes[tuple(odd)] = out
        for start in (0, 2):  # each even node closes the cells on both sides
            even = [slice(None)] * 3
            even[axis] = slice(start, start + 2 * n, 2)
            nodes[tuple(even)] |= out
        out = nodes
    return out


def _evaluate_nodes(sdf: Callable[[np.ndarray], np.ndarray], points: np.ndarray) -> np.ndarray:
    """``sdf`` at ``points`` (N, 3), in chunks over threads (pointwise: the same for any count)."""
    chunks = [points[i : i + _CHUNK] for i in range(0, points.shape[0], _CHUNK)]
    if not chunks:
        return np.empty(0)
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        return np.concatenate(list(pool.map(sdf, chunks)))


def sample_band(
    sdf: Callable[[np.ndarray], np.ndarray],
    origin_mm: np.ndarray,
    step_mm: float,
    shape: tuple[int, int, int],
    clamp_mm: tuple[float, float],
    refine_mm: float,
    levels: int = 2,
) -> np.ndarray:
    """``sdf`` (a 1-Lipschitz distance, mm) clipped to ``clamp_mm`` on a lattice (float32 [z, y, x]).

    Sampled coarse to fine: on a lattice ``2**levels`` times coarser, then at each finer level only
    at the nodes of the cells that the surface may come within ``refine_mm`` of; elsewhere the
    coarser level's interpolation stands in (a cell whose corners all lie beyond the clamp, by
    more than its half-diagonal, is wholly beyond it: there the values are exact).
    ``shape`` is (z, y, x) node counts, each ``k * 2**levels + 1``.
    """
    scale = 2**levels
    if any((n - 1) % scale for n in shape):
        raise ValueError(f"lattice shape {shape} is not k * {scale} + 1 a side")
    origin = np.asarray(origin_mm, float)

    def nodes(index: np.ndarray, h: float) -> np.ndarray:
        return origin + index[:, ::-1] * h

    h = step_mm * scale
    coarse = tuple((n - 1) // scale + 1 for n in shape)
    every = np.indices(coarse).reshape(3, -1).T
    v = _evaluate_nodes(sdf, nodes(every, h)).reshape(coarse).astype(np.float32)
    for _ in range(levels):
        lo, hi = _cell_range(v)
        half = 0.5 * np.sqrt(3.0) * h
        beyond = (lo >= clamp_mm[1] + half) | (hi <= clamp_mm[0] - half)
        far = (lo >= refine_mm + half) | (hi <= -refine_mm - half)
        todo = _cell_closure(~beyond & ~far)
        v = _upsample(v)
        h /= 2.0
        index = np.argwhere(todo)
        v[todo] = _evaluate_nodes(sdf, nodes(index, h))
    return np.clip(v, clamp_mm[0], clamp_mm[1]).astype(np.float32)


def _trilinear(xp: ModuleType, flat: Any, shape: tuple[int, ...], i0: Any, t: Any) -> tuple[Any, Any]:
    """Trilinear interpolation of lattice values ``flat`` (nodes [z, y, x] of ``shape``, flattened)
    in the cells whose first corners are ``i0`` (N, 3; x, y, z) at float32 fractions ``t``;
    returns the values and the cells' flat indices."""
    _, ny, nx = shape
    base = (i0[:, 2] * ny + i0[:, 1]) * nx + i0[:, 0]
    tx, ty, tz = t[:, 0], t[:, 1], t[:, 2]
    sx = 1.0 - tx
    value = None
    for offset, w in (
        (0, (1.0 - tz) * (1.0 - ty)),
        (nx, (1.0 - tz) * ty),
        (nx * ny, tz * (1.0 - ty)),
        (nx * ny + nx, tz * ty),
    ):
        row = base + offset
        term = w * (sx * take(xp, flat, row) + tx * take(xp, flat, row + 1))
        value = term if value is None else value + term
    return value, base


@dataclass(frozen=True, eq=False)
class BandedField(Shape):
    """A Shape whose surface is the zero set of the trilinear interpolation ``I`` of ``values``
    ([z, y, x], float32, nodes ``step_mm`` apart from ``origin_mm`` (x, y, z)), negative inside;
    ``outside`` (the shape the lattice was sampled from) stands in beyond the lattice's box.

    The distance is ``phi(I)``: ``|I| / slope_band`` up to ``band_mm``, then growing at
    ``1 / slope_rest``, with ``slope_band`` at least the largest gradient of ``I`` over the cells
    that hold values within ``band_mm`` (and at least 1) and ``slope_rest`` at least the largest
    over all. It is then 1-Lipschitz, so a true lower bound of the distance to the surface and
    exact in sign, and layers read from it (a depth below ``band_mm``) are its level sets.
    Sampled from a 1-Lipschitz distance, ``slope_band`` is about 1: the band reads that distance.
    """

    values: np.ndarray
    origin_mm: np.ndarray
    step_mm: float
    band_mm: float
    slope_band: float
    slope_rest: float
    outside: Shape

    def __post_init__(self) -> None:
        v = np.ascontiguousarray(self.values, np.float32)
        top = np.asarray(self.origin_mm, float) + (np.array(v.shape[::-1]) - 1) * self.step_mm
        object.__setattr__(self, "_flat", v.reshape(-1))
        object.__setattr__(self, "_lo", np.asarray(self.origin_mm, float))
        object.__setattr__(self, "_hi", top)
        object.__setattr__(self, "_top", np.array(v.shape[::-1], np.int64) - 2)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        box = _inside_box(self.values)
        lo, hi = self.outside.bounds()
        if box is None:
            return lo, hi
        s_lo = self._lo + (box[0][::-1] - 1) * self.step_mm
        s_hi = self._lo + (box[1][::-1] + 1) * self.step_mm
        return np.minimum(lo, s_lo), np.maximum(hi, s_hi)

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        xp = namespace(points)
        lo, hi = constants(self, points, "_lo", "_hi")
        within = xp.all((points >= lo) & (points <= hi), axis=1)
        if bool(xp.all(within)):
            return self._read(points)
        out = xp.zeros(points.shape[0], dtype=xp.float64, device=array_api_compat.device(points))
        idx = xp.nonzero(within)[0]
        rest = xp.nonzero(~within)[0]
        if idx.shape[0]:
            put(xp, out, idx, self._read(take(xp, points, idx)))
        put(xp, out, rest, evaluate(self.outside, take(xp, points, rest)))
        return out

    def _read(self, points: Points) -> Any:
        """``phi(I)`` at points inside the lattice's box."""
        xp = namespace(points)
        flat, lo, top = constants(self, points, "_flat", "_lo", "_top")
        u = (points - lo) * (1.0 / self.step_mm)
        i0 = xp.minimum(xp.astype(xp.floor(u), xp.int64), top)  # u >= 0
        t = xp.astype(u - xp.astype(i0, xp.float64), xp.float32)
        value, base = _trilinear(xp, flat, self.values.shape, i0, t)
        size = xp.abs(xp.astype(value, xp.float64))
        band = float(self.band_mm)
        d = xp.where(
            size <= band,
            size * (1.0 / self.slope_band),
            band / self.slope_band + (size - band) * (1.0 / self.slope_rest),
        )
        return xp.where(value < 0.0, -d, d)


def banded_field(
    shape: Shape,
    lo_mm: np.ndarray,
    hi_mm: np.ndarray,
    step_mm: float,
    clamp_mm: tuple[float, float],
    band_mm: float,
    refine_mm: float,
    levels: int = 2,
) -> BandedField:
    """``shape``'s distance (1-Lipschitz where within ``clamp_mm``) sampled over the box
    ``lo_mm``-``hi_mm`` (grown to whole coarse cells) every ``step_mm`` (:func:`sample_band`),
    read as a :class:`BandedField` with ``shape`` beyond the box."""
    scale = 2**levels
    lo = np.asarray(lo_mm, float)
    cells = np.ceil((np.asarray(hi_mm, float) - lo) / (step_mm * scale)).astype(int)
    n = tuple(int(k) * scale + 1 for k in cells[::-1])  # z, y, x
    values = sample_band(shape.sdf, lo, step_mm, n, clamp_mm, refine_mm, levels)
    slopes = corner_slopes(values, step_mm)
    lo_cell, hi_cell = _cell_range(values)
    in_band = (lo_cell <= band_mm) & (hi_cell >= -band_mm)
    # Rounded up: float32 interpolation must not make the bound overstate.
    grow = 1.0 + 1e-4
    slope_band = max(float(slopes[in_band].max(initial=0.0)) * grow, 1.0)
    slope_rest = max(float(slopes.max()) * grow, slope_band)
    return BandedField(values, lo, float(step_mm), float(band_mm), slope_band, slope_rest, shape)


# ----------------------------------------------------------------------------------------------
# Fields with local gradient bounds (the muscles' territories)
# ----------------------------------------------------------------------------------------------

# A SampledField's values are held within +-FIELD_CLAMP_MM: deeper than the rasterizer's blocks
# need to be called uniform on grids of 2 mm or finer.
FIELD_CLAMP_MM = 16.0
NEAR_MM = 2.0  # radius of the fine gradient bounds (per cell) of a sampled field ...
SLOPE_BLOCK = 8  # ... and cells per block edge of the coarse ones (within FIELD_CLAMP_MM)
GAP_BLOCK = 1  # cells per block edge of the gap bound's distance transform (2: looser, no cheaper)
_SQRT3 = float(np.sqrt(3.0))


@dataclass(frozen=True, eq=False)
class SampledField(Shape):
    """A Shape whose surface is the zero set of the trilinear interpolation ``I`` of ``values``
    ([z, y, x], float32, nodes ``step_mm`` apart from ``origin_mm`` (x, y, z)); negative inside.

    The distance returned is the larger of two lower bounds. One is ``|I|`` over a bound of
    ``I``'s gradient taken from the node values: over a cell, the gradient is largest at a corner
    (:func:`corner_slopes`). ``near_slope`` (flat, per node: the cell it starts) holds the largest
    such bound over the cells within ``NEAR_MM``, ``far_slope`` (the same, per block of
    ``SLOPE_BLOCK`` cells) over those within ``FIELD_CLAMP_MM``; a zero of ``I`` within that radius
    is then no nearer than ``|I| / slope``. The other, ``gap`` (per node, mm), is the distance from
    the cell to the nearest cell that holds a zero of ``I``, from a distance transform of blocks of
    cells (:func:`_gap`). Both are true lower bounds of the distance to the
    surface, exact in sign. Boundary nodes are positive, so outside the lattice the distance to
    its box stands in.
    """

    values: np.ndarray
    origin_mm: np.ndarray
    step_mm: float
    near_slope: np.ndarray
    far_slope: np.ndarray
    gap: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        nz, ny, nx = self.values.shape
        object.__setattr__(self, "_flat", np.ascontiguousarray(self.values, np.float32).reshape(-1))
        object.__setattr__(self, "_top", np.array([nx, ny, nz], np.float64) - 1.0)
        object.__setattr__(self, "_top_cell", np.array([nx, ny, nz], np.int64) - 2)
        object.__setattr__(self, "_origin", np.asarray(self.origin_mm, np.float64))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lower.copy(), self.upper.copy()

    @property
    def _near32(self) -> np.ndarray:
        return self.near_slope.astype(np.float32)

    @property
    def _far32(self) -> np.ndarray:
        return self.far_slope.astype(np.float32)

    @property
    def _gap32(self) -> np.ndarray:
        return self.gap.astype(np.float32)

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        xp = namespace(points)
        origin, top = constants(self, points, "_origin", "_top")
        u = (points - origin) * (1.0 / self.step_mm)
        within = xp.all((u >= 0.0) & (u <= top), axis=1)
        if bool(xp.all(within)):
            return self._read(u)
        gap = xp.maximum(xp.maximum(-u, u - top), 0.0)
        gap2 = gap * gap
        out = xp.sqrt((gap2[:, 0] + gap2[:, 2]) + gap2[:, 1]) * self.step_mm + 1e-6
        idx = xp.nonzero(within)[0]
        if idx.shape[0]:
            put(xp, out, idx, self._read(take(xp, u, idx)))
        return out

    def _read(self, u: Any) -> Any:
        """The distance bound at lattice coordinates ``u`` (N, 3; x y z in steps) inside the lattice."""
        xp = namespace(u)
        flat, top_cell = constants(self, u, "_flat", "_top_cell")
        if isinstance(u, np.ndarray):
            near_slope, far_slope, gap = self.near_slope, self.far_slope, self.gap
        else:  # the standard has no float16: float32 copies, the same numbers
            near_slope, far_slope, gap = constants(self, u, "_near32", "_far32", "_gap32")
        i0 = xp.minimum(xp.astype(u, xp.int64), top_cell)  # u >= 0: truncation is the floor
        t = xp.astype(u - xp.astype(i0, xp.float64), xp.float32)
        value, base = _trilinear(xp, flat, self.values.shape, i0, t)
        size = xp.abs(value)
        near = xp.astype(take(xp, near_slope, base), xp.float32)
        far = xp.astype(take(xp, far_slope, base), xp.float32)
        bound = xp.maximum(
            xp.minimum(size / near, NEAR_MM),
            xp.minimum(size / far, FIELD_CLAMP_MM),
        )
        bound = xp.maximum(bound, xp.astype(take(xp, gap, base), xp.float32))
        bound = xp.where(size > 0.0, xp.astype(bound, xp.float64), 0.0)
        return xp.where(value < 0.0, -bound, bound)


def _round_up16(a: np.ndarray) -> np.ndarray:
    """float16 no smaller than ``a`` (float32): a slope bound kept as a bound."""
    return (a * np.float32(1.001) + np.float32(1e-3)).astype(np.float16)


def sampled_field(values: np.ndarray, origin_mm: np.ndarray, step_mm: float) -> SampledField:
    """:class:`SampledField` of ``values`` (float32 [z, y, x], at least 2 nodes a side, negative
    inside, every boundary node positive), with its gradient and gap bounds."""
    v = np.ascontiguousarray(values, np.float32)
    cell = corner_slopes(v, step_mm)
    reach = int(np.ceil(NEAR_MM / step_mm))
    near = _pad_edge(_round_up16(_max_filter(cell, reach))).reshape(-1)  # per node: its cell
    blocks = _block_max(cell, SLOPE_BLOCK)
    far_reach = int(np.ceil(np.ceil(FIELD_CLAMP_MM / step_mm) / SLOPE_BLOCK)) + 1
    far = _round_up16(_max_filter(blocks, far_reach))
    nodes = [np.minimum(np.arange(n) // SLOPE_BLOCK, m - 1) for n, m in zip(v.shape, far.shape, strict=True)]
    far = far[np.ix_(*nodes)].reshape(-1)
    # Cells that may hold a zero: the interpolant spans its corners' values, no more.
    lo_cell, hi_cell = _cell_range(v)
    holds = (lo_cell <= 0.0) & (hi_cell >= 0.0)
    gap = _gap(holds, step_mm)
    gap = _pad_edge(gap.astype(np.float16)).reshape(-1)
    origin = np.asarray(origin_mm, float)
    box = _inside_box(v)
    if box is None:
        lower = upper = origin.copy()
    else:
        lower = origin + (box[0][::-1] - 1) * step_mm
        upper = origin + (box[1][::-1] + 1) * step_mm
    return SampledField(v, origin, float(step_mm), near, far, gap, lower, upper)


def _block_max(cell: np.ndarray, b: int) -> np.ndarray:
    """Largest value of each block of ``b`` cells a side (the last blocks padded with the edge)."""
    pad = [(0, -n % b) for n in cell.shape]
    blocks = np.pad(cell, pad, mode="edge") if any(p[1] for p in pad) else cell
    bz, by, bx = (n // b for n in blocks.shape)
    out = blocks.reshape(bz * b * by * b * bx, b).max(axis=1)  # maxima are exact in any order
    out = out.reshape(bz * b * by, b, bx).max(axis=1)
    return out.reshape(bz, b, by * bx).max(axis=1).reshape(bz, by, bx)


def distance_to(mask: np.ndarray, spacing_mm: float = 1.0) -> np.ndarray:
    """Distance (float32; mm for a lattice of ``spacing_mm``, else cells) from every node of a
    lattice [z, y, x] to the nearest node flagged in the boolean ``mask``: ``edt`` of its complement,
    read as uint8 (the same numbers as bool, a faster path of the transform)."""
    outside = np.logical_not(mask).view(np.uint8)
    h = float(spacing_mm)
    return edt.edt(outside, anisotropy=(h, h, h), parallel=_THREADS)


def _gap(holds: np.ndarray, step_mm: float) -> np.ndarray:
    """Per cell, a lower bound (mm, float32) of the distance to the cells flagged in ``holds``.

    Read on blocks of GAP_BLOCK cells (a block holds if any of its cells does): any point of a
    block is at least the blocks' centre distance less two half-diagonals from any point of a
    holding block. Rounded down, to stay a bound in float16.
    """
    if not holds.any():
        return np.full(holds.shape, FIELD_CLAMP_MM, np.float32)
    b = GAP_BLOCK
    if b == 1:  # each cell its own block
        blocks = holds
    else:
        padded = np.pad(holds, [(0, -n % b) for n in holds.shape])
        nz, ny, nx = (n // b for n in padded.shape)
        blocks = padded.reshape(nz, b, ny, b, nx, b).any(axis=(1, 3, 5))
    gap = distance_to(blocks).astype(np.float32, copy=False)  # block centres apart, in blocks
    gap -= np.float32(_SQRT3)
    gap *= np.float32(b * step_mm * 0.999)
    gap -= np.float32(1e-3)
    np.maximum(gap, 0.0, out=gap)
    if b == 1:
        return gap
    cells = [np.arange(n) // b for n in holds.shape]
    return gap[np.ix_(*cells)]


def _inside_box(v: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """First and last node index (z, y, x) holding a negative value; None if none does."""
    neg = v < 0.0
    rows = [np.flatnonzero(neg.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    if rows[0].size == 0:
        return None
    return np.array([r[0] for r in rows]), np.array([r[-1] for r in rows])


def _cell_range(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest corner value of each cell of a lattice (in slabs along z)."""
    shape = tuple(n - 1 for n in v.shape)
    lo_out, hi_out = np.empty(shape, v.dtype), np.empty(shape, v.dtype)
    for z0 in range(0, shape[0], _SLAB):
        z1 = min(z0 + _SLAB, shape[0])
        lo = hi = v[z0 : z1 + 1]
        for axis in range(3):
            a = [slice(None)] * 3
            b = [slice(None)] * 3
            a[axis], b[axis] = slice(None, -1), slice(1, None)
            lo = np.minimum(lo[tuple(a)], lo[tuple(b)])
            hi = np.maximum(hi[tuple(a)], hi[tuple(b)])
        lo_out[z0:z1], hi_out[z0:z1] = lo, hi
    return lo_out, hi_out
