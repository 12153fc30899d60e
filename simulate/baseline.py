"""A simple HO detector on CT cases: HU threshold, minus what the other side mirrors, side by x.

It only predicts label maps for ``nmosim evaluate``; it never reads the truth labels of a case, only
the CT and its affine.

Method (a reference point, not a good segmenter): native bone is paired left to right, HO is not.
The hips are mirror images of each other through the midsagittal plane, HO grows on one side in its
own shape, so mineral with no mirror image is HO, whether detached, a spur or a bridge across the
joint, however thick (a thickness rule cannot tell a mature bridge from native bone).

1. The CT is median filtered (``median_size`` voxels per axis, default 3; 1 turns it off), which
   removes single-voxel noise and streak specks at low dose; voxels above ``threshold_hu`` (default
   150 HU: mineralized tissue, DOMAIN.md 4) are mineral.
2. The mirror plane is the sagittal plane x = c (patient frame, RAS+) that superimposes the mineral
   best on its mirror image, searched in half-column steps within ``MAX_SHIFT_MM`` (10 mm) of x = 0,
   the patient frame's origin between the femoral heads (DESIGN.md); ties go to the plane nearest
   x = 0, so the result is deterministic.
3. Mineral farther than ``GROW_FRACTION`` (0.4) times ``mirror_tolerance_mm`` (default 10 mm, so
   4 mm; exact distances, anisotropic spacing honoured) from the mirrored mineral is a candidate; a
   candidate piece (26-connected) counts only where it reaches farther than the whole tolerance
   (hysteresis: the small asymmetries of native anatomy stay out, an HO keeps its parts down to 4 mm
   from the bone it grew on). Columns whose mirror image falls outside the field of view have no
   partner to compare with and are never candidates.
4. Pieces smaller than ``min_volume_ml`` (default 0.1 ml) are dropped; every other one is HO, and
   each voxel's side is the sign of its x coordinate (+x toward the patient's right): ``ho_right``
   (6) for x > 0, else ``ho_left`` (7).

Measured on the README's example cohort (``examples/cohort.toml`` with ``[scanner.overrides]``
``recon_pixel_mm = 2.5``, ``slice_thickness_mm = 2.5``, ``n_views = 240``; the 15 cases made first,
``nmosim baseline`` then ``nmosim evaluate``), mean HO Dice (smallest case in brackets): phase b
0.77 (0.67, 3 cases), c 0.64 (0.25, 4), d 0.60 (0.57, 3), a 0.55 (0, 5); the method this replaced
(native bone as a 7 mm opening of the largest components) scored 0.14, 0.15, 0 and 0.11 on the same
cases. The lowest case of phase c has HO on both hips at the same site; the phase a case at 0 has
one 0.3 ml island. About a second per case at 2.5 mm.

Known limits, by design: nmosim's hips are near mirror images by construction (the left hip's
landmarks are the right one's mirrored through x = 0; the atlas pelvis is nearly symmetric), so this
reference does better here than on patients, where asymmetric positioning, anatomy and pelvic tilt
would want a registration first; HO that the other hip has in the same place (bilateral, same site)
mirrors itself and is missed; the part of an HO within 0.4 ``mirror_tolerance_mm`` of the bone it
grew on is left out, and HO that never reaches ``mirror_tolerance_mm`` from the other side's bone is
missed (small islands, phase a); the asymmetric parts of the atlas pelvis (sacrum, iliac spines)
that reach past the tolerance come out as false positives; calcifications that are not HO
(phleboliths, vascular calcification) are reported as HO when they have no mirror image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import STRUCTURE_NAMES, Structure
from nmosim.simulate.io import read_nifti, write_json, write_nifti
from nmosim.simulate.outputs import is_hidden, staged_directory

THRESHOLD_HU = 150.0
MIN_VOLUME_ML = 0.1
MEDIAN_SIZE = 3
MIRROR_TOLERANCE_MM = 10.0
MAX_TOLERANCE_MM = 50.0
GROW_FRACTION = 0.4  # HO pieces reach down to this fraction of the tolerance from the mirror image
MAX_SHIFT_MM = 10.0  # the mirror plane lies this close to x = 0 (mm)
_CUBE = np.ones((3, 3, 3), dtype=bool)


def detect_ho(
    hu_zyx: np.ndarray,
    grid: Grid,
    threshold_hu: float = THRESHOLD_HU,
    min_volume_ml: float = MIN_VOLUME_ML,
    median_size: int = MEDIAN_SIZE,
    mirror_tolerance_mm: float = MIRROR_TOLERANCE_MM,
) -> np.ndarray:
    """Predicted structures (uint8 ``[z, y, x]``: 0, 6 ho_right, 7 ho_left) from a CT volume in HU.

    ``grid`` gives the voxel spacing (for volumes and distances) and the patient frame (mirror, sides).

    >>> hu = np.zeros((1, 4, 9)); hu[0, 3, [0, 1, 7, 8]] = 900; hu[0, 0, 6] = 400; hu[0, 0, 2] = 400
    >>> grid = Grid.centered((1, 4, 9), (1.0, 1.0, 1.0))
    >>> detect_ho(hu, grid, min_volume_ml=0, median_size=1, mirror_tolerance_mm=1.5)[0, 0]
    array([0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=uint8)
    >>> hu[0, 0, 2] = 0  # the left twin gone: the right one has no mirror image, and is HO
    >>> detect_ho(hu, grid, min_volume_ml=0, median_size=1, mirror_tolerance_mm=1.5)[0, 0]
    array([0, 0, 0, 0, 0, 0, 6, 0, 0], dtype=uint8)
    """
    if hu_zyx.shape != grid.shape:
        raise SpecError(f"ct shape = {hu_zyx.shape} does not match the grid shape {grid.shape}")
    check_parameters(threshold_hu, min_volume_ml, median_size, mirror_tolerance_mm)
    smooth = ndimage.median_filter(hu_zyx, size=int(median_size)) if median_size > 1 else hu_zyx
    mineral = smooth > threshold_hu
    out = np.zeros(hu_zyx.shape, np.uint8)
    mirror, paired = mirror_image(mineral, grid)
    if not mirror.any():
        return out
    sampling = np.asarray(grid.spacing_mm[::-1], dtype=float)
    distance = ndimage.distance_transform_edt(~mirror, sampling=sampling)
    candidates = mineral & (distance > GROW_FRACTION * mirror_tolerance_mm) & paired[None, None, :]
    pieces, m = ndimage.label(candidates, structure=_CUBE)
    if m == 0:
        return out
    min_voxels = min_volume_ml * 1000.0 / grid.voxel_volume_mm3
    big = np.bincount(pieces.ravel(), minlength=m + 1) >= min_voxels
    reached = np.zeros(m + 1, bool)
    reached[np.unique(pieces[candidates & (distance > mirror_tolerance_mm)])] = True
    big[0] = False
    ho = (big & reached)[pieces]
    x_of_column = grid.origin_mm[0] + grid.spacing_mm[0] * np.arange(hu_zyx.shape[2])
    right = np.broadcast_to(x_of_column > 0, hu_zyx.shape)
    out[ho & right] = int(Structure.HO_RIGHT)
    out[ho & ~right] = int(Structure.HO_LEFT)
    return out


def mirror_image(mask_zyx: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """``mask`` mirrored through the sagittal plane that superimposes it best on itself (step 2 of the
    module docstring), and which columns (x) have their mirror image inside the volume.

    Column j mirrors onto column k - j; the plane is x = origin + k * spacing / 2 (mm).
    """
    n, dx, x0 = mask_zyx.shape[2], grid.spacing_mm[0], grid.origin_mm[0]
    k_centre = int(round(-2.0 * x0 / dx))  # the plane x = 0
    reach = int(math.ceil(2.0 * MAX_SHIFT_MM / dx))
    best: tuple[int, int] | None = None  # (overlap, k)
    for k in sorted(range(k_centre - reach, k_centre + reach + 1), key=lambda k: (abs(k - k_centre), k)):
        overlap = int(np.count_nonzero(mask_zyx & _mirrored(mask_zyx, k)))
        if best is None or overlap > best[0]:
            best = (overlap, k)
    k = best[1]
    columns = np.arange(n)
    return _mirrored(mask_zyx, k), (k - columns >= 0) & (k - columns < n)


def _mirrored(mask_zyx: np.ndarray, k: int) -> np.ndarray:
    """``out[..., j] = mask[..., k - j]`` where ``0 <= k - j < n``, else False."""
    n = mask_zyx.shape[2]
    out = np.zeros_like(mask_zyx)
    lo, hi = max(0, k - n + 1), min(n - 1, k)
    if lo <= hi:
        out[:, :, lo : hi + 1] = mask_zyx[:, :, k - hi : k - lo + 1][:, :, ::-1]
    return out


def find_ct_cases(cases_dir: Path) -> list[Path]:
    """Folders under ``cases_dir`` (any depth, hidden ones skipped) holding ct.nii.gz, sorted by name."""
    cases_dir = Path(cases_dir)
    if not cases_dir.is_dir():
        raise SpecError(f"cases = '{cases_dir}' is not a directory")
    found = {p.parent for p in cases_dir.rglob("ct.nii.gz") if not is_hidden(p.parent, cases_dir)}
    folders = sorted(found, key=lambda p: (p.name, p))
    if not folders:
        raise SpecError(f"cases = '{cases_dir}' holds no case folder with ct.nii.gz")
    names = [f.name for f in folders]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:  # their predictions would share one file name
        raise SpecError(f"cases = '{cases_dir}' holds several case folders named {dupes[0]!r}")
    return folders


def run_baseline(
    cases_dir: Path,
    out: Path,
    threshold_hu: float = THRESHOLD_HU,
    min_volume_ml: float = MIN_VOLUME_ML,
    median_size: int = MEDIAN_SIZE,
    mirror_tolerance_mm: float = MIRROR_TOLERANCE_MM,
    progress: Callable[[int, int, str], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``out/<case_id>.nii.gz`` (uint8, the case's grid and affine) for every CT case.

    ``out`` appears when every prediction is written (nmosim.simulate.outputs); ``overwrite``
    lets it replace an earlier nmosim output. ``progress(done, total, case_id)`` follows each case.
    """
    check_parameters(threshold_hu, min_volume_ml, median_size, mirror_tolerance_mm)
    folders = find_ct_cases(cases_dir)
    with staged_directory(out, "baseline", overwrite) as stage:
        # As nnU-Net's predict does: the labels of the predictions, read by nmosim evaluate.
        names = {name: value for value, name in STRUCTURE_NAMES.items()}
        write_json(stage / "dataset.json", {"labels": names, "label_set": "all", "file_ending": ".nii.gz"})
        for index, folder in enumerate(folders):
            volume = read_nifti(folder / "ct.nii.gz")
            grid = volume.grid()
            hu = volume.data.astype(np.float32)
            labels = detect_ho(hu, grid, threshold_hu, min_volume_ml, median_size, mirror_tolerance_mm)
            write_nifti(stage / f"{folder.name}.nii.gz", labels, grid, np.uint8)
            if progress:
                progress(index + 1, len(folders), folder.name)
    return Path(out).absolute()


def check_parameters(
    threshold_hu: float,
    min_volume_ml: float,
    median_size: int = MEDIAN_SIZE,
    mirror_tolerance_mm: float = MIRROR_TOLERANCE_MM,
) -> None:
    """Each parameter within its range (finite numbers), else :class:`SpecError` naming it."""
    if not math.isfinite(threshold_hu):
        raise SpecError(f"threshold_hu = {threshold_hu!r} must be a finite number (HU)")
    if not (math.isfinite(min_volume_ml) and min_volume_ml >= 0):
        raise SpecError(f"min_volume_ml = {min_volume_ml!r} must be a finite number >= 0 (ml)")
    if isinstance(median_size, bool) or int(median_size) != median_size or median_size < 1:
        raise SpecError(f"median_size = {median_size!r} must be a whole number >= 1 (voxels)")
    if not (math.isfinite(mirror_tolerance_mm) and 0 < mirror_tolerance_mm <= MAX_TOLERANCE_MM):
        allowed = f"(0, {MAX_TOLERANCE_MM:g}]"
        raise SpecError(f"mirror_tolerance_mm = {mirror_tolerance_mm!r} must be a number in {allowed} (mm)")
