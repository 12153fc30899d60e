"""CTDIvol of a protocol, estimated from the tube's fluence in a 32 cm PMMA CTDI phantom.

``ctdi_vol_mgy(protocol)``: the weighted CTDI of the body phantom, ``CTDIw = 1/3 D_centre +
2/3 D_periphery`` (IEC 60601-2-44), divided by the helical pitch. Each point dose sums, over a
full rotation of the protocol's tube charge, the primary photons that reach it (spekpy's
fluence per mAs at 1 m, inverse square from the focal spot, the bowtie's aluminium along that
ray, the PMMA in front of the point) times their energy and PMMA's mass energy-absorption
coefficient (xraylib, Hubbell and Seltzer tables; BSD licence), times a buildup factor for the
scattered photons: the geometric-progression (GP) fit of the water buildup factors of
ANSI/ANS-6.4.3-1991 at the ray's energy and depth in mean free paths (:func:`buildup_factor`).
The beam profile along z is taken as ideal, its width that of the detector rows, so CTDI100 is
the dose on the plane of the beam (no over-beaming).

The GP factors are those of a point isotropic source in an infinite medium: every scattered
photon that could reach the point is counted. In the 32 cm phantom, 15 cm long and irradiated in
a slab a few cm wide, less medium scatters, so the estimate is an upper bound that errs most at
the centre: it gives a centre dose about equal to the peripheral one, where measured CTDI
phantoms read clearly less at the centre (the linear ``1 + mu x`` used before gave under a
third). The weighted CTDI is two thirds periphery, where the bound is closer.

Dose and noise. The same fluence makes the image noise: :mod:`nmosim.simulate.ct` counts the
photons per reading from spekpy's fluence per mAs at 1 m, the tube charge of one view, the
inverse square to the detector, the bowtie of the column, the cell's active width
(``cell_aperture`` times the bin pitch) times the slice height magnified onto the detector, and
the detector efficiency (0.85: scintillator absorption about 0.95 times the anti-scatter grid's
primary transmission about 0.9). Nothing in this chain is fitted to a particular scanner: the
check is against the generic clinical figures of DOMAIN.md 4.3 and 4.4 (abdomen-pelvis CTDIvol
10-20 mGy at 150-250 reference mAs; soft-kernel noise 15-30 HU at 1 mm slices at about 15 mGy);
the numbers are in the README ("Dose and noise").
"""

from __future__ import annotations

import functools

import numpy as np
import xraylib

from nmosim.phantoms.materials import Material
from nmosim.simulate import bowtie, physics
from nmosim.simulate.scanner import ScannerProtocol

# PMMA (C5H8O2), 1.19 g/cm3: the CTDI phantom material.
PMMA = Material("pmma", 1.19, {"H": 0.080538, "C": 0.599848, "O": 0.319614})
PHANTOM_RADIUS_MM = 160.0  # body phantom
PERIPHERY_DEPTH_MM = 10.0  # peripheral chamber holes 1 cm below the surface
N_ANGLES = 360
_KEV_TO_J = 1.602176634e-16

# Geometric-progression fit of the exposure buildup factors of water for a point isotropic source
# in an infinite medium: ANSI/ANS-6.4.3-1991, "Gamma-ray attenuation coefficients and buildup
# factors for engineering materials" (American Nuclear Society; GP form of Harima et al., Nucl.
# Sci. Eng. 94 (1986) 24-35), water, 15-150 keV. Columns: energy (keV), b, c, a, X_k, d. Water
# stands for PMMA (both low-Z: effective Z 7.4 and 6.5) with the depth in PMMA's own mean free
# paths. Exposure stands for energy absorption: water's mass energy-absorption coefficient over
# air's is 1.01-1.05 from 20 to 150 keV, so the two buildup factors of water differ by a few per
# cent. Published data of a standard, quoted for the numbers.
_GP_WATER = np.array([
    [15.0, 1.182, 0.463, 0.175, 14.23, -0.0908],
    [20.0, 1.427, 0.549, 0.143, 14.86, -0.0707],
    [30.0, 2.335, 0.736, 0.087, 13.28, -0.0419],
    [40.0, 3.477, 1.117, -0.019, 11.67, 0.0026],
    [50.0, 4.461, 1.457, -0.084, 13.62, 0.0341],
    [60.0, 4.983, 1.730, -0.126, 13.64, 0.0561],
    [80.0, 5.059, 2.059, -0.168, 13.67, 0.0770],
    [100.0, 4.663, 2.221, -0.186, 13.33, 0.0826],
    [150.0, 3.897, 2.242, -0.185, 14.19, 0.0777],
])  # fmt: skip


