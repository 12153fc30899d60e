"""Image-quality measurements on CT slices: ROI statistics, MTF from a circular edge, 2D NPS.

Pure measurement on arrays (HU in, numbers out); it knows nothing of phantoms or scanners.
Methods after AAPM Report 233 (Samei et al. 2019, "Performance evaluation of computed tomography
systems", task-based MTF from the circular edge of an insert, NPS from noise-only images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RoiStats:
    """Mean and standard deviation (HU) of the ``n`` pixels of a region."""

    mean: float
    sd: float
    n: int


def disc_mask(shape: tuple[int, int], pixel_mm: float, center_xy_mm: tuple[float, float], radius_mm: float,
              origin_xy_mm: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:  # fmt: skip
    """Pixels ``[y, x]`` whose centres lie within ``radius_mm`` of ``center_xy_mm``; pixel ``(0, 0)``
    is centred at ``origin_xy_mm`` (mm)."""
    y = origin_xy_mm[1] + pixel_mm * np.arange(shape[0]) - center_xy_mm[1]
    x = origin_xy_mm[0] + pixel_mm * np.arange(shape[1]) - center_xy_mm[0]
    return (x[None, :] ** 2 + y[:, None] ** 2) <= radius_mm**2


def roi_stats(image: np.ndarray, mask: np.ndarray) -> RoiStats:
    """Mean and SD (ddof 1) of ``image`` over ``mask`` (same shape, or a 2D mask for every slice)."""
    image = np.asarray(image, dtype=np.float64)
    mask = np.broadcast_to(mask, image.shape)
    values = image[mask]
    if values.size < 2:
        raise ValueError(f"a region of {values.size} pixel(s) has no standard deviation")
    return RoiStats(float(values.mean()), float(values.std(ddof=1)), int(values.size))


# --- MTF from a circular edge ------------------------------------------------------------------
def disc_edge_profile(
    image: np.ndarray,
    pixel_mm: float,
    center_xy_mm: tuple[float, float],
    radius_mm: float,
    *,
    half_width_mm: float = 8.0,
    bin_mm: float | None = None,
    origin_xy_mm: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Oversampled edge spread function across the rim of a disc: mean value of the pixels (of one
    slice ``[y, x]``, or of every slice of ``[z, y, x]``) in radial bins of ``bin_mm`` (default a
    tenth of a pixel) within ``half_width_mm`` of ``radius_mm``. Returns ``(r - radius_mm, esf)``.

    Pixels at all angles sample the edge at all sub-pixel phases, as a slanted edge does.
    """
    bin_mm = pixel_mm / 10.0 if bin_mm is None else bin_mm
    image = np.asarray(image, dtype=np.float64)
    image = image[None] if image.ndim == 2 else image
    ny, nx = image.shape[1:]
    y = origin_xy_mm[1] + pixel_mm * np.arange(ny) - center_xy_mm[1]
    x = origin_xy_mm[0] + pixel_mm * np.arange(nx) - center_xy_mm[0]
    offset = np.hypot(x[None, :], y[:, None]) - radius_mm
    near = np.abs(offset) < half_width_mm
    n_bins = int(round(2 * half_width_mm / bin_mm))
    which = np.clip(((offset[near] + half_width_mm) / bin_mm).astype(np.int64), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins) * image.shape[0]
    sums = sum(np.bincount(which, weights=s[near], minlength=n_bins) for s in image)
    centres = -half_width_mm + (np.arange(n_bins) + 0.5) * bin_mm
    filled = counts > 0
    esf = np.interp(centres, centres[filled], sums[filled] / counts[filled])
    return centres, esf


def mtf_from_esf(esf: np.ndarray, bin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """MTF (``freq`` lp/mm, ``mtf``) of an edge spread function sampled every ``bin_mm`` mm.

    The LSF is the ESF's central difference, Hann-windowed to the ESF's length; its Fourier
    magnitude, normalised at zero frequency and corrected for the difference (a sinc), is the
    MTF. The edge's sign does not matter.
    """
    esf = np.asarray(esf, dtype=np.float64)
    lsf = np.gradient(esf)
    lsf = lsf * np.hanning(lsf.size)
    n_fft = max(4096, int(2 ** np.ceil(np.log2(4 * lsf.size))))
    spectrum = np.abs(np.fft.rfft(lsf, n=n_fft))
    freq = np.fft.rfftfreq(n_fft, d=bin_mm)
    # central difference over two bins: sin(2 pi f d) / (2 pi f d) = sinc(2 f d)
    mtf = spectrum / spectrum[0] / np.maximum(np.sinc(2.0 * freq * bin_mm), 0.1)
    return freq, mtf


def mtf_at(freq: np.ndarray, mtf: np.ndarray, level: float) -> float:
    """First frequency (lp/mm) where ``mtf`` falls to ``level`` after its peak (interpolated)."""
    start = int(np.argmax(mtf))
    below = np.flatnonzero(mtf[start:] < level)
    if below.size == 0:
        return float("nan")
    i = start + int(below[0])
    return float(freq[i - 1] + (mtf[i - 1] - level) / (mtf[i - 1] - mtf[i]) * (freq[i] - freq[i - 1]))


# --- noise power spectrum ----------------------------------------------------------------------
def nps_2d(rois: np.ndarray, pixel_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2D noise power spectrum (HU**2 mm**2) of noise-only ROIs ``[n, ny, nx]`` (HU).

    Each ROI's mean is removed; ``NPS = dx dy / (nx ny) <|DFT|**2>`` over the ROIs, so its sum
    times the frequency steps equals the noise variance. Returns ``(fx, fy, nps)``, frequencies
    (lp/mm) shifted to the centre.
    """
    rois = np.asarray(rois, dtype=np.float64)
    rois = rois[None] if rois.ndim == 2 else rois
    _, ny, nx = rois.shape
    centred = rois - rois.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(centred)) ** 2
    nps = np.fft.fftshift(power.mean(axis=0)) * pixel_mm * pixel_mm / (nx * ny)
    fx = np.fft.fftshift(np.fft.fftfreq(nx, d=pixel_mm))
    fy = np.fft.fftshift(np.fft.fftfreq(ny, d=pixel_mm))
    return fx, fy, nps


def radial_nps(fx: np.ndarray, fy: np.ndarray, nps: np.ndarray, n_bins: int | None = None):
    """Radial average of a 2D NPS: ``(f, nps_r)``, bins of the frequency step out to the smaller
    Nyquist frequency."""
    step = min(fx[1] - fx[0], fy[1] - fy[0])
    f_max = min(np.abs(fx).max(), np.abs(fy).max())
    n_bins = int(f_max / step) if n_bins is None else n_bins
    radius = np.hypot(fx[None, :], fy[:, None])
    which = np.floor(radius / step + 0.5).astype(np.int64)
    keep = which < n_bins
    counts = np.bincount(which[keep], minlength=n_bins)
    sums = np.bincount(which[keep], weights=nps[keep], minlength=n_bins)
    f = np.arange(n_bins) * step
    return f, sums / np.maximum(counts, 1)


def nps_peak_lp_mm(f: np.ndarray, nps_r: np.ndarray) -> float:
    """Frequency (lp/mm) of the radial NPS's maximum, skipping the zero-frequency bin."""
    return float(f[1 + int(np.argmax(nps_r[1:]))])


def noise_only(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Noise of one realization from two scans that differ only in their noise: ``(a - b) / sqrt 2``."""
    return (np.asarray(first, np.float64) - np.asarray(second, np.float64)) / np.sqrt(2.0)
