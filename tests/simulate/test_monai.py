"""A small dataset written by nmosim, read by MONAI itself: the Decathlon data list, the folds and the
properties Auto3DSeg reads, the images through MONAI's loading transforms, and Auto3DSeg's DataAnalyzer.

Skipped where MONAI (and torch) are not installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

monai = pytest.importorskip("monai")
yaml = pytest.importorskip("yaml")

from monai.auto3dseg.utils import datafold_read  # noqa: E402
from monai.data import load_decathlon_datalist, load_decathlon_properties  # noqa: E402
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd  # noqa: E402

from nmosim.phantoms.grid import Grid  # noqa: E402
from nmosim.phantoms.labels import Structure  # noqa: E402
from nmosim.simulate.dataset import build_dataset, parse_cohort  # noqa: E402
from nmosim.simulate.io import write_json, write_nifti  # noqa: E402
from nmosim.simulate.outputs import staged_directory  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Anisotropic and not a cube, so that a swapped axis or spacing shows: x from -10.5 to +10.5 mm
GRID = Grid.centered((5, 6, 8), (2.0, 2.5, 3.0))
X_RIGHT, X_LEFT = 6, 1  # columns of the right (x > 0) and left (x < 0) HO blobs


def fake_case(out, request, preset, protocol_overrides, z_range_mm, threads=None, progress=None) -> Path:
    """A case folder in place of the CT simulation: a bone slab and one HO blob per side."""
    s = np.full(GRID.shape, int(Structure.MUSCLE), np.uint8)
    s[1:4, 1:5, 3:5] = int(Structure.PELVIS)
    s[1:3, 2:4, X_RIGHT] = int(Structure.HO_RIGHT)
    s[2:4, 2:4, X_LEFT] = int(Structure.HO_LEFT)
    hu = np.where(s == int(Structure.MUSCLE), 40, 700) + request.case_index
    with staged_directory(out, "case") as stage:
        write_nifti(stage / "ct.nii.gz", hu, GRID, np.int16)
        write_nifti(stage / "structures.nii.gz", s, GRID, np.uint8)
        write_json(stage / "truth.json", {
            "case_index": request.case_index, "phase": request.phase,
            "right": {"brooker_grade": 1, "gap_mm": None, "ho_volume_ml": 0.06},
            "left": {"brooker_grade": 1, "gap_mm": None, "ho_volume_ml": 0.06},
            "scanner": {"mas": protocol_overrides["mas"], "kernel": protocol_overrides["kernel"]},
        })  # fmt: skip
    return Path(out)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Seven cases, two of them test cases, label set bones_ho (background, bones, ho_right, ho_left)."""
    cohort = parse_cohort({
        "name": "Tiny", "dataset_id": 7, "n_cases": 7, "seed": 3, "test_fraction": 0.3,
        "label_set": "bones_ho", "phase_mix": {"a": 1.0}, "scanner": {"mas": [100], "kernels": ["soft"]},
    })  # fmt: skip
    return build_dataset(cohort, tmp_path_factory.mktemp("monai") / "ds", workers=0, writer=fake_case)


def test_monai_reads_the_data_list_and_its_properties(dataset: Path) -> None:
    path = dataset / "datalist.json"
    keys = ("name", "description", "tensorImageSize", "modality", "labels", "numTraining", "numTest")
    props = load_decathlon_properties(path, keys)
    assert props["name"] == "Tiny" and props["tensorImageSize"] == "3D" and props["modality"] == {"0": "CT"}
    assert props["labels"] == {"0": "background", "1": "pelvis", "2": "femur_right", "3": "femur_left",
                               "4": "ho_right", "5": "ho_left"}  # fmt: skip
    training = load_decathlon_datalist(path, data_list_key="training")
    testing = load_decathlon_datalist(path, data_list_key="testing")
    assert (len(training), len(testing)) == (props["numTraining"], props["numTest"]) == (5, 2)
    # MONAI joins the paths to the data list's folder: every file is there, and no case is in both lists
    for item in training + testing:
        assert Path(item["image"]).is_file() and Path(item["label"]).is_file()
        assert Path(item["image"]).parent.name in ("imagesTr", "imagesTs")
    names = [Path(d["image"]).name for d in training + testing]
    assert len(set(names)) == 7
    with pytest.raises(ValueError):  # no "validation" list: Auto3DSeg cross-validates on the folds
        load_decathlon_datalist(path, data_list_key="validation")


