"""Score predicted segmentations of case folders against their ground truth: overlap, surface, lesions, grade.

It reads label volumes and truth.json and writes a report; it never simulates, edits or regrades the truth.

Prediction convention
---------------------
For each case folder ``TRUTH/.../<case_id>/`` (a folder holding ``structures.nii.gz``) the prediction is
``PRED/<case_id>.nii.gz``: an integer label map on the case's grid (same shape and affine as
``structures.nii.gz``) in the label ids of DESIGN.md 3. Only the HO ids are required: 6 (ho_right) and
7 (ho_left); every other value is ignored, except that when the prediction holds any native-bone id
(3 pelvis, 4 femur_right, 5 femur_left) the bones are scored too. A float map whose values are all
integers is accepted. Predictions in the label sets of ``nmosim dataset`` (what a network trained
on its nnU-Net folder writes) are read with ``pred_labels``: "bones_ho" (1 pelvis, 2 femur_right,
3 femur_left, 4 ho_right, 5 ho_left) or "ho" (1 = HO; the side of each voxel is the sign of its x
coordinate in the patient frame, x > 0 right). A prediction that is missing, unreadable, of another
shape or affine, or not a label map is reported in the ``status`` column and scores nothing; it never
stops the evaluation.

Metrics, per case and per class (``ho_right``, ``ho_left``, ``ho`` = both, and the bones when present)
---------------------------------------------------------------------------------------------------
- Dice ``2|T&P| / (|T| + |P|)``.
- Surfaces are the voxels of a mask with a 6-neighbour outside it (the volume's border counts as
  outside). The distance of a surface voxel to the other surface is centre to centre in mm, exact
  (``scipy.ndimage.distance_transform_edt`` with the NIfTI voxel spacing, anisotropy honoured).
- HD95 (mm) = max of the two directed 95th percentiles (truth->pred, pred->truth), as in MONAI.
- NSD at ``tolerance_mm`` (Nikolov et al. 2021, counted over surface voxels): the fraction of the
  surface voxels of both masks lying within the tolerance of the other surface.
- Volume error ``V_pred - V_truth`` in ml and relative ``(V_pred - V_truth) / V_truth``.
- Empty masks: both empty -> Dice 1, HD95 0, NSD 1, relative volume error NaN (undefined);
  one empty -> Dice 0, HD95 NaN, NSD 0. NaNs are written as ``nan`` in the CSV and as null in
  JSON; summaries average over the defined values and count the undefined ones (``n_undefined``).

Lesions (HO of both sides together): predicted lesions are the 26-connected components of the
predicted HO; truth lesions are the instances of ``ho_instances.nii.gz`` (connected components of the
truth HO when that file is absent). A truth lesion is detected (TP) when some predicted component
overlaps it with IoU > ``iou_threshold`` (default 0: any shared voxel), else it is a FN; a predicted
component matching no truth lesion that way is a FP. Recall = TP / truth lesions, precision = matched
predicted components / predicted components, F1 from those two.

Brooker grade: the predicted HO is graded with :func:`nmosim.phantoms.grading.grade_hips` on the truth's
native bones (predictions may lack bones): the truth ``structures`` with its HO removed and the
predicted HO painted on every voxel that is not native bone. The reference grade is that of the truth
labels on the same grid (so a perfect prediction scores accuracy 1); the grade in truth.json
(measured on a finer grid) is kept in the CSV as ``grade_truth_json_<side>``. Accuracy, the 5x5
confusion matrix (rows truth, columns prediction, grades 0-4) and quadratic weighted Cohen's kappa
pool both hips of every scored case.

Every summary is also broken down by phase, dose (mAs) and kernel from truth.json.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grading import grade_hips
from nmosim.phantoms.labels import Structure
from nmosim.simulate.outputs import is_hidden

log = logging.getLogger(__name__)

N_GRADES = 5  # Brooker 0..4
PRED_LABEL_SETS = ("structures", "bones_ho", "ho")
CLASSES: dict[str, tuple[int, ...]] = {
    "ho_right": (int(Structure.HO_RIGHT),),
    "ho_left": (int(Structure.HO_LEFT),),
    "ho": (int(Structure.HO_RIGHT), int(Structure.HO_LEFT)),
    "pelvis": (int(Structure.PELVIS),),
    "femur_right": (int(Structure.FEMUR_RIGHT),),
    "femur_left": (int(Structure.FEMUR_LEFT),),
}
HO_CLASSES = ("ho_right", "ho_left", "ho")
BONE_CLASSES = ("pelvis", "femur_right", "femur_left")
SEGMENTATION_METRICS = ("dice", "hd95_mm", "nsd", "volume_truth_ml", "volume_pred_ml", "volume_error_ml",
                        "volume_error_rel")  # fmt: skip
LESION_METRICS = ("lesions_truth", "lesions_pred", "lesion_tp", "lesion_fp", "lesion_fn", "lesion_recall",
                  "lesion_precision", "lesion_f1")  # fmt: skip
BREAKDOWNS = ("phase", "mas", "kernel")
AFFINE_TOLERANCE_MM = 1e-3
_FACES = ndimage.generate_binary_structure(3, 1)
_CUBE = np.ones((3, 3, 3), dtype=bool)


# --- metrics on masks -----------------------------------------------------------------------------


def dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice coefficient of two boolean masks; 1.0 when both are empty.

    >>> dice(np.array([1, 1, 0], bool), np.array([1, 0, 0], bool))
    0.6666666666666666
    """
    total = int(truth.sum()) + int(pred.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(truth, pred).sum()) / total


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (outside the volume counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, _FACES, border_value=0)


