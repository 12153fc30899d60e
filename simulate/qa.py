"""``nmosim qa``: the QA phantom through the scanner, its image quality measured and written.

Scans :mod:`.qa_phantom` with one protocol through :func:`nmosim.simulate.ct.simulate_ct`, the
code that scans a case, from one seeded generator, in this order: the insert section twice (two
noise realizations: insert HU and the MTF at the protocol's pixel), the uniformity section twice
(noise, NPS and uniformity, clear of the inserts' streaks), and a targeted reconstruction of the
insert section on a small field of fine pixels around the edge insert (the MTF as scanners
measure it, a kernel unlimited by the display pixel). Measures with :mod:`.image_quality` and
writes ``qa.json`` and the images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.simulate import backend, ct, geometry3d, image_quality, physics, qa_phantom, reconstruct
from nmosim.simulate.io import write_json, write_nifti
from nmosim.simulate.outputs import nmosim_version, staged_directory
from nmosim.simulate.scanner import ScannerProtocol

# 2: noise, nps and uniformity from the uniformity section (format 1: the insert section's centre,
# now under insert_section); mtf_targeted and scanner.kernel_mtf_targeted added.
QA_FORMAT = 2
# Reported pass band for an insert's mean HU against its expected HU: 5 % of the expected contrast
# to water plus 10 HU. The expected HU is what a water-corrected scanner reads (see
# :func:`water_corrected_hu`): dense bone reads below its monochromatic value at the beam's
# effective energy (``ct.reference_hu``, reported as ``monochromatic_hu``) by the beam hardening
# that the water correction leaves, about 12 % for cortical bone at 120 kVp, as on a scanner
# (DOMAIN.md 4.4: beam-hardening artefacts); that shortfall is physics, not an error, so it is
# reported (``beam_hardening_hu``) and not counted against the insert.
HU_TOLERANCE_FRACTION = 0.05
HU_TOLERANCE_HU = 10.0
INSERT_ROI_FRACTION = 0.6  # ROI radius over insert radius
PERIPHERY_ROI_MM = 8.0
MAX_SLICES = 64
# The targeted reconstruction for the MTF: a square field of TARGETED_FIELD_MM around the edge
# insert at TARGETED_PIXEL_MM (or the protocol's pixel where finer). Scanners measure sharp kernels
# on a small display field (DOMAIN.md 4.3: a targeted single-hip DFOV of 180-250 mm at 512 pixels,
# 0.35-0.5 mm); a 0.75 mm pixel carries nothing above 0.67 lp/mm, below a bone kernel's MTF50 of
# 0.6-0.9 lp/mm (DOMAIN.md 4.4), whatever the kernel.
TARGETED_PIXEL_MM = 0.35
TARGETED_FIELD_MM = 44.0


@dataclass(frozen=True)
class QAScan:
    """Scans (HU, ``[nz, ny, nx]``) of ``phantom`` with ``protocol``: two noise realizations
    ``first`` and ``second`` of its insert section on ``grid``, two ``uniform_first`` and
    ``uniform_second`` of its uniformity section on ``uniform_grid`` (the same in-plane, at
    ``qa_phantom.UNIFORMITY_SECTION_Z_MM``), and one of the insert section, ``targeted``, on the
    small fine grid ``targeted_grid`` around the edge insert."""

    first: np.ndarray
    second: np.ndarray
    grid: Grid
    phantom: qa_phantom.QAPhantom
    protocol: ScannerProtocol
    uniform_first: np.ndarray
    uniform_second: np.ndarray
    uniform_grid: Grid
    targeted: np.ndarray
    targeted_grid: Grid


def targeted_grid(phantom: qa_phantom.QAPhantom, protocol: ScannerProtocol, recon: Grid) -> Grid:
    """The slices of ``recon`` on a square of :data:`TARGETED_FIELD_MM` around the edge insert, at
    :data:`TARGETED_PIXEL_MM` or the protocol's pixel where finer (mm)."""
    edge = next(i for i in phantom.inserts if i.name == qa_phantom.EDGE_INSERT)
    pixel = min(TARGETED_PIXEL_MM, protocol.recon_pixel_mm)
    n = int(np.ceil(TARGETED_FIELD_MM / pixel))
    origin = tuple(c - (n - 1) / 2.0 * pixel for c in edge.center_xy_mm)
    return Grid((recon.shape[0], n, n), (pixel, pixel, recon.spacing_mm[2]), (*origin, recon.origin_mm[2]))


