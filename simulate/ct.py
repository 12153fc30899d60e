"""CT simulation pipeline: basis maps -> polychromatic noisy projections -> reconstruction -> HU.

Ties ``physics`` to ``backend`` and ``reconstruct``; it builds no phantoms and writes no files.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from contextlib import nullcontext

import numpy as np

from nmosim.phantoms.errors import SpecError, check_range
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Tissue
from nmosim.phantoms.materials import Material, tissue_materials
from nmosim.simulate import (
    acquisition,
    arrays,
    backend,
    beam_hardening,
    bowtie,
    geometry3d,
    physics,
    reconstruct,
)
from nmosim.simulate.scanner import ScannerProtocol, imaging_grid, recon_grid

# Water cylinder used for the HU calibration (DESIGN.md 7), mm; smaller if the FOV is small.
CALIBRATION_DIAMETER_MM = 200.0
REUSE_MIN_SLICES = 16  # imaging slices from which a case's projections share one kernel matrix


def protocol_spectrum(protocol: ScannerProtocol, *, bin_kev: float = 1.0) -> physics.Spectrum:
    """The protocol's tube spectrum (kVp, aluminium filtration) in ``bin_kev`` keV bins."""
    return physics.tube_spectrum(protocol.kvp, protocol.filtration_mm_al, bin_kev=bin_kev)


def projection_spectrum(protocol: ScannerProtocol) -> physics.Spectrum:
    """The grouped spectrum used for projection (``physics.PROJECTION_BIN_KEV`` keV groups)."""
    return protocol_spectrum(protocol).rebinned(physics.PROJECTION_BIN_KEV)


def tissue_basis(protocol: ScannerProtocol, materials: Mapping[Tissue, Material] | None = None) -> np.ndarray:
    """Water and bone volume fractions per tissue id for this protocol's spectrum, ``(N_TISSUES, 2)``.

    ``materials`` defaults to :func:`nmosim.phantoms.materials.tissue_materials` with its defaults. A
    phantom's basis maps are the partial-volume-weighted sums of these rows.
    """
    materials = tissue_materials() if materials is None else materials
    return physics.basis_coefficients(materials, protocol_spectrum(protocol))


def slice_groups(imaging: Grid, recon: Grid, slice_thickness_mm: float) -> list[np.ndarray]:
    """For each reconstructed slice, the indices of the fine imaging slices inside it.

    A fine slice belongs to a reconstructed slice when its centre lies within half the slice
    thickness of the reconstructed slice's centre.
    """
    thickness = check_range("slice_thickness_mm", slice_thickness_mm, 1e-3, 100.0)
    z_fine = imaging.voxel_centers_axis(2)
    z_rec = recon.voxel_centers_axis(2)
    half = thickness / 2.0 - 1e-6 * thickness
    groups = []
    for z in z_rec:
        idx = np.flatnonzero(np.abs(z_fine - z) <= half)
        if idx.size == 0:
            raise SpecError(
                f"imaging grid has no slice within {thickness / 2:g} mm of the reconstructed slice "
                f"at z = {z:g} mm"
            )
        groups.append(idx)
    return groups


def _check_map(name: str, volume: np.ndarray, grid: Grid) -> np.ndarray:
    """``volume`` as a host array (copied once from a device array), checked against ``grid``."""
    volume = arrays.to_numpy(volume)
    if volume.shape != grid.shape:
        raise SpecError(f"{name} has shape {volume.shape}, the imaging grid {grid.shape}")
    if not np.all(np.isfinite(volume)):
        raise SpecError(f"{name} holds values that are not finite")
    return volume


def reading_geometry(protocol: ScannerProtocol, fine_slice_mm: float) -> dict:
    """Tube charge per view (mAs), effective pixel area (mm2) and distance (mm) of a fine slice's
    reading.

    The area is the cell's active width (``cell_aperture`` times the bin pitch) times the slice
    thickness magnified onto the detector, times ``detector_efficiency`` (the fraction of the
    photons reaching it that are detected): the photons counted are those of that area.
    """
    width = protocol.bin_width_mm * protocol.cell_aperture
    return {
        "mas": protocol.mas / protocol.n_views,
        "pixel_area_mm2": width * fine_slice_mm * protocol.magnification * protocol.detector_efficiency,
        "source_to_detector_mm": protocol.source_to_detector_mm,
    }


