"""Shapes read from distances sampled once on a lattice: trilinear interpolation with gradient bounds.

Samples and reads; never rasterizes. Lattices are [z, y, x], nodes ``step_mm`` apart from
``origin_mm`` (x, y, z, mm); distances are in mm, negative inside. Reading runs on the Python array
API (numpy, CuPy, array_api_strict), with the lattice copied to the points' namespace on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from nmosim.phantoms.shapes import Points, Shape, array_api_sdf, constants, evaluate, namespace, put, take

_THREADS = os.cpu_count() or 1  # results do not depend on it
_CHUNK = 1 << 16  # points per distance call while sampling


def corner_slopes(values: np.ndarray, step_mm: float) -> np.ndarray:
    """The largest gradient norm (per mm) of the trilinear interpolant over each cell of ``values``.

    Along an edge through a corner, a trilinear interpolant's partial derivative in that direction
    is constant, and its gradient norm is convex along every axis; so its largest value over a cell
    lies at a corner and is the norm of that corner's three edge differences over ``step_mm``.
    """
    v = np.asarray(values, np.float32)
    n = tuple(k - 1 for k in v.shape)
    best = np.zeros(n, np.float32)
    for cz in (0, 1):
        for cy in (0, 1):
            for cx in (0, 1):
                corner = v[cz : cz + n[0], cy : cy + n[1], cx : cx + n[2]]
                g = np.zeros(n, np.float32)
                for axis, c in enumerate((cz, cy, cx)):
                    other = [slice(cz, cz + n[0]), slice(cy, cy + n[1]), slice(cx, cx + n[2])]
                    other[axis] = slice(1 - c, 1 - c + n[axis])
                    d = v[tuple(other)] - corner
                    g += d * d
                np.maximum(best, g, out=best)
    return np.sqrt(best) / np.float32(step_mm)


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
        lo = v
        hi = v
        for axis in range(3):
            a = [slice(None)] * 3
            b = [slice(None)] * 3
            a[axis], b[axis] = slice(None, -1), slice(1, None)
            lo = np.minimum(lo[tuple(a)], lo[tuple(b)])
            hi = np.maximum(hi[tuple(a)], hi[tuple(b)])
        half = 0.5 * np.sqrt(3.0) * h
        beyond = (lo >= clamp_mm[1] + half) | (hi <= clamp_mm[0] - half)
        far = (lo >= refine_mm + half) | (hi <= -refine_mm - half)
        todo = _cell_closure(~beyond & ~far)
        v = _upsample(v)
        h /= 2.0
        index = np.argwhere(todo)
        v[todo] = _evaluate_nodes(sdf, nodes(index, h))
    return np.clip(v, clamp_mm[0], clamp_mm[1]).astype(np.float32)


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
        inside = np.argwhere(self.values < 0.0)
        lo, hi = self.outside.bounds()
        if inside.size == 0:
            return lo, hi
        s_lo = self._lo + (inside.min(axis=0)[::-1] - 1) * self.step_mm
        s_hi = self._lo + (inside.max(axis=0)[::-1] + 1) * self.step_mm
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
        nz, ny, nx = self.values.shape
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
    lo_cell, hi_cell = values, values
    for axis in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        lo_cell = np.minimum(lo_cell[tuple(a)], lo_cell[tuple(b)])
        hi_cell = np.maximum(hi_cell[tuple(a)], hi_cell[tuple(b)])
    in_band = (lo_cell <= band_mm) & (hi_cell >= -band_mm)
    # Rounded up: float32 interpolation must not make the bound overstate.
    grow = 1.0 + 1e-4
    slope_band = max(float(slopes[in_band].max(initial=0.0)) * grow, 1.0)
    slope_rest = max(float(slopes.max()) * grow, slope_band)
    return BandedField(values, lo, float(step_mm), float(band_mm), slope_band, slope_rest, shape)
