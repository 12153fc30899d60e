"""The evaluation report: case folders and predictions loaded, scored per case, summarized, written.

It reads label volumes and truth.json and writes a report; the metrics themselves live in
:mod:`nmosim.simulate.metrics`. It never simulates, edits or regrades the truth.

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
coordinate in the patient frame, x > 0 right).

Which label set (``pred_labels = "auto"``, the default), first that applies: the ``dataset.json`` in
the prediction folder (nnU-Net's predict copies the training dataset.json there; ``nmosim baseline``
writes one), then the dataset the truth folder belongs to (``DIR/cases`` or ``DIR``: its
manifest.json, datalist.json or ``Dataset<NNN>_<name>/dataset.json``), then the values of the
predictions (any of 6 to 10: structures; only 0 and 1: ho; else bones_ho). The summary records the
set and where it came from (``pred_labels``, ``pred_labels_source``). A prediction holding a value
that is no label of that set, or (for structures) only 0 and 1, which is a binary HO mask and no
structures map, is the case's ``label_set_mismatch`` error: never a silent Dice 0.

A prediction that is missing, unreadable, of another
shape or affine, or not a label map (RGB, complex, non-integral floats) is reported in the ``status``
column and scores nothing; so is a case whose truth (structures or truth.json) cannot be read
(``truth_unreadable``) and any other failure of one case (``error``, the message in ``error``). One
bad case never stops the evaluation: it always ends with a report.

Metrics, per case and per class (``ho_right``, ``ho_left``, ``ho`` = both, and the bones when present):
Dice, HD95 (mm), NSD, volumes and volume errors (ml), and lesion detection, with the conventions of
:mod:`nmosim.simulate.metrics` (surfaces, lesion matching). Empty masks follow ``empty`` (one of
``metrics.EMPTY_CONVENTIONS``; default "exclude": a class empty in truth and prediction has no Dice,
HD95, NSD or lesion F1, its ``empty_both_<class>`` column is true and the summary counts it apart as
``n_empty_both``; "one" scores it 1 and "monai" leaves every empty-truth class undefined, as MONAI's
DiceMetric does with and without ``ignore_empty``). The summary names the convention it used.

Brooker grade: the predicted HO is graded with :func:`nmosim.phantoms.grading.grade_hips` on the truth's
native bones (predictions may lack bones): the truth ``structures`` with its HO removed and the
predicted HO painted on every voxel that is not native bone. A prediction has no tissue classes, so
every predicted HO voxel counts as HO bone (predicted HO label = counted bone). The reference grade is
that of the truth labels on the same grid, counting as truth.json does only the HO tissues of
``grading.COUNTED_HO_TISSUES`` when the case folder holds tissues.nii.gz (so a prediction of the counted
HO scores accuracy 1; one that also labels calcifying HO may grade higher); the grade in truth.json
(measured on a finer grid) is kept in the CSV as ``grade_truth_json_<side>``. Accuracy, the 5x5
confusion matrix (rows truth, columns prediction, grades 0-4) and quadratic weighted Cohen's kappa
pool both hips of every scored case.

Every summary is also broken down by phase, dose (mAs) and kernel from truth.json.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grading import grade_hips
from nmosim.phantoms.label_sets import PREDICTION_LABEL_SETS, from_label_set, to_label_set
from nmosim.phantoms.labels import BONE_STRUCTURES, HO_STRUCTURES, STRUCTURE_NAMES, Structure
from nmosim.simulate.figures import dice_by_plot, grade_confusion_plot
from nmosim.simulate.io import read_json, read_nifti, write_json
from nmosim.simulate.metrics import (
    EMPTY_CONVENTIONS,
    confusion_matrix,
    lesion_detection,
    quadratic_weighted_kappa,
    segmentation_metrics,
    with_empty_convention,
)
from nmosim.simulate.outputs import is_hidden, staged_directory

log = logging.getLogger(__name__)

PRED_LABEL_SETS = PREDICTION_LABEL_SETS  # "structures" is the dataset label set "all" (DESIGN.md 3)
PRED_LABEL_CHOICES = ("auto", *PRED_LABEL_SETS)
# The values a prediction in each label set may hold.
LABEL_VALUES = {"structures": frozenset(STRUCTURE_NAMES), "bones_ho": frozenset(range(6)),
                "ho": frozenset((0, 1))}  # fmt: skip
HO_IDS = tuple(int(s) for s in HO_STRUCTURES)
BONE_IDS = tuple(int(s) for s in BONE_STRUCTURES)
CLASSES: dict[str, tuple[int, ...]] = {
    **{STRUCTURE_NAMES[i]: (i,) for i in HO_IDS},
    "ho": HO_IDS,
    **{STRUCTURE_NAMES[i]: (i,) for i in BONE_IDS},
}
HO_CLASSES = (*(STRUCTURE_NAMES[i] for i in HO_IDS), "ho")
BONE_CLASSES = tuple(STRUCTURE_NAMES[i] for i in BONE_IDS)
SEGMENTATION_METRICS = ("dice", "hd95_mm", "nsd", "volume_truth_ml", "volume_pred_ml", "volume_error_ml",
                        "volume_error_rel")  # fmt: skip
LESION_METRICS = ("lesions_truth", "lesions_pred", "lesion_tp", "lesion_fp", "lesion_fn", "lesion_recall",
                  "lesion_precision", "lesion_f1")  # fmt: skip
BREAKDOWNS = ("phase", "mas", "kernel")
AFFINE_TOLERANCE_MM = 1e-3
LABEL_MAP_KINDS = "biuf"  # numpy dtype kinds a label map may have: bool, integers, real floats
_CUBE = np.ones((3, 3, 3), dtype=bool)


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
    tissues: np.ndarray | None = None  # tissue ids, when the folder holds tissues.nii.gz


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


def load_truth_case(folder: Path) -> TruthCase:
    """Read a case folder's structures, instances (if present), grid and truth.json (if present).

    Raises what reading raises (OSError, ValueError, ...) for a file that cannot be read.
    """
    folder = Path(folder)
    structures = read_nifti(folder / "structures.nii.gz")
    if structures.data.dtype.kind not in "biu":
        raise ValueError(f"structures.nii.gz holds {structures.data.dtype}, not integer labels")
    instances = None
    if (folder / "ho_instances.nii.gz").exists():
        instances = read_nifti(folder / "ho_instances.nii.gz").data.astype(np.int64)
    tissues = None
    if (folder / "tissues.nii.gz").exists():
        tissues = read_nifti(folder / "tissues.nii.gz").data
        tissues = tissues.astype(np.uint8) if tissues.shape == structures.data.shape else None
    truth = read_json(folder / "truth.json") if (folder / "truth.json").exists() else {}
    return TruthCase(
        folder.name, folder, structures.data.astype(np.int64), instances, structures.affine,
        structures.spacing_zyx_mm, truth, tissues,
    )  # fmt: skip


def load_prediction(path: Path, case: TruthCase) -> tuple[str, np.ndarray | None]:
    """``(status, labels [z, y, x])``: status "ok" or why the prediction cannot be scored."""
    if not path.exists():
        return "missing", None
    try:
        volume = read_nifti(path)
        data = np.asarray(volume.data)
    except Exception as error:  # any unreadable file is a per-case status, never a crash
        log.debug("cannot read %s: %s", path, error)
        return "unreadable", None
    if data.shape != case.structures.shape:
        return "shape_mismatch", None
    if not np.allclose(volume.affine, case.affine, atol=AFFINE_TOLERANCE_MM):
        return "affine_mismatch", None
    if data.dtype.kind not in LABEL_MAP_KINDS:  # RGB, complex, strings: no label map
        return "not_a_label_map", None
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.rint(data)):
            return "not_a_label_map", None
    return "ok", data.astype(np.int64)


def label_set_problem(values: np.ndarray, pred_labels: str) -> str | None:
    """Why a prediction holding ``values`` is not in the label set ``pred_labels``; None when it is."""
    values = {int(v) for v in values}
    allowed = LABEL_VALUES[pred_labels]
    outside = sorted(values - allowed)
    if outside:
        shown = ", ".join(str(v) for v in outside[:6]) + (", ..." if len(outside) > 6 else "")
        span = f"{min(allowed)}..{max(allowed)}"
        return f"values {shown} are no labels of the label set {pred_labels!r} ({span})"
    if pred_labels == "structures" and 1 in values and values <= {0, 1}:
        return "holds only 0 and 1: a binary HO mask (label set 'ho'), no structures map"
    return None


def _set_of_labels(labels: object) -> str | None:
    """The prediction label set whose label names are ``labels`` (a dataset.json "labels" table)."""
    if not isinstance(labels, dict):
        return None
    for pred_name, set_name in PRED_LABEL_SETS.items():
        names = to_label_set(np.zeros((1,), np.uint8), set_name)[1]
        if labels == names:
            return pred_name
    return None


def _declared(path: Path) -> str | None:
    """The prediction label set a dataset.json, manifest.json or datalist.json declares, if any."""
    try:
        meta = read_json(path)
    except Exception as error:  # an unreadable description declares nothing
        log.debug("cannot read %s: %s", path, error)
        return None
    if not isinstance(meta, dict):
        return None
    declared = meta.get("label_set", (meta.get("config") or {}).get("label_set"))
    named = {v: k for k, v in PRED_LABEL_SETS.items()}.get(str(declared))
    return named or _set_of_labels(meta.get("labels"))


def dataset_label_set(truth_dir: Path, pred_dir: Path) -> tuple[str, str] | None:
    """``(label set, the file that declares it)`` from the prediction folder or the truth's dataset."""
    candidates = [Path(pred_dir) / "dataset.json"]
    for root in (Path(truth_dir), Path(truth_dir).absolute().parent):
        nnunet = sorted(root.glob("Dataset*/dataset.json"))
        candidates += [root / "manifest.json", root / "datalist.json", *nnunet]
    for path in candidates:
        if path.is_file():
            found = _declared(path)
            if found:
                return found, str(path)
    return None


