"""Tests of simulate/evaluate.py on hand-built label volumes (no CT simulation)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from nmosim import cli
from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.simulate.evaluate import evaluate, write_report
from nmosim.simulate.io import write_json, write_nifti

SPACING_XYZ = (1.0, 1.5, 2.0)  # anisotropic on purpose
SPACING_ZYX = SPACING_XYZ[::-1]
GRID = Grid((12, 10, 40), SPACING_XYZ, (-20.0, -7.0, -11.0))
P, FR, FL, HR, HL = (int(s) for s in (Structure.PELVIS, Structure.FEMUR_RIGHT, Structure.FEMUR_LEFT,
                                      Structure.HO_RIGHT, Structure.HO_LEFT))  # fmt: skip


def scene() -> tuple[np.ndarray, np.ndarray]:
    """Structures and instances: right pelvic spur 14 mm from the femur (II), left island (I)."""
    s = np.full(GRID.shape, int(Structure.MUSCLE), np.uint8)
    inst = np.zeros(GRID.shape, np.uint16)
    body = (slice(3, 9), slice(2, 8))
    s[body + (slice(12, 18),)] = P
    s[body + (slice(34, 39),)] = FR
    s[body + (slice(1, 4),)] = FL
    s[body + (slice(18, 20),)] = HR  # spur on the pelvis, 14 empty 1 mm columns before the femur
    inst[body + (slice(18, 20),)] = 1
    s[4:7, 3:6, 7:9] = HL  # island between left femur and pelvis
    inst[4:7, 3:6, 7:9] = 2
    return s, inst


def write_case(root: Path, case_id: str, structures: np.ndarray, instances: np.ndarray | None = None,
               phase: str = "b", mas: float = 200.0, kernel: str = "soft") -> Path:  # fmt: skip
    folder = root / case_id
    folder.mkdir(parents=True)
    write_nifti(folder / "structures.nii.gz", structures, GRID, np.uint8)
    if instances is not None:
        write_nifti(folder / "ho_instances.nii.gz", instances, GRID, np.uint16)
    truth = {
        "case_id": case_id,
        "phase": phase,
        "right": {"brooker_grade": 2},
        "left": {"brooker_grade": 1},
        "scanner": {"mas": mas, "kernel": kernel, "kvp": 120.0},
    }
    write_json(folder / "truth.json", truth)
    return folder


def write_pred(pred_dir: Path, case_id: str, labels: np.ndarray, grid: Grid = GRID, dtype=np.uint8) -> None:
    pred_dir.mkdir(parents=True, exist_ok=True)
    write_nifti(pred_dir / f"{case_id}.nii.gz", labels, grid, dtype)


# --- scores of case folders -------------------------------------------------------------------------


def test_perfect_prediction_scores_perfectly(tmp_path: Path) -> None:
    s, inst = scene()
    write_case(tmp_path / "truth", "case_a", s, inst)
    write_pred(tmp_path / "pred", "case_a", s)
    rows, summary = evaluate(tmp_path / "truth", tmp_path / "pred")
    row = rows[0]
    assert row["status"] == "ok"
    for name in ("ho_right", "ho_left", "ho", "pelvis", "femur_right", "femur_left"):
        assert row[f"dice_{name}"] == 1.0
        assert row[f"hd95_mm_{name}"] == 0.0
        assert row[f"nsd_{name}"] == 1.0
        assert row[f"volume_error_ml_{name}"] == 0.0
    assert (row["grade_truth_right"], row["grade_pred_right"]) == (2, 2)
    assert (row["grade_truth_left"], row["grade_pred_left"]) == (1, 1)
    assert row["gap_pred_mm_right"] == pytest.approx(14.0)
    assert (row["lesion_tp"], row["lesion_fp"], row["lesion_fn"], row["lesion_f1"]) == (2, 0, 0, 1.0)
    assert summary["grading"]["accuracy"] == 1.0
    assert summary["grading"]["quadratic_weighted_kappa"] == 1.0
    assert summary["grading"]["accuracy_vs_truth_json"] == 1.0
    # HO-only predictions are graded on the truth's bones and give the same grades; bones not scored
    ho_only = np.where(np.isin(s, [HR, HL]), s, 0).astype(np.uint8)
    write_pred(tmp_path / "pred2", "case_a", ho_only)
    row2 = evaluate(tmp_path / "truth", tmp_path / "pred2")[0][0]
    assert row2["bones_scored"] is False and "dice_pelvis" not in row2
    assert (row2["grade_pred_right"], row2["grade_pred_left"], row2["dice_ho"]) == (2, 1, 1.0)


def test_empty_prediction_in_a_case(tmp_path: Path) -> None:
    s, inst = scene()
    write_case(tmp_path / "truth", "case_a", s, inst)
    write_pred(tmp_path / "pred", "case_a", np.zeros_like(s))
    rows, summary = evaluate(tmp_path / "truth", tmp_path / "pred")
    row = rows[0]
    assert row["dice_ho"] == 0.0 and math.isnan(row["hd95_mm_ho"]) and row["nsd_ho"] == 0.0
    assert (row["lesion_tp"], row["lesion_fn"], row["lesion_fp"], row["lesion_f1"]) == (0, 2, 0, 0.0)
    assert (row["grade_pred_right"], row["grade_pred_left"]) == (0, 0)
    assert summary["segmentation"]["ho"]["hd95_mm"]["n_undefined"] == 1
    assert summary["grading"]["accuracy"] == 0.0
    write_report(tmp_path / "report", rows, summary)
    saved = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert saved["segmentation"]["ho"]["hd95_mm"]["n"] == 0  # NaN is counted, not averaged
    with open(tmp_path / "report" / "metrics_per_case.csv") as handle:
        assert next(csv.DictReader(handle))["hd95_mm_ho"] == "nan"


# --- grades -----------------------------------------------------------------------------------------


def test_bridging_prediction_is_graded_iv_on_the_truth_bones(tmp_path: Path) -> None:
    s, inst = scene()
    write_case(tmp_path / "truth", "case_a", s, inst)
    pred = np.zeros_like(s)
    pred[3:9, 2:8, 18:34] = HR  # HO from the pelvis to the right femur
    write_pred(tmp_path / "pred", "case_a", pred)
    rows, summary = evaluate(tmp_path / "truth", tmp_path / "pred")
    assert (rows[0]["grade_pred_right"], rows[0]["grade_pred_left"]) == (4, 0)
    assert rows[0]["gap_pred_mm_right"] == 0.0
    confusion = np.array(summary["grading"]["confusion_matrix_truth_rows_pred_cols"])
    assert confusion[2, 4] == 1 and confusion[1, 0] == 1 and confusion.sum() == 2
    assert summary["grading"]["accuracy"] == 0.0


def test_truth_grade_counts_only_ossified_ho_and_a_predicted_ho_label_counts_as_bone(tmp_path: Path) -> None:
    s, inst = scene()
    s[3:9, 2:8, 20:34] = HR  # the spur continued to the femur: a bridge by labels
    inst[3:9, 2:8, 20:34] = 1
    tissues = np.where(s == HR, int(Tissue.HO_CALCIFYING), int(Tissue.MUSCLE)).astype(np.uint8)
    tissues[3:9, 2:8, 18:20] = int(Tissue.HO_IMMATURE)  # only the spur's base has ossified
    tissues[s == HL] = int(Tissue.HO_CORTEX)
    folder = write_case(tmp_path / "truth", "case_a", s, inst)
    write_nifti(folder / "tissues.nii.gz", tissues, GRID, np.uint8)
    write_pred(tmp_path / "pred", "case_a", np.where((s == HR) | (s == HL), s, 0).astype(np.uint8))
    rows, _ = evaluate(tmp_path / "truth", tmp_path / "pred")
    # Truth: the calcifying bar is not bone, the immature base is a spur 14 mm from the femur (II).
    assert (rows[0]["grade_truth_right"], rows[0]["gap_truth_mm_right"]) == (2, 14.0)
    assert rows[0]["grade_truth_left"] == 1
    # The prediction labels the whole bar as HO, which a label map claims as bone: a bridge (IV).
    assert (rows[0]["grade_pred_right"], rows[0]["grade_pred_left"]) == (4, 1)


# --- robustness and report ------------------------------------------------------------------------------


def test_bad_predictions_are_reported_not_raised(tmp_path: Path) -> None:
    s, inst = scene()
    for case_id in ("c_missing", "c_misnamed", "c_shape", "c_affine", "c_float", "c_ok"):
        write_case(tmp_path / "truth", case_id, s, inst, phase="a" if case_id == "c_ok" else "b")
    write_case(tmp_path / "truth" / ".c_ok.partial-1", "c_half", s)  # a killed writer's stage: skipped
    pred = tmp_path / "pred"
    write_pred(pred, "c_misnamed_seg", s)
    write_pred(pred, "c_shape", s[:, :, :-1], Grid((12, 10, 39), SPACING_XYZ, GRID.origin_mm))
    write_pred(pred, "c_affine", s, Grid(GRID.shape, SPACING_XYZ, (0.0, 0.0, 0.0)))
    write_pred(pred, "c_float", s.astype(np.float32) + 0.5, dtype=np.float32)
    write_pred(pred, "c_ok", s.astype(np.float32), dtype=np.float32)  # integral floats are fine
    (pred / "c_broken.nii.gz").write_bytes(b"not a nifti")
    rows, summary = evaluate(tmp_path / "truth", pred)
    status = {r["case_id"]: r["status"] for r in rows}
    assert status == {
        "c_affine": "affine_mismatch",
        "c_float": "not_a_label_map",
        "c_misnamed": "missing",
        "c_missing": "missing",
        "c_ok": "ok",
        "c_shape": "shape_mismatch",
    }
    assert summary["unmatched_predictions"] == ["c_broken.nii.gz", "c_misnamed_seg.nii.gz"]
    assert summary["n_scored"] == 1 and summary["status_counts"]["missing"] == 2
    (pred / "c_missing.nii.gz").write_bytes(b"garbage")
    again = {r["case_id"]: r["status"] for r in evaluate(tmp_path / "truth", pred)[0]}
    assert again["c_missing"] == "unreadable"
    out = write_report(tmp_path / "report", rows, summary)
    with open(out / "metrics_per_case.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["status"] for r in table] == [status[r["case_id"]] for r in table]
    assert table[0]["dice_ho"] == ""  # not computed for an unscored case


def test_breakdown_by_phase_dose_and_kernel(tmp_path: Path) -> None:
    s, inst = scene()
    write_case(tmp_path / "truth", "case_a", s, inst, phase="b", mas=50, kernel="bone")
    write_case(tmp_path / "truth", "case_b", s, inst, phase="c", mas=200, kernel="soft")
    worse = s.copy()
    worse[worse == HL] = int(Structure.MUSCLE)
    write_pred(tmp_path / "pred", "case_a", s)
    write_pred(tmp_path / "pred", "case_b", worse)
    _, summary = evaluate(tmp_path / "truth", tmp_path / "pred")
    by = summary["by"]
    assert set(by["mas"]) == {"50", "200"} and set(by["kernel"]) == {"bone", "soft"}
    assert by["phase"]["b"]["segmentation"]["ho_left"]["dice"]["mean"] == 1.0
    assert by["phase"]["c"]["segmentation"]["ho_left"]["dice"]["mean"] == 0.0
    assert by["kernel"]["soft"]["grading"]["accuracy"] == 0.5
    assert summary["lesions"]["fn"] == 1 and summary["lesions"]["fp_per_case"] == 0.0


def test_volume_error_uses_the_header_spacing(tmp_path: Path) -> None:
    s, inst = scene()
    write_case(tmp_path / "truth", "case_a", s, inst)
    pred = s.copy()
    pred[10, 8, 30:33] = HR  # three extra voxels of 1 x 1.5 x 2 mm3
    write_pred(tmp_path / "pred", "case_a", pred)
    row = evaluate(tmp_path / "truth", tmp_path / "pred")[0][0]
    assert row["volume_error_ml_ho_right"] == pytest.approx(3 * 3.0 / 1000)
    truth_ml = int((s == HR).sum()) * 3.0 / 1000
    assert row["volume_error_rel_ho_right"] == pytest.approx(3 * 3.0 / 1000 / truth_ml)
    assert row["lesion_fp"] == 1


def test_cli_evaluate_writes_the_report(tmp_path: Path, capsys) -> None:
    s, inst = scene()
    write_case(tmp_path / "truth", "case_a", s, inst)
    write_pred(tmp_path / "pred", "case_a", s)
    out = tmp_path / "report"
    truth, pred = str(tmp_path / "truth"), str(tmp_path / "pred")
    args = ["evaluate", "--truth", truth, "--pred", pred, "--out", str(out)]
    assert cli.main([*args, "--tolerance-mm", "1"]) == 0
    for name in ("metrics_per_case.csv", "summary.json", "dice_by_phase.png", "dice_by_mas.png",
                 "dice_by_kernel.png", "grade_confusion.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["tolerance_mm"] == 1.0
    assert cli.main([*args[:2], str(tmp_path / "nowhere"), *args[3:]]) == 2
    assert cli.main([*args, "--tolerance-mm", "-1"]) == 2
    assert "tolerance_mm" in capsys.readouterr().err


def test_predictions_in_the_dataset_label_sets(tmp_path: Path) -> None:
    s, inst = scene()
    write_case(tmp_path / "truth", "case_a", s, inst)
    lut = np.zeros(256, np.uint8)
    lut[[P, FR, FL, HR, HL]] = [1, 2, 3, 4, 5]
    write_pred(tmp_path / "bones_ho", "case_a", lut[s])
    row = evaluate(tmp_path / "truth", tmp_path / "bones_ho", pred_labels="bones_ho")[0][0]
    assert (row["dice_ho_right"], row["dice_ho_left"], row["dice_pelvis"]) == (1.0, 1.0, 1.0)
    # "ho": one label; each voxel's side from its x coordinate (x > 0 right). The scene's right HO
    # lies at x = -2..-1 mm and its left island at x = -13..-12 mm: both read as left.
    write_pred(tmp_path / "ho", "case_a", np.isin(s, [HR, HL]).astype(np.uint8))
    row = evaluate(tmp_path / "truth", tmp_path / "ho", pred_labels="ho")[0][0]
    assert row["dice_ho"] == 1.0 and row["volume_pred_ml_ho_right"] == 0.0
    extra = np.isin(s, [HR, HL]).astype(np.uint8)
    extra[10, 8, 25] = 1  # x = +5 mm: right
    write_pred(tmp_path / "ho2", "case_a", extra)
    row = evaluate(tmp_path / "truth", tmp_path / "ho2", pred_labels="ho")[0][0]
    assert row["volume_pred_ml_ho_right"] == pytest.approx(3.0 / 1000)
    with pytest.raises(SpecError, match="pred_labels"):
        evaluate(tmp_path / "truth", tmp_path / "ho", pred_labels="sided")


# --- one bad case never stops the report --------------------------------------------------------------


def write_raw_pred(pred_dir: Path, case_id: str, data_xyz: np.ndarray) -> None:
    """A prediction of any dtype numpy and nibabel allow, on the scene's grid (data [x, y, z])."""
    import nibabel as nib

    pred_dir.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data_xyz, GRID.affine()), str(pred_dir / f"{case_id}.nii.gz"))


