"""Rasterize a scene of labelled shapes onto a grid, with supersampling for partial volume.

Cost follows the boundaries: blocks and voxels far from a surface are decided from one distance
sample; only voxels a surface crosses are supersampled. Knows nothing of anatomy or X-rays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from phantoms.errors import check_range
from phantoms.grid import Grid
from phantoms.labels import N_TISSUES
from phantoms.shapes import Shape

BLOCK = 8  # voxels per block edge in the coarse pass
# Distance bounds of blended or tapered shapes may overstate the true distance a little; a
# block or voxel is called uniform only when its centre is this many half-diagonals from a surface.
BLOCK_SAFETY = 1.3
VOXEL_SAFETY = 1.1

Depth = float | Callable[[np.ndarray], np.ndarray]


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
    ``mixed_index`` (flat indices into the grid) and ``mixed_fractions`` (rows summing to 1)
    give the tissue make-up of partial-volume voxels. Every other voxel is all ``tissues``.
    """

    grid: Grid
    structures: np.ndarray
    tissues: np.ndarray
    instances: np.ndarray
    mixed_index: np.ndarray
    mixed_fractions: np.ndarray
    supersampling: int

    def tissue_fraction(self, tissue: int) -> np.ndarray:
        """Volume fraction (0 to 1) of ``tissue`` in every voxel, float32 ``[z, y, x]``."""
        values = np.zeros(N_TISSUES, dtype=np.float32)
        values[tissue] = 1.0
        return self.weighted_sum(values)

    def weighted_sum(self, per_tissue: Sequence[float]) -> np.ndarray:
        """Sum over tissues of fraction times ``per_tissue[t]``: e.g. a density map, float32."""
        values = np.asarray(per_tissue, dtype=np.float32)
        if values.shape != (N_TISSUES,):
            raise ValueError(f"per_tissue needs {N_TISSUES} values, got shape {values.shape}")
        out = values[self.tissues]
        out.reshape(-1)[self.mixed_index] = self.mixed_fractions @ values
        return out


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


def _centres(grid: Grid, start: np.ndarray, counts: np.ndarray, step: float) -> np.ndarray:
    """Points (mm, x y z) at the centres of cells of ``step`` voxels from index ``start``."""
    axes = [
        grid.origin_mm[2 - a]
        + grid.spacing_mm[2 - a] * (start[a] + step * (np.arange(counts[a]) + 0.5) - 0.5)
        for a in range(3)
    ]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)


@dataclass
class _PartState:
    """Per part: voxel state in its index box (0 out, 1 in, 2 surface) and sub-sample occupancy."""

    start: np.ndarray
    state: np.ndarray
    surface_occupancy: np.ndarray  # (n_surface_voxels, s**3) bool, in C order of the box


def _depth(depth: Depth, points: np.ndarray) -> np.ndarray | float:
    return depth(points) if callable(depth) else float(depth)


def _states(d: np.ndarray, points: np.ndarray, depths: list[Depth], margin: float) -> np.ndarray:
    """State per level (rows) and point: 0 outside, 1 inside, 2 within ``margin`` of the surface."""
    out = np.empty((len(depths), d.size), dtype=np.uint8)
    for i, depth in enumerate(depths):
        dl = d + _depth(depth, points)
        out[i] = np.where(dl < -margin, 1, np.where(dl > margin, 0, 2))
    return out


