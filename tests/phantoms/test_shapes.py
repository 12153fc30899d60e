"""Signed distances of the primitives and combinations against closed-form values."""

import numpy as np
import pytest

from nmosim.phantoms.shapes import (
    Box,
    Capsule,
    Difference,
    Ellipsoid,
    Intersection,
    MirrorX,
    Offset,
    Plate,
    Sphere,
    Union,
    rotation_matrix,
)


def random_points(n=2000, scale=40.0, seed=0):
    return np.random.default_rng(seed).uniform(-scale, scale, size=(n, 3))


def test_sphere_distance_is_exact():
    p = random_points()
    d = Sphere((1, 2, 3), 10.0).sdf(p)
    np.testing.assert_allclose(d, np.linalg.norm(p - [1, 2, 3], axis=1) - 10.0)


def test_ellipsoid_sign_matches_the_implicit_equation():
    rot = rotation_matrix((1, 1, 0), 30.0)
    e = Ellipsoid((2, -3, 5), (20, 10, 6), rot)
    p = random_points(5000)
    q = (p - [2, -3, 5]) @ rot
    inside = ((q / [20, 10, 6]) ** 2).sum(axis=1) < 1
    assert np.array_equal(e.sdf(p) < 0, inside)
    lo, hi = e.bounds()
    assert np.all(p[inside] >= lo) and np.all(p[inside] <= hi)


def test_capsule_and_box_distances():
    c = Capsule((0, 0, -10), (0, 0, 10), 5.0)
    assert c.sdf(np.array([[8.0, 0, 0]]))[0] == pytest.approx(3.0)
    assert c.sdf(np.array([[0, 0, 20.0]]))[0] == pytest.approx(5.0)
    b = Box((0, 0, 0), (10, 5, 2))
    assert b.sdf(np.array([[0, 0, 0.0]]))[0] == pytest.approx(-2.0)
    assert b.sdf(np.array([[13, 9, 0.0]]))[0] == pytest.approx(5.0)


def test_plate_distance_to_the_triangle():
    plate = Plate((0, 0, 0), (10, 0, 0), (0, 10, 0), thickness=2.0)
    pts = np.array([[2, 2, 5.0], [20, 0, 0], [-3, -4, 0]])
    np.testing.assert_allclose(plate.sdf(pts), [4.0, 9.0, 4.0])


def test_union_intersection_difference_follow_set_algebra():
    a, b = Sphere((0, 0, 0), 10), Sphere((8, 0, 0), 10)
    p = random_points(5000, 25)
    ia, ib = a.sdf(p) < 0, b.sdf(p) < 0
    assert np.array_equal(Union((a, b)).sdf(p) < 0, ia | ib)
    assert np.array_equal(Intersection((a, b)).sdf(p) < 0, ia & ib)
    assert np.array_equal(Difference(a, b).sdf(p) < 0, ia & ~ib)


def test_union_is_exact_near_its_surface_whatever_the_bounding_boxes():
    # Far-apart children: the union reports the exact distance below 15 mm.
    shapes = [Sphere((x, 0, 0), 4.0) for x in (-60, 0, 60)]
    u = Union(tuple(shapes))
    p = random_points(5000, 80)
    exact = np.min([s.sdf(p) for s in shapes], axis=0)
    near = exact < 15.0
    np.testing.assert_allclose(u.sdf(p)[near], exact[near])
    assert np.all(u.sdf(p)[~near] >= 15.0 - 1e-9)


def test_smooth_union_blends_only_near_the_seam():
    a, b = Sphere((0, 0, 0), 10), Sphere((15, 0, 0), 10)
    u = Union((a, b), smooth_mm=4.0)
    seam = np.array([[7.5, 0, 9.0]])  # just outside both spheres, in the crease
    assert u.sdf(seam)[0] < min(a.sdf(seam)[0], b.sdf(seam)[0])
    far = np.array([[-10.0, 0, 0]])  # on a's surface, away from b
    assert u.sdf(far)[0] == pytest.approx(0.0, abs=1e-12)


def test_offset_and_mirror():
    s = Sphere((30, 0, 0), 10)
    assert Offset(s, -3.0).sdf(np.array([[30, 0, 6.5]]))[0] == pytest.approx(-0.5)
    m = MirrorX(s)
    assert m.sdf(np.array([[-30, 0, 0.0]]))[0] == pytest.approx(-10.0)
    lo, hi = m.bounds()
    np.testing.assert_allclose(lo, [-40, -10, -10])
    np.testing.assert_allclose(hi, [-20, 10, 10])


def test_smooth_union_bounds_hold_the_blended_material():
    a, b = Sphere((0, 0, 0), 10), Sphere((4, 0, 0), 10)
    u = Union((a, b), smooth_mm=12.0)
    lo, hi = u.bounds()
    # Sample densely around the children's joint box: nothing inside may lie outside the bounds.
    grid = np.mgrid[-15:35:0.5, -15:15:0.5, -15:15:0.5].reshape(3, -1).T
    inside = grid[u.sdf(grid) < 0]
    assert np.all(inside >= lo) and np.all(inside <= hi)
    assert np.any(np.abs(inside[:, 1]) > 10.0)  # the blend reaches past the children's boxes


@pytest.mark.parametrize("which", ["body", "lean"])
def test_smooth_union_matches_the_plain_blend_below_the_exact_depth(which):
    # Stand-ins for far children must not leak into the blend where a later child brings the
    # result near the surface (the skin between buttock and thigh, 40 mm blend).
    from nmosim.phantoms.anatomy import body_shape, lean_shape
    from nmosim.phantoms.spec import AnatomySpec

    spec = AnatomySpec()
    u = body_shape(spec) if which == "body" else lean_shape(spec)
    lo, hi = u.bounds()
    p = np.random.default_rng(1).uniform(lo, hi, size=(40000, 3))
    exact = u._fold(p)
    d = u.sdf(p)
    # Near the surface the result is the plain blend; farther out, children's own distance
    # bounds may fall a little below the box distances that stand in for them.
    surface = exact < 5.0
    assert surface.sum() > 1000
    np.testing.assert_allclose(d[surface], exact[surface], rtol=0, atol=1e-9)
    near = exact < 15.0
    np.testing.assert_allclose(d[near], exact[near], rtol=0, atol=0.2)
    assert np.all(d[~near] >= 15.0 - 1e-9)
