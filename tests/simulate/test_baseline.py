"""Tests of simulate/baseline.py on hand-made CT volumes (no CT simulation)."""

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

GRID = Grid.centered((12, 30, 64), (2.0, 2.0, 3.0))  # x from -63 to 63 mm, 2 mm columns: j mirrors 63 - j
HR, HL = int(Structure.HO_RIGHT), int(Structure.HO_LEFT)
BONES = [int(Structure.PELVIS), int(Structure.FEMUR_RIGHT), int(Structure.FEMUR_LEFT)]


def xs(a: int, b: int, shift: int = 0) -> slice:
    """Columns a to b (excluded), moved ``shift`` columns toward +x."""
    return slice(a + shift, b + shift)


def hand_made_ct(shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """HU volume and its structures: a pelvis and two femurs that mirror each other through x = 0, one HO
    cube per side (not mirrored), a thin streak; everything moved ``shift`` columns toward +x."""
    rng = np.random.default_rng(0)
    hu = rng.normal(40.0, 20.0, GRID.shape)  # muscle with noise far below the threshold
    s = np.full(GRID.shape, int(Structure.MUSCLE), np.uint8)
    body = (slice(2, 10), slice(3, 21))
    for cols, label in ((xs(24, 40, shift), Structure.PELVIS), (xs(52, 61, shift), Structure.FEMUR_RIGHT),
                        (xs(3, 12, shift), Structure.FEMUR_LEFT)):  # fmt: skip
        s[body + (cols,)] = label
        hu[body + (cols,)] = 900.0
    # Cubes 8 mm from the bones beside them, the left one 10 mm (y) from the right one's mirror image
    s[4:8, 4:10, xs(43, 49, shift)] = HR  # x = +23..+33 mm: right
    hu[4:8, 4:10, xs(43, 49, shift)] = 400.0
    s[4:8, 14:20, xs(15, 21, shift)] = HL
    hu[4:8, 14:20, xs(15, 21, shift)] = 350.0
    hu[1, 1, xs(40, 56, shift)] = 800.0  # a one-voxel-thin streak of 16 voxels (0.19 ml): not HO
    return hu, s


def test_detects_detached_ho_and_assigns_sides() -> None:
    hu, s = hand_made_ct()
    pred = detect_ho(hu, GRID)
    assert set(np.unique(pred)) == {0, HR, HL}
    assert np.all(s[pred == HR] == HR) and np.all(s[pred == HL] == HL)
    assert np.all(pred[5:7, 5:9, 44:48] == HR) and np.all(pred[5:7, 15:19, 16:20] == HL)  # the cube cores
    assert not pred[np.isin(s, BONES)].any()  # the bones mirror each other: none of them is HO
    # Without the median filter the cubes come back whole, and the streak is (wrongly) kept
    raw = detect_ho(hu, GRID, median_size=1)
    np.testing.assert_array_equal(raw[np.isin(s, [HR, HL])], s[np.isin(s, [HR, HL])])
    assert np.all(raw[1, 1, 44:48] == HR)  # its middle, farther than the tolerance from the bones
    # A small component is dropped
    assert not detect_ho(hu, GRID, min_volume_ml=2.0).any()


def test_a_bridge_as_thick_as_the_bones_is_ho_and_the_bones_are_not() -> None:
    hu, s = hand_made_ct()
    # A bar 18 x 16 mm across the 24 mm between the pelvis (to column 39) and the right femur (from 52):
    # as thick as the femur is wide (18 mm), so no thickness rule could tell it from bone
    hu[3:9, 3:11, 40:52] = 900.0
    s[3:9, 3:11, 40:52] = HR
    pred = detect_ho(hu, GRID)
    # Its middle, reaching 12 mm from both bones (beyond the 10 mm tolerance), is HO down to 4 mm from them
    assert np.all(pred[4:8, 4:10, 43:49] == HR)  # (the median filter rounds its edges)
    assert not pred[4:8, 4:10, 40:42].any() and not pred[4:8, 4:10, 50:52].any()  # within 4 mm of a bone
    assert not pred[np.isin(s, BONES)].any()  # no voxel of native bone, interiors and surfaces alike
    # The same bar on the left as well (bilateral in the same place): each mirrors the other, none is HO
    hu[3:9, 3:11, 12:24] = 900.0
    both = detect_ho(hu, GRID)
    assert not both[3:9, 3:11, 40:52].any() and not both[3:9, 3:11, 12:24].any()
    assert np.all(both[5:7, 15:19, 16:20] == HL)  # the left cube is still there


def test_a_native_asymmetry_short_of_the_tolerance_is_not_ho() -> None:
    hu, s = hand_made_ct()
    hu[2:10, 3:21, 61:64] = 900.0  # the right femur 6 mm wider than the left one
    s[2:10, 3:21, 61:64] = int(Structure.FEMUR_RIGHT)
    assert not detect_ho(hu, GRID)[np.isin(s, BONES)].any()
    # With a 4 mm tolerance the part beyond 1.6 mm from the left femur's mirror image is (wrongly) HO
    assert np.all(detect_ho(hu, GRID, mirror_tolerance_mm=4.0)[4:8, 6:18, 62:64] == HR)


def test_a_patient_off_centre_is_mirrored_through_its_own_midline() -> None:
    # Everything 2 columns (4 mm) toward +x: mirrored through x = 0 the bones would miss their twins by 8 mm
    hu, s = hand_made_ct(shift=2)
    pred = detect_ho(hu, GRID)
    assert not pred[np.isin(s, BONES)].any()
    assert np.all(pred[5:7, 5:9, xs(44, 48, 2)] == HR) and np.all(pred[5:7, 15:19, xs(16, 20, 2)] == HL)


def test_nothing_in_soft_tissue_and_nothing_without_a_twin_to_compare() -> None:
    assert not detect_ho(np.random.default_rng(1).normal(40.0, 30.0, GRID.shape), GRID).any()
    # Midline at x = +6 mm (3 columns): column j mirrors 69 - j, columns 0 to 5 beyond the last one (63)
    hu, _ = hand_made_ct(shift=3)
    hu[3:9, 24:30, 0:6] = 900.0  # an island at the volume's edge, no twin to compare with: not HO
    assert not detect_ho(hu, GRID)[:, 24:30, :].any()
    hu[3:9, 24:30, 0:10] = 900.0  # widened inward: the columns with a place for a twin are HO (left)
    assert np.all(detect_ho(hu, GRID)[4:8, 25:29, 6:9] == HL)


def test_mirrored_volume_swaps_sides() -> None:
    hu, _ = hand_made_ct()
    pred = detect_ho(hu, GRID)
    mirrored = detect_ho(hu[:, :, ::-1].copy(), GRID)
    swapped = np.select([pred == HR, pred == HL], [HL, HR], 0)
    np.testing.assert_array_equal(mirrored, swapped[:, :, ::-1])


@pytest.mark.parametrize(
    "kwargs, name",
    [({"median_size": 0}, "median_size"), ({"median_size": 2.5}, "median_size"),
     ({"mirror_tolerance_mm": 0.0}, "mirror_tolerance_mm"),
     ({"mirror_tolerance_mm": 51.0}, "mirror_tolerance_mm"),
     ({"mirror_tolerance_mm": float("nan")}, "mirror_tolerance_mm"),
     ({"threshold_hu": float("inf")}, "threshold_hu"), ({"min_volume_ml": -1.0}, "min_volume_ml")],
)  # fmt: skip
def test_bad_arguments(kwargs: dict, name: str) -> None:
    hu, _ = hand_made_ct()
    with pytest.raises(SpecError, match=f"^{name} = .* must be"):
        detect_ho(hu, GRID, **kwargs)


def test_bad_shape_and_cli_refusal(tmp_path: Path, capsys) -> None:
    hu, _ = hand_made_ct()
    with pytest.raises(SpecError, match="ct shape"):
        detect_ho(hu[:-1], GRID)
    case = tmp_path / "cases" / "case_0001"
    case.mkdir(parents=True)
    write_nifti(case / "ct.nii.gz", np.rint(hu), GRID, np.int16)
    argv = ["baseline", "--cases", str(tmp_path / "cases"), "--out", str(tmp_path / "pred")]
    assert cli.main([*argv, "--mirror-tolerance-mm", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mirror_tolerance_mm = 0" in err[0] and "(0, 50]" in err[0]
    assert not (tmp_path / "pred").exists()


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
