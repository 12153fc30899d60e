"""Shapes and the rasterizer on the Python array API.

numpy results are pinned by hashes taken from the code before it moved to the array API, so they
stay the same bytes. array_api_strict (a namespace that rejects anything outside the standard) runs
the same code on the CPU and must give the same numbers: it wraps numpy, so operations that are the
same give the same bytes. CuPy parity is checked where a GPU is present.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from nmosim.phantoms.grid import Grid
from nmosim.phantoms.mesh import TriangleMesh
from nmosim.phantoms.mesh_shape import mesh_shape
from nmosim.phantoms.rasterize import Layer, Part, rasterize
from nmosim.phantoms.shapes import (
    Box,
    Capsule,
    Difference,
    Ellipsoid,
    HalfSpace,
    Intersection,
    MirrorX,
    Offset,
    Plate,
    Shape,
    Sphere,
    Union,
    evaluate,
    rotation_matrix,
    runs_on_array_api,
    tube,
)

try:  # absent on the lent GPU machine unless bundled; the CuPy tests need neither of these
    import array_api_strict as xps
except ImportError:
    xps = None
try:
    from skimage.measure import marching_cubes
except ImportError:
    marching_cubes = None

STRICT_ARRAY = None if xps is None else type(xps.asarray(0.0))
needs_strict = pytest.mark.skipif(xps is None, reason="array_api_strict is not installed")


def _digest(array: np.ndarray) -> str:
    a = np.ascontiguousarray(array)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def _ball_mesh() -> TriangleMesh:
    """Marching-cubes sphere of radius 9 mm, faces counter-clockwise seen from outside (without
    scikit-image, a subdivided icosahedron of that radius: a ball mesh of other bytes)."""
    if marching_cubes is None:
        return _icosphere(9.0, 3)
    ax = np.arange(-12.0, 12.0 + 0.5, 1.0)
    x, y, z = np.meshgrid(ax, ax, ax, indexing="ij")
    v, f, _, _ = marching_cubes(9.0 - np.sqrt(x * x + y * y + z * z), 0.0, spacing=(1.0,) * 3)
    return TriangleMesh(v - 12.0, np.ascontiguousarray(f[:, ::-1]).astype(np.int64))


def _icosphere(radius: float, levels: int) -> TriangleMesh:
    """Icosahedron split ``levels`` times (each triangle into four), vertices on the sphere,
    faces counter-clockwise seen from outside."""
    t = (1.0 + 5.0**0.5) / 2.0
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
         (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]  # fmt: skip
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    verts = [np.asarray(p, float) / np.linalg.norm(p) for p in v]

    def mid(a: int, b: int, middle: dict[tuple[int, int], int]) -> int:
        key = (min(a, b), max(a, b))
        if key not in middle:
            m = verts[a] + verts[b]
            verts.append(m / np.linalg.norm(m))
            middle[key] = len(verts) - 1
        return middle[key]

    for _ in range(levels):
        split: list[tuple[int, int, int]] = []
        cache: dict[tuple[int, int], int] = {}
        for a, b, c in faces:
            ab, bc, ca = mid(a, b, cache), mid(b, c, cache), mid(c, a, cache)
            split += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = split
    return TriangleMesh(radius * np.asarray(verts), np.asarray(faces, dtype=np.int64))


def _wavy(points: np.ndarray) -> np.ndarray:
    """A depth (mm) that varies with position: numpy only, so it runs on the host."""
    return 1.0 + 0.5 * np.sin(points[:, 0] / 7.0)


def catalogue() -> dict[str, Shape]:
    """One of every shape type and combination, placed to overlap the test points."""
    rot = rotation_matrix((1, 2, 0.5), 33.0)
    ball = Sphere((3, -2, 1), 11.0)
    egg = Ellipsoid((-4, 5, 2), (18, 9, 6), rot)
    rod = Capsule((-20, 0, -10), (15, 8, 12), 4.0, 7.0)
    brick = Box((2, 3, -4), (10, 6, 14), rot, rounding=2.0)
    pieces = (ball, egg, rod, brick, Sphere((30, 25, -20), 6.0))
    return {
        "sphere": ball,
        "ellipsoid": egg,
        "ellipsoid_axis": Ellipsoid((1, 1, 1), (8, 12, 5)),
        "capsule": rod,
        "box": brick,
        "box_plain": Box((0, 0, 0), (7, 9, 11)),
        "plate": Plate((-10, -5, 0), (12, -3, 4), (0, 15, -6), 3.0),
        "halfspace": HalfSpace((1, 2, 3), (0.3, -1, 0.5)),
        "union": Union(pieces),
        "union_smooth": Union(pieces, smooth_mm=6.0),
        "tube": tube([(-30, -30, -30), (-10, 0, 0), (10, 5, 20), (35, 30, 25)], [3, 5, 4, 6], 4.0),
        "intersection": Intersection((ball, egg, brick)),
        "difference": Difference(brick, ball),
        "offset": Offset(egg, 3.0),
        "offset_field": Offset(rod, _wavy, max_mm=1.5),
        "mirror": MirrorX(Union((rod, egg), smooth_mm=3.0)),
        "nested": Difference(Union((Offset(ball, -2.0), MirrorX(brick)), 4.0), Intersection((rod, egg))),
        "mesh": mesh_shape(_ball_mesh(), resolution_mm=1.3),
    }


def sample_points(n: int = 4000, seed: int = 3) -> np.ndarray:
    """Random points over the shapes plus a few on exact centres (degenerate branches)."""
    p = np.random.default_rng(seed).uniform(-45.0, 45.0, size=(n, 3))
    special = [(3, -2, 1), (-4, 5, 2), (1, 1, 1), (0, 0, 0), (2, 3, -4), (-3, 5, 2)]
    return np.concatenate([p, np.asarray(special, float)])


# sha256 (first 16 hex digits) of each shape's distances at sample_points(), taken from the
# numpy code before it was written on the array API.
SDF_HASHES = {
    "sphere": "9f43b4e20b63a9d1",
    "ellipsoid": "02cdd0729e891ee3",
    "ellipsoid_axis": "6c565a9406608ca5",
    "capsule": "8e80e98cd62ee79e",
    "box": "e6c2a063172c3b6d",
    "box_plain": "8bed927d50e7d992",
    "plate": "4caabd375780b08b",
    "halfspace": "cec061b234a7235b",
    "union": "b0bac89e00b2ed62",
    "union_smooth": "4117cb791d990a66",
    "tube": "7560ff8c3e057f5f",
    "intersection": "20df2df5f520faf2",
    "difference": "32db236acdd1a981",
    "offset": "9f783ca75fef4d84",
    "offset_field": "60b73ff667014214",
    "mirror": "d176dd66257c09a4",
    "nested": "1852598a5b3e8236",
    "mesh": "6828151643cba65e",
}


@pytest.fixture(scope="module")
def shapes() -> dict[str, Shape]:
    return catalogue()


def test_numpy_distances_are_the_bytes_of_before(shapes):
    pts = sample_points()
    assert sorted(shapes) == sorted(SDF_HASHES)
    got = {name: _digest(shape.sdf(pts)) for name, shape in shapes.items()}
    if marching_cubes is None:  # the stand-in ball mesh has bytes of its own
        got.pop("mesh")
        assert got == {k: v for k, v in SDF_HASHES.items() if k != "mesh"}
    else:
        assert got == SDF_HASHES


@needs_strict
def test_strict_array_api_distances_equal_numpys(shapes):
    """array_api_strict wraps numpy: the same operations give the same bytes. Row dot products,
    numpy's einsum, are summed in einsum's order elsewhere; allow a few ulps should a CPU differ."""
    pts = sample_points()
    spts = xps.asarray(pts)
    for name, shape in shapes.items():
        expected = shape.sdf(pts)
        got = shape.sdf(spts)
        assert isinstance(got, STRICT_ARRAY), name
        got = np.asarray(got)
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-12, err_msg=name)


class _NumpyOnlyBall(Shape):
    """A shape with a numpy-only distance, like those defined outside shapes.py."""

    def sdf(self, points: np.ndarray) -> np.ndarray:
        assert isinstance(points, np.ndarray)  # proves it ran on the host
        return np.linalg.norm(points - [4.0, 0.0, 0.0], axis=1) - 9.0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([-5.0, -9.0, -9.0]), np.array([13.0, 9.0, 9.0])


@needs_strict
def test_numpy_only_shapes_run_on_the_host_inside_array_api_ones():
    host = _NumpyOnlyBall()
    scene = Difference(Union((host, Capsule((-20, 0, 0), (0, 0, 0), 5.0)), 3.0), MirrorX(host))
    assert not runs_on_array_api(host)
    assert runs_on_array_api(scene) and runs_on_array_api(scene.base)
    pts = sample_points(800)
    got = evaluate(scene, xps.asarray(pts))
    assert isinstance(got, STRICT_ARRAY)
    # independently: the same formula by hand, numpy only
    ball = np.linalg.norm(pts - [4.0, 0.0, 0.0], axis=1) - 9.0
    mirrored = np.linalg.norm(pts * [-1, 1, 1] - [4.0, 0.0, 0.0], axis=1) - 9.0
    rod = Capsule((-20, 0, 0), (0, 0, 0), 5.0).sdf(pts)
    inside = (np.minimum(ball, rod) < 0) & ~(mirrored < 0)
    assert np.array_equal(np.asarray(got) < 0, inside)
    np.testing.assert_array_equal(np.asarray(got), scene.sdf(pts))


@needs_strict
def test_a_subclass_that_overrides_sdf_is_not_taken_for_array_api():
    class Shifted(Sphere):
        def sdf(self, points):
            return super().sdf(points) + 1.0

    assert runs_on_array_api(Sphere((0, 0, 0), 1.0))
    assert not runs_on_array_api(Shifted((0, 0, 0), 1.0))
    pts = sample_points(50)
    got = evaluate(Shifted((0, 0, 0), 5.0), xps.asarray(pts))
    np.testing.assert_allclose(np.asarray(got), np.linalg.norm(pts, axis=1) - 4.0, rtol=1e-12)


def small_scene() -> tuple[list[Part], Grid]:
    """Overlapping parts with layers (fixed and varying depth), a mesh, a numpy-only shape and
    instances, on an anisotropic grid that is not a whole number of blocks."""
    shapes = catalogue()
    parts = [
        Part("body", shapes["union_smooth"], 1, 1, layers=(Layer(3.0, 2), Layer(_wavy, 3, 4))),
        Part("plate", shapes["plate"], 5, 4),
        Part("bone", shapes["mesh"], 6, 5, layers=(Layer(1.5, 6),)),
        Part("host", _NumpyOnlyBall(), 7, 7, instance=2),
        Part("nested", shapes["nested"], 8, 8, instance=3),
        Part("tube", shapes["tube"], 9, 3, instance=1),
        Part("outside", Sphere((500, 0, 0), 5.0), 10, 9),
    ]
    grid = Grid.centered((29, 37, 43), (1.9, 1.6, 2.3), (1.0, -2.0, 0.5))
    return parts, grid


def _raster_digest(r) -> str:
    arrays = (r.structures, r.tissues, r.instances, r.mixed_index, r.mixed_fractions)
    return "".join(_digest(a)[:8] for a in arrays)


# _raster_digest of small_scene() per supersampling, taken from the numpy code before the array API.
RASTER_HASHES = {
    1: "68241d9a2bd32bbbc57b0e674b9af4b1916135e8",
    2: "628caebbcc18aac76b02c55b9b6c4f66f1abbc4d",
    3: "67cb08eabef15f2f3118a27508f52da9aa31cd59",
}


@pytest.mark.skipif(marching_cubes is None, reason="scikit-image is not installed (the scene's mesh)")
@pytest.mark.parametrize("s", [1, 2, 3])
def test_numpy_rasterization_is_the_bytes_of_before(s):
    parts, grid = small_scene()
    r = rasterize(parts, grid, s, threads=2)
    assert r.mixed_index.size > 100 or s == 1  # partial-volume voxels to pin (none at s = 1)
    assert len(np.unique(r.structures)) >= 7
    assert _raster_digest(r) == RASTER_HASHES[s]


@needs_strict
@pytest.mark.parametrize("s", [1, 3])
def test_strict_array_api_rasterization_equals_numpys(s):
    """Refinement, classification and supersampling in array_api_strict: the same labels and
    fractions, byte for byte (the same operations; the distances agree to the last bit here)."""
    parts, grid = small_scene()
    expected = rasterize(parts, grid, s, threads=1)
    got = rasterize(parts, grid, s, threads=2, xp=xps)
    for name in ("structures", "tissues", "instances", "mixed_index", "mixed_fractions"):
        a, b = getattr(expected, name), getattr(got, name)
        assert isinstance(b, np.ndarray) and b.dtype == a.dtype, name
        np.testing.assert_array_equal(b, a, err_msg=name)


@needs_strict
def test_numpy_only_depth_fields_run_on_the_host():
    """A layer whose depth is a numpy-only field: painted where the field puts it."""
    grid = Grid.centered((24, 24, 24), (1.0, 1.0, 1.0))
    ball = Sphere((0.0, 0.0, 0.0), 10.0)
    parts = [Part("ball", ball, 1, 1, layers=(Layer(_wavy, 2),))]
    got = rasterize(parts, grid, 1, threads=1, xp=xps)
    k, j, i = np.meshgrid(*(np.arange(24),) * 3, indexing="ij")
    centres = grid.index_to_mm(np.stack([k, j, i], -1).reshape(-1, 3))
    d = np.linalg.norm(centres, axis=1) - 10.0
    core = (d + 1.0 + 0.5 * np.sin(centres[:, 0] / 7.0) < 0).reshape(grid.shape)
    shell = ((d < 0).reshape(grid.shape)) & ~core
    assert np.array_equal(got.tissues == 2, core)
    assert np.array_equal(got.tissues == 1, shell)


@needs_strict
@pytest.mark.slow
def test_strict_array_api_rasterizes_the_hip_scene_like_numpy():
    """The whole hip scene at a coarse grid: muscles and other numpy-only shapes on the host."""
    from nmosim.phantoms.anatomy import scene_bounds
    from nmosim.phantoms.phantom import build_phantom
    from nmosim.phantoms.spec import AnatomySpec

    phantom = build_phantom(AnatomySpec(), np.random.default_rng(0))
    lo, hi = scene_bounds(AnatomySpec())
    grid = Grid.covering(tuple(lo), tuple(hi), 6.0)
    expected = rasterize(phantom.parts, grid, 2, threads=2)
    got = rasterize(phantom.parts, grid, 2, threads=2, xp=xps)
    assert len(np.unique(expected.structures)) >= 6  # body, muscle, fat, bones, vessels ...
    assert _raster_digest(got) == _raster_digest(expected)


def _cupy_namespace():
    """CuPy's array-API namespace when CuPy sees a GPU, else None (nothing imported otherwise)."""
    from nmosim.simulate import arrays

    return arrays.namespace("cuda") if arrays.has_gpu_arrays() else None


