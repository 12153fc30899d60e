"""Object scatter by convolution on the detector, and its model-based correction.

The scatter reaching a detector row is estimated from the primary signal as scanners' kernel
scatter corrections do (Ohnesorge B, Flohr T, Klingenbeck-Regn K, Eur Radiol 1999;9:563-569,
"Efficient object scatter correction algorithm for third and fourth generation CT scanners";
the convolution model of XCIST, BSD-3-Clause): each ray scatters in proportion to its primary
signal times its attenuation, ``P * (-ln(P / I0))`` (the first-order scatter of a uniform object),
and that source spreads across the detector by a broad Gaussian kernel (the anti-scatter grid
and the geometry leave a smooth scatter profile). The amplitude is set per protocol so a 35 cm
water cylinder has a scatter-to-primary ratio of ``SPR_35CM_WATER`` on its central ray, the
order of XCIST's kernel model for such a cylinder behind a 1D anti-scatter grid; the
kernel width ``KERNEL_SIGMA_MM`` is this model's choice (broad enough that scatter cups a
uniform cylinder, as measured scatter does).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import scipy.ndimage

from nmosim.simulate import bowtie, physics
from nmosim.simulate.scanner import ScannerProtocol

SPR_35CM_WATER = 0.15
KERNEL_SIGMA_MM = 150.0  # Gaussian width of the scatter kernel at the detector
# Share of its scatter estimate the scanner subtracts. A spatially invariant kernel calibrated on
# water does not know an object's bone and its shape, so kernel corrections leave part of the
# scatter (Maier J et al., J Nondestruct Eval 2018;37:57, "Deep scatter estimation": kernel-based
# estimates fall well short of Monte Carlo scatter, which a learned estimate matches to < 3 %).
# Here the scatter is made with the scanner's own kernel; the residual (1 - CORRECTION_FRACTION)
# is this model's choice. Its error is broad (the kernel is) and largest where every lateral ray
# crosses both hips. In a noise-free quick scan of seed 1, phase c, through the femoral heads'
# centre, the bladder's urine reads 10.6 HU without scatter and -22.8 HU with 65 % of the estimate
# subtracted, -0.4 HU with 90 %, 5.9 HU with 95 % and 12.7 HU with all of it (the estimate, made
# from the measured signal, then over-corrects a little). Clinical scans read urine as fluid,
# 0-20 HU (DOMAIN.md 4.1); a larger residual darkens the whole centre of the pelvis, not only the
# band between the femoral heads (DOMAIN.md 4.4: -20 to -80 HU in clinical images, with photon
# starvation), which noise-free reads -8.0 HU here (benchmarks/bench_acquisition.py; -4.1 HU
# from the bone's beam hardening alone).
CORRECTION_FRACTION = 0.95


def _spread(source: np.ndarray, protocol: ScannerProtocol) -> np.ndarray:
    """``source`` ``[..., n_bins]`` convolved along the bins with the unit-sum Gaussian kernel.

    The kernel is broad, so it runs on groups of ``k`` bins (about 8 groups per kernel sigma):
    the source is summed per group, filtered, and read back by linear interpolation.
    """
    source = np.asarray(source, dtype=np.float32)
    sigma_bins = KERNEL_SIGMA_MM / protocol.bin_width_mm
    k = max(1, int(sigma_bins // 8))
    n = source.shape[-1]
    groups = -(-n // k)
    padded = np.zeros((*source.shape[:-1], groups * k), dtype=np.float32)
    padded[..., :n] = source
    coarse = padded.reshape(*source.shape[:-1], groups, k).sum(axis=-1)
    spread = scipy.ndimage.gaussian_filter1d(coarse, sigma_bins / k, axis=-1, mode="constant", truncate=3.0)
    centres = (np.arange(groups) + 0.5) * k - 0.5  # group centres in bin units
    weights = np.interp(np.arange(n), centres, np.arange(groups))
    low = np.clip(np.floor(weights).astype(np.intp), 0, groups - 1)
    high = np.minimum(low + 1, groups - 1)
    frac = (weights - low).astype(np.float32)
    return (spread[..., low] * (1 - frac) + spread[..., high] * frac) / np.float32(k)


def _unit_scatter(primary: np.ndarray, i0: np.ndarray, protocol: ScannerProtocol) -> np.ndarray:
    """Scatter of amplitude 1: the kernel applied to ``P * (-ln(P / I0))``."""
    p = np.maximum(np.asarray(primary, dtype=np.float32), np.float32(0.5))
    attenuation = np.maximum(np.log(np.asarray(i0, dtype=np.float32) / p), 0.0)
    return _spread(p * attenuation, protocol)


def water_cylinder_primary(
    protocol: ScannerProtocol, spectrum: physics.Spectrum, diameter_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Primary signal ``[n_bins]`` of one view through a centred water cylinder (photon
    equivalents per mAs-scaled unit), and the air reading ``[n_bins]``, both with the bowtie."""
    x = bowtie.ray_distance_mm(protocol)
    chord_cm = 2.0 * np.sqrt(np.maximum((diameter_mm / 2.0) ** 2 - x**2, 0.0)) / 10.0
    bw, bb = bowtie.basis_lines_cm(protocol, spectrum)
    geometry = {"mas": 1.0, "pixel_area_mm2": 1.0, "source_to_detector_mm": protocol.source_to_detector_mm}
    primary = physics.expected_counts(chord_cm + bw, bb, spectrum, **geometry).mean
    i0 = physics.expected_counts(bw, bb, spectrum, **geometry).mean
    return primary, i0


@functools.lru_cache(maxsize=16)
def _amplitude(protocol: ScannerProtocol, spectrum: physics.Spectrum) -> float:
    primary, i0 = water_cylinder_primary(protocol, spectrum, 350.0)
    unit = _unit_scatter(primary, i0, protocol)
    centre = protocol.n_bins // 2
    return float(SPR_35CM_WATER * primary[centre] / unit[centre])


def amplitude(protocol: ScannerProtocol, spectrum: physics.Spectrum) -> float:
    """Scatter amplitude (dimensionless) giving ``SPR_35CM_WATER`` on a 35 cm water cylinder's
    central ray; depends on the geometry, bowtie and spectrum only."""
    key = dataclasses.replace(protocol, mas=100.0, electronic_noise_photons=0.0)
    return _amplitude(key, spectrum)


def scatter_signal(
    primary: np.ndarray, i0: np.ndarray, protocol: ScannerProtocol, spectrum: physics.Spectrum
) -> np.ndarray:
    """Expected scatter (photon equivalents, float32) on each reading of ``primary``
    (``[..., n_bins]`` expected primary signal; ``i0`` the air reading per bin)."""
    return (_unit_scatter(primary, i0, protocol) * np.float32(amplitude(protocol, spectrum))).astype(
        np.float32
    )


def correct(
    readings: np.ndarray, i0: np.ndarray, protocol: ScannerProtocol, spectrum: physics.Spectrum
) -> np.ndarray:
    """Readings less ``CORRECTION_FRACTION`` of the scanner's scatter estimate, floored at 0.5
    photon.

    The estimate is the same kernel model applied to the measured signal, refined once with
    the first estimate removed (the measured signal holds the scatter too).
    """
    readings = np.asarray(readings, dtype=np.float32)
    estimate = scatter_signal(readings, i0, protocol, spectrum)
    estimate = scatter_signal(np.maximum(readings - estimate, 0.5), i0, protocol, spectrum)
    return np.maximum(readings - np.float32(CORRECTION_FRACTION) * estimate, np.float32(0.5))