def expected_readings(
    lines_water_cm: np.ndarray,
    lines_bone_cm: np.ndarray,
    protocol: ScannerProtocol,
    geometry: dict,
    *,
    threads: int | None = None,
    xp=None,
) -> physics.Counts:
    """Expected primary signal and variance behind basis line integrals ``[..., n_bins]`` (cm)
    and the protocol's bowtie; ``xp``: an array namespace to compute in (e.g. CuPy)."""
    spectrum = projection_spectrum(protocol)
    bw, bb = bowtie.basis_lines_cm(protocol, spectrum)
    if xp is not None:
        return physics.expected_counts_array_api(
            xp, lines_water_cm + bw, lines_bone_cm + bb, spectrum, **geometry
        )
    return physics.expected_counts(
        lines_water_cm + bw, lines_bone_cm + bb, spectrum, threads=threads, **geometry
    )


def measured_projections(
    lines_water_cm: np.ndarray,
    lines_bone_cm: np.ndarray,
    fine_slice_mm: float,
    protocol: ScannerProtocol,
    rng: np.random.Generator | None,
    *,
    threads: int | None = None,
    counts: physics.Counts | None = None,
) -> np.ndarray:
    """One reconstructed slice's sinogram ``-log(I / I0)`` (``[n_views, n_bins]`` float32).

    ``lines_water_cm`` and ``lines_bone_cm`` are ``[k, n_views, n_bins]`` basis line integrals
    (cm) of the ``k`` fine slices, each ``fine_slice_mm`` thick, that make the slice. Their
    expected signals and variances add (intensity domain) before noise; ``rng=None`` gives the
    noiseless expectation. Bowtie, scatter and the corrections as the protocol asks
    (:func:`nmosim.simulate.acquisition.detect`).

    Detector: one energy-integrating reading per view, bin and reconstructed slice, so electronic
    noise is added once per reading. The air fluence of a bin is shaped by the bowtie (no heel
    effect or oblique incidence); readings are floored at 0.5 photon before the log.
    ``counts``: the fine slices' expected counts if already computed (e.g. averaged over
    sub-rays, or on the GPU).
    """
    if np.ndim(lines_water_cm) != 3 or np.shape(lines_water_cm) != np.shape(lines_bone_cm):
        raise SpecError(
            f"line integrals must both be [k, n_views, n_bins], got {np.shape(lines_water_cm)} "
            f"and {np.shape(lines_bone_cm)}"
        )
    spectrum = projection_spectrum(protocol)
    geometry = reading_geometry(protocol, fine_slice_mm)
    if counts is None:
        counts = expected_readings(lines_water_cm, lines_bone_cm, protocol, geometry, threads=threads)
    expected = physics.Counts(counts.mean.sum(axis=0), counts.variance.sum(axis=0))
    i0 = acquisition.air_readings(protocol, spectrum, **geometry) * lines_water_cm.shape[0]
    return acquisition.detect(expected, i0, protocol, spectrum, rng)