needs_cupy = pytest.mark.skipif(_cupy_namespace() is None, reason="no CuPy with a GPU")


@needs_cupy
def test_cuda_distances_match_numpy(shapes):
    """On the GPU sums may be fused or reordered: equal to rounding, same sign off the surface."""
    cp = _cupy_namespace()
    pts = sample_points()
    for name, shape in shapes.items():
        expected = shape.sdf(pts)
        got = shape.sdf(cp.asarray(pts))
        assert type(got).__module__.startswith("cupy"), name
        got = got.get()
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, err_msg=name)
        clear = np.abs(expected) > 1e-6
        assert np.array_equal(got[clear] < 0, expected[clear] < 0), name


@needs_cupy
@pytest.mark.parametrize("s", [1, 3])
def test_cuda_rasterization_matches_numpy(s):
    """Labels equal but where a sample lies within rounding of a surface (none expected here)."""
    parts, grid = small_scene()
    expected = rasterize(parts, grid, s, threads=2)
    got = rasterize(parts, grid, s, threads=2, xp=_cupy_namespace())
    differ = (got.structures != expected.structures) | (got.tissues != expected.tissues)
    assert differ.sum() <= 2
    for tissue in range(1, 10):
        a, b = expected.tissue_fraction(tissue), got.tissue_fraction(tissue)
        assert np.abs(a - b).sum() <= 2.0 / s**3, tissue


if __name__ == "__main__":  # print the reference hashes
    pts = sample_points()
    for name, shape in catalogue().items():
        print(f'    "{name}": "{_digest(shape.sdf(pts))}",')
    parts, grid = small_scene()
    for s in (1, 2, 3):
        print(f'    {s}: "{_raster_digest(rasterize(parts, grid, s, threads=2))}",')
