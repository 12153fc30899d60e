"""Multi-row cone-beam scans on the GPU: axial (step and shoot, FDK) and helical (single-slice
rebinning to fan beams, then any fan-beam reconstruction), through ASTRA 3D.

The geometry (views, source heights, ASTRA ``cone_vec`` vectors, table positions, rebinning)
is plain numpy and testable without a GPU; projection and FDK call ASTRA's CUDA algorithms.

Frame: patient (x, y, z) mm is ASTRA's 3D (X, Y, Z); ASTRA's 3D volume ``[slice, row, col]``
runs along +Z, +Y, +X from its window minimum, the order of a Grid's ``[z, y, x]`` array. View
``k`` has the fan-beam geometry of :class:`nmosim.simulate.scanner.ScannerProtocol` at
``beta_k = 2 pi k / n_views`` with the source at height ``z_k``; the detector centre lies
opposite at the same height, its columns (bins) run along ``(cos beta, -sin beta, 0)`` at
``bin_width_mm`` and its rows along +z at ``row_pitch_mm``. Projections are
``[rows, views, bins]`` line integrals (value times mm).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import astra
import numpy as np
import scipy.fft

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.simulate import acquisition, arrays, backend, bowtie, physics, reconstruct
from nmosim.simulate.scanner import ScannerProtocol


# --- geometry (numpy) -------------------------------------------------------------------------
def cone_vectors(protocol: ScannerProtocol, view_index: np.ndarray, source_z_mm: np.ndarray) -> np.ndarray:
    """ASTRA ``cone_vec`` rows ``[n, 12]`` (source, detector centre, column step, row step; mm)
    for views ``view_index`` (angle ``2 pi k / n_views``) with sources at heights ``source_z_mm``."""
    k = np.asarray(view_index, dtype=float)
    z = np.broadcast_to(np.asarray(source_z_mm, dtype=float), k.shape)
    b = 2.0 * np.pi * k / protocol.n_views
    toward_source = np.stack([np.sin(b), np.cos(b), np.zeros_like(b)], axis=1)
    height = np.stack([np.zeros_like(b), np.zeros_like(b), z], axis=1)
    source = protocol.source_to_iso_mm * toward_source + height
    detector = -(protocol.source_to_detector_mm - protocol.source_to_iso_mm) * toward_source + height
    columns = protocol.bin_width_mm * np.stack([np.cos(b), -np.sin(b), np.zeros_like(b)], axis=1)
    rows = np.zeros_like(columns)
    rows[:, 2] = protocol.row_pitch_mm
    return np.concatenate([source, detector, columns, rows], axis=1)


def circular_cone_geometry(protocol: ScannerProtocol, z_stretch: float = 1.0) -> dict:
    """ASTRA ``cone`` geometry of one axial rotation with its source plane at z = 0 (rows
    ``z_stretch`` times their pitch apart, for a volume stretched so along z).

    ASTRA's angle ``theta = pi - beta`` puts the source where ours is; its columns run the other
    way, so data in this geometry are ours with the bin axis reversed (see :func:`to_astra_cone`).
    """
    theta = np.pi - protocol.view_angles_rad()
    return astra.create_proj_geom(
        "cone", protocol.bin_width_mm, protocol.row_pitch_mm * z_stretch, protocol.detector_rows,
        protocol.n_bins, theta, protocol.source_to_iso_mm,
        protocol.source_to_detector_mm - protocol.source_to_iso_mm,
    )  # fmt: skip


def to_astra_cone(projections: np.ndarray) -> np.ndarray:
    """Our ``[rows, views, bins]`` projections in the bin order of :func:`circular_cone_geometry`."""
    return np.ascontiguousarray(projections[:, :, ::-1])


def axial_rotations(protocol: ScannerProtocol, z_slices_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source-plane heights (mm) of the axial rotations, and for each reconstructed slice (centres
    ``z_slices_mm``, ``slice_thickness_mm`` apart) the rotation that reconstructs it.

    Each rotation takes as many whole slices as its collimation holds, centred on them, so no
    slice straddles two rotations (as scanners align slices with detector rows).
    """
    per = max(int(math.floor(protocol.collimation_mm / protocol.slice_thickness_mm + 1e-9)), 1)
    z = np.asarray(z_slices_mm, dtype=float)
    band = np.arange(z.size) // per
    tables = np.array([z[band == i].mean() for i in range(int(band.max()) + 1)])
    return tables, band


