"""Acquisition physics: sub-rays (focal spot, cell aperture, view blur), bowtie, scatter, bone
beam-hardening correction, dose, and the noise they leave."""

from __future__ import annotations

import numpy as np
import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.simulate import acquisition, ct, dose, scatter
from nmosim.simulate.scanner import make_protocol

# 128 x 128 pixels of 3 mm over 384 mm, 360 views, 220 bins of 3.6 mm, one 2 mm slice.
SMALL = {
    "n_views": 360,
    "n_bins": 220,
    "bin_width_mm": 3.6,
    "recon_pixel_mm": 3.0,
    "recon_fov_mm": 384.0,
    "slice_thickness_mm": 2.0,
    "imaging_oversampling": 2,
    "imaging_oversampling_z": 1,
    "electronic_noise_photons": 0.0,
    "focal_spot_samples": 1,
    "cell_samples": 2,
    "view_samples": 2,
}


def small(**overrides):
    return make_protocol("quick", **{**SMALL, **overrides})


def radius_mm(grid: Grid) -> np.ndarray:
    x, y = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)
    return np.hypot(x[None, :], y[:, None])


def test_quantum_noise_follows_dose_and_the_fixed_texture_is_small():
    clean, grid = ct.simulate_water_cylinder(small(), 200.0, None, n_slices=2)
    inside = radius_mm(grid) < 60.0
    assert clean[:, inside].std() < 3.0  # the noise-free image is flat: no aliasing texture
    sds = []
    for seed, mas in ((1, 50.0), (2, 200.0), (3, 800.0)):
        noisy, _ = ct.simulate_water_cylinder(small(mas=mas), 200.0, np.random.default_rng(seed), n_slices=2)
        sds.append(float((noisy - clean)[:, inside].std()))
    # 16 times the dose: a quarter of the noise, each step a half (1 / sqrt(mAs))
    assert sds[0] / sds[1] == pytest.approx(2.0, rel=0.10)
    assert sds[1] / sds[2] == pytest.approx(2.0, rel=0.10)


def _edge_width_mm(protocol) -> float:
    """10-90 % width (mm) of the radial edge of a noise-free 60 mm water cylinder."""
    mu, grid = ct.simulate_water_cylinder(protocol, 60.0, None, hu=False)
    r = radius_mm(grid).ravel()
    values = mu[0].ravel()
    edges = np.arange(22.0, 38.0, 0.25)
    index = np.digitize(r, edges)
    profile = np.array([values[index == i].mean() for i in range(1, edges.size)])
    centres = (edges[:-1] + edges[1:]) / 2.0
    top, bottom = profile[:8].mean(), profile[-8:].mean()
    level = (profile - bottom) / (top - bottom)
    r90 = np.interp(0.9, level[::-1], centres[::-1])
    r10 = np.interp(0.1, level[::-1], centres[::-1])
    return float(r10 - r90)


def test_focal_spot_and_cell_aperture_widen_an_edge():
    fine = {
        "recon_pixel_mm": 0.4,
        "recon_fov_mm": 80.0,
        "n_bins": 400,
        "bin_width_mm": 0.55,
        "kernel": "bone",
    }
    fine.update(n_views=360, view_samples=1, bowtie="none", scatter="none")
    point = _edge_width_mm(small(**fine, focal_spot_mm=0.0, focal_spot_samples=1, cell_samples=1))
    blurred = _edge_width_mm(
        small(**fine, focal_spot_mm=2.5, focal_spot_samples=4, cell_aperture=1.0, cell_samples=2)
    )
    # At the iso-centre a 2.5 mm spot is a box of 2.5 * (1085.6 - 595) / 1085.6 = 1.13 mm and a
    # 0.55 mm cell one of 0.55 * 595 / 1085.6 = 0.30 mm; a box's 10-90 % width is 0.8 of its
    # width, and blurs add about in quadrature. The kernel is designed for the nominal 1 mm spot
    # (a 0.45 mm box) and the cell, and restores those: what is left is sqrt(1.13**2 - 0.45**2).
    expected = np.sqrt(point**2 + (0.8 * np.sqrt(1.13**2 - 0.45**2)) ** 2)
    assert blurred > point + 0.2
    assert blurred == pytest.approx(expected, rel=0.2)


def test_sub_rays_cover_the_focal_spot_the_cell_and_the_view():
    p = small(focal_spot_mm=1.2, focal_spot_samples=3, cell_aperture=0.8, cell_samples=2, view_samples=4)
    rays = np.array(acquisition.sub_rays(p))
    assert rays.shape == (24, 3)
    assert np.unique(rays[:, 0]).tolist() == pytest.approx([-0.4, 0.0, 0.4])
    assert np.unique(rays[:, 1]).tolist() == pytest.approx([-0.72, 0.72])  # quarter points of 2.88 mm
    step = 2 * np.pi / p.n_views
    assert np.unique(rays[:, 2]).tolist() == pytest.approx([-3 * step / 8, -step / 8, step / 8, 3 * step / 8])


