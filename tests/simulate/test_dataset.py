"""Tests of simulate/dataset.py: config validation, per-case draws, layouts, resume, Dask determinism."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nmosim import cli
from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Structure
from nmosim.phantoms.lesions import PhaseNotMet
from nmosim.simulate.dataset import (
    RETRY_STRIDE,
    CohortSpec,
    assign_cases,
    build_dataset,
    config_record,
    label_map,
    load_cohort,
    parse_cohort,
    run_cases,
    sha256,
)
from nmosim.simulate.io import write_json, write_nifti
from nmosim.simulate.outputs import MARKER, staged_directory, verify_output

ROOT = Path(__file__).resolve().parents[2]
TINY = {"recon_pixel_mm": 4, "slice_thickness_mm": 4, "n_views": 120}
GRID = Grid.centered((4, 6, 8), (2.0, 2.0, 3.0))


class FakeWriter:
    """Writes a small case folder in place of the CT simulation, counting its calls."""

    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[int] = []
        self.fail_first = fail_first

    def __call__(
        self, out, request, preset, protocol_overrides, z_range_mm, threads=None, progress=None
    ) -> Path:
        self.calls.append(request.case_index)
        if progress:
            progress("phantom", 0.5)
        if self.fail_first and len(self.calls) == 1:
            raise PhaseNotMet("cannot")
        s = np.full(GRID.shape, int(Structure.MUSCLE), np.uint8)
        s[1:3, 1:3, 0:2] = int(Structure.PELVIS)
        s[1:3, 1:3, 6:8] = int(Structure.FEMUR_RIGHT)
        s[1:3, 2:4, 3] = int(Structure.HO_RIGHT)
        s[0, 0, 0] = int(Structure.HO_LEFT)
        rng = np.random.default_rng(request.case_index)
        with staged_directory(out, "case") as stage:
            write_nifti(stage / "ct.nii.gz", rng.integers(-100, 100, GRID.shape), GRID, np.int16)
            write_nifti(stage / "structures.nii.gz", s, GRID, np.uint8)
            write_json(stage / "truth.json", {
                "case_index": request.case_index, "phase": request.phase,
                "right": {"brooker_grade": 1, "gap_mm": None, "ho_volume_ml": 0.048},
                "left": {"brooker_grade": 1, "gap_mm": None, "ho_volume_ml": 0.012},
                "scanner": {"mas": protocol_overrides["mas"], "kernel": protocol_overrides["kernel"]},
            })  # fmt: skip
        return Path(out)


def spec(**changes) -> CohortSpec:
    base = parse_cohort({
        "name": "Tiny", "dataset_id": 7, "n_cases": 4, "seed": 11, "test_fraction": 0.25,
        "phase_mix": {"a": 0.5, "c": 0.5}, "scanner": {"mas": [50, 200], "kernels": ["soft", "bone"]},
    })  # fmt: skip
    return replace(base, **changes)


# --- config ----------------------------------------------------------------------------------------------


def test_example_config_is_valid() -> None:
    cohort = load_cohort(ROOT / "examples" / "cohort.toml")
    assert cohort.n_cases == 20 and cohort.folder_name == "Dataset501_NHOSynth"
    assert sum(cohort.phase_mix.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"n_case": 3}, "n_case"),
        ({"n_cases": -1}, "n_cases"),
        ({"n_cases": 2.5}, "n_cases"),
        ({"phase_mix": {"a": 0.5, "b": 0.3}}, "phase_mix"),
        ({"phase_mix": {"e": 1.0}}, "phase_mix.e"),
        ({"aetiology_mix": {"sci": 1.5, "brain": -0.5}}, "aetiology_mix.sci"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"label_set": "bones"}, "label_set"),
        ({"scanner": {"mas": [0]}}, "scanner.mas"),
        ({"scanner": {"kernels": ["sharp"]}}, "scanner.kernels"),
        ({"scanner": {"dose": 1}}, "scanner.dose"),
        ({"scanner": {"overrides": {"n_viewz": 10}}}, "n_viewz"),
        ({"z_range_mm": [20, -20]}, "z_range_mm"),
        ({"name": "a b"}, "name"),
    ],
)
def test_bad_config_names_the_key(config: dict, key: str) -> None:
    with pytest.raises(SpecError, match=key):
        parse_cohort(config)


def test_cli_bad_config_exits_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("n_cases = -3\n")
    assert cli.main(["dataset", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "n_cases = -3" in capsys.readouterr().err
    path.write_text("n_cases = [\n")
    assert cli.main(["dataset", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


# --- draws -------------------------------------------------------------------------------------------------


def test_draws_depend_on_seed_and_index_only() -> None:
    small = assign_cases(spec(n_cases=5, test_fraction=0.0))
    large = assign_cases(spec(n_cases=9, test_fraction=0.0))
    key = [(c.phase, c.aetiology, c.mas, c.kernel) for c in small]
    assert key == [(c.phase, c.aetiology, c.mas, c.kernel) for c in large[:5]]
    assert assign_cases(spec()) == assign_cases(spec())
    assert [(c.phase, c.mas) for c in assign_cases(spec(seed=12, n_cases=20))] != [
        (c.phase, c.mas) for c in assign_cases(spec(n_cases=20))
    ]


def test_draws_follow_the_mixes_and_the_split_is_exact() -> None:
    cohort = spec(n_cases=2000, test_fraction=0.3, phase_mix={"none": 0.1, "b": 0.6, "d": 0.3})
    cases = assign_cases(cohort)
    phases = Counter(c.phase for c in cases)
    assert set(phases) == {"none", "b", "d"}
    for phase, fraction in cohort.phase_mix.items():
        assert abs(phases[phase] / 2000 - fraction) < 0.04  # ~4 standard errors
    assert Counter(c.split for c in cases)["test"] == 600
    assert {c.mas for c in cases} == {50.0, 200.0} and {c.kernel for c in cases} == {"soft", "bone"}


def test_label_sets() -> None:
    s = np.arange(11, dtype=np.uint8)
    ho, names = label_map(s, "ho")
    assert names == {"background": 0, "ho": 1} and ho.tolist() == [0] * 6 + [1, 1] + [0] * 3
    bones, names = label_map(s, "bones_ho")
    assert list(names.values()) == list(range(6)) and bones.tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0]
    assert label_map(s, "all")[0].tolist() == s.tolist() and len(label_map(s, "all")[1]) == 11


# --- layouts and resume (fake writer, in process) -------------------------------------------------


def test_layouts_manifest_and_resume(tmp_path: Path) -> None:
    cohort = spec(label_set="bones_ho")
    writer = FakeWriter()
    out = build_dataset(cohort, tmp_path / "ds", workers=0, writer=writer)
    assert sorted(writer.calls) == [0, 1, 2, 3]
    nn = out / "Dataset007_Tiny"
    meta = json.loads((nn / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"} and meta["file_ending"] == ".nii.gz"
    assert meta["labels"] == {"background": 0, "pelvis": 1, "femur_right": 2, "femur_left": 3, "ho_right": 4,
                              "ho_left": 5}  # fmt: skip
    assert meta["numTraining"] == 3 and len(list((nn / "imagesTr").iterdir())) == 3
    test_case = next(c for c in assign_cases(cohort) if c.split == "test").case_id
    image = nn / "imagesTs" / f"{test_case}_0000.nii.gz"
    assert image.stat().st_ino == (out / "cases" / test_case / "ct.nii.gz").stat().st_ino  # hard link
    label = np.asanyarray(nib.load(str(nn / "labelsTs" / f"{test_case}.nii.gz")).dataobj)
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1, 2, 4, 5}
    datalist = json.loads((out / "datalist.json").read_text())
    assert len(datalist["training"]) == 3 and len(datalist["testing"]) == 1 and "test" not in datalist
    for item in datalist["training"] + datalist["testing"]:
        assert {"image", "label"} <= set(item)
        assert (out / item["image"]).exists() and (out / item["label"]).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    row = manifest["cases"][0]
    assert row["sha256"]["ct.nii.gz"] == sha256(out / "cases" / "case_0000" / "ct.nii.gz")
    assert (row["grade_right"], row["scanner_kernel"]) == (1, row["kernel"])
    with open(out / "cases.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["case_id"] for r in table] == ["case_0000", "case_0001", "case_0002", "case_0003"]
    assert [r["split"] for r in table].count("test") == 1 and table[0]["status"] == "ok"

    # A killed run: one case missing, a half-written staging folder beside it. The rerun writes that
    # case only, removes the staging folder and leaves the finished ones untouched.
    finished = (out / "cases" / "case_0000" / "ct.nii.gz").stat().st_mtime_ns
    shutil.rmtree(out / "cases" / "case_0002")
    (out / "cases" / ".case_0002.partial-k2j3h4g5").mkdir()
    time.sleep(0.01)
    again = FakeWriter()
    assert build_dataset(cohort, tmp_path / "ds", workers=0, writer=again) == out
    assert again.calls == [2]
    assert (out / "cases" / "case_0000" / "ct.nii.gz").stat().st_mtime_ns == finished
    assert json.loads((out / "manifest.json").read_text())["cases"] == manifest["cases"]
    assert sorted(os.listdir(out / "cases")) == [f"case_{i:04d}" for i in range(4)]


def test_manifest_records_the_config_hash_and_version(tmp_path: Path) -> None:
    out = build_dataset(spec(), tmp_path / "ds", workers=0, writer=FakeWriter())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["nmosim_version"] and len(manifest["config_sha256"]) == 64
    same = parse_cohort({"name": "Tiny", "dataset_id": 7, "n_cases": 4, "seed": 11,
                         "test_fraction": 0.25, "phase_mix": {"c": 0.5, "a": 0.5},
                         "scanner": {"mas": [50.0, 200], "kernels": ["soft", "bone"]}})  # fmt: skip
    assert config_record(same)["config_sha256"] == manifest["config_sha256"]  # normalized: 50 == 50.0
    assert config_record(replace(same, seed=12))["config_sha256"] != manifest["config_sha256"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"seed": 12}, "seed: 11 -> 12"),
        ({"overrides": {"n_views": 45}}, "scanner.overrides.n_views: unset -> 45"),
        ({"mas": (50.0,)}, "scanner.mas: [50, 200] -> [50]"),
    ],
)
def test_a_rerun_with_another_config_is_refused_naming_the_keys(tmp_path: Path, change, needle) -> None:
    out = build_dataset(spec(), tmp_path / "ds", workers=0, writer=FakeWriter())
    before = _content(out)
    writer = FakeWriter()
    with pytest.raises(SpecError, match=re.escape(needle) + ".*--regenerate"):
        build_dataset(spec(**change), out, workers=0, writer=writer)
    assert writer.calls == [] and _content(out) == before


def test_regenerate_remakes_only_the_cases_that_change(tmp_path: Path) -> None:
    out = build_dataset(spec(), tmp_path / "ds", workers=0, writer=FakeWriter())
    kept = (out / "cases" / "case_0000" / "ct.nii.gz").stat().st_mtime_ns
    # The split is drawn apart from the cases: a new test fraction rewrites the tables only.
    writer = FakeWriter()
    build_dataset(spec(test_fraction=0.5), out, workers=0, writer=writer, regenerate=True)
    assert writer.calls == [] and (out / "cases" / "case_0000" / "ct.nii.gz").stat().st_mtime_ns == kept
    rows = json.loads((out / "manifest.json").read_text())["cases"]
    assert [r["split"] for r in rows].count("test") == 2
    # A new seed changes every case; fewer cases remove the rest.
    writer = FakeWriter()
    build_dataset(spec(seed=12, n_cases=3, test_fraction=0.5), out, workers=0, writer=writer, regenerate=True)
    assert sorted(writer.calls) == [0, 1, 2]
    assert sorted(os.listdir(out / "cases")) == ["case_0000", "case_0001", "case_0002"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 12 and len(manifest["cases"]) == 3
    # ... and the folder now belongs to the new config: a plain rerun resumes it.
    writer = FakeWriter()
    build_dataset(spec(seed=12, n_cases=3, test_fraction=0.5), out, workers=0, writer=writer)
    assert writer.calls == []


@pytest.mark.parametrize("damage", ["flip a byte", "delete", "truncate", "corrupt truth", "delete marker"])
def test_a_damaged_case_is_made_again_and_the_manifest_tells_the_truth(tmp_path: Path, damage: str) -> None:
    out = build_dataset(spec(), tmp_path / "ds", workers=0, writer=FakeWriter())
    case = out / "cases" / "case_0001"
    good = _content(case)
    ct = case / "ct.nii.gz"
    if damage == "flip a byte":
        data = bytearray(ct.read_bytes())
        data[len(data) // 2] ^= 0xFF
        ct.write_bytes(bytes(data))
    elif damage == "delete":
        ct.unlink()
    elif damage == "truncate":
        (case / "structures.nii.gz").write_bytes((case / "structures.nii.gz").read_bytes()[:40])
    elif damage == "corrupt truth":
        (case / "truth.json").write_text("{broken")
    else:
        (case / MARKER).unlink()
    assert verify_output(case, "case") != []
    writer = FakeWriter()
    build_dataset(spec(), out, workers=0, writer=writer)
    assert writer.calls == [1] and verify_output(case, "case") == []
    assert _content(case) == good  # same inputs, same bytes
    row = json.loads((out / "manifest.json").read_text())["cases"][1]
    assert row["sha256"]["ct.nii.gz"] == sha256(ct)


def test_an_unreachable_scheduler_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is not reachable"):
        build_dataset(spec(n_cases=1), tmp_path / "ds", scheduler="tcp://127.0.0.1:9", writer=FakeWriter())
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_folder_refuses_other_outputs_and_foreign_folders(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(SpecError, match="nmosim did not write"):
        build_dataset(spec(), tmp_path / "mine", workers=0, writer=FakeWriter())
    with pytest.raises(SpecError, match="config = .* is a folder"):
        load_cohort(tmp_path)


def test_phase_not_met_is_retried_with_the_next_draw(tmp_path: Path) -> None:
    writer = FakeWriter(fail_first=True)
    build_dataset(spec(n_cases=1, test_fraction=0.0), tmp_path / "ds", workers=0, writer=writer)
    assert writer.calls == [0, RETRY_STRIDE]
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["cases"][0]["case_index_used"] == RETRY_STRIDE


class ThreadLoggingWriter(FakeWriter):
    """A fake writer that notes the thread count it was given in a file (Dask copies its callables)."""

    def __init__(self, log: Path) -> None:
        super().__init__()
        self.log = log

    def __call__(
        self, out, request, preset, protocol_overrides, z_range_mm, threads=None, progress=None
    ) -> Path:
        with open(self.log, "a") as log:
            log.write(f"{threads}\n")
        return super().__call__(out, request, preset, protocol_overrides, z_range_mm, threads, progress)


def test_a_case_in_a_dask_worker_uses_the_worker_threads_only(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    log = tmp_path / "threads.txt"
    run_cases(spec(n_cases=1, test_fraction=0.0), tmp_path / "alone", None, writer=ThreadLoggingWriter(log))
    assert log.read_text().split() == ["None"]  # outside a worker: every core
    log.unlink()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster, set_as_default=False) as client:
            events: list[dict] = []
            run_cases(spec(n_cases=2, test_fraction=0.0), tmp_path / "worker", client,
                      writer=ThreadLoggingWriter(log), on_stage=events.append)  # fmt: skip
            for _ in range(100):  # the stage events travel worker -> scheduler -> client
                if len(events) == 2:
                    break
                time.sleep(0.1)
            assert sorted((e["case_id"], e["stage"], e["seconds"]) for e in events) == [
                ("case_0000", "phantom", 0.5), ("case_0001", "phantom", 0.5)]  # fmt: skip
    assert log.read_text().split() == ["1", "1"]


# --- real cases on a real LocalCluster -------------------------------------------------------------


def _content(out: Path) -> dict[str, str]:
    """sha256 of every file of a dataset folder, by path."""
    return {str(p.relative_to(out)): sha256(p) for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_same_bytes_with_one_and_two_workers(tmp_path: Path, capsys) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(
        'name = "Tiny"\nn_cases = 2\nseed = 5\ntest_fraction = 0.5\nz_range_mm = [-20, 20]\n'
        '[phase_mix]\na = 0.5\nc = 0.5\n[scanner]\nmas = [50, 200]\nkernels = ["soft"]\n'
        "[scanner.overrides]\nrecon_pixel_mm = 4\nslice_thickness_mm = 4\nn_views = 120\n"
    )
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli.main(["dataset", str(config), "--out", str(one), "--workers", "1"]) == 0
    capsys.readouterr()
    # Dask's default HTTP port taken, as by another cluster: no port warning reaches the user
    taken = socket.socket()
    try:
        taken.bind(("", 8787))
        taken.listen()
    except OSError:  # already taken
        pass
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["dataset", str(config), "--out", str(two), "--workers", "2"]) == 0
    taken.close()
    assert not [w for w in caught if "8787" in str(w.message)]
    err = capsys.readouterr().err
    assert "\r" not in err and "8787" not in err  # a log: one line per event
    assert "2 cases on 2 Dask worker(s)" in err
    for case_id in ("case_0000", "case_0001"):  # every stage, from the workers, before the case is done
        lines = [line for line in err.splitlines() if case_id in line]
        assert [line.split("(")[-1].split(")")[0] for line in lines[:7]] == [f"{k}/7" for k in range(1, 8)]
        assert lines[-1].endswith("done (ok)")
    a, b = _content(one), _content(two)
    assert a == b
    images = {f"Dataset501_Tiny/images{s}/case_{i:04d}_0000.nii.gz" for s in ("Tr", "Ts") for i in (0, 1)}
    assert len(images & set(a)) == 2 and "cases/case_0001/truth.json" in a
    rows = json.loads((one / "manifest.json").read_text())["cases"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    # The cases feed the baseline and the evaluation; the truth labels score perfectly
    assert cli.main(["baseline", "--cases", str(one / "cases"), "--out", str(tmp_path / "pred")]) == 0
    assert cli.main(["evaluate", "--truth", str(one), "--pred", str(tmp_path / "pred"), "--out",
                     str(tmp_path / "report")]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["n_scored"] == 2 and set(summary["by"]["mas"]) <= {"50", "200"}
    labels = one / "Dataset501_Tiny"
    assert cli.main(["evaluate", "--truth", str(one / "cases"), "--pred", str(labels / "labelsTr"), "--out",
                     str(tmp_path / "r2"), "--pred-labels", "ho"]) == 0  # fmt: skip
    scored = json.loads((tmp_path / "r2" / "summary.json").read_text())
    assert scored["status_counts"] == {"missing": 1, "ok": 1}  # the test case's label is in labelsTs


@pytest.mark.slow
def test_a_killed_run_resumes_without_redoing_finished_cases(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    config = tmp_path / "tiny.toml"
    config.write_text(
        'name = "Tiny"\nn_cases = 3\nseed = 9\ntest_fraction = 0.0\nz_range_mm = [-6, 6]\n'
        '[phase_mix]\nb = 1.0\n[scanner]\nmas = [100]\nkernels = ["soft"]\n'
        "[scanner.overrides]\nrecon_pixel_mm = 4\nslice_thickness_mm = 4\nn_views = 90\n"
    )
    out = tmp_path / "cohort"
    argv = [sys.executable, "-m", "nmosim", "dataset", str(config), "--out", str(out), "--workers", "0"]
    quiet = subprocess.DEVNULL
    proc = subprocess.Popen(argv, stdout=quiet, stderr=quiet, start_new_session=True)
    first = out / "cases" / "case_0000" / "truth.json"
    deadline = time.monotonic() + 240
    while not first.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the client dies mid-run
    proc.wait()
    assert first.exists(), "the first case should have finished before the kill"
    done_before = {p.name: sha256(p / "ct.nii.gz") for p in (out / "cases").iterdir()
                   if (p / "truth.json").exists()}  # fmt: skip
    stamp = first.stat().st_mtime_ns
    assert cli.main(["dataset", str(config), "--out", str(out), "--workers", "0"]) == 0
    assert first.stat().st_mtime_ns == stamp  # not redone
    cases = sorted(p.name for p in (out / "cases").iterdir())
    assert cases == ["case_0000", "case_0001", "case_0002"]  # no duplicates, no half-written folders
    rows = json.loads((out / "manifest.json").read_text())["cases"]
    assert [r["case_id"] for r in rows] == cases and all(r["status"] == "ok" for r in rows)
    for name, digest in done_before.items():
        assert sha256(out / "cases" / name / "ct.nii.gz") == digest


# --- what MONAI, Auto3DSeg and nnU-Net users read ---------------------------------------------------------


def monai_properties(path: Path, keys: tuple[str, ...]) -> dict:
    """What MONAI's ``load_decathlon_properties`` does: each key or KeyError."""
    data = json.loads(Path(path).read_text())
    out = {}
    for key in keys:
        if key not in data:
            raise KeyError(f"key {key} is not in the data property file.")
        out[key] = data[key]
    return out