def helical_views(
    protocol: ScannerProtocol, z_lower_mm: float, z_upper_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """View indices and source heights (mm) of a helix that gives every z in
    ``[z_lower_mm, z_upper_mm]`` a whole rotation centred on it (plus half a slice each way)."""
    feed = protocol.table_feed_mm
    z_start = z_lower_mm - feed / 2.0 - protocol.slice_thickness_mm / 2.0
    span = z_upper_mm - z_lower_mm + feed + protocol.slice_thickness_mm
    n = int(math.ceil(span / feed * protocol.n_views)) + 2
    k = np.arange(n)
    return k, z_start + k * feed / protocol.n_views


def fan_cos2(protocol: ScannerProtocol) -> np.ndarray:
    """``cos(gamma)**2`` of each bin's fan angle ``gamma`` (length ``n_bins``)."""
    gamma = np.arctan(protocol.bin_offsets_mm() / protocol.source_to_detector_mm)
    return np.cos(gamma) ** 2


def rebin_helical_slice(
    projections: np.ndarray, source_z_mm: np.ndarray, z_mm: float, protocol: ScannerProtocol
) -> np.ndarray:
    """Fan-beam sinogram ``[n_views, n_bins]`` of the plane ``z = z_mm`` from helical projections
    ``[rows, K, bins]`` (single-slice rebinning with linear interpolation between rows).

    Takes the ``n_views`` consecutive views whose sources lie nearest ``z_mm`` (one per angle)
    and for each ray the row where it crosses ``z_mm`` at its point nearest the rotation axis,
    ``(z_mm - z_source) * magnification / cos(gamma)**2`` from the detector centre.
    """
    n_rows, n_total, _ = projections.shape
    n_views = protocol.n_views
    centre = float(np.interp(z_mm, source_z_mm, np.arange(source_z_mm.size)))
    first = int(round(centre - n_views / 2.0))
    if first < 0 or first + n_views > n_total:
        raise SpecError(f"z = {z_mm:g} mm lies outside the helix's reconstructable range")
    k = first + np.arange(n_views)
    offset = (z_mm - source_z_mm[k])[:, None] * protocol.magnification / fan_cos2(protocol)[None, :]
    row = np.clip((n_rows - 1) / 2.0 + offset / protocol.row_pitch_mm, 0.0, n_rows - 1.0)
    low = (
        np.minimum(np.floor(row).astype(np.intp), n_rows - 2) if n_rows > 1 else np.zeros(row.shape, np.intp)
    )
    weight = (row - low).astype(np.float32)
    bins = np.arange(projections.shape[2])[None, :]
    lower = projections[low, k[:, None], bins]
    upper = projections[np.minimum(low + 1, n_rows - 1), k[:, None], bins]
    out = np.empty((n_views, projections.shape[2]), dtype=np.float32)
    out[k % n_views] = lower + (upper - lower) * weight
    return out


def slice_offsets(protocol: ScannerProtocol) -> np.ndarray:
    """Offsets (mm) of the planes averaged into one reconstructed slice: no further apart than a
    row at the iso-centre, spread over the slice thickness."""
    iso_row = protocol.row_pitch_mm / protocol.magnification
    n = max(int(math.ceil(protocol.slice_thickness_mm / iso_row - 1e-9)), 1)
    return ((np.arange(n) + 0.5) / n - 0.5) * protocol.slice_thickness_mm


def scan_margin_mm(protocol: ScannerProtocol) -> float:
    """How far (mm) beyond its reconstructed slices an object must reach along z for a 3D scan
    to see it as infinitely long: rays that reconstruct a plane cross other heights in the
    object (up to about a third of the way to the cone's edge within 200 mm of the axis, plus
    half the table feed on a helix); half the collimation, half the feed and a slice cover it."""
    return 0.5 * protocol.collimation_mm + 0.5 * protocol.table_feed_mm + protocol.slice_thickness_mm


def cone_reach_mm(protocol: ScannerProtocol, grid: Grid) -> float:
    """Half-height (mm) of the z band that a rotation's rays cross inside ``grid``'s xy box."""
    x, y = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)
    radius = float(np.hypot(np.abs(x).max(), np.abs(y).max())) + max(grid.spacing_mm[:2])
    radius = min(radius, 0.99 * protocol.source_to_iso_mm)
    half = protocol.detector_rows * protocol.row_pitch_mm / 2.0 / protocol.magnification
    return half * protocol.source_to_iso_mm / (protocol.source_to_iso_mm - radius)


