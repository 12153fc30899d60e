"""The `nmosim phantom` command: files, orientation, reproducibility and bad input."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from nmosim.cli import main

ARGS = ["--spacing", "4", "--supersampling", "1"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("cases") / "case"
    assert main(["phantom", "--seed", "3", "--out", str(out), *ARGS]) == 0
    return out


def test_writes_the_phantom_files(written):
    names = {p.name for p in written.iterdir()}
    assert {
        "structures.nii.gz",
        "tissues.nii.gz",
        "ho_instances.nii.gz",
        "truth.json",
        "preview.png",
    } <= names
    truth = json.loads((written / "truth.json").read_text())
    assert truth["seed"] == 3 and truth["phase"] == "none"
    assert truth["anatomy"]["sex"] in ("male", "female")
    assert truth["software"]["numpy"] == np.__version__
    assert not any(p.name.startswith(".") for p in written.parent.iterdir()), "temporary left behind"


def test_written_file_is_ras_and_right_femur_lies_at_positive_x(written):
    image = nib.load(written / "structures.nii.gz")
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    np.testing.assert_allclose(image.get_sform(), image.get_qform(), atol=1e-4)
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    data = np.asarray(image.dataobj)
    for label, sign in ((4, 1), (5, -1)):
        ijk = np.argwhere(data == label).mean(axis=0)
        x_mm = nib.affines.apply_affine(image.affine, ijk)[0]
        assert np.sign(x_mm) == sign
    truth = json.loads((written / "truth.json").read_text())
    np.testing.assert_allclose(truth["grid"]["affine"], image.affine, atol=1e-6)


def test_same_seed_same_bytes(written, tmp_path):
    again = tmp_path / "again"
    assert main(["phantom", "--seed", "3", "--out", str(again), *ARGS]) == 0
    for name in ("structures.nii.gz", "tissues.nii.gz", "ho_instances.nii.gz"):
        assert (again / name).read_bytes() == (written / name).read_bytes(), name
    other = tmp_path / "other"
    assert main(["phantom", "--seed", "4", "--out", str(other), *ARGS]) == 0
    a = json.loads((written / "truth.json").read_text())["anatomy"]
    b = json.loads((other / "truth.json").read_text())["anatomy"]
    assert a != b


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--spacing", "-1"], "spacing_mm = -1.0 is outside"),
        (["--anatomy", "inter_hip_distance_mm=230"], "inter_hip_distance_mm = 230.0 is outside [150, 200]"),
        (["--colour", "red"], "unrecognized arguments: --colour"),
        (["--supersampling", "0"], "supersampling = 0 is outside"),
        (["--phase", "e"], "argument --phase: invalid choice: 'e'"),
        (["--weeks", "-3"], "weeks = -3.0 is outside [0, 520]"),
        (["--phase", "d", "--weeks", "2"], "weeks = 2.0 is too early for phase 'd'"),
        (["--aetiology", "flu"], "argument --aetiology: invalid choice"),
        (["--anatomy", "foo"], "anatomy = 'foo' is not of the form NAME=VALUE"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, extra, needle):
    out = tmp_path / "bad"
    proc = subprocess.run(
        [sys.executable, "-m", "nmosim", "phantom", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unwritable_output_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "nmosim", "phantom", "--out", str(blocker / "case"), *ARGS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("nmosim phantom: error: out = ")
    assert "not writable" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_series_keeps_anatomy_and_lesion_ids_and_grows(tmp_path):
    out = tmp_path / "series"
    argv = ["series", "--seed", "7", "--weeks", "12,40", "--phase", "d", "--spacing", "4", "--out", str(out)]
    assert main([*argv, "--supersampling", "1"]) == 0
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in folders] == ["week_012_00", "week_040_00"]
    early, late = (json.loads((p / "truth.json").read_text()) for p in folders)
    assert early["generation"]["base_anatomy"] == late["generation"]["base_anatomy"]
    assert late["phase"] == "d" and late["requested_phase"] == "d"
    for side in ("right", "left"):
        assert late[side]["ho_volume_ml"] >= early[side]["ho_volume_ml"]
        assert {d["instance"] for d in early[side]["lesions"]} <= {
            d["instance"] for d in late[side]["lesions"]
        }
    assert (
        early["phase"]
        == ("none", "a", "b", "c", "d")[early[early["generation"]["index_side"]]["brooker_grade"]]
    )