def monai_datafold_read(path: Path, basedir: str, fold: int, key: str = "training") -> tuple[list, list]:
    """What MONAI's ``auto3dseg.utils.datafold_read`` does: paths joined to basedir, fold ``fold``
    validates, every other item trains."""
    items = json.loads(Path(path).read_text())[key]
    for item in items:
        for k, v in item.items():
            if isinstance(v, str) and v:
                item[k] = os.path.join(basedir, v)
    return [d for d in items if d.get("fold") != fold], [d for d in items if d.get("fold") == fold]


def test_datalist_reads_as_monai_and_auto3dseg_read_it(tmp_path: Path) -> None:
    cohort = spec(n_cases=8, test_fraction=0.25, label_set="ho")
    out = build_dataset(cohort, tmp_path / "ds", workers=0, writer=FakeWriter())
    path = out / "datalist.json"
    keys = ("name", "modality", "labels", "numTraining", "numTest", "tensorImageSize")
    props = monai_properties(path, keys)
    assert props["name"] == "Tiny" and props["modality"] == {"0": "CT"}
    assert props["labels"] == {"0": "background", "1": "ho"}
    assert (props["numTraining"], props["numTest"]) == (6, 2)
    data = json.loads(path.read_text())
    assert "test" not in data and len(data["testing"]) == 2
    assert [d["fold"] for d in data["training"]] == [0, 1, 2, 3, 4, 0] and data["numFolds"] == 5
    seen = []
    for fold in range(5):
        train, val = monai_datafold_read(path, str(out), fold)
        assert len(train) + len(val) == 6 and val
        assert not {d["image"] for d in train} & {d["image"] for d in val}
        assert all(Path(d["image"]).exists() and Path(d["label"]).exists() for d in train + val)
        seen += [d["image"] for d in val]
    assert len(set(seen)) == 6  # every training case validates in exactly one fold
    # Auto3DSeg's task file points at this datalist with paths relative to the dataset folder
    yaml = pytest.importorskip("yaml")
    task = yaml.safe_load((ROOT / "examples" / "auto3dseg_task.yaml").read_text())
    assert task["modality"].lower() == "ct" and task["datalist"] == "datalist.json"
    assert task["dataroot"] == "."
    few = build_dataset(spec(n_cases=3, test_fraction=0.0), tmp_path / "few", workers=0, writer=FakeWriter())
    assert [d["fold"] for d in json.loads((few / "datalist.json").read_text())["training"]] == [0, 1, 2]