def iterative_grid(
    protocol: ScannerProtocol, recon: Grid, members: np.ndarray, table_mm: float
) -> tuple[Grid, int]:
    """Grid (z relative to the source plane at ``table_mm``) for an iterative axial
    reconstruction of slices ``members`` of ``recon``: the same slices extended by whole slices
    to the cone's reach, and the index of the first member in it."""
    reach = cone_reach_mm(protocol, recon)
    thickness = recon.spacing_mm[2]
    z = recon.voxel_centers_axis(2)[members] - table_mm
    below = max(int(math.ceil((z[0] + reach) / thickness - 1e-9)), 0)
    above = max(int(math.ceil((reach - z[-1]) / thickness - 1e-9)), 0)
    shape = (below + members.size + above, recon.shape[1], recon.shape[2])
    origin = (recon.origin_mm[0], recon.origin_mm[1], float(z[0] - below * thickness))
    return Grid(shape, recon.spacing_mm, origin), below


def _z_slab(grid: Grid, z_lo: float, z_hi: float) -> tuple[int, int]:
    """Slices of ``grid`` whose extent meets ``[z_lo, z_hi]``."""
    z = grid.voxel_centers_axis(2)
    half = grid.spacing_mm[2] / 2.0
    inside = np.flatnonzero((z + half >= z_lo) & (z - half <= z_hi))
    if inside.size == 0:
        return 0, 0
    return int(inside[0]), int(inside[-1]) + 1


def kernel_window_columns(protocol: ScannerProtocol) -> tuple[int, np.ndarray]:
    """FFT length along the bins and the reconstruction kernel's window (no ramp) on it, with
    frequencies taken at the iso-centre, so a kernel means what it means for fan2d."""
    n_fft = scipy.fft.next_fast_len(2 * protocol.n_bins, real=True)
    freq = scipy.fft.rfftfreq(n_fft, d=protocol.iso_bin_width_mm)
    chain = reconstruct.resolution_chain(protocol)
    return n_fft, reconstruct.kernel_window(protocol.kernel, freq, chain).astype(np.float32)


# --- ASTRA 3D on the GPU --------------------------------------------------------------------
def _require_gpu() -> None:
    if not astra.use_cuda():  # ASTRA's CUDA calls may abort the process without a GPU
        raise SpecError("the cone-beam geometries need a CUDA GPU available to ASTRA; use geometry = 'fan2d'")


def forward_project_cone(volume: np.ndarray, grid: Grid, proj_geom: dict) -> np.ndarray:
    """Cone-beam line integrals ``[rows, views, bins]`` (value times mm) of ``volume`` on ``grid``;
    the data stay on the GPU between CuPy and ASTRA when CuPy is installed."""
    _require_gpu()
    xp = arrays.namespace("cuda")
    vol = xp.asarray(np.ascontiguousarray(volume, dtype=np.float32))
    proj = xp.zeros(astra.geom_size(proj_geom), dtype=xp.float32)
    backend.run3d("FP3D", backend.volume_geometry_3d(grid), proj_geom, vol, proj)
    return arrays.to_numpy(proj)


def reconstruct_cone(
    projections, grid: Grid, proj_geom: dict, method: str, iterations: int = 1
) -> np.ndarray:
    """ASTRA 3D CUDA reconstruction (``FDK``, ``SIRT3D``, ``CGLS3D``) of ``projections`` (numpy
    or CuPy, in the geometry's own bin order) onto ``grid``; a host array."""
    _require_gpu()
    # ASTRA's FDK takes data on the GPU; its SIRT3D and CGLS3D want host memory
    xp = arrays.namespace("cuda" if method == "FDK" else "cpu")
    proj = xp.asarray(arrays.to_numpy(projections) if method != "FDK" else projections, dtype=xp.float32)
    if arrays.is_cupy(proj):
        import cupy

        proj = cupy.ascontiguousarray(proj)
    else:
        proj = np.ascontiguousarray(proj)
    vol = xp.zeros(grid.shape, dtype=xp.float32)
    backend.run3d(method, backend.volume_geometry_3d(grid), proj_geom, vol, proj, iterations)
    return arrays.to_numpy(vol)


