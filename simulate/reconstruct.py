"""Reconstruction of fan-beam sinograms: FBP with named kernels, and ASTRA's SIRT and CGLS.

Works at the line-integral level (values per mm in, values per mm out); no physics, no HU.

FBP rebins the fan data to parallel beams (each parallel ray is the average of the fan ray
and its conjugate, linearly interpolated in view and bin), filters with the ramp times the
kernel's window, and backprojects over 180 degrees, pixel-driven with linear interpolation.
A kernel is its target system MTF (:data:`KERNEL_MTF`); the window is that MTF over the MTF the
rest of the chain has (:func:`chain_mtf`), tapered off at the limit of the voxel grid
(:func:`grid_taper`), so an image has the kernel's MTF at any voxel size up to that limit.
On a GPU with CuPy the same steps run on the device through the array API (one model on both;
without CuPy the backprojection falls back to ASTRA's). ASTRA's CPU FBP handles only parallel
beams; rebinning also halves the backprojection work compared with a 360 degree fan-beam
backprojection. TV reconstruction runs through ODL (:mod:`nmosim.simulate.tv`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.sparse

from nmosim.phantoms.errors import SpecError, check_choice
from nmosim.phantoms.grid import Grid
from nmosim.simulate import arrays, backend
from nmosim.simulate.scanner import KERNELS, ScannerProtocol


# --- kernels defined by their MTF -----------------------------------------------------------
@dataclass(frozen=True)
class KernelMTF:
    """Target in-plane system MTF of a kernel: ``mtf50_lp_mm`` and ``mtf10_lp_mm`` (lp/mm at the
    iso-centre, where the MTF last falls to 0.5 and 0.1) and an edge enhancement that lifts the
    MTF by ``edge_gain`` (relative) at ``edge_peak_lp_mm``."""

    mtf50_lp_mm: float
    mtf10_lp_mm: float
    edge_gain: float = 0.0
    edge_peak_lp_mm: float = 0.4


# DOMAIN.md 4.4: MTF50 about 0.35-0.45 lp/mm (soft) and 0.6-0.9 lp/mm (bone), PSF FWHM 0.6-1.2 mm,
# edge ringing on sharp kernels. MTF10 and the standard kernel are engineering values [K] between
# them (a Gaussian-like MTF has MTF10 about 1.6-1.8 times its MTF50). The bone kernel overshoots
# (MTF up to about 1.2 near 0.4 lp/mm), as clinical bone kernels do.
KERNEL_MTF: dict[str, KernelMTF] = {
    "soft": KernelMTF(0.40, 0.65),
    "standard": KernelMTF(0.50, 0.80),
    "bone": KernelMTF(0.75, 1.10, edge_gain=0.3, edge_peak_lp_mm=0.45),
}

# The grid carries a kernel up to the Nyquist frequency of the reconstruction voxel (or of the
# detector sampling at the iso-centre, whichever is lower): the effective MTF is the target,
# tapered (cos**2) from this fraction of that limit to zero at the limit.
GRID_TAPER_START = 0.8
# The filter boosts what the rest of the chain blurs by at most this factor.
_MAX_CHAIN_GAIN = 8.0


def _edge(spec: KernelMTF, f: np.ndarray) -> np.ndarray:
    x2 = (f / spec.edge_peak_lp_mm) ** 2
    return 1.0 + spec.edge_gain * x2 * np.exp(1.0 - x2)


@lru_cache(maxsize=8)
def _shape(kernel: str) -> tuple[float, float]:
    """Scale (lp/mm) and power of ``exp(-ln 2 (f / scale)**power)``, the kernel's MTF before its
    edge enhancement, solved so the product meets MTF50 and MTF10 exactly."""
    spec = KERNEL_MTF[kernel]
    f50, f10 = spec.mtf50_lp_mm, spec.mtf10_lp_mm
    a = -math.log2(0.5 / float(_edge(spec, np.float64(f50))))
    b = -math.log2(0.1 / float(_edge(spec, np.float64(f10))))
    power = math.log(b / a) / math.log(f10 / f50)
    return f50 / a ** (1.0 / power), power


def target_mtf(kernel: str, freq_lp_mm: np.ndarray) -> np.ndarray:
    """The kernel's target system MTF (dimensionless, 1 at f = 0) at ``freq_lp_mm`` (lp/mm)."""
    check_choice("kernel", kernel, KERNELS)
    f = np.abs(np.asarray(freq_lp_mm, dtype=float))
    scale, power = _shape(kernel)
    return np.exp(-math.log(2.0) * (f / scale) ** power) * _edge(KERNEL_MTF[kernel], f)