def test_every_bad_input_is_one_row_and_the_report_is_written(tmp_path: Path, capsys) -> None:
    s, inst = scene()
    ids = ("c_complex", "c_json", "c_ok", "c_rgb", "c_structures")
    for case_id in ids:
        write_case(tmp_path / "truth", case_id, s, inst)
        write_pred(tmp_path / "pred", case_id, s)
    xyz = np.transpose(s, (2, 1, 0))
    rgb = np.zeros(xyz.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = xyz
    write_raw_pred(tmp_path / "pred", "c_rgb", rgb)  # an RGB24 picture of the labels
    write_raw_pred(tmp_path / "pred", "c_complex", xyz.astype(np.complex64))
    (tmp_path / "truth" / "c_json" / "truth.json").write_text('{"phase": "b", "right": {', encoding="utf-8")
    structures = tmp_path / "truth" / "c_structures" / "structures.nii.gz"
    structures.write_bytes(structures.read_bytes()[:200])  # truncated
    out = tmp_path / "report"
    truth, pred = str(tmp_path / "truth"), str(tmp_path / "pred")
    argv = ["evaluate", "--truth", truth, "--pred", pred, "--out", str(out)]
    assert cli.main(argv) == 0
    with open(out / "metrics_per_case.csv") as handle:
        table = {r["case_id"]: r for r in csv.DictReader(handle)}
    assert set(table) == set(ids)
    assert {k: r["status"] for k, r in table.items()} == {
        "c_complex": "not_a_label_map",
        "c_json": "truth_unreadable",
        "c_ok": "ok",
        "c_rgb": "not_a_label_map",
        "c_structures": "truth_unreadable",
    }
    assert "JSONDecodeError" in table["c_json"]["error"] and table["c_structures"]["error"]
    assert table["c_ok"]["dice_ho"] == "1" and table["c_rgb"]["dice_ho"] == ""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 5 and summary["n_scored"] == 1
    assert summary["status_counts"] == {"not_a_label_map": 2, "ok": 1, "truth_unreadable": 2}
    assert (out / "grade_confusion.png").stat().st_size > 0


def test_an_unexpected_failure_of_one_case_is_its_error_row(tmp_path: Path, monkeypatch) -> None:
    import nmosim.simulate.evaluate as report

    s, inst = scene()
    for case_id in ("c_a", "c_b"):
        write_case(tmp_path / "truth", case_id, s, inst)
        write_pred(tmp_path / "pred", case_id, s)
    real = report.evaluate_case

    def failing(case, *args, **kwargs):
        if case.case_id == "c_a":
            raise MemoryError("no room for the distance transform")
        return real(case, *args, **kwargs)

    monkeypatch.setattr(report, "evaluate_case", failing)
    rows, summary = evaluate(tmp_path / "truth", tmp_path / "pred")
    assert [r["status"] for r in rows] == ["error", "ok"]
    assert rows[0]["error"] == "MemoryError: no room for the distance transform"
    assert rows[0]["phase"] == "b" and summary["by"]["phase"]["b"]["n_cases"] == 2


# --- which label set, and empty hips ------------------------------------------------------------------


def test_the_label_set_comes_from_the_dataset_never_a_silent_zero(tmp_path: Path) -> None:
    s, inst = scene()
    write_case(tmp_path / "ds" / "cases", "case_a", s, inst)
    write_json(tmp_path / "ds" / "manifest.json", {"nmosim_version": "0", "config": {"label_set": "ho"}})
    binary = np.isin(s, [HR, HL]).astype(np.uint8)  # what a network trained on the "ho" folder writes
    write_pred(tmp_path / "pred", "case_a", binary)
    rows, summary = evaluate(tmp_path / "ds" / "cases", tmp_path / "pred")
    assert rows[0]["status"] == "ok" and rows[0]["dice_ho"] == 1.0
    assert summary["pred_labels"] == "ho" and summary["pred_labels_source"].endswith("manifest.json")
    # Told structures, the same 0/1 mask is the case's error, not Dice 0
    rows, summary = evaluate(tmp_path / "ds" / "cases", tmp_path / "pred", pred_labels="structures")
    assert rows[0]["status"] == "label_set_mismatch" and "binary HO mask" in rows[0]["error"]
    assert "dice_ho" not in rows[0] and summary["n_scored"] == 0
    # Structures ids against a dataset in the "ho" set: values outside the set are named
    write_pred(tmp_path / "pred6", "case_a", s)
    row = evaluate(tmp_path / "ds" / "cases", tmp_path / "pred6")[0][0]
    assert row["status"] == "label_set_mismatch" and "values 2, 3, 4, 5, 6, 7" in row["error"]


def test_the_prediction_folder_dataset_json_wins_and_values_decide_last(tmp_path: Path) -> None:
    s, inst = scene()
    write_case(tmp_path / "truth", "case_a", s, inst)
    lut = np.zeros(256, np.uint8)
    lut[[P, FR, FL, HR, HL]] = [1, 2, 3, 4, 5]
    write_pred(tmp_path / "nnunet", "case_a", lut[s])
    labels = {"background": 0, "pelvis": 1, "femur_right": 2, "femur_left": 3, "ho_right": 4, "ho_left": 5}
    write_json(tmp_path / "nnunet" / "dataset.json", {"labels": labels, "file_ending": ".nii.gz"})
    rows, summary = evaluate(tmp_path / "truth", tmp_path / "nnunet")
    assert summary["pred_labels"] == "bones_ho" and summary["pred_labels_source"].endswith("dataset.json")
    assert (rows[0]["dice_ho_right"], rows[0]["dice_pelvis"]) == (1.0, 1.0)
    (tmp_path / "nnunet" / "dataset.json").unlink()
    summary = evaluate(tmp_path / "truth", tmp_path / "nnunet")[1]
    assert summary["pred_labels"] == "bones_ho"
    assert summary["pred_labels_source"] == "inferred from the prediction values"
    write_pred(tmp_path / "binary", "case_a", np.isin(s, [HR, HL]).astype(np.uint8))
    assert evaluate(tmp_path / "truth", tmp_path / "binary")[1]["pred_labels"] == "ho"
    assert evaluate(tmp_path / "truth", tmp_path / "nnunet", pred_labels="ho")[0][0]["status"] == (
        "label_set_mismatch"
    )


def test_empty_hips_are_counted_apart_and_the_convention_is_named(tmp_path: Path) -> None:
    s, inst = scene()
    s[s == HL] = int(Structure.MUSCLE)  # the left hip has no HO
    inst[inst == 2] = 0
    write_case(tmp_path / "truth", "case_a", s, inst)
    write_pred(tmp_path / "pred", "case_a", s)
    rows, summary = evaluate(tmp_path / "truth", tmp_path / "pred")
    row = rows[0]
    assert math.isnan(row["dice_ho_left"]) and math.isnan(row["nsd_ho_left"]) and row["empty_both_ho_left"]
    assert row["dice_ho_right"] == 1.0 and row["empty_both_ho_right"] is False
    left = summary["segmentation"]["ho_left"]
    assert left["n_empty_both"] == 1 and left["dice"]["n"] == 0 and "mean" not in left["dice"]
    assert summary["empty_convention"]["name"] == "exclude"
    one = evaluate(tmp_path / "truth", tmp_path / "pred", empty="one")[1]
    assert one["segmentation"]["ho_left"]["dice"]["mean"] == 1.0 and one["empty_convention"]["name"] == "one"
    # A false positive on the empty hip: Dice 0 by default, undefined by MONAI's ignore_empty=True
    fp = s.copy()
    fp[4:6, 3:5, 7:9] = HL
    write_pred(tmp_path / "fp", "case_a", fp)
    assert evaluate(tmp_path / "truth", tmp_path / "fp")[0][0]["dice_ho_left"] == 0.0
    assert math.isnan(evaluate(tmp_path / "truth", tmp_path / "fp", empty="monai")[0][0]["dice_ho_left"])
    write_report(tmp_path / "report", rows, summary)
    saved = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert saved["empty_convention"]["name"] == "exclude"
    assert "left out of means" in saved["empty_convention"]["meaning"]
    with pytest.raises(SpecError, match="empty"):
        evaluate(tmp_path / "truth", tmp_path / "pred", empty="zero")


def test_cli_evaluate_names_its_label_set_and_convention(tmp_path: Path, capsys) -> None:
    from nmosim.simulate.metrics import EMPTY_CONVENTIONS

    assert set(cli.EMPTY_CHOICES) == set(EMPTY_CONVENTIONS)
    s, inst = scene()
    write_case(tmp_path / "truth", "case_a", s, inst)
    write_pred(tmp_path / "pred", "case_a", np.isin(s, [HR, HL]).astype(np.uint8))
    args = ["evaluate", "--truth", str(tmp_path / "truth"), "--pred", str(tmp_path / "pred")]
    assert cli.main([*args, "--out", str(tmp_path / "r"), "--empty", "one"]) == 0
    err = capsys.readouterr().err
    assert "label set ho (inferred from the prediction values); empty classes: one" in err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["empty_convention"]["name"] == "one"
    assert summary["segmentation"]["ho"]["dice"]["mean"] == 1.0