def fdk(projections: np.ndarray, grid: Grid, protocol: ScannerProtocol) -> np.ndarray:
    """FDK of one circular rotation (our ``[rows, views, bins]`` order, source plane at z = 0)
    onto ``grid``: the kernel's window along the bins (on the GPU with CuPy), then ASTRA's
    ``FDK_CUDA`` (cosine weights, ramp filter and weighted backprojection on the GPU).

    ASTRA's FDK takes cubic voxels only; slices thinner or thicker than the pixels are handled
    by stretching z (volume and detector rows alike) to make the voxels cubes. A ray's length
    then changes by ``1 + O((a**2 - 1) tan(kappa)**2 / 2)`` for stretch ``a`` and cone angle
    ``kappa``: below 0.1 % for the presets' 64 rows.
    """
    dx, dy, dz = grid.spacing_mm
    if not math.isclose(dx, dy, rel_tol=1e-9):
        raise SpecError(f"recon pixel = ({dx:g}, {dy:g}) mm is not square, as FDK needs")
    stretch = dx / dz
    cube = Grid(grid.shape, (dx, dy, dx), (grid.origin_mm[0], grid.origin_mm[1], grid.origin_mm[2] * stretch))
    xp = arrays.namespace("cuda")
    n_fft, window = kernel_window_columns(protocol)
    data = xp.asarray(np.ascontiguousarray(projections[:, :, ::-1], dtype=np.float32))
    spectrum = xp.fft.rfft(data, n=n_fft, axis=-1)
    del data
    filtered = xp.fft.irfft(spectrum * xp.asarray(window), n=n_fft, axis=-1)[..., : protocol.n_bins]
    del spectrum
    return reconstruct_cone(
        xp.astype(filtered, xp.float32), cube, circular_cone_geometry(protocol, stretch), "FDK"
    )


