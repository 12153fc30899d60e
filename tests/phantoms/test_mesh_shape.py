"""MeshShape: signed distance of a closed triangle mesh against analytic shapes and brute force."""

import numpy as np
import pytest
from skimage.measure import marching_cubes

from nmosim.phantoms.grid import Grid
from nmosim.phantoms.mesh import TriangleMesh
from nmosim.phantoms.mesh_shape import is_watertight, mesh_shape, mesh_volume_mm3
from nmosim.phantoms.rasterize import Part, rasterize
from nmosim.phantoms.shapes import _triangle_distance

SPHERE_R = 10.0
TORUS_R, TORUS_r = 12.0, 5.0


def sphere_sdf(p: np.ndarray) -> np.ndarray:
    return np.linalg.norm(p, axis=-1) - SPHERE_R


def torus_sdf(p: np.ndarray) -> np.ndarray:
    q = np.hypot(p[..., 0], p[..., 1]) - TORUS_R
    return np.hypot(q, p[..., 2]) - TORUS_r


def surface_mesh(sdf, half: float, step: float) -> TriangleMesh:
    """Marching cubes of ``-sdf`` (positive inside): skimage's faces then turn clockwise seen from
    outside, so they are reversed to the counter-clockwise order a TriangleMesh holds."""
    ax = np.arange(-half, half + step / 2, step)
    x, y, z = np.meshgrid(ax, ax, ax, indexing="ij")
    v, f, _, _ = marching_cubes(-sdf(np.stack([x, y, z], -1)), 0.0, spacing=(step,) * 3)
    return TriangleMesh(v - half, np.ascontiguousarray(f[:, ::-1]).astype(np.int64))


@pytest.fixture(scope="module")
def sphere() -> TriangleMesh:
    return surface_mesh(sphere_sdf, 13.0, 0.7)


@pytest.fixture(scope="module")
def torus() -> TriangleMesh:
    return surface_mesh(torus_sdf, 19.0, 0.6)


def brute_distance(mesh: TriangleMesh, points: np.ndarray) -> np.ndarray:
    """Unsigned distance to the mesh: the minimum over every triangle (shapes' own routine)."""
    tri = mesh.vertices[mesh.faces]
    out = np.full(points.shape[0], np.inf)
    for a, b, c in tri:
        out = np.minimum(out, _triangle_distance(points, a, b, c))
    return out


def test_volume_and_watertightness_of_marching_cubes_meshes(sphere, torus):
    assert is_watertight(sphere) and is_watertight(torus)
    # A marching-cubes surface lies within a fraction of a step of the true one.
    assert mesh_volume_mm3(sphere) == pytest.approx(4 / 3 * np.pi * SPHERE_R**3, rel=0.01)
    assert mesh_volume_mm3(torus) == pytest.approx(2 * np.pi**2 * TORUS_R * TORUS_r**2, rel=0.01)
    flipped = TriangleMesh(sphere.vertices, sphere.faces[:, ::-1].copy())
    assert mesh_volume_mm3(flipped) == pytest.approx(-mesh_volume_mm3(sphere))


def test_a_flipped_face_or_a_hole_is_not_watertight(sphere):
    faces = sphere.faces.copy()
    faces[7] = faces[7, ::-1]
    assert not is_watertight(TriangleMesh(sphere.vertices, faces))
    assert not is_watertight(TriangleMesh(sphere.vertices, np.delete(sphere.faces, 7, axis=0)))
    doubled = np.concatenate([sphere.faces, sphere.faces[:1]])
    assert not is_watertight(TriangleMesh(sphere.vertices, doubled))


def test_grid_points_near_the_surface_hold_exact_distances(torus):
    shape = mesh_shape(torus, resolution_mm=0.8)
    nz, ny, nx = shape.values.shape
    rng = np.random.default_rng(1)
    near = np.argwhere(np.abs(shape.values) < 1.0)
    pick = near[rng.choice(near.shape[0], 150, replace=False)]
    points = shape.origin_mm + 0.8 * pick[:, ::-1]
    expected = brute_distance(torus, points)
    got = shape.sdf(points)  # at grid points the interpolation is the stored value
    np.testing.assert_allclose(np.abs(got), expected, atol=1e-4)
    assert nx == ny and nz < nx


