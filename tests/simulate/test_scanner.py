"""Tests for nmosim.simulate.scanner: validation, presets, derived geometry and grids."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.simulate.scanner import (
    PRESETS,
    ScannerProtocol,
    imaging_grid,
    make_protocol,
    recon_grid,
)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"n_views": 0}, "n_views = 0 is outside [1, 10000]"),
        ({"kvp": 300}, "kvp = 300 is outside [70, 150]"),
        ({"mas": -1}, "mas = -1 is outside (0, 1000]"),
        ({"mas": 0}, "mas = 0 is outside (0, 1000]"),
        ({"kernel": "sharp"}, "kernel = 'sharp' is not one of {soft, standard, bone}"),
        ({"recon_method": "art"}, "recon_method = 'art'"),
        ({"n_views": 90.5}, "n_views = 90.5"),
        ({"filtration_mm_al": float("nan")}, "filtration_mm_al"),
        ({"source_to_detector_mm": 500.0}, "source_to_detector_mm = 500"),
        ({"recon_fov_mm": 600.0}, "recon_fov_mm = 600"),
        ({"water_correction": "yes"}, "water_correction = 'yes'"),
        ({"imaging_oversampling": 0}, "imaging_oversampling = 0"),
    ],
)
def test_bad_values_raise_spec_error_naming_parameter(overrides, fragment):
    with pytest.raises(SpecError) as info:
        make_protocol("quick", **overrides)
    assert fragment in str(info.value)


def test_unknown_preset_names_it_and_the_allowed_ones():
    with pytest.raises(SpecError, match=r"preset = 'fast' is not one of \{quick, clinical\}"):
        make_protocol("fast")


def test_unknown_override_names_it_and_the_allowed_ones():
    with pytest.raises(SpecError) as info:
        make_protocol("quick", kv=120)
    assert "'kv'" in str(info.value)
    assert "kvp" in str(info.value) and "n_views" in str(info.value)


def test_presets_match_the_brief_and_are_realistic():
    quick, clinical = make_protocol("quick"), make_protocol("clinical")
    assert quick.recon_pixel_mm == pytest.approx(1.5) and 300 <= quick.n_views <= 400
    assert clinical.recon_pixel_mm == pytest.approx(0.75) and clinical.slice_thickness_mm == 1.0
    assert clinical.n_views >= 1000 and 150 <= clinical.mas <= 250
    for p in (quick, clinical):
        assert p.kvp == 120
        assert 570 <= p.source_to_iso_mm <= 600 and 1040 <= p.source_to_detector_mm <= 1100
        # the fan covers the reconstructed field with margin (body wider than the FOV)
        assert p.scan_fov_mm >= 1.2 * p.recon_fov_mm
    assert 1.0 <= clinical.bin_width_mm <= 1.2


def test_overrides_are_converted_and_validated():
    p = make_protocol("clinical", n_views=720.0, kernel="bone", water_correction=False)
    assert p.n_views == 720 and isinstance(p.n_views, int)
    assert p.kernel == "bone" and p.water_correction is False


def test_scan_fov_from_independent_trigonometry():
    p = make_protocol("clinical")
    half_width = p.n_bins * p.bin_width_mm / 2
    # The edge ray is tangent to the circle of radius r: r = D_si * sin(edge fan angle)
    r = p.source_to_iso_mm * half_width / math.hypot(half_width, p.source_to_detector_mm)
    assert p.scan_fov_mm == pytest.approx(2 * r, rel=1e-12)
    assert p.iso_bin_width_mm == pytest.approx(p.bin_width_mm * p.source_to_iso_mm / p.source_to_detector_mm)


def test_view_angles_and_bin_offsets():
    p = make_protocol("quick", n_views=4, n_bins=8, bin_width_mm=4.0, recon_fov_mm=10)
    np.testing.assert_allclose(p.view_angles_rad(), [0, np.pi / 2, np.pi, 3 * np.pi / 2])
    np.testing.assert_allclose(p.bin_offsets_mm(), (np.arange(8) - 3.5) * 4.0)


def test_to_dict_is_json_ready_and_holds_geometry():
    d = json.loads(json.dumps(make_protocol("clinical").to_dict()))
    assert d["kvp"] == 120 and d["kernel"] == "standard"
    geo = d["geometry"]
    assert geo["type"] == "fanflat" and geo["n_views"] == 1152
    assert "source anterior" in geo["convention"]
    assert d["recon_voxel_mm"] == [0.75, 0.75, 1.0]


def test_protocol_is_frozen():
    p = make_protocol()
    with pytest.raises(AttributeError):
        p.kvp = 100  # type: ignore[misc]


def test_presets_hold_every_field_once():
    names = {f for f in ScannerProtocol.__dataclass_fields__}
    for values in PRESETS.values():
        assert set(values) == names


def test_recon_grid_covers_fov_centred_on_iso():
    p = make_protocol("clinical")
    g = recon_grid(p, -50.0, 50.0)
    assert g.shape == (100, 512, 512)
    assert g.spacing_mm == (0.75, 0.75, 1.0)
    xs = g.voxel_centers_axis(0)
    assert xs[0] + xs[-1] == pytest.approx(0.0)
    assert g.voxel_centers_axis(2)[0] == pytest.approx(-49.5)


def test_imaging_grid_subdivides_recon_slices_exactly():
    p = make_protocol("quick", imaging_oversampling=3, imaging_oversampling_z=3)
    rec = recon_grid(p, 0.0, 9.0, center_xy_mm=(10.0, -5.0))
    fine = imaging_grid(p, rec)
    assert fine.shape[0] == 3 * rec.shape[0]
    np.testing.assert_allclose(np.asarray(fine.spacing_mm) * 3, rec.spacing_mm)
    # the three fine slices of recon slice k average to its centre
    zf = fine.voxel_centers_axis(2).reshape(rec.shape[0], 3).mean(axis=1)
    np.testing.assert_allclose(zf, rec.voxel_centers_axis(2), atol=1e-9)
    # same in-plane extent
    lo_r = rec.origin_mm[0] - rec.spacing_mm[0] / 2
    lo_f = fine.origin_mm[0] - fine.spacing_mm[0] / 2
    assert lo_f == pytest.approx(lo_r)
    # in-plane and slice oversampling are independent
    q = make_protocol("quick", imaging_oversampling=2, imaging_oversampling_z=1)
    other = imaging_grid(q, rec)
    assert other.shape[0] == rec.shape[0] and other.spacing_mm[2] == rec.spacing_mm[2]
    assert other.spacing_mm[0] == pytest.approx(rec.spacing_mm[0] / 2)
