"""The case pipeline on the Python array API: array_api_strict against numpy.

array_api_strict (a namespace that rejects anything outside the standard) runs the pipeline's code
on the CPU as CuPy would on a GPU. It wraps numpy, so a step whose arithmetic is numpy's step for
step gives numpy's bytes; where it is not (noted at the assertion) the results agree to a few
float32 rounding steps. CuPy parity is checked in tests/simulate/test_gpu.py where a GPU is present.
"""

from __future__ import annotations

import hashlib
import types

import astra
import numpy as np
import pytest

import nmosim
from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import BONE_STRUCTURES, Structure, Tissue
from nmosim.phantoms.phantom import Phantom
from nmosim.phantoms.rasterize import Part
from nmosim.phantoms.shapes import Capsule, Ellipsoid, Sphere
from nmosim.simulate import arrays, physics, pipeline
from nmosim.simulate.radiograph import RadiographGeometry, simulate_radiograph
from nmosim.simulate.truth import TRUTH_SPACING_MM

try:  # absent on the lent GPU machine unless bundled; the CuPy tests need it not
    import array_api_strict as xps
except ImportError:
    xps = None
STRICT_ARRAY = None if xps is None else type(xps.asarray(0.0))
needs_strict = pytest.mark.skipif(xps is None, reason="array_api_strict is not installed")
CUPY = arrays.namespace("cuda") if arrays.has_gpu_arrays() else None
needs_cupy = pytest.mark.skipif(CUPY is None or not astra.use_cuda(), reason="no CuPy with a GPU")


def _digest(array: np.ndarray) -> str:
    a = np.ascontiguousarray(array)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def _bone_phantom() -> Phantom:
    """Muscle around a cortical shell around trabecular bone, off the grid's axes: every branch of
    the basis maps (weighted sums, mixed voxels, the trabecular texture)."""
    parts = (
        Part("muscle", Capsule((-4.0, 2.0, -30.0), (6.0, -3.0, 30.0), 26.0), Structure.MUSCLE, Tissue.MUSCLE),
        Part("cortex", Ellipsoid((1.0, 0.5, 2.0), (15.0, 12.0, 20.0)), Structure.FEMUR_RIGHT,
             Tissue.CORTICAL_BONE),
        Part("spongy", Sphere((1.5, 0.0, 1.0), 10.0), Structure.FEMUR_RIGHT, Tissue.TRABECULAR_BONE),
    )  # fmt: skip
    anatomy = types.SimpleNamespace(bone_density_scale=0.85, bone_texture_seed=3)
    return Phantom(anatomy=anatomy, parts=parts, landmarks=None)


@needs_strict
def test_voxel_centres_of_flat_indices_are_the_grids_own():
    grid = Grid.centered((5, 7, 9), (1.5, 2.0, 2.5), (3.0, -1.0, 4.0))
    flat = np.array([0, 1, 8, 9, 62, 63, 314], dtype=np.int64)
    expected = grid.index_to_mm(np.stack(np.unravel_index(flat, grid.shape), axis=1))
    for xp in (arrays.namespace("cpu"), xps):
        got = arrays.to_numpy(pipeline._voxel_centres(xp, grid, xp.asarray(flat)))
        np.testing.assert_array_equal(got, expected)


@needs_strict
def test_basis_maps_in_array_api_strict_are_numpys_bytes():
    phantom = _bone_phantom()
    grid = Grid.centered((14, 26, 30), (2.5, 2.0, 1.75), (0.5, -0.5, 1.0))
    labels = phantom.rasterize(grid, supersampling=2, threads=1)
    spectrum = physics.tube_spectrum(75.0, 2.5)
    water, bone = pipeline.basis_maps(phantom, labels, spectrum)
    # sha256 of the maps from the numpy-only code before the maps moved to the array API
    assert (_digest(water), _digest(bone)) == ("1acaab27e45f06d7", "5752e95f8abf7874")
    trabecular = labels.tissue_fraction(Tissue.TRABECULAR_BONE) > 0
    assert trabecular.sum() > 100 and len(np.unique(bone[trabecular])) > 100  # textured, not flat
    strict = pipeline.basis_maps(phantom, labels, spectrum, xps)
    for name, ours, theirs in zip(("water", "bone"), (water, bone), strict, strict=True):
        assert isinstance(theirs, STRICT_ARRAY), name
        got = arrays.to_numpy(theirs)
        assert got.dtype == np.float32 and got.tobytes() == ours.tobytes(), name


def _radiograph_inputs():
    """A water block with a bone bar and a random bone texture: (water, bone, masks, grid, geometry)."""
    grid = Grid.centered((30, 20, 30), (2.0, 2.0, 2.0), (1.0, 0.0, -2.0))
    rng = np.random.default_rng(3)
    water = np.zeros(grid.shape, np.float32)
    water[:, 2:18, 3:27] = 1.0
    bone = np.zeros_like(water)
    bone[8:22, 6:14, 15:24] = rng.uniform(0.3, 1.0, size=(14, 8, 9)).astype(np.float32)
    geometry = RadiographGeometry(
        detector_width_mm=60, detector_height_mm=54, pixel_mm=0.3, detector_pitch_mm=0.15, projection_mm=0.6
    )
    masks = {"bone": bone > 0, "empty": np.zeros(grid.shape, bool)}
    return water, bone, masks, grid, geometry


