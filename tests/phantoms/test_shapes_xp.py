"""The lesion, marbling and cortex shapes on the Python array API.

array_api_strict (a namespace that rejects anything outside the standard) runs the same code on the
CPU as CuPy would on a GPU. It wraps numpy, so the distances must equal numpy's; where numpy keeps
a faster path of its own (scipy's interpolation of sampled distances) the two are independent
computations of one formula. Counting :func:`shapes.on_host` shows which parts still leave the
namespace: only the envelope and muscle shapes, which are not written on the array API yet.
"""

from __future__ import annotations

import collections
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from nmosim.phantoms import shapes
from nmosim.phantoms.anatomy import HEAD_CORTEX_MM, PELVIS_CORTEX_MM, femur_cortex_depth, pelvis_cortex_depth
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Structure
from nmosim.phantoms.marbling import LATTICE_MM, Marbling, streak_shape
from nmosim.phantoms.ossification import (
    LesionGeometry,
    Lobe,
    SampledDistances,
    Scaled,
    lesion_part,
    mass_field,
)
from nmosim.phantoms.rasterize import Layer, Part, rasterize
from nmosim.phantoms.shapes import Ellipsoid, Shape, Sphere, rotation_matrix, runs_on_array_api
from nmosim.phantoms.skeleton import skeleton
from nmosim.phantoms.spec import AnatomySpec

try:  # absent on the lent GPU machine unless bundled; the CuPy test needs it not
    import array_api_strict as xps
except ImportError:
    xps = None
STRICT_ARRAY = None if xps is None else type(xps.asarray(0.0))
needs_strict = pytest.mark.skipif(xps is None, reason="array_api_strict is not installed")
TURN = rotation_matrix((1.0, 0.4, -0.3), 28.0)

# Shapes and fields that still run on the host, owned by the envelope and muscle code: a whole case
# may send these, and only these, through on_host. Remove a name once its shape runs on the array API.
STILL_ON_HOST = {
    # the exact body outline, read only beyond the ends of the skin's sampled lattice
    "envelope": ("CutBelow", "ExactEllipsoid", "_RescaledUnion", "FatField"),
    "muscles": (),
}


class _NumpyOnlyEllipsoid(Shape):
    """A muscle-like shape whose distance is numpy only, as the muscles' are."""

    def __init__(self, center, radii, rotation) -> None:
        self.inner = Ellipsoid(center, radii, rotation)

    def sdf(self, points: np.ndarray) -> np.ndarray:
        assert isinstance(points, np.ndarray)  # proves it ran on the host
        return self.inner.sdf(points)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.bounds()


def _host_calls(monkeypatch) -> collections.Counter:
    """Count the functions that :func:`shapes.on_host` runs, by the class of their shape (or name)."""
    calls: collections.Counter = collections.Counter()
    original = shapes.on_host

    def counting(function, points):
        owner = getattr(function, "__self__", None)
        if owner is not None:
            name = type(owner).__name__
        else:
            name = getattr(function, "__qualname__", type(function).__name__)
        calls[name] += 1
        return original(function, points)

    monkeypatch.setattr(shapes, "on_host", counting)
    return calls


def _assert_strict_equals_numpy(function, points: np.ndarray) -> np.ndarray:
    """``function`` at ``points`` in array_api_strict: a strict array equal to numpy's result."""
    expected = np.asarray(function(points))
    got = function(xps.asarray(points))
    assert isinstance(got, STRICT_ARRAY)
    got = np.asarray(got)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-12)
    return got


def _lobes() -> tuple[Lobe, ...]:
    return (
        Lobe(np.array([2.0, -3.0, 1.0]), np.array([9.0, 6.0, 5.0]), TURN),
        Lobe(np.array([10.0, 2.0, 6.0]), np.array([7.0, 5.0, 4.0]), np.eye(3)),
    )


@pytest.fixture(scope="module")
def mass() -> SampledDistances:
    return mass_field(_lobes())