@dataclass(frozen=True)
class ResolutionChain:
    """What blurs an image before and besides the kernel (all mm at the iso-centre).

    ``imaging_pixel_mm``: pixel of the imaging grid (the object's area-fraction raster, a box, then
    represented as pixels, another box); ``t_step_mm``: rebinned detector step (linear
    interpolation at rebinning and again at backprojection; the rebinning's is its average over
    the sampling phase, which holds where the fan bins have drifted off the parallel samples,
    beyond about 50 mm from the iso-centre for the presets; nearer, the samples are readings,
    unblurred, and the MTF50 lies 10-20 % above the kernel's); ``voxel_mm``: reconstruction voxel
    (it sets the grid's limit, points are sampled without a box); the focal spot and the detector
    cell as ``samples`` points across a box of ``blur_mm`` (one point: no blur).
    """

    imaging_pixel_mm: float
    t_step_mm: float
    voxel_mm: float
    focal_blur_mm: float = 0.0
    focal_samples: int = 1
    cell_blur_mm: float = 0.0
    cell_samples: int = 1

    @property
    def limit_lp_mm(self) -> float:
        """Highest frequency the voxel grid and the detector sampling carry (lp/mm)."""
        return 0.5 / max(self.voxel_mm, self.t_step_mm)


KERNEL_DESIGN_FOCAL_SPOT_MM = 1.0  # the presets' focal spot (simulate/scanner.py)


def resolution_chain(protocol: ScannerProtocol, voxel_mm: float | None = None) -> ResolutionChain:
    """The protocol's :class:`ResolutionChain`; ``voxel_mm`` defaults to ``recon_pixel_mm``.

    Focal spot and cell blur count only when the protocol samples them with sub-rays (fields
    ``focal_spot_*``, ``cell_*``; absent fields mean one central ray per reading). Kernels are
    designed for the scanner's nominal focal spot (:data:`KERNEL_DESIGN_FOCAL_SPOT_MM`): a larger
    spot blurs the image beyond the kernel's MTF, as it does on a scanner.
    """
    _, t_step, _ = parallel_sampling(protocol)
    d_si, d_sd = protocol.source_to_iso_mm, protocol.source_to_detector_mm
    spot = min(float(getattr(protocol, "focal_spot_mm", 0.0)), KERNEL_DESIGN_FOCAL_SPOT_MM)
    focal = spot * (d_sd - d_si) / d_sd
    cell = float(getattr(protocol, "cell_aperture", 1.0)) * protocol.bin_width_mm * d_si / d_sd
    return ResolutionChain(
        imaging_pixel_mm=protocol.recon_pixel_mm / protocol.imaging_oversampling,
        t_step_mm=float(t_step),
        voxel_mm=float(protocol.recon_pixel_mm if voxel_mm is None else voxel_mm),
        focal_blur_mm=focal,
        focal_samples=int(getattr(protocol, "focal_spot_samples", 1)),
        cell_blur_mm=cell,
        cell_samples=int(getattr(protocol, "cell_samples", 1)),
    )