@needs_strict
def test_radiograph_in_array_api_strict_is_numpys():
    water, bone, masks, grid, geometry = _radiograph_inputs()
    ours = simulate_radiograph(water, bone, masks, grid, geometry, np.random.default_rng(9))
    strict_masks = {name: xps.asarray(mask) for name, mask in masks.items()}
    theirs = simulate_radiograph(
        xps.asarray(water), xps.asarray(bone), strict_masks, grid, geometry, np.random.default_rng(9), xp=xps
    )
    assert isinstance(theirs.image, np.ndarray) and isinstance(theirs.processed, np.ndarray)
    assert theirs.image.shape == ours.image.shape == (180, 200)
    # the same arithmetic and the same noise draws: the same bytes
    assert theirs.image.tobytes() == ours.image.tobytes()
    assert theirs.masks.keys() == ours.masks.keys()
    for name in ours.masks:
        assert np.array_equal(theirs.masks[name], ours.masks[name]), name
    assert ours.masks["bone"].sum() > 1000 and not ours.masks["empty"].any()
    # The display image's wide low-pass filters take float32 block means, whose sums follow the
    # memory order: numpy's column indexing leaves the image column-major, the standard's take
    # row-major, so the sums round differently, by a few float32 steps of a value in [0, 1].
    assert theirs.processed.dtype == np.float32
    np.testing.assert_allclose(theirs.processed, ours.processed, rtol=0, atol=4e-6)
    assert ours.processed.std() > 0.05  # an image, not a constant


@needs_strict
def test_noise_free_radiograph_in_array_api_strict_is_numpys_bytes():
    water, bone, masks, grid, geometry = _radiograph_inputs()
    ours = simulate_radiograph(water, bone, {}, grid, geometry, None)
    theirs = simulate_radiograph(xps.asarray(water), xps.asarray(bone), {}, grid, geometry, None, xp=xps)
    assert theirs.image.tobytes() == ours.image.tobytes()
    # bone attenuates more than water alone: the bar's pixels read higher than the block's
    assert ours.image[90, 160] > ours.image[90, 60] > 0.0


@pytest.mark.skipif(bool(astra.use_cuda()), reason="a CUDA GPU is present")
@pytest.mark.parametrize("xp", [None, pytest.param(xps, marks=needs_strict)])
def test_forcing_cuda_without_a_gpu_stops_before_any_work(monkeypatch, xp):
    def no_work(*args, **kwargs):
        raise AssertionError("rasterized before the device was checked")

    monkeypatch.setattr(Phantom, "rasterize", no_work)
    monkeypatch.setattr(pipeline, "case_grids", no_work)
    phantom = _bone_phantom()
    with pytest.raises(SpecError, match=r"^device = 'cuda' but no CUDA GPU is available"):
        pipeline.simulate_ct(phantom, nmosim.protocol("quick"), device="cuda", xp=xp)


@needs_strict
def test_stage_namespaces_name_where_each_stage_runs():
    where = pipeline.stage_namespaces("cpu", xps)
    assert list(where) == ["labels", "imaging maps", "ct", "radiograph", "truth"]
    assert {where[s] for s in ("labels", "imaging maps", "radiograph", "truth")} == {"array_api_strict"}
    assert where["ct"] == "astra kernel as sparse matrix, cpu; counts and fbp numpy"
    assert pipeline.stage_namespaces("cpu", arrays.namespace("cpu"))["labels"] == "numpy"


