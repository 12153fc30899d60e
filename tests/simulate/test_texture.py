"""The fixed image texture of a noise-free scan: a uniform object must reconstruct flat."""

from __future__ import annotations

import types

import numpy as np
import pytest

from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.materials import tissue_materials
from nmosim.phantoms.phantom import Phantom
from nmosim.phantoms.rasterize import Part
from nmosim.phantoms.shapes import Capsule
from nmosim.simulate import ct, physics, pipeline, qa, qa_phantom
from nmosim.simulate.scanner import make_protocol

RADIUS_MM = 90.0
# quick's geometry over a small field: one slice of a muscle cylinder in a few seconds
PROTOCOL = make_protocol("quick", n_views=360, recon_fov_mm=216.0)


def _cylinder_phantom() -> Phantom:
    """A muscle cylinder along z (no bone: its basis maps need no anatomy but these two fields)."""
    part = Part(
        "cylinder", Capsule((0.0, 0.0, -400.0), (0.0, 0.0, 400.0), RADIUS_MM), Structure.MUSCLE, Tissue.MUSCLE
    )
    anatomy = types.SimpleNamespace(bone_density_scale=1.0, bone_texture_seed=0)
    return Phantom(anatomy=anatomy, parts=(part,), landmarks=None)


def _interior_sd(monkeypatch, supersampling: int) -> tuple[float, float]:
    monkeypatch.setattr(pipeline, "IMAGING_SUPERSAMPLING", supersampling)
    recon, imaging = ct.cylinder_grids(PROTOCOL, 1)
    water, bone = pipeline.imaging_maps(
        _cylinder_phantom(), imaging, ct.protocol_spectrum(PROTOCOL), threads=2
    )
    hu = ct.simulate_ct(water, bone, imaging, recon, PROTOCOL, None, threads=2)[0]
    x, y = recon.voxel_centers_axis(0), recon.voxel_centers_axis(1)
    inside = np.hypot(x[None, :], y[:, None]) < RADIUS_MM - 20.0
    return float(hu[inside].std()), float(hu[inside].mean())


def test_imaging_maps_hold_partial_volume_at_the_surface():
    recon, imaging = ct.cylinder_grids(PROTOCOL, 1)
    water, bone = pipeline.imaging_maps(
        _cylinder_phantom(), imaging, ct.protocol_spectrum(PROTOCOL), threads=2
    )
    coefficients = physics.basis_coefficients(tissue_materials(), ct.protocol_spectrum(PROTOCOL))
    air, muscle = coefficients[Tissue.AIR], coefficients[Tissue.MUSCLE]
    values = (water[0] - air[0]) / (muscle[0] - air[0])  # muscle's volume fraction
    edge = (values > 0.01) & (values < 0.99)
    assert edge.sum() > 100
    np.testing.assert_allclose(bone[0], air[1] + values * (muscle[1] - air[1]), atol=1e-5)  # the same mix
    # the area of the disc from its fractions, to a fraction of the pixels the rim crosses
    area = values.sum() * imaging.spacing_mm[0] * imaging.spacing_mm[1]
    assert area == pytest.approx(np.pi * RADIUS_MM**2, rel=2e-3)


def test_noise_free_uniform_cylinder_is_flat(monkeypatch):
    """A uniform muscle cylinder, noise-free: SD in its interior below 4.5 HU (4.3 for 455, 456 or
    457 bins; the rebinned samples are readings near the iso-centre, unsmoothed, for either parity),
    its mean that of muscle. Stepped imaging maps (one sample per voxel) alias the outline into
    streaks of 6-7 HU."""
    sd, mean = _interior_sd(monkeypatch, pipeline.IMAGING_SUPERSAMPLING)
    expected = ct.reference_hu(tissue_materials()[Tissue.MUSCLE], PROTOCOL, water_cm=2 * RADIUS_MM / 10.0)
    assert sd < 4.5
    assert mean == pytest.approx(expected, abs=10.0)


def test_qa_noise_region_is_clear_of_the_inserts_streaks():
    """Noise-free QA scans: the dense rods streak and shade the insert section's centre (above
    4 HU), so the noise, NPS and uniformity of qa.json come from the uniformity section, where
    the quick geometry's fixed texture stays below 3.6 HU (3.4 for 455, 456 or 457 bins)."""
    scan = qa.scan_qa(PROTOCOL, 200.0, n_slices=1, seed=None, threads=2)
    np.testing.assert_array_equal(scan.first, scan.second)  # no noise drawn
    report = qa.noise_report(scan)
    assert report["insert_section"]["sd_hu"] > 4.0  # the streaks are there to be picked up
    assert report["noise"]["sd_hu"] < 3.6
    assert report["noise"]["section"] == "uniformity"
    # the uniform disc of the uniformity section, measured here without qa's own masks
    x, y = scan.uniform_grid.voxel_centers_axis(0), scan.uniform_grid.voxel_centers_axis(1)
    disc = np.hypot(x[None, :], y[:, None]) <= qa_phantom.uniform_radius_mm() - 5.0
    assert float(scan.uniform_first[0][disc].std(ddof=1)) == pytest.approx(report["noise"]["sd_hu"], abs=1e-3)
