"""The CT case in memory: a phantom through a scanner protocol to HU, labels, radiograph and truth.

Orchestrates rasterization, CT and radiograph simulation and truth measurement; it writes no files.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from nmosim.phantoms.errors import SpecError, check_range
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import BONE_STRUCTURES, STRUCTURE_NAMES, Structure, Tissue
from nmosim.phantoms.materials import tissue_materials
from nmosim.phantoms.phantom import Phantom
from nmosim.phantoms.rasterize import Rasterization
from nmosim.phantoms.shapes import put, take
from nmosim.phantoms.texture import trabecular_texture
from nmosim.simulate import arrays, backend, budget, ct, physics, reconstruct, scanner
from nmosim.simulate.provenance import stream_seed
from nmosim.simulate.radiograph import Radiograph, RadiographGeometry, simulate_radiograph
from nmosim.simulate.scanner import ScannerProtocol
from nmosim.simulate.truth import phantom_truth

# Scan range along z (mm) per preset. DOMAIN.md 4.3: iliac crest to below the lesser trochanter;
# the quick preset keeps the hip joints, trochanters and AIIS, where hip HO lies (DOMAIN.md 1.5).
SCAN_RANGE_MM = {"quick": (-100.0, 80.0), "clinical": (-130.0, 170.0)}
FOV_MARGIN_MM = 12.0
HU_RANGE = (-1024, 3071)  # what int16 CT stores; air outside the scan field reads the minimum
# Sub-samples per voxel edge of the imaging maps where a surface crosses a voxel: partial-volume
# (anti-aliased) maps. With 1 every voxel is all one tissue and the stepped body and bone outlines
# alias into streaks across the image (a noise-free 320 mm water cylinder on the quick preset:
# SD 6.0 HU within 120 mm of its axis from stepped maps, 2.5 HU from anti-aliased ones).
IMAGING_SUPERSAMPLING = 2

Progress = Callable[[str, float], None]
"""``progress(stage, seconds)``: called after each stage of a case with its wall time in seconds."""


@dataclasses.dataclass(frozen=True)
class CTCase:
    """A labelled CT case in memory: every volume ``[z, y, x]`` on ``grid`` (the reconstruction grid).

    ``hu`` int16 Hounsfield units as written (-1024 outside the scan field); ``structures`` and
    ``tissues`` uint8 and ``ho_instances`` uint16 in the label ids of DESIGN.md 3; ``radiograph`` the
    AP radiograph with its projected masks; ``truth`` the truth.json content (its ``case_id`` is the
    folder's name once written).
    """

    hu: np.ndarray
    structures: np.ndarray
    tissues: np.ndarray
    ho_instances: np.ndarray
    grid: Grid
    radiograph: Radiograph
    truth: dict


def protocol(name: str = "quick", **overrides: object) -> ScannerProtocol:
    """The scanner protocol of preset ``name`` ("quick" or "clinical") with some fields overridden.

    >>> protocol("quick", mas=100).mas
    100.0
    """
    return scanner.make_protocol(name, **overrides)


def fit_protocol(protocol: ScannerProtocol, phantom: Phantom) -> ScannerProtocol:
    """``protocol`` with a detector wide enough for the body and a field of view that holds it.

    A body reaching beyond the scan field (the skin's largest distance from the rotation axis,
    plus ``FOV_MARGIN_MM``) would be truncated; instead the detector gets the fewest pairs of bins
    of the same pitch, one at each end, that hold it, as a wide-bore scanner would have (recorded
    in truth.json).
    """
    lo, hi = phantom.bounds()
    radius = phantom.body_radius() + FOV_MARGIN_MM  # the skin's reach, not its box's corners
    if 2 * radius > protocol.scan_fov_mm:
        # the flat detector's half width whose edge ray passes ``radius`` from the axis
        half_width = protocol.source_to_detector_mm * math.tan(math.asin(radius / protocol.source_to_iso_mm))
        needed = math.ceil(2 * half_width / protocol.bin_width_mm)
        # a bin more on each side: the preset's bins stay where they were (and so does the parity
        # of their count, which sets whether conjugate rays coincide or interleave)
        extra = math.ceil((needed - protocol.n_bins) / 2)
        protocol = dataclasses.replace(protocol, n_bins=protocol.n_bins + 2 * extra)
    side = float(max(hi[0] - lo[0], hi[1] - lo[1])) + 2 * FOV_MARGIN_MM
    return dataclasses.replace(
        protocol, recon_fov_mm=min(max(protocol.recon_fov_mm, side), protocol.scan_fov_mm)
    )


def case_grids(
    phantom: Phantom, protocol: ScannerProtocol, z_range_mm: tuple[float, float]
) -> tuple[Grid, Grid]:
    """Reconstruction grid (labels and CT) and the finer imaging grid, covering the body."""
    lo, hi = phantom.bounds()
    center = (float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2)
    recon = scanner.recon_grid(protocol, z_range_mm[0], z_range_mm[1], center_xy_mm=center)
    xy_lo = (float(lo[0]) - 2.0, float(lo[1]) - 2.0)
    xy_hi = (float(hi[0]) + 2.0, float(hi[1]) + 2.0)
    imaging = scanner.imaging_grid(protocol, recon, xy_lo, xy_hi)
    return recon, imaging


def outside_scan_field(grid: Grid, protocol: ScannerProtocol) -> np.ndarray:
    """In-plane mask ``[ny, nx]`` of voxels beyond the scan field of view, where no ray passed."""
    x, y = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)
    return np.hypot(x[None, :], y[:, None]) > protocol.scan_fov_mm / 2


def basis_maps(
    phantom: Phantom, labels: Rasterization, spectrum: physics.Spectrum, xp: ModuleType | None = None
) -> tuple[Any, Any]:
    """Water- and bone-equivalent volume fractions (float32) of rasterized ``labels`` of
    ``phantom``, fitted over ``spectrum``; the phantom's bone density sets its trabecular bone,
    which carries the anatomy's texture (:func:`nmosim.phantoms.texture.trabecular_texture`).

    The maps are made in the array namespace ``xp`` (default numpy; CuPy's on a GPU) and are its
    arrays ``[z, y, x]``.
    """
    xp = arrays.namespace("cpu") if xp is None else xp
    scale = float(phantom.anatomy.bone_density_scale)
    materials = tissue_materials(trabecular_density_scale=scale)
    coefficients = physics.basis_coefficients(materials, spectrum)
    water = xp.reshape(labels.weighted_sum(coefficients[:, 0], xp), (-1,))
    bone = xp.reshape(labels.weighted_sum(coefficients[:, 1], xp), (-1,))
    # Trabecular bone is a volume mix of spongiosa and red marrow, linear in the spongiosa fraction
    # s: the texture scales s about its mean, which moves the coefficients along that line.
    lo, hi = 0.4, 1.0
    per_unit = (
        physics.basis_coefficients(tissue_materials(trabecular_density_scale=hi), spectrum)
        - physics.basis_coefficients(tissue_materials(trabecular_density_scale=lo), spectrum)
    )[Tissue.TRABECULAR_BONE] / (hi - lo)
    fraction = xp.reshape(labels.tissue_fraction(Tissue.TRABECULAR_BONE, xp), (-1,))
    (index,) = xp.nonzero(fraction)  # sorted flat indices
    if index.shape[0]:
        points = _voxel_centres(xp, labels.grid, index)
        texture = trabecular_texture(points, phantom.anatomy.bone_texture_seed, xp=xp)
        change = xp.astype(take(xp, fraction, index) * scale * (texture - 1.0), xp.float64)
        for volume, coefficient in ((water, per_unit[0]), (bone, per_unit[1])):
            # float32 voxels plus a float64 change, rounded once to float32
            added = xp.astype(take(xp, volume, index), xp.float64) + change * float(coefficient)
            put(xp, volume, index, xp.astype(added, xp.float32))
    return xp.reshape(water, labels.grid.shape), xp.reshape(bone, labels.grid.shape)


def _voxel_centres(xp: ModuleType, grid: Grid, flat_index: Any) -> Any:
    """Points (mm, x y z; float64 (N, 3)) of the voxel centres at flat indices into ``grid``, in
    the namespace of the index: :meth:`Grid.index_to_mm` of their unravelled indices."""
    ny, nx = grid.shape[1], grid.shape[2]
    index_zyx = (flat_index // (ny * nx), (flat_index // nx) % ny, flat_index % nx)
    return xp.stack(
        [float(grid.origin_mm[a]) + xp.astype(index_zyx[2 - a], xp.float64) * float(grid.spacing_mm[a])
         for a in range(3)],
        axis=1,
    )  # fmt: skip


def imaging_maps(
    phantom: Phantom,
    imaging: Grid,
    spectrum: physics.Spectrum,
    threads: int | None = None,
    xp: ModuleType | None = None,
) -> tuple[Any, Any]:
    """Water and bone basis maps (float32 volume fractions) of ``phantom`` on the ``imaging`` grid,
    rasterized with ``IMAGING_SUPERSAMPLING`` sub-samples per edge of the voxels surfaces cross;
    arrays of the namespace ``xp`` (default numpy), which rasterizes and makes the maps."""
    fine = phantom.rasterize(imaging, supersampling=IMAGING_SUPERSAMPLING, threads=threads, xp=xp)
    return basis_maps(phantom, fine, spectrum, xp)


def ap_radiograph(
    phantom: Phantom,
    pixel_mm: float,
    rng: np.random.Generator,
    geometry: RadiographGeometry | None = None,
    threads: int | None = None,
    xp: ModuleType | None = None,
) -> Radiograph:
    """The AP pelvis radiograph of ``phantom`` from a grid of ``pixel_mm`` (at least 2 mm), with
    the projected bone and HO masks; made in the array namespace ``xp`` (default numpy), returned
    as numpy arrays."""
    xp = arrays.namespace("cpu") if xp is None else xp
    geometry = geometry or RadiographGeometry()
    grid = phantom.grid(max(2.0, pixel_mm))
    labels = phantom.rasterize(grid, supersampling=1, threads=threads, xp=xp)
    structures = xp.asarray(labels.structures)
    bone = np.zeros(256, dtype=bool)
    bone[[int(s) for s in BONE_STRUCTURES]] = True
    masks = {
        "bone": xp.reshape(take(xp, xp.asarray(bone), xp.reshape(structures, (-1,))), grid.shape),
        **{STRUCTURE_NAMES[int(s)]: structures == int(s) for s in (Structure.HO_RIGHT, Structure.HO_LEFT)},
    }
    spectrum = physics.tube_spectrum(geometry.kvp, geometry.filtration_mm_al)
    water, bone_map = basis_maps(phantom, labels, spectrum, xp)
    return simulate_radiograph(water, bone_map, masks, grid, geometry, rng, xp=xp)


def stage_namespaces(device: str, xp: ModuleType) -> dict[str, str]:
    """Where each stage of :func:`simulate_ct` computes, by stage name (as ``progress`` reports
    them): the array namespace of the labels, imaging maps, radiograph and truth (``xp``); for the
    CT, where the projection runs (ASTRA on the GPU; on the CPU, ASTRA's kernel as a sparse matrix
    for a case's many slices, :func:`nmosim.simulate.backend.reused_projections`) and the
    namespace of the polychromatic counts and the FBP (CuPy's only on a GPU with CuPy installed)."""
    where = arrays.name(xp)
    on_gpu = device == "cuda" and arrays.has_gpu_arrays()
    projection = "astra cuda" if device == "cuda" else "astra kernel as sparse matrix, cpu"
    ct_where = f"{projection}; counts and fbp {'cupy' if on_gpu else 'numpy'}"
    return {"labels": where, "imaging maps": where, "ct": ct_where, "radiograph": where, "truth": where}


def _case_rngs(phantom: Phantom) -> tuple[np.random.Generator, np.random.Generator]:
    """The imaging and radiograph generators of the phantom's case (its seed and case index)."""
    if phantom.metadata.get("seed") is None:
        raise SpecError("phantom has no seed: build it with nmosim.build_phantom(CaseSpec(seed=...))")
    seed, index = phantom.metadata["seed"], phantom.metadata.get("case_index", 0)
    return tuple(np.random.default_rng(stream_seed(seed, index, name)) for name in ("imaging", "radiograph"))


def simulate_ct(
    phantom: Phantom,
    protocol: ScannerProtocol,
    *,
    z_range_mm: tuple[float, float] | None = None,
    supersampling: int = 2,
    preset: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    xp: ModuleType | None = None,
) -> CTCase:
    """Image ``phantom`` with CT and an AP radiograph and measure its truth: a :class:`CTCase`, no files.

    ``z_range_mm`` is the scan range along z (default: the range of ``preset``, the protocol's
    preset name recorded in the truth; without one the clinical range, iliac crest to below the
    lesser trochanters); ``supersampling`` sub-samples per voxel edge of the labels (1 to 8).
    ``device`` ("cpu", "cuda" or None for the best present) and ``threads`` (default every core)
    reach rasterization, projection and reconstruction; the result does not depend on
    ``threads``. ``progress``: see :data:`Progress`. Noise is drawn from the case's imaging and
    radiograph streams.

    Every stage (labels, imaging and basis maps, radiograph, truth) runs in one array namespace:
    ``xp``, or by default that of the device (:func:`nmosim.simulate.arrays.namespace`: CuPy's on
    a GPU when CuPy is installed, else numpy's). The basis maps go to the host once, for ASTRA's
    CPU path, and the returned case holds numpy arrays.
    """
    supersampling = int(check_range("supersampling", supersampling, 1, 8))
    # a forced but absent GPU, or a cone-beam geometry without one, is reported before any work
    device = backend.select_device(device, protocol)
    xp = arrays.namespace(device) if xp is None else xp
    z_range = budget.check_z_range(  # finite, not empty, meets the body
        tuple(z_range_mm or SCAN_RANGE_MM.get(preset or "clinical", SCAN_RANGE_MM["clinical"]))
    )
    imaging_rng, radiograph_rng = _case_rngs(phantom)
    report = progress or (lambda stage, seconds: None)
    clock = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        report(name, now - clock)
        clock = now

    protocol = fit_protocol(protocol, phantom)
    recon, imaging = case_grids(phantom, protocol, z_range)
    labels = phantom.rasterize(recon, supersampling=supersampling, threads=threads, xp=xp)
    stage("labels")
    water, bone = imaging_maps(phantom, imaging, ct.protocol_spectrum(protocol), threads=threads, xp=xp)
    stage("imaging maps")
    hu = ct.simulate_ct(water, bone, imaging, recon, protocol, imaging_rng, device=device, threads=threads)
    del water, bone
    stage("ct")
    radiograph = ap_radiograph(phantom, protocol.recon_pixel_mm, radiograph_rng, threads=threads, xp=xp)
    stage("radiograph")
    truth = phantom_truth(phantom, labels, threads=threads, xp=xp)
    truth["scanner"] = {
        "preset": preset,
        **protocol.to_dict(),
        "kernel_mtf": reconstruct.kernel_resolution(protocol),
        "scan_range_mm": list(z_range),
        "reconstruction_grid": recon.to_dict(),
        "imaging_grid": imaging.to_dict(),
        "device": device,
    }
    truth["radiograph"] = radiograph.geometry.to_dict()
    stage("truth")
    hu_int = np.clip(np.rint(hu), *HU_RANGE).astype(np.int16)
    hu_int[:, outside_scan_field(recon, protocol)] = HU_RANGE[0]  # no data there, as scanners show it
    return CTCase(hu_int, labels.structures, labels.tissues, labels.instances, recon, radiograph, truth)
