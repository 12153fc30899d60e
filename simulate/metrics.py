"""Metrics of predicted against true label masks: Dice, surface distances, lesion detection, kappa.

Pure functions of arrays and spacings; they read no files, know no case folders and draw nothing.

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
  :func:`with_empty_convention` rewrites the empty cases by one of ``EMPTY_CONVENTIONS``: a hip
  with no HO and none predicted is a perfect score of nothing, and counting it as Dice 1 lifts a
  mean without saying so (an empty prediction scores 0.75 on a cohort where 1 hip in 4 has HO).

Lesions (HO of both sides together): predicted lesions are the 26-connected components of the
predicted HO; truth lesions are the instances of ``ho_instances.nii.gz`` (connected components of the
truth HO when that file is absent). A truth lesion is detected (TP) when some predicted component
overlaps it with IoU > ``iou_threshold`` (default 0: any shared voxel), else it is a FN; a predicted
component matching no truth lesion that way is a FP. Recall = TP / truth lesions, precision = matched
predicted components / predicted components, F1 from those two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

N_GRADES = 5  # Brooker 0..4
_FACES = ndimage.generate_binary_structure(3, 1)
_CUBE = np.ones((3, 3, 3), dtype=bool)


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


EMPTY_CONVENTIONS: dict[str, str] = {
    "exclude": "truth and prediction both empty: Dice, HD95 and NSD undefined (NaN), counted apart "
    "(n_empty_both) and left out of means; truth empty, prediction not: Dice 0",
    "monai": "MONAI DiceMetric(ignore_empty=True): truth empty: Dice, HD95 and NSD undefined (NaN), "
    "whatever the prediction",
    "one": "MONAI DiceMetric(ignore_empty=False): both empty: Dice 1, HD95 0, NSD 1; truth empty, "
    "prediction not: Dice 0",
}
_SURFACE_KEYS = ("dice", "hd95_mm", "nsd")


def with_empty_convention(
    metrics: dict[str, float], truth_empty: bool, pred_empty: bool, convention: str = "exclude"
) -> dict[str, float]:
    """``metrics`` of :func:`segmentation_metrics` with its empty cases scored by ``convention``.

    >>> with_empty_convention({"dice": 1.0, "hd95_mm": 0.0, "nsd": 1.0}, True, True)["dice"]
    nan
    """
    if convention not in EMPTY_CONVENTIONS:
        raise ValueError(f"empty convention {convention!r} is not one of {', '.join(EMPTY_CONVENTIONS)}")
    undefined = (convention == "exclude" and truth_empty and pred_empty) or (
        convention == "monai" and truth_empty
    )
    if not undefined:
        return dict(metrics)
    return {**metrics, **{k: math.nan for k in _SURFACE_KEYS if k in metrics}}


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


def _bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        lo.append(hit[0])
        hi.append(hit[-1] + 1)
    return np.array(lo), np.array(hi)
