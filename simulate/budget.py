"""Memory and disk that a phantom, a CT case or a cohort needs, estimated from its grids before any work.

It sizes and refuses (``SpecError`` naming the parameters); it allocates nothing and builds no phantom.

The estimate is an upper one for a large body, from measured peaks (``/usr/bin/time``, one CPU
process): the rasterizer holds about ``LABEL_BYTES_PER_VOXEL`` bytes per voxel of a grid plus
``SAMPLE_BYTES`` per sub-sample of every voxel that a surface crosses; surfaces cross about
``SURFACE_MM2 / voxel_face_mm2`` voxels. The limit is the memory available now (``/proc/meminfo``
and the cgroup), or ``NMOSIM_MEMORY_LIMIT_GB`` when set.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from nmosim.phantoms.anatomy import SCENE_Z_MM
from nmosim.phantoms.errors import SpecError, check_range
from nmosim.phantoms.phantom import SPACING_RANGE_MM
from nmosim.phantoms.rasterize import MAX_SUPERSAMPLING

ENV_LIMIT = "NMOSIM_MEMORY_LIMIT_GB"
GIB = 1024.0**3
MIB = 1024.0**2

# In-plane box (x, y mm) of a large body. Of 40 anatomies drawn from the priors (seeds 0-39) the
# scene's bounds span 403 x 308 mm at the median, 432 x 334 at the 90th percentile and 448 x 348 at
# most; overrides at the ends of every range reach further (phantoms/spec.py RANGES).
BODY_BOX_MM = (440.0, 340.0)
# Measured: interpreter, libraries and the 1 mm truth grid of truth.json (460 MiB), rounded up.
BASE_BYTES = 600 * MIB
LABEL_BYTES_PER_VOXEL = 16.0  # part ids (2), flat row index (8), surface flags and labels (5), + 1
SAMPLE_BYTES = 24.0  # sub-sample ids, labels and distances; 5.9 GiB at supersampling 4, 1.5 mm
SURFACE_MM2 = 8.0e6  # area of all part surfaces and layers of a large body
FOV_MARGIN_MM = 12.0  # as simulate/case.py fits the field of view to the body
RADIOGRAPH_MIN_PIXEL_MM = 2.0  # the radiograph's grid: max(2 mm, recon pixel)
# Disk, per voxel of the written grid: int16 CT of noise compresses little, labels about 10 times.
CT_DISK_BYTES_PER_VOXEL = 2.0
LABEL_DISK_BYTES_PER_VOXEL = 0.4
# DICOM: the CT uncompressed (2 bytes) and a BINARY SEG, one bit per voxel for each of the 11 structures
# (measured: 1.9 + 1.2 bytes per voxel for a clinical case with 10 segments present)
DICOM_DISK_BYTES_PER_VOXEL = 2.0 + 11 / 8
FIXED_DISK_BYTES = 4 * MIB  # previews, radiograph, truth.json


@dataclass(frozen=True)
class Need:
    """Estimated peak memory and disk space (bytes) of a job, and what sets most of the memory."""

    memory_bytes: float
    disk_bytes: float
    largest: str  # e.g. "reconstruction grid 336 x 336 x 120 voxels (recon_pixel_mm = 1.5, ...)"


def size(n_bytes: float) -> str:
    """``n_bytes`` for people: 1.5 GiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n_bytes) < 1024 or unit == "PiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def _count(extent_mm: float, spacing_mm: float) -> float:
    """Voxels along one axis; a float, so that absurd sizes do not overflow before they are refused."""
    return max(math.ceil(extent_mm / spacing_mm - 1e-9), 1)


def _shape(counts: tuple[float, float, float]) -> str:
    return " x ".join(f"{n:.0f}" for n in counts)


def raster_bytes(counts_xyz: tuple[float, ...], spacing_mm: tuple[float, ...], s: int) -> float:
    """Peak bytes of rasterizing ``counts_xyz`` voxels of ``spacing_mm`` with supersampling ``s``."""
    voxels = math.prod(counts_xyz)
    face_mm2 = math.prod(spacing_mm) ** (2.0 / 3.0)
    surface_voxels = min(SURFACE_MM2 / face_mm2, voxels)
    return voxels * LABEL_BYTES_PER_VOXEL + surface_voxels * s**3 * SAMPLE_BYTES


