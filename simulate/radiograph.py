"""AP pelvis radiograph: polychromatic cone-beam projection of a phantom on the CPU, with masks.

Projects basis maps and label masks through a point source onto a flat detector; it builds no
phantom and writes no files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import numpy as np

from nmosim.phantoms.errors import SpecError, check_choice, check_range
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.shapes import namespace, take
from nmosim.simulate import arrays, physics


@dataclass(frozen=True)
class RadiographGeometry:
    """An AP radiography room and detector (mm, kV, mAs): tube in front of the patient, detector behind.

    The central ray runs along -y through ``(0, center_z_mm)``; the detector plane is at
    ``y = detector_y_mm`` and the focal spot ``source_to_detector_mm`` in front of it.
    Typical AP pelvis [K]: 115 cm source-image distance, 70-80 kV, 2.5 mm Al, 20-40 mAs, 1.2 mm
    (large) focal spot, a 12:1 anti-scatter grid.

    Sampling. The flat panel has ``detector_pitch_mm`` elements (0.1-0.2 mm, CsI panels ~0.14-0.15 mm);
    the image is binned to ``pixel_mm`` (an integer multiple of the pitch) for output. Line integrals
    are computed on a coarser ``projection_mm`` grid (the 2 mm phantom holds no finer detail) and
    interpolated to ``pixel_mm``; focal-spot blur, the detector's line spread function and the
    element and binning apertures are then applied analytically (their MTFs, in the Fourier domain).

    Blur. ``focal_spot_mm`` is the nominal focal spot (Gaussian, FWHM); at an object plane of
    magnification ``M`` it blurs the detector image by ``focal_spot_mm * (M - 1)`` (geometric
    unsharpness), evaluated at ``blur_plane_y_mm`` (the hips). ``detector_lsf_mm`` is the scale of the
    scintillator's exponential line spread function (MTF ``1 / (1 + (2 pi f L)^2)``): 0.13 mm gives
    MTF ~0.6 at 1 and ~0.3 at 2 cycles/mm, typical of CsI flat panels [K] (Samei E, Flynn MJ, Med Phys
    2003;30:608-622, numbers cited as facts).

    Scatter (convolution model after Love LA, Kruger RA, Med Phys 1987;14:178-185 and Boone JM,
    Seibert JA, Med Phys 1988;15:713-720; numbers cited as facts): scatter = the primary weighted by a
    local scatter-to-primary ratio ``scatter_spr_per_cm`` x water-equivalent thickness (cm), spread by
    a Gaussian of ``scatter_kernel_mm`` (sigma). 0.075 per cm gives SPR ~1.5, scatter fraction ~0.6,
    behind ~20 cm of an AP pelvis without a grid (0.5-0.7 [K], Bushberg JT et al., The Essential
    Physics of Medical Imaging, 3rd ed. 2012, ch. 7). With ``grid`` the primary is transmitted by
    ``grid_primary_transmission`` and scatter by ``grid_scatter_transmission`` (12:1 grid ~0.7 and
    ~0.15 [K], Sandborg M et al., Br J Radiol 1993;66:1164-1176), which leaves a scatter fraction
    ~0.2-0.3. The flat field is calibrated with the grid in place.

    Processing (``processed`` image): the log image, a multi-frequency enhancement (the band below
    ``processing_band_mm`` boosted by ``enhancement``, the background below ``compression_mm``
    compressed by ``range_compression``: unsharp masks), then a window on the body's percentiles.
    """

    source_to_detector_mm: float = 1150.0
    detector_y_mm: float = -190.0
    center_z_mm: float = 0.0
    detector_width_mm: float = 430.0
    detector_height_mm: float = 300.0
    pixel_mm: float = 0.3
    detector_pitch_mm: float = 0.15
    projection_mm: float = 1.0
    kvp: float = 75.0
    filtration_mm_al: float = 2.5
    mas: float = 25.0
    focal_spot_mm: float = 1.2
    blur_plane_y_mm: float = 0.0
    detector_lsf_mm: float = 0.13
    scatter: bool = True
    scatter_spr_per_cm: float = 0.075
    scatter_kernel_mm: float = 40.0
    grid: bool = True
    grid_primary_transmission: float = 0.7
    grid_scatter_transmission: float = 0.15
    enhancement: float = 1.5
    processing_band_mm: float = 4.0
    range_compression: float = 0.6
    compression_mm: float = 40.0

    def __post_init__(self) -> None:
        check_range("source_to_detector_mm", self.source_to_detector_mm, 500.0, 2000.0)
        check_range("detector_width_mm", self.detector_width_mm, 50.0, 600.0)
        check_range("detector_height_mm", self.detector_height_mm, 50.0, 600.0)
        check_range("detector_pitch_mm", self.detector_pitch_mm, 0.05, 1.0)
        check_range("pixel_mm", self.pixel_mm, self.detector_pitch_mm, 5.0)
        ratio = self.pixel_mm / self.detector_pitch_mm
        if abs(ratio - round(ratio)) > 1e-6:
            raise SpecError(
                f"pixel_mm = {self.pixel_mm!r} must be an integer multiple of detector_pitch_mm "
                f"({self.detector_pitch_mm:g}): the output bins whole detector elements"
            )
        check_range("projection_mm", self.projection_mm, self.pixel_mm, 5.0)
        check_range("kvp", self.kvp, 40.0, 150.0)
        check_range("filtration_mm_al", self.filtration_mm_al, 0.0, 20.0)
        check_range("mas", self.mas, 0.01, 1000.0)
        check_range("focal_spot_mm", self.focal_spot_mm, 0.0, 3.0)
        check_range("blur_plane_y_mm", self.blur_plane_y_mm, self.detector_y_mm, self.source_y_mm - 1.0)
        check_range("detector_lsf_mm", self.detector_lsf_mm, 0.0, 2.0)
        check_choice("scatter", self.scatter, (True, False))
        check_range("scatter_spr_per_cm", self.scatter_spr_per_cm, 0.0, 1.0)
        check_range("scatter_kernel_mm", self.scatter_kernel_mm, 5.0, 200.0)
        check_choice("grid", self.grid, (True, False))
        check_range("grid_primary_transmission", self.grid_primary_transmission, 0.3, 1.0)
        check_range("grid_scatter_transmission", self.grid_scatter_transmission, 0.0, 1.0)
        check_range("enhancement", self.enhancement, 0.0, 10.0)
        check_range("processing_band_mm", self.processing_band_mm, 0.5, 50.0)
        check_range("range_compression", self.range_compression, 0.0, 1.0)
        check_range("compression_mm", self.compression_mm, 5.0, 200.0)

    @property
    def source_y_mm(self) -> float:
        return self.detector_y_mm + self.source_to_detector_mm

    @property
    def focal_blur_fwhm_mm(self) -> float:
        """Geometric unsharpness on the detector (mm, FWHM) at ``blur_plane_y_mm``: f (M - 1)."""
        magnification = self.source_to_detector_mm / (self.source_y_mm - self.blur_plane_y_mm)
        return self.focal_spot_mm * (magnification - 1.0)

    def detector_coordinates(self, pixel_mm: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pixel centres (mm) on the detector: ``u`` along +x (columns), ``v`` along +z (rows).

        ``pixel_mm`` defaults to the output pixel; both grids share the detector's centre.
        """
        pixel = self.pixel_mm if pixel_mm is None else pixel_mm
        nu = int(round(self.detector_width_mm / pixel))
        nv = int(round(self.detector_height_mm / pixel))
        u = (np.arange(nu) - (nu - 1) / 2) * pixel
        v = (np.arange(nv) - (nv - 1) / 2) * pixel
        return u, v

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "source_y_mm": self.source_y_mm,
            "focal_blur_fwhm_mm": round(self.focal_blur_fwhm_mm, 4),
            "projection": "AP, cone beam",
        }