def scan_qa(
    protocol: ScannerProtocol,
    diameter_mm: float = qa_phantom.DIAMETERS_MM[0],
    n_slices: int = 3,
    seed: int | None = 0,
    *,
    device: str | None = None,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> QAScan:
    """Scan the QA phantom with ``protocol``: the insert section twice, the uniformity section twice
    and the targeted reconstruction, drawing the noise from ``np.random.default_rng(seed)`` in that
    order (``seed=None``: noise-free scans)."""
    if isinstance(n_slices, bool) or not 1 <= int(n_slices) <= MAX_SLICES or int(n_slices) != n_slices:
        raise SpecError(f"n_slices = {n_slices!r} is outside [1, {MAX_SLICES}]")
    phantom = qa_phantom.qa_phantom(diameter_mm)
    device = backend.select_device(device, protocol)
    margin = 0.0 if protocol.geometry == "fan2d" else geometry3d.scan_margin_mm(protocol)
    spectrum = ct.protocol_spectrum(protocol)
    rng = None if seed is None else np.random.default_rng(seed)
    grids, scans = [], []
    sections = ((phantom, 0.0), (qa_phantom.uniformity_section(phantom), qa_phantom.UNIFORMITY_SECTION_Z_MM))
    for section, z_mm in sections:
        water, bone, fine, rec = qa_phantom.phantom_maps(
            section, protocol, spectrum, int(n_slices), z_margin_mm=margin, z_center_mm=z_mm
        )
        grids.append(rec)
        for name in ("first", "second"):
            image = ct.simulate_ct(water, bone, fine, rec, protocol, rng, threads=threads, device=device)
            scans.append(image)
            if progress is not None:
                progress(f"{'insert' if z_mm == 0.0 else 'uniform'} {name}")
        if z_mm == 0.0:
            insert_maps = (water, bone, fine)
            del water, bone
    target = targeted_grid(phantom, protocol, grids[0])
    targeted = ct.simulate_ct(*insert_maps, target, protocol, rng, threads=threads, device=device)
    if progress is not None:
        progress("targeted")
    return QAScan(*scans[:2], grids[0], phantom, protocol, *scans[2:], grids[1], targeted, target)


def water_corrected_hu(
    insert: qa_phantom.Insert, phantom: qa_phantom.QAPhantom, protocol: ScannerProtocol, n_angles: int = 90
) -> float:
    """HU (float) a noise-free, water-corrected scan of ``phantom`` gives the centre of ``insert``.

    Polychromatic: for rays through the insert's central 60 % (the ROI) at ``n_angles`` view
    directions, the water-corrected projection with the insert, less the one with water in its
    place, over the insert's chord, is its attenuation above water (1/cm); averaged and divided by
    the reference water attenuation. The beam is the central column's (no bowtie); the other
    inserts on a ray are left out.
    """
    spectrum = ct.protocol_spectrum(protocol)
    correction = physics.fit_water_correction(spectrum)
    q = spectrum.photons_per_mas_mm2 * physics.detector_weights(spectrum)
    mu_w, mu_b = (
        physics.linear_attenuation_per_cm(m, spectrum.energies_kev) for m in physics.BASIS_MATERIALS
    )
    a_w, a_b = qa_phantom.material_basis([insert.material], spectrum)[0]
    r_big, r = phantom.diameter_mm / 20.0, insert.diameter_mm / 20.0  # cm
    theta = np.pi * (np.arange(n_angles) + 0.5) / n_angles
    offsets = INSERT_ROI_FRACTION * r * ((np.arange(9) + 0.5) / 9 * 2.0 - 1.0)
    normal_position = insert.center_xy_mm[0] / 10.0 * np.cos(theta) + insert.center_xy_mm[1] / 10.0 * np.sin(
        theta
    )
    d = np.abs(normal_position[:, None] + offsets[None, :]).ravel()  # ray distances from the axis, cm
    chord = np.broadcast_to(2.0 * np.sqrt(r * r - offsets**2), (n_angles, offsets.size)).ravel()
    water = 2.0 * np.sqrt(np.maximum(r_big * r_big - d * d, 0.0))

    def corrected(water_cm: np.ndarray, bone_cm: np.ndarray) -> np.ndarray:
        t = np.exp(-(np.outer(water_cm, mu_w) + np.outer(bone_cm, mu_b))) @ q / q.sum()
        return correction(-np.log(t)).astype(np.float64)

    excess = corrected(water - chord + a_w * chord, a_b * chord) - corrected(water, np.zeros_like(water))
    return float(1000.0 * np.mean(excess / chord) / correction.mu_ref_per_cm)


def _xy(grid: Grid) -> tuple[tuple[int, int], float, tuple[float, float]]:
    return grid.shape[1:], float(grid.spacing_mm[0]), (float(grid.origin_mm[0]), float(grid.origin_mm[1]))


def _insert_rows(scan: QAScan) -> list[dict]:
    shape, pixel, origin = _xy(scan.grid)
    water_cm = scan.phantom.diameter_mm / 10.0
    rows = []
    for insert in scan.phantom.inserts:
        mask = image_quality.disc_mask(shape, pixel, insert.center_xy_mm,
                                       INSERT_ROI_FRACTION * insert.diameter_mm / 2.0, origin)  # fmt: skip
        stats = image_quality.roi_stats(scan.first, mask)
        monochromatic = ct.reference_hu(insert.material, scan.protocol, water_cm=water_cm)
        expected = water_corrected_hu(insert, scan.phantom, scan.protocol)
        tolerance = HU_TOLERANCE_HU + HU_TOLERANCE_FRACTION * abs(expected)
        difference = stats.mean - expected
        rows.append({
            "name": insert.name, "material": insert.material.name, "center_xy_mm": list(insert.center_xy_mm),
            "mean_hu": round(stats.mean, 2), "sd_hu": round(stats.sd, 2), "n_pixels": stats.n,
            "expected_hu": round(expected, 2), "monochromatic_hu": round(monochromatic, 2),
            "beam_hardening_hu": round(expected - monochromatic, 2), "difference_hu": round(difference, 2),
            "tolerance_hu": round(tolerance, 2), "within_tolerance": bool(abs(difference) <= tolerance),
        })  # fmt: skip
    return rows


def _nps(noise: np.ndarray, grid: Grid) -> dict:
    """NPS of the central square inside the uniform centre, every slice one ROI."""
    shape, pixel, _ = _xy(grid)
    side = int(np.sqrt(2.0) * (qa_phantom.uniform_radius_mm() - 2.0) / pixel)
    if side < 8:
        raise SpecError(f"recon_pixel_mm = {pixel:g} leaves a noise ROI of {side} pixels; give a finer one")
    # the pixel nearest the axis, then the square around it
    iy, ix = (int(np.argmin(np.abs(grid.voxel_centers_axis(a)))) for a in (1, 0))
    lo_y, lo_x = iy - side // 2, ix - side // 2
    rois = noise[:, lo_y : lo_y + side, lo_x : lo_x + side]
    fx, fy, nps = image_quality.nps_2d(rois, pixel)
    f, radial = image_quality.radial_nps(fx, fy, nps)
    step = (fx[1] - fx[0]) * (fy[1] - fy[0])
    return {
        "roi_side_pixels": side,
        "n_rois": int(rois.shape[0]),
        "peak_lp_mm": round(image_quality.nps_peak_lp_mm(f, radial), 4),
        "mean_frequency_lp_mm": round(float((f * radial).sum() / radial.sum()), 4),
        "variance_from_nps_hu2": round(float(nps.sum() * step), 2),
        "radial_frequency_lp_mm": np.round(f, 4).tolist(),
        "radial_nps_hu2_mm2": np.round(radial, 3).tolist(),
    }


def _mtf(image: np.ndarray, grid: Grid, phantom: qa_phantom.QAPhantom, what: str) -> dict:
    """MTF from the rim of the edge insert in ``image`` on ``grid`` (radial bins of a tenth of a
    pixel, AAPM Report 233's circular edge)."""
    shape, pixel, origin = _xy(grid)
    edge = next(i for i in phantom.inserts if i.name == qa_phantom.EDGE_INSERT)
    offsets, esf = image_quality.disc_edge_profile(image, pixel, edge.center_xy_mm, edge.diameter_mm / 2.0,
                                                   half_width_mm=8.0, origin_xy_mm=origin)  # fmt: skip
    freq, mtf = image_quality.mtf_from_esf(esf, offsets[1] - offsets[0])
    keep = freq <= 1.5
    return {
        "edge": f"rim of the {edge.name} insert (circular edge), {what}",
        "pixel_mm": pixel,
        "mtf50_lp_mm": round(image_quality.mtf_at(freq, mtf, 0.5), 4),
        "mtf10_lp_mm": round(image_quality.mtf_at(freq, mtf, 0.1), 4),
        "peak_mtf": round(float(mtf[keep].max()), 4),
        "frequency_lp_mm": np.round(freq[keep][::4], 4).tolist(),
        "mtf": np.round(mtf[keep][::4], 4).tolist(),
    }


def _centre_mask(grid: Grid) -> np.ndarray:
    shape, pixel, origin = _xy(grid)
    return image_quality.disc_mask(shape, pixel, (0.0, 0.0), qa_phantom.uniform_radius_mm() - 5.0, origin)


def noise_report(scan: QAScan) -> dict:
    """``noise`` (SD in HU of the centre disc of the uniformity section, of one realization and of
    the noise-only image) and ``insert_section`` (the same disc in the insert section, where the
    inserts' streaks and shading add to it)."""
    roi = f"central disc of radius {qa_phantom.uniform_radius_mm() - 5.0:g} mm"
    out = {}
    for key, (a, b, grid) in {
        "noise": (scan.uniform_first, scan.uniform_second, scan.uniform_grid),
        "insert_section": (scan.first, scan.second, scan.grid),
    }.items():
        centre = _centre_mask(grid)
        image = image_quality.roi_stats(a, centre)
        out[key] = {
            "section": "uniformity" if key == "noise" else "inserts",
            "roi": roi,
            "mean_hu": round(image.mean, 2),
            "sd_hu": round(image.sd, 3),
            "sd_noise_only_hu": round(image_quality.roi_stats(image_quality.noise_only(a, b), centre).sd, 3),
            "noise_only": "(first - second) / sqrt(2) of two realizations",
        }
    return out


def measure_qa(scan: QAScan) -> dict:
    """The image-quality report of ``scan`` (the content of qa.json but the header): insert HU and
    MTF from the insert section, noise, NPS and uniformity from the uniformity section."""
    shape, pixel, origin = _xy(scan.uniform_grid)
    noise = image_quality.noise_only(scan.uniform_first, scan.uniform_second)
    uniform = image_quality.roi_stats(scan.uniform_first, _centre_mask(scan.uniform_grid))
    periphery = []
    centres = qa_phantom.periphery_centers_mm(scan.phantom, PERIPHERY_ROI_MM)
    for name, xy in zip(("anterior", "right", "posterior", "left"), centres, strict=True):
        mask = image_quality.disc_mask(shape, pixel, xy, PERIPHERY_ROI_MM, origin)
        stats = image_quality.roi_stats(scan.uniform_first, mask)
        periphery.append({"position": name, "center_xy_mm": list(xy), "mean_hu": round(stats.mean, 2),
                          "difference_to_centre_hu": round(stats.mean - uniform.mean, 2)})  # fmt: skip
    targeted_what = (f"targeted reconstruction: a {TARGETED_FIELD_MM:g} mm field of "
                     f"{scan.targeted_grid.spacing_mm[0]:g} mm pixels, one realization")  # fmt: skip
    return {
        "inserts": _insert_rows(scan),
        **noise_report(scan),
        "nps": {"section": "uniformity", **_nps(noise, scan.uniform_grid)},
        "mtf": _mtf(0.5 * (scan.first + scan.second), scan.grid, scan.phantom, "both realizations averaged"),
        "mtf_targeted": _mtf(scan.targeted, scan.targeted_grid, scan.phantom, targeted_what),
        "uniformity": {
            "section": "uniformity",
            "centre_mean_hu": round(uniform.mean, 2),
            "periphery": periphery,
            "max_abs_difference_hu": round(max(abs(p["difference_to_centre_hu"]) for p in periphery), 2),
        },
    }


def qa_report(scan: QAScan, seed: int, preset: str | None = None) -> dict:
    """qa.json: header (version, seed, protocol with the kernel's MTF, phantom, grid) and measures."""
    return {
        "format": QA_FORMAT,
        "nmosim_version": nmosim_version(),
        "seed": int(seed),
        "scanner": {
            "preset": preset,
            **scan.protocol.to_dict(),
            "kernel_mtf": reconstruct.kernel_resolution(scan.protocol, float(scan.grid.spacing_mm[0])),
            "kernel_mtf_targeted": reconstruct.kernel_resolution(
                scan.protocol, float(scan.targeted_grid.spacing_mm[0])
            ),
        },
        "phantom": {
            **scan.phantom.to_dict(),
            "sections": {
                "inserts": {"z_mm": 0.0, "measures": ["inserts", "mtf", "mtf_targeted", "insert_section"]},
                "uniformity": {
                    "z_mm": qa_phantom.UNIFORMITY_SECTION_Z_MM,
                    "material": "water",
                    "inserts": [],
                    "measures": ["noise", "nps", "uniformity"],
                },
            },
        },
        "reconstruction_grid": scan.grid.to_dict(),
        "uniformity_grid": scan.uniform_grid.to_dict(),
        "targeted_grid": scan.targeted_grid.to_dict(),
        "hu_tolerance": f"{HU_TOLERANCE_HU:g} HU + {100 * HU_TOLERANCE_FRACTION:g} % of |expected HU|",
        "expected_hu": "what a noise-free water-corrected scan reads (polychromatic, beam hardening left "
        "by the water correction included); monochromatic_hu: at the beam's effective energy",
        **measure_qa(scan),
    }


def write_qa(scan: QAScan, report: dict, out: Path, overwrite: bool = False) -> Path:
    """Write ``qa.json`` and float32 HU images into folder ``out``: ``ct.nii.gz``,
    ``ct_repeat.nii.gz`` (insert section), ``ct_uniformity.nii.gz``, ``ct_uniformity_repeat.nii.gz``
    (uniformity section), ``ct_targeted.nii.gz`` (targeted field); staged and marked as every
    nmosim output (:func:`nmosim.simulate.outputs.staged_directory`)."""
    with staged_directory(Path(out), "qa", overwrite) as stage:
        write_nifti(stage / "ct.nii.gz", scan.first, scan.grid, np.float32)
        write_nifti(stage / "ct_repeat.nii.gz", scan.second, scan.grid, np.float32)
        write_nifti(stage / "ct_uniformity.nii.gz", scan.uniform_first, scan.uniform_grid, np.float32)
        write_nifti(stage / "ct_uniformity_repeat.nii.gz", scan.uniform_second, scan.uniform_grid, np.float32)
        write_nifti(stage / "ct_targeted.nii.gz", scan.targeted, scan.targeted_grid, np.float32)
        write_json(stage / "qa.json", report)
    return Path(out)