def _points_mtf(width_mm: float, samples: int, f: np.ndarray) -> np.ndarray:
    """MTF of ``samples`` equal points at the midpoints of equal parts of a ``width_mm`` box."""
    x = ((np.arange(samples) + 0.5) / samples - 0.5) * width_mm
    return np.cos(2.0 * np.pi * f[..., None] * x).mean(axis=-1)


def chain_mtf(chain: ResolutionChain, freq_lp_mm: np.ndarray) -> np.ndarray:
    """MTF of everything but the kernel (dimensionless) at ``freq_lp_mm`` (lp/mm): the imaging
    pixel twice (sinc**2), linear interpolation twice (sinc**2 each), focal spot and cell points."""
    f = np.abs(np.asarray(freq_lp_mm, dtype=float))
    mtf = np.sinc(f * chain.imaging_pixel_mm) ** 2 * np.sinc(f * chain.t_step_mm) ** 4
    if chain.focal_samples > 1:
        mtf = mtf * _points_mtf(chain.focal_blur_mm, chain.focal_samples, f)
    if chain.cell_samples > 1:
        mtf = mtf * _points_mtf(chain.cell_blur_mm, chain.cell_samples, f)
    return mtf


def grid_taper(limit_lp_mm: float, freq_lp_mm: np.ndarray) -> np.ndarray:
    """1 up to ``GRID_TAPER_START * limit``, cos**2 down to 0 at ``limit_lp_mm``, 0 beyond."""
    f = np.abs(np.asarray(freq_lp_mm, dtype=float))
    start = GRID_TAPER_START * limit_lp_mm
    phase = np.clip((f - start) / (limit_lp_mm - start), 0.0, 1.0)
    return np.where(phase < 1.0, np.cos(0.5 * np.pi * phase) ** 2, 0.0)


def effective_mtf(kernel: str, chain: ResolutionChain, freq_lp_mm: np.ndarray) -> np.ndarray:
    """The MTF a kernel gives on ``chain``'s grid: its target, capped by :func:`grid_taper`."""
    return target_mtf(kernel, freq_lp_mm) * grid_taper(chain.limit_lp_mm, freq_lp_mm)


def kernel_window(kernel: str, freq_lp_mm: np.ndarray, chain: ResolutionChain | None = None) -> np.ndarray:
    """Window multiplying the ramp filter for ``kernel`` at ``freq_lp_mm`` (lp/mm, iso-centre).

    With ``chain``: the effective MTF over the chain's own MTF (the boost limited to
    ``_MAX_CHAIN_GAIN``), so the reconstructed image has the kernel's MTF up to the grid's limit;
    without it, the bare target MTF.
    """
    if chain is None:
        return target_mtf(kernel, freq_lp_mm)
    own = np.maximum(chain_mtf(chain, freq_lp_mm), 1.0 / _MAX_CHAIN_GAIN)
    return effective_mtf(kernel, chain, freq_lp_mm) / own


def _falls_to(freq: np.ndarray, mtf: np.ndarray, level: float) -> float:
    """Frequency where ``mtf`` last falls through ``level`` (linear interpolation)."""
    above = np.flatnonzero(mtf >= level)
    i = int(above[-1]) if above.size else 0
    if i + 1 >= freq.size:
        return float(freq[-1])
    return float(freq[i] + (mtf[i] - level) / (mtf[i] - mtf[i + 1]) * (freq[i + 1] - freq[i]))


