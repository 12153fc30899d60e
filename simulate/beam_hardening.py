"""Two-pass bone beam-hardening correction (Joseph PM, Spital RD, J Comput Assist Tomogr
1978;2:100-108, "A method for correcting bone induced artifacts in computed tomography scanners").

After the water correction, bone still hardens the beam: paths through bone read short, giving
dark bands between dense structures. The correction segments bone in a first reconstruction,
forward projects its bone-equivalent path lengths, adds to each water-corrected projection the
error a polynomial in (projection, bone path) predicts for the protocol's spectrum, and the caller
reconstructs again. The polynomial is fitted on the same polychromatic model that makes the data
(water and cortical bone paths), for the central column's beam.
"""

from __future__ import annotations

import functools

import numpy as np

from nmosim.phantoms.grid import Grid
from nmosim.phantoms.materials import CORTICAL_BONE, WATER
from nmosim.simulate import backend, physics, reconstruct
from nmosim.simulate.scanner import ScannerProtocol

BONE_THRESHOLD_HU = 250.0  # segmentation threshold on the first pass
_DEGREE_P, _DEGREE_B = 3, 3


@functools.lru_cache(maxsize=8)
def _fit(spectrum: physics.Spectrum) -> tuple[np.ndarray, float, float]:
    """Coefficients ``c[i, j]`` of ``delta(p, l_b) = sum c_ij p**i l_b**(j + 1)``, and the
    reference water and bone attenuation (1/cm) at the beam's effective energy."""
    correction = physics.fit_water_correction(spectrum)
    mu_w_ref = correction.mu_ref_per_cm
    energy = physics.effective_energy_kev(spectrum)
    ratio = (
        physics.linear_attenuation_per_cm(CORTICAL_BONE, [energy])[0]
        / physics.linear_attenuation_per_cm(WATER, [energy])[0]
    )
    mu_b_ref = float(mu_w_ref * ratio)
    lw, lb = np.meshgrid(np.linspace(0.0, 50.0, 41), np.linspace(0.0, 8.0, 33), indexing="ij")
    lw, lb = lw.ravel(), lb.ravel()
    q = spectrum.photons_per_mas_mm2 * physics.detector_weights(spectrum)
    mu_w, mu_b = (
        physics.linear_attenuation_per_cm(m, spectrum.energies_kev) for m in physics.BASIS_MATERIALS
    )
    transmission = np.exp(-(np.outer(lw, mu_w) + np.outer(lb, mu_b))) @ q / q.sum()
    p_wc = correction(-np.log(transmission)).astype(np.float64)
    target = mu_w_ref * lw + mu_b_ref * lb
    design = np.stack([p_wc**i * lb ** (j + 1) for i in range(_DEGREE_P + 1) for j in range(_DEGREE_B)], 1)
    coef, *_ = np.linalg.lstsq(design, target - p_wc, rcond=None)
    return coef.reshape(_DEGREE_P + 1, _DEGREE_B), mu_w_ref, mu_b_ref


def projection_error(projections: np.ndarray, bone_cm: np.ndarray, spectrum: physics.Spectrum) -> np.ndarray:
    """Predicted shortfall of water-corrected ``projections`` crossing ``bone_cm`` cm of cortical
    bone (float32, same shape): add it to correct them."""
    coef, _, _ = _fit(spectrum)
    p = np.asarray(projections, dtype=np.float64)
    b = np.asarray(bone_cm, dtype=np.float64)
    out = np.zeros_like(p)
    for i in range(coef.shape[0]):
        for j in range(coef.shape[1]):
            out += coef[i, j] * p**i * b ** (j + 1)
    return out.astype(np.float32)


def bone_fraction(mu_per_mm: np.ndarray, spectrum: physics.Spectrum) -> np.ndarray:
    """Cortical-bone equivalent fraction of each pixel of a first-pass reconstruction (1/mm):
    ``(mu - mu_water) / (mu_bone - mu_water)`` at the reference energy, where above
    ``BONE_THRESHOLD_HU``, else 0; clipped to [0, 1]."""
    _, mu_w, mu_b = _fit(spectrum)
    mu_w, mu_b = mu_w / 10.0, mu_b / 10.0  # 1/mm
    mu = np.asarray(mu_per_mm, dtype=np.float32)
    fraction = np.clip((mu - mu_w) / (mu_b - mu_w), 0.0, 1.0)
    fraction[mu < mu_w * (1.0 + BONE_THRESHOLD_HU / 1000.0)] = 0.0
    return fraction.astype(np.float32)


def correct_sinogram(
    sinogram: np.ndarray,
    grid: Grid,
    protocol: ScannerProtocol,
    *,
    threads: int,
    device: str,
) -> np.ndarray:
    """Bone-corrected water-corrected sinograms ``[nz, n_views, n_bins]`` (dimensionless) of the
    slices of ``grid``: first-pass reconstruction, bone segmentation, forward projection of the
    bone fraction (path in cm), the fitted error added. Reconstruct the result again."""
    from nmosim.simulate.ct import projection_spectrum  # ct imports this module

    spectrum = projection_spectrum(protocol)
    first = reconstruct.reconstruct(sinogram, grid, protocol, threads=threads, device=device)
    fraction = bone_fraction(first, spectrum)
    if not fraction.any():
        return sinogram
    bone_cm = backend.forward_project(fraction, grid, protocol, threads=threads, device=device) / np.float32(
        10.0
    )
    return (sinogram + projection_error(sinogram, bone_cm, spectrum)).astype(np.float32)