def cone_projection(
    volume: np.ndarray,
    grid: Grid,
    geometry: RadiographGeometry,
    pixel_mm: float | None = None,
    xp: ModuleType | None = None,
) -> np.ndarray:
    """Line integrals (value x mm) of ``volume`` [z, y, x] from the focal spot to each pixel
    (of ``pixel_mm``, default the output pixel).

    Exact for a point source: each coronal plane of the volume is magnified onto the detector
    (bilinear sampling) and added with the path length of the ray through that plane's slab.
    Returns ``[v, u]`` (numpy), v along +z (superior) and u along +x (patient's right). The sums
    run in the array namespace ``xp`` (default numpy; CuPy's on a GPU, with cupyx's ndimage).
    """
    xp = arrays.namespace("cpu") if xp is None else xp
    return arrays.to_numpy(_projection(volume, grid, geometry, pixel_mm, xp))


def _projection(
    volume: Any, grid: Grid, geometry: RadiographGeometry, pixel_mm: float | None, xp: ModuleType
):
    """:func:`cone_projection` as an array of ``xp`` (float32 ``[v, u]``)."""
    u, v = geometry.detector_coordinates(pixel_mm)
    uu, vv = xp.meshgrid(xp.asarray(u), xp.asarray(v))
    ys = grid.voxel_centers_axis(1)
    span = geometry.source_y_mm - geometry.detector_y_mm
    out = xp.zeros(uu.shape, dtype=xp.float64)
    # Python floats (not numpy scalars), which every namespace mixes with its float64 arrays
    x0, z0 = float(grid.origin_mm[0]), float(grid.origin_mm[2])
    sx, sz = float(grid.spacing_mm[0]), float(grid.spacing_mm[2])
    volume = xp.asarray(volume)
    for j, y in enumerate(ys.tolist()):
        plane = volume[:, j, :]
        if not bool(xp.any(plane)):
            continue
        t = (geometry.source_y_mm - y) / span  # fraction of the way from source to detector
        x = t * uu
        z = geometry.center_z_mm + t * (vv - 0.0)
        coords = xp.stack([(z - z0) / sz, (x - x0) / sx])
        out += arrays.ndimage_call(xp, "map_coordinates", plane, coords, order=1, mode="constant", cval=0.0)
    # Path length through a slab of thickness dy along a ray tilted from the central ray.
    obliquity = xp.sqrt(span**2 + uu**2 + vv**2) / span
    return xp.astype(out * float(grid.spacing_mm[1]) * obliquity, xp.float32)