# --- the scan -----------------------------------------------------------------------------------
def detector_projections(
    lines_water_cm: np.ndarray,
    lines_bone_cm: np.ndarray,
    protocol: ScannerProtocol,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """``-log(I / I0)`` of every detector cell (``[rows, views, bins]`` float32) from basis line
    integrals (cm): the bowtie of each column, polychromatic signal, scatter, quantum and
    electronic noise (``rng=None``: none) and the corrections the protocol asks for
    (:func:`nmosim.simulate.acquisition.detect`; scatter spreads along each row). A cell's
    counted area is ``cell_aperture * bin_width_mm`` by ``row_pitch_mm`` times
    ``detector_efficiency``; one central ray per cell."""
    spectrum = physics.tube_spectrum(protocol.kvp, protocol.filtration_mm_al).rebinned(
        physics.PROJECTION_BIN_KEV
    )
    geometry = {
        "mas": protocol.mas / protocol.n_views,
        "pixel_area_mm2": protocol.bin_width_mm * protocol.cell_aperture * protocol.row_pitch_mm
        * protocol.detector_efficiency,
        "source_to_detector_mm": protocol.source_to_detector_mm,
    }  # fmt: skip
    bw, bb = bowtie.basis_lines_cm(protocol, spectrum)
    lw = arrays.to_numpy(lines_water_cm) + bw
    lb = arrays.to_numpy(lines_bone_cm) + bb
    counts = physics.expected_counts_array_api(arrays.namespace("cuda"), lw, lb, spectrum, **geometry)
    i0 = acquisition.air_readings(protocol, spectrum, **geometry)
    return acquisition.detect(counts, i0, protocol, spectrum, rng).astype(np.float32, copy=False)


def _scan(
    maps: tuple[np.ndarray, np.ndarray],
    imaging: Grid,
    protocol: ScannerProtocol,
    views: np.ndarray,
    source_z: np.ndarray,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """Projections ``[rows, len(views), bins]`` of the basis maps for the given views."""
    reach = cone_reach_mm(protocol, imaging)
    lo, hi = _z_slab(imaging, float(source_z.min()) - reach, float(source_z.max()) + reach)
    proj_geom = astra.create_proj_geom(
        "cone_vec", protocol.detector_rows, protocol.n_bins, cone_vectors(protocol, views, source_z)
    )
    lines = []
    for volume in maps:
        chunk = volume[lo:hi]
        if hi <= lo or not chunk.any():
            lines.append(np.zeros((protocol.detector_rows, views.size, protocol.n_bins), np.float32))
            continue
        lines.append(forward_project_cone(chunk, imaging.window(slice(lo, hi)), proj_geom) / np.float32(10.0))
    return detector_projections(lines[0], lines[1], protocol, rng)


def _axial_mu(maps, imaging: Grid, recon: Grid, protocol: ScannerProtocol, rng, progress) -> np.ndarray:
    z_rec = recon.voxel_centers_axis(2)
    tables, band = axial_rotations(protocol, z_rec)
    views = np.arange(protocol.n_views)
    cone = circular_cone_geometry(protocol)
    offsets = slice_offsets(protocol)
    out = np.empty(recon.shape, dtype=np.float32)
    for i, z_t in enumerate(tables):
        members = np.flatnonzero(band == i)
        if members.size == 0:
            continue
        projections = _scan(maps, imaging, protocol, views, np.full(views.size, z_t), rng)
        if protocol.recon_method == "fbp":
            # planes at the offsets inside each slice, averaged: the slice thickness
            lo, hi = int(members[0]), int(members[-1]) + 1
            fine = Grid(
                ((hi - lo) * offsets.size, recon.shape[1], recon.shape[2]),
                (recon.spacing_mm[0], recon.spacing_mm[1], recon.spacing_mm[2] / offsets.size),
                (recon.origin_mm[0], recon.origin_mm[1], float(z_rec[lo] + offsets[0] - z_t)),
            )
            volume = fdk(projections, fine, protocol)
            out[lo:hi] = volume.reshape(hi - lo, offsets.size, *recon.shape[1:]).mean(axis=1)
        else:
            # iterative: slices of the same thickness over the whole band the rays cross, beyond
            # the reconstructed ones if need be, so that every ray can be explained
            volume_grid, first = iterative_grid(protocol, recon, members, float(z_t))
            method = {"sirt": "SIRT3D", "cgls": "CGLS3D"}[protocol.recon_method]
            volume = reconstruct_cone(
                to_astra_cone(projections), volume_grid, cone, method, protocol.recon_iterations
            )
            out[members] = volume[first : first + members.size]
        if progress is not None:
            progress(int(members[-1]) + 1, recon.shape[0])
    return out


def _helical_mu(
    maps, imaging: Grid, recon: Grid, protocol: ScannerProtocol, rng, progress, device
) -> np.ndarray:
    z_rec = recon.voxel_centers_axis(2)
    half = recon.spacing_mm[2] / 2.0
    views, source_z = helical_views(protocol, float(z_rec[0] - half), float(z_rec[-1] + half))
    parts = [
        _scan(
            maps, imaging, protocol, views[s : s + protocol.n_views], source_z[s : s + protocol.n_views], rng
        )
        for s in range(0, views.size, protocol.n_views)
    ]
    projections = np.concatenate(parts, axis=1)
    del parts
    offsets = slice_offsets(protocol)
    sinograms = np.empty((recon.shape[0], protocol.n_views, protocol.n_bins), dtype=np.float32)
    for i, z in enumerate(z_rec):
        planes = [rebin_helical_slice(projections, source_z, float(z + o), protocol) for o in offsets]
        sinograms[i] = np.mean(planes, axis=0)
    out = reconstruct.reconstruct(sinograms, recon, protocol, device=device)
    if progress is not None:
        progress(recon.shape[0], recon.shape[0])
    return out


def reconstruct_mu(
    water_map: np.ndarray,
    bone_map: np.ndarray,
    imaging: Grid,
    recon: Grid,
    protocol: ScannerProtocol,
    rng: np.random.Generator | None,
    *,
    device: str,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Reconstructed attenuation (1/mm, float32) on ``recon`` of an axial or helical scan of the
    basis maps (volume fractions on ``imaging``); see :func:`nmosim.simulate.ct.simulate_ct`."""
    _require_gpu()
    maps = (water_map, bone_map)
    if protocol.geometry == "axial":
        return _axial_mu(maps, imaging, recon, protocol, rng, progress)
    return _helical_mu(maps, imaging, recon, protocol, rng, progress, device)