@pytest.mark.parametrize("name", ["sphere", "torus"])
def test_sdf_matches_the_analytic_distance_near_the_surface(name, request):
    mesh = request.getfixturevalue(name)
    analytic = sphere_sdf if name == "sphere" else torus_sdf
    shape = mesh_shape(mesh, resolution_mm=1.0)
    rng = np.random.default_rng(2)
    surface = mesh.vertices[rng.choice(len(mesh.vertices), 2000)]
    points = surface + rng.normal(0.0, 0.4, surface.shape)
    d, true = shape.sdf(points), analytic(points)
    # Within half a cell the interpolation of exact values is kept; the mesh itself departs
    # from the analytic surface by the marching-cubes chord error (under 0.05 mm here).
    close = np.abs(true) < 0.4
    assert close.sum() > 1000
    assert np.abs(d - true)[close].max() < 0.1
    # Farther out the value is lowered by at most the interpolation bound (half a diagonal).
    assert np.all(np.abs(d) <= np.abs(true) + 0.1)
    assert np.all(np.abs(d) >= np.abs(true) - 0.5 * np.sqrt(3.0) - 0.1)
    clear = np.abs(true) > 0.1
    assert np.all(np.sign(d[clear]) == np.sign(true[clear]))


def test_the_torus_hole_is_outside_and_the_tube_inside(torus):
    shape = mesh_shape(torus, resolution_mm=1.0)
    centre_axis = np.array([[0.0, 0.0, z] for z in np.linspace(-8, 8, 9)])
    assert np.all(shape.sdf(centre_axis) > 0)
    d_centre = shape.sdf(np.array([[0.0, 0.0, 0.0]]))[0]
    assert d_centre > 0 and d_centre <= TORUS_R - TORUS_r + 0.1
    tube = np.array([[TORUS_R * np.cos(a), TORUS_R * np.sin(a), 0.0] for a in np.linspace(0, 6, 7)])
    d = shape.sdf(tube)
    # Deeper than the exact band the value is a lower bound on the depth, short by at most a
    # quarter of the band (1.5 mm), the interpolation error on the tube's central ridge (at
    # most half a cell diagonal) and the interpolation bound E^2 / 2m (here under 0.15 mm).
    assert np.all(d >= -TORUS_r - 0.1) and np.all(d <= -TORUS_r + 0.375 + 0.5 * np.sqrt(3.0) + 0.15)


def test_returned_distances_never_overstate_the_true_distance(torus):
    shape = mesh_shape(torus, resolution_mm=1.0)
    rng = np.random.default_rng(3)
    lo, hi = torus.bounds()
    points = rng.uniform(lo - 6.0, hi + 6.0, (600, 3))
    # Include points near the surface, where the interpolation is kept.
    surface = torus.vertices[rng.choice(len(torus.vertices), 300)]
    points = np.concatenate([points, surface + rng.normal(0.0, 1.0, surface.shape)])
    true = brute_distance(torus, points)
    d = shape.sdf(points)
    # Near the surface the interpolation is kept: linear interpolation of the distance to a
    # tube of radius r overstates by at most 3 h^2 / (8 r) (a norm's chord error), here 0.075 mm.
    assert np.all(np.abs(d) <= true + 3 * 1.0**2 / (8 * TORUS_r))
    inside = torus_sdf(points) < 0  # the analytic inside, for points clear of the chord error
    clear = np.abs(torus_sdf(points)) > 0.15
    assert np.all((d[clear] < 0) == inside[clear])
    # Far points within the grid keep a useful bound: within two cell diagonals of the truth.
    grid = np.all((points > lo) & (points < hi), axis=1)
    assert grid.sum() > 300
    assert np.all(np.abs(d[grid]) >= true[grid] - 2.0 * np.sqrt(3.0))


def test_rasterized_volume_matches_the_mesh_and_analytic_volumes(torus):
    shape = mesh_shape(torus, resolution_mm=0.8)
    grid = Grid.centered((28, 44, 44), (0.9, 0.9, 0.9), (0.2, -0.3, 0.1))
    r = rasterize([Part("torus", shape, 1, 2)], grid, supersampling=3)
    volume = r.tissue_fraction(2).sum() * grid.voxel_volume_mm3
    assert volume == pytest.approx(mesh_volume_mm3(torus), rel=0.01)
    assert volume == pytest.approx(2 * np.pi**2 * TORUS_R * TORUS_r**2, rel=0.01)