def inferred_label_set(pred_dir: Path, case_ids: list[str]) -> str:
    """The label set that the values of the predictions point to (module docstring)."""
    values: set[int] = set()
    for case_id in case_ids:
        path = Path(pred_dir) / f"{case_id}.nii.gz"
        try:
            data = np.asarray(read_nifti(path).data)
            if data.dtype.kind in LABEL_MAP_KINDS and np.all(np.isfinite(data)):
                values |= {int(v) for v in np.unique(data)}
        except Exception as error:  # its own row will say why it cannot be read
            log.debug("cannot read %s: %s", path, error)
    if values & set(range(6, 11)):
        return "structures"
    if values <= {0, 1}:
        return "ho" if 1 in values else "structures"
    return "bones_ho"


def resolve_label_set(
    truth_dir: Path, pred_dir: Path, case_ids: list[str], pred_labels: str
) -> tuple[str, str]:
    """``(label set, source)``: the one given, the one a dataset declares, or the one inferred."""
    if pred_labels != "auto":
        return pred_labels, "given"
    found = dataset_label_set(truth_dir, pred_dir)
    if found:
        return found
    return inferred_label_set(pred_dir, case_ids), "inferred from the prediction values"


def to_structures(pred: np.ndarray, affine: np.ndarray, pred_labels: str) -> np.ndarray:
    """A prediction in the label set ``pred_labels`` mapped to the structures ids (module docstring)."""
    # x of each column [.., .., i] from the (axis-aligned) affine; +x is the patient's right
    x_mm = affine[0, 0] * np.arange(pred.shape[2]) + affine[0, 3]
    return from_label_set(pred, PRED_LABEL_SETS[pred_labels], x_mm)