def test_auto3dseg_folds(dataset: Path) -> None:
    path = str(dataset / "datalist.json")
    folds = json.loads(Path(path).read_text())["numFolds"]
    seen: list[str] = []
    for fold in range(folds):
        train, val = datafold_read(path, str(dataset), fold=fold)
        assert len(train) + len(val) == 5 and val and train
        assert not {d["image"] for d in train} & {d["image"] for d in val}
        assert all(Path(d["image"]).is_file() and Path(d["label"]).is_file() for d in train + val)
        seen += [d["image"] for d in val]
    assert len(seen) == len(set(seen)) == 5  # each training case validates in exactly one fold
    train, val = datafold_read(path, str(dataset), fold=folds)  # a fold beyond the last: all train
    assert len(train) == 5 and not val


def test_monai_loads_images_and_labels_that_agree(dataset: Path) -> None:
    declared = {int(k) for k in json.loads((dataset / "datalist.json").read_text())["labels"]}
    item = load_decathlon_datalist(dataset / "datalist.json", data_list_key="training")[0]
    load = Compose([
        LoadImaged(keys=["image", "label"]),
        EnsureChannelFirstd(keys=["image", "label"]),
        Orientationd(keys=["image", "label"], axcodes="RAS"),
    ])  # fmt: skip
    data = load(item)
    image, label = data["image"], data["label"]
    # nmosim stores [z, y, x]; NIfTI and MONAI index (x, y, z)
    assert tuple(image.shape) == tuple(label.shape) == (1, *GRID.shape[::-1])
    np.testing.assert_allclose(image.meta["pixdim"][1:4], GRID.spacing_mm)
    np.testing.assert_allclose(np.asarray(image.affine), np.asarray(label.affine))
    values = set(np.unique(np.asarray(label)).astype(int).tolist())
    assert values <= declared and values == {0, 1, 4, 5}  # background, pelvis, ho_right, ho_left
    # RAS: the first axis runs toward the patient's right, so ho_right (x > 0) sits at high indices
    lab = np.asarray(label)[0]
    assert set(np.unique(np.nonzero(lab == 4)[0])) == {X_RIGHT}
    assert set(np.unique(np.nonzero(lab == 5)[0])) == {X_LEFT}
    x_right = (np.asarray(image.affine) @ np.array([X_RIGHT, 0, 0, 1.0]))[0]
    assert x_right == pytest.approx(GRID.origin_mm[0] + X_RIGHT * GRID.spacing_mm[0]) and x_right > 0
    # The image is the case's CT: 700 HU inside bone and HO, 40 + case index outside
    assert np.all(np.asarray(image)[0][lab > 0] >= 700) and np.asarray(image)[0][0, 0, 0] < 100


def test_autorunner_analyzes_the_dataset_from_the_example_task_file(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As README says: the task file copied into the dataset folder, AutoRunner run from there; its first
    step (DataAnalyzer) only, the later ones need the algorithm templates and a GPU."""
    from monai.apps.auto3dseg import AutoRunner

    shutil.copy(ROOT / "examples" / "auto3dseg_task.yaml", dataset / "auto3dseg_task.yaml")
    monkeypatch.chdir(dataset)
    runner = AutoRunner(
        work_dir=str(tmp_path / "work"),
        input="auto3dseg_task.yaml",
        algo_gen=False,
        train=False,
        ensemble=False,
    )
    assert runner.num_fold == json.loads((dataset / "datalist.json").read_text())["numFolds"] == 5
    runner.run()
    stats = yaml.safe_load((tmp_path / "work" / "datastats.yaml").read_text())["stats_summary"]
    assert stats["label_stats"]["labels"] == [0, 1, 4, 5]  # the classes present, background first
    np.testing.assert_allclose(stats["image_stats"]["spacing"]["max"], GRID.spacing_mm)
    np.testing.assert_allclose(
        stats["image_stats"]["sizemm"]["max"], np.multiply(GRID.shape[::-1], GRID.spacing_mm)
    )
    # Foreground intensity: the 700 HU (+ case index) of bone and HO, never the 40 HU of muscle
    assert (
        700
        <= stats["image_foreground_stats"]["intensity"]["min"]
        <= stats["image_foreground_stats"]["intensity"]["max"]
        < 710
    )


def test_the_auto3dseg_task_file_names_what_autorunner_needs() -> None:
    task = yaml.safe_load((ROOT / "examples" / "auto3dseg_task.yaml").read_text())
    assert {"modality", "datalist", "dataroot"} <= set(task)  # AutoRunner refuses a task without them
    assert task["modality"] == "ct" and task["datalist"] == "datalist.json" and task["dataroot"] == "."
