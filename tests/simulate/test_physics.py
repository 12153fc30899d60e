"""Spectra, attenuation, basis decomposition, detector signal, noise and water correction."""

from __future__ import annotations

import numpy as np
import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.labels import N_TISSUES, Tissue
from nmosim.phantoms.materials import CORTICAL_BONE, WATER, mix_by_volume, tissue_materials
from nmosim.simulate import physics


@pytest.fixture(scope="module")
def spectrum() -> physics.Spectrum:
    return physics.tube_spectrum(120, 6.0)


@pytest.fixture(scope="module")
def e_eff(spectrum) -> float:
    return physics.effective_energy_kev(spectrum)


def test_spectrum_is_physical(spectrum):
    e = spectrum.energies_kev
    assert e.max() < 120 and e.min() > 5  # nothing above the tube voltage, soft photons filtered
    # Tungsten K-alpha lines (57-59 keV) stand above their neighbours.
    n = spectrum.photons_per_mas_mm2
    k_line = n[(e > 57) & (e < 60)].max()
    assert k_line > 1.5 * n[(e > 50) & (e < 54)].mean()
    # More aluminium hardens the beam and removes photons.
    harder = physics.tube_spectrum(120, 10.0)
    assert harder.mean_energy_kev > spectrum.mean_energy_kev
    assert harder.photons_per_mas_mm2.sum() < n.sum()


def test_spectrum_is_cached_and_read_only(spectrum):
    assert physics.tube_spectrum(120, 6.0) is spectrum
    with pytest.raises(ValueError):
        spectrum.photons_per_mas_mm2[0] = 1.0


def test_rebinning_keeps_photons_and_mean_energy(spectrum):
    coarse = spectrum.rebinned(physics.PROJECTION_BIN_KEV)
    assert 10 <= coarse.energies_kev.size <= 20
    assert coarse.photons_per_mas_mm2.sum() == pytest.approx(spectrum.photons_per_mas_mm2.sum())
    assert coarse.mean_energy_kev == pytest.approx(spectrum.mean_energy_kev)


def test_water_attenuation_at_the_effective_energy(e_eff):
    # DOMAIN.md 4.2: the effective energy of a 120 kVp beam is ~60-70 keV, water mu 0.19-0.21 /cm.
    assert 60 <= e_eff <= 70
    mu = physics.linear_attenuation_per_cm(WATER, [60.0, 65.0, 70.0])
    assert np.all((mu >= 0.19) & (mu <= 0.21))
    assert np.all(np.diff(mu) < 0)


def test_attenuation_follows_the_mixture_rule():
    e = np.array([40.0, 80.0])
    half = physics.linear_attenuation_per_cm(mix_by_volume("half", [(WATER, 0.5), (CORTICAL_BONE, 0.5)]), e)
    parts = 0.5 * physics.linear_attenuation_per_cm(WATER, e) + 0.5 * physics.linear_attenuation_per_cm(
        CORTICAL_BONE, e
    )
    np.testing.assert_allclose(half, parts, rtol=1e-12)


# DOMAIN.md 4.1 and 2.6 ranges at 120 kVp.
HU_RANGES = {
    Tissue.FAT: (-120, -80),
    Tissue.MUSCLE: (45, 55),
    Tissue.MUSCLE_ATROPHIC: (10, 35),
    Tissue.MUSCLE_OEDEMATOUS: (10, 35),
    Tissue.CORTICAL_BONE: (1500, 1900),
    Tissue.TRABECULAR_BONE: (200, 400),
    Tissue.MARROW_YELLOW: (-100, -30),
    Tissue.HO_CALCIFYING: (100, 300),
    Tissue.HO_IMMATURE: (300, 700),
    Tissue.HO_CORTEX: (800, 1500),
    Tissue.HO_TRABECULAR: (100, 400),
    Tissue.SOFT_TISSUE_OTHER: (20, 120),  # skin 20-60, capsule 70-110, cartilage 80-120
    Tissue.CALCIFICATION: (400, 1000),  # DOMAIN.md 5: calcific deposits
}


@pytest.mark.parametrize("tissue", list(HU_RANGES), ids=lambda t: t.name.lower())
def test_tissue_hu_at_the_effective_energy(tissue, e_eff):
    lo, hi = HU_RANGES[tissue]
    hu = physics.hu_at_energy(tissue_materials()[tissue], e_eff)
    assert lo <= hu <= hi, f"{tissue.name}: {hu:.1f} HU"


