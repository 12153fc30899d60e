"""Rasterize a scene of labelled shapes onto a grid, with supersampling for partial volume.

Cost follows the boundaries: blocks and voxels far from a surface are decided from one distance
sample; only voxels a surface crosses are supersampled. Knows nothing of anatomy or X-rays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from nmosim.phantoms.errors import SpecError, check_range
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import N_TISSUES
from nmosim.phantoms.shapes import Shape, evaluate, field_at, namespace, put, take, to_host

MAX_SUPERSAMPLING = 8  # sub-samples per voxel edge: 512 per voxel that a surface crosses
BLOCK = 8  # voxels per block edge in the coarse pass
# Distance bounds of blended or tapered shapes may overstate the true distance a little; a
# block or voxel is called uniform only when its centre is this many half-diagonals from a surface.
BLOCK_SAFETY = 1.3
VOXEL_SAFETY = 1.1

Depth = float | Callable[[Any], Any]  # a field runs on the host unless marked ``array_api_sdf``


@dataclass(frozen=True)
class Layer:
    """The inside of a part deeper than ``depth_mm`` below its surface, with its own tissue.

    ``depth_mm`` may be a function of position (points (N, 3) in mm -> depths in mm).
    """

    depth_mm: Depth
    tissue: int
    structure: int | None = None  # None: the part's structure


@dataclass(frozen=True)
class Part:
    """A shape painted with a structure id, a tissue id and an instance id (0 = none).

    Parts are painted in order: a later part covers an earlier one where they overlap.
    ``layers`` (outermost first) paint the deeper inside with other tissues, such as a bone's
    trabecular core under its cortex, at the cost of one distance evaluation.
    """

    name: str
    shape: Shape
    structure: int
    tissue: int
    instance: int = 0
    layers: tuple[Layer, ...] = ()

    def labels(self) -> list[tuple[int, int, int]]:
        """(structure, tissue, instance) of the part and of each of its layers."""
        out = [(int(self.structure), int(self.tissue), int(self.instance))]
        for layer in self.layers:
            structure = self.structure if layer.structure is None else layer.structure
            out.append((int(structure), int(layer.tissue), int(self.instance)))
        return out


@dataclass(frozen=True)
class Rasterization:
    """Labels on a grid and the tissue fractions of the voxels that surfaces cross.

    ``structures``, ``tissues`` and ``instances`` hold the dominant label of each voxel;
    ``mixed_index`` (sorted flat indices into the grid) and ``mixed_fractions`` (rows summing
    to 1) give the tissue make-up of partial-volume voxels, those whose sub-samples hold more
    than one tissue. Every other voxel is all ``tissues``.
    """

    grid: Grid
    structures: np.ndarray
    tissues: np.ndarray
    instances: np.ndarray
    mixed_index: np.ndarray
    mixed_fractions: np.ndarray
    supersampling: int

    def tissue_fraction(self, tissue: int, xp: ModuleType | None = None) -> Any:
        """Volume fraction (0 to 1) of ``tissue`` in every voxel, float32 ``[z, y, x]`` in the array
        namespace ``xp`` (default numpy)."""
        values = np.zeros(N_TISSUES, dtype=np.float32)
        values[tissue] = 1.0
        return self.weighted_sum(values, xp)

    def weighted_sum(self, per_tissue: Sequence[float], xp: ModuleType | None = None) -> Any:
        """Sum over tissues of fraction times ``per_tissue[t]``: e.g. a density map, float32
        ``[z, y, x]`` in the array namespace ``xp`` (default numpy; e.g. CuPy's on a GPU: the labels are
        copied there and the map is made there)."""
        values_np = np.asarray(per_tissue, dtype=np.float32)
        if values_np.shape != (N_TISSUES,):
            raise ValueError(f"per_tissue needs {N_TISSUES} values, got shape {values_np.shape}")
        xp = namespace(np.empty(0)) if xp is None else xp
        values = xp.asarray(values_np)
        tissues = xp.reshape(xp.asarray(self.tissues), (-1,))
        out = take(xp, values, tissues)
        if self.mixed_index.size:
            put(xp, out, xp.asarray(self.mixed_index), xp.asarray(self.mixed_fractions) @ values)
        return xp.reshape(out, self.grid.shape)


def _subsample_offsets(spacing_mm: np.ndarray, s: int) -> np.ndarray:
    """Offsets (mm, x y z) of the ``s**3`` sub-voxel sample points around a voxel centre."""
    f = (np.arange(s) + 0.5) / s - 0.5
    gz, gy, gx = np.meshgrid(f, f, f, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1) * spacing_mm


def _index_box(grid: Grid, shape: Shape) -> tuple[np.ndarray, np.ndarray] | None:
    """Voxel index range ``[start, stop)`` (z, y, x) whose voxels may touch the shape."""
    lo, hi = shape.bounds()
    half = 0.5 * np.asarray(grid.spacing_mm)
    start = np.floor(grid.mm_to_index(lo - half)).astype(int)
    stop = np.ceil(grid.mm_to_index(hi + half)).astype(int) + 1
    start = np.clip(start, 0, grid.shape)
    stop = np.clip(stop, 0, grid.shape)
    if np.any(stop <= start):
        return None
    return start, stop


def _cell_centres(grid: Grid, cells: Any, step: int) -> Any:
    """Points (mm, x y z) at the centres of cells (rows z, y, x) of ``step`` voxels on the grid.

    ``cells`` may be of any array-API namespace; the points are in the same one. For
    ``step == 1`` these are exactly the voxel centres of :meth:`Grid.index_to_mm`.
    """
    xp = namespace(cells)
    cols = []
    for a in range(3):
        index = xp.astype(cells[:, 2 - a] * step, xp.float64) + (step - 1) / 2.0
        cols.append(float(grid.origin_mm[a]) + index * float(grid.spacing_mm[a]))
    return xp.stack(cols, axis=1)


_CHILDREN = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), axis=-1).reshape(1, 8, 3)


@dataclass
class _PartState:
    """One part or layer: cells wholly inside it and its surface voxels with sub-sample occupancy.

    Cells are aligned to the grid: ``inside[c]`` holds rows (z, y, x) of cells of ``c`` voxels.
    Always numpy arrays, whichever namespace classified the part.
    """

    inside: dict[int, np.ndarray]
    surface: np.ndarray  # flat grid indices of voxels that the surface crosses
    surface_occupancy: np.ndarray  # (n_surface_voxels, s**3) bool


def _depth(depth: Depth, points: Any) -> Any:
    """A layer's depth (mm) at ``points``: a fixed number, or a field (numpy-only ones run on the host)."""
    return field_at(depth, points) if callable(depth) else float(depth)