@dataclass(frozen=True)
class Radiograph:
    """An AP radiograph on the output pixels ``[v, u]`` (v superior-up as rows from the bottom).

    ``image`` = -log(I / I0) (bone bright; blurred, with scatter and noise), ``processed`` the display
    image in [0, 1] (log, multi-frequency enhancement, window; None when not made), and ``masks``
    what projects onto each pixel.
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    geometry: RadiographGeometry
    processed: np.ndarray | None = None


def simulate_radiograph(
    water_map: np.ndarray,
    bone_map: np.ndarray,
    masks: dict[str, np.ndarray],
    grid: Grid,
    geometry: RadiographGeometry,
    rng: np.random.Generator | None,
    xp: ModuleType | None = None,
) -> Radiograph:
    """Polychromatic AP radiograph of basis maps (volume fractions) with blur, scatter and noise.

    Line integrals on the ``projection_mm`` grid give the expected primary (photons per output
    pixel) and the scatter; the primary is interpolated to ``pixel_mm``, blurred by the focal spot
    and the binning aperture, scatter added (both through the grid when there is one), quantum noise
    drawn (none when ``rng`` is None), then blurred by the detector LSF and element aperture.
    ``masks`` (boolean volumes on ``grid``) are projected too: a pixel is in a mask's projection
    when the ray crosses at least half a millimetre of it.

    Every image step runs in the array namespace ``xp`` (default numpy; CuPy's on a GPU), the maps
    and masks being of any namespace. Two steps run on the host whatever ``xp``, on small arrays:
    the polychromatic sums on the coarse projection grid, and the noise, drawn from ``rng`` with
    the same calls as on numpy (so a seed gives the same draws on every namespace). The
    :class:`Radiograph` holds numpy arrays.
    """
    xp = arrays.namespace("cpu") if xp is None else xp
    spectrum = physics.tube_spectrum(geometry.kvp, geometry.filtration_mm_al).rebinned(
        physics.PROJECTION_BIN_KEV / 2
    )
    coarse = geometry.projection_mm
    line_water_cm = antialias(_projection(water_map, grid, geometry, coarse, xp), grid, geometry) / 10.0
    line_bone_cm = antialias(_projection(bone_map, grid, geometry, coarse, xp), grid, geometry) / 10.0
    area = geometry.pixel_mm**2
    counts = physics.expected_counts(
        arrays.to_numpy(line_water_cm), arrays.to_numpy(line_bone_cm), spectrum, mas=geometry.mas,
        pixel_area_mm2=area, source_to_detector_mm=geometry.source_to_detector_mm,
    )  # fmt: skip
    i0 = physics.flat_field(
        spectrum, mas=geometry.mas, pixel_area_mm2=area, source_to_detector_mm=geometry.source_to_detector_mm
    )
    primary_coarse = xp.maximum(xp.asarray(counts.mean), _f32(xp, 1e-12))
    gain = to_output(xp.asarray(counts.variance) / primary_coarse, geometry)
    # Interpolate the log (smooth) rather than the counts; then the primary on output pixels.
    primary = i0 * xp.exp(-to_output(xp.log(i0 / primary_coarse), geometry))
    primary = apply_mtf(primary, geometry.pixel_mm, focal_and_binning_mtf(geometry))
    scatter = scatter_image(primary_coarse, line_water_cm + line_bone_cm, geometry)
    tp, ts = (
        (geometry.grid_primary_transmission, geometry.grid_scatter_transmission) if geometry.grid else (1, 1)
    )
    mean = xp.astype(tp * primary + ts * scatter, xp.float32)
    if rng is None:
        readings = mean
    else:  # on the host: the Generator's draws depend on the expected counts
        host = arrays.to_numpy(mean)
        noisy = physics.add_noise(physics.Counts(host, host * arrays.to_numpy(gain)), rng, 0.0)
        readings = xp.asarray(noisy)
    readings = xp.maximum(apply_mtf(readings, geometry.pixel_mm, detector_mtf(geometry)), _f32(xp, 0.5))
    image = xp.astype(xp.log(_f32(xp, tp * i0) / readings), xp.float32)  # -log(I / I0)
    projected = {
        name: to_output(_projection(xp.astype(xp.asarray(mask), xp.float32), grid, geometry, coarse, xp),
                        geometry) >= 0.5
        for name, mask in masks.items()
    }  # fmt: skip
    return Radiograph(
        image=arrays.to_numpy(image),
        masks={name: arrays.to_numpy(mask) for name, mask in projected.items()},
        geometry=geometry,
        processed=arrays.to_numpy(process(image, geometry)),
    )


def _f32(xp: ModuleType, value: float) -> Any:
    """A float32 scalar array of ``xp``: ``value`` rounded as numpy rounds a Python float against
    a float32 array."""
    return xp.asarray(value, dtype=xp.float32)


ANTIALIAS_VOXELS = 0.4  # Gaussian sigma (voxels) that smooths the staircase of voxel labels


def antialias(lines: Any, grid: Grid, geometry: RadiographGeometry) -> Any:
    """Line integrals on the ``projection_mm`` grid smoothed by a Gaussian of ``ANTIALIAS_VOXELS``
    in-plane voxels (magnified to the detector at the grid's centre): voxel labels have stepped edges
    that multi-frequency processing would otherwise draw as a staircase. It sets the resolution
    limit of the phantom's grid, not of the detector. Arrays of any namespace."""
    magnification = geometry.source_to_detector_mm / (
        geometry.source_y_mm - float(grid.voxel_centers_axis(1).mean())
    )
    sigma_mm = ANTIALIAS_VOXELS * magnification * np.array([grid.spacing_mm[2], grid.spacing_mm[0]])
    sigma = tuple(float(x) for x in sigma_mm / geometry.projection_mm)
    return arrays.ndimage_call(
        namespace(lines), "gaussian_filter", lines, sigma, mode="nearest", truncate=3.0
    )


def to_output(coarse: Any, geometry: RadiographGeometry) -> Any:
    """An image on the ``projection_mm`` grid linearly interpolated to the output pixels (edge
    values held beyond the outermost centres)."""
    uc, vc = geometry.detector_coordinates(geometry.projection_mm)
    u, v = geometry.detector_coordinates()
    return resample(coarse, (v - vc[0]) / geometry.projection_mm, (u - uc[0]) / geometry.projection_mm)


def resample(image: Any, rows: np.ndarray, cols: np.ndarray) -> Any:
    """``image`` linearly interpolated at fractional ``rows`` x ``cols`` (index units, clipped to
    the image): separable, one gather and blend per axis (float32, in the namespace of ``image``;
    ``rows`` and ``cols`` are numpy)."""
    xp = namespace(image)

    def weights(f: np.ndarray, n: int) -> tuple[Any, Any, Any, Any]:
        f = np.clip(f, 0.0, n - 1.0)
        i0 = np.minimum(np.floor(f).astype(np.intp), max(n - 2, 0))
        w = (f - i0).astype(np.float32)
        return xp.asarray(i0), xp.asarray(np.minimum(i0 + 1, n - 1)), xp.asarray(1 - w), xp.asarray(w)

    image = xp.astype(image, xp.float32)
    r0, r1, wr0, wr1 = weights(np.asarray(rows), image.shape[0])
    c0, c1, wc0, wc1 = weights(np.asarray(cols), image.shape[1])
    blended = take(xp, image, r0) * wr0[:, None] + take(xp, image, r1) * wr1[:, None]
    return _columns(xp, blended, c0) * wc0 + _columns(xp, blended, c1) * wc1


def _columns(xp: ModuleType, image: Any, index: Any) -> Any:
    """The columns ``index`` of a 2-D ``image``. numpy's own indexing on numpy, as before: its
    result is column-major, which the filters and block means downstream inherit, and a block
    mean's float32 sums follow the memory order; so the numpy bytes stay those they always were."""
    if isinstance(image, np.ndarray):
        return image[:, index]
    return xp.take(image, index, axis=1)


def _sinc(xp: ModuleType, x: Any) -> Any:
    """``sin(pi x) / (pi x)``, 1 at 0: numpy's ``sinc`` step for step (float64), in ``xp``."""
    y = np.pi * x
    y = xp.where(y != 0, y, xp.asarray(np.finfo(np.float64).eps, dtype=y.dtype))
    return xp.sin(y) / y


def focal_and_binning_mtf(geometry: RadiographGeometry):
    """MTF(fv, fu) of the focal spot (Gaussian, FWHM ``focal_blur_fwhm_mm``) times the output
    pixel's aperture (binning of whole detector elements); frequencies (cycles/mm) of any namespace."""
    sigma = float(geometry.focal_blur_fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))))
    p = geometry.pixel_mm

    def mtf(fv: Any, fu: Any) -> Any:
        xp = namespace(fv)
        focal = xp.exp(-2.0 * np.pi**2 * sigma**2 * (fv**2 + fu**2))
        return focal * _sinc(xp, fv * p) * _sinc(xp, fu * p)

    return mtf