@needs_strict
@pytest.mark.slow
def test_a_case_through_array_api_strict_is_numpys():
    """The whole case path in array_api_strict: labels byte for byte, HU within 1 HU, truth equal."""
    phantom = nmosim.build_phantom(nmosim.CaseSpec(phase="b", seed=5))
    protocol = nmosim.protocol("quick", recon_pixel_mm=4, slice_thickness_mm=3, n_views=90)
    ours = nmosim.simulate_ct(phantom, protocol, z_range_mm=(-3.0, 3.0), threads=2)
    theirs = nmosim.simulate_ct(phantom, protocol, z_range_mm=(-3.0, 3.0), threads=2, xp=xps)
    for name in ("structures", "tissues", "ho_instances"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert isinstance(b, np.ndarray) and b.dtype == a.dtype and b.tobytes() == a.tobytes(), name
    assert theirs.hu.dtype == np.int16
    assert np.abs(theirs.hu.astype(np.int32) - ours.hu).max() <= 1
    assert theirs.truth == ours.truth
    assert theirs.radiograph.image.tobytes() == ours.radiograph.image.tobytes()
    for name in ours.radiograph.masks:
        assert np.array_equal(theirs.radiograph.masks[name], ours.radiograph.masks[name]), name
    np.testing.assert_allclose(theirs.radiograph.processed, ours.radiograph.processed, rtol=0, atol=4e-6)
    # a slab through the hips: bone in the labels and in the radiograph's mask
    assert np.isin(ours.structures, [int(s) for s in BONE_STRUCTURES]).any()
    assert ours.radiograph.masks["bone"].any()


# --- CuPy on a GPU: sums may be fused or reordered there, so equal to float32 rounding -------------


@needs_cupy
def test_cuda_basis_maps_match_numpys():
    phantom = _bone_phantom()
    grid = Grid.centered((14, 26, 30), (2.5, 2.0, 1.75), (0.5, -0.5, 1.0))
    labels = phantom.rasterize(grid, supersampling=2, threads=1)
    spectrum = physics.tube_spectrum(75.0, 2.5)
    for name, ours, theirs in zip(
        ("water", "bone"), pipeline.basis_maps(phantom, labels, spectrum),
        pipeline.basis_maps(phantom, labels, spectrum, CUPY), strict=True,
    ):  # fmt: skip
        assert arrays.is_cupy(theirs), name
        np.testing.assert_allclose(arrays.to_numpy(theirs), ours, rtol=1e-5, atol=1e-6, err_msg=name)


@needs_cupy
def test_cuda_radiograph_matches_numpys():
    water, bone, masks, grid, geometry = _radiograph_inputs()
    ours = simulate_radiograph(water, bone, masks, grid, geometry, np.random.default_rng(9))
    theirs = simulate_radiograph(
        CUPY.asarray(water), CUPY.asarray(bone), {k: CUPY.asarray(m) for k, m in masks.items()}, grid,
        geometry, np.random.default_rng(9), xp=CUPY,
    )  # fmt: skip
    assert isinstance(theirs.image, np.ndarray)
    # the noise is drawn on the host from the expected counts: the same draws up to their rounding
    np.testing.assert_allclose(theirs.image, ours.image, rtol=0, atol=1e-3)
    for name in ours.masks:  # a pixel may flip only where its ray crosses half a millimetre exactly
        assert (theirs.masks[name] != ours.masks[name]).mean() < 1e-3, name
    np.testing.assert_allclose(theirs.processed, ours.processed, rtol=0, atol=2e-3)


@needs_cupy
def test_cuda_case_matches_numpys():
    """A tiny case on device cuda (CuPy stages, ASTRA's CUDA projector) against the CPU case: the
    same labels but for rounding at a surface, HU within noise-free rounding, the same truth but
    for what such a voxel moves."""
    phantom = nmosim.build_phantom(nmosim.CaseSpec(phase="b", seed=5))
    protocol = nmosim.protocol("quick", recon_pixel_mm=4, slice_thickness_mm=3, n_views=90)
    ours = nmosim.simulate_ct(phantom, protocol, z_range_mm=(-3.0, 3.0), device="cpu")
    theirs = nmosim.simulate_ct(phantom, protocol, z_range_mm=(-3.0, 3.0), device="cuda")
    assert (theirs.structures != ours.structures).mean() < 1e-4
    assert (theirs.tissues != ours.tissues).mean() < 1e-4
    # ASTRA's CUDA and CPU ray models differ (test_gpu.py): compare the mean HU of the body
    body = ours.structures > 0
    assert abs(float(theirs.hu[body].mean()) - float(ours.hu[body].mean())) < 5.0
    for tissue in (Tissue.FAT, Tissue.MUSCLE):  # per tissue, the medians within 2 HU
        inside = (ours.tissues == tissue) & (theirs.tissues == tissue)
        assert abs(float(np.median(theirs.hu[inside])) - float(np.median(ours.hu[inside]))) <= 2.0, tissue
    # the truth's labels may differ in the odd voxel as the case's do: a few voxels of volume
    for side in ("right", "left"):
        _assert_truth_close(theirs.truth[side], ours.truth[side], TRUTH_VOXEL_ML, side)
    # the radiograph's own labels likewise: a flipped voxel changes the pixels its rays cross
    differ = np.abs(theirs.radiograph.image - ours.radiograph.image) > 1e-3
    assert differ.mean() < 1e-3


TRUTH_VOXEL_ML = TRUTH_SPACING_MM**3 / 1000.0


def _assert_truth_close(got, expected, voxel_ml: float, path: str) -> None:
    """Measured truth equal in everything but volumes (within 3 voxels of ``voxel_ml``) and
    distances and centroids (within 1 mm, a truth voxel): what one voxel's label can move."""
    if isinstance(expected, dict):
        keys = set(got) | set(expected)
        for key in keys:
            if "volume_ml" in path + "/" + str(key):  # a tissue seen in one voxel may be absent in the other
                a, b = got.get(key, 0.0), expected.get(key, 0.0)
            else:
                assert key in got and key in expected, f"{path}/{key}"
                a, b = got[key], expected[key]
            _assert_truth_close(a, b, voxel_ml, f"{path}/{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), path
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            _assert_truth_close(a, b, voxel_ml, f"{path}/{i}")
    elif isinstance(expected, float) and not isinstance(got, bool):
        tolerance = 3 * voxel_ml + 1e-9 if "volume_ml" in path else 1.0
        assert abs(got - expected) <= tolerance, (path, got, expected)
    else:
        assert got == expected, (path, got, expected)