def _body_counts(spacing_mm: tuple[float, float, float]) -> tuple[float, float, float]:
    extent = (*BODY_BOX_MM, SCENE_Z_MM[1] - SCENE_Z_MM[0])
    return tuple(_count(e, s) for e, s in zip(extent, spacing_mm, strict=True))


def _positive(name: str, value: object) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{name} = {value!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise SpecError(f"{name} = {value!r} must be a finite number > 0")
    return number


def _supersampling(value: object) -> int:
    check_range("supersampling", value, 1, MAX_SUPERSAMPLING)
    if isinstance(value, bool) or int(value) != value:
        raise SpecError(f"supersampling = {value!r} must be an integer in [1, {MAX_SUPERSAMPLING}]")
    return int(value)


def phantom_need(spacing_mm: float, supersampling: int = 2, n_phantoms: int = 1) -> Need:
    """Memory and disk of ``nmosim phantom`` (``n_phantoms`` > 1: a series, written one by one)."""
    spacing = check_range("spacing_mm", spacing_mm, *SPACING_RANGE_MM)
    s = _supersampling(supersampling)
    counts = _body_counts((spacing, spacing, spacing))
    memory = BASE_BYTES + raster_bytes(counts, (spacing,) * 3, s)
    disk = n_phantoms * (math.prod(counts) * LABEL_DISK_BYTES_PER_VOXEL + FIXED_DISK_BYTES)
    return Need(memory, disk, f"phantom grid {_shape(counts)} voxels (spacing_mm = {spacing:g}, "
                              f"supersampling = {s})")  # fmt: skip


def check_z_range(z_range_mm: tuple[float, float]) -> tuple[float, float]:
    """A scan range (mm) that is finite, not empty and meets the body, which spans ``SCENE_Z_MM``."""
    try:
        low, high = (float(v) for v in z_range_mm)
    except (TypeError, ValueError):
        raise SpecError(f"z_range_mm = {z_range_mm!r} must be two numbers [low, high] in mm") from None
    shown = f"[{low:g}, {high:g}]"
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SpecError(f"z_range_mm = {shown} must be two finite numbers in mm")
    if not high > low:
        raise SpecError(f"z_range_mm = {shown} is empty; give low < high in mm")
    if high <= SCENE_Z_MM[0] or low >= SCENE_Z_MM[1]:
        raise SpecError(
            f"z_range_mm = {shown} misses the body, which spans z in "
            f"[{SCENE_Z_MM[0]:g}, {SCENE_Z_MM[1]:g}] mm"
        )
    return low, high


def case_need(protocol, z_range_mm: tuple[float, float], formats: tuple[str, ...] = ("nifti",)) -> Need:
    """Memory and disk of one CT case (``simulate/case.py``) with ``protocol`` over ``z_range_mm``,
    written in ``formats`` (nifti, dicom)."""
    low, high = check_z_range(z_range_mm)
    p = protocol
    side = max(BODY_BOX_MM) + 2 * FOV_MARGIN_MM
    fov = max(p.recon_fov_mm, side)
    pixel, thickness = p.recon_pixel_mm, p.slice_thickness_mm
    k, kz = p.imaging_oversampling, p.imaging_oversampling_z
    recon = (_count(fov, pixel), _count(fov, pixel), _count(high - low, thickness))
    fine = (pixel / k, pixel / k, thickness / kz)
    imaging = (_count(BODY_BOX_MM[0] + 4, fine[0]), _count(BODY_BOX_MM[1] + 4, fine[1]), recon[2] * kz)
    radius = math.hypot(*BODY_BOX_MM) / 2 + FOV_MARGIN_MM
    n_bins = max(p.n_bins, _count(2 * radius, p.iso_bin_width_mm) + 2)
    slab = max(8, 2 * (os.cpu_count() or 1))  # reconstructed slices projected together (simulate/ct.py)
    z_names = f"slice_thickness_mm = {thickness:g}, z_range_mm = [{low:g}, {high:g}]"
    recon_name = f"reconstruction grid {_shape(recon)} voxels (recon_pixel_mm = {pixel:g}, {z_names})"
    imaging_name = (f"imaging grid {_shape(imaging)} voxels (imaging_oversampling = {k}, "
                    f"imaging_oversampling_z = {kz}, recon_pixel_mm = {pixel:g}, {z_names})")  # fmt: skip
    maps = 8.0 * math.prod(imaging)  # water and bone maps, float32, on the imaging grid
    rad = max(RADIOGRAPH_MIN_PIXEL_MM, pixel)
    rad_counts = _body_counts((rad, rad, rad))
    # Labels and CT on the reconstruction grid live throughout; the stages after them one at a time.
    kept = {recon_name: raster_bytes(recon, (pixel, pixel, thickness), 2) + 14.0 * math.prod(recon)}
    stages = {
        imaging_name: raster_bytes(imaging, fine, 1) + maps,
        f"projections of {slab} slices (n_views = {p.n_views}, n_bins = {n_bins:.0f})":
            maps + slab * (2 * kz + 4) * p.n_views * n_bins * 4.0,
        f"radiograph grid {_shape(rad_counts)} voxels (recon_pixel_mm = {pixel:g})":
            raster_bytes(rad_counts, (rad,) * 3, 1),
    }  # fmt: skip
    terms = {**kept, **stages}
    memory = BASE_BYTES + sum(kept.values()) + max(stages.values())
    per_voxel = (CT_DISK_BYTES_PER_VOXEL + LABEL_DISK_BYTES_PER_VOXEL) * ("nifti" in formats)
    per_voxel += DICOM_DISK_BYTES_PER_VOXEL * ("dicom" in formats)
    disk = math.prod(recon) * per_voxel + FIXED_DISK_BYTES
    return Need(memory, disk, max(terms, key=terms.get))


def _meminfo_available() -> float | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return float(line.split()[1]) * 1024
    return None


def _cgroup_room() -> float | None:
    """Bytes the cgroup of this process may still take (v2, then v1), or None without a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = float(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or float(limit) >= 2**60:
            return None
        return max(float(limit) - usage, 0.0)
    return None


def memory_limit_bytes() -> float:
    """The memory a job may take: ``NMOSIM_MEMORY_LIMIT_GB`` (GiB) when set, else what is available now."""
    text = os.environ.get(ENV_LIMIT)
    if text:
        return _positive(ENV_LIMIT, text) * GIB
    candidates = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    if not candidates:
        try:
            candidates = [float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))]
        except (ValueError, OSError, AttributeError):
            return math.inf
    return min(candidates)


def check_memory(need: Need, workers: int = 1, limit_bytes: float | None = None) -> None:
    """Refuse (``SpecError``) a job whose ``workers`` concurrent copies need more than the limit."""
    limit = memory_limit_bytes() if limit_bytes is None else limit_bytes
    total = need.memory_bytes * max(workers, 1)
    if total > limit:
        each = f" ({workers} workers of {size(need.memory_bytes)} each)" if workers > 1 else ""
        raise SpecError(
            f"the {need.largest} needs about {size(total)} of memory{each}; {size(limit)} available "
            f"({ENV_LIMIT} sets the limit)"
        )


def check_phantom(spacing_mm: float, supersampling: int = 2, n_phantoms: int = 1) -> Need:
    """:func:`phantom_need`, refused above the memory limit."""
    need = phantom_need(spacing_mm, supersampling, n_phantoms)
    check_memory(need)
    return need


def check_case(
    protocol, z_range_mm: tuple[float, float], workers: int = 1, formats: tuple[str, ...] = ("nifti",)
) -> Need:
    """:func:`case_need`, refused above the memory limit (``workers`` cases at once)."""
    need = case_need(protocol, z_range_mm, formats)
    check_memory(need, workers)
    return need