def detector_mtf(geometry: RadiographGeometry):
    """MTF(fv, fu) of the scintillator's exponential LSF and the detector element's aperture;
    frequencies (cycles/mm) of any namespace."""
    scale, a = geometry.detector_lsf_mm, geometry.detector_pitch_mm

    def mtf(fv: Any, fu: Any) -> Any:
        xp = namespace(fv)
        lsf = 1.0 / (1.0 + (2.0 * np.pi * scale) ** 2 * (fv**2 + fu**2))
        return lsf * _sinc(xp, fv * a) * _sinc(xp, fu * a)

    return mtf


def _reflect_index(n: int, pad: int) -> np.ndarray:
    """Indices of an axis of ``n`` padded by ``pad`` on each side by reflection about the edge
    samples (numpy's ``pad`` mode "reflect", repeated for pads longer than the axis)."""
    i = np.abs(np.arange(-pad, n + pad))
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    m = i % period
    return np.where(m >= n, period - m, m)


def apply_mtf(image: Any, pixel_mm: float, mtf, pad: int = 16) -> Any:
    """``image`` filtered by ``mtf(fv, fu)`` (cycles/mm) in the Fourier domain, edges padded by
    reflection so nothing wraps around (the blurs here are a few pixels wide). float32, in the
    namespace of ``image`` (through numpy on the host if that namespace has no FFT)."""
    xp = namespace(image)
    fxp, fft = arrays.fft(xp)
    image = fxp.asarray(image if fxp is xp else arrays.to_numpy(image))
    rows, cols = (fxp.asarray(_reflect_index(n, pad)) for n in image.shape)
    padded = _columns(fxp, take(fxp, fxp.astype(image, fxp.float64), rows), cols)
    shape = tuple(padded.shape)
    fv = fxp.reshape(fft.fftfreq(shape[0], d=pixel_mm), (-1, 1))
    fu = fxp.reshape(fft.rfftfreq(shape[1], d=pixel_mm), (1, -1))
    out = fft.irfftn(fft.rfftn(padded, axes=(0, 1)) * mtf(fv, fu), s=shape, axes=(0, 1))
    out = fxp.astype(out[pad:-pad, pad:-pad], fxp.float32)
    return out if fxp is xp else xp.asarray(out)


