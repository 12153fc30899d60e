"""Tests for nmosim.simulate.geometry3d that need no GPU: cone-beam vectors, table positions,
helical coverage and rebinning, protocol fields, and the error for a 3D geometry on the CPU."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import astra
import numpy as np
import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.simulate import backend, ct
from nmosim.simulate import geometry3d as g3
from nmosim.simulate.scanner import make_protocol

HAS_CUDA = bool(astra.use_cuda())


def test_cone_vectors_follow_the_fan_convention_in_every_row():
    p = make_protocol("quick", geometry="axial", detector_rows=8, n_views=12)
    k = np.arange(p.n_views)
    z = np.linspace(-3.0, 5.0, k.size)
    v = g3.cone_vectors(p, k, z)
    source, detector, column, row = v[:, 0:3], v[:, 3:6], v[:, 6:9], v[:, 9:12]
    b = 2 * np.pi * k / p.n_views
    np.testing.assert_allclose(source[:, :2], p.source_to_iso_mm * np.stack([np.sin(b), np.cos(b)], 1))
    np.testing.assert_allclose(source[:, 2], z)
    np.testing.assert_allclose(detector[:, 2], z)
    np.testing.assert_allclose(np.linalg.norm(source - detector, axis=1), p.source_to_detector_mm)
    np.testing.assert_allclose(column[:, :2], p.bin_width_mm * np.stack([np.cos(b), -np.sin(b)], 1))
    np.testing.assert_allclose(row, np.tile([0.0, 0.0, p.row_pitch_mm], (k.size, 1)))
    # the middle of the detector lies on the line through the source and the rotation axis
    cross = source[:, 0] * detector[:, 1] - source[:, 1] * detector[:, 0]
    np.testing.assert_allclose(cross, 0.0, atol=1e-9)


def test_circular_cone_geometry_holds_the_same_rays_with_bins_reversed():
    p = make_protocol("quick", geometry="axial", detector_rows=16, n_views=10)
    ours = g3.cone_vectors(p, np.arange(p.n_views), np.zeros(p.n_views))
    astra_vectors = astra.functions.geom_2vec(g3.circular_cone_geometry(p))["Vectors"]
    flipped = ours.copy()
    flipped[:, 6:9] *= -1  # same detector centre and rows, columns the other way round
    np.testing.assert_allclose(astra_vectors, flipped, atol=1e-9)
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(g3.to_astra_cone(data)[..., 0], data[..., -1])


def test_axial_rotations_take_whole_slices_within_the_collimation():
    p = make_protocol("clinical", geometry="axial", detector_rows=32)
    assert p.collimation_mm == pytest.approx(32 * p.row_pitch_mm / p.magnification)
    z = -30.0 + np.arange(83) * p.slice_thickness_mm
    tables, band = g3.axial_rotations(p, z)
    per = int(p.collimation_mm // p.slice_thickness_mm)
    assert np.array_equal(np.bincount(band)[:-1], np.full(tables.size - 1, per))
    assert tables.size == int(np.ceil(z.size / per))
    for i, table in enumerate(tables):
        members = z[band == i]
        assert table == pytest.approx(members.mean())
        # every plane of every slice lies inside the rotation's collimation at the iso-centre
        assert members.max() + p.slice_thickness_mm / 2 <= table + p.collimation_mm / 2 + 1e-9
        assert members.min() - p.slice_thickness_mm / 2 >= table - p.collimation_mm / 2 - 1e-9


def test_helix_feed_and_coverage():
    p = make_protocol("quick", geometry="helical", detector_rows=16, pitch=0.8)
    assert p.table_feed_mm == pytest.approx(0.8 * p.collimation_mm)
    views, z = g3.helical_views(p, -12.0, 20.0)
    np.testing.assert_allclose(np.diff(z), p.table_feed_mm / p.n_views)
    np.testing.assert_array_equal(views, np.arange(views.size))
    # every plane of the range, slice edges included, has a whole rotation of views
    projections = np.zeros((p.detector_rows, views.size, p.n_bins), np.float32)
    for plane in np.linspace(-12.0 - p.slice_thickness_mm / 2, 20.0 + p.slice_thickness_mm / 2, 25):
        g3.rebin_helical_slice(projections, z, float(plane), p)
    with pytest.raises(SpecError, match="outside the helix"):
        g3.rebin_helical_slice(projections, z, 20.0 + p.table_feed_mm, p)


def test_rebinning_finds_the_rays_that_cross_the_plane():
    """Projections whose value is the height where each ray passes the rotation axis rebin to
    exactly the plane's height for every view and bin."""
    p = make_protocol(
        "quick", geometry="helical", detector_rows=24, pitch=0.7, n_views=60, n_bins=64, recon_fov_mm=50
    )
    views, z = g3.helical_views(p, -5.0, 5.0)
    rows = (np.arange(p.detector_rows) - (p.detector_rows - 1) / 2) * p.row_pitch_mm
    # a ray to row offset h from the source at z_s passes the axis at z_s + h cos^2(gamma) / M
    crossing = z[None, :, None] + rows[:, None, None] * g3.fan_cos2(p)[None, None, :] / p.magnification
    for plane in (-5.3, -1.0, 0.37, 4.9):
        sino = g3.rebin_helical_slice(crossing.astype(np.float32), z, plane, p)
        assert sino.shape == (p.n_views, p.n_bins)
        np.testing.assert_allclose(sino, plane, atol=2e-5)


