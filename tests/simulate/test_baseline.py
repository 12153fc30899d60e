"""Tests of simulate/baseline.py on a hand-made CT volume (no CT simulation)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nmosim import cli
from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Structure
from nmosim.simulate.baseline import detect_ho, run_baseline
from nmosim.simulate.evaluate import evaluate
from nmosim.simulate.io import write_nifti

GRID = Grid.centered((12, 20, 44), (2.0, 2.0, 3.0))  # x from -43 to 43 mm
HR, HL = int(Structure.HO_RIGHT), int(Structure.HO_LEFT)


def hand_made_ct() -> tuple[np.ndarray, np.ndarray]:
    """HU volume and its structures: pelvis, two femurs, one HO cube per side, a thin streak."""
    rng = np.random.default_rng(0)
    hu = rng.normal(40.0, 30.0, GRID.shape)  # muscle with noise far below the threshold
    s = np.full(GRID.shape, int(Structure.MUSCLE), np.uint8)
    body = (slice(2, 10), slice(3, 17))
    for xs, label in ((slice(16, 28), Structure.PELVIS), (slice(36, 43), Structure.FEMUR_RIGHT),
                      (slice(1, 8), Structure.FEMUR_LEFT)):  # fmt: skip
        s[body + (xs,)] = label
        hu[body + (xs,)] = 900.0
    s[4:8, 6:10, 30:34] = HR  # x = +16..+22 mm: right
    hu[4:8, 6:10, 30:34] = 400.0
    s[4:8, 10:14, 10:14] = HL  # x = -24..-18 mm: left
    hu[4:8, 10:14, 10:14] = 350.0
    hu[1, 1, 10:34] = 800.0  # a one-voxel-thin streak of 24 voxels (0.29 ml): not HO
    return hu, s


def test_detects_detached_ho_and_assigns_sides() -> None:
    hu, s = hand_made_ct()
    pred = detect_ho(hu, GRID)
    assert set(np.unique(pred)) == {0, HR, HL}
    assert np.all(np.isin(s[pred == HR], [HR])) and np.all(np.isin(s[pred == HL], [HL]))
    assert pred[5:7, 7:9, 31:33].tolist() == np.full((2, 2, 2), HR).tolist()  # the cube cores
    assert pred[5:7, 11:13, 11:13].tolist() == np.full((2, 2, 2), HL).tolist()
    # Without the median filter the cubes come back whole, and the streak is (wrongly) kept
    raw = detect_ho(hu, GRID, median_size=1)
    np.testing.assert_array_equal(raw[np.isin(s, [HR, HL])], s[np.isin(s, [HR, HL])])
    assert np.all(raw[1, 1, 10:34] > 0)
    # A tiny component is dropped; with no bone component taken away, the femurs become HO
    assert not detect_ho(hu, GRID, min_volume_ml=1.0).any()
    assert detect_ho(hu, GRID, n_bone_components=0)[5, 5, 40] == HR


def test_mirrored_volume_swaps_sides() -> None:
    hu, _ = hand_made_ct()
    pred = detect_ho(hu, GRID)
    mirrored = detect_ho(hu[:, :, ::-1].copy(), GRID)
    swapped = np.select([pred == HR, pred == HL], [HL, HR], 0)
    np.testing.assert_array_equal(mirrored, swapped[:, :, ::-1])


def test_bad_arguments() -> None:
    hu, _ = hand_made_ct()
    with pytest.raises(SpecError, match="median_size"):
        detect_ho(hu, GRID, median_size=0)
    with pytest.raises(SpecError, match="ct shape"):
        detect_ho(hu[:-1], GRID)


def test_baseline_then_evaluate(tmp_path: Path) -> None:
    hu, s = hand_made_ct()
    case = tmp_path / "cases" / "case_0001"
    case.mkdir(parents=True)
    write_nifti(case / "ct.nii.gz", np.rint(hu), GRID, np.int16)
    write_nifti(case / "structures.nii.gz", s, GRID, np.uint8)
    (tmp_path / "cases" / ".case_0002.partial-1").mkdir()
    write_nifti(tmp_path / "cases" / ".case_0002.partial-1" / "ct.nii.gz", np.rint(hu), GRID, np.int16)
    assert cli.main(["baseline", "--cases", str(tmp_path / "cases"), "--out", str(tmp_path / "pred")]) == 0
    written = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert written == [".nmosim", "case_0001.nii.gz", "dataset.json"]
    image = nib.load(str(tmp_path / "pred" / "case_0001.nii.gz"))
    assert image.get_data_dtype() == np.uint8
    np.testing.assert_allclose(image.affine, GRID.affine())
    rows, summary = evaluate(tmp_path / "cases", tmp_path / "pred")
    row = rows[0]
    assert row["status"] == "ok"
    assert (row["lesion_tp"], row["lesion_fp"], row["lesion_fn"]) == (2, 0, 0)
    assert (row["grade_pred_right"], row["grade_pred_left"]) == (1, 1)
    assert 0.3 < row["dice_ho"] < 1.0  # the median filter rounds the cubes' edges
    assert run_baseline(tmp_path / "cases", tmp_path / "pred2") == (tmp_path / "pred2").absolute()
    with pytest.raises(SpecError, match="no case folder"):
        run_baseline(tmp_path / "pred", tmp_path / "pred3")


def test_a_spur_attached_to_the_pelvis_is_found_and_the_bones_are_not() -> None:
    hu, s = hand_made_ct()
    # A bridge 4 x 15 mm thick across the 16 mm between the pelvis (to col 27) and the right femur
    hu[4:9, 12:14, 28:36] = 900.0
    s[4:9, 12:14, 28:36] = HR
    pred = detect_ho(hu, GRID)
    assert np.all(pred[6, 12:14, 31:33] == HR)  # its middle, beyond the margins of both bones' cores
    assert not np.isin(pred, [HR, HL])[np.isin(s, [3, 4, 5])].any()  # no voxel of native bone
    # Dropping the largest components whole (the former method) loses the spur with the pelvis
    assert not detect_ho(hu, GRID, core_mm=0)[4:9, 12:14, 28:36].any()
    with pytest.raises(SpecError, match="core_mm"):
        detect_ho(hu, GRID, core_mm=-1)
