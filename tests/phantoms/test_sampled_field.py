"""Sampled distance fields: their bounds checked against independent interpolation, the skin
against the exact outline, and the array API against numpy."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest
from scipy import ndimage

from nmosim.phantoms.sampled_field import banded_field, corner_slopes, sampled_field
from nmosim.phantoms.shapes import Sphere, evaluate, runs_on_array_api
from nmosim.phantoms.spec import AnatomySpec

STRICT_ARRAY = type(xps.asarray(0.0))


def _interpolant(values: np.ndarray, origin: np.ndarray, step: float, points: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of ``values`` ([z, y, x]) at ``points`` (x y z, mm), by scipy."""
    u = ((points - origin) / step)[:, ::-1].T
    return ndimage.map_coordinates(values.astype(np.float64), u, order=1, mode="nearest")


def _numeric_gradient(values: np.ndarray, step: float, points: np.ndarray) -> np.ndarray:
    """Central differences (h = 1e-4 mm) of :func:`_interpolant` at ``points``: (N, 3)."""
    h = 1e-4
    return np.stack(
        [
            (
                _interpolant(values, np.zeros(3), step, points + e)
                - _interpolant(values, np.zeros(3), step, points - e)
            )
            / (2 * h)
            for e in np.eye(3) * h
        ],
        axis=1,
    )


def _bumpy_lattice(step: float = 1.5):
    """A lattice of a field with a varying gradient (zero set: a bumpy closed surface)."""
    ax = np.arange(-30.0, 30.0 + step / 2, step)
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z)
    values = 1.7 * (r - 18.0 - 3.0 * np.sin(x / 5.0) * np.cos(y / 7.0))
    values = np.clip(values, -16.0, 16.0).astype(np.float32)
    return values, np.array([ax[0]] * 3), step


def test_corner_slopes_bound_the_interpolants_gradient_and_are_reached():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 5, 6)).astype(np.float32)
    step = 1.5
    bound = corner_slopes(values, step)
    # Gradient of the interpolant by central differences at random points of every cell.
    cells = np.argwhere(np.ones(bound.shape, bool))
    for k, j, i in cells:
        u = np.array([i, j, k]) + rng.uniform(0.02, 0.98, size=(200, 3))
        pts = u * step
        norm = np.linalg.norm(_numeric_gradient(values, step, pts), axis=1)
        assert norm.max() <= bound[k, j, i] * (1 + 1e-4)
        # The bound is reached at a corner: points close to the corners come within a few %.
        corners = (
            np.array([i, j, k])
            + np.stack(np.meshgrid([0.001, 0.999], [0.001, 0.999], [0.001, 0.999])).reshape(3, -1).T
        ) * step
        assert np.linalg.norm(_numeric_gradient(values, step, corners), axis=1).max() >= 0.99 * bound[k, j, i]