def scatter_image(primary_coarse: Any, thickness_cm: Any, geometry: RadiographGeometry) -> Any:
    """Scatter (photons per output pixel, before any grid) on the output pixels: the primary times
    the local scatter-to-primary ratio (``scatter_spr_per_cm`` x water-equivalent thickness, cm),
    spread by a Gaussian kernel of ``scatter_kernel_mm`` (sigma) [Love & Kruger 1987]. Zero when
    ``scatter`` is off. A uniform slab gets scatter = SPR x primary away from the field edges.
    float32, in the namespace of ``primary_coarse``."""
    xp = namespace(primary_coarse)
    if not geometry.scatter:
        u, v = geometry.detector_coordinates()
        return xp.zeros((v.shape[0], u.shape[0]), dtype=xp.float32)
    source = primary_coarse * geometry.scatter_spr_per_cm * thickness_cm
    sigma = geometry.scatter_kernel_mm / geometry.projection_mm
    spread = arrays.ndimage_call(
        xp, "gaussian_filter", xp.astype(source, xp.float64), sigma, mode="constant", truncate=3.0
    )
    return to_output(spread, geometry)


def low_pass(image: Any, sigma_mm: float, pixel_mm: float) -> Any:
    """Gaussian low pass (sigma in mm); wide kernels run on a block-averaged copy, then are
    interpolated back (they keep nothing finer than the block). In the namespace of ``image``."""
    xp = namespace(image)
    sigma_px = sigma_mm / pixel_mm
    k = max(1, int(sigma_px // 4))
    if k == 1:
        return arrays.ndimage_call(xp, "gaussian_filter", image, sigma_px, mode="nearest", truncate=3.0)
    nv, nu = (image.shape[0] // k) * k, (image.shape[1] // k) * k
    small = xp.mean(xp.reshape(image[:nv, :nu], (nv // k, k, nu // k, k)), axis=(1, 3))
    small = arrays.ndimage_call(xp, "gaussian_filter", small, sigma_px / k, mode="nearest", truncate=3.0)
    rows = (np.arange(image.shape[0]) + 0.5) / k - 0.5
    cols = (np.arange(image.shape[1]) + 0.5) / k - 0.5
    return resample(small, rows, cols)


def process(image: Any, geometry: RadiographGeometry) -> Any:
    """Display image in [0, 1] (bone bright) of a log radiograph: multi-frequency processing.

    ``out = log + enhancement (G_0.3 - G_band) - range_compression (G_wide - level)``: the detail
    band between ~0.3 mm and ``processing_band_mm`` (edges, trabeculae, the HO margins) is boosted
    (an unsharp mask that spares the finest, noise-only band), and the wide background (soft-tissue
    thickness) compressed around the body's median so bone and soft tissue fit one window. The
    window maps the 0.5th-99.5th percentiles inside the body to [0, 1].

    float32, in the namespace of ``image``; the median and percentiles (numpy's) are taken on the
    host from the body's pixels, the filters where the image is.
    """
    xp = namespace(image)
    p = geometry.pixel_mm
    log = xp.astype(image, xp.float32)
    body = log > 0.1
    inside = arrays.to_numpy(log[body])
    level = float(np.median(inside)) if inside.size else 0.0
    fine = low_pass(log, 0.3, p) if 0.3 / p >= 0.5 else log
    band = low_pass(log, geometry.processing_band_mm, p)
    wide = low_pass(log, geometry.compression_mm, p)
    out = log + geometry.enhancement * (fine - band) - geometry.range_compression * (wide - level)
    if inside.size:  # numpy's percentiles are float64, and so is the window arithmetic then
        lo, hi = (float(q) for q in np.percentile(arrays.to_numpy(out[body]), [0.5, 99.5]))
        out = xp.astype(out, xp.float64)
    else:
        lo, hi = float(xp.min(out)), float(xp.max(out))
    return xp.astype(xp.clip((out - lo) / max(hi - lo, 1e-6), 0.0, 1.0), xp.float32)