def _noise_edge_over_centre(protocol) -> float:
    noisy, grid = ct.simulate_water_cylinder(protocol, 300.0, np.random.default_rng(5), n_slices=3)
    clean, _ = ct.simulate_water_cylinder(protocol, 300.0, None, n_slices=3)
    r = radius_mm(grid)
    diff = noisy - clean
    return float(diff[:, (r > 110) & (r < 140)].std() / diff[:, r < 40].std())


def test_the_bowtie_flattens_the_noise_across_a_cylinder():
    common = {"mas": 100.0, "scatter": "none", "focal_spot_samples": 1, "cell_samples": 1, "view_samples": 1}
    without = _noise_edge_over_centre(small(**common, bowtie="none"))
    with_bowtie = _noise_edge_over_centre(small(**common, bowtie="body"))
    assert without < 0.8  # the edge's rays are short: less noise there without a bowtie
    assert abs(1.0 - with_bowtie) < abs(1.0 - without) - 0.04


def test_scatter_to_primary_is_about_15_percent_behind_35_cm_of_water():
    p = small(water_correction=False)
    spectrum = ct.projection_spectrum(p)
    ratios = {}
    for diameter in (200.0, 350.0):
        primary, i0 = scatter.water_cylinder_primary(p, spectrum, diameter)
        clean = acquisition.detect(ct.physics.Counts(primary, primary), i0, small(water_correction=False,
                                   scatter="none"), spectrum, None)  # fmt: skip
        with_scatter = acquisition.detect(
            ct.physics.Counts(primary, primary),
            i0,
            small(water_correction=False, scatter_correction=False),
            spectrum,
            None,
        )
        centre = p.n_bins // 2
        ratios[diameter] = float(np.exp(clean[centre] - with_scatter[centre]) - 1.0)
    assert ratios[350.0] == pytest.approx(0.15, abs=0.02)
    assert ratios[200.0] < 0.6 * ratios[350.0]  # a thinner object scatters less per primary photon


def _cupping(protocol) -> float:
    hu, grid = ct.simulate_water_cylinder(protocol, 330.0, None)
    r = radius_mm(grid)
    return float(hu[0][(r > 120) & (r < 145)].mean() - hu[0][r < 30].mean())


def test_scatter_cups_a_large_cylinder_and_the_correction_removes_its_share():
    light = {"focal_spot_samples": 1, "cell_samples": 1, "view_samples": 1}
    reference = _cupping(small(**light, scatter="none"))
    uncorrected = _cupping(small(**light, scatter_correction=False))
    corrected = _cupping(small(**light, scatter_correction=True))
    assert uncorrected - reference > 10.0  # scatter lowers the centre's readings the most
    # the correction subtracts its share of the scatter; the cupping is nearly linear in the residual
    residual = 1.0 - scatter.CORRECTION_FRACTION
    assert corrected - reference == pytest.approx(residual * (uncorrected - reference), rel=0.25)


def test_urine_at_the_centre_of_the_pelvis_reads_as_fluid():
    """The scatter the correction leaves darkens the centre of the pelvis most, where every lateral
    ray crosses both hips; the bladder's urine of a noise-free quick scan at the femoral heads must
    still read as fluid, 0-20 HU (DOMAIN.md 4.1)."""
    from scipy import ndimage

    import nmosim
    from nmosim.phantoms.labels import Tissue
    from nmosim.simulate.pipeline import case_grids, fit_protocol, imaging_maps

    phantom = nmosim.build_phantom(nmosim.CaseSpec(seed=1, phase="c"))
    protocol = fit_protocol(make_protocol("quick"), phantom)
    z = float(phantom.landmarks.head_center[2])
    recon, imaging = case_grids(phantom, protocol, (z - 2.0, z + 2.0))
    tissues = phantom.rasterize(recon, supersampling=1).tissues
    water, bone = imaging_maps(phantom, imaging, ct.protocol_spectrum(protocol))
    hu = ct.simulate_ct(water, bone, imaging, recon, protocol, None)
    urine = np.stack([ndimage.binary_erosion(t == Tissue.URINE, iterations=2) for t in tissues])
    assert urine.sum() > 500
    assert 0.0 <= float(np.median(hu[urine])) <= 20.0


def _two_rods(protocol):
    """Noise-free scan of a 250 mm water cylinder holding two 40 mm cortical bone rods at
    x = +-65 mm; returns the HU image and its grid."""
    water, bone, fine, rec = ct.water_cylinder_maps(protocol, 250.0, 1)
    x, y = fine.voxel_centers_axis(0), fine.voxel_centers_axis(1)
    rods = (np.hypot(np.abs(x[None, :]) - 65.0, y[:, None]) < 20.0).astype(np.float32)
    water = water * (1.0 - rods)  # cortical bone is (0, 1) in the water-bone basis
    bone = np.broadcast_to(rods, water.shape).copy()
    return ct.simulate_ct(water, bone, fine, rec, protocol, None), rec


