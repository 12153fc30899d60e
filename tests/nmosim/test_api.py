"""The public API of ``import nmosim``: the README's tour runs, specs validate, nothing happens on import."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nmosim

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A short tour") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_tour_runs_and_reaches_a_ct_case_in_six_lines(tmp_path, monkeypatch):
    code = tour_block()
    lines = [line for line in code.splitlines() if line.strip()]
    reached = next(i for i, line in enumerate(lines) if "simulate_ct(" in line) + 1
    assert reached <= 6, f"the tour needs {reached} lines to reach a CT case"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    ct, same = namespace["ct"], namespace["same"]
    assert isinstance(ct, nmosim.CTCase) and ct.hu.dtype == np.int16
    assert (tmp_path / "out" / "case_0005" / "truth.json").is_file()
    assert np.array_equal(same.structures, ct.structures) and same.grid == ct.grid


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"seed": -1}, "seed = -1 is outside [0, 2**63)"),
        ({"seed": 2**63}, "seed = 9223372036854775808 is outside [0, 2**63)"),
        ({"seed": 1.5}, "seed = 1.5 is outside"),
        ({"case_index": -2}, "case_index = -2 is outside"),
        ({"phase": "e"}, "phase = 'e' is not one of"),
        ({"phase": "d", "weeks": 2.0}, "weeks = 2.0 is too early for phase 'd'"),
        ({"aetiology": "stroke"}, "aetiology = 'stroke' is not one of"),
        ({"anatomy_overrides": {"inter_hip_distance_mm": 230}}, "inter_hip_distance_mm = 230 is outside"),
        ({"anatomy_overrides": {"tail_length_mm": 3}}, "anatomy parameter 'tail_length_mm' is unknown"),
        ({"anatomy_overrides": {"sex": "other"}}, "sex = 'other' is not one of"),
    ],
)
def test_case_spec_refuses_bad_values_naming_them(kwargs, needle):
    with pytest.raises(nmosim.SpecError) as error:
        nmosim.CaseSpec(**kwargs)
    assert needle in str(error.value)


def test_case_spec_is_frozen():
    spec = nmosim.CaseSpec(phase="c", seed=1)
    with pytest.raises(AttributeError):
        spec.seed = 2  # type: ignore[misc]


def test_importing_nmosim_switches_no_matplotlib_backend():
    code = (
        "import matplotlib; matplotlib.use('svg'); import nmosim; "
        "import nmosim.simulate.figures, nmosim.simulate.evaluate, nmosim.simulate.case; "
        "nmosim.CaseSpec; print(matplotlib.get_backend())"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "svg"


def test_every_public_name_resolves():
    for name in nmosim.__all__:
        assert getattr(nmosim, name) is not None, name
    with pytest.raises(AttributeError):
        nmosim.no_such_function  # noqa: B018