def kernel_resolution(protocol: ScannerProtocol, voxel_mm: float | None = None) -> dict:
    """The protocol kernel's target and effective (grid-capped) MTF50 and MTF10 in lp/mm, the
    grid's limit and whether it capped the kernel, for the record (truth.json, qa.json)."""
    chain = resolution_chain(protocol, voxel_mm)
    f = np.linspace(0.0, 3.0, 6001)
    target = target_mtf(protocol.kernel, f)
    effective = effective_mtf(protocol.kernel, chain, f)
    spec = KERNEL_MTF[protocol.kernel]
    out = {
        "kernel": protocol.kernel,
        "target_mtf50_lp_mm": spec.mtf50_lp_mm,
        "target_mtf10_lp_mm": spec.mtf10_lp_mm,
        "target_peak_mtf": round(float(target.max()), 4),
        "grid_limit_lp_mm": round(chain.limit_lp_mm, 4),
        "effective_mtf50_lp_mm": round(_falls_to(f, effective, 0.5), 4),
        "effective_mtf10_lp_mm": round(_falls_to(f, effective, 0.1), 4),
    }
    out["capped"] = bool(
        out["effective_mtf50_lp_mm"] < spec.mtf50_lp_mm - 1e-3
        or out["effective_mtf10_lp_mm"] < spec.mtf10_lp_mm - 1e-3
    )
    return out


# --- fan -> parallel rebinning ----------------------------------------------------------------
def _geometry(protocol: ScannerProtocol) -> tuple[int, int, float, float, float]:
    """The fields that fix the rebinning: views, bins, bin pitch, source-iso, source-detector."""
    p = protocol
    return (p.n_views, p.n_bins, p.bin_width_mm, p.source_to_iso_mm, p.source_to_detector_mm)