def _states(d: Any, points: Any, depths: list[Depth], margin: float) -> Any:
    """State per level (rows) and point: 0 outside, 1 inside, 2 within ``margin`` of the surface."""
    xp = namespace(d)
    rows = []
    for depth in depths:
        dl = d + _depth(depth, points)
        inside = dl < -margin
        near = ~inside & ~(dl > margin)  # NaN counts as near, as before
        rows.append(xp.astype(inside, xp.uint8) + 2 * xp.astype(near, xp.uint8))
    return xp.stack(rows)


def _classify(part: Part, grid: Grid, s: int, xp: ModuleType) -> list[_PartState] | None:
    """Inside cells and surface voxels of the part and of each of its layers.

    Cells of BLOCK voxels are halved down to single voxels only where a surface may pass, so
    distance evaluations concentrate near surfaces. A cell is uniform when its centre lies more
    than a safety factor times the reach of its sample points from every surface; uniform cells
    that stick out of the part's index box are split further, so nothing is painted outside it.
    The work runs in the array namespace ``xp``; the states come back as numpy arrays.
    """
    box = _index_box(grid, part.shape)
    if box is None:
        return None
    start_np, stop_np = box
    start, stop = xp.asarray(start_np, dtype=xp.int64), xp.asarray(stop_np, dtype=xp.int64)
    spacing = np.asarray(grid.spacing_mm)
    voxel_half_diag = float(0.5 * np.linalg.norm(spacing))
    depths: list[Depth] = [0.0] + [layer.depth_mm for layer in part.layers]
    nd = len(depths)
    inside: list[dict[int, Any]] = [{} for _ in depths]

    offsets_np = _subsample_offsets(spacing, s)
    nsub = offsets_np.shape[0]
    # A voxel's content is that of its sub-samples, which lie within (s - 1) / s half-diagonals
    # of its centre; those of a cell of ``step`` voxels lie within (step - 1) voxel
    # half-diagonals plus that reach of the cell's centre.
    reach = float(np.linalg.norm(offsets_np, axis=1).max())

    b0, b1 = start_np // BLOCK, -(-stop_np // BLOCK)
    axes = [np.arange(b0[a], b1[a]) for a in range(3)]
    cells = xp.asarray(np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3), dtype=xp.int64)
    children = xp.asarray(_CHILDREN, dtype=xp.int64)
    step = BLOCK
    while step > 1:
        pts = _cell_centres(grid, cells, step)
        margin = BLOCK_SAFETY * ((step - 1) * voxel_half_diag + reach)
        st = _states(evaluate(part.shape, pts), pts, depths, margin)
        mixed = xp.any(st == 2, axis=0)
        lo = cells * step
        within = xp.all((lo >= start) & (lo + step <= stop), axis=1)
        some_inside = xp.any(st == 1, axis=0)
        for i in range(nd):
            inside[i][step] = cells[(st[i, :] == 1) & within & ~mixed]
        cells = cells[mixed | (some_inside & ~within)]
        # Children of the cells to split, less those wholly outside the box.
        step //= 2
        cells = xp.reshape(2 * cells[:, None, :] + children, (-1, 3))
        lo = cells * step
        cells = cells[xp.all((lo < stop) & (lo + step > start), axis=1)]

    centres = _cell_centres(grid, cells, 1)
    d = evaluate(part.shape, centres)
    # Farther than the reach from every surface, the sub-samples share the centre's side. With
    # one sub-sample per voxel, the sign at the centre is the voxel's content.
    st = _states(d, centres, depths, VOXEL_SAFETY * reach)
    on_surface = xp.any(st == 2, axis=0)
    ny, nx = grid.shape[1], grid.shape[2]
    flat = (cells[:, 0] * ny + cells[:, 1]) * nx + cells[:, 2]
    if bool(xp.any(on_surface)):
        if s == 1:  # the single sub-sample is the voxel centre (and d == 0 there)
            sub_pts, d_sub = centres[on_surface], d[on_surface]
        else:
            offsets = xp.asarray(offsets_np, dtype=xp.float64)
            sub_pts = xp.reshape(centres[on_surface][:, None, :] + offsets[None, :, :], (-1, 3))
            d_sub = evaluate(part.shape, sub_pts)
    out = []
    for i, depth in enumerate(depths):
        inside[i][1] = cells[st[i, :] == 1]
        surf = st[i, :] == 2
        if bool(xp.any(surf)):
            occ = xp.reshape(d_sub + _depth(depth, sub_pts) < 0.0, (-1, nsub))[surf[on_surface]]
            occ = to_host(occ)
        else:
            occ = np.empty((0, nsub), bool)
        cells_inside = {step: to_host(c) for step, c in inside[i].items()}
        out.append(_PartState(cells_inside, to_host(flat[surf]), occ))
    return out


