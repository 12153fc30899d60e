"""A closed triangle mesh as a signed-distance Shape: a distance grid built once, read by interpolation.

Builds and samples the grid; it does not read mesh files or rasterize.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from nmosim.phantoms.mesh import TriangleMesh
from nmosim.phantoms.sampled_field import distance_to
from nmosim.phantoms.shapes import (
    Points,
    Shape,
    _box_distance,
    array_api_sdf,
    clip,
    constants,
    namespace,
    row_dot,
    take,
)

EXACT_BAND_CELLS = 1.5  # grid points within this many cells of the surface get exact distances
_PAIR_CHUNK = 1 << 17  # (triangle, grid point) pairs handled at once: small enough to stay in cache
_THREADS = os.cpu_count() or 1  # results do not depend on it
_LEVELS = 4  # levels of the band whose distance transforms bound the far field
_SLAB = 8  # grid planes along z per slab of the far field's arithmetic


@dataclass(frozen=True, eq=False)
class MeshShape(Shape):
    """Signed distance (mm, negative inside) to a closed mesh, from a grid of ``resolution_mm``.

    ``values`` [z, y, x] (float32) holds at grid points the exact signed distance ``d`` within
    the exact band (default ``EXACT_BAND_CELLS`` cells) of the surface. Farther out it holds the
    larger of a strict lower bound (at most sqrt(3) cells low) and ``U - band / 4``, where ``U``
    is an upper bound through the band points below four levels, ``U <= |d| + band / 4 +
    s^2 / (2 |d|)`` with ``s`` the sideways offset of the nearest band point (under a cell):
    within ``band / 4`` of ``|d|`` and, but for that small second-order term, below it.

    A query point inside the grid gets the trilinear interpolation ``I`` of its cell's corners.
    With ``t_a`` its fractional position in the cell and ``E^2 = sum_a h^2 t_a (1 - t_a)``
    (``E <= h sqrt(3) / 2``, 0 at grid points), interpolated exact values overstate ``|d|`` by at
    most ``E`` (the distance is 1-Lipschitz), and by at most ``E^2 / (2 m)`` when all corners
    lie on one side at least ``m`` from the surface (a distance function's second derivative is
    at most ``1 / m`` there). The value returned is ``I`` with ``|I|`` lowered by that bound
    times a ramp from 0 at ``|I| = h`` to 1 at ``|I| = 2 h``, and never below ``|I| / 4``, so its
    sign is that of ``I``. Hence

    - two cells or more from the surface ``|returned| <= |d|`` (up to the term above): a lower
      bound, as the rasterizer's uniform-cell test needs, within about ``band / 4 + E^2 / (2 m)``
      of the truth, so that layers (a bone's cortex) keep their depth;
    - within a cell, the interpolation of exact values: on a smooth surface of radius ``R`` it
      overstates by at most ``3 h^2 / (8 R)``, more only next to sharp creases.

    Outside the grid the distance to the grid box plus the smallest boundary bound, or the
    distance to the mesh's box if larger, stands in: a lower bound.
    """

    values: np.ndarray
    origin_mm: np.ndarray  # (x, y, z) of grid point [0, 0, 0]
    resolution_mm: float
    mesh_lower: np.ndarray
    mesh_upper: np.ndarray
    boundary_mm: float  # a lower bound on the distance at every point of the grid box's surface

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mesh_lower.copy(), self.mesh_upper.copy()

    @property
    def _flat(self) -> np.ndarray:
        return self.values.reshape(-1)

    @property
    def _counts(self) -> np.ndarray:
        nz, ny, nx = self.values.shape
        return np.array([nx, ny, nz])

    @property
    def _last_index(self) -> np.ndarray:
        return (self._counts - 1).astype(float)

    @property
    def _grid_upper(self) -> np.ndarray:
        return self.origin_mm + self.resolution_mm * (self._counts - 1)

    @array_api_sdf
    def sdf(self, points: Points) -> Any:
        """Distances (mm) at points of any array-API namespace; the grid is copied there once."""
        if isinstance(points, np.ndarray) or not hasattr(points, "shape"):
            points = np.asarray(points, dtype=float)
        xp = namespace(points)
        points = xp.reshape(xp.asarray(points, dtype=xp.float64), (-1, 3))
        device = array_api_compat.device(points)
        h = float(self.resolution_mm)
        nz, ny, nx = self.values.shape
        origin, counts, last, flat = constants(self, points, "origin_mm", "_counts", "_last_index", "_flat")
        u = (points - origin) / h  # fractional grid index, (x, y, z)
        inside = xp.all((u >= 0.0) & (u <= last), axis=1)
        out = xp.empty(points.shape[0], dtype=xp.float64, device=device)
        far = ~inside
        if bool(xp.any(far)):
            out[far] = self._outside(points[far])
        if not bool(xp.any(inside)):
            return out
        u = u[inside]
        i0 = xp.minimum(xp.astype(xp.floor(u), xp.int64), counts - 2)
        t = u - xp.astype(i0, xp.float64)
        base = (i0[:, 2] * ny + i0[:, 1]) * nx + i0[:, 0]
        tx, ty, tz = t[:, 0], t[:, 1], t[:, 2]
        n = u.shape[0]
        interp = xp.zeros(n, dtype=xp.float64, device=device)
        lowest = xp.full(n, xp.inf, dtype=xp.float64, device=device)  # smallest corner |value|
        signs = xp.zeros(n, dtype=xp.float64, device=device)
        for dz, wz in ((0, 1.0 - tz), (1, tz)):
            for dy, wy in ((0, 1.0 - ty), (1, ty)):
                row = base + (dz * ny + dy) * nx
                v0, v1 = take(xp, flat, row), take(xp, flat, row + 1)
                interp += wz * wy * ((1.0 - tx) * v0 + tx * v1)
                lowest = xp.minimum(lowest, xp.minimum(xp.abs(v0), xp.abs(v1)))
                signs += xp.sign(v0) + xp.sign(v1)
        err2 = row_dot(xp, t, 1.0 - t) * h * h
        err = xp.sqrt(err2)  # Lipschitz bound on the overstatement
        # Semiconcavity: over a cell at least m from the surface (same sign at all corners),
        # the overstatement is at most err^2 / (2 m).
        m = xp.where(xp.abs(signs) == 8, lowest - float(0.5 * np.sqrt(3.0) * h), 0.0)
        with np.errstate(divide="ignore"):
            bound = xp.where(m > 0, xp.minimum(err, err2 / (2.0 * xp.maximum(m, 1e-300))), err)
        size = xp.abs(interp)
        ramp = clip(xp, size / h - 1.0, 0.0, 1.0)
        safe = xp.maximum(size - bound * ramp, 0.25 * size)
        out[inside] = xp.copysign(safe, interp)
        return out

    def _outside(self, points: Points) -> Any:
        """A lower bound on the (positive) distance of points outside the grid box."""
        xp = namespace(points)
        names = ("origin_mm", "_grid_upper", "mesh_lower", "mesh_upper")
        lo, hi, mesh_lower, mesh_upper = constants(self, points, *names)
        to_grid = _box_distance(points, lo, hi) + float(self.boundary_mm)
        return xp.maximum(to_grid, _box_distance(points, mesh_lower, mesh_upper))


def mesh_shape(
    mesh: TriangleMesh,
    resolution_mm: float = 1.0,
    margin_mm: float | None = None,
    exact_mm: float | None = None,
    z_min_mm: float | None = None,
) -> MeshShape:
    """The signed-distance shape of a closed, outward-facing ``mesh`` on a grid of ``resolution_mm``.

    The grid covers the mesh's box grown by ``margin_mm`` (default: exact band + 2 cells). Inside and outside
    come from ray parity along z. Distances are exact point-to-triangle distances at grid points
    within ``exact_mm`` of the surface (default ``EXACT_BAND_CELLS`` cells); farther out, bounds
    from Euclidean distance transforms of that band (see :class:`MeshShape`), within about a
    quarter of the band of the truth: layers deeper than the band (a femoral shaft cortex is
    5-8 mm, DOMAIN.md 3) keep their depth to that. A wider band is exact deeper, at a build cost
    that grows about as its cube. ``z_min_mm`` ends the grid there (a femur below the scanned
    hip): below it the shape reads as outside, so keep it below every grid the shape is drawn on.

    Examples
    --------
    >>> v = np.array([[0, 0, 0], [9, 0, 0], [0, 9, 0], [0, 0, 9]], float)
    >>> f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    >>> s = mesh_shape(TriangleMesh(v, f), resolution_mm=0.5)
    >>> s.sdf(np.array([[0.25, 1.25, 1.25], [-2.0, 1.0, 1.0]])).round(2)  # a grid point, then outside
    array([-0.25,  2.  ])
    """
    h = float(resolution_mm)
    if not np.isfinite(h) or h <= 0:
        raise ValueError(f"resolution_mm = {resolution_mm!r} must be a positive number")
    band = EXACT_BAND_CELLS * h if exact_mm is None else float(exact_mm)
    if not band >= np.sqrt(3.0) / 2.0 * h:
        raise ValueError(f"exact_mm = {exact_mm!r} is below half a cell diagonal of {resolution_mm} mm")
    margin = band + 2.0 * h if margin_mm is None else float(margin_mm)
    if margin < band + h:
        raise ValueError(f"margin_mm = {margin_mm!r} is below {band + h} (exact band + one cell)")
    if not is_watertight(mesh):
        raise ValueError(
            "the mesh is not closed: an edge is not shared by exactly two faces in opposite directions"
        )
    vertices = np.asarray(mesh.vertices, dtype=float)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    lower, upper = vertices.min(axis=0), vertices.max(axis=0)
    if z_min_mm is not None and z_min_mm > lower[2]:
        lower[2] = float(z_min_mm)  # parity still counts the crossings below the grid
    origin = lower - margin
    counts = np.ceil((upper + margin - origin) / h).astype(int) + 1  # (nx, ny, nz)
    shape = (int(counts[2]), int(counts[1]), int(counts[0]))

    inside = _parity_inside(vertices, faces, origin, h, shape)
    frames = _face_frames(vertices[faces])
    near = _near_distances(vertices, faces, frames, origin, h, shape, band)
    in_band = near <= band  # ``near`` is unsigned
    if in_band.any():
        to_band = distance_to(in_band, h)
    else:
        to_band = np.full(shape, np.inf, dtype=np.float32)
    levels = band * np.arange(1, _LEVELS + 1) / _LEVELS
    below = []
    for level in levels[:-1]:
        mask = near <= level
        if mask.any():
            below.append((level, distance_to(mask, h)))
    values = np.empty(shape, np.float32)
    for z0 in range(0, shape[0], _SLAB):  # slabs along z: the same numbers, held in cache
        sl = slice(z0, z0 + _SLAB)
        # Beyond the band, |d| >= D + band - sqrt(3) h, D the distance to the nearest band point:
        # the path to the surface meets a band point within half a cell diagonal of its depth
        # ``band - h sqrt(3) / 2``. They are also farther than ``band``.
        far = np.maximum(to_band[sl] + (band - np.sqrt(3.0) * h), band)
        # Through a band point g, |d(p)| <= |p - g| + d(g): the distance to the band points below
        # each of a few levels, plus that level, bounds |d| from above, within a cell or so of it.
        over = to_band[sl] + band
        for level, to_level in below:
            over = np.minimum(over, to_level[sl] + level)
        far = np.maximum(far, over - band / _LEVELS)  # below |d| but for a second-order term
        size = np.where(in_band[sl], near[sl], far).astype(np.float32)
        values[sl] = np.where(inside[sl], -size, size)
    boundary = min(
        float(np.abs(values[[0, -1]]).min()),
        float(np.abs(values[:, [0, -1]]).min()),
        float(np.abs(values[:, :, [0, -1]]).min()),
    )
    boundary = max(boundary - 0.5 * np.sqrt(3.0) * h, 0.0)  # anywhere on a boundary face
    return MeshShape(values, origin, h, lower, upper, boundary)


def _expand_boxes(start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For boxes of integer index ranges ``[start, stop)`` (rows, k axes): (box id, index) pairs."""
    sizes = np.maximum(stop - start, 0)
    n = np.prod(sizes, axis=1)
    owner = np.repeat(np.arange(n.size), n)
    local = np.arange(owner.size) - np.repeat(np.cumsum(n) - n, n)
    index = np.empty((owner.size, start.shape[1]), dtype=np.int64)
    for a in range(start.shape[1] - 1, -1, -1):
        s = sizes[owner, a]
        index[:, a] = start[owner, a] + local % s
        local //= s
    return owner, index


def _parity_inside(
    vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, h: float, shape: tuple[int, int, int]
) -> np.ndarray:
    """Grid points [z, y, x] inside the mesh by the parity of surface crossings below them along z.

    A column at (x, y) crosses a triangle when it falls inside its xy projection. Rays that
    pass exactly through an edge or vertex are treated as if moved by (eps, eps^2) in (x, y), and
    each edge's test is computed from its vertices in index order, so the triangles that share an
    edge agree exactly and every ray crosses a closed surface an even number of times.
    """
    nz, ny, nx = shape
    xy = (vertices[:, :2] - origin[:2]) / h  # grid units
    z = (vertices[:, 2] - origin[2]) / h
    tri = xy[faces]  # (F, 3, 2)
    start = np.maximum(np.ceil(tri.min(axis=1)).astype(np.int64), 0)
    stop = np.minimum(np.floor(tri.max(axis=1)).astype(np.int64) + 1, [nx, ny])
    crossings = []
    chunk = max(1, _PAIR_CHUNK // 16)
    for f0 in range(0, faces.shape[0], chunk):
        sl = slice(f0, f0 + chunk)
        owner, col = _expand_boxes(start[sl], stop[sl])
        owner += f0
        p = col.astype(float)  # column position (x, y) in grid units
        fv = faces[owner]
        sides = []
        for e in range(3):
            va, vb = fv[:, e], fv[:, (e + 1) % 3]
            flip = va > vb
            lo_v, hi_v = np.where(flip, vb, va), np.where(flip, va, vb)
            a, b = xy[lo_v], xy[hi_v]
            ex, ey = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
            w = ex * (p[:, 1] - a[:, 1]) - ey * (p[:, 0] - a[:, 0])
            # The ray moved by (eps, eps^2): the sign of w's derivative decides a tie.
            tie = np.where(ey != 0, -ey, ex)
            w = np.where(w == 0, tie, w)
            sides.append(np.where(flip, -np.sign(w), np.sign(w)))
        hit = (sides[0] == sides[1]) & (sides[1] == sides[2]) & (sides[0] != 0)
        owner, p = owner[hit], p[hit]
        col = col[hit]
        # Depth of the crossing: the triangle's plane at the column.
        f = faces[owner]
        a, b, c = xy[f[:, 0]], xy[f[:, 1]], xy[f[:, 2]]
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        wb = ((p[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (p[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])) / area
        wc = ((b[:, 0] - a[:, 0]) * (p[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (p[:, 0] - a[:, 0])) / area
        zc = (1.0 - wb - wc) * z[f[:, 0]] + wb * z[f[:, 1]] + wc * z[f[:, 2]]
        k = np.clip(np.ceil(zc).astype(np.int64), 0, nz)  # first grid point above the crossing
        flat = np.where(k < nz, (k * ny + col[:, 1]) * nx + col[:, 0], nz * ny * nx)
        crossings.append(flat)
    # Counted once (modulo 256, as a uint8 sum of the chunks' counts would be): only parity matters.
    flat = np.concatenate(crossings) if crossings else np.zeros(0, np.int64)
    toggles = np.bincount(flat, minlength=nz * ny * nx + 1).astype(np.uint8)
    counts = toggles[:-1].reshape(shape)
    np.cumsum(counts, axis=0, dtype=np.uint8, out=counts)
    return (counts & 1).astype(bool)


def _face_frames(tri: np.ndarray) -> np.ndarray:
    """Per face, as columns: vertex a, edges ab and ac, unit normal, the dual vectors that give
    the barycentric coordinates (u, v) of ``p - a``, and the inverse squared edge lengths.

    A degenerate face (zero area) gets zero dual vectors and normal: it is then judged by its
    edges alone, which is its true distance.
    """
    a, ab, ac = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    n = np.cross(ab, ac)
    nn = np.einsum("ij,ij->i", n, n)
    inv = np.divide(1.0, nn, out=np.zeros_like(nn), where=nn > 0)[:, None]
    m1 = np.cross(ac, n) * inv  # u = (p - a) . m1
    m2 = np.cross(n, ab) * inv  # v = (p - a) . m2
    unit = n * np.sqrt(inv)

    def inv_len2(e: np.ndarray) -> np.ndarray:
        e2 = np.einsum("ij,ij->i", e, e)
        return np.divide(1.0, e2, out=np.zeros_like(e2), where=e2 > 0)[:, None]

    cols = [a, ab, ac, unit, m1, m2, inv_len2(ab), inv_len2(ac), inv_len2(ac - ab)]
    return np.ascontiguousarray(np.concatenate(cols, axis=1).T)  # (21, F)


def _point_triangle_distance(w: list[np.ndarray], fr: np.ndarray) -> np.ndarray:
    """Distance (mm) from points ``w = p - a`` (x, y, z arrays) to their faces, whose frames
    (see :func:`_face_frames`, rows 3 onwards, one column per point) are ``fr``."""
    wx, wy, wz = w
    abx, aby, abz, acx, acy, acz = fr[3:9]
    s = wx * fr[9] + wy * fr[10] + wz * fr[11]
    u = wx * fr[12] + wy * fr[13] + wz * fr[14]
    v = wx * fr[15] + wy * fr[16] + wz * fr[17]
    face = (u >= 0) & (v >= 0) & (u + v <= 1) & (fr[9] ** 2 + fr[10] ** 2 + fr[11] ** 2 > 0)

    def segment(qx: np.ndarray, qy: np.ndarray, qz: np.ndarray, ex, ey, ez, inv2) -> np.ndarray:
        t = np.clip((qx * ex + qy * ey + qz * ez) * inv2, 0.0, 1.0)
        rx, ry, rz = qx - t * ex, qy - t * ey, qz - t * ez
        return rx * rx + ry * ry + rz * rz

    d2 = segment(wx, wy, wz, abx, aby, abz, fr[18])
    d2 = np.minimum(d2, segment(wx, wy, wz, acx, acy, acz, fr[19]))
    d2 = np.minimum(d2, segment(wx - abx, wy - aby, wz - abz, acx - abx, acy - aby, acz - abz, fr[20]))
    return np.where(face, np.abs(s), np.sqrt(d2))


def _near_distances(
    vertices: np.ndarray,
    faces: np.ndarray,
    frames: np.ndarray,
    origin: np.ndarray,
    h: float,
    shape: tuple[int, int, int],
    band: float,
) -> np.ndarray:
    """Exact unsigned distance (mm) to the mesh at grid points [z, y, x] within ``band`` of it.

    Other grid points hold +inf or a distance above ``band``. Each triangle visits the grid
    points of its box grown by ``band``; those farther than ``band`` from its plane are dropped
    before the exact distance.
    """
    nz, ny, nx = shape
    counts = np.array([nx, ny, nz])
    tri = vertices[faces]  # (F, 3, 3)
    g = (tri - origin) / h
    start = np.maximum(np.ceil(g.min(axis=1) - band / h).astype(np.int64), 0)
    stop = np.minimum(np.floor(g.max(axis=1) + band / h).astype(np.int64) + 1, counts)
    frames32 = frames.astype(np.float32)
    cum = np.cumsum(np.prod(np.maximum(stop - start, 0), axis=1))
    total = int(cum[-1]) if cum.size else 0
    cuts = np.searchsorted(cum, np.arange(_PAIR_CHUNK, total, _PAIR_CHUNK), side="right")
    splits = np.unique(np.concatenate([[0], cuts, [faces.shape[0]]]))

    def chunk(f0: int, f1: int) -> tuple[np.ndarray, np.ndarray]:
        owner, index = _expand_boxes(start[f0:f1], stop[f0:f1])
        owner += f0
        # Offsets from vertex a are small, so float32 keeps them to well under a micrometre.
        w = [(origin[k] + h * index[:, k] - frames[k, owner]).astype(np.float32) for k in range(3)]
        # Points farther than the band from a face's plane are farther from the face.
        plane = w[0] * frames32[9, owner] + w[1] * frames32[10, owner] + w[2] * frames32[11, owner]
        keep = np.flatnonzero(np.abs(plane) <= band)
        owner, index = owner[keep], index[keep]
        d = _point_triangle_distance([x[keep] for x in w], frames32[:, owner])
        flat = (index[:, 2] * ny + index[:, 1]) * nx + index[:, 0]
        return flat, d

    best = np.full(nz * ny * nx, np.inf, dtype=np.float32)
    # The minimum does not depend on the order in which chunks arrive.
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        for flat, d in pool.map(chunk, splits[:-1], splits[1:]):
            np.minimum.at(best, flat, d)
    return best.reshape(shape)


def mesh_volume_mm3(mesh: TriangleMesh) -> float:
    """Enclosed volume (mm^3) of a closed, outward-facing mesh by the divergence theorem."""
    v = np.asarray(mesh.vertices, dtype=float)
    f = np.asarray(mesh.faces, dtype=np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    centre = v.mean(axis=0)  # signed tetrahedra from a nearby point: less cancellation
    a, b, c = a - centre, b - centre, c - centre
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def is_watertight(mesh: TriangleMesh) -> bool:
    """True when every edge is shared by exactly two faces that run along it in opposite directions."""
    f = np.asarray(mesh.faces, dtype=np.int64)
    if f.size == 0:
        return False
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    if np.any(directed[:, 0] == directed[:, 1]):
        return False
    # Each directed edge must occur once, and its reverse once.
    n = int(f.max()) + 1
    key = directed[:, 0] * n + directed[:, 1]
    reverse = directed[:, 1] * n + directed[:, 0]
    key_sorted = np.sort(key)
    if np.any(key_sorted[1:] == key_sorted[:-1]):
        return False
    pos = np.searchsorted(key_sorted, reverse)
    pos = np.minimum(pos, key_sorted.size - 1)
    return bool(np.all(key_sorted[pos] == reverse))