def _sampling(geometry: tuple) -> tuple[np.ndarray, float, int]:
    """Parallel angles, step and count. Sample ``i`` lies at ``t = (i - (n_t - 1) / 2) t_step``
    and ``n_t`` has the parity of ``n_bins``, so near the iso-centre (where ``t`` is the bin offset
    scaled by ``D_si / D_sd``) every sample is a fan reading and its conjugate, uninterpolated,
    for either parity: interpolating halfway between two readings (the other parity) averages
    their noise and blurs, and would make noise and sharpness depend on the bin count's parity.
    Farther out the bins drift off the samples (``t = D_si sin(atan(u / D_sd))`` is not linear in
    the bin offset ``u``), alike for either parity."""
    n_views, n_bins, bin_width, d_si, d_sd = geometry
    n_theta = max(n_views // 2, 1)
    angles = np.pi * np.arange(n_theta) / n_theta
    t_step = bin_width * d_si / d_sd  # the bin pitch at the iso-centre
    edge = (n_bins - 1) / 2.0 * bin_width  # outermost bin centre, at the detector
    t_max = d_si * math.sin(math.atan(edge / d_sd))
    half = 0.5 * (1 - n_bins % 2)  # the samples' offset from a multiple of t_step: 0 or 1/2
    return angles, t_step, 2 * int(math.floor(t_max / t_step - half + 1e-9)) + 1 + int(2 * half)


def parallel_sampling(protocol: ScannerProtocol) -> tuple[np.ndarray, float, int]:
    """Rebinned sampling: view angles in radians over [0, pi), detector step in mm, bin count
    (of the parity of ``protocol.n_bins``; bin ``i`` at ``t = (i - (n_t - 1) / 2) * step``)."""
    return _sampling(_geometry(protocol))


@lru_cache(maxsize=2)  # about 50 MB each for the clinical preset
def _rebin_matrix(geometry: tuple) -> scipy.sparse.csr_matrix:
    """Sparse map from a fan sinogram (raveled ``[n_views, n_bins]``) to a parallel one.

    Parallel ray (theta, t) is the fan ray of view ``b = theta + g`` at detector offset
    ``D_sd tan g``, ``g = asin(t / D_si)``; its conjugate is (theta + pi, -t), a sample too (the
    samples are symmetric about t = 0 for either parity, see :func:`_sampling`). Both are read by
    bilinear interpolation (periodic in the view angle) and averaged.
    """
    n_v, n_b, bin_width, d_si, d_sd = geometry
    angles, t_step, n_t = _sampling(geometry)
    t = (np.arange(n_t) - (n_t - 1) / 2.0) * t_step
    g = np.arcsin(np.clip(t / d_si, -1.0, 1.0))
    bin_index = d_sd * np.tan(g) / bin_width
    rows = np.arange(angles.size * n_t).reshape(angles.size, n_t)
    parts = []
    for beta, j in (
        (angles[:, None] + g[None, :], (n_b - 1) / 2.0 + bin_index),
        (angles[:, None] + np.pi - g[None, :], (n_b - 1) / 2.0 - bin_index),
    ):
        kf = np.mod(beta / (2.0 * np.pi) * n_v, n_v)
        k0 = np.floor(kf).astype(np.int64)
        wk = kf - k0
        jf = np.broadcast_to(j, kf.shape)
        j0 = np.floor(jf).astype(np.int64)
        wj = jf - j0
        for dk, fk in ((0, 1.0 - wk), (1, wk)):
            for dj, fj in ((0, 1.0 - wj), (1, wj)):
                col_j = j0 + dj
                inside = (col_j >= 0) & (col_j < n_b)
                cols = ((k0 + dk) % n_v) * n_b + np.clip(col_j, 0, n_b - 1)
                parts.append((rows, cols, np.where(inside, 0.5 * fk * fj, 0.0)))
    r, c, w = (np.concatenate([p[i].ravel() for p in parts]) for i in range(3))
    keep = w > 0
    shape = (angles.size * n_t, n_v * n_b)
    return scipy.sparse.csr_matrix((w[keep].astype(np.float32), (r[keep], c[keep])), shape=shape)


@lru_cache(maxsize=2)
def _rebin_matrix_on(xp, geometry: tuple):
    """:func:`_rebin_matrix` for arrays of namespace ``xp`` (kept on the GPU for CuPy)."""
    return arrays.sparse_matrix(xp, _rebin_matrix(geometry))


def rebin_to_parallel(sinogram: np.ndarray, protocol: ScannerProtocol) -> np.ndarray:
    """Parallel-beam sinogram ``[..., n_theta, n_t]`` from fan sinograms ``[..., n_views, n_bins]``.

    Angles and detector sampling are those of :func:`parallel_sampling`.
    """
    matrix = _rebin_matrix(_geometry(protocol))
    angles, _, n_t = parallel_sampling(protocol)
    lead = sinogram.shape[:-2]
    flat = sinogram.reshape(-1, protocol.n_views * protocol.n_bins).T
    return np.asarray((matrix @ flat).T).reshape(*lead, angles.size, n_t)


# --- filtering ------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _filter_response(
    n_t: int, t_step_mm: float, kernel: str, chain: ResolutionChain | None = None
) -> tuple[int, np.ndarray]:
    """FFT length and frequency response (ramp times :func:`kernel_window`) for rows of ``n_t``
    samples; the one filter of the CPU and the array-API paths.

    The ramp is the band-limited one sampled in space (Kak & Slaney eq. 3.61: h(0) = 1/(4 d^2),
    h(n odd) = -1/(n pi d)^2), which avoids the DC error of a sampled |f|; the factor ``d``
    turns the discrete convolution into the integral.
    """
    n_fft = scipy.fft.next_fast_len(2 * n_t, real=True)
    n = np.arange(n_fft)
    n = np.where(n > n_fft // 2, n - n_fft, n)
    h = np.zeros(n_fft)
    h[0] = 1.0 / (4.0 * t_step_mm**2)
    odd = n % 2 == 1
    h[odd] = -1.0 / (np.pi * n[odd] * t_step_mm) ** 2
    ramp = t_step_mm * np.real(scipy.fft.rfft(h))
    freq = scipy.fft.rfftfreq(n_fft, d=t_step_mm)
    return n_fft, (ramp * kernel_window(kernel, freq, chain)).astype(np.complex64)


def filter_parallel(
    rows: np.ndarray, t_step_mm: float, kernel: str, chain: ResolutionChain | None = None
) -> np.ndarray:
    """Ramp-filter ``rows`` (``[..., n_t]``, bins ``t_step_mm`` apart) with ``kernel``'s window
    (on ``chain``, see :func:`kernel_window`)."""
    n_t = rows.shape[-1]
    n_fft, response = _filter_response(n_t, float(t_step_mm), kernel, chain)
    spectrum = scipy.fft.rfft(rows, n=n_fft, axis=-1, workers=1)
    return scipy.fft.irfft(spectrum * response, n=n_fft, axis=-1, workers=1)[..., :n_t]


# --- reconstruction -------------------------------------------------------------------------
def _check_sinogram(sinogram: np.ndarray, grid: Grid, protocol: ScannerProtocol) -> None:
    expected = (grid.shape[0], protocol.n_views, protocol.n_bins)
    if sinogram.ndim != 3 or tuple(sinogram.shape) != expected:
        raise ValueError(
            f"sinogram shape {sinogram.shape} does not match (grid slices, n_views, n_bins) = {expected}"
        )


def grid_chain(protocol: ScannerProtocol, grid: Grid) -> ResolutionChain:
    """:func:`resolution_chain` of ``protocol`` for reconstruction onto ``grid`` (its coarser
    in-plane spacing sets the voxel)."""
    return resolution_chain(protocol, float(max(grid.spacing_mm[0], grid.spacing_mm[1])))


def fbp(
    sinogram: np.ndarray,
    grid: Grid,
    protocol: ScannerProtocol,
    *,
    kernel: str | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Filtered backprojection of fan-beam line integrals onto ``grid``.

    Parameters
    ----------
    sinogram : ``[nz, n_views, n_bins]`` line integrals as returned by
        :func:`nmosim.simulate.backend.forward_project` (value times mm).
    grid : target grid; its slices match the sinogram's and its pixels may differ from those
        of the grid that was projected (and be off-centre or non-square).
    kernel : 'soft', 'standard' or 'bone' (default: ``protocol.kernel``): the image gets the
        kernel's MTF (:data:`KERNEL_MTF`) up to the limit of ``grid``'s voxel (:func:`grid_taper`).
    threads, device : as for :func:`nmosim.simulate.backend.forward_project`.

    Returns
    -------
    ``[nz, ny, nx]`` float32 in the sinogram's value per mm (e.g. 1/mm for attenuation).
    """
    _check_sinogram(sinogram, grid, protocol)
    kernel = protocol.kernel if kernel is None else kernel
    check_choice("kernel", kernel, KERNELS)
    device = backend.select_device(device)
    threads = backend.resolve_threads(threads, device)
    if device == "cuda" and arrays.has_gpu_arrays():
        return fbp_array_api(sinogram, grid, protocol, kernel, arrays.namespace("cuda"))
    angles, t_step, n_t = parallel_sampling(protocol)
    matrix = _rebin_matrix(_geometry(protocol))
    scale = np.float32(np.pi / angles.size)  # f(x) = integral over [0, pi) of q(theta, t(x))
    chain = grid_chain(protocol, grid)

    def filtered(k: int) -> np.ndarray:
        rebinned = (matrix @ sinogram[k].ravel().astype(np.float32)).reshape(angles.size, n_t)
        return (filter_parallel(rebinned, t_step, kernel, chain) * scale).astype(np.float32)

    return backend.backproject_parallel(filtered, grid, angles, t_step, n_t, device=device, threads=threads)


# --- the same FBP through the array API (numpy or CuPy) --------------------------------------
_BP_KERNEL = r"""
extern "C" __global__ void backproject(
    const float* rows, const float* cs, const float* sn, const float* x, const float* y,
    float* out, const long long total, const int ny, const int nx, const int n_theta,
    const int n_pad, const float centre, const float top)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int ix = (int)(i % nx);
    const int iy = (int)((i / nx) % ny);
    const long long iz = i / ((long long)nx * ny);
    const float xv = x[ix], yv = y[iy];
    const float* r = rows + iz * (long long)n_theta * n_pad;
    float acc = 0.0f;
    for (int a = 0; a < n_theta; ++a) {
        float pos = __fsub_rn(__fmul_rn(xv, cs[a]), __fsub_rn(__fmul_rn(yv, sn[a]), centre));
        pos = fminf(fmaxf(pos, 0.0f), top);
        const float low = floorf(pos);
        const int k = (int)low;
        const float l = r[a * n_pad + k];
        // the CPU's order and rounding: out += low; out += (high - low) * frac
        acc = __fadd_rn(acc, l);
        acc = __fadd_rn(acc, __fmul_rn(__fsub_rn(r[a * n_pad + k + 1], l), __fsub_rn(pos, low)));
    }
    out[i] = acc;
}
"""


@lru_cache(maxsize=1)
def _cupy_backprojector():
    import cupy

    return cupy.RawKernel(_BP_KERNEL, "backproject")


def backproject_array_api(xp, rows, x_mm: np.ndarray, y_mm: np.ndarray, angles: np.ndarray, t_step_mm: float):
    """``out[z, y, x] = sum_theta rows[z, theta, t(x, y)]``, ``t = x cos theta - y sin theta``,
    linear interpolation, zero beyond the detector: the model of the CPU backprojection, for
    ``rows`` ``[nz, n_theta, n_t]`` float32 of namespace ``xp``. On CuPy one fused kernel."""
    nz, n_theta, n_t = rows.shape
    padded = xp.zeros((nz, n_theta, n_t + 2), dtype=xp.float32)
    padded[:, :, 1:-1] = rows
    centre = np.float32((n_t - 1) / 2.0 + 1.0)
    top = np.float32(n_t + 0.999)
    x = xp.asarray((x_mm / t_step_mm).astype(np.float32))
    y = xp.asarray((y_mm / t_step_mm).astype(np.float32))
    cos = np.cos(angles).astype(np.float32)
    sin = np.sin(angles).astype(np.float32)
    ny, nx = y.shape[0], x.shape[0]
    if arrays.is_cupy(padded):
        out = xp.empty((nz, ny, nx), dtype=xp.float32)
        total = nz * ny * nx
        _cupy_backprojector()(
            ((total + 255) // 256,), (256,),
            (padded, xp.asarray(cos), xp.asarray(sin), x, y, out, np.int64(total), np.int32(ny),
             np.int32(nx), np.int32(n_theta), np.int32(n_t + 2), centre, top),
        )  # fmt: skip
        return out
    out = xp.zeros((nz, ny, nx), dtype=xp.float32)
    for a in range(n_theta):
        pos = x[None, :] * cos[a] - (y[:, None] * sin[a] - centre)
        pos = xp.clip(pos, np.float32(0.0), top)
        low = xp.floor(pos)
        index = xp.reshape(xp.astype(low, xp.int64), (-1,))
        frac = pos - low
        row = padded[:, a, :]
        lo = xp.reshape(xp.take(row, index, axis=1), (nz, ny, nx))
        hi = xp.reshape(xp.take(row, index + 1, axis=1), (nz, ny, nx))
        out += lo
        out += (hi - lo) * frac
    return out


def fbp_array_api(
    sinogram: np.ndarray, grid: Grid, protocol: ScannerProtocol, kernel: str, xp, *, block: int = 32
) -> np.ndarray:
    """:func:`fbp` with rebinning, filtering and backprojection in namespace ``xp`` (numpy or
    CuPy), ``block`` slices at a time; returns a host ``[nz, ny, nx]`` float32 array."""
    angles, t_step, n_t = parallel_sampling(protocol)
    matrix = _rebin_matrix_on(xp, _geometry(protocol))
    n_fft, response = _filter_response(n_t, float(t_step), kernel, grid_chain(protocol, grid))
    response = xp.asarray(response * np.float32(np.pi / angles.size))
    x_mm, y_mm = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)
    out = np.empty(grid.shape, dtype=np.float32)
    for start in range(0, grid.shape[0], block):
        chunk = xp.asarray(np.ascontiguousarray(sinogram[start : start + block], dtype=np.float32))
        nz = chunk.shape[0]
        flat = xp.reshape(chunk, (nz, -1)).T
        rebinned = xp.reshape((matrix @ flat).T, (nz, angles.size, n_t))
        spectrum = xp.fft.rfft(rebinned, n=n_fft, axis=-1)
        rows = xp.astype(xp.fft.irfft(spectrum * response, n=n_fft, axis=-1)[..., :n_t], xp.float32)
        image = backproject_array_api(xp, rows, x_mm, y_mm, angles, t_step)
        out[start : start + nz] = arrays.to_numpy(image)
    return out


def _iterative(
    method: str,
    sinogram: np.ndarray,
    grid: Grid,
    protocol: ScannerProtocol,
    iterations: int | None,
    threads: int | None,
    device: str | None,
) -> np.ndarray:
    _check_sinogram(sinogram, grid, protocol)
    iterations = protocol.recon_iterations if iterations is None else iterations
    if isinstance(iterations, bool) or int(iterations) != iterations or not 0 < iterations <= 1e4:
        raise SpecError(f"iterations = {iterations!r} is outside [1, 10000]")
    device = backend.select_device(device)
    threads = backend.resolve_threads(threads, device)
    proj_geom, factor = backend.fan_geometry(grid, protocol)
    # ASTRA solves in its stretched frame, where each ray's length is ``1 / factor`` of ours.
    inverse = None if factor is None else (1.0 / factor).astype(np.float32)

    def data(k: int) -> np.ndarray:
        return sinogram[k] if inverse is None else sinogram[k] * inverse

    out = np.empty(grid.shape, dtype=np.float32)
    return backend.run_slices(
        method,
        grid.shape[0],
        data,
        out,
        backend.volume_geometry(grid),
        proj_geom,
        device=device,
        threads=threads,
        iterations=int(iterations),
    )


def sirt(
    sinogram: np.ndarray,
    grid: Grid,
    protocol: ScannerProtocol,
    *,
    iterations: int | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> np.ndarray:
    """SIRT (ASTRA) of fan-beam line integrals onto ``grid``, ``[nz, ny, nx]`` value per mm.

    Starts from zero; ``iterations`` defaults to ``protocol.recon_iterations``. The object must
    lie inside ``grid`` (rays through matter outside it cannot be explained).
    """
    return _iterative("SIRT", sinogram, grid, protocol, iterations, threads, device)


def cgls(
    sinogram: np.ndarray,
    grid: Grid,
    protocol: ScannerProtocol,
    *,
    iterations: int | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> np.ndarray:
    """CGLS (ASTRA) of fan-beam line integrals onto ``grid``; as :func:`sirt` otherwise."""
    return _iterative("CGLS", sinogram, grid, protocol, iterations, threads, device)


def reconstruct(
    sinogram: np.ndarray,
    grid: Grid,
    protocol: ScannerProtocol,
    *,
    threads: int | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Reconstruct with ``protocol.recon_method`` (fbp, sirt, cgls or tv) and its settings."""
    if protocol.recon_method == "fbp":
        return fbp(sinogram, grid, protocol, threads=threads, device=device)
    if protocol.recon_method == "tv":
        from nmosim.simulate import tv  # imports ODL, only when asked for

        _check_sinogram(sinogram, grid, protocol)
        return tv.tv_reconstruct(sinogram, grid, protocol, device=backend.select_device(device))
    method = sirt if protocol.recon_method == "sirt" else cgls
    return method(sinogram, grid, protocol, threads=threads, device=device)