def _paint_inside(part_id: np.ndarray, st: _PartState, k: int) -> None:
    """Write ``k`` over the cells wholly inside a part; ``part_id`` dims are multiples of BLOCK."""
    nz, ny, nx = part_id.shape
    for step, cells in st.inside.items():
        if cells.size == 0:
            continue
        if step == 1:
            part_id[cells[:, 0], cells[:, 1], cells[:, 2]] = k
        else:
            view = part_id.reshape(nz // step, step, ny // step, step, nx // step, step)
            view[cells[:, 0], :, cells[:, 1], :, cells[:, 2], :] = k


def worker_threads(threads: int | None) -> int:
    """Worker threads: ``threads`` if given (an integer >= 1), else every core."""
    if threads is None:
        return os.cpu_count() or 1
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise SpecError(f"threads = {threads!r} is outside [1, inf)")
    return int(threads)


def _counts(values: np.ndarray, n_values: int) -> np.ndarray:
    """Per row of a small non-negative integer array, how often each value occurs."""
    rows, cols = values.shape
    out = np.zeros((rows, n_values), dtype=np.uint16 if cols < 1 << 16 else np.int64)
    flat = out.reshape(-1)
    base = np.arange(0, rows * n_values, n_values, dtype=np.int64)
    for j in range(cols):  # a column holds each row once: no index repeats within a pass
        flat[base + values[:, j]] += 1
    return out


def rasterize(
    parts: Sequence[Part],
    grid: Grid,
    supersampling: int = 2,
    threads: int | None = None,
    xp: ModuleType | None = None,
) -> Rasterization:
    """Paint ``parts`` (later over earlier) onto ``grid``; voxels nothing covers are part 0.

    ``supersampling`` s gives s**3 sample points in each voxel that a surface crosses.
    ``threads`` classify parts concurrently (default: every core); the result does not depend on it.
    ``xp`` is the array-API namespace that refines cells, evaluates distances and supersamples
    (default numpy; e.g. CuPy's from ``nmosim.simulate.arrays.namespace("cuda")``); the labels
    are painted on the host, and the result is numpy whatever ``xp``.

    Examples
    --------
    >>> from nmosim.phantoms.shapes import Sphere
    >>> g = Grid.centered((8, 8, 8), (1.0, 1.0, 1.0))
    >>> r = rasterize([Part("ball", Sphere((0, 0, 0), 3.0), 1, 2)], g, supersampling=2)
    >>> int(r.structures[4, 4, 4]), int(r.structures[0, 0, 0])
    (1, 0)
    """
    s = int(check_range("supersampling", supersampling, 1, MAX_SUPERSAMPLING))
    if s != supersampling:
        raise ValueError(f"supersampling = {supersampling!r} must be an integer in [1, 8]")
    workers = worker_threads(threads)
    xp = namespace(np.empty(0)) if xp is None else xp
    table = np.array([(0, 0, 0)] + [lab for p in parts for lab in p.labels()], np.int64)
    if len(table) > np.iinfo(np.uint16).max:
        raise ValueError(f"too many parts and layers ({len(table) - 1}); at most 65534")

    # Parts are classified concurrently: numpy releases the GIL in the heavy array work. The
    # parts with the largest boxes (most surface, as a rule) start first, so that no long part
    # is left running alone at the end; results keep the parts' order.
    def extent(part: Part) -> float:
        lo, hi = part.shape.bounds()
        return float(np.prod(np.maximum(hi - lo, 0.0)))

    order = sorted(range(len(parts)), key=lambda i: -extent(parts[i]))
    # Cells wholly inside a part, painted in order on a grid padded to whole blocks: later
    # parts cover earlier ones. Voxels that surfaces cross are relabelled below. Each part is
    # painted as soon as it and the parts before it are classified, while the workers go on.
    padded = tuple(-(-n // BLOCK) * BLOCK for n in grid.shape)
    part_id = np.zeros(padded, dtype=np.uint16)
    surface = np.zeros(grid.shape, dtype=bool)
    states: list[_PartState | None] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {i: pool.submit(_classify, parts[i], grid, s, xp) for i in order}
        for i, part in enumerate(parts):
            classified = futures.pop(i).result()
            for st in classified if classified is not None else [None] * (1 + len(part.layers)):
                states.append(st)
                if st is not None:
                    _paint_inside(part_id, st, len(states))
                    surface.reshape(-1)[st.surface] = True
    part_id = np.ascontiguousarray(part_id[: grid.shape[0], : grid.shape[1], : grid.shape[2]])

    mixed_index = np.flatnonzero(surface)
    del surface
    row_of = np.empty(grid.shape, dtype=np.int64).reshape(-1)  # read only at mixed voxels
    row_of[mixed_index] = np.arange(mixed_index.size)
    nsub = s**3
    # Each sub-sample takes the last part that holds it: a surface part's occupied sub-samples,
    # or every sub-sample of a voxel wholly inside a part.
    sub = np.zeros((mixed_index.size, nsub), dtype=np.uint16)
    for k, st in enumerate(states, start=1):
        if st is None or st.surface.size == 0:
            continue
        rows = row_of[st.surface]
        block = sub[rows]
        block[st.surface_occupancy] = k
        sub[rows] = block
    del row_of
    np.maximum(sub, part_id.reshape(-1)[mixed_index][:, None], out=sub)

    structure_of = table[:, 0].astype(np.uint8)
    tissue_of = table[:, 1].astype(np.uint8)
    instance_of = table[:, 2].astype(np.uint16)
    structures = structure_of[part_id]
    tissues = tissue_of[part_id]
    instances = instance_of[part_id]
    if mixed_index.size:
        # Voxels whose sub-samples all lie in one part take that part's labels.
        first = sub[:, 0]
        pure = (sub == first[:, None]).all(axis=1)
        pure_index = mixed_index[pure]
        structures.reshape(-1)[pure_index] = structure_of[first[pure]]
        tissues.reshape(-1)[pure_index] = tissue_of[first[pure]]
        instances.reshape(-1)[pure_index] = instance_of[first[pure]]
        mixed_index, sub = mixed_index[~pure], sub[~pure]
    if mixed_index.size:
        # Each label is the most frequent among the voxel's sub-samples (ties: the smaller id).
        counts = _counts(tissue_of[sub], N_TISSUES)
        sub_structure = structure_of[sub]
        structure_mode = _counts(sub_structure, int(table[:, 0].max()) + 1).argmax(axis=1)
        # The instance is taken among the sub-samples of the voxel's own structure, so that a
        # voxel labelled as a lesion always carries a lesion's id.
        sub_instance = np.where(sub_structure == structure_mode[:, None], instance_of[sub], 0)
        instance_counts = _counts(sub_instance, int(table[:, 2].max()) + 1)
        instance_counts[:, 0] = 0
        instance_mode = instance_counts.argmax(axis=1)
        structures.reshape(-1)[mixed_index] = structure_mode
        tissues.reshape(-1)[mixed_index] = counts.argmax(axis=1)
        instances.reshape(-1)[mixed_index] = instance_mode
        # Voxels whose sub-samples all hold one tissue are not partial-volume voxels.
        partial = counts.max(axis=1) < nsub
        share = (np.arange(nsub + 1) / nsub).astype(np.float32)  # fraction of k sub-samples
        mixed_index, fractions = mixed_index[partial], share[counts[partial]]
    else:
        fractions = np.zeros((0, N_TISSUES), dtype=np.float32)
    return Rasterization(grid, structures, tissues, instances, mixed_index, fractions, s)