def _around(lo, hi, n: int, seed: int, pad: float = 6.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(np.asarray(lo) - pad, np.asarray(hi) + pad, (n, 3))


@needs_strict
def test_sampled_distances_in_strict_equal_scipys_interpolation(mass):
    """The strict path interpolates by hand, numpy's by scipy: the same numbers, inside and outside
    the grid, at sample nodes and on the grid's faces."""
    assert runs_on_array_api(mass)
    lo, hi = mass.bounds()
    pts = _around(lo, hi, 5000, seed=1)
    nodes = lo + np.round((pts - lo) / mass.spacing_mm) * mass.spacing_mm  # exact nodes, faces beyond
    corners = np.stack([lo, hi, np.array([lo[0], hi[1], lo[2]])])
    got = _assert_strict_equals_numpy(mass.sdf, np.concatenate([pts, nodes, corners]))
    np.testing.assert_array_equal(got, mass.sdf(np.concatenate([pts, nodes, corners])))
    # at a node inside the grid: the sample itself
    k = np.array([[3, 5, 7], [10, 2, 4]])
    at = mass.origin_mm + k * mass.spacing_mm
    np.testing.assert_array_equal(
        np.asarray(mass.sdf(xps.asarray(at))), mass.values[tuple(k.T)].astype(float)
    )


@needs_strict
def test_sampled_distances_interpolate_a_linear_field_exactly():
    """Trilinear interpolation reproduces a linear function; beyond the grid the nearest face's value
    less the distance to the box, or the box distance, whichever is larger."""
    shape = (7, 9, 6)
    origin, h = np.array([-3.0, 2.0, 5.0]), 0.5
    axes = [origin[a] + h * np.arange(n) for a, n in enumerate(shape)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    values = (0.25 * x - 0.5 * y + 0.125 * z + 1.0).astype(np.float32)  # exact in float32
    field = SampledDistances(origin, h, values)
    lo, hi = field.bounds()
    inside = np.random.default_rng(2).uniform(lo, hi, (500, 3))
    expected = 0.25 * inside[:, 0] - 0.5 * inside[:, 1] + 0.125 * inside[:, 2] + 1.0
    got = np.asarray(field.sdf(xps.asarray(inside)))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    beyond = np.array([[hi[0] + 2.0, 3.0, 6.0]])  # 2 mm past the +x face
    face = 0.25 * hi[0] - 0.5 * 3.0 + 0.125 * 6.0 + 1.0
    np.testing.assert_allclose(np.asarray(field.sdf(xps.asarray(beyond))), [max(face - 2.0, 2.0)], atol=1e-6)


@needs_strict
def test_scaled_shapes_in_strict_equal_numpy_and_scale_about_their_centre(mass):
    c = np.array([4.0, -1.0, 3.0])
    ball = Scaled(Sphere((10.0, 0.0, 0.0), 5.0), c, 0.6)
    assert runs_on_array_api(ball)
    pts = _around(*ball.bounds(), 3000, seed=3, pad=10.0)
    got = _assert_strict_equals_numpy(ball.sdf, pts)
    # independently: a sphere of radius 3 about c + 0.6 (centre - c)
    np.testing.assert_allclose(
        got, np.linalg.norm(pts - (c + 0.6 * (np.array([10.0, 0, 0]) - c)), axis=1) - 3.0
    )
    grown = Scaled(mass, c, 0.8)
    _assert_strict_equals_numpy(grown.sdf, _around(*grown.bounds(), 3000, seed=4))


def _marbling(muscle: Shape, seed: int = 7) -> Marbling:
    path = np.array([[0.0, 0.0, -50.0], [4.0, 2.0, 0.0], [8.0, 4.0, 50.0]]) @ TURN.T
    streaks = streak_shape(muscle, path, 25.0, 0.3, np.random.default_rng(seed))
    assert streaks is not None
    return streaks


@needs_strict
@pytest.mark.parametrize("host_muscle", [False, True])
def test_marbling_in_strict_equals_numpy(monkeypatch, host_muscle):
    """Streaks in a muscle on the array API, or in one on the host: the streaks' own field stays in
    the namespace; only a numpy-only muscle goes to the host, and only near its surface."""
    kind = _NumpyOnlyEllipsoid if host_muscle else Ellipsoid
    muscle = kind((3.0, 1.0, 0.0), (22.0, 16.0, 60.0), TURN)
    streaks = _marbling(muscle)
    assert runs_on_array_api(streaks)
    pts = _around(*streaks.bounds(), 20000, seed=5)
    calls = _host_calls(monkeypatch)
    got = _assert_strict_equals_numpy(streaks.sdf, pts)
    assert set(calls) == ({"_NumpyOnlyEllipsoid"} if host_muscle else set())
    # independently of the distance bounds: inside the streaks is inside the muscle, inside the
    # lattice box and below the threshold in the field's own interpolation
    field = streaks.field
    lo, hi = field.frame_box()
    frame = pts @ field.rotation
    in_box = np.all((frame > lo) & (frame < hi), axis=1)
    below = np.asarray(field.value(xps.asarray(pts))) < streaks.threshold
    expected = below & in_box & (muscle.sdf(pts) < 0.0)
    assert 0.02 < np.mean(expected) < 0.5
    assert np.array_equal(got < 0.0, expected)


@needs_strict
def test_streak_field_levels_in_strict_are_the_stored_levels_at_nodes():
    streaks = _marbling(Ellipsoid((3.0, 1.0, 0.0), (22.0, 16.0, 60.0), TURN))
    field = streaks.field
    k = np.array([[2, 3, 4], [5, 1, 2], [7, 6, 1]])
    frame = (field.start + k) * np.asarray(LATTICE_MM)
    got = np.asarray(field.value(xps.asarray(frame @ field.rotation.T)))
    np.testing.assert_allclose(got, field.levels[tuple(k.T)].astype(float), atol=1e-4)


@pytest.fixture(scope="module")
def spec() -> AnatomySpec:
    return AnatomySpec()


@needs_strict
def test_pelvis_cortex_depth_in_strict_equals_numpy(spec):
    depth = pelvis_cortex_depth(spec)
    assert depth in shapes._ARRAY_API_FUNCTIONS
    m = skeleton(spec).bones.landmarks
    tuberosity = np.asarray(m["ischial_tuberosity_right"], float)
    pts = np.concatenate([_around(tuberosity - 80.0, tuberosity + 80.0, 4000, seed=6), tuberosity[None]])
    got = _assert_strict_equals_numpy(depth, pts)
    # independently: at least the tuberosity's cortex on it, the wing's far from every thick region
    assert got[-1] >= 2.0 - 1e-9
    far = np.asarray(depth(xps.asarray(np.array([[0.0, 900.0, 900.0]]))))
    np.testing.assert_allclose(far, [PELVIS_CORTEX_MM], atol=1e-12)


@needs_strict
def test_femur_cortex_depth_in_strict_equals_numpy_and_ramps_below_the_lesser_trochanter(spec):
    lm = SimpleNamespace(
        lesser_trochanter=np.array([60.0, 10.0, -80.0]), shaft_axis=np.array([0.0, 0.6, -0.8])
    )
    depth = femur_cortex_depth(spec, lm)
    assert depth in shapes._ARRAY_API_FUNCTIONS
    below = np.concatenate([np.linspace(-40.0, 60.0, 1001), [-5.0, 30.0, 12.5]])
    side = np.cross(lm.shaft_axis, [1.0, 0.0, 0.0])
    pts = lm.lesser_trochanter + below[:, None] * lm.shaft_axis + 7.0 * side
    got = _assert_strict_equals_numpy(depth, pts)
    # independently: numpy's own interpolation, to the bit, at and beyond both ends too
    top, full = HEAD_CORTEX_MM + 0.5, spec.shaft_cortical_thickness_mm
    np.testing.assert_array_equal(
        got, np.interp((pts - lm.lesser_trochanter) @ lm.shaft_axis, [-5.0, 30.0], [top, full])
    )
    assert got[0] == top and got[1000] == full


def _scene(spec: AnatomySpec) -> tuple[list[Part], Grid]:
    """A marbled numpy-only muscle, a grown lesion with a mass and a bone whose cortex varies."""
    muscle = _NumpyOnlyEllipsoid((3.0, 1.0, 0.0), (22.0, 16.0, 60.0), TURN)
    geometry = LesionGeometry(np.array([30.0, 0.0, 10.0]), (), (), mass_field(_lobes()))
    lesion = geometry.shape(0.9)  # a Union holding Scaled(SampledDistances)
    lm = SimpleNamespace(
        lesser_trochanter=np.array([-30.0, 0.0, 10.0]), shaft_axis=np.array([0.0, 0.0, -1.0])
    )
    bone = Ellipsoid((-30.0, 0.0, 0.0), (12.0, 12.0, 40.0))
    parts = [
        Part("muscle", muscle, 3, 3),
        Part("streaks", _marbling(muscle), 3, 4),
        lesion_part("ho", lesion, "right", 1, "mature", 2.0),
        Part("bone", bone, 6, 5, layers=(Layer(femur_cortex_depth(spec, lm), 6),)),
    ]
    grid = Grid.centered((30, 26, 62), (2.0, 2.1, 2.0), (0.0, 0.0, 5.0))
    return parts, grid


@needs_strict
@pytest.mark.parametrize("s", [1, 2])
def test_scene_rasterized_in_strict_equals_numpy(monkeypatch, spec, s):
    parts, grid = _scene(spec)
    assert isinstance(parts[2].shape.children[-1], Scaled)
    expected = rasterize(parts, grid, s, threads=1)
    assert {3, 4, 5, 6} <= set(np.unique(expected.tissues).tolist())  # muscle, streaks, cortex, core
    assert (expected.structures == Structure.HO_RIGHT).sum() > 20  # the grown mass
    calls = _host_calls(monkeypatch)
    got = rasterize(parts, grid, s, threads=2, xp=xps)
    assert set(calls) == {"_NumpyOnlyEllipsoid"}
    for name in ("structures", "tissues", "instances", "mixed_index", "mixed_fractions"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)


def _walk(shape: Shape, found: list[Shape]) -> None:
    found.append(shape)
    if dataclasses.is_dataclass(shape):
        for f in dataclasses.fields(shape):
            value = getattr(shape, f.name)
            for child in value if isinstance(value, tuple) else (value,):
                if isinstance(child, Shape):
                    _walk(child, found)


@needs_strict
@pytest.mark.slow
def test_bilateral_phase_d_case_rasterized_in_strict_equals_numpy(monkeypatch):
    """A whole bilateral phase d case at 6 mm: the same labels byte for byte, and only the envelope
    and muscle shapes leave the namespace."""
    from nmosim.phantoms import envelope, muscles
    from nmosim.phantoms.lesions import build_case_phantom

    phantom = build_case_phantom(np.random.default_rng(0), phase="d", laterality="bilateral_right")
    found: list[Shape] = []
    for part in phantom.parts:
        _walk(part.shape, found)
    kinds = {type(s).__name__ for s in found}
    assert {"Marbling", "SampledDistances"} <= kinds  # the case holds what this test is about
    allowed = set()
    for module, names in ((envelope, STILL_ON_HOST["envelope"]), (muscles, STILL_ON_HOST["muscles"])):
        for name in names:
            owner = getattr(module, name)
            ported = getattr(owner, "sdf", None) in shapes._ARRAY_API_FUNCTIONS or (
                vars(owner).get("__call__") in shapes._ARRAY_API_FUNCTIONS
            )
            assert not ported, f"{name} runs on the array API now: take it off STILL_ON_HOST"
            allowed.add(name)
    host_only = {type(s).__name__ for s in found if not runs_on_array_api(s)}
    assert host_only <= allowed, host_only - allowed
    lo, hi = phantom.bounds()
    grid = Grid.covering(tuple(lo), tuple(hi), 6.0)
    expected = rasterize(phantom.parts, grid, 1, threads=2)
    calls = _host_calls(monkeypatch)
    got = rasterize(phantom.parts, grid, 1, threads=2, xp=xps)
    assert set(calls) <= allowed, set(calls) - allowed
    for name in ("structures", "tissues", "instances", "mixed_index", "mixed_fractions"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)


def _cupy_namespace():
    """CuPy's array-API namespace when CuPy sees a GPU, else None (nothing imported otherwise)."""
    from nmosim.simulate import arrays

    return arrays.namespace("cuda") if arrays.has_gpu_arrays() else None


@pytest.mark.skipif(_cupy_namespace() is None, reason="no CuPy with a GPU")
def test_cuda_distances_and_depths_match_numpy(mass, spec):
    """On the GPU sums may be fused or reordered: equal to rounding, nothing leaves the device."""
    cp = _cupy_namespace()
    muscle = Ellipsoid((3.0, 1.0, 0.0), (22.0, 16.0, 60.0), TURN)
    lm = SimpleNamespace(
        lesser_trochanter=np.array([60.0, 10.0, -80.0]), shaft_axis=np.array([0.0, 0.6, -0.8])
    )
    functions = {
        "mass": mass.sdf,
        "scaled": Scaled(mass, np.array([4.0, -1.0, 3.0]), 0.8).sdf,
        "marbling": _marbling(muscle).sdf,
        "pelvis_cortex": pelvis_cortex_depth(spec),
        "femur_cortex": femur_cortex_depth(spec, lm),
    }
    pts = _around(*mass.bounds(), 5000, seed=9, pad=40.0)
    for name, function in functions.items():
        got = function(cp.asarray(pts))
        assert type(got).__module__.startswith("cupy"), name
        np.testing.assert_allclose(got.get(), function(pts), rtol=1e-6, atol=1e-5, err_msg=name)


def test_the_array_api_registry_lets_a_phantoms_depth_fields_go():
    """Each phantom registers its own depth-field closures: a dataset building thousands of cases
    in one process must not keep every one of them."""
    import gc
    import weakref

    depth = pelvis_cortex_depth(AnatomySpec(muscle_bulk=0.97))
    assert depth in shapes._ARRAY_API_FUNCTIONS  # registered: it runs in the points' namespace
    gone = weakref.ref(depth)
    del depth
    gc.collect()
    assert gone() is None
