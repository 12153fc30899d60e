"""Read a case folder for the teaching book and derive what its figures show.

Landmark levels, HO maturity per voxel and where the Brooker gap lies; it draws and writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Structure
from nmosim.phantoms.progression import STAGES
from nmosim.simulate.io import read_json, read_nifti

SIDES = ("right", "left")
_HO = {"right": int(Structure.HO_RIGHT), "left": int(Structure.HO_LEFT)}
_FEMUR = {"right": int(Structure.FEMUR_RIGHT), "left": int(Structure.FEMUR_LEFT)}
_CUBE = np.ones((3, 3, 3), bool)  # 26-connectivity, as the grading uses (DESIGN.md 4)


@dataclass(frozen=True)
class CaseFolder:
    """What the book reads from one case folder (DESIGN.md 5); ``hu`` and ``radiograph`` may be None
    (a phantom folder has labels and truth only)."""

    path: Path
    truth: dict
    grid: Grid
    structures: np.ndarray
    instances: np.ndarray
    tissues: np.ndarray
    hu: np.ndarray | None
    radiograph: dict | None


def _read_volume(path: Path) -> tuple[np.ndarray, Grid]:
    volume = read_nifti(path)
    return volume.data, volume.grid()


def is_case_folder(path: Path) -> bool:
    """True when ``path`` holds a truth.json and a structures volume."""
    return (Path(path) / "truth.json").is_file() and (Path(path) / "structures.nii.gz").is_file()


def read_case_folder(path: Path) -> CaseFolder:
    """Read truth.json, the label volumes, ct.nii.gz and the radiograph npz where present."""
    path = Path(path)
    if not is_case_folder(path):
        raise SpecError(f"case = '{path}' is not a case folder (no truth.json and structures.nii.gz)")
    truth = read_json(path / "truth.json")
    structures, grid = _read_volume(path / "structures.nii.gz")
    instances, _ = _read_volume(path / "ho_instances.nii.gz")
    tissues, _ = _read_volume(path / "tissues.nii.gz")
    hu = _read_volume(path / "ct.nii.gz")[0] if (path / "ct.nii.gz").is_file() else None
    radiograph = None
    if (path / "radiograph_ap.npz").is_file():
        with np.load(path / "radiograph_ap.npz") as npz:
            radiograph = {name: npz[name] for name in npz.files if name != "geometry_json"}
            radiograph["geometry"] = json.loads(str(npz["geometry_json"]))
    return CaseFolder(
        path,
        truth,
        grid,
        structures.astype(np.uint8),
        instances.astype(np.uint16),
        tissues.astype(np.uint8),
        hu,
        radiograph,
    )


def series_folders(path: Path) -> list[Path]:
    """Time-point folders of a series (``nmosim series``), ordered by weeks since injury."""
    found = [p for p in sorted(Path(path).iterdir()) if p.is_dir() and is_case_folder(p)]
    if not found:
        raise SpecError(f"series = '{path}' holds no case folder")

    def weeks(p: Path) -> float:
        value = read_json(p / "truth.json").get("weeks_since_injury")
        return float(value) if value is not None else 0.0

    patients = set()
    for p in found:
        truth = read_json(p / "truth.json")
        # One patient over time shares seed and disease course (onset, growth), whatever the week.
        course = json.dumps(truth.get("generation", {}).get("course"), sort_keys=True)
        patients.add((truth.get("seed"), truth.get("case_index"), course))
    if len(patients) > 1:
        raise SpecError(
            f"series = '{path}' holds case folders of {len(patients)} different patients or disease "
            "courses; give one case folder or the folder of one nmosim series"
        )
    return sorted(found, key=weeks)


def landmark_levels_mm(truth: dict) -> dict[str, float]:
    """Axial levels z (mm) where the book cuts: acetabular roof, femoral head centre, lesser trochanter.

    From the right hip's landmarks in truth.json (the hips are mirror images in x). The roof is
    the head's upper pole plus the joint space (DOMAIN.md 3: the acetabulum covers the head).
    """
    marks = truth["landmarks_right_mm"]
    head_z = float(marks["head_center"][2])
    joint = float(truth.get("anatomy", {}).get("joint_space_mm", 4.0))
    return {
        "acetabular roof": head_z + float(marks["head_radius"]) + joint,
        "femoral head centre": head_z,
        "lesser trochanter": float(marks["lesser_trochanter"][2]),
    }


def head_centre_mm(truth: dict, side: str) -> np.ndarray:
    """Centre (x, y, z) of the femoral head of ``side`` (mm)."""
    centre = np.asarray(truth["landmarks_right_mm"]["head_center"], float)
    return centre if side == "right" else centre * [-1, 1, 1]


def focus_mm(truth: dict) -> tuple[np.ndarray, str]:
    """Where coronal and sagittal views cut, and what lies there: the index hip's largest lesion,
    else its femoral head."""
    side = index_side(truth)
    lesions = truth[side]["lesions"]
    if lesions:
        largest = max(lesions, key=lambda lesion: lesion["volume_ml"])
        return np.asarray(largest["centroid_mm"], float), f"the {side} hip's largest lesion"
    return head_centre_mm(truth, side), f"the {side} femoral head"


def index_side(truth: dict) -> str:
    """The hip a reader should look at first: the higher Brooker grade, the right one on a tie."""
    grades = {side: truth[side]["brooker_grade"] for side in SIDES}
    return "left" if grades["left"] > grades["right"] else "right"


def maturity_volume(instances: np.ndarray, truth: dict) -> np.ndarray:
    """uint8 volume: 0 outside HO, else 1 + the index in STAGES of the lesion's maturity."""
    table = np.zeros(int(instances.max()) + 1, np.uint8)
    for side in SIDES:
        for lesion in truth[side]["lesions"]:
            instance = int(lesion["instance"])
            if instance < table.size and lesion.get("maturity") in STAGES:
                table[instance] = 1 + STAGES.index(lesion["maturity"])
    return table[instances]


