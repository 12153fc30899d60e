"""Tests of simulate/metrics.py: Dice, surface distances, NSD, lesion detection, kappa on hand-built masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from nmosim.simulate.metrics import (
    confusion_matrix,
    dice,
    hd95_mm,
    lesion_detection,
    nsd,
    quadratic_weighted_kappa,
    segmentation_metrics,
    surface,
    surface_distances,
)

SPACING_ZYX = (2.0, 1.5, 1.0)  # anisotropic on purpose (the evaluation tests' grid, z y x)


def test_empty_masks_follow_the_convention() -> None:
    empty = np.zeros((5, 6, 7), bool)
    full = empty.copy()
    full[1:4, 2:4, 2:5] = True
    both = segmentation_metrics(empty, empty, SPACING_ZYX)
    assert (both["dice"], both["hd95_mm"], both["nsd"]) == (1.0, 0.0, 1.0)
    assert math.isnan(both["volume_error_rel"]) and both["volume_error_ml"] == 0.0
    for truth, pred in ((full, empty), (empty, full)):
        one = segmentation_metrics(truth, pred, SPACING_ZYX)
        assert one["dice"] == 0.0 and math.isnan(one["hd95_mm"]) and one["nsd"] == 0.0
    missed = segmentation_metrics(full, empty, SPACING_ZYX)
    assert missed["volume_error_rel"] == -1.0
    assert missed["volume_error_ml"] == pytest.approx(-18 * 3.0 / 1000)  # 18 voxels of 3 mm3


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_one_voxel_shift_of_a_plane_on_anisotropic_spacing(axis: int) -> None:
    truth = np.zeros((9, 9, 9), bool)
    index = [slice(2, 7)] * 3
    index[axis] = 4
    truth[tuple(index)] = True
    pred = np.roll(truth, 1, axis=axis)
    step = SPACING_ZYX[axis]
    a, b = surface_distances(truth, pred, SPACING_ZYX)
    np.testing.assert_allclose(a, step)
    np.testing.assert_allclose(b, step)
    assert hd95_mm(truth, pred, SPACING_ZYX) == pytest.approx(step)
    assert nsd(truth, pred, SPACING_ZYX, step - 1e-6) == 0.0
    assert nsd(truth, pred, SPACING_ZYX, step) == 1.0
    assert dice(truth, pred) == 0.0


def test_one_voxel_shift_of_a_box_along_z() -> None:
    truth = np.zeros((10, 10, 10), bool)
    truth[2:6, 2:7, 2:8] = True
    pred = np.roll(truth, 1, axis=0)
    a, b = surface_distances(truth, pred, SPACING_ZYX)
    where = np.argwhere(surface(truth))  # the order of the distances
    bottom = where[:, 0] == 2
    side = (where[:, 0] > 2) & ((where[:, 1] % 4 == 2) | (where[:, 2] == 2) | (where[:, 2] == 7))
    # The truth's bottom face is one slice (2 mm) from the prediction's; side faces coincide.
    np.testing.assert_allclose(a[bottom], 2.0)
    np.testing.assert_allclose(a[side], 0.0)
    assert bottom.sum() == 5 * 6 and a.max() == pytest.approx(2.0) and b.max() == pytest.approx(2.0)
    assert dice(truth, pred) == pytest.approx(2 * 3 / 8)


def _blob(rng: np.random.Generator, shape: tuple[int, int, int], level: float) -> np.ndarray:
    mask = ndimage.gaussian_filter(rng.normal(size=shape), 2.0) > level
    mask[[0, -1]] = False
    mask[:, [0, -1]] = False
    mask[:, :, [0, -1]] = False
    return mask


def _brute_force(truth: np.ndarray, pred: np.ndarray, spacing_zyx, tolerance_mm: float):
    """Surface distances by nearest neighbours between surface-voxel centres in mm (cKDTree)."""
    pts_t = np.argwhere(surface(truth)) * np.asarray(spacing_zyx)
    pts_p = np.argwhere(surface(pred)) * np.asarray(spacing_zyx)
    a = cKDTree(pts_p).query(pts_t)[0]
    b = cKDTree(pts_t).query(pts_p)[0]
    hd95 = max(np.percentile(a, 95), np.percentile(b, 95))
    within = ((a <= tolerance_mm).sum() + (b <= tolerance_mm).sum()) / (a.size + b.size)
    return a, b, hd95, within


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_shapes_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = _blob(rng, (14, 18, 22), 0.05)
    pred = _blob(rng, (14, 18, 22), 0.05)
    spacing = (2.5, 0.8, 0.6)
    a, b, hd95, within = _brute_force(truth, pred, spacing, 1.5)
    my_a, my_b = surface_distances(truth, pred, spacing)
    np.testing.assert_allclose(np.sort(my_a), np.sort(a), atol=1e-9)
    np.testing.assert_allclose(np.sort(my_b), np.sort(b), atol=1e-9)
    metrics = segmentation_metrics(truth, pred, spacing, tolerance_mm=1.5)
    assert metrics["hd95_mm"] == pytest.approx(hd95)
    assert metrics["nsd"] == pytest.approx(within)
    assert metrics["dice"] == pytest.approx(2 * (truth & pred).sum() / (truth.sum() + pred.sum()))


@pytest.mark.parametrize("seed", [3, 4])
def test_random_shapes_against_simpleitk(seed: int) -> None:
    sitk = pytest.importorskip("SimpleITK")
    rng = np.random.default_rng(seed)
    truth = _blob(rng, (16, 20, 24), 0.03)
    pred = _blob(rng, (16, 20, 24), 0.03)
    spacing = (3.0, 0.7, 0.5)

    def image(mask: np.ndarray):
        img = sitk.GetImageFromArray(mask.astype(np.uint8))
        img.SetSpacing(spacing[::-1])  # SimpleITK spacing is (x, y, z)
        return img

    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(image(truth), image(pred))
    assert dice(truth, pred) == pytest.approx(overlap.GetDiceCoefficient())

    def contour(mask: np.ndarray):
        f = sitk.LabelContourImageFilter()
        f.SetFullyConnected(False)  # face neighbours, as our surface
        return f.Execute(image(mask))

    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(contour(truth), contour(pred))
    a, b = surface_distances(truth, pred, spacing)
    assert max(a.max(), b.max()) == pytest.approx(hausdorff.GetHausdorffDistance())
    assert (a.mean() + b.mean()) / 2 == pytest.approx(hausdorff.GetAverageHausdorffDistance())


def test_cropping_to_the_masks_changes_nothing() -> None:
    rng = np.random.default_rng(5)
    truth = np.zeros((30, 30, 30), bool)
    pred = np.zeros((30, 30, 30), bool)
    truth[3:17, 5:23, 4:26] = _blob(rng, (14, 18, 22), 0.05)
    pred[0:14, 10:28, 8:30] = _blob(rng, (14, 18, 22), 0.05)  # touches the volume border
    pred[0, 12:14, 12:14] = True
    a, b, hd95, _ = _brute_force(truth, pred, (1.0, 2.0, 0.5), 1.0)
    assert hd95_mm(truth, pred, (1.0, 2.0, 0.5)) == pytest.approx(hd95)


def test_lesion_detection_counts() -> None:
    inst = np.zeros((6, 6, 20), np.uint16)
    inst[1:3, 1:3, 1:3] = 4  # ids need not be consecutive
    inst[1:3, 1:3, 8:12] = 9
    pred = np.zeros(inst.shape, bool)
    pred[1:3, 1:3, 2:4] = True  # overlaps lesion 4 (IoU 4/12)
    pred[4:6, 4:6, 15:18] = True  # false positive
    out = lesion_detection(inst, pred)
    assert (out["lesion_tp"], out["lesion_fn"], out["lesion_fp"]) == (1, 1, 1)
    assert out["lesion_recall"] == 0.5 and out["lesion_precision"] == 0.5 and out["lesion_f1"] == 0.5
    strict = lesion_detection(inst, pred, iou_threshold=0.5)
    assert (strict["lesion_tp"], strict["lesion_fn"], strict["lesion_fp"]) == (0, 2, 2)
    none = lesion_detection(np.zeros_like(inst), np.zeros_like(pred))
    assert none["lesion_f1"] == 1.0 and math.isnan(none["lesion_recall"])


def test_quadratic_weighted_kappa_on_known_matrices() -> None:
    # truth (0, 1, 2), pred (0, 2, 2): observed sum of squares 1; over all 9 pairs 15 -> 1 - 3 * 1 / 15
    confusion = confusion_matrix([0, 1, 2], [0, 2, 2])
    assert confusion[1, 2] == 1 and confusion.sum() == 3
    assert quadratic_weighted_kappa(confusion) == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    t = rng.integers(0, 5, 40)
    p = np.clip(t + rng.integers(-1, 2, 40), 0, 4)
    pairwise = ((t[:, None] - p[None, :]) ** 2).sum()
    assert quadratic_weighted_kappa(confusion_matrix(t, p)) == pytest.approx(
        1 - t.size * ((t - p) ** 2).sum() / pairwise
    )
    assert quadratic_weighted_kappa(confusion_matrix([0, 4], [4, 0])) == pytest.approx(-1.0)
    assert math.isnan(quadratic_weighted_kappa(np.zeros((5, 5))))