def buildup_factor(energies_kev: np.ndarray, mfp: np.ndarray) -> np.ndarray:
    """GP buildup factor of water (dimensionless, >= 1) at ``energies_kev`` (keV, last axis) and
    depths ``mfp`` (mean free paths, broadcast against the energies).

    ``B = 1 + (b - 1)(K**x - 1)/(K - 1)`` (``1 + (b - 1) x`` where ``K = 1``) with
    ``K = c x**a + d (tanh(x/X_k - 2) - tanh(-2)) / (1 - tanh(-2))``; the parameters are
    interpolated linearly in energy in :data:`_GP_WATER` (held at its ends outside 15-150 keV).
    """
    e = np.asarray(energies_kev, dtype=float)
    x = np.maximum(np.asarray(mfp, dtype=float), 0.0)
    b, c, a, x_k, d = (np.interp(e, _GP_WATER[:, 0], _GP_WATER[:, i]) for i in range(1, 6))
    k = c * np.power(np.maximum(x, 1e-12), a) + d * (np.tanh(x / x_k - 2.0) - np.tanh(-2.0)) / (
        1.0 - np.tanh(-2.0)
    )
    near_one = np.abs(k - 1.0) < 1e-6
    geometric = (np.power(k, x) - 1.0) / np.where(near_one, 1.0, k - 1.0)
    return 1.0 + (b - 1.0) * np.where(near_one, x, geometric)


def mass_energy_absorption_cm2_g(material: Material, energies_kev: np.ndarray) -> np.ndarray:
    """Mass energy-absorption coefficient (cm2/g) of ``material`` at ``energies_kev``."""
    energies = np.asarray(energies_kev, dtype=float)
    total = np.zeros_like(energies)
    for symbol, fraction in material.mass_fractions.items():
        z = xraylib.SymbolToAtomicNumber(symbol)
        total += fraction * np.array([xraylib.CS_Energy(z, float(e)) for e in energies])
    return total


def point_dose_mgy(protocol: ScannerProtocol, point_mm: tuple[float, float]) -> float:
    """Dose (mGy) at ``point_mm`` (x, y) inside the 32 cm PMMA phantom from one rotation."""
    return _point_dose(_key(protocol), tuple(float(v) for v in point_mm))


def _key(protocol: ScannerProtocol) -> ScannerProtocol:
    """``protocol`` at 100 mAs per rotation and pitch 1: the dose scales with both exactly."""
    import dataclasses

    return dataclasses.replace(protocol, mas=100.0, pitch=1.0, n_views=360, electronic_noise_photons=0.0)


@functools.lru_cache(maxsize=32)
def _point_dose(protocol: ScannerProtocol, point_mm: tuple[float, float]) -> float:
    spectrum = physics.tube_spectrum(protocol.kvp, protocol.filtration_mm_al)
    energies, photons = spectrum.energies_kev, spectrum.photons_per_mas_mm2
    mu_pmma = physics.linear_attenuation_per_cm(PMMA, energies) / 10.0  # 1/mm
    mu_al = physics.linear_attenuation_per_cm(bowtie.ALUMINIUM, energies) / 10.0
    absorbed = mass_energy_absorption_cm2_g(PMMA, energies) * energies * _KEV_TO_J * 100.0 * 1000.0  # Gy mm2
    p = np.asarray(point_mm, dtype=float)
    beta = 2.0 * np.pi * np.arange(N_ANGLES) / N_ANGLES
    source = protocol.source_to_iso_mm * np.stack([np.sin(beta), np.cos(beta)], axis=1)
    ray = p - source
    distance = np.linalg.norm(ray, axis=1)
    unit = ray / distance[:, None]
    off_axis = np.abs(source[:, 0] * unit[:, 1] - source[:, 1] * unit[:, 0])  # ray's distance from iso
    along = (source * unit).sum(axis=1)
    entry = -along - np.sqrt(np.maximum(along**2 - (protocol.source_to_iso_mm**2 - PHANTOM_RADIUS_MM**2), 0))
    depth = np.maximum(distance - entry, 0.0)  # PMMA in front of the point, mm
    al = bowtie.thickness_mm(protocol, off_axis)
    mas_per_angle = protocol.mas / N_ANGLES
    fluence = photons[None, :] * mas_per_angle * (1000.0 / distance[:, None]) ** 2  # per mm2
    mux = mu_pmma[None, :] * depth[:, None]
    fluence = fluence * np.exp(-mu_al[None, :] * al[:, None] - mux) * buildup_factor(energies[None, :], mux)
    return float((fluence * absorbed[None, :]).sum() * 1000.0)  # mGy


def ctdi_w_mgy(protocol: ScannerProtocol) -> float:
    """Weighted CTDI (mGy) of the 32 cm body phantom for one rotation of the protocol's mAs."""
    centre = _point_dose(_key(protocol), (0.0, 0.0))
    periphery = _point_dose(_key(protocol), (0.0, PHANTOM_RADIUS_MM - PERIPHERY_DEPTH_MM))
    return (centre / 3.0 + 2.0 * periphery / 3.0) * protocol.mas / 100.0


def ctdi_vol_mgy(protocol: ScannerProtocol) -> float:
    """CTDIvol (mGy): :func:`ctdi_w_mgy` over the pitch (helical), over 1 otherwise (contiguous
    axial rotations, as the fan2d and axial geometries scan)."""
    pitch = protocol.pitch if protocol.geometry == "helical" else 1.0
    return ctdi_w_mgy(protocol) / pitch
