"""A closed triangle surface in the patient frame: vertices (mm) and outward-facing faces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class TriangleMesh:
    """A triangulated surface: ``vertices`` (V, 3) float64 in mm, patient frame RAS+, and
    ``faces`` (F, 3) int64 vertex indices, counter-clockwise seen from outside."""

    vertices: np.ndarray
    faces: np.ndarray

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box ``(lower, upper)`` in mm around the vertices."""
        return self.vertices.min(axis=0), self.vertices.max(axis=0)

    def transformed(self, matrix: np.ndarray, offset: np.ndarray) -> TriangleMesh:
        """The mesh moved to ``vertices @ matrix.T + offset``; faces are flipped where the
        matrix mirrors (negative determinant) so they stay outward-facing."""
        matrix = np.asarray(matrix, float)
        vertices = self.vertices @ matrix.T + np.asarray(offset, float)
        faces = self.faces[:, ::-1] if np.linalg.det(matrix) < 0 else self.faces
        return TriangleMesh(np.ascontiguousarray(vertices), np.ascontiguousarray(faces))


def concatenate(meshes: tuple[TriangleMesh, ...] | list[TriangleMesh]) -> TriangleMesh:
    """One mesh holding all the given ones (vertices stacked, faces renumbered); closed parts stay
    closed and outward-facing."""
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    vertices = np.concatenate([m.vertices for m in meshes])
    faces = np.concatenate([m.faces + offset for m, offset in zip(meshes, offsets, strict=True)])
    return TriangleMesh(
        np.ascontiguousarray(vertices, dtype=float), np.ascontiguousarray(faces, dtype=np.int64)
    )
