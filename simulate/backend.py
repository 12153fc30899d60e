"""Projection backends: device choice, slice-wise ASTRA fan-beam projection on CPU or CUDA, and
ASTRA's 3D CUDA algorithms (cone beam), whose data stay on the GPU when they are CuPy arrays.

Runs line integrals, backprojections and ASTRA's iterative solvers; no filtering or X-ray physics.

Geometry (see :class:`nmosim.simulate.scanner.ScannerProtocol`): the rotation axis is the patient z axis
through x = y = 0; view k has its source at ``D_si (sin b, cos b)`` with ``b = 2 pi k / n_views``
and bins run along ``(cos b, -sin b)``. Every axial slice of a grid is one fan-beam scan.

ASTRA's 2D volume has row 0 at its largest Y and columns along X, and its line kernels assume
square pixels. Patient (x, y) therefore maps to ASTRA (X, Y) = (x, -a y) with ``a = dx / dy``:
rows follow +y, pixels become square, and every geometry vector is mapped the same way. The
stretch changes path lengths by a known factor per ray, undone after projecting.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import astra
import numpy as np

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.simulate import arrays, fan_matrix
from nmosim.simulate.scanner import GEOMETRIES_3D, ScannerProtocol

DEVICES = ("cpu", "cuda")
DEVICE_ENV = "NMOSIM_DEVICE"


def select_device(device: str | None = None, protocol: ScannerProtocol | None = None) -> str:
    """Return ``'cuda'`` or ``'cpu'``.

    Order: the ``device`` argument, else the ``NMOSIM_DEVICE`` environment variable, else
    ``'cuda'`` when ASTRA sees a CUDA GPU and ``'cpu'`` otherwise. Asking for ``'cuda'`` without
    a GPU raises :class:`SpecError` (ASTRA's CUDA calls must never run without one), and so does
    a ``protocol`` whose geometry the chosen device cannot scan (:func:`check_geometry`).
    """
    device = _device(device)
    if protocol is not None:
        check_geometry(protocol, device)
    return device


def _device(device: str | None) -> str:
    source = "device"
    if device is None and os.environ.get(DEVICE_ENV, "").strip():
        device, source = os.environ[DEVICE_ENV].strip().lower(), DEVICE_ENV
    if device is None:
        return "cuda" if astra.use_cuda() else "cpu"
    if device not in DEVICES:
        raise SpecError(f"{source} = {device!r} is not one of {{cpu, cuda}}")
    if device == "cuda" and not astra.use_cuda():
        raise SpecError(f"{source} = 'cuda' but no CUDA GPU is available to ASTRA; use 'cpu'")
    return device


def check_geometry(protocol: ScannerProtocol, device: str) -> None:
    """Raise :class:`SpecError` when ``protocol.geometry`` needs a GPU and ``device`` is the CPU.

    The multi-row geometries (axial, helical) run through ASTRA 3D, which has only CUDA code.
    """
    if protocol.geometry in GEOMETRIES_3D and device != "cuda":
        raise SpecError(
            f"geometry = {protocol.geometry!r} is not one of {{fan2d}} without a CUDA GPU "
            "(the cone-beam geometries run through ASTRA 3D on the GPU)"
        )


def resolve_threads(threads: int | None, device: str) -> int:
    """Worker threads: ``threads`` if given, else all cores on CPU and one on CUDA."""
    if threads is None:
        return 1 if device == "cuda" else max(os.cpu_count() or 1, 1)
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise SpecError(f"threads = {threads!r} is outside [1, inf)")
    return int(threads)


# --- geometry in ASTRA's frame -----------------------------------------------------------------
def _stretch(grid: Grid) -> np.ndarray:
    """2x2 map from patient (x, y) to ASTRA (X, Y) = (x, -a y), ``a = dx / dy`` (square pixels)."""
    dx, dy = grid.spacing_mm[0], grid.spacing_mm[1]
    return np.diag([1.0, -dx / dy])


def volume_geometry(grid: Grid) -> dict:
    """ASTRA 2D volume geometry of one axial slice of ``grid`` (its extents place the grid)."""
    _, ny, nx = grid.shape
    (dx, dy, _), (ox, oy, _) = grid.spacing_mm, grid.origin_mm
    a = dx / dy
    return astra.create_vol_geom(
        ny, nx, ox - dx / 2, ox + (nx - 0.5) * dx, -a * (oy + (ny - 0.5) * dy), -a * (oy - dy / 2)
    )


def fan_rays(
    protocol: ScannerProtocol, sub_ray: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source, detector centre and bin step vectors in patient (x, y) mm, each ``[n_views, 2]``.

    ``sub_ray = (source_mm, cell_mm, angle_rad)`` moves the source point across the focal spot
    and the detector point across the cell, both along the bin direction (mm), and turns the
    view by ``angle_rad``: one sub-ray of every reading (see :mod:`nmosim.simulate.acquisition`).
    """
    source_mm, cell_mm, angle_rad = sub_ray
    b = protocol.view_angles_rad() + angle_rad
    toward_source = np.stack([np.sin(b), np.cos(b)], axis=1)
    along_bins = np.stack([np.cos(b), -np.sin(b)], axis=1)
    source = protocol.source_to_iso_mm * toward_source + source_mm * along_bins
    detector = -(protocol.source_to_detector_mm - protocol.source_to_iso_mm) * toward_source
    detector = detector + cell_mm * along_bins
    return source, detector, protocol.bin_width_mm * along_bins


def fan_geometry(
    grid: Grid, protocol: ScannerProtocol, sub_ray: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> tuple[dict, np.ndarray | None]:
    """ASTRA ``fanflat_vec`` geometry for ``grid`` and the per-ray path-length factor.

    The factor (``[n_views, n_bins]``) converts lengths in ASTRA's stretched frame back to mm;
    it is ``None`` for square pixels, where the frames agree up to a mirror. ``sub_ray``: see
    :func:`fan_rays`.
    """
    source, detector, step = fan_rays(protocol, sub_ray)
    m = _stretch(grid)
    vectors = np.concatenate([source @ m, detector @ m, step @ m], axis=1)
    geometry = astra.create_proj_geom("fanflat_vec", protocol.n_bins, vectors)
    if m[1, 1] == -1.0:
        return geometry, None
    unit = step / protocol.bin_width_mm
    bins = detector[:, None, :] + protocol.bin_offsets_mm()[None, :, None] * unit[:, None, :]
    ray = bins - source[:, None, :]
    factor = np.linalg.norm(ray, axis=2) / np.linalg.norm(ray @ m, axis=2)
    return geometry, factor.astype(np.float32)


def parallel_geometry(grid: Grid, angles_rad: np.ndarray, t_step_mm: float, n_t: int) -> tuple:
    """ASTRA ``parallel_vec`` geometry and per-view weights for a backprojection.

    Parallel view ``theta`` has rays along ``-(sin theta, cos theta)`` and detector coordinate
    ``t = x cos theta - y sin theta`` (bins of ``t_step_mm``, centred on t = 0: bin ``i`` at
    ``t = (i - (n_t - 1) / 2) t_step_mm``, half a step off t = 0 for an even ``n_t``); so it holds the
    same rays as the fan view at ``b = theta + asin(t / D_si)``. The weights (``[n_views]``)
    make ASTRA's backprojection return the plain sum over views of the linearly interpolated
    values, ``sum_theta q(theta, t(x))``.
    """
    m = _stretch(grid)
    th = np.asarray(angles_rad, dtype=float)
    ray = -np.stack([np.sin(th), np.cos(th)], axis=1) @ m
    step = t_step_mm * np.stack([np.cos(th), -np.sin(th)], axis=1) @ m
    vectors = np.concatenate([ray, np.zeros_like(ray), step], axis=1)
    unit = ray / np.linalg.norm(ray, axis=1, keepdims=True)
    # ASTRA's linear kernel sums pixel_area / (perpendicular ray spacing) per view.
    spacing = np.abs(unit[:, 0] * step[:, 1] - unit[:, 1] * step[:, 0])
    weights = spacing / grid.spacing_mm[0] ** 2
    return astra.create_proj_geom("parallel_vec", int(n_t), vectors), weights.astype(np.float32)


# --- one ASTRA algorithm per worker thread -----------------------------------------------------
_CPU_PROJECTOR = {"fanflat_vec": "line_fanflat", "parallel_vec": "linear"}


@contextmanager
def _astra_algorithm(
    name: str, vol_geom: dict, proj_geom: dict, device: str
) -> Iterator[Callable[[np.ndarray, int], np.ndarray]]:
    """Create ASTRA data, projector and algorithm once; yield ``run(input_slice, iterations)``,
    whose result is a view of ASTRA's memory that the caller copies before the next run.

    ``name`` is 'FP' (volume -> sinogram) or 'BP', 'SIRT', 'CGLS' (sinogram -> volume). Every
    ASTRA object is deleted on exit.
    """
    if device == "cuda" and not astra.use_cuda():  # ASTRA's CUDA calls may abort without a GPU
        raise SpecError("device = 'cuda' but no CUDA GPU is available to ASTRA; use 'cpu'")
    vol_id = astra.data2d.create("-vol", vol_geom, 0.0)
    sino_id = astra.data2d.create("-sino", proj_geom, 0.0)
    proj_id = alg_id = None
    try:
        cfg = astra.astra_dict(name if device == "cpu" else f"{name}_CUDA")
        if device == "cpu":
            proj_id = astra.create_projector(_CPU_PROJECTOR[proj_geom["type"]], proj_geom, vol_geom)
            cfg["ProjectorId"] = proj_id
        cfg["ProjectionDataId"] = sino_id
        cfg["VolumeDataId" if name == "FP" else "ReconstructionDataId"] = vol_id
        alg_id = astra.algorithm.create(cfg)
        src, dst = (vol_id, sino_id) if name == "FP" else (sino_id, vol_id)

        def run(data: np.ndarray, iterations: int = 1) -> np.ndarray:
            astra.data2d.store(src, data)
            if name in ("SIRT", "CGLS"):
                astra.data2d.store(dst, 0.0)  # each slice starts from zero
            astra.algorithm.run(alg_id, iterations)
            return astra.data2d.get_shared(dst)  # a view: valid until the next run

        yield run
    finally:
        if alg_id is not None:
            astra.algorithm.delete(alg_id)
        if proj_id is not None:
            astra.projector.delete(proj_id)
        astra.data2d.delete([vol_id, sino_id])


def _in_blocks(n_slices: int, threads: int, work: Callable[[np.ndarray], None]) -> None:
    """Call ``work(block)`` on ``threads`` contiguous blocks of slice indices, in parallel."""
    threads = max(1, min(threads, n_slices))
    blocks = [b for b in np.array_split(np.arange(n_slices), threads) if b.size]
    if len(blocks) == 1:
        work(blocks[0])
        return
    with ThreadPoolExecutor(max_workers=len(blocks)) as pool:
        for future in [pool.submit(work, b) for b in blocks]:
            future.result()


def run_slices(
    name: str,
    n_slices: int,
    get_input: Callable[[int], np.ndarray],
    out: np.ndarray,
    vol_geom: dict,
    proj_geom: dict,
    *,
    device: str,
    threads: int,
    iterations: int = 1,
) -> np.ndarray:
    """Run ASTRA algorithm ``name`` on every slice, ``out[k] = algorithm(get_input(k))``.

    Slices are split into ``threads`` contiguous blocks; each thread builds its ASTRA objects
    once and reuses them. Each slice's result does not depend on the thread count.
    """

    def work(block: np.ndarray) -> None:
        with _astra_algorithm(name, vol_geom, proj_geom, device) as run:
            for k in block:
                out[k] = run(np.ascontiguousarray(get_input(int(k)), dtype=np.float32), iterations)

    _in_blocks(n_slices, threads, work)
    return out


def _check_volume(volume: np.ndarray, grid: Grid) -> None:
    if volume.ndim != 3 or tuple(volume.shape) != grid.shape:
        raise ValueError(f"volume shape {volume.shape} does not match grid shape {grid.shape}")


# Content boxes smaller than this share of the slice are cropped; larger ones are projected whole.
CROP_SHARE = 0.95
CROP_MARGIN = 2  # pixels kept around the content: ASTRA's line kernel interpolates between pixels


def content_box(volume: np.ndarray) -> tuple[float, tuple[slice, slice]] | None:
    """The value of the first pixel of ``volume`` ``[nz, ny, nx]`` and the in-plane box
    (``CROP_MARGIN`` pixels wider) outside which every slice holds it; ``None`` when nothing
    differs from it or the box is not much smaller than the slice."""
    first = volume[0, 0, 0]
    differs = np.any(volume != first, axis=0)
    rows, cols = np.flatnonzero(differs.any(axis=1)), np.flatnonzero(differs.any(axis=0))
    if rows.size == 0:
        return None
    ny, nx = differs.shape
    box = tuple(
        slice(max(int(hit[0]) - CROP_MARGIN, 0), min(int(hit[-1]) + 1 + CROP_MARGIN, n))
        for hit, n in ((rows, ny), (cols, nx))
    )
    if (box[0].stop - box[0].start) * (box[1].stop - box[1].start) > CROP_SHARE * ny * nx:
        return None
    return float(first), box


def forward_project(
    volume: np.ndarray,
    grid: Grid,
    protocol: ScannerProtocol,
    *,
    threads: int | None = None,
    device: str | None = None,
    sub_ray: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Fan-beam line integrals of every axial slice.

    Parameters
    ----------
    volume : ``[nz, ny, nx]`` values per mm (e.g. attenuation in 1/mm, or a density map).
    grid : where ``volume`` lies; may be off-centre and have non-square pixels.
    protocol : scan geometry (``n_views``, ``n_bins``, distances, bin pitch).
    threads : worker threads (default: all cores on CPU, one on CUDA).
    device : 'cpu' or 'cuda' (default: :func:`select_device`).
    sub_ray : offsets of the rays from the bin-centre rays, see :func:`fan_rays`.

    Returns
    -------
    ``[nz, n_views, n_bins]`` float32: sum of value times path length in mm along each ray
    (so dimensionless for attenuation in 1/mm).

    ASTRA's line kernel walks every row (or column) of the grid for every ray, so a body in air
    costs as much as its whole grid. Where everything beyond a box around the content holds one
    value ``c`` (:func:`content_box`), the kernel being linear in the image, the result is the
    projection of the box less ``c`` plus ``c`` times that of a slice of ones over the whole
    grid: the same line integrals up to float32 rounding, at the box's cost. Within
    :func:`reused_projections`, the CPU applies the kernel's sparse matrix instead.
    """
    _check_volume(volume, grid)
    device = select_device(device)
    threads = resolve_threads(threads, device)
    reused = _reused_matrix(grid, protocol, sub_ray, threads) if device == "cpu" else None
    if reused is not None:
        return _matrix_project(reused, volume, grid, protocol, threads)
    crop = content_box(volume)
    if crop is None:
        return _project(volume, grid, protocol, threads, device, sub_ray)
    value, (rows, cols) = crop
    inside = volume[:, rows, cols]
    if value != 0.0:
        inside = inside - np.float32(value)
    out = _project(inside, grid.window(ys=rows, xs=cols), protocol, threads, device, sub_ray)
    if value != 0.0:
        out += np.float32(value) * _chords(_plane(grid), protocol, device, sub_ray)
    return out


@functools.lru_cache(maxsize=8)
def _chords(
    plane: Grid, protocol: ScannerProtocol, device: str, sub_ray: tuple[float, float, float]
) -> np.ndarray:
    """Projection ``[n_views, n_bins]`` of a slice of ones over the one-slice ``plane``: each ray's
    path length (mm) through the grid, as ASTRA's kernel sums it (read-only; cached)."""
    ones = np.ones(plane.shape, np.float32)
    chords = _project(ones, plane, protocol, 1, device, sub_ray)[0]
    chords.flags.writeable = False
    return chords


def _project(
    volume: np.ndarray,
    grid: Grid,
    protocol: ScannerProtocol,
    threads: int,
    device: str,
    sub_ray: tuple[float, float, float],
) -> np.ndarray:
    """:func:`forward_project` of every slice of ``volume`` over its whole ``grid``."""
    proj_geom, factor = fan_geometry(grid, protocol, sub_ray)
    out = np.empty((grid.shape[0], protocol.n_views, protocol.n_bins), dtype=np.float32)
    run_slices(
        "FP",
        grid.shape[0],
        lambda k: volume[k],
        out,
        volume_geometry(grid),
        proj_geom,
        device=device,
        threads=threads,
    )
    if factor is not None:
        out *= factor
    return out


# --- the CPU kernel as a sparse matrix, reused across calls -------------------------------------
# Weights held at once within reused_projections: about 8 bytes each (float32 value, int32 pixel).
# The quick preset's imaging plane holds 81 million; the clinical preset's would not fit.
MATRIX_MAX_WEIGHTS = 150_000_000
_reuse = threading.local()


@contextmanager
def reused_projections() -> Iterator[None]:
    """Within this block, CPU fan-beam projections (:func:`forward_project`) in this thread apply a
    sparse matrix of ASTRA's line kernel (:mod:`nmosim.simulate.fan_matrix`), built once per plane
    and rays and freed on exit. For many slices on one grid: building costs about as much as ten
    slices through ASTRA, after which each slice costs about a sixth. A plane whose matrix would
    exceed ``MATRIX_MAX_WEIGHTS`` weights goes through ASTRA as outside the block."""
    if getattr(_reuse, "matrices", None) is not None:  # nested: the outer block holds them
        yield
        return
    _reuse.matrices = {}
    try:
        yield
    finally:
        _reuse.matrices = None


def _plane(grid: Grid) -> Grid:
    """The one-slice grid at z = 0 with ``grid``'s in-plane sampling: what a fan-beam slice sees."""
    return Grid((1, *grid.shape[1:]), grid.spacing_mm, (*grid.origin_mm[:2], 0.0))


def _reused_matrix(
    grid: Grid, protocol: ScannerProtocol, sub_ray: tuple[float, float, float], threads: int
) -> tuple[fan_matrix.FanMatrix, np.ndarray | None] | None:
    """The held matrix of ``grid``'s plane and these rays, with the geometry's path-length factor
    (:func:`fan_geometry`), built if within the budget; None outside :func:`reused_projections` or
    over the budget. Older matrices make room for a new one."""
    held = getattr(_reuse, "matrices", None)
    if held is None:
        return None
    key = (_plane(grid), protocol, sub_ray)
    if key not in held:
        proj_geom, factor = fan_geometry(key[0], protocol, sub_ray)
        vol_geom = volume_geometry(key[0])
        size = fan_matrix.estimated_weights(vol_geom, proj_geom)
        if size > MATRIX_MAX_WEIGHTS:
            held[key] = None
            return None
        while sum(m[0].nnz for m in held.values() if m is not None) + size > MATRIX_MAX_WEIGHTS:
            held.pop(next(k for k, m in held.items() if m is not None))
        held[key] = (fan_matrix.line_fanflat_matrix(vol_geom, proj_geom, threads=threads), factor)
    return held[key]


def _matrix_project(
    reused: tuple[fan_matrix.FanMatrix, np.ndarray | None],
    volume: np.ndarray,
    grid: Grid,
    protocol: ScannerProtocol,
    threads: int,
) -> np.ndarray:
    """:func:`forward_project` of every slice of ``volume`` by its plane's kernel matrix, lengths
    then converted to mm by the held factor (as :func:`_project` does)."""
    matrix, factor = reused
    out = fan_matrix.project(matrix, volume, threads=threads)
    out = out.reshape(grid.shape[0], protocol.n_views, protocol.n_bins)
    if factor is not None:
        out *= factor
    return out


# --- ASTRA 3D on the GPU (cone-beam geometries) -----------------------------------------------
def _run3d_once(method: str, vol_geom: dict, proj_geom: dict, volume, projections, iterations: int) -> None:
    """One ASTRA 3D run; CuPy arrays are linked in place (DLPack), numpy arrays copied in and
    the result copied back."""

    def create(kind: str, geometry: dict, array) -> int:
        if arrays.is_cupy(array):
            return astra.data3d.link(kind, geometry, array)
        return astra.data3d.create(kind, geometry, array)

    ids: list[int] = []
    alg_id = None
    try:
        ids.append(create("-vol", vol_geom, volume))
        ids.append(create("-proj3d", proj_geom, projections))
        cfg = astra.astra_dict(f"{method}_CUDA")
        cfg["VolumeDataId" if method == "FP3D" else "ReconstructionDataId"] = ids[0]
        cfg["ProjectionDataId"] = ids[1]
        alg_id = astra.algorithm.create(cfg)
        astra.algorithm.run(alg_id, iterations)
        out, out_id = (projections, ids[1]) if method == "FP3D" else (volume, ids[0])
        if not arrays.is_cupy(out):
            out[...] = astra.data3d.get_shared(out_id)
    finally:
        if alg_id is not None:
            astra.algorithm.delete(alg_id)
        astra.data3d.delete(ids)


def run3d(method: str, vol_geom: dict, proj_geom: dict, volume, projections, iterations: int = 1) -> None:
    """Run ASTRA 3D CUDA algorithm ``method`` ('FP3D', 'FDK', 'SIRT3D', 'CGLS3D') between
    ``volume`` and ``projections``, writing the result into the output array in place.

    Contiguous float32 CuPy arrays stay on the GPU (ASTRA links them through DLPack; FP3D and
    FDK take such data); numpy arrays go through host memory. Where ASTRA refuses linked GPU
    arrays, they are copied through the host instead, with a warning: its algorithms refuse them
    with an AstraError (SIRT3D, CGLS3D want host memory), its DLPack link with a ValueError
    (data not float32 or not contiguous; ASTRA 2.5 python/astra/utils.pyx, linkVolFromGeometry3D).
    """
    if arrays.is_cupy(volume):
        try:
            _run3d_once(method, vol_geom, proj_geom, volume, projections, iterations)
            return
        except (astra.log.AstraError, ValueError) as error:
            warnings.warn(f"ASTRA {method} did not take GPU arrays ({error}); copying through host memory",
                          RuntimeWarning, stacklevel=2)  # fmt: skip
    host = [np.ascontiguousarray(arrays.to_numpy(a), dtype=np.float32) for a in (volume, projections)]
    _run3d_once(method, vol_geom, proj_geom, host[0], host[1], iterations)
    out, result = (projections, host[1]) if method == "FP3D" else (volume, host[0])
    if out is not result:
        out[...] = arrays.asarray(arrays.namespace("cuda" if arrays.is_cupy(out) else "cpu"), result)


def volume_geometry_3d(grid: Grid) -> dict:
    """ASTRA 3D volume geometry of ``grid`` in mm: ASTRA's ``[slice, row, col]`` runs along +Z,
    +Y, +X from the window minimum, a Grid's ``[z, y, x]``, so patient (x, y, z) = ASTRA (X, Y, Z);
    voxels may be anisotropic."""
    nz, ny, nx = grid.shape
    (dx, dy, dz), (ox, oy, oz) = grid.spacing_mm, grid.origin_mm
    return astra.create_vol_geom(
        ny, nx, nz, ox - dx / 2, ox + (nx - 0.5) * dx, oy - dy / 2, oy + (ny - 0.5) * dy,
        oz - dz / 2, oz + (nz - 0.5) * dz,
    )  # fmt: skip


# --- parallel-beam backprojection ---------------------------------------------------------------
def _backproject_slice(
    rows: np.ndarray,
    x_mm: np.ndarray,
    y_mm: np.ndarray,
    angles: np.ndarray,
    t_step_mm: float,
    out: np.ndarray,
) -> None:
    """``out[y, x] = sum_theta rows(theta, x cos theta - y sin theta)``, linear interpolation,
    zero beyond the detector. Pixel-driven, so no ripple from the ray sampling."""
    n_theta, n_t = rows.shape
    padded = np.zeros((n_theta, n_t + 2), dtype=np.float32)
    padded[:, 1:-1] = rows
    centre = (n_t - 1) / 2.0 + 1.0  # fractional index of t = 0 in ``padded``
    x = (x_mm / t_step_mm).astype(np.float32)
    y = (y_mm / t_step_mm).astype(np.float32)
    reach = float(np.hypot(np.abs(x).max(), np.abs(y).max()))
    clip = reach > (n_t - 1) / 2.0  # some pixels lie beyond the detector
    pos = np.empty(out.shape, dtype=np.float32)
    low = np.empty(out.shape, dtype=np.float32)
    high = np.empty(out.shape, dtype=np.float32)
    index = np.empty(out.shape, dtype=np.intp)
    out[...] = 0.0
    for row, c, s in zip(padded, np.cos(angles), np.sin(angles), strict=True):
        np.subtract(x * np.float32(c), (y * np.float32(s) - np.float32(centre))[:, None], out=pos)
        if clip:
            np.clip(pos, 0.0, n_t + 0.999, out=pos)
        np.floor(pos, out=low)
        np.copyto(index, low, casting="unsafe")
        pos -= low
        # indices lie in [0, n_t] by construction; 'wrap' never wraps and is the fastest mode
        np.take(row, index, out=low, mode="wrap")
        np.take(row[1:], index, out=high, mode="wrap")
        high -= low
        high *= pos
        out += low
        out += high


def backproject_parallel(
    get_rows: Callable[[int], np.ndarray],
    grid: Grid,
    angles_rad: np.ndarray,
    t_step_mm: float,
    n_t: int,
    *,
    device: str,
    threads: int,
) -> np.ndarray:
    """Backproject parallel-beam data onto every slice of ``grid``.

    ``get_rows(k)`` gives slice k's data ``[n_theta, n_t]`` in the geometry of
    :func:`parallel_geometry`; it runs in the worker threads, so per-slice preparation
    (rebinning, filtering) is parallel too. Returns ``[nz, ny, nx]`` float32 with
    ``sum_theta rows(theta, x cos theta - y sin theta)`` (linear interpolation in t).

    On CPU this is a pixel-driven numpy loop: ASTRA's CPU parallel backprojectors are ray-driven
    and their weights ripple with the ratio of pixel to bin size (about 2 % for 'linear',
    5 % for 'line' at 0.75 mm pixels and 0.6 mm bins), and 'strip' is three times slower.
    """
    out = np.empty(grid.shape, dtype=np.float32)
    angles = np.asarray(angles_rad, dtype=float)
    if device == "cuda":
        proj_geom, weights = parallel_geometry(grid, angles, t_step_mm, n_t)
        return run_slices(
            "BP",
            grid.shape[0],
            lambda k: get_rows(k) * weights[:, None],
            out,
            volume_geometry(grid),
            proj_geom,
            device=device,
            threads=threads,
        )
    x_mm, y_mm = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)

    def work(block: np.ndarray) -> None:
        for k in block:
            rows = np.asarray(get_rows(int(k)), dtype=np.float32)
            _backproject_slice(rows, x_mm, y_mm, angles, t_step_mm, out[k])

    _in_blocks(grid.shape[0], threads, work)
    return out