def surface_distances(
    truth: np.ndarray, pred: np.ndarray, spacing_zyx_mm: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each truth surface voxel to the predicted surface, and back.

    Both masks must be non-empty. Distances are between voxel centres, exact, with the spacing
    ``(z, y, x)`` in mm. Work is done on the box around both masks (one voxel of margin), which
    holds every surface voxel, so the result equals the whole-volume one.
    """
    union = truth | pred
    lo, hi = _bbox(union)
    lo = np.maximum(lo - 1, 0)
    hi = np.minimum(hi + 1, np.array(union.shape))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    # Surfaces taken on the box equal those of the volume: its margin is background or the border.
    s_truth = surface(truth[box])
    s_pred = surface(pred[box])
    sampling = np.asarray(spacing_zyx_mm, dtype=float)
    to_pred = ndimage.distance_transform_edt(~s_pred, sampling=sampling)
    to_truth = ndimage.distance_transform_edt(~s_truth, sampling=sampling)
    return to_pred[s_truth], to_truth[s_pred]


def _surface_scores(
    truth: np.ndarray, pred: np.ndarray, spacing_zyx_mm: Sequence[float], tolerance_mm: float
) -> dict[str, float]:
    empty_t, empty_p = not truth.any(), not pred.any()
    if empty_t and empty_p:
        return {"hd95_mm": 0.0, "nsd": 1.0}
    if empty_t or empty_p:
        return {"hd95_mm": math.nan, "nsd": 0.0}
    a, b = surface_distances(truth, pred, spacing_zyx_mm)
    within = (a <= tolerance_mm).sum() + (b <= tolerance_mm).sum()
    return {
        "hd95_mm": float(max(np.percentile(a, 95), np.percentile(b, 95))),
        "nsd": float(within / (a.size + b.size)),
    }


def hd95_mm(truth: np.ndarray, pred: np.ndarray, spacing_zyx_mm: Sequence[float]) -> float:
    """95th-percentile Hausdorff distance (mm); 0 when both masks are empty, NaN when one is."""
    return _surface_scores(truth, pred, spacing_zyx_mm, 0.0)["hd95_mm"]


def nsd(truth: np.ndarray, pred: np.ndarray, spacing_zyx_mm: Sequence[float], tolerance_mm: float) -> float:
    """Normalized surface distance (surface Dice) at ``tolerance_mm``; 1 if both empty, 0 if one is."""
    return _surface_scores(truth, pred, spacing_zyx_mm, tolerance_mm)["nsd"]


def segmentation_metrics(
    truth: np.ndarray, pred: np.ndarray, spacing_zyx_mm: Sequence[float], tolerance_mm: float = 2.0
) -> dict[str, float]:
    """Dice, HD95 (mm), NSD, volumes (ml) and volume errors of two boolean masks (module docstring)."""
    voxel_ml = float(np.prod(spacing_zyx_mm)) / 1000.0
    v_truth = int(truth.sum()) * voxel_ml
    v_pred = int(pred.sum()) * voxel_ml
    out = {"dice": dice(truth, pred), **_surface_scores(truth, pred, spacing_zyx_mm, tolerance_mm)}
    out.update(
        volume_truth_ml=v_truth,
        volume_pred_ml=v_pred,
        volume_error_ml=v_pred - v_truth,
        volume_error_rel=(v_pred - v_truth) / v_truth if v_truth > 0 else math.nan,
    )
    return out


def lesion_detection(
    truth_instances: np.ndarray, pred_ho: np.ndarray, iou_threshold: float = 0.0
) -> dict[str, float]:
    """Lesion-wise TP, FP, FN, recall, precision and F1 (module docstring).

    ``truth_instances`` holds one positive id per truth lesion (0 elsewhere); ``pred_ho`` is the
    boolean predicted HO. Recall and precision are NaN when undefined (no truth / no predicted
    lesion); F1 is 1 when there is neither, 0 when only one side has lesions.
    """
    pred_labels, n_pred = ndimage.label(pred_ho, structure=_CUBE)
    truth_ids = np.unique(truth_instances[truth_instances > 0])
    t_index = np.searchsorted(truth_ids, truth_instances[truth_instances > 0]) + 1
    truth_compact = np.zeros(truth_instances.shape, dtype=np.int64)
    truth_compact[truth_instances > 0] = t_index
    n_truth = truth_ids.size
    # Joint histogram: intersections of every (truth lesion, predicted component) pair.
    joint = np.bincount(
        truth_compact.ravel() * (n_pred + 1) + pred_labels.ravel(), minlength=(n_truth + 1) * (n_pred + 1)
    ).reshape(n_truth + 1, n_pred + 1)
    inter = joint[1:, 1:].astype(float)
    size_t = joint[1:, :].sum(axis=1).astype(float)
    size_p = joint[:, 1:].sum(axis=0).astype(float)
    union = size_t[:, None] + size_p[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    match = (iou > iou_threshold) & (inter > 0)
    tp = int(match.any(axis=1).sum())
    matched_pred = int(match.any(axis=0).sum())
    fn = n_truth - tp
    fp = n_pred - matched_pred
    recall = tp / n_truth if n_truth else math.nan
    precision = matched_pred / n_pred if n_pred else math.nan
    if n_truth == 0 and n_pred == 0:
        f1 = 1.0
    elif tp == 0 or matched_pred == 0:  # also when only one side has lesions
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {
        "lesions_truth": n_truth,
        "lesions_pred": n_pred,
        "lesion_tp": tp,
        "lesion_fp": fp,
        "lesion_fn": fn,
        "lesion_recall": recall,
        "lesion_precision": precision,
        "lesion_f1": f1,
    }


def confusion_matrix(truth: Sequence[int], pred: Sequence[int], n_classes: int = N_GRADES) -> np.ndarray:
    """Counts ``[truth, pred]`` of integer ratings ``0..n_classes-1``."""
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(truth, int), np.asarray(pred, int)), 1)
    return out


def quadratic_weighted_kappa(confusion: np.ndarray) -> float:
    """Cohen's kappa with quadratic weights ``(i - j)^2 / (K - 1)^2`` of a confusion matrix.

    NaN for an empty matrix. When chance disagreement is zero (every rating in one category) the
    raters agree perfectly and kappa is defined as 1.
    """
    observed = np.asarray(confusion, dtype=float)
    n = observed.sum()
    k = observed.shape[0]
    if n == 0:
        return math.nan
    i, j = np.indices(observed.shape)
    weights = (i - j) ** 2 / max(k - 1, 1) ** 2
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / n
    chance = float((weights * expected).sum())
    if chance == 0.0:
        return 1.0
    return 1.0 - float((weights * observed).sum()) / chance


# --- one case --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TruthCase:
    """A truth case folder: its id, labels ``[z, y, x]``, spacing (z, y, x) in mm and truth.json."""

    case_id: str
    folder: Path
    structures: np.ndarray
    instances: np.ndarray | None
    affine: np.ndarray
    spacing_zyx_mm: tuple[float, float, float]
    truth: dict


def find_truth_cases(truth_dir: Path) -> list[Path]:
    """Case folders under ``truth_dir`` (any depth, hidden ones skipped), sorted by case id.

    ``truth_dir`` itself counts when it is a case folder.
    """
    truth_dir = Path(truth_dir)
    if not truth_dir.is_dir():
        raise SpecError(f"truth = '{truth_dir}' is not a directory")
    found = {p.parent for p in truth_dir.rglob("structures.nii.gz") if not is_hidden(p.parent, truth_dir)}
    folders = sorted(found, key=lambda p: (p.name, p))
    if not folders:
        raise SpecError(f"truth = '{truth_dir}' holds no case folder (a folder with structures.nii.gz)")
    names = [f.name for f in folders]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError(f"truth = '{truth_dir}' holds several case folders named {dupes[0]!r}")
    return folders


def _load_zyx(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    image = nib.load(str(path))
    data = np.asanyarray(image.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    return np.transpose(data, (2, 1, 0)), np.asarray(image.affine, float), zooms[::-1]


def load_truth_case(folder: Path) -> TruthCase:
    """Read a case folder's structures, instances (if present), grid and truth.json (if present)."""
    folder = Path(folder)
    structures, affine, spacing = _load_zyx(folder / "structures.nii.gz")
    instances = None
    if (folder / "ho_instances.nii.gz").exists():
        instances = _load_zyx(folder / "ho_instances.nii.gz")[0].astype(np.int64)
    truth = {}
    if (folder / "truth.json").exists():
        truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    return TruthCase(folder.name, folder, structures.astype(np.int64), instances, affine, spacing, truth)


def load_prediction(path: Path, case: TruthCase) -> tuple[str, np.ndarray | None]:
    """``(status, labels [z, y, x])``: status "ok" or why the prediction cannot be scored."""
    if not path.exists():
        return "missing", None
    try:
        data, affine, _ = _load_zyx(path)
        data = np.asarray(data)
    except Exception as error:  # any unreadable file is a per-case status, never a crash
        log.debug("cannot read %s: %s", path, error)
        return "unreadable", None
    if data.shape != case.structures.shape:
        return "shape_mismatch", None
    if not np.allclose(affine, case.affine, atol=AFFINE_TOLERANCE_MM):
        return "affine_mismatch", None
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.rint(data)):
            return "not_a_label_map", None
    return "ok", data.astype(np.int64)