def test_same_mesh_gives_identical_bytes(sphere):
    a = mesh_shape(sphere, resolution_mm=1.1)
    b = mesh_shape(TriangleMesh(sphere.vertices.copy(), sphere.faces.copy()), resolution_mm=1.1)
    assert a.values.tobytes() == b.values.tobytes()
    points = np.random.default_rng(4).uniform(-15, 15, (500, 3))
    assert a.sdf(points).tobytes() == b.sdf(points).tobytes()


def test_points_outside_the_grid_get_a_lower_bound(sphere):
    shape = mesh_shape(sphere, resolution_mm=1.0)
    points = np.array([[40.0, 0, 0], [0, -25.0, 3.0], [30.0, 30.0, 30.0]])
    d = shape.sdf(points)
    true = np.linalg.norm(points, axis=1) - SPHERE_R
    assert np.all(d > 0) and np.all(d <= true + 0.1)
    assert np.all(d >= true - 10.0)  # the mesh box: at most its half-diagonal short


def test_bad_resolution_margin_or_open_mesh_is_refused(sphere):
    with pytest.raises(ValueError, match="not closed"):
        mesh_shape(TriangleMesh(sphere.vertices, sphere.faces[1:]))
    with pytest.raises(ValueError, match="resolution_mm"):
        mesh_shape(sphere, resolution_mm=0.0)
    with pytest.raises(ValueError, match="margin_mm"):
        mesh_shape(sphere, resolution_mm=1.0, margin_mm=1.0)


def box_mesh(lo, hi) -> TriangleMesh:
    """An axis-aligned box as 12 triangles, counter-clockwise seen from outside."""
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    v = np.array(
        [
            [x0, y0, z0],
            [x1, y0, z0],
            [x1, y1, z0],
            [x0, y1, z0],
            [x0, y0, z1],
            [x1, y0, z1],
            [x1, y1, z1],
            [x0, y1, z1],
        ],
        dtype=float,
    )
    f = [[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4]]
    f += [[2, 3, 7], [2, 7, 6], [1, 2, 6], [1, 6, 5], [3, 0, 4], [3, 4, 7]]
    return TriangleMesh(v, np.array(f, dtype=np.int64))


def test_rays_through_vertices_and_edges_still_count_crossings_right():
    # Corners on whole millimetres: with a 1 mm grid, columns run exactly through the box's
    # vertices, along its edges and through its square faces' diagonals.
    lo, hi = np.array([-4.0, -3.0, -5.0]), np.array([4.0, 5.0, 2.0])
    mesh = box_mesh(lo, hi)
    assert is_watertight(mesh)
    assert mesh_volume_mm3(mesh) == pytest.approx(np.prod(hi - lo))
    shape = mesh_shape(mesh, resolution_mm=1.0)
    nz, ny, nx = shape.values.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    points = shape.origin_mm + np.stack([i, j, k], -1).reshape(-1, 3) * 1.0
    q = np.abs(points - (lo + hi) / 2) - (hi - lo) / 2
    true = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
    d = shape.values.reshape(-1)
    strict = np.abs(true) > 1e-9
    assert np.all(np.sign(d[strict]) == np.sign(true[strict]))
    near = np.abs(true) <= 1.5
    np.testing.assert_allclose(np.abs(d[near]), np.abs(true[near]), atol=1e-5)


def test_a_moved_and_mirrored_mesh_moves_its_distances(torus):
    matrix = np.diag([-1.0, 1.0, 1.0]) @ np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    offset = np.array([3.0, -7.0, 11.0])
    moved = torus.transformed(matrix, offset)
    assert is_watertight(moved)
    assert mesh_volume_mm3(moved) == pytest.approx(mesh_volume_mm3(torus))
    shape = mesh_shape(moved, resolution_mm=1.0)
    rng = np.random.default_rng(5)
    local = torus.vertices[rng.choice(len(torus.vertices), 500)] + rng.normal(0, 0.3, (500, 3))
    d = shape.sdf(local @ matrix.T + offset)
    close = np.abs(torus_sdf(local)) < 0.4
    np.testing.assert_allclose(d[close], torus_sdf(local[close]), atol=0.1)


def test_bytes_do_not_depend_on_the_slab_height(torus, monkeypatch):
    import nmosim.phantoms.mesh_shape as ms

    shapes = []
    for slab in (1, 5, 10_000):
        monkeypatch.setattr(ms, "_SLAB", slab)
        shapes.append(mesh_shape(torus, resolution_mm=1.0))
    for other in shapes[1:]:
        np.testing.assert_array_equal(shapes[0].values, other.values)