@dataclass(frozen=True)
class GapLocation:
    """Where a hip's Brooker gap lies: ``spur_mm`` on the spur, ``bone_mm`` on the opposing bone
    (x, y, z), ``centre_distance_mm`` between those voxel centres; ``kind`` is "gap", "bridge"
    (grade IV: ``spur_mm`` = ``bone_mm`` = a bridge's centroid) or "islands"."""

    side: str
    kind: str
    spur_mm: np.ndarray
    bone_mm: np.ndarray
    centre_distance_mm: float


def locate_gap(structures: np.ndarray, grid: Grid, side: str) -> GapLocation | None:
    """The narrowest place between a hip's spurs and the opposing bone (DESIGN.md 4), on the labels'
    grid; None without HO. Spurs attached to the pelvis face the femur, femoral spurs the pelvis."""
    ho = structures == _HO[side]
    if not ho.any():
        return None
    labels, n = ndimage.label(ho, _CUBE)
    pelvis = structures == int(Structure.PELVIS)
    femur = structures == _FEMUR[side]
    near_p = set(np.unique(labels[ndimage.binary_dilation(pelvis, _CUBE) & ho]).tolist())
    near_f = set(np.unique(labels[ndimage.binary_dilation(femur, _CUBE) & ho]).tolist())
    bridges = sorted(near_p & near_f)
    spacing_zyx = np.asarray(grid.spacing_mm)[::-1]
    if bridges:
        centre = grid.index_to_mm(np.array(ndimage.center_of_mass(labels == bridges[0])))
        return GapLocation(side, "bridge", centre, centre, 0.0)
    pelvic, femoral = sorted(near_p), sorted(near_f)
    if not pelvic and not femoral:
        centre = grid.index_to_mm(np.array(ndimage.center_of_mass(ho)))
        return GapLocation(side, "islands", centre, centre, float("nan"))
    best = None
    pairs = ((pelvic, femur | np.isin(labels, femoral)), (femoral, pelvis | np.isin(labels, pelvic)))
    for spurs, bone in pairs:
        if not spurs or not bone.any():
            continue
        spur = np.isin(labels, spurs)
        found = _nearest(spur, bone, spacing_zyx)
        if best is None or found[0] < best[0]:
            best = found
    if best is None:
        return None
    return GapLocation(side, "gap", grid.index_to_mm(best[1]), grid.index_to_mm(best[2]), best[0])


SEARCH_MARGIN_MM = 80.0  # first search box around the spurs; widened to the whole volume if needed


def _nearest(
    spur: np.ndarray, bone: np.ndarray, spacing_zyx: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """(centre distance mm, spur voxel, bone voxel) of the closest spur-bone pair, searched in a box
    around the spurs first (exact when the distance found is within the box's margin)."""
    idx = np.argwhere(spur)
    pad = np.ceil(SEARCH_MARGIN_MM / spacing_zyx).astype(int)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, spur.shape)
    for box_lo, box_hi in ((lo, hi), (np.zeros(3, int), np.array(spur.shape))):
        box = tuple(slice(a, b) for a, b in zip(box_lo, box_hi, strict=True))
        if not bone[box].any():
            continue
        distance, nearest = ndimage.distance_transform_edt(
            ~bone[box], sampling=spacing_zyx, return_indices=True
        )
        d = np.where(spur[box], distance, np.inf)
        at = np.unravel_index(int(np.argmin(d)), d.shape)
        whole = bool(np.all(box_lo == 0) and np.all(box_hi == spur.shape))
        if whole or d[at] <= SEARCH_MARGIN_MM:
            return float(d[at]), np.array(at) + box_lo, nearest[(slice(None), *at)] + box_lo
    raise ValueError("no opposing bone")  # callers check that the bone mask is not empty


def radiograph_pixel(points_mm: np.ndarray, geometry: dict, shape: tuple[int, int]) -> np.ndarray:
    """(column, row) of points (x, y, z) on the radiograph as shown: superior up, patient's right
    on the viewer's left (the flip that ``nmosim case`` applies to radiograph_ap.png)."""
    p = np.atleast_2d(np.asarray(points_mm, float))
    span = geometry["source_y_mm"] - geometry["detector_y_mm"]
    t = (geometry["source_y_mm"] - p[:, 1]) / span  # fraction of the way from source to detector
    u = p[:, 0] / t
    v = (p[:, 2] - geometry["center_z_mm"]) / t
    nv, nu = shape
    pixel = geometry["pixel_mm"]
    col = u / pixel + (nu - 1) / 2
    row = v / pixel + (nv - 1) / 2
    return np.stack([(nu - 1) - col, (nv - 1) - row], axis=-1)