def to_structures(pred: np.ndarray, affine: np.ndarray, pred_labels: str) -> np.ndarray:
    """A prediction in the label set ``pred_labels`` mapped to the structures ids (module docstring)."""
    if pred_labels == "structures":
        return pred
    out = np.zeros(pred.shape, np.int64)
    if pred_labels == "bones_ho":
        for value, s in enumerate((Structure.PELVIS, Structure.FEMUR_RIGHT, Structure.FEMUR_LEFT,
                                   Structure.HO_RIGHT, Structure.HO_LEFT), start=1):  # fmt: skip
            out[pred == value] = int(s)
        return out
    # "ho": x of each column [.., .., i] from the (axis-aligned) affine; +x is the patient's right
    x_mm = affine[0, 0] * np.arange(pred.shape[2]) + affine[0, 3]
    right = np.broadcast_to(x_mm > 0, pred.shape)
    out[(pred == 1) & right] = int(Structure.HO_RIGHT)
    out[(pred == 1) & ~right] = int(Structure.HO_LEFT)
    return out


def graded_prediction(truth_structures: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Truth native bones with the predicted HO painted where the truth has no native bone."""
    ho_ids = list(CLASSES["ho"])
    bone_ids = [int(s) for s in (Structure.PELVIS, Structure.FEMUR_RIGHT, Structure.FEMUR_LEFT)]
    combined = truth_structures.copy()
    combined[np.isin(combined, ho_ids)] = int(Structure.MUSCLE)
    free = ~np.isin(truth_structures, bone_ids)
    for label in ho_ids:
        combined[(pred == label) & free] = label
    return combined.astype(np.uint8)


def case_metadata(case: TruthCase) -> dict[str, object]:
    """Phase, dose (mAs), kernel and kVp of a case from truth.json ("unknown" when absent)."""
    scanner = case.truth.get("scanner") or {}
    mas = scanner.get("mas")
    return {
        "phase": str(case.truth.get("phase", "unknown")),
        "mas": "unknown" if mas is None else f"{float(mas):g}",
        "kernel": str(scanner.get("kernel", "unknown")),
        "kvp": scanner.get("kvp"),
    }


def evaluate_case(
    case: TruthCase,
    pred_path: Path,
    tolerance_mm: float = 2.0,
    iou_threshold: float = 0.0,
    pred_labels: str = "structures",
) -> dict[str, object]:
    """One row of metrics_per_case.csv: status, metadata, per-class metrics, lesions and grades."""
    row: dict[str, object] = {"case_id": case.case_id, **case_metadata(case)}
    for side in ("right", "left"):
        row[f"grade_truth_json_{side}"] = (case.truth.get(side) or {}).get("brooker_grade")
    status, pred = load_prediction(pred_path, case)
    row["status"] = status
    if pred is None:
        return row
    pred = to_structures(pred, case.affine, pred_labels)
    row["bones_scored"] = bool(np.isin(pred, [3, 4, 5]).any())
    for name, ids in CLASSES.items():
        if name in BONE_CLASSES and not row["bones_scored"]:
            continue
        metrics = segmentation_metrics(
            np.isin(case.structures, ids), np.isin(pred, ids), case.spacing_zyx_mm, tolerance_mm
        )
        row.update({f"{k}_{name}": v for k, v in metrics.items()})
    pred_ho = np.isin(pred, CLASSES["ho"])
    truth_instances = case.instances
    if truth_instances is None or truth_instances.shape != pred.shape:
        truth_instances = ndimage.label(np.isin(case.structures, CLASSES["ho"]), structure=_CUBE)[0]
    row.update(lesion_detection(truth_instances, pred_ho, iou_threshold))
    spacing_xyz = case.spacing_zyx_mm[::-1]
    truth_grades = grade_hips(case.structures.astype(np.uint8), spacing_xyz)
    pred_grades = grade_hips(graded_prediction(case.structures, pred), spacing_xyz)
    for side in ("right", "left"):
        row[f"grade_truth_{side}"] = truth_grades[side].grade
        row[f"grade_pred_{side}"] = pred_grades[side].grade
        row[f"gap_truth_mm_{side}"] = truth_grades[side].gap_mm
        row[f"gap_pred_mm_{side}"] = pred_grades[side].gap_mm
    return row


# --- many cases --------------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, object]:
    arr = np.array([v for v in values if v is not None], dtype=float)
    defined = arr[np.isfinite(arr)]
    out: dict[str, object] = {"n": int(defined.size), "n_undefined": int(arr.size - defined.size)}
    if defined.size:
        out.update(
            mean=float(defined.mean()),
            median=float(np.median(defined)),
            std=float(defined.std()),
            min=float(defined.min()),
            max=float(defined.max()),
        )
    return out


def _counts(values: list[str]) -> dict[str, int]:
    return {v: values.count(v) for v in sorted(set(values))}


def _breakdown(rows: list[dict[str, object]], key: str) -> dict[str, object]:
    groups = sorted({str(r[key]) for r in rows})
    return {g: summarize([r for r in rows if str(r[key]) == g]) for g in groups}


def summarize(rows: list[dict[str, object]]) -> dict[str, object]:
    """Summary over the scored rows (status "ok"): metric statistics, lesion totals, grading."""
    ok = [r for r in rows if r.get("status") == "ok"]
    segmentation = {}
    for name in CLASSES:
        if not any(f"dice_{name}" in r for r in ok):
            continue
        segmentation[name] = {m: _stats([r.get(f"{m}_{name}") for r in ok if f"{m}_{name}" in r])
                              for m in SEGMENTATION_METRICS}  # fmt: skip
    tp = sum(int(r["lesion_tp"]) for r in ok)
    fp = sum(int(r["lesion_fp"]) for r in ok)
    fn = sum(int(r["lesion_fn"]) for r in ok)
    n_truth = sum(int(r["lesions_truth"]) for r in ok)
    n_pred = sum(int(r["lesions_pred"]) for r in ok)
    matched = n_pred - fp
    recall = tp / n_truth if n_truth else math.nan
    precision = matched / n_pred if n_pred else math.nan
    f1 = math.nan
    if n_truth and n_pred:
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    truth_g = [int(r[f"grade_truth_{s}"]) for r in ok for s in ("right", "left")]
    pred_g = [int(r[f"grade_pred_{s}"]) for r in ok for s in ("right", "left")]
    confusion = confusion_matrix(truth_g, pred_g)
    json_pairs = [(r[f"grade_truth_json_{s}"], r[f"grade_pred_{s}"]) for r in ok for s in ("right", "left")
                  if r.get(f"grade_truth_json_{s}") is not None]  # fmt: skip
    return {
        "n_cases": len(rows),
        "n_scored": len(ok),
        "status_counts": _counts([str(r["status"]) for r in rows]),
        "segmentation": segmentation,
        "lesions": {
            "tp": tp, "fp": fp, "fn": fn, "truth_lesions": n_truth, "pred_lesions": n_pred,
            "recall": recall, "precision": precision, "f1": f1,
            "fp_per_case": fp / len(ok) if ok else math.nan,
            "per_case_f1": _stats([r["lesion_f1"] for r in ok]),
        },  # fmt: skip
        "grading": {
            "n_hips": len(truth_g),
            "reference": "grade of the truth labels on the case grid",
            "accuracy": float(np.trace(confusion) / confusion.sum()) if confusion.sum() else math.nan,
            "confusion_matrix_truth_rows_pred_cols": confusion.tolist(),
            "quadratic_weighted_kappa": quadratic_weighted_kappa(confusion),
            "accuracy_vs_truth_json": (
                float(np.mean([int(a) == int(b) for a, b in json_pairs])) if json_pairs else math.nan
            ),
        },
    }


def evaluate(
    truth_dir: Path,
    pred_dir: Path,
    tolerance_mm: float = 2.0,
    iou_threshold: float = 0.0,
    progress: Callable[[int, int, str], None] | None = None,
    pred_labels: str = "structures",
) -> tuple[list[dict[str, object]], dict[str, object]]:
    """Score every case under ``truth_dir`` against ``pred_dir/<case_id>.nii.gz``.

    Returns the per-case rows and the summary (overall and by phase, mAs and kernel).
    ``progress(done, total, case_id)`` is called after each case.
    """
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise SpecError(f"tolerance_mm = {tolerance_mm!r} must be a finite number >= 0")
    if not (0.0 <= iou_threshold < 1.0):
        raise SpecError(f"iou_threshold = {iou_threshold!r} is outside [0, 1)")
    if pred_labels not in PRED_LABEL_SETS:
        raise SpecError(f"pred_labels = {pred_labels!r} is not one of {{{', '.join(PRED_LABEL_SETS)}}}")
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise SpecError(f"pred = '{pred_dir}' is not a directory")
    folders = find_truth_cases(truth_dir)
    rows = []
    for index, folder in enumerate(folders):
        case = load_truth_case(folder)
        pred_path = pred_dir / f"{case.case_id}.nii.gz"
        rows.append(evaluate_case(case, pred_path, tolerance_mm, iou_threshold, pred_labels))
        if progress:
            progress(index + 1, len(folders), case.case_id)
    summary = summarize(rows)
    summary["tolerance_mm"] = tolerance_mm
    summary["iou_threshold"] = iou_threshold
    summary["pred_labels"] = pred_labels
    case_ids = {r["case_id"] for r in rows}
    summary["unmatched_predictions"] = sorted(
        p.name for p in pred_dir.glob("*.nii.gz") if p.name[: -len(".nii.gz")] not in case_ids
    )
    summary["by"] = {key: _breakdown(rows, key) for key in BREAKDOWNS}
    return rows, summary


# --- files ---------------------------------------------------------------------------------------------


def write_report(out: Path, rows: list[dict[str, object]], summary: dict[str, object]) -> Path:
    """Write metrics_per_case.csv, summary.json and PNG plots into ``out`` (created if needed).

    Plots: dice_by_phase.png, dice_by_mas.png, dice_by_kernel.png, grade_confusion.png.
    """
    from nmosim.simulate.io import write_json
    from nmosim.simulate.outputs import check_output_dir

    out = check_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    write_metrics_csv(out / "metrics_per_case.csv", rows)
    write_json(out / "summary.json", _json_ready(summary))
    for key in BREAKDOWNS:
        plot_dice_by(out / f"dice_by_{key}.png", rows, key)
    confusion = np.array(summary["grading"]["confusion_matrix_truth_rows_pred_cols"])
    plot_confusion(out / "grade_confusion.png", confusion)
    return out


def csv_columns(rows: list[dict[str, object]]) -> list[str]:
    """Column order: identity and status, metadata, segmentation per class, lesions, grades."""
    head = ["case_id", "status", "phase", "mas", "kernel", "kvp", "bones_scored"]
    seg = [f"{m}_{c}" for c in CLASSES for m in SEGMENTATION_METRICS]
    per_side = ("grade_truth", "grade_pred", "grade_truth_json", "gap_truth_mm", "gap_pred_mm")
    grades = [f"{k}_{s}" for s in ("right", "left") for k in per_side]
    known = head + seg + list(LESION_METRICS) + grades
    present = {k for r in rows for k in r}
    return [c for c in known if c in present or c in head] + sorted(present - set(known))


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_metrics_csv(path: Path, rows: list[dict[str, object]]) -> None:
    """One row per case; empty cells for metrics not computed, ``nan`` for undefined ones."""
    columns = csv_columns(rows)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])


def _json_ready(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def plot_dice_by(path: Path, rows: list[dict[str, object]], key: str = "phase") -> None:
    """Box plot of the HO Dice (both hips) per value of ``key`` (phase, mas or kernel), with the cases."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    groups = sorted({str(r[key]) for r in ok}, key=lambda g: (len(g), g) if key == "mas" else (0, g))
    data = [[float(r["dice_ho"]) for r in ok if str(r[key]) == g] for g in groups]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if data:
        ax.boxplot(data)
        for i, values in enumerate(data, start=1):
            ax.plot(np.full(len(values), i), values, "o", color="tab:blue", alpha=0.5, markersize=4)
        ax.set_xticks(range(1, len(groups) + 1), groups)
    else:
        ax.text(0.5, 0.5, "no scored case", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel({"mas": "dose (mAs)"}.get(key, key))
    ax.set_ylabel("Dice, HO (both hips)")
    ax.set_title(f"HO Dice by {key} ({len(ok)} cases)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusion(path: Path, confusion: np.ndarray) -> None:
    """Brooker grade confusion matrix (rows truth, columns prediction) with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=100)
    ax.imshow(confusion, cmap="Blues")
    names = ["0", "I", "II", "III", "IV"][: confusion.shape[0]]
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted grade")
    ax.set_ylabel("truth grade")
    top = confusion.max() if confusion.size else 0
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > top / 2 else "black")
    ax.set_title("Brooker grade per hip")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- helpers -------------------------------------------------------------------------------------------


def _bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        lo.append(hit[0])
        hi.append(hit[-1] + 1)
    return np.array(lo), np.array(hi)
