"""Property-based fuzzing of `nmosim phantom` options and dataset TOML keys.

Whatever the input, the command ends with exit code 0, or 2 with one line on stderr (1, with one
line, when a requested phase cannot be met for that seed); never a traceback, never a file outside
``--out``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmosim import cli
from nmosim.simulate.io import write_json, write_nifti
from nmosim.simulate.outputs import staged_directory

QUICK = settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))

OUT_NAMES = ["new", "a/b/new", "", ".", "..", "/", "~nosuchuser/x", "n" * 250, "thesis.tex", "data", "é ü"]
PHANTOM_OPTIONS = {
    "--seed": ["0", "7", "-1", str(2**63), "1e3", "x", "007"],
    "--spacing": ["8", "10", "0", "-1", "nan", "inf", "0.01", "1e400", "abc", "0.1"],
    "--supersampling": ["1", "0", "9", "-2", "1.5", "x"],
    "--phase": ["none", "a", "d", "e", ""],
    "--weeks": ["4", "30", "-3", "nan", "600", "1e9", "inf"],
    "--anatomy": [
        "inter_hip_distance_mm=172",
        "inter_hip_distance_mm=230",
        "foo",
        "=3",
        "sex=other",
        "body_scale=nan",
        "body_scale=",
        "muscle_bulk=1e308",
    ],  # fmt: skip
    "--sex": ["male", "x"],
    "--aetiology": ["sci", "brain", "flu"],
}
FLAGS = ["--confounders", "--no-confounders", "--overwrite", "--colour"]


def _user_folder(root: Path) -> None:
    (root / "data").mkdir()
    (root / "data" / "notes.txt").write_text("mine")
    (root / "thesis.tex").write_text("chapter 1")


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _run(argv: list[str]) -> tuple[int, list[str]]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as stop:
            code = stop.code
    return code, err.getvalue().strip().splitlines()


def _check_outcome(code: int, err: list[str]) -> None:
    assert code in (0, 1, 2), (code, err)
    if code == 2:
        assert len(err) == 1 and "error" in err[0], err
    if code == 1:
        assert len(err) == 1 and "another --seed will do" in err[0], err
    assert not any("Traceback" in line for line in err)


phantom_argv = st.tuples(
    st.sampled_from(OUT_NAMES),
    st.dictionaries(st.sampled_from(sorted(PHANTOM_OPTIONS)), st.none(), max_size=5).flatmap(
        lambda keys: st.fixed_dictionaries({k: st.sampled_from(PHANTOM_OPTIONS[k]) for k in keys})
    ),
    st.lists(st.sampled_from(FLAGS), max_size=2, unique=True),
)


def _phantom_property(example) -> None:
    out, options, flags = example
    with tempfile.TemporaryDirectory() as tmp, _chdir(tmp):
        root = Path(tmp)
        _user_folder(root)
        before = _files(root)
        argv = ["phantom", "--out", out, *[x for kv in options.items() for x in kv], *flags]
        if "--spacing" not in options:
            argv += ["--spacing", "8", "--supersampling", "1"]
        code, err = _run(argv)
        _check_outcome(code, err)
        after = _files(root)
        if code == 0:
            written = Path(os.path.abspath(os.path.expanduser(out)))
            assert written.is_dir() and written.is_relative_to(root)
            made = {str(p.relative_to(root)) for p in [written, *written.parents] if p.is_relative_to(root)}
            assert after - before <= {s for s in made if s != "."} | {
                str(p.relative_to(root)) for p in written.rglob("*")
            }
        else:
            assert after == before, after ^ before


@contextlib.contextmanager
def _chdir(path: str):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@QUICK
@given(phantom_argv)
def test_phantom_options_end_in_a_clean_exit(example) -> None:
    _phantom_property(example)


@pytest.mark.slow
@LONG
@given(phantom_argv)
def test_phantom_options_end_in_a_clean_exit_many(example) -> None:
    _phantom_property(example)


# --- dataset TOML ------------------------------------------------------------------------------------------

VALUES = st.one_of(
    st.integers(-3, 3), st.sampled_from([0.25, 0.5, 1.0, 1e9, -0.5, math.nan, math.inf]),
    st.sampled_from(["Tiny", "a b", "", "quick", "ho", "soft", "x"]), st.booleans(),
    st.lists(st.sampled_from([-20, 20, 50, 1000, math.inf, "bone"]), max_size=3),
)  # fmt: skip
TOML_KEYS = {
    "name": st.sampled_from(["Tiny", "a b", "", 3]),
    "dataset_id": st.sampled_from([7, 0, 1000, 5.5, "x"]),
    "n_cases": st.sampled_from([1, 2, 0, -1, 2.5, 10**9, "2"]),
    "seed": st.sampled_from([0, 11, -1, 2**63, 1.5]),
    "test_fraction": st.sampled_from([0.0, 0.5, 1.0, -0.1, math.nan, True]),
    "label_set": st.sampled_from(["ho", "bones_ho", "all", "bones", 1]),
    "preset": st.sampled_from(["quick", "clinical", "fast"]),
    "z_range_mm": st.sampled_from([[-20, 20], [20, -20], [0, math.inf], [1000, 1010], [1], "x"]),
    "phase_mix": st.sampled_from([{"a": 1.0}, {"a": 0.5, "c": 0.5}, {"e": 1.0}, {"a": 0.5}, {"a": math.nan}]),
    "aetiology_mix": st.sampled_from([{"sci": 1.0}, {"brain": 2.0}, {}]),
    "scanner": st.sampled_from(
        [
            {"mas": [50], "kernels": ["soft"]},
            {"mas": [0]},
            {"mas": [math.inf]},
            {"kernels": []},
            {"overrides": {"n_views": 90}},
            {"overrides": {"recon_pixel_mm": 0.001}},
            {"overrides": {"mas": 5}},
            {"overrides": {"n_viewz": 4}},
            {"overrides": {"kvp": [1]}},
            {"dose": 1},
            "x",
        ]
    ),  # fmt: skip
    "extra_key": VALUES,
}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value) if -(2**63) <= value < 2**63 else f'"{value}"'
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    raise TypeError(value)


def _toml(config: dict) -> str:
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in config.items())


class _FakeCase:
    """Stands in for the CT simulation: a tiny whole case folder, so a valid config runs in a moment."""

    def __call__(self, out, request, preset="quick", protocol_overrides=None, z_range_mm=None, **kwargs):
        from nmosim.phantoms.grid import Grid

        grid = Grid.centered((2, 3, 4), (2.0, 2.0, 2.0))
        with staged_directory(out, "case") as stage:
            write_nifti(stage / "ct.nii.gz", np.zeros(grid.shape), grid, np.int16)
            write_nifti(stage / "structures.nii.gz", np.zeros(grid.shape), grid, np.uint8)
            write_json(stage / "truth.json", {"case_index": request.case_index, "phase": request.phase,
                                              "right": {}, "left": {}, "scanner": {}})  # fmt: skip
        return Path(out)


def _dataset_property(config: dict, out: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, _chdir(tmp), pytest.MonkeyPatch.context() as mp:
        mp.setattr("nmosim.simulate.case.write_ct_case", _FakeCase())
        root = Path(tmp)
        _user_folder(root)
        (root / "cohort.toml").write_text(_toml(config))
        before = _files(root)
        code, err = _run(["dataset", "cohort.toml", "--out", out, "--workers", "0"])
        _check_outcome(code, err)
        after = _files(root)
        if code == 0:
            assert {p.split(os.sep)[0] for p in after - before} == {out.split("/")[0]}
        else:
            assert after == before, after ^ before


configs = st.dictionaries(st.sampled_from(sorted(TOML_KEYS)), st.none(), max_size=6).flatmap(
    lambda keys: st.fixed_dictionaries({k: TOML_KEYS[k] for k in keys})
)


@QUICK
@given(configs, st.sampled_from(["ds", "a/ds", ".", ""]))
def test_dataset_configs_end_in_a_clean_exit(config: dict, out: str) -> None:
    _dataset_property(config, out)