def _reconstruct_mu(
    water_map: np.ndarray,
    bone_map: np.ndarray,
    imaging: Grid,
    recon: Grid,
    protocol: ScannerProtocol,
    rng: np.random.Generator | None,
    *,
    threads: int | None,
    device: str | None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Reconstructed attenuation (1/mm, float32) on ``recon``; see :func:`simulate_ct`."""
    water_map = _check_map("water_map", water_map, imaging)
    bone_map = _check_map("bone_map", bone_map, imaging)
    groups = slice_groups(imaging, recon, protocol.slice_thickness_mm)
    device = backend.select_device(device)
    backend.check_geometry(protocol, device)
    if protocol.geometry != "fan2d":
        return geometry3d.reconstruct_mu(
            water_map, bone_map, imaging, recon, protocol, rng, device=device, progress=progress
        )
    n_threads = backend.resolve_threads(threads, device)
    cpu_threads = backend.resolve_threads(threads, "cpu")  # the physics runs on the CPU cores
    gpu_counts = device == "cuda" and arrays.has_gpu_arrays()
    out = np.empty(recon.shape, dtype=np.float32)
    # Slabs of reconstructed slices bound memory; slice results do not depend on the slab size,
    # and noise is drawn slice by slice in order, so the output does not depend on threads.
    slab = max(8, 2 * n_threads) if device == "cpu" else 32
    n_rec = recon.shape[0]
    # Many slices on one plane: the CPU projects them through a sparse matrix of ASTRA's kernel,
    # built once (backend.reused_projections); a few slices (a calibration) are not worth it.
    reuse = backend.reused_projections() if imaging.shape[0] >= REUSE_MIN_SLICES else nullcontext()
    with reuse:
        for start in range(0, n_rec, slab):
            members = groups[start : start + slab]
            lo = int(min(g.min() for g in members))
            hi = int(max(g.max() for g in members)) + 1
            sub = imaging.window(slice(lo, hi))
            maps = (water_map[lo:hi], bone_map[lo:hi])
            counts = _sub_ray_counts(
                *maps, sub, imaging, protocol, device, gpu_counts, n_threads, cpu_threads
            )
            sinogram = np.empty((len(members), protocol.n_views, protocol.n_bins), dtype=np.float32)
            for i, g in enumerate(members):
                own = physics.Counts(counts.mean[g - lo], counts.variance[g - lo])
                sinogram[i] = measured_projections(
                    counts.mean[g - lo], counts.mean[g - lo], imaging.spacing_mm[2], protocol, rng, counts=own
                )
            del counts
            stop = start + len(members)
            slab_grid = recon.window(slice(start, stop))
            if protocol.bone_correction:
                sinogram = beam_hardening.correct_sinogram(
                    sinogram, slab_grid, protocol, threads=n_threads, device=device
                )
            out[start:stop] = reconstruct.reconstruct(
                sinogram, slab_grid, protocol, threads=n_threads, device=device
            )
            if progress is not None:
                progress(stop, n_rec)
    return out


def _sub_ray_counts(
    water: np.ndarray,
    bone: np.ndarray,
    grid: Grid,
    imaging: Grid,
    protocol: ScannerProtocol,
    device: str,
    gpu_counts: bool,
    n_threads: int,
    cpu_threads: int,
) -> physics.Counts:
    """Expected readings ``[k, n_views, n_bins]`` of the ``k`` fine slices of ``water`` and
    ``bone`` (volume fractions on ``grid``), each the mean over the protocol's sub-rays of their
    polychromatic signal (intensities, not line integrals, are averaged; variances likewise)."""
    geometry = reading_geometry(protocol, imaging.spacing_mm[2])
    rays = acquisition.sub_rays(protocol)
    mean = variance = None
    for ray in rays:
        lines = []
        for volume in (water, bone):
            chunk = np.ascontiguousarray(volume, dtype=np.float32)
            if not chunk.any():  # e.g. no bone in this slab: nothing to project
                lines.append(np.zeros((grid.shape[0], protocol.n_views, protocol.n_bins), dtype=np.float32))
                continue
            # Volume fractions times path length in mm; / 10 gives cm.
            projected = backend.forward_project(
                chunk, grid, protocol, threads=n_threads, device=device, sub_ray=ray
            )
            lines.append(projected / np.float32(10.0))
        xp = arrays.namespace("cuda") if gpu_counts else None  # the polychromatic sums on the GPU
        counts = expected_readings(lines[0], lines[1], protocol, geometry, threads=cpu_threads, xp=xp)
        del lines
        if mean is None:
            mean, variance = counts.mean, counts.variance
        else:
            mean += counts.mean
            variance += counts.variance
    scale = np.float32(1.0 / len(rays))
    return physics.Counts(mean * scale, variance * scale)


def hounsfield(mu_per_mm: np.ndarray, mu_water_per_mm: float, mu_air_per_mm: float) -> np.ndarray:
    """HU from attenuation: ``1000 (mu - mu_water) / (mu_water - mu_air)`` (float32)."""
    scale = np.float32(1000.0 / (mu_water_per_mm - mu_air_per_mm))
    return ((np.asarray(mu_per_mm, dtype=np.float32) - np.float32(mu_water_per_mm)) * scale).astype(
        np.float32
    )


def simulate_ct(
    water_map: np.ndarray,
    bone_map: np.ndarray,
    imaging_grid: Grid,
    recon_grid: Grid,
    protocol: ScannerProtocol,
    rng: np.random.Generator | None,
    *,
    threads: int | None = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Simulated CT in HU, float32 ``[nz, ny, nx]`` on ``recon_grid``.

    Parameters
    ----------
    water_map, bone_map : ``[nz, ny, nx]`` water- and bone-equivalent volume fractions
        (dimensionless, see :func:`tissue_basis`) on the fine ``imaging_grid``; arrays of any
        namespace (e.g. CuPy's), copied to the host once: ASTRA's projectors read host memory.
    imaging_grid : grid of the maps; finer than ``recon_grid`` (no inverse crime), its slices
        subdividing the reconstructed ones (see :func:`nmosim.simulate.scanner.imaging_grid`).
    recon_grid : output grid; its slices are ``protocol.slice_thickness_mm`` thick.
    protocol : acquisition (kVp, filtration, mAs, geometry, electronic noise, water correction)
        and reconstruction (method, kernel, iterations).
    rng : source of the quantum and electronic noise; ``None`` for a noiseless scan.
    threads, device : as for :func:`nmosim.simulate.backend.forward_project`.
    progress : called as ``progress(done, total)`` after each slab of reconstructed slices.

    Steps: each basis map is forward projected once per sub-ray (focal-spot point, cell point,
    sub-view; :mod:`nmosim.simulate.acquisition`; line integrals in mm, converted to cm); per fine
    slice the expected polychromatic signal behind the bowtie and its variance are summed over
    grouped energy bins and averaged over the sub-rays; the fine slices of a reconstructed slice
    are added in the intensity domain; scatter, noise, scatter correction, log, optional water
    beam-hardening correction per column; optional bone correction; reconstruction; HU from a water-cylinder
    calibration of the same protocol (:func:`water_calibration`). The axial and helical
    geometries scan the maps as a multi-row cone beam on the GPU instead
    (:mod:`nmosim.simulate.geometry3d`); asking for them without a GPU raises SpecError before
    any work.
    """
    backend.check_geometry(protocol, backend.select_device(device))
    mu = _reconstruct_mu(
        water_map, bone_map, imaging_grid, recon_grid, protocol, rng, threads=threads, device=device,
        progress=progress,
    )  # fmt: skip
    mu_water, mu_air = water_calibration(protocol, device=device, threads=threads)
    return hounsfield(mu, mu_water, mu_air)


def cylinder_grids(protocol: ScannerProtocol, n_slices: int, z_margin_mm: float = 0.0) -> tuple[Grid, Grid]:
    """Reconstruction grid of ``n_slices`` slices centred on z = 0, and the imaging grid under it,
    which reaches ``z_margin_mm`` (rounded up to whole slices) beyond them: ``(recon, imaging)``."""
    if n_slices < 1:
        raise SpecError(f"n_slices = {n_slices!r} is outside [1, inf)")
    thickness = protocol.slice_thickness_mm
    half_z = n_slices * thickness / 2.0
    rec = recon_grid(protocol, -half_z, half_z)
    margin = float(np.ceil(z_margin_mm / thickness - 1e-9)) * thickness
    outer = recon_grid(protocol, -half_z - margin, half_z + margin) if margin > 0 else rec
    return rec, imaging_grid(protocol, outer)


def water_cylinder_maps(
    protocol: ScannerProtocol,
    diameter_mm: float,
    n_slices: int = 1,
    *,
    supersample: int = 4,
    z_margin_mm: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, Grid, Grid]:
    """Basis maps of a centred water cylinder along z, with its imaging and reconstruction grids.

    Returns ``(water_map, bone_map, imaging_grid, recon_grid)``; ``water_map`` is the area
    fraction of each fine pixel inside the circle (``supersample``**2 points per pixel) times the
    water basis coefficient of water (1), ``bone_map`` is zero. The cylinder and its imaging grid
    reach ``z_margin_mm`` (rounded up to whole slices) beyond the ``n_slices`` reconstructed ones.
    """
    diameter = check_range("diameter_mm", diameter_mm, 1.0, 2000.0)
    rec, fine = cylinder_grids(protocol, n_slices, z_margin_mm)
    r2 = (diameter / 2.0) ** 2
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    fraction = np.zeros(fine.shape[1:], dtype=np.float64)
    x, y = fine.voxel_centers_axis(0), fine.voxel_centers_axis(1)
    for oy in offsets:
        yy = (y + oy * fine.spacing_mm[1])[:, None] ** 2
        for ox in offsets:
            fraction += (yy + (x + ox * fine.spacing_mm[0])[None, :] ** 2) <= r2
    fraction /= supersample**2
    water = np.broadcast_to(fraction.astype(np.float32), fine.shape).copy()
    return water, np.zeros_like(water), fine, rec


def simulate_water_cylinder(
    protocol: ScannerProtocol,
    diameter_mm: float = CALIBRATION_DIAMETER_MM,
    rng: np.random.Generator | None = None,
    *,
    n_slices: int = 1,
    hu: bool = True,
    threads: int | None = None,
    device: str | None = None,
) -> tuple[np.ndarray, Grid]:
    """Scan of a water cylinder in air, centred on the rotation axis.

    Returns the reconstruction (HU, or attenuation in 1/mm if ``hu`` is false) and its grid, the
    protocol's reconstruction grid over ``n_slices`` slices. ``rng=None`` scans without noise.
    For the cone-beam geometries the cylinder reaches beyond those slices as far as the rays
    that reconstruct them (:func:`nmosim.simulate.geometry3d.scan_margin_mm`): a long cylinder.
    """
    margin = 0.0 if protocol.geometry == "fan2d" else geometry3d.scan_margin_mm(protocol)
    water, bone, fine, rec = water_cylinder_maps(protocol, diameter_mm, n_slices, z_margin_mm=margin)
    mu = _reconstruct_mu(water, bone, fine, rec, protocol, rng, threads=threads, device=device)
    if not hu:
        return mu, rec
    return hounsfield(mu, *water_calibration(protocol, device=device, threads=threads)), rec


def water_calibration(
    protocol: ScannerProtocol, *, device: str | None = None, threads: int | None = None
) -> tuple[float, float]:
    """Reconstructed attenuation (1/mm) of water and air for ``protocol``, as a scanner calibrates.

    A noiseless scan of a water cylinder (``CALIBRATION_DIAMETER_MM``, or 60 % of the field of view
    if that is smaller) with the same spectrum, geometry, water correction and reconstruction:
    water is the mean over the central disc of a third of the diameter, air the mean over the
    ring between the cylinder (plus 10 %) and the field of view's inscribed circle (minus 5 %).
    Cached per protocol; tube charge and electronic noise do not change a noiseless scan, so
    protocols differing only in those share one calibration.
    """
    key = dataclasses.replace(protocol, mas=100.0, electronic_noise_photons=0.0)
    return _water_calibration(key, backend.select_device(device), threads)


@functools.lru_cache(maxsize=32)
def _water_calibration(protocol: ScannerProtocol, device: str, threads: int | None) -> tuple[float, float]:
    fov = protocol.recon_fov_mm
    diameter = min(CALIBRATION_DIAMETER_MM, 0.6 * fov)
    mu, rec = simulate_water_cylinder(protocol, diameter, None, hu=False, threads=threads, device=device)
    x, y = rec.voxel_centers_axis(0), rec.voxel_centers_axis(1)
    r = np.hypot(x[None, :], y[:, None])
    water = r <= diameter / 6.0
    air = (r >= 0.55 * diameter) & (r <= 0.95 * fov / 2.0)
    return float(mu[0][water].mean()), float(mu[0][air].mean())


def reference_hu(material: Material, protocol: ScannerProtocol, *, water_cm: float = 20.0) -> float:
    """HU of ``material`` at the effective energy of the protocol's beam behind ``water_cm`` cm of
    water (the monochromatic expectation a scan should approach)."""
    energy = physics.effective_energy_kev(protocol_spectrum(protocol), water_cm=water_cm)
    return physics.hu_at_energy(material, energy)