def test_slice_planes_are_no_further_apart_than_a_row():
    p = make_protocol("clinical", geometry="helical", slice_thickness_mm=2.0)
    offsets = g3.slice_offsets(p)
    assert offsets.mean() == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(offsets) <= p.row_pitch_mm / p.magnification + 1e-12)
    assert offsets[-1] - offsets[0] < p.slice_thickness_mm


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"geometry": "spiral"}, "geometry = 'spiral' is not one of {fan2d, axial, helical}"),
        ({"geometry": "helical", "pitch": 1.2}, "pitch = 1.2 is outside (0, 1]"),
        ({"geometry": "axial", "detector_rows": 0}, "detector_rows = 0 is outside [1, 512]"),
        ({"geometry": "axial", "recon_method": "tv"}, "recon_method = 'tv' is not one of {fbp, sirt, cgls}"),
        ({"geometry": "axial", "detector_rows": 2}, "slice_thickness_mm = 1.5 is outside (0, 1.25]"),
    ],
)
def test_protocol_checks_the_3d_fields(overrides, needle):
    with pytest.raises(SpecError) as error:
        make_protocol("quick", **overrides)
    assert needle in str(error.value)


def test_truth_describes_the_geometry_and_fan2d_is_unchanged():
    fan = make_protocol("quick").to_dict()
    assert fan["geometry"]["type"] == "fanflat"
    assert not {"detector_rows", "row_pitch_mm", "pitch", "tv_weight"} & set(fan)
    assert "collimation_mm" not in fan["geometry"]
    helical = make_protocol("quick", geometry="helical", pitch=0.5).to_dict()
    assert helical["geometry"]["type"] == "helical"
    assert helical["geometry"]["table_feed_mm"] == pytest.approx(0.5 * helical["geometry"]["collimation_mm"])


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present")
def test_3d_geometry_without_gpu_is_an_error_before_any_work(monkeypatch):
    p = make_protocol("quick", geometry="axial")
    with pytest.raises(SpecError, match=r"geometry = 'axial' is not one of \{fan2d\} without a CUDA GPU"):
        backend.check_geometry(p, backend.select_device())
    calls = []
    monkeypatch.setattr(ct, "_reconstruct_mu", lambda *a, **k: calls.append(1))
    water, bone, fine, rec = ct.water_cylinder_maps(dataclasses.replace(p, geometry="fan2d"), 50.0)
    with pytest.raises(SpecError, match="without a CUDA GPU"):
        ct.simulate_ct(water, bone, fine, rec, p, None)
    assert calls == []


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present")
def test_cli_3d_geometry_without_gpu_is_one_line_exit_2(tmp_path):
    out = tmp_path / "case"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nmosim",
            "case",
            "--seed",
            "1",
            "--out",
            str(out),
            "--scanner",
            "geometry=helical",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "geometry = 'helical' is not one of {fan2d}" in lines[0], proc.stderr
    assert not out.exists()


def test_axial_scan_reconstructs_every_slice_once_in_its_rotation(monkeypatch):
    """With ASTRA's 3D calls replaced by stand-ins: each rotation projects the slab its cone
    reaches, and the FDK planes (source-plane frame) are the slices' planes, each once."""
    p = make_protocol("quick", geometry="axial", detector_rows=16, recon_fov_mm=128, n_bins=200)
    water, bone, fine, rec = ct.water_cylinder_maps(p, 100.0, n_slices=12)
    z_rec = rec.voxel_centers_axis(2)
    tables, _ = g3.axial_rotations(p, z_rec)
    planes, slabs = [], []

    def fake_fp(volume, grid, geometry):
        slabs.append(grid.voxel_centers_axis(2))
        n = len(geometry["ProjectionAngles"]) if "ProjectionAngles" in geometry else len(geometry["Vectors"])
        return np.zeros((geometry["DetectorRowCount"], n, geometry["DetectorColCount"]), np.float32)

    def fake_fdk(projections, grid, protocol):
        assert projections.shape == (p.detector_rows, p.n_views, p.n_bins)
        planes.append(grid.voxel_centers_axis(2) + tables[len(planes)])
        return np.zeros(grid.shape, np.float32)

    monkeypatch.setattr(g3, "forward_project_cone", fake_fp)
    monkeypatch.setattr(g3, "fdk", fake_fdk)
    monkeypatch.setattr(g3, "_require_gpu", lambda: None)
    mu = g3.reconstruct_mu(water, bone, fine, rec, p, None, device="cpu")
    assert mu.shape == rec.shape and len(planes) == tables.size == 2
    z = np.concatenate(planes).reshape(rec.shape[0], -1).mean(axis=1)
    np.testing.assert_allclose(z, z_rec, atol=1e-9)
    lower, upper = z_rec[0] - 0.75, z_rec[-1] + 0.75  # the imaging grid's extent
    for table, slab in zip(tables, slabs, strict=True):  # water only: an all-zero bone map is skipped
        assert slab.min() - 0.75 <= max(table - p.collimation_mm / 2, lower)
        assert slab.max() + 0.75 >= min(table + p.collimation_mm / 2, upper)


def test_iterative_axial_volume_reaches_as_far_as_the_cone():
    p = make_protocol("quick", geometry="axial", detector_rows=16, recon_fov_mm=128, n_bins=200)
    _, _, _, rec = ct.water_cylinder_maps(p, 100.0, n_slices=1)  # one slice, as for calibration
    grid, first = g3.iterative_grid(p, rec, np.array([0]), 0.0)
    z = grid.voxel_centers_axis(2)
    reach = g3.cone_reach_mm(p, rec)
    assert z[first] == pytest.approx(rec.voxel_centers_axis(2)[0])
    assert z[0] - 0.75 <= -reach and z[-1] + 0.75 >= reach
    assert np.allclose(np.diff(z), p.slice_thickness_mm) and grid.shape[1:] == rec.shape[1:]
