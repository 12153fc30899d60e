"""A voxel grid in the patient frame: shape, spacing and origin (RAS+, mm).

Arrays are indexed ``[z, y, x]``; ``origin_mm`` is the centre of voxel ``[0, 0, 0]`` given as (x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmosim.phantoms.errors import SpecError


@dataclass(frozen=True)
class Grid:
    """Regular grid. ``shape`` is (nz, ny, nx); ``spacing_mm`` and ``origin_mm`` are (x, y, z).

    Examples
    --------
    >>> g = Grid.centered((4, 8, 8), (2.0, 2.0, 2.0))
    >>> g.voxel_centers_axis(0)[:2]
    array([-7., -5.])
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(n) < 1 for n in self.shape):
            raise SpecError(f"shape = {tuple(self.shape)} must be three positive integers (nz, ny, nx)")
        if len(self.spacing_mm) != 3 or not all(np.isfinite(s) and s > 0 for s in self.spacing_mm):
            raise SpecError(
                f"spacing_mm = {tuple(self.spacing_mm)} must be three positive numbers (x, y, z) in mm"
            )
        if len(self.origin_mm) != 3 or not all(np.isfinite(o) for o in self.origin_mm):
            raise SpecError(f"origin_mm = {tuple(self.origin_mm)} must be three finite numbers")
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "spacing_mm", tuple(float(s) for s in self.spacing_mm))
        object.__setattr__(self, "origin_mm", tuple(float(o) for o in self.origin_mm))

    @classmethod
    def centered(
        cls,
        shape: tuple[int, int, int],
        spacing_mm: tuple[float, float, float],
        center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> Grid:
        """Grid of ``shape`` (nz, ny, nx) whose centre lies at ``center_mm`` (x, y, z)."""
        nz, ny, nx = (int(n) for n in shape)
        counts = (nx, ny, nz)
        origin = tuple(c - (n - 1) / 2.0 * s for c, n, s in zip(center_mm, counts, spacing_mm, strict=True))
        return cls((nz, ny, nx), tuple(spacing_mm), origin)

    @classmethod
    def covering(
        cls,
        lower_mm: tuple[float, float, float],
        upper_mm: tuple[float, float, float],
        spacing_mm: float | tuple[float, float, float],
    ) -> Grid:
        """Smallest grid of the given spacing whose voxels cover the box ``[lower, upper]`` (x, y, z)."""
        sp = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
        lo, hi = np.asarray(lower_mm, float), np.asarray(upper_mm, float)
        counts = np.maximum(np.ceil((hi - lo) / sp).astype(int), 1)
        center = (lo + hi) / 2.0
        return cls.centered((counts[2], counts[1], counts[0]), tuple(sp), tuple(center))

    def window(self, zs: slice = slice(None), ys: slice = slice(None), xs: slice = slice(None)) -> Grid:
        """The voxels ``[zs, ys, xs]`` (contiguous ranges) as a grid of their own.

        >>> Grid.centered((4, 8, 8), (2.0, 2.0, 2.0)).window(slice(1, 3), xs=slice(2, 5)).origin_mm
        (-3.0, -7.0, -1.0)
        """
        ranges = [r.indices(n) for r, n in zip((zs, ys, xs), self.shape, strict=True)]
        if any(step != 1 for _, _, step in ranges):
            raise ValueError("a grid window takes contiguous ranges (step 1)")
        starts = [start for start, _, _ in ranges[::-1]]  # x, y, z
        origin = tuple(o + k * s for o, k, s in zip(self.origin_mm, starts, self.spacing_mm, strict=True))
        return Grid(tuple(stop - start for start, stop, _ in ranges), self.spacing_mm, origin)

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Number of voxels along (x, y, z)."""
        return (self.shape[2], self.shape[1], self.shape[0])

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))

    def voxel_centers_axis(self, axis: int) -> np.ndarray:
        """Coordinates (mm) of voxel centres along patient axis 0 = x, 1 = y, 2 = z."""
        n = self.size_xyz[axis]
        return self.origin_mm[axis] + self.spacing_mm[axis] * np.arange(n)

    def affine(self) -> np.ndarray:
        """4x4 RAS affine mapping NIfTI indices (i, j, k) = (x, y, z) to mm."""
        a = np.diag([*self.spacing_mm, 1.0])
        a[:3, 3] = self.origin_mm
        return a

    def index_to_mm(self, index_zyx: np.ndarray) -> np.ndarray:
        """Map array indices ``[..., (z, y, x)]`` to patient coordinates ``[..., (x, y, z)]`` in mm."""
        idx = np.asarray(index_zyx, dtype=float)[..., ::-1]
        return np.asarray(self.origin_mm) + idx * np.asarray(self.spacing_mm)

    def mm_to_index(self, points_xyz: np.ndarray) -> np.ndarray:
        """Map patient coordinates ``[..., (x, y, z)]`` (mm) to fractional indices ``[..., (z, y, x)]``."""
        p = (np.asarray(points_xyz, dtype=float) - np.asarray(self.origin_mm)) / np.asarray(self.spacing_mm)
        return p[..., ::-1]

    def to_dict(self) -> dict:
        return {
            "shape_zyx": list(self.shape),
            "spacing_mm_xyz": list(self.spacing_mm),
            "origin_mm_xyz": list(self.origin_mm),
            "affine": self.affine().tolist(),
        }