def _classify(part: Part, grid: Grid, s: int) -> list[_PartState] | None:
    """States of the part and of each of its layers, from one evaluation of its distance."""
    box = _index_box(grid, part.shape)
    if box is None:
        return None
    start, stop = box
    size = stop - start
    spacing = np.asarray(grid.spacing_mm)
    voxel_half_diag = 0.5 * np.linalg.norm(spacing)
    depths: list[Depth] = [0.0] + [layer.depth_mm for layer in part.layers]

    # Coarse pass: one distance per block of BLOCK^3 voxels.
    nblocks = -(-size // BLOCK)
    pts = _centres(grid, start, nblocks, BLOCK)
    block_state = _states(part.shape.sdf(pts), pts, depths, BLOCK_SAFETY * BLOCK * voxel_half_diag)
    block_state = block_state.reshape(len(depths), *nblocks)
    state = block_state.repeat(BLOCK, 1).repeat(BLOCK, 2).repeat(BLOCK, 3)
    state = np.ascontiguousarray(state[:, : size[0], : size[1], : size[2]]).reshape(len(depths), -1)

    # Fine pass: voxels of blocks that any level finds mixed.
    mixed = np.flatnonzero((state == 2).any(axis=0))
    offsets = _subsample_offsets(spacing, s)
    occupancy: list[np.ndarray] = [np.empty((0, offsets.shape[0]), bool) for _ in depths]
    if mixed.size:
        centres = grid.index_to_mm(np.stack(np.unravel_index(mixed, size), axis=1) + start)
        fine = _states(part.shape.sdf(centres), centres, depths, VOXEL_SAFETY * voxel_half_diag)
        state[:, mixed] = fine
        on_surface = (fine == 2).any(axis=0)
        if on_surface.any():
            sub_pts = (centres[on_surface, None, :] + offsets[None, :, :]).reshape(-1, 3)
            d_sub = part.shape.sdf(sub_pts)
            for i, depth in enumerate(depths):
                inside = (d_sub + _depth(depth, sub_pts) < 0.0).reshape(-1, offsets.shape[0])
                occupancy[i] = inside[fine[i, on_surface] == 2]
    shape3 = tuple(size)
    return [_PartState(start, state[i].reshape(shape3), occupancy[i]) for i in range(len(depths))]


def _counts(values: np.ndarray, n_values: int) -> np.ndarray:
    """Per row of a small non-negative integer array, how often each value occurs."""
    rows = values.shape[0]
    flat = (np.arange(rows)[:, None] * n_values + values).ravel()
    return np.bincount(flat, minlength=rows * n_values).reshape(rows, n_values)


def rasterize(parts: Sequence[Part], grid: Grid, supersampling: int = 2) -> Rasterization:
    """Paint ``parts`` (later over earlier) onto ``grid``; voxels nothing covers are part 0.

    ``supersampling`` s gives s**3 sample points in each voxel that a surface crosses.

    Examples
    --------
    >>> from phantoms.shapes import Sphere
    >>> g = Grid.centered((8, 8, 8), (1.0, 1.0, 1.0))
    >>> r = rasterize([Part("ball", Sphere((0, 0, 0), 3.0), 1, 2)], g, supersampling=2)
    >>> int(r.structures[4, 4, 4]), int(r.structures[0, 0, 0])
    (1, 0)
    """
    s = int(check_range("supersampling", supersampling, 1, 8))
    if s != supersampling:
        raise ValueError(f"supersampling = {supersampling!r} must be an integer in [1, 8]")
    table = np.array([(0, 0, 0)] + [lab for p in parts for lab in p.labels()], np.int64)
    if len(table) > np.iinfo(np.uint16).max:
        raise ValueError(f"too many parts and layers ({len(table) - 1}); at most 65534")

    # Parts are classified concurrently: numpy releases the GIL in the heavy array work.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        classified = list(pool.map(lambda p: _classify(p, grid, s), parts))
    states: list[_PartState | None] = []
    for part, st in zip(parts, classified, strict=True):
        states.extend(st if st is not None else [None] * (1 + len(part.layers)))

    # Voxel-level painting and the set of voxels that some surface crosses.
    part_id = np.zeros(grid.shape, dtype=np.uint16)
    surface = np.zeros(grid.shape, dtype=bool)
    for k, st in enumerate(states, start=1):
        if st is None:
            continue
        sl = tuple(slice(a, a + b) for a, b in zip(st.start, st.state.shape, strict=True))
        view = part_id[sl]
        view[st.state != 0] = k
        surface[sl] |= st.state == 2

    mixed_index = np.flatnonzero(surface)
    row_of = np.full(grid.shape, -1, dtype=np.int64)
    row_of.reshape(-1)[mixed_index] = np.arange(mixed_index.size)
    nsub = s**3
    sub = np.zeros((mixed_index.size, nsub), dtype=np.uint16)
    for k, st in enumerate(states, start=1):
        if st is None:
            continue
        sl = tuple(slice(a, a + b) for a, b in zip(st.start, st.state.shape, strict=True))
        rows = row_of[sl]
        inside_rows = rows[(st.state == 1) & (rows >= 0)]
        sub[inside_rows] = k
        surf_rows = rows.reshape(-1)[np.flatnonzero(st.state.reshape(-1) == 2)]
        block = sub[surf_rows]
        block[st.surface_occupancy] = k
        sub[surf_rows] = block

    structures = table[part_id, 0].astype(np.uint8)
    tissues = table[part_id, 1].astype(np.uint8)
    instances = table[part_id, 2].astype(np.uint16)
    if mixed_index.size:
        # Each label is the most frequent among the voxel's sub-samples (ties: the smaller id).
        counts = _counts(table[sub, 1], N_TISSUES)
        fractions = (counts / nsub).astype(np.float32)
        sub_structure = table[sub, 0]
        structure_mode = _counts(sub_structure, int(table[:, 0].max()) + 1).argmax(axis=1)
        # The instance is taken among the sub-samples of the voxel's own structure, so that a
        # voxel labelled as a lesion always carries a lesion's id.
        sub_instance = np.where(sub_structure == structure_mode[:, None], table[sub, 2], 0)
        instance_counts = _counts(sub_instance, int(table[:, 2].max()) + 1)
        instance_counts[:, 0] = 0
        instance_mode = instance_counts.argmax(axis=1)
        structures.reshape(-1)[mixed_index] = structure_mode
        tissues.reshape(-1)[mixed_index] = counts.argmax(axis=1)
        instances.reshape(-1)[mixed_index] = instance_mode
    else:
        fractions = np.zeros((0, N_TISSUES), dtype=np.float32)
    return Rasterization(grid, structures, tissues, instances, mixed_index, fractions, s)