def graded_prediction(truth_structures: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Truth native bones with the predicted HO painted where the truth has no native bone."""
    combined = truth_structures.copy()
    combined[np.isin(combined, HO_IDS)] = int(Structure.MUSCLE)
    free = ~np.isin(truth_structures, BONE_IDS)
    for label in HO_IDS:
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
    empty: str = "exclude",
) -> dict[str, object]:
    """One row of metrics_per_case.csv: status, metadata, per-class metrics, lesions and grades."""
    row: dict[str, object] = {"case_id": case.case_id, **case_metadata(case)}
    for side in ("right", "left"):
        row[f"grade_truth_json_{side}"] = (case.truth.get(side) or {}).get("brooker_grade")
    status, pred = load_prediction(pred_path, case)
    row["status"] = status
    if pred is None:
        return row
    problem = label_set_problem(np.unique(pred), pred_labels)
    if problem:
        row.update(status="label_set_mismatch", error=problem)
        return row
    pred = to_structures(pred, case.affine, pred_labels)
    row["bones_scored"] = bool(np.isin(pred, BONE_IDS).any())
    for name, ids in CLASSES.items():
        if name in BONE_CLASSES and not row["bones_scored"]:
            continue
        truth_mask, pred_mask = np.isin(case.structures, ids), np.isin(pred, ids)
        metrics = segmentation_metrics(truth_mask, pred_mask, case.spacing_zyx_mm, tolerance_mm)
        truth_empty, pred_empty = not truth_mask.any(), not pred_mask.any()
        metrics = with_empty_convention(metrics, truth_empty, pred_empty, empty)
        row.update({f"{k}_{name}": v for k, v in metrics.items()})
        row[f"empty_both_{name}"] = truth_empty and pred_empty
    pred_ho = np.isin(pred, CLASSES["ho"])
    truth_instances = case.instances
    if truth_instances is None or truth_instances.shape != pred.shape:
        truth_instances = ndimage.label(np.isin(case.structures, CLASSES["ho"]), structure=_CUBE)[0]
    lesions = lesion_detection(truth_instances, pred_ho, iou_threshold)
    if (empty == "exclude" and lesions["lesions_truth"] == lesions["lesions_pred"] == 0) or (
        empty == "monai" and lesions["lesions_truth"] == 0
    ):
        lesions["lesion_f1"] = math.nan
    row.update(lesions)
    spacing_xyz = case.spacing_zyx_mm[::-1]
    truth_grades = grade_hips(case.structures.astype(np.uint8), spacing_xyz, tissues=case.tissues)
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
        segmentation[name]["n_empty_both"] = sum(bool(r.get(f"empty_both_{name}")) for r in ok)
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
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "truth_lesions": n_truth,
            "pred_lesions": n_pred,
            "recall": recall,
            "precision": precision,
            "f1": f1,
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


def failed_row(case_id: str, status: str, error: BaseException) -> dict[str, object]:
    """The row of a case that could not be scored: its status and the error in one line."""
    message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    return {"case_id": case_id, "phase": "unknown", "mas": "unknown", "kernel": "unknown", "kvp": None,
            "status": status, "error": message}  # fmt: skip


def _scored_row(
    folder: Path, pred_dir: Path, tolerance_mm: float, iou_threshold: float, pred_labels: str, empty: str
) -> dict[str, object]:
    """One case's row; a case that cannot be read or scored gives a failed row, never an exception."""
    try:
        case = load_truth_case(folder)
    except Exception as error:  # a corrupt structures file or truth.json is one case's status
        log.debug("cannot read the truth of %s: %s", folder, error)
        return failed_row(folder.name, "truth_unreadable", error)
    pred_path = pred_dir / f"{case.case_id}.nii.gz"
    try:
        return evaluate_case(case, pred_path, tolerance_mm, iou_threshold, pred_labels, empty)
    except Exception as error:  # the report is always written; this case says why it has no scores
        log.debug("cannot score %s: %s", folder, error)
        return {**failed_row(case.case_id, "error", error), **case_metadata(case)}


def evaluate(
    truth_dir: Path,
    pred_dir: Path,
    tolerance_mm: float = 2.0,
    iou_threshold: float = 0.0,
    progress: Callable[[int, int, str], None] | None = None,
    pred_labels: str = "auto",
    empty: str = "exclude",
) -> tuple[list[dict[str, object]], dict[str, object]]:
    """Score every case under ``truth_dir`` against ``pred_dir/<case_id>.nii.gz``.

    Returns the per-case rows and the summary (overall and by phase, mAs and kernel).
    ``progress(done, total, case_id)`` is called after each case. ``pred_labels`` is a label set or
    "auto" and ``empty`` one of ``EMPTY_CONVENTIONS`` (module docstring).
    """
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise SpecError(f"tolerance_mm = {tolerance_mm!r} must be a finite number >= 0")
    if not (0.0 <= iou_threshold < 1.0):
        raise SpecError(f"iou_threshold = {iou_threshold!r} is outside [0, 1)")
    if pred_labels not in PRED_LABEL_CHOICES:
        raise SpecError(f"pred_labels = {pred_labels!r} is not one of {{{', '.join(PRED_LABEL_CHOICES)}}}")
    if empty not in EMPTY_CONVENTIONS:
        raise SpecError(f"empty = {empty!r} is not one of {{{', '.join(EMPTY_CONVENTIONS)}}}")
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise SpecError(f"pred = '{pred_dir}' is not a directory")
    folders = find_truth_cases(truth_dir)
    pred_labels, source = resolve_label_set(truth_dir, pred_dir, [f.name for f in folders], pred_labels)
    rows = []
    for index, folder in enumerate(folders):
        rows.append(_scored_row(folder, pred_dir, tolerance_mm, iou_threshold, pred_labels, empty))
        if progress:
            progress(index + 1, len(folders), folder.name)
    summary = summarize(rows)
    summary["tolerance_mm"] = tolerance_mm
    summary["iou_threshold"] = iou_threshold
    summary["pred_labels"] = pred_labels
    summary["pred_labels_source"] = source
    summary["empty_convention"] = {"name": empty, "meaning": EMPTY_CONVENTIONS[empty]}
    case_ids = {r["case_id"] for r in rows}
    summary["unmatched_predictions"] = sorted(
        p.name for p in pred_dir.glob("*.nii.gz") if p.name[: -len(".nii.gz")] not in case_ids
    )
    summary["by"] = {key: _breakdown(rows, key) for key in BREAKDOWNS}
    return rows, summary


# --- files ---------------------------------------------------------------------------------------------


def write_report(
    out: Path, rows: list[dict[str, object]], summary: dict[str, object], overwrite: bool = False
) -> Path:
    """Write metrics_per_case.csv, summary.json and PNG plots into the new folder ``out``.

    Plots: dice_by_phase.png, dice_by_mas.png, dice_by_kernel.png, grade_confusion.png. ``out``
    appears only when whole (:mod:`nmosim.simulate.outputs`); ``overwrite`` lets it replace an
    earlier nmosim report. Returns ``out``, absolute.
    """
    with staged_directory(out, "evaluate", overwrite) as stage:
        write_metrics_csv(stage / "metrics_per_case.csv", rows)
        write_json(stage / "summary.json", _json_ready(summary))
        scored = [r for r in rows if r.get("status") == "ok"]
        for key in BREAKDOWNS:
            groups = sorted({str(r[key]) for r in scored},
                            key=lambda g: (len(g), g) if key == "mas" else (0, g))  # fmt: skip
            dice_ho = {g: [float(r["dice_ho"]) for r in scored if str(r[key]) == g] for g in groups}
            dice_by_plot(stage / f"dice_by_{key}.png", dice_ho, key)
        confusion = np.array(summary["grading"]["confusion_matrix_truth_rows_pred_cols"])
        grade_confusion_plot(stage / "grade_confusion.png", confusion)
    return Path(out).absolute()


def csv_columns(rows: list[dict[str, object]]) -> list[str]:
    """Column order: identity and status, metadata, segmentation per class, lesions, grades."""
    head = ["case_id", "status", "phase", "mas", "kernel", "kvp", "bones_scored"]
    tail = ["error"]
    seg = [f"{m}_{c}" for c in CLASSES for m in (*SEGMENTATION_METRICS, "empty_both")]
    per_side = ("grade_truth", "grade_pred", "grade_truth_json", "gap_truth_mm", "gap_pred_mm")
    grades = [f"{k}_{s}" for s in ("right", "left") for k in per_side]
    known = head + seg + list(LESION_METRICS) + grades + tail
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
