"""The Phantom: an anatomy spec with its analytic scene, and its rasterization onto a grid.

Holds and labels; building shapes is anatomy.py's job, drawing pixels is rasterize.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from nmosim.phantoms.anatomy import HipLandmarks, body_radius, build_anatomy, hip_landmarks, scene_bounds
from nmosim.phantoms.errors import check_range
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.rasterize import Part, Rasterization, rasterize
from nmosim.phantoms.spec import AnatomySpec

SPACING_RANGE_MM = (0.1, 10.0)  # voxel sizes a phantom is rasterized at


@dataclass(frozen=True)
class Phantom:
    """An analytic hip scene: its parameters, its labelled parts and its landmarks (mm)."""

    anatomy: AnatomySpec
    parts: tuple[Part, ...]
    landmarks: HipLandmarks
    metadata: dict = field(default_factory=dict)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Box (mm, x y z) from above the iliac crests to below the lesser trochanters."""
        return scene_bounds(self.anatomy)

    def body_radius(self) -> float:
        """The skin's largest distance (mm) from the z axis, the scanner's axis of rotation, over
        :meth:`bounds`' z range."""
        return body_radius(self.anatomy)

    def grid(self, spacing_mm: float | tuple[float, float, float] = 1.5) -> Grid:
        """A grid of ``spacing_mm`` that covers :meth:`bounds`."""
        if np.ndim(spacing_mm) == 0:
            check_range("spacing_mm", spacing_mm, *SPACING_RANGE_MM)
        else:
            for s in spacing_mm:
                check_range("spacing_mm", s, *SPACING_RANGE_MM)
        lo, hi = self.bounds()
        return Grid.covering(tuple(lo), tuple(hi), spacing_mm)

    def rasterize(
        self, grid: Grid, supersampling: int = 2, threads: int | None = None, xp: ModuleType | None = None
    ) -> Rasterization:
        """Labels and tissue fractions on ``grid``, ``supersampling**3`` samples per edge voxel;
        ``threads`` workers (default every core) give the same labels for any count. ``xp``: the
        array namespace that classifies (default numpy; see :func:`nmosim.phantoms.rasterize.rasterize`);
        the labels are numpy arrays whatever it is."""
        return rasterize(self.parts, grid, supersampling, threads, xp=xp)


def build_phantom(
    anatomy: AnatomySpec,
    rng: np.random.Generator | None = None,
    lesions: Sequence[Part] = (),
    metadata: dict | None = None,
) -> Phantom:
    """Build the scene of ``anatomy``; ``rng`` places the loops of bowel (none without it).

    ``lesions`` are extra parts (heterotopic bone, confounders) painted under native bone,
    vessels and the joint space; ``metadata`` travels with the phantom into truth.json.
    """
    parts = tuple(build_anatomy(anatomy, rng, lesions))
    return Phantom(
        anatomy=anatomy, parts=parts, landmarks=hip_landmarks(anatomy), metadata=dict(metadata or {})
    )