def test_demineralization_scales_trabecular_hu(e_eff):
    # DOMAIN.md 2.10: trabecular HU falls by a factor 0.5-0.8 in chronic SCI.
    full = physics.hu_at_energy(tissue_materials()[Tissue.TRABECULAR_BONE], e_eff)
    for s in (0.5, 0.8):
        thin = physics.hu_at_energy(
            tissue_materials(trabecular_density_scale=s)[Tissue.TRABECULAR_BONE], e_eff
        )
        assert thin / full == pytest.approx(s, abs=0.08)


def test_basis_fit_reproduces_every_tissue(spectrum, e_eff):
    materials = tissue_materials()
    coef = physics.basis_coefficients(materials, spectrum)
    assert coef.shape == (N_TISSUES, 2)
    np.testing.assert_allclose(coef[Tissue.CORTICAL_BONE], [0.0, 1.0], atol=1e-9)
    mu_w, mu_b = (physics.linear_attenuation_per_cm(m, [e_eff])[0] for m in (WATER, CORTICAL_BONE))
    mu_air = physics.linear_attenuation_per_cm(materials[Tissue.AIR], [e_eff])[0]
    for tissue, material in materials.items():
        fitted = coef[tissue, 0] * mu_w + coef[tissue, 1] * mu_b
        true = physics.linear_attenuation_per_cm(material, [e_eff])[0]
        error_hu = 1000 * (fitted - true) / (mu_w - mu_air)
        assert abs(error_hu) < 3.0, f"{tissue.name}: fit error {error_hu:.2f} HU"
    # Soft tissues are nearly water; mineral shows up as bone.
    assert coef[Tissue.HO_IMMATURE, 1] > coef[Tissue.HO_CALCIFYING, 1] > 0.02
    assert abs(coef[Tissue.MUSCLE, 1]) < 0.02


def test_basis_fit_needs_every_tissue(spectrum):
    materials = tissue_materials()
    del materials[Tissue.HO_CORTEX]
    with pytest.raises(SpecError, match="ho_cortex"):
        physics.basis_coefficients(materials, spectrum)


def test_expected_counts_obey_beer_lambert_and_the_inverse_square(spectrum):
    geometry = {"mas": 0.5, "pixel_area_mm2": 2.0, "source_to_detector_mm": 1000.0}
    i0 = physics.flat_field(spectrum, **geometry)
    # In air the integrating detector's signal is the photon count (photon equivalents).
    q = physics.photons_per_reading(spectrum, **geometry)
    assert i0 == pytest.approx(q.sum(), rel=1e-9)
    assert i0 == pytest.approx(spectrum.photons_per_mas_mm2.sum() * 0.5 * 2.0)
    far = physics.flat_field(spectrum, mas=0.5, pixel_area_mm2=2.0, source_to_detector_mm=2000.0)
    assert far == pytest.approx(i0 / 4)
    # A monoenergetic beam follows Beer-Lambert exactly.
    mono = physics.Spectrum([70.0], [1e6])
    lw = np.array([0.0, 10.0, 30.0], dtype=np.float32)
    lb = np.array([0.0, 0.0, 2.0], dtype=np.float32)
    counts = physics.expected_counts(lw, lb, mono, **geometry)
    mu_w, mu_b = (physics.linear_attenuation_per_cm(m, [70.0])[0] for m in (WATER, CORTICAL_BONE))
    i0_mono = physics.flat_field(mono, **geometry)
    np.testing.assert_allclose(counts.mean, i0_mono * np.exp(-(lw * mu_w + lb * mu_b)), rtol=1e-5)
    np.testing.assert_allclose(counts.variance, counts.mean, rtol=1e-5)  # one energy: Poisson


def test_polychromatic_beam_hardens(spectrum):
    geometry = {"mas": 1.0, "pixel_area_mm2": 1.0, "source_to_detector_mm": 1000.0}
    thickness = np.array([1.0, 10.0, 30.0], dtype=np.float32)
    counts = physics.expected_counts(thickness, np.zeros_like(thickness), spectrum, **geometry)
    mu_apparent = np.log(physics.flat_field(spectrum, **geometry) / counts.mean) / thickness
    assert np.all(np.diff(mu_apparent) < 0)  # the deeper, the harder the beam
    # Compound Poisson: each photon adds E/E_mean, so variance/mean is <E^2>/(<E> E_mean) > 1.
    assert np.all(counts.variance > counts.mean)