def test_dataset_card_and_the_mirroring_note(tmp_path: Path) -> None:
    out = build_dataset(spec(label_set="bones_ho"), tmp_path / "ds", workers=0, writer=FakeWriter())
    card = (out / "README.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"nmosim {manifest['nmosim_version']}" in card and manifest["config_sha256"] in card
    assert "CC BY 4.0" in card and "@software{nmosim" in card and "hard links" in card
    assert "| 4 | ho_right | 6 |" in card and "| 0 | background | every other |" in card
    assert "nnUNetTrainerNoMirroring" in card
    rows = manifest["cases"]
    phases = Counter(r["phase"] for r in rows if r["status"] == "ok")
    assert "cases by phase: " + ", ".join(f"{p}: {phases[p]}" for p in sorted(phases)) in card
    for name in ("phase.png", "dose_mas.png", "kernel.png"):
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](figures/{name})" in card
    nn = out / "Dataset007_Tiny"
    assert "](../figures/phase.png)" in (nn / "README.md").read_text()
    meta = json.loads((nn / "dataset.json").read_text())
    assert "nnUNetTrainerNoMirroring" in meta["mirroring"] and "hard links" in meta["images"]
    assert meta["licence"] == "CC BY 4.0" and meta["release"] == manifest["nmosim_version"]
    ho = build_dataset(spec(label_set="ho"), tmp_path / "ho", workers=0, writer=FakeWriter())
    assert "mirroring" not in json.loads((ho / "Dataset007_Tiny" / "dataset.json").read_text())
    assert "nnUNetTrainerNoMirroring" not in (ho / "README.md").read_text()
