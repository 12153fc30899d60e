"""X-ray physics: tube spectra, attenuation, two-basis decomposition, detector signal, noise, BHC.

Works on line integrals and detector readings only; it neither projects nor reconstructs images.

Detector model (used throughout): an energy-integrating detector whose signal is expressed in
*photon equivalents*, ``S = sum_E n(E) * E / E_mean``, with ``n(E)`` the photons of energy ``E`` that
reach the pixel and ``E_mean`` the mean energy of the unattenuated beam, so an air reading equals the
photon count. Its quantum noise is compound Poisson, variance ``sum_E n(E) * (E / E_mean) ** 2``
(a photon-counting detector, ``detector="counting"``, weighs every photon by 1 instead).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import spekpy
import xraylib

from nmosim.phantoms.errors import SpecError, check_choice, check_range
from nmosim.phantoms.labels import N_TISSUES, Tissue
from nmosim.phantoms.materials import AIR, CORTICAL_BONE, WATER, Material
from nmosim.simulate import arrays

DETECTORS = ("integrating", "counting")
# The two basis materials of DESIGN.md 7: water-like and bone-like (ICRU 46 cortical bone).
BASIS_MATERIALS: tuple[Material, Material] = (WATER, CORTICAL_BONE)
# Grouped energy bins for projection: 8 keV groups keep -log(I/I0) within 0.01 of the 0.5 keV
# spectrum for 0-50 cm of water plus 0-6 cm of bone at 120 kVp (0.2 %), with 15 groups.
PROJECTION_BIN_KEV = 8.0
# Elements per chunk when summing over energy bins: bounds memory to a few such arrays.
_CHUNK = 1 << 20


@dataclass(frozen=True, eq=False)
class Spectrum:
    """A binned X-ray spectrum.

    ``energies_kev`` are bin centres (keV, increasing); ``photons_per_mas_mm2`` is the number of
    photons per bin per mAs per mm2 at 1 m from the focal spot, in air. Arrays are read-only;
    equality and hashing go by content, so a spectrum can key a cache.
    """

    energies_kev: np.ndarray
    photons_per_mas_mm2: np.ndarray

    def __post_init__(self) -> None:
        e = np.array(self.energies_kev, dtype=np.float64).ravel()
        n = np.array(self.photons_per_mas_mm2, dtype=np.float64).ravel()
        if e.shape != n.shape or e.size == 0:
            raise SpecError("a spectrum needs as many photon numbers as energies, at least one")
        if not (np.all(np.isfinite(e)) and np.all(e > 0) and np.all(np.diff(e) > 0)):
            raise SpecError("spectrum energies_kev must be positive and increasing")
        if not (np.all(np.isfinite(n)) and np.all(n >= 0) and n.sum() > 0):
            raise SpecError("spectrum photons must be non-negative with a positive total")
        e.setflags(write=False)
        n.setflags(write=False)
        object.__setattr__(self, "energies_kev", e)
        object.__setattr__(self, "photons_per_mas_mm2", n)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spectrum):
            return NotImplemented
        return np.array_equal(self.energies_kev, other.energies_kev) and np.array_equal(
            self.photons_per_mas_mm2, other.photons_per_mas_mm2
        )

    def __hash__(self) -> int:
        return hash((self.energies_kev.tobytes(), self.photons_per_mas_mm2.tobytes()))

    @property
    def mean_energy_kev(self) -> float:
        """Fluence-weighted mean energy in keV."""
        n = self.photons_per_mas_mm2
        return float((n * self.energies_kev).sum() / n.sum())

    def rebinned(self, width_kev: float) -> Spectrum:
        """Spectrum grouped into bins of ``width_kev`` (keV): photons summed, energy the mean.

        Fewer bins make polychromatic projection cheaper; see ``PROJECTION_BIN_KEV``.
        """
        width = check_range("width_kev", width_kev, 0.01, 200.0)
        group = np.floor(self.energies_kev / width).astype(np.int64)
        _, index = np.unique(group, return_inverse=True)
        n = np.bincount(index, weights=self.photons_per_mas_mm2)
        en = np.bincount(index, weights=self.photons_per_mas_mm2 * self.energies_kev)
        keep = n > 0
        return Spectrum(en[keep] / n[keep], n[keep])

    def filtered(self, material: Material, thickness_cm: float) -> Spectrum:
        """The spectrum behind ``thickness_cm`` (cm) of ``material``."""
        t = check_range("thickness_cm", thickness_cm, 0.0, 1e3)
        mu = linear_attenuation_per_cm(material, self.energies_kev)
        return Spectrum(self.energies_kev, self.photons_per_mas_mm2 * np.exp(-mu * t))


@functools.lru_cache(maxsize=64)
def _spekpy_spectrum(kvp: float, filtration_mm_al: float, anode_angle_deg: float, bin_kev: float):
    spek = spekpy.Spek(kvp=kvp, th=anode_angle_deg, dk=bin_kev)
    if filtration_mm_al > 0:
        spek.filter("Al", filtration_mm_al)
    # diff=False: photons per cm2 per mAs in each bin, at spekpy's default 1 m.
    energies, per_cm2 = spek.get_spectrum(diff=False)
    per_mm2 = np.asarray(per_cm2, dtype=np.float64) / 100.0
    keep = per_mm2 > per_mm2.max() * 1e-9  # drop empty bins below the filter's cut-off
    return Spectrum(np.asarray(energies)[keep], per_mm2[keep])


def tube_spectrum(
    kvp: float,
    filtration_mm_al: float,
    *,
    anode_angle_deg: float = 12.0,
    bin_kev: float = 1.0,
) -> Spectrum:
    """Tungsten-anode tube spectrum from spekpy, behind ``filtration_mm_al`` mm of aluminium.

    ``kvp`` in kV, ``anode_angle_deg`` in degrees, ``bin_kev`` the bin width in keV. Photons are
    per mAs per mm2 at 1 m. Results are cached (spekpy takes about a second).

    Examples
    --------
    >>> s = tube_spectrum(120, 6.0)
    >>> 55 < s.mean_energy_kev < 75
    True
    """
    kvp = check_range("kvp", kvp, 70, 150)  # DOMAIN.md 4.3: 100-140 kVp in practice
    filtration = check_range("filtration_mm_al", filtration_mm_al, 0.0, 20.0)
    angle = check_range("anode_angle_deg", anode_angle_deg, 5.0, 25.0)
    bin_kev = check_range("bin_kev", bin_kev, 0.1, 10.0)
    return _spekpy_spectrum(kvp, filtration, angle, bin_kev)


@functools.lru_cache(maxsize=256)
def _element_cross_section(symbol: str, energies: bytes) -> np.ndarray:
    z = xraylib.SymbolToAtomicNumber(symbol)
    values = np.array([xraylib.CS_Total(z, float(e)) for e in np.frombuffer(energies)])
    values.setflags(write=False)
    return values


def mass_attenuation_cm2_g(material: Material, energies_kev: Sequence[float]) -> np.ndarray:
    """Mass attenuation coefficient (cm2/g) of ``material`` at ``energies_kev`` (keV).

    Total cross sections from xraylib (``CS_Total``: photoelectric, incoherent and coherent
    scattering), combined by the mixture rule over the elemental mass fractions. Coherent scatter
    is included because a CT detector behind an anti-scatter grid rejects most scattered photons.
    """
    energies = np.ascontiguousarray(energies_kev, dtype=np.float64).ravel()
    if energies.size and not (np.all(energies >= 1.0) and np.all(energies <= 1000.0)):
        raise SpecError("energies_kev must lie in [1, 1000] keV")
    key = energies.tobytes()
    total = np.zeros_like(energies)
    for symbol, fraction in material.mass_fractions.items():
        total += fraction * _element_cross_section(symbol, key)
    return total


def linear_attenuation_per_cm(material: Material, energies_kev: Sequence[float]) -> np.ndarray:
    """Linear attenuation coefficient (1/cm) of ``material`` at ``energies_kev`` (keV).

    Examples
    --------
    >>> from nmosim.phantoms.materials import WATER
    >>> round(float(linear_attenuation_per_cm(WATER, [60.0])[0]), 3)   # DOMAIN.md 4.2
    0.206
    """
    return mass_attenuation_cm2_g(material, energies_kev) * material.density_g_cm3


def hu_at_energy(material: Material, energy_kev: float) -> float:
    """CT number (HU) of ``material`` for monochromatic ``energy_kev`` (keV)."""
    e = [float(energy_kev)]
    mu = linear_attenuation_per_cm(material, e)[0]
    mu_w = linear_attenuation_per_cm(WATER, e)[0]
    mu_a = linear_attenuation_per_cm(AIR, e)[0]
    return float(1000.0 * (mu - mu_w) / (mu_w - mu_a))


def detector_weights(spectrum: Spectrum, detector: str = "integrating") -> np.ndarray:
    """Signal per detected photon in each bin, in photon equivalents (see module docstring)."""
    check_choice("detector", detector, DETECTORS)
    if detector == "counting":
        return np.ones_like(spectrum.energies_kev)
    return spectrum.energies_kev / spectrum.mean_energy_kev


def basis_coefficients(
    materials: Mapping[Tissue, Material],
    spectrum: Spectrum,
    *,
    detector: str = "integrating",
) -> np.ndarray:
    """Water and bone volume fractions ``(a_w, a_b)`` per tissue, array ``(N_TISSUES, 2)``.

    Least squares fit of ``mu_t(E) ~ a_w mu_water(E) + a_b mu_bone(E)`` over the spectrum's
    energies, weighted by the detected spectrum (photons times the detector weight, i.e. fluence
    times energy for an energy-integrating detector). Dimensionless.
    """
    missing = [t.name.lower() for t in Tissue if t not in materials]
    if missing:
        raise SpecError(f"materials lack a material for tissue(s): {', '.join(missing)}")
    energies = spectrum.energies_kev
    sqrt_w = np.sqrt(spectrum.photons_per_mas_mm2 * detector_weights(spectrum, detector))
    basis = np.stack([linear_attenuation_per_cm(m, energies) for m in BASIS_MATERIALS], axis=1)
    targets = np.stack([linear_attenuation_per_cm(materials[t], energies) for t in Tissue], axis=1)
    coef, *_ = np.linalg.lstsq(basis * sqrt_w[:, None], targets * sqrt_w[:, None], rcond=None)
    out = np.zeros((N_TISSUES, 2))
    out[[int(t) for t in Tissue]] = coef.T
    return out


class Counts(NamedTuple):
    """Expected detector signal (``mean``) and its quantum variance (``variance``), both in
    photon equivalents (variance in photon equivalents squared), float32 arrays of one shape."""

    mean: np.ndarray
    variance: np.ndarray


def photons_per_reading(
    spectrum: Spectrum,
    *,
    mas: float,
    pixel_area_mm2: float,
    source_to_detector_mm: float,
) -> np.ndarray:
    """Photons per energy bin reaching one detector pixel in air during one reading.

    ``mas`` is the tube charge of the reading (mAs: the protocol's mAs per rotation divided by the
    views), ``pixel_area_mm2`` the pixel's area at the detector (mm2), ``source_to_detector_mm``
    its distance from the focal spot (mm); fluence falls with the inverse square from 1 m.
    """
    mas = check_range("mas", mas, 0.0, 1e4)
    area = check_range("pixel_area_mm2", pixel_area_mm2, 0.0, 1e4)
    sdd = check_range("source_to_detector_mm", source_to_detector_mm, 10.0, 1e4)
    return spectrum.photons_per_mas_mm2 * mas * area * (1000.0 / sdd) ** 2


def _transmission_sums(
    line_water_cm: np.ndarray,
    line_bone_cm: np.ndarray,
    mu_water: np.ndarray,
    mu_bone: np.ndarray,
    weights: Sequence[np.ndarray],
    threads: int | None,
) -> list[np.ndarray]:
    """``sum_E w_k(E) exp(-(l_w mu_w(E) + l_b mu_b(E)))`` for each weight vector ``w_k``.

    Loops over energy bins on chunks of ``_CHUNK`` elements, so memory stays a few chunk arrays.
    """
    lw = np.ascontiguousarray(line_water_cm, dtype=np.float32)
    lb = np.ascontiguousarray(line_bone_cm, dtype=np.float32)
    if lw.shape != lb.shape:
        raise SpecError(f"line integral shapes differ: {lw.shape} and {lb.shape}")
    flat_w, flat_b = lw.reshape(-1), lb.reshape(-1)
    outs = [np.zeros(flat_w.size, dtype=np.float32) for _ in weights]
    mw, mb = mu_water.astype(np.float32), mu_bone.astype(np.float32)
    ws = [np.asarray(w, dtype=np.float32) for w in weights]

    def work(start: int) -> None:
        sl = slice(start, min(start + _CHUNK, flat_w.size))
        a, b = flat_w[sl], flat_b[sl]
        t = np.empty(a.size, dtype=np.float32)
        u = np.empty(a.size, dtype=np.float32)
        for e in range(mw.size):
            np.multiply(a, -mw[e], out=t)
            np.multiply(b, mb[e], out=u)
            np.subtract(t, u, out=t)
            np.exp(t, out=t)
            for out, w in zip(outs, ws, strict=True):
                np.multiply(t, w[e], out=u)
                out[sl] += u

    starts = range(0, flat_w.size, _CHUNK)
    n_threads = max(1, int(threads or 1))
    if n_threads == 1 or flat_w.size <= _CHUNK:
        for s in starts:
            work(s)
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(work, starts))
    return [o.reshape(lw.shape) for o in outs]


def expected_counts(
    line_water_cm: np.ndarray,
    line_bone_cm: np.ndarray,
    spectrum: Spectrum,
    *,
    mas: float,
    pixel_area_mm2: float,
    source_to_detector_mm: float,
    detector: str = "integrating",
    threads: int | None = None,
) -> Counts:
    """Expected signal and quantum variance behind basis line integrals (cm).

    ``I = sum_E q(E) w(E) exp(-(l_w mu_water(E) + l_b mu_bone(E)))`` with ``q`` the photons per
    bin of :func:`photons_per_reading` and ``w`` the detector weight; variance uses ``w**2``.
    ``line_water_cm`` and ``line_bone_cm`` are line integrals of the basis volume fractions (cm),
    any shape. Pass a coarse spectrum (``spectrum.rebinned(PROJECTION_BIN_KEV)``) for speed.
    """
    q = photons_per_reading(
        spectrum, mas=mas, pixel_area_mm2=pixel_area_mm2, source_to_detector_mm=source_to_detector_mm
    )
    w = detector_weights(spectrum, detector)
    mu_w, mu_b = (linear_attenuation_per_cm(m, spectrum.energies_kev) for m in BASIS_MATERIALS)
    mean, variance = _transmission_sums(line_water_cm, line_bone_cm, mu_w, mu_b, [q * w, q * w * w], threads)
    return Counts(mean, variance)


def expected_counts_array_api(
    xp, lines_water_cm: np.ndarray, lines_bone_cm: np.ndarray, spectrum: Spectrum, **geometry: float
) -> Counts:
    """:func:`expected_counts` (integrating detector) in namespace ``xp``, CuPy on a GPU: the same
    float32 sums over energy bins in the same order, one pass over the whole input; host arrays
    back."""
    q = photons_per_reading(spectrum, **geometry)
    w = detector_weights(spectrum)
    energies = spectrum.energies_kev
    mu_w, mu_b = (linear_attenuation_per_cm(m, energies) for m in BASIS_MATERIALS)
    a = xp.asarray(np.ascontiguousarray(lines_water_cm, dtype=np.float32))
    b = xp.asarray(np.ascontiguousarray(lines_bone_cm, dtype=np.float32))
    mean = xp.zeros(a.shape, dtype=xp.float32)
    variance = xp.zeros(a.shape, dtype=xp.float32)
    for e in range(mu_w.size):
        t = xp.exp(a * np.float32(-mu_w[e]) - b * np.float32(mu_b[e]))
        mean += t * np.float32(q[e] * w[e])
        variance += t * np.float32(q[e] * w[e] * w[e])
    return Counts(arrays.to_numpy(mean), arrays.to_numpy(variance))


def flat_field(
    spectrum: Spectrum,
    *,
    mas: float,
    pixel_area_mm2: float,
    source_to_detector_mm: float,
    detector: str = "integrating",
) -> float:
    """Expected air reading ``I0`` (photon equivalents) of one pixel: the noiseless flat field."""
    q = photons_per_reading(
        spectrum, mas=mas, pixel_area_mm2=pixel_area_mm2, source_to_detector_mm=source_to_detector_mm
    )
    return float((q * detector_weights(spectrum, detector)).sum())


# Below this many effective quanta the Gaussian approximation of the quantum noise is poor, so
# readings there get a (scaled) Poisson draw instead.
_POISSON_BELOW = 50.0


def add_noise(
    expected: Counts,
    rng: np.random.Generator,
    electronic_noise_photons: float,
    *,
    floor_photons: float = 0.5,
) -> np.ndarray:
    """Noisy readings (photon equivalents, float32): quantum plus electronic noise, floored.

    Quantum noise is compound Poisson, drawn as a scaled Poisson ``g * Poisson(mean / g)`` with
    ``g = variance / mean`` (matching mean and variance; ``g = 1`` is plain Poisson) where fewer
    than 50 effective quanta arrive, and as its Gaussian limit elsewhere. Electronic noise is
    Gaussian with standard deviation ``electronic_noise_photons``. Readings are clipped below at
    ``floor_photons`` so the log stays finite. Draws depend only on ``rng`` and the input shape.
    """
    sigma_e = check_range("electronic_noise_photons", electronic_noise_photons, 0.0, 1e6)
    floor = check_range("floor_photons", floor_photons, 1e-6, 1e3)
    mean = np.asarray(expected.mean, dtype=np.float32)
    var = np.asarray(expected.variance, dtype=np.float32)
    z = rng.standard_normal(mean.shape, dtype=np.float32)
    out = mean + np.sqrt(var + np.float32(sigma_e**2)) * z
    gain = np.divide(var, mean, out=np.ones_like(mean), where=mean > 0)
    low = mean < _POISSON_BELOW * gain
    if np.any(low):
        g = gain[low].astype(np.float64)
        quanta = rng.poisson(mean[low] / g)
        # The Gaussian draw ``z`` was not used for these readings: it supplies the electronic noise.
        out[low] = (g * quanta + sigma_e * z[low]).astype(np.float32)
    np.maximum(out, np.float32(floor), out=out)
    return out


def log_projections(readings: np.ndarray, i0: float | np.ndarray) -> np.ndarray:
    """Measured line integrals ``-log(I / I0)`` (dimensionless, float32)."""
    ratio = np.asarray(i0, dtype=np.float32) / np.asarray(readings, dtype=np.float32)
    return np.log(ratio).astype(np.float32)


def _water_transmission(spectrum: Spectrum, thickness_cm: np.ndarray, detector: str) -> np.ndarray:
    """Noise-free ``-log(I/I0)`` behind water slabs of ``thickness_cm`` (cm)."""
    q = spectrum.photons_per_mas_mm2 * detector_weights(spectrum, detector)
    mu_w = linear_attenuation_per_cm(WATER, spectrum.energies_kev)
    t = np.exp(-np.outer(thickness_cm, mu_w)) @ q
    return -np.log(t / q.sum())


def effective_energy_kev(
    spectrum: Spectrum, *, water_cm: float = 20.0, detector: str = "integrating"
) -> float:
    """Energy (keV) whose water attenuation equals the beam's mean attenuation over ``water_cm``.

    For 120 kVp and 20 cm of water this is ~64 keV (DOMAIN.md 4.2: 60-70 keV).
    """
    thickness = check_range("water_cm", water_cm, 0.1, 100.0)
    mu_eff = _water_transmission(spectrum, np.array([thickness]), detector)[0] / thickness
    grid = np.arange(10.0, 200.0, 0.1)
    mu_grid = linear_attenuation_per_cm(WATER, grid)  # decreasing in energy, no edges
    return float(np.interp(-mu_eff, -mu_grid, grid))


class WaterCorrection(NamedTuple):
    """Polynomial water beam-hardening correction: ``p -> mu_ref * l_w(p)``.

    ``coefficients`` of ``l_w(p) = sum_k c_k p**k`` (k = 1..degree, cm), valid for
    ``0 <= p <= p_max``; beyond ``p_max`` it continues linearly. ``mu_ref_per_cm`` (1/cm) is the
    beam's mean water attenuation over 20 cm, so a 20 cm water path is left unchanged.
    """

    coefficients: tuple[float, ...]
    p_max: float
    mu_ref_per_cm: float

    def __call__(self, projections: np.ndarray) -> np.ndarray:
        p = np.asarray(projections, dtype=np.float32)
        c = np.asarray(self.coefficients, dtype=np.float64)
        pc = np.minimum(p, np.float32(self.p_max))
        value = np.zeros_like(p)
        for coefficient in c[::-1]:  # Horner, no constant term
            value = (value + np.float32(coefficient)) * pc
        powers = np.arange(1, c.size + 1)
        slope = float((powers * c * self.p_max ** (powers - 1)).sum())
        value += np.float32(slope) * np.maximum(p - np.float32(self.p_max), 0)
        return (value * np.float32(self.mu_ref_per_cm)).astype(np.float32)


@functools.lru_cache(maxsize=32)
def fit_water_correction(
    spectrum: Spectrum,
    *,
    detector: str = "integrating",
    max_water_cm: float = 50.0,
    degree: int = 6,
) -> WaterCorrection:
    """Fit the water correction for ``spectrum`` on water paths of 0 to ``max_water_cm`` cm."""
    max_cm = check_range("max_water_cm", max_water_cm, 1.0, 200.0)
    thickness = np.linspace(0.0, max_cm, 501)
    p = _water_transmission(spectrum, thickness, detector)
    powers = np.arange(1, int(degree) + 1)
    x = p / p[-1]  # fit on [0, 1] for conditioning, then rescale to powers of p
    coef_x, *_ = np.linalg.lstsq(x[:, None] ** powers, thickness, rcond=None)
    coef = coef_x / p[-1] ** powers
    mu_ref = float(_water_transmission(spectrum, np.array([20.0]), detector)[0] / 20.0)
    return WaterCorrection(tuple(float(c) for c in coef), float(p[-1]), mu_ref)


def measured_projections(
    expected: Counts,
    i0: float | np.ndarray,
    rng: np.random.Generator | None,
    electronic_noise_photons: float,
    spectrum: Spectrum,
    water_corrected: bool = False,
) -> np.ndarray:
    """``-log(I / I0)`` (float32) of detector readings of ``expected`` counts: with quantum and
    electronic noise drawn from ``rng`` (None: the noiseless expectation, floored at 0.5 photon),
    then water beam-hardening corrected when ``water_corrected``."""
    if rng is None:
        readings = np.maximum(expected.mean, np.float32(0.5))
    else:
        readings = add_noise(expected, rng, electronic_noise_photons)
    projections = log_projections(readings, i0)
    return water_correction(projections, spectrum) if water_corrected else projections


def water_correction(
    projections: np.ndarray, spectrum: Spectrum, *, detector: str = "integrating"
) -> np.ndarray:
    """Water beam-hardening correction of measured ``-log(I/I0)`` (dimensionless, float32).

    Maps each measurement to the water path that would give it, times the beam's effective water
    attenuation (see :class:`WaterCorrection`): water then reconstructs flat (no cupping), while
    bone still hardens the beam (its streaks remain, as on a scanner).
    """
    return fit_water_correction(spectrum, detector=detector)(projections)