def test_grouped_energy_bins_are_accurate(spectrum):
    coarse = spectrum.rebinned(physics.PROJECTION_BIN_KEV)
    geometry = {"mas": 1.0, "pixel_area_mm2": 1.0, "source_to_detector_mm": 1000.0}
    lw, lb = np.meshgrid(np.linspace(0, 45, 10), np.linspace(0, 5, 6))
    lw, lb = lw.astype(np.float32), lb.astype(np.float32)
    p = {
        s: np.log(physics.flat_field(s, **geometry) / physics.expected_counts(lw, lb, s, **geometry).mean)
        for s in (spectrum, coarse)
    }
    np.testing.assert_allclose(p[coarse], p[spectrum], rtol=5e-3, atol=1e-4)


def test_chunked_threaded_sum_equals_direct(spectrum, monkeypatch):
    coarse = spectrum.rebinned(physics.PROJECTION_BIN_KEV)
    rng = np.random.default_rng(3)
    lw = rng.uniform(0, 40, (5, 7, 11)).astype(np.float32)
    lb = rng.uniform(0, 4, (5, 7, 11)).astype(np.float32)
    geometry = {"mas": 1.0, "pixel_area_mm2": 1.0, "source_to_detector_mm": 1000.0}
    whole = physics.expected_counts(lw, lb, coarse, **geometry)
    monkeypatch.setattr(physics, "_CHUNK", 16)
    chunked = physics.expected_counts(lw, lb, coarse, threads=2, **geometry)
    np.testing.assert_array_equal(whole.mean, chunked.mean)


def test_noise_has_the_quantum_and_electronic_variance():
    rng = np.random.default_rng(7)
    mean = np.full(200_000, 400.0, dtype=np.float32)
    var = np.full_like(mean, 480.0)  # compound Poisson: gain 1.2
    quantum = physics.add_noise(physics.Counts(mean, var), rng, 0.0)
    assert quantum.mean() == pytest.approx(400.0, abs=0.5)
    assert quantum.var() == pytest.approx(480.0, rel=0.02)
    both = physics.add_noise(physics.Counts(mean, var), rng, 20.0)
    assert both.var() == pytest.approx(480.0 + 400.0, rel=0.02)


def test_low_counts_are_poisson_and_floored():
    rng = np.random.default_rng(11)
    mean = np.full(200_000, 3.0, dtype=np.float32)
    noisy = physics.add_noise(physics.Counts(mean, mean.copy()), rng, 0.0, floor_photons=0.5)
    # Poisson(3): integers, P(0) = exp(-3), which the floor lifts to 0.5.
    values = set(np.unique(noisy[:1000]).tolist())
    assert values <= {0.5} | {float(k) for k in range(1, 40)}
    assert np.mean(noisy == 0.5) == pytest.approx(np.exp(-3.0), abs=0.005)
    assert noisy.var() == pytest.approx(3.0, rel=0.05)


def test_noise_is_reproducible():
    counts = physics.Counts(np.full((4, 5), 50.0, np.float32), np.full((4, 5), 60.0, np.float32))
    a = physics.add_noise(counts, np.random.default_rng(5), 3.0)
    b = physics.add_noise(counts, np.random.default_rng(5), 3.0)
    assert a.tobytes() == b.tobytes()


def test_water_correction_linearizes_water(spectrum):
    coarse = spectrum.rebinned(physics.PROJECTION_BIN_KEV)
    geometry = {"mas": 1.0, "pixel_area_mm2": 1.0, "source_to_detector_mm": 1000.0}
    thickness = np.linspace(0.0, 50.0, 26).astype(np.float32)
    counts = physics.expected_counts(thickness, np.zeros_like(thickness), coarse, **geometry)
    measured = physics.log_projections(counts.mean, physics.flat_field(coarse, **geometry))
    corrected = physics.water_correction(measured, coarse)
    slope = corrected[1:] / thickness[1:]
    assert np.ptp(slope) < 1e-3 * slope.mean()  # linear in the water path
    assert np.ptp(measured[1:] / thickness[1:]) > 0.05 * slope.mean()  # and it was not before
    assert slope.mean() == pytest.approx(measured[10] / thickness[10], rel=1e-3)  # 20 cm unchanged


def test_bad_inputs_name_the_parameter(spectrum):
    with pytest.raises(SpecError, match="kvp = 300"):
        physics.tube_spectrum(300, 6.0)
    with pytest.raises(SpecError, match="filtration_mm_al"):
        physics.tube_spectrum(120, -1.0)
    with pytest.raises(SpecError, match="detector"):
        physics.detector_weights(spectrum, "scintillating")
    with pytest.raises(SpecError, match="electronic_noise_photons"):
        physics.add_noise(physics.Counts(np.ones(2, np.float32), np.ones(2, np.float32)), None, -1.0)
    with pytest.raises(SpecError, match="energies"):
        physics.Spectrum([50.0, 40.0], [1.0, 1.0])
