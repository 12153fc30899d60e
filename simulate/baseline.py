"""A simple HO detector on CT cases: HU threshold, minus the thick cores of the native bones, side by x.

It only predicts label maps for ``nmosim evaluate``; it never reads the truth labels of a case.

Method (a reference point, not a good segmenter):

1. The CT is median filtered (``median_size`` voxels per axis, default 3; 1 turns it off), which
   removes single-voxel noise and streak specks at low dose; voxels above ``threshold_hu`` (default
   150 HU: mineralized tissue, DOMAIN.md 4) are candidates.
2. Their 26-connected components are found; the ``n_bone_components`` largest (default 3: the pelvis
   and both femurs, often one component where the joints touch) of at least ``BONE_MIN_ML`` (5 ml)
   hold the native bones, with any HO attached to them.
3. Native bone is what a morphological opening of those components keeps: the voxels within
   ``core_mm + margin`` of their core, the voxels deeper than ``core_mm`` (default 7 mm) inside
   them (exact distances, anisotropic spacing honoured; margin one voxel diagonal). Bone is thick;
   spurs and bridges that leave the bone contour are thinner than ``2 * core_mm`` or reach further
   from a thick core than the margin, so they stay as candidates; so do the detached components.
4. Candidates smaller than ``min_volume_ml`` (default 0.1 ml) are dropped; every other one is HO,
   and each voxel's side is the sign of its x coordinate (patient frame, RAS+, +x toward the
   patient's right): ``ho_right`` (6) for x > 0, else ``ho_left`` (7). ``core_mm = 0`` turns step 3
   off: the largest components are dropped whole, attached HO with them.

Measured on 6 cases of phases b-d (2.5 mm voxels; ``nmosim baseline`` then ``nmosim evaluate``),
HO Dice about 0.5-0.7 in phase b, 0.3 in c and 0-0.05 in d.

Known limits, by design: thick mature HO grown onto a bone (phase d bridges wider than
``2 * core_mm``) has a core of its own, joined to the bone's, and is taken for bone; thin native
parts (the rims of the acetabulum, the iliac wing, the trochanters, partial-volume edges) come out
as small false positives where they exceed ``min_volume_ml``; calcifications that are not HO
(phleboliths, vascular calcification) are reported as HO; a pelvis split by the scan range leaves
its smaller pieces as false positives.
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
N_BONE_COMPONENTS = 3  # pelvis, femur_right, femur_left
MIN_VOLUME_ML = 0.1
MEDIAN_SIZE = 3
MARGIN_VOXELS = 1.0  # native bone reaches this many voxel diagonals beyond its opening
CORE_MM = 7.0
BONE_MIN_ML = 5.0  # a component smaller than this holds no native bone (a femoral head is ~ 50 ml)
_CUBE = np.ones((3, 3, 3), dtype=bool)


def detect_ho(
    hu_zyx: np.ndarray,
    grid: Grid,
    threshold_hu: float = THRESHOLD_HU,
    n_bone_components: int = N_BONE_COMPONENTS,
    min_volume_ml: float = MIN_VOLUME_ML,
    median_size: int = MEDIAN_SIZE,
    core_mm: float = CORE_MM,
) -> np.ndarray:
    """Predicted structures (uint8 ``[z, y, x]``: 0, 6 ho_right, 7 ho_left) from a CT volume in HU.

    ``grid`` gives the voxel spacing (for volumes) and the patient frame (for sides).

    >>> hu = np.zeros((3, 3, 9)); hu[1, 1, 0:3] = 900; hu[1, 1, 7] = 400
    >>> grid = Grid.centered((3, 3, 9), (1.0, 1.0, 1.0))
    >>> detect_ho(hu, grid, min_volume_ml=0, median_size=1)[1, 1]  # both far below BONE_MIN_ML: HO
    array([7, 7, 7, 0, 0, 0, 0, 6, 0], dtype=uint8)
    """
    if hu_zyx.shape != grid.shape:
        raise SpecError(f"ct shape = {hu_zyx.shape} does not match the grid shape {grid.shape}")
    if n_bone_components < 0:
        raise SpecError(f"n_bone_components = {n_bone_components} must be >= 0")
    if median_size < 1:
        raise SpecError(f"median_size = {median_size} must be >= 1")
    if not (math.isfinite(core_mm) and core_mm >= 0):
        raise SpecError(f"core_mm = {core_mm!r} must be a finite number >= 0 (mm)")
    check_parameters(threshold_hu, min_volume_ml)
    smooth = ndimage.median_filter(hu_zyx, size=median_size) if median_size > 1 else hu_zyx
    mineral = smooth > threshold_hu
    labels, n = ndimage.label(mineral, structure=_CUBE)
    out = np.zeros(hu_zyx.shape, np.uint8)
    if n == 0:
        return out
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    # Largest first; ties broken by label (raster order) so the result is deterministic.
    order = np.lexsort((np.arange(n), -sizes))
    min_bone_voxels = BONE_MIN_ML * 1000.0 / grid.voxel_volume_mm3
    bone_ids = [i + 1 for i in order[:n_bone_components] if sizes[i] >= min_bone_voxels]
    bones = np.isin(labels, bone_ids)
    candidates = mineral & ~bones
    if core_mm > 0 and bones.any():
        candidates |= bones & ~native_bone(bones, grid.spacing_mm[::-1], core_mm)
    pieces, m = ndimage.label(candidates, structure=_CUBE)
    if m == 0:
        return out
    min_voxels = min_volume_ml * 1000.0 / grid.voxel_volume_mm3
    big = np.flatnonzero(np.bincount(pieces.ravel(), minlength=m + 1)[1:] >= min_voxels) + 1
    ho = np.isin(pieces, big)
    x_of_column = grid.origin_mm[0] + grid.spacing_mm[0] * np.arange(hu_zyx.shape[2])
    right = np.broadcast_to(x_of_column > 0, hu_zyx.shape)
    out[ho & right] = int(Structure.HO_RIGHT)
    out[ho & ~right] = int(Structure.HO_LEFT)
    return out


def native_bone(bones: np.ndarray, spacing_zyx_mm: tuple[float, float, float], core_mm: float) -> np.ndarray:
    """The morphological opening of ``bones`` by a ball of ``core_mm`` (exact distances in mm), grown by
    one voxel diagonal: the thick native bone, without the thin parts that leave its contour."""
    sampling = np.asarray(spacing_zyx_mm, dtype=float)
    depth = ndimage.distance_transform_edt(bones, sampling=sampling)
    core = depth > core_mm
    if not core.any():
        return np.zeros_like(bones)
    margin = MARGIN_VOXELS * float(np.sqrt((sampling**2).sum()))
    return ndimage.distance_transform_edt(~core, sampling=sampling) <= core_mm + margin


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
    n_bone_components: int = N_BONE_COMPONENTS,
    min_volume_ml: float = MIN_VOLUME_ML,
    median_size: int = MEDIAN_SIZE,
    progress: Callable[[int, int, str], None] | None = None,
    overwrite: bool = False,
    core_mm: float = CORE_MM,
) -> Path:
    """Write ``out/<case_id>.nii.gz`` (uint8, the case's grid and affine) for every CT case.

    ``out`` appears when every prediction is written (nmosim.simulate.outputs); ``overwrite``
    lets it replace an earlier nmosim output. ``progress(done, total, case_id)`` follows each case.
    """
    check_parameters(threshold_hu, min_volume_ml)
    folders = find_ct_cases(cases_dir)
    with staged_directory(out, "baseline", overwrite) as stage:
        # As nnU-Net's predict does: the labels of the predictions, read by nmosim evaluate.
        names = {name: value for value, name in STRUCTURE_NAMES.items()}
        write_json(stage / "dataset.json", {"labels": names, "label_set": "all", "file_ending": ".nii.gz"})
        for index, folder in enumerate(folders):
            volume = read_nifti(folder / "ct.nii.gz")
            grid = volume.grid()
            hu = volume.data.astype(np.float32)
            labels = detect_ho(hu, grid, threshold_hu, n_bone_components, min_volume_ml, median_size, core_mm)
            write_nifti(stage / f"{folder.name}.nii.gz", labels, grid, np.uint8)
            if progress:
                progress(index + 1, len(folders), folder.name)
    return Path(out).absolute()


def check_parameters(threshold_hu: float, min_volume_ml: float) -> None:
    """``threshold_hu`` finite, ``min_volume_ml`` finite and >= 0, else :class:`SpecError`."""
    if not math.isfinite(threshold_hu):
        raise SpecError(f"threshold_hu = {threshold_hu!r} must be a finite number (HU)")
    if not (math.isfinite(min_volume_ml) and min_volume_ml >= 0):
        raise SpecError(f"min_volume_ml = {min_volume_ml!r} must be a finite number >= 0 (ml)")