def test_sampled_field_distance_is_a_lower_bound_exact_in_sign():
    values, origin, step = _bumpy_lattice()
    values[[0, -1], :, :] = values[:, [0, -1], :] = values[:, :, [0, -1]] = 16.0
    field = sampled_field(values, origin, step)
    rng = np.random.default_rng(1)
    p = rng.uniform(-35.0, 35.0, size=(4000, 3))
    d = field.sdf(p)
    inside_box = np.all(np.abs(p) <= 30.0, axis=1)
    sign = np.sign(_interpolant(values, origin, step, p))
    np.testing.assert_array_equal(np.sign(d[inside_box]), sign[inside_box])
    # No zero of the interpolant within |d|: every point of a sphere of radius 0.999 |d| shares
    # the sign (probed along many directions at several radii).
    dirs = rng.normal(size=(300, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    sel = np.flatnonzero(inside_box & (np.abs(d) > 0.05))[:300]
    for i in sel:
        for frac in (0.3, 0.7, 0.999):
            q = p[i] + frac * abs(d[i]) * dirs
            q = q[np.all(np.abs(q) <= 30.0, axis=1)]
            assert np.all(np.sign(_interpolant(values, origin, step, q)) == np.sign(d[i]))
    # The gap bound makes deep points read deep: far above the field's |I| / slope cap of 16 / 1.7.
    assert d.max() > 16.0 / 1.7 + 1.0


def test_banded_field_is_1_lipschitz_and_reads_the_distance_in_its_band():
    shape = Sphere((1.0, -2.0, 3.0), 22.0)  # an exact distance
    field = banded_field(shape, np.array([-32.0] * 3), np.array([32.0] * 3), 1.5, (-12.0, 8.0), 4.0, 5.0)
    # One-sided differences over a curved surface overstate the slope by about step / radius.
    assert 1.0 <= field.slope_band < 1.0 + 1.5 / 18.0
    rng = np.random.default_rng(2)
    p = rng.uniform(-31.0, 31.0, size=(20000, 3))
    q = p + rng.normal(scale=1.0, size=p.shape)
    d_p, d_q = field.sdf(p), field.sdf(q)
    within = np.all(np.abs(q) <= 32.0, axis=1)
    assert np.all(np.abs(d_p - d_q)[within] <= np.linalg.norm(p - q, axis=1)[within] * (1 + 1e-5) + 1e-6)
    # The sphere of radius |d| around a point holds no sign change of the field.
    exact = shape.sdf(p)
    np.testing.assert_array_equal(np.sign(d_p)[np.abs(exact) > 0.2], np.sign(exact)[np.abs(exact) > 0.2])
    band = np.abs(exact) < 3.0
    assert band.sum() > 500
    np.testing.assert_allclose(d_p[band] * field.slope_band, exact[band], atol=0.05)
    # Beyond the lattice the sampled shape is the shape itself.
    far = np.array([[0.0, 0.0, 45.0], [-50.0, 3.0, 0.0], [0.0, 0.0, 36.0]])  # the lattice reaches 34 mm
    np.testing.assert_array_equal(field.sdf(far), shape.sdf(far))


@pytest.fixture(scope="module")
def skin():
    from nmosim.phantoms.envelope import body_shape, sampled_body_shape

    spec = AnatomySpec()
    return body_shape(spec), sampled_body_shape(spec)


def test_sampled_skin_is_the_exact_outline_within_a_fraction_of_a_mm(skin):
    exact, sampled = skin
    rng = np.random.default_rng(3)
    lo, hi = exact.bounds()
    lo[2], hi[2] = -150.0, 180.0
    p = rng.uniform(lo, hi, size=(300_000, 3))
    e, s = exact.sdf(p), sampled.sdf(p)
    differ = np.sign(e) != np.sign(s)
    assert differ.mean() < 1e-3
    assert np.abs(e[differ]).max(initial=0.0) < 0.7  # mm of the exact distance
    near = np.abs(e) < 4.0
    assert np.quantile(np.abs(s - e)[near], 0.99) < 0.2
    # A true lower bound where the exact distance is exact (within the smooth band).
    assert np.all(np.abs(s[near]) <= np.abs(e[near]) + 0.7)


def _strict_equals_numpy(shape, points: np.ndarray) -> None:
    assert runs_on_array_api(shape)
    want = shape.sdf(points)
    got = evaluate(shape, xps.asarray(points))
    assert isinstance(got, STRICT_ARRAY)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_sampled_fields_on_the_strict_namespace_equal_numpy():
    values, origin, step = _bumpy_lattice()
    values[[0, -1], :, :] = values[:, [0, -1], :] = values[:, :, [0, -1]] = 16.0
    p = np.random.default_rng(4).uniform(-40.0, 40.0, size=(3000, 3))
    _strict_equals_numpy(sampled_field(values, origin, step), p)
    ball = Sphere((0.0, 0.0, 0.0), 12.0)
    _strict_equals_numpy(
        banded_field(ball, np.array([-20.0] * 3), np.array([20.0] * 3), 2.0, (-8.0, 8.0), 3.0, 4.0), p
    )


def test_skin_and_muscles_on_the_strict_namespace_equal_numpy(skin):
    from nmosim.phantoms.anatomy import build_anatomy

    parts = {p.name: p for p in build_anatomy(AnatomySpec())}
    rng = np.random.default_rng(5)
    lo, hi = parts["body"].shape.bounds()
    lo[2], hi[2] = -200.0, 230.0  # beyond the skin's lattice too
    p = rng.uniform(lo, hi, size=(20000, 3))
    _strict_equals_numpy(skin[1], p)
    union = parts["muscles"].shape
    _strict_equals_numpy(union, p)
    from nmosim.phantoms.muscles import Territory

    _strict_equals_numpy(Territory(union.muscles, 3), p)


def test_sampling_gives_the_same_bytes_on_any_thread_count(monkeypatch):
    import nmosim.phantoms.sampled_field as sf

    ball = Sphere((0.5, -1.0, 2.0), 11.0)
    fields = []
    for threads in (1, 3):
        monkeypatch.setattr(sf, "_THREADS", threads)
        monkeypatch.setattr(sf, "_CHUNK", 1000)  # many chunks, shared among the threads
        banded = banded_field(ball, np.array([-20.0] * 3), np.array([20.0] * 3), 1.5, (-8.0, 8.0), 3.0, 4.0)
        values, origin, step = _bumpy_lattice()
        values[[0, -1], :, :] = values[:, [0, -1], :] = values[:, :, [0, -1]] = 16.0
        fields.append((banded.values, sampled_field(values, origin, step).gap))
    np.testing.assert_array_equal(fields[0][0], fields[1][0])
    np.testing.assert_array_equal(fields[0][1], fields[1][1])


def _corner_slopes_plain(v: np.ndarray, step: float) -> np.ndarray:
    """The largest corner gradient norm of each cell, over the whole lattice at once."""
    dz, dy, dx = (np.square(np.diff(v, axis=a)) for a in range(3))
    n0, n1, n2 = (k - 1 for k in v.shape)
    g = [
        (dx[cz : cz + n0, cy : cy + n1, :] + dy[cz : cz + n0, :, cx : cx + n2])
        + dz[:, cy : cy + n1, cx : cx + n2]
        for cz in (0, 1)
        for cy in (0, 1)
        for cx in (0, 1)
    ]
    return np.sqrt(np.max(g, axis=0)) / np.float32(step)


@pytest.mark.parametrize("shape", [(2, 2, 2), (3, 5, 4), (9, 6, 7), (21, 8, 5), (17, 3, 12)])
def test_slab_helpers_equal_their_whole_array_forms(shape):
    from nmosim.phantoms.sampled_field import _block_max, _cell_range, _max_filter, _pad_edge

    rng = np.random.default_rng(sum(shape))
    v = rng.normal(0.0, 4.0, shape).astype(np.float32)
    v[0, 0, 0] = v[-1, -1, -1] = 0.0
    np.testing.assert_array_equal(corner_slopes(v, 1.5), _corner_slopes_plain(v, 1.5))
    for reach in (1, 2, 3, 9):
        np.testing.assert_array_equal(
            _max_filter(v, reach), ndimage.maximum_filter(v, 2 * reach + 1, mode="nearest")
        )
    corners = [
        v[a : a + shape[0] - 1, b : b + shape[1] - 1, c : c + shape[2] - 1]
        for a in (0, 1)
        for b in (0, 1)
        for c in (0, 1)
    ]
    lo, hi = _cell_range(v)
    np.testing.assert_array_equal(lo, np.min(corners, axis=0))
    np.testing.assert_array_equal(hi, np.max(corners, axis=0))
    np.testing.assert_array_equal(_pad_edge(v), np.pad(v, [(0, 1)] * 3, mode="edge"))
    for b in (2, 8):
        padded = np.pad(v, [(0, -n % b) for n in shape], mode="edge")
        nz, ny, nx = (n // b for n in padded.shape)
        expected = padded.reshape(nz, b, ny, b, nx, b).max(axis=(1, 3, 5))
        np.testing.assert_array_equal(_block_max(v, b), expected)


def test_sampled_field_bytes_do_not_depend_on_the_slab_height(monkeypatch):
    import nmosim.phantoms.sampled_field as sf

    values, origin, step = _bumpy_lattice()
    values[[0, -1], :, :] = values[:, [0, -1], :] = values[:, :, [0, -1]] = 16.0
    fields = []
    for slab in (1, 3, 1000):
        monkeypatch.setattr(sf, "_SLAB", slab)
        f = sampled_field(values, origin, step)
        fields.append((f.near_slope, f.far_slope, f.gap, f.lower, f.upper))
    for other in fields[1:]:
        for a, b in zip(fields[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
