"""Bowtie (beam-shaping) filter: aluminium thickness per detector column, as water and bone
basis path lengths, and the water correction of each column's hardened beam.

Model: the body bowtie is a parametric shape, not a vendor's drawing. Its aluminium thickness
makes up ``BODY_COMPENSATION`` of the water missing from a ray's chord through a 32 cm body
cylinder (the CTDI body phantom), zero on the central ray (the protocol's added filtration is
the centre's), capped at ``BODY_MAX_AL_MM`` beyond the cylinder. This follows the design rule of
body bowties (thin at the centre, thick where the patient is thin; see Boone JM, Med Phys
2010;37:40-48, "Method for evaluating bow tie filter angle-dependent attenuation in CT"); the
compensation fraction and the cap are this model's choices, not measured values. Aluminium is written in the
two-material basis (water, cortical bone) of the projector, fitted over the protocol's spectrum.
"""

from __future__ import annotations

import functools

import numpy as np

from nmosim.phantoms.materials import Material
from nmosim.simulate import physics
from nmosim.simulate.scanner import ScannerProtocol

ALUMINIUM = Material("aluminium", 2.699, {"Al": 1.0})
BODY_RADIUS_MM = 160.0  # the 32 cm CTDI body phantom
BODY_COMPENSATION = 0.3  # fraction of the missing water path made up by aluminium (mm Al per mm water
# times mu_water / mu_Al at 60 keV: 0.206 / 0.750, xraylib cross sections)
MU_WATER_OVER_AL = 0.206 / 0.750
BODY_MAX_AL_MM = 25.0


def ray_distance_mm(protocol: ScannerProtocol) -> np.ndarray:
    """Distance (mm) of each column's central ray from the iso-centre, ``[n_bins]``."""
    gamma = np.arctan(protocol.bin_offsets_mm() / protocol.source_to_detector_mm)
    return protocol.source_to_iso_mm * np.sin(gamma)


def thickness_mm(protocol: ScannerProtocol, distance_mm: np.ndarray | None = None) -> np.ndarray:
    """Aluminium thickness (mm) of the protocol's bowtie along rays ``distance_mm`` from the
    iso-centre (default: each column's central ray); zero for ``bowtie = 'none'``."""
    x = np.abs(ray_distance_mm(protocol) if distance_mm is None else np.asarray(distance_mm, dtype=float))
    if protocol.bowtie == "none":
        return np.zeros_like(x)
    chord = 2.0 * np.sqrt(np.maximum(BODY_RADIUS_MM**2 - x**2, 0.0))
    missing = 2.0 * BODY_RADIUS_MM - chord
    return np.minimum(BODY_COMPENSATION * MU_WATER_OVER_AL * missing, BODY_MAX_AL_MM)


@functools.lru_cache(maxsize=8)
def _aluminium_basis(spectrum: physics.Spectrum) -> tuple[float, float]:
    """Water and bone path (cm per cm of aluminium), least squares over the detected spectrum."""
    energies = spectrum.energies_kev
    weight = np.sqrt(spectrum.photons_per_mas_mm2 * physics.detector_weights(spectrum))
    basis = np.stack([physics.linear_attenuation_per_cm(m, energies) for m in physics.BASIS_MATERIALS], 1)
    target = physics.linear_attenuation_per_cm(ALUMINIUM, energies)
    coef, *_ = np.linalg.lstsq(basis * weight[:, None], target * weight, rcond=None)
    return float(coef[0]), float(coef[1])


def basis_lines_cm(protocol: ScannerProtocol, spectrum: physics.Spectrum) -> tuple[np.ndarray, np.ndarray]:
    """The bowtie of each column as water and bone basis line integrals (cm), ``[n_bins]`` each."""
    t_cm = thickness_mm(protocol) / 10.0
    a_w, a_b = _aluminium_basis(spectrum)
    return (t_cm * a_w).astype(np.float32), (t_cm * a_b).astype(np.float32)


def column_spectra_weights(protocol: ScannerProtocol, spectrum: physics.Spectrum) -> np.ndarray:
    """Transmission of the bowtie per column and energy bin, ``[n_bins, n_energies]``."""
    lw, lb = basis_lines_cm(protocol, spectrum)
    mu_w, mu_b = (
        physics.linear_attenuation_per_cm(m, spectrum.energies_kev) for m in physics.BASIS_MATERIALS
    )
    return np.exp(-(np.outer(lw, mu_w) + np.outer(lb, mu_b)))


class ColumnWaterCorrection:
    """Water beam-hardening correction per detector column (each column's beam is hardened by its
    bowtie thickness): ``p -> mu_ref * l_w(p)`` with one polynomial per column and the central
    column's ``mu_ref``, so water reads the same in every column. Scanners calibrate so, per
    channel, on water phantoms."""

    def __init__(self, protocol: ScannerProtocol, spectrum: physics.Spectrum) -> None:
        transmission = column_spectra_weights(protocol, spectrum)
        thickness = np.round(thickness_mm(protocol), 3)
        unique, index = np.unique(thickness, return_inverse=True)
        fits = []
        for u in unique:
            j = int(np.flatnonzero(thickness == u)[0])
            filtered = physics.Spectrum(spectrum.energies_kev, spectrum.photons_per_mas_mm2 * transmission[j])
            fits.append(physics.fit_water_correction(filtered))
        centre = physics.fit_water_correction(spectrum)
        self.coefficients = np.array([f.coefficients for f in fits], dtype=np.float64)[index]  # [n_bins, deg]
        self.p_max = np.array([f.p_max for f in fits], dtype=np.float64)[index]
        self.mu_ref_per_cm = centre.mu_ref_per_cm

    def __call__(self, projections: np.ndarray) -> np.ndarray:
        p = np.asarray(projections, dtype=np.float32)
        c = self.coefficients.astype(np.float32)
        p_max = self.p_max.astype(np.float32)
        pc = np.minimum(p, p_max)
        value = np.zeros_like(p)
        for k in range(c.shape[1] - 1, -1, -1):  # Horner, no constant term
            value = (value + c[:, k]) * pc
        powers = np.arange(1, c.shape[1] + 1)
        slope = (powers * self.coefficients * self.p_max[:, None] ** (powers - 1)).sum(axis=1)
        value += slope.astype(np.float32) * np.maximum(p - p_max, 0)
        return (value * np.float32(self.mu_ref_per_cm)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def water_correction(protocol: ScannerProtocol, spectrum: physics.Spectrum) -> ColumnWaterCorrection:
    """The cached :class:`ColumnWaterCorrection` of ``protocol`` (its bowtie) and ``spectrum``."""
    return ColumnWaterCorrection(protocol, spectrum)