def _band_hu(protocol) -> float:
    hu, grid = _two_rods(protocol)
    x, y = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)
    between = (np.abs(x[None, :]) < 20.0) & (np.abs(y[:, None]) < 6.0)
    away = (np.abs(x[None, :]) < 20.0) & (np.abs(np.abs(y[:, None]) - 70.0) < 6.0)
    return float(hu[0][between].mean() - hu[0][away].mean())


def test_the_bone_correction_lifts_the_dark_band_between_two_dense_rods():
    light = {"focal_spot_samples": 1, "cell_samples": 1, "view_samples": 1, "scatter": "none"}
    uncorrected = _band_hu(small(**light))
    corrected = _band_hu(small(**light, bone_correction=True))
    assert uncorrected < -10.0
    assert abs(corrected) < 0.5 * abs(uncorrected)


def test_ctdi_vol_scales_with_mas_and_inverse_pitch():
    base = dose.ctdi_vol_mgy(make_protocol("quick", mas=100.0))
    assert dose.ctdi_vol_mgy(make_protocol("quick", mas=300.0)) == pytest.approx(3 * base, rel=1e-9)
    helical = dose.ctdi_vol_mgy(make_protocol("quick", mas=100.0, geometry="helical", pitch=1.0))
    assert dose.ctdi_vol_mgy(
        make_protocol("quick", mas=100.0, geometry="helical", pitch=0.5)
    ) == pytest.approx(2 * helical, rel=1e-9)
    # DOMAIN.md 4.3: abdomen-pelvis CTDIvol 10-20 mGy at 150-250 mAs; the body phantom's centre
    # receives less than its periphery
    assert 3.0 < base < 12.0
    p = make_protocol("quick")
    assert dose.point_dose_mgy(p, (0.0, 0.0)) < dose.point_dose_mgy(p, (0.0, 150.0))
    assert "ctdi_vol_mgy" in p.to_dict()


def test_same_seed_same_bytes_with_every_effect_on():
    p = small(mas=50.0, bone_correction=True, focal_spot_samples=2, cell_samples=1, view_samples=2)
    a, _ = ct.simulate_water_cylinder(p, 200.0, np.random.default_rng(7), threads=1)
    b, _ = ct.simulate_water_cylinder(p, 200.0, np.random.default_rng(7), threads=2)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"focal_spot_mm": 5.0}, "focal_spot_mm = 5.0 is outside [0, 3]"),
        ({"cell_samples": 0}, "cell_samples = 0 is outside [1, 16]"),
        ({"cell_aperture": 1.5}, "cell_aperture = 1.5 is outside (0, 1]"),
        ({"bowtie": "head"}, "bowtie = 'head' is not one of {none, body}"),
        ({"scatter": "mc"}, "scatter = 'mc'"),
        ({"bone_correction": "yes"}, "bone_correction = 'yes'"),
        (
            {"geometry": "axial", "view_samples": 2},
            "view_samples = 2 is not one of {1} for geometry = 'axial'",
        ),
    ],
)
def test_bad_acquisition_settings_name_the_parameter(overrides, fragment):
    with pytest.raises(SpecError) as info:
        make_protocol("clinical", **overrides)
    assert fragment in str(info.value)


def test_the_cone_beam_geometries_take_one_ray_per_cell():
    p = make_protocol("clinical", geometry="helical")
    assert (p.focal_spot_samples, p.cell_samples, p.view_samples) == (1, 1, 1)
    assert make_protocol("clinical").cell_samples == 2


def test_the_cone_beam_detector_has_the_bowtie_and_scatter_too():
    from nmosim.simulate import geometry3d  # its detector model runs on numpy without a GPU

    p = make_protocol("quick", geometry="axial", detector_rows=4, n_views=4)
    air = np.zeros((4, 4, p.n_bins), dtype=np.float32)
    assert np.abs(geometry3d.detector_projections(air, air, p, None)).max() < 1e-5  # flat field
    water = np.full_like(air, 20.0)
    corrected = geometry3d.detector_projections(water, air, p, None)
    # 20 cm of water reads 20 cm times the beam's reference attenuation in every column (without
    # scatter; the correction's residual scatter varies smoothly across the detector)
    no_scatter = make_protocol("quick", geometry="axial", detector_rows=4, n_views=4, scatter="none")
    flat = geometry3d.detector_projections(water, air, no_scatter, None)
    assert np.allclose(flat, flat[..., p.n_bins // 2 : p.n_bins // 2 + 1], atol=2e-3)
    uncorrected = make_protocol(
        "quick", geometry="axial", detector_rows=4, n_views=4, scatter_correction=False
    )
    raw = geometry3d.detector_projections(water, air, uncorrected, None)
    assert np.all(raw < flat - 0.02)  # uncorrected scatter adds signal: shorter paths
    # the correction leaves its residual share of that (to first order in the small scatter)
    residual = 1.0 - scatter.CORRECTION_FRACTION
    assert np.all(corrected < flat) and np.all(corrected > raw)
    np.testing.assert_allclose(flat - corrected, residual * (flat - raw), rtol=0.3)
