"""Curved Lagrange surface meshes in the fieldwork JSON format (.mesh/.ens/.geof) as triangle surfaces.

Reads topology and node coordinates and builds a sparse matrix from nodes to triangle vertices; it
knows nothing of bones, landmarks or the patient frame.

The format is that of the fieldwork library in GIAS2 (Auckland Bioengineering Institute, MPL-2.0),
re-implemented here from its published conventions: element-local points are numbered row by row
(the first local coordinate fastest); equispaced Lagrange nodes; a triangle's local coordinates are
(xi1, xi2) with corners (0, 0), (1, 0), (0, 1); global node numbers are handed out in sorted
(element, local point) order, each new number also going to all points connected to it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import scipy.sparse as sp

# fieldwork element types: (shape, order along xi1, order along xi2)
ELEMENT_TYPES: dict[str, tuple[str, int, int]] = {
    "quad44": ("quad", 3, 3),
    "quad54": ("quad", 4, 3),
    "quad55": ("quad", 4, 4),
    "tri10": ("tri", 3, 3),
    "tri15": ("tri", 4, 4),
}


@dataclass(frozen=True, eq=False)
class LagrangeMesh:
    """Topology of a curved Lagrange surface: per element its type name and the global node
    numbers of its local points (in the element's own local order)."""

    name: str
    element_types: tuple[str, ...]
    element_nodes: tuple[np.ndarray, ...]
    number_of_nodes: int


@dataclass(frozen=True, eq=False)
class Triangulation:
    """A triangle surface linear in the node coordinates: ``vertices = T @ nodes``.

    ``T`` is (V, N) sparse (rows sum to 1), ``faces`` (F, 3) int64 counter-clockwise seen from outside
    for the node coordinates it was oriented with, ``corner_vertices`` the vertex of every element
    corner (E, 3 or 4; -1 where a triangle has no fourth), ``vertex_element`` the element each vertex
    was first made in."""

    T: sp.csr_matrix
    faces: np.ndarray
    corner_vertices: np.ndarray
    vertex_element: np.ndarray

    def vertices(self, nodes: np.ndarray) -> np.ndarray:
        """Vertex positions (V, 3) in the units of ``nodes`` (N, 3)."""
        return np.asarray(self.T @ np.asarray(nodes, float))


def _node_indices(element_type: str) -> list[tuple[int, int]]:
    """Integer indices ``(i, j)`` of an element's Lagrange nodes in fieldwork order (the first fastest)."""
    shape, p1, p2 = ELEMENT_TYPES[element_type]
    if shape == "quad":
        return [(i, j) for j in range(p2 + 1) for i in range(p1 + 1)]
    return [(i, j) for j in range(p1 + 1) for i in range(p1 + 1 - j)]


def local_points(element_type: str) -> np.ndarray:
    """Local coordinates (P, 2) of an element's Lagrange nodes in fieldwork order."""
    _, p1, p2 = ELEMENT_TYPES[element_type]
    return np.array([(i / p1, j / p2) for i, j in _node_indices(element_type)])


@functools.lru_cache(maxsize=4096)
def _falling(t: Fraction, count: int) -> Fraction:
    """``prod_{a < count} (t - a) / (a + 1)``: the 1D equispaced Lagrange factor."""
    value = Fraction(1)
    for a in range(count):
        value *= (t - a) / (a + 1)
    return value


@functools.lru_cache(maxsize=4096)
def _lagrange_1d(order: int, i: int, t: Fraction) -> Fraction:
    """The 1D Lagrange polynomial of node ``i / order`` among ``0, 1/order, ..., 1``, at ``t``."""
    value = Fraction(1)
    for m in range(order + 1):
        if m != i:
            value *= (order * t - m) / (i - m)
    return value


def _node_basis(element_type: str, node: tuple[int, int], xi1: Fraction, xi2: Fraction) -> Fraction:
    """The Lagrange basis function of ``node`` at local ``(xi1, xi2)``, in exact rationals."""
    shape, p1, p2 = ELEMENT_TYPES[element_type]
    i, j = node
    if shape == "quad":  # tensor product of 1D Lagrange polynomials on i/p1 and j/p2
        return _lagrange_1d(p1, i, xi1) * _lagrange_1d(p2, j, xi2)
    # complete polynomials on a triangle (Silvester): a product over the barycentric coordinates
    return _falling(p1 * xi1, i) * _falling(p1 * xi2, j) * _falling(p1 * (1 - xi1 - xi2), p1 - i - j)


def basis(element_type: str, xi: np.ndarray) -> np.ndarray:
    """Lagrange basis values (K, P) at local coordinates ``xi`` (K, 2): the complete (triangle) or
    tensor-product (quad) polynomial space interpolating the element's nodes.

    Evaluated in exact rationals, with ``xi`` read as the nearest fraction of denominator up to
    2**20 (the sub-grid points i/n exactly), then rounded once to float: exactly 1 and 0 at the
    nodes, and the same bits on every machine, so that vertices shared by elements merge
    everywhere (a basis from a matrix inverse carries rounding noise that depends on the BLAS).
    """
    xi = np.atleast_2d(np.asarray(xi, float))
    nodes = _node_indices(element_type)
    values = np.empty((len(xi), len(nodes)))
    for k, (x1, x2) in enumerate(xi):
        f1, f2 = (Fraction(float(x)).limit_denominator(1 << 20) for x in (x1, x2))
        values[k] = [float(_node_basis(element_type, node, f1, f2)) for node in nodes]
    return values


def _sub_grid(element_type: str, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample points (K, 2) and triangles (M, 3) of one element subdivided ``level`` times per edge,
    counter-clockwise in (xi1, xi2)."""
    n = level
    if ELEMENT_TYPES[element_type][0] == "quad":
        xi = np.array([(i / n, j / n) for j in range(n + 1) for i in range(n + 1)])
        idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)  # [j, i]
        a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
        tris = np.concatenate(
            [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
        )
        return xi, tris
    pts = [(i, j) for j in range(n + 1) for i in range(n + 1 - j)]
    index = {p: k for k, p in enumerate(pts)}
    tris = []
    for j in range(n):
        for i in range(n - j):
            tris.append((index[i, j], index[i + 1, j], index[i, j + 1]))
            if i + j + 1 < n:
                tris.append((index[i + 1, j], index[i + 1, j + 1], index[i, j + 1]))
    return np.array(pts, float) / n, np.array(tris)


def _global_numbering(connectivity: dict[tuple[int, int], list[tuple[int, int]]]) -> dict:
    """fieldwork's mapping: element points in sorted order, a new global number for each point not
    yet numbered, shared with every point it is connected to."""
    numbers: dict[tuple[int, int], int] = {}
    counter = 0
    for point in sorted(connectivity):
        if point in numbers:
            continue
        numbers[point] = counter
        for other in connectivity[point]:
            numbers.setdefault(other, counter)
        counter += 1
    return numbers


def read_mesh(mesh_path: str | Path, ens_path: str | Path) -> LagrangeMesh:
    """Read a fieldwork JSON ``.mesh`` (elements, connectivity) and ``.ens`` (custom node order)."""
    mesh = json.loads(Path(mesh_path).read_text())
    ens = json.loads(Path(ens_path).read_text())
    elements = {int(k): v.split() for k, v in mesh["elements"].items()}
    if any(flag != "0" for flag, _ in elements.values()):
        raise ValueError(f"{mesh_path}: sub-meshes are not supported")
    connectivity: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for e, (_, etype) in elements.items():
        for p in range(len(local_points(etype))):
            connectivity[(e, p)] = []
    for key, value in mesh["connectivity"].items():
        point = tuple(int(s) for s in key.split("_"))
        if point[0] < 0:
            raise ValueError(f"{mesh_path}: hanging points are not supported")
        connectivity[point] = [tuple(int(s) for s in v.split("_")) for v in value.split()]
    numbers = _global_numbering(connectivity)
    n_nodes = max(numbers.values()) + 1
    if n_nodes != int(mesh["number_of_points"]):
        raise ValueError(f"{mesh_path}: {n_nodes} nodes, file says {mesh['number_of_points']}")
    custom = ens.get("custom_map")
    order = np.arange(n_nodes) if custom is None else np.array([custom[str(i)] for i in range(n_nodes)])
    types, nodes = [], []
    for e in sorted(elements):
        etype = elements[e][1]
        types.append(etype)
        local = [numbers[(e, p)] for p in range(len(local_points(etype)))]
        nodes.append(order[np.array(local, dtype=np.int64)])
    return LagrangeMesh(str(mesh.get("name", Path(mesh_path).stem)), tuple(types), tuple(nodes), n_nodes)


def read_nodes(geof_path: str | Path) -> np.ndarray:
    """Node coordinates (N, 3) of a fieldwork JSON ``.geof`` field, in the file's units (mm)."""
    params = json.loads(Path(geof_path).read_text())["field_parameters"]
    keys = sorted(params, key=lambda k: int(k.split()[1]))
    return np.array([[float(params[k][f"dim {d}"]) for d in range(3)] for k in keys])


def _orient_consistently(faces: np.ndarray) -> np.ndarray:
    """Flip faces so that every interior edge is traversed once each way (breadth-first over the
    edge-adjacency graph); returns a copy. Leaves non-manifold edges as they come."""
    faces = faces.copy()
    n_faces = len(faces)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    face_of = np.tile(np.arange(n_faces), 3)
    key = np.sort(edges, axis=1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, face_of, edges = key[order], face_of[order], edges[order]
    same = np.all(key[1:] == key[:-1], axis=1)
    pairs = np.flatnonzero(same)
    neighbours: list[list[tuple[int, int, int]]] = [[] for _ in range(n_faces)]
    for k in pairs:
        if (k > 0 and same[k - 1]) or (k + 1 < len(same) and same[k + 1]):
            continue  # non-manifold edge
        f, g = face_of[k], face_of[k + 1]
        neighbours[f].append((g, k, k + 1))
        neighbours[g].append((f, k + 1, k))
    # work on directed edges of the original faces: flip parity per face
    flip = np.full(n_faces, -1, dtype=np.int8)
    for start in range(n_faces):
        if flip[start] >= 0:
            continue
        flip[start] = 0
        stack = [start]
        while stack:
            f = stack.pop()
            for g, kf, kg in neighbours[f]:
                agree = edges[kf, 0] == edges[kg, 0]  # same direction: one of the two must flip
                want = flip[f] ^ int(agree)
                if flip[g] < 0:
                    flip[g] = want
                    stack.append(g)
    faces[flip == 1] = faces[flip == 1][:, ::-1]
    return faces


def face_components(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Connected-component label of every face (faces sharing a vertex are connected)."""
    rows = np.repeat(np.arange(len(faces)), 3)
    incidence = sp.csr_matrix((np.ones(rows.size), (rows, faces.ravel())), shape=(len(faces), n_vertices))
    _, labels = sp.csgraph.connected_components(incidence @ incidence.T, directed=False)
    return labels


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Enclosed volume (divergence theorem), positive for outward-facing closed surfaces."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def triangulate(mesh: LagrangeMesh, level: int, reference_nodes: np.ndarray) -> Triangulation:
    """Subdivide every element ``level`` times per edge into flat triangles; vertices on shared edges
    are merged (identified by their node weights, so the merge is exact and independent of shape),
    faces are oriented consistently and outward for ``reference_nodes`` (N, 3) per closed component."""
    if level < 1:
        raise ValueError(f"level = {level} is outside [1, inf)")
    vertex_of: dict[tuple, int] = {}
    weights_rows: list[tuple[np.ndarray, np.ndarray]] = []
    vertex_element: list[int] = []
    faces: list[np.ndarray] = []
    corners: list[list[int]] = []
    cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]] = {}
    for e, (etype, nodes) in enumerate(zip(mesh.element_types, mesh.element_nodes, strict=True)):
        if etype not in cache:
            xi, tris = _sub_grid(etype, level)
            corner_xi = (
                [(0, 0), (1, 0), (1, 1), (0, 1)]
                if ELEMENT_TYPES[etype][0] == "quad"
                else [(0, 0), (1, 0), (0, 1)]
            )
            corner_k = [int(np.flatnonzero(np.all(np.isclose(xi, c), axis=1))[0]) for c in corner_xi]
            cache[etype] = (xi, tris, basis(etype, xi), corner_k)
        xi, tris, phi, corner_k = cache[etype]
        local_to_vertex = np.empty(len(xi), dtype=np.int64)
        for k in range(len(xi)):
            nz = np.flatnonzero(np.abs(phi[k]) > 1e-12)
            # sum weights of repeated nodes (collapsed edges) so equal points get equal keys
            uniq, inv = np.unique(nodes[nz], return_inverse=True)
            w = np.zeros(len(uniq))
            np.add.at(w, inv, phi[k, nz])
            keep = np.abs(w) > 1e-12
            uniq, w = uniq[keep], w[keep]
            key = tuple(uniq.tolist()) + tuple(np.round(w, 9).tolist())
            v = vertex_of.get(key)
            if v is None:
                v = len(weights_rows)
                vertex_of[key] = v
                weights_rows.append((uniq, w))
                vertex_element.append(e)
            local_to_vertex[k] = v
        faces.append(local_to_vertex[tris])
        corners.append([int(local_to_vertex[k]) for k in corner_k] + [-1] * (4 - len(corner_k)))
    indptr = np.cumsum([0] + [len(c) for c, _ in weights_rows])
    T = sp.csr_matrix(
        (np.concatenate([w for _, w in weights_rows]), np.concatenate([c for c, _ in weights_rows]), indptr),
        shape=(len(weights_rows), mesh.number_of_nodes),
    )
    all_faces = np.concatenate(faces).astype(np.int64)
    all_faces = all_faces[
        (all_faces[:, 0] != all_faces[:, 1])
        & (all_faces[:, 1] != all_faces[:, 2])
        & (all_faces[:, 0] != all_faces[:, 2])
    ]
    all_faces = _orient_consistently(all_faces)
    vertices = np.asarray(T @ reference_nodes)
    labels = face_components(all_faces, T.shape[0])
    for label in np.unique(labels):
        part = labels == label
        if signed_volume(vertices, all_faces[part]) < 0:
            all_faces[part] = all_faces[part][:, ::-1]
    return Triangulation(T, all_faces, np.array(corners, dtype=np.int64), np.array(vertex_element))


@functools.lru_cache(maxsize=16)
def cached_triangulation(mesh_path: str, ens_path: str, geof_path: str, level: int) -> Triangulation:
    """:func:`triangulate` of the mesh in ``mesh_path``/``ens_path``, oriented with the nodes of
    ``geof_path``; computed once per (files, level)."""
    mesh = read_mesh(mesh_path, ens_path)
    return triangulate(mesh, level, read_nodes(geof_path))
