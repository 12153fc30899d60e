"""CTDIvol of a protocol, estimated from the tube's fluence in a 32 cm PMMA CTDI phantom.

``ctdi_vol_mgy(protocol)``: the weighted CTDI of the body phantom, ``CTDIw = 1/3 D_centre +
2/3 D_periphery`` (IEC 60601-2-44), divided by the helical pitch. Each point dose sums, over a
full rotation of the protocol's tube charge, the primary photons that reach it (spekpy's
fluence per mAs at 1 m, inverse square from the focal spot, the bowtie's aluminium along that
ray, the PMMA in front of the point) times their energy and PMMA's mass energy-absorption
coefficient (xraylib, Hubbell and Seltzer tables; BSD licence), times a buildup factor for the
scattered photons, ``B = 1 + mu x`` (the linear form of a low-Z buildup factor; an
approximation, see ``BUILDUP``). The beam profile along z is taken as ideal, its width that of
the detector rows, so CTDI100 is the dose on the plane of the beam (no over-beaming, no scatter
tails beyond the beam).

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
BUILDUP = 1.0  # B = 1 + BUILDUP * mu * x
_KEV_TO_J = 1.602176634e-16


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
    fluence = fluence * np.exp(-mu_al[None, :] * al[:, None] - mux) * (1.0 + BUILDUP * mux)
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
