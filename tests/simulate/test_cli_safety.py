"""Every user mistake of the CLI is one line, exit code 2, refused before any work, nothing touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nmosim import cli
from nmosim.simulate.outputs import write_marker

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--spacing", "8", "--supersampling", "1"]


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A user's folder, the current one: a thesis, a data folder with a key, an earlier nmosim output."""
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    tmp_path = tmp_path / "work"
    (tmp_path / "data" / ".ssh").mkdir(parents=True)
    (tmp_path / "data" / ".ssh" / "id_rsa").write_text("secret")
    (tmp_path / "thesis.tex").write_text("chapter 1")
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "truth.json").write_text("{}")
    write_marker(tmp_path / "earlier", "phantom")
    (tmp_path / "cohort.toml").write_text("n_cases = 1\n[phase_mix]\nnone = 1.0\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes | bool]:
    return {str(p.relative_to(root)): p.is_file() and p.read_bytes() for p in sorted(root.rglob("*"))}


MISTAKES = [
    (["phantom", "--out", ".", *FAST], "out = '{work}' is the current folder"),
    (["phantom", "--out", "", *FAST], "argument --out: '' is empty"),
    (["phantom", "--out", "..", *FAST], "is a parent of the current folder"),
    (["phantom", "--out", "/", *FAST], "out = '/' is the root folder"),
    (["phantom", "--out", "~", *FAST], "is the home folder"),
    (["phantom", "--out", "~nosuchuser/x", *FAST], "no such user's home"),
    (["phantom", "--out", "thesis.tex", *FAST], "exists and is not a folder"),
    (["phantom", "--out", "data", "--overwrite", *FAST], "is a folder that nmosim did not write"),
    (["case", "--out", "earlier"], "holds an earlier nmosim phantom output; give --overwrite"),
    (["phantom", "--out", "n" * 250, *FAST], "is a name of 250 bytes"),
    (["phantom", "--seed", str(2**63), "--out", "x"], "seed = 9223372036854775808 is outside [0, 2**63)"),
    (["phantom", "--seed", "-1", "--out", "x"], "seed = -1 is outside [0, 2**63)"),
    (["phantom", "--spacing", "0.1", "--out", "x"], "spacing_mm = 0.1"),
    (["phantom", "--spacing", "nan", "--out", "x"], "--spacing: spacing_mm = nan is not a finite"),
    (["series", "--weeks", "8,8.001", "--out", "x", *FAST], "weeks = 8 and 8.001 fall into one folder"),
    (["case", "--z-range", "0", "inf", "--out", "x"], "z_range_mm = inf is not a finite number"),
    (["case", "--z-range", "1000", "1010", "--out", "x"], "z_range_mm = [1000, 1010] misses the body"),
    (["case", "--z-range", "10", "-10", "--out", "x"], "z_range_mm = [10, -10] is empty"),
    (["case", "--scanner", "recon_pixel_mm=0.001", "--out", "x"], "recon_pixel_mm = 0.001"),
    (["baseline", "--cases", "data", "--out", "x", "--threshold-hu", "nan"], "threshold_hu = nan is not"),
    (["baseline", "--cases", "data", "--out", "x", "--min-volume-ml", "inf"], "min_volume_ml = inf is not"),
    (["baseline", "--cases", "data", "--out", "x", "--min-volume-ml", "nan"], "min_volume_ml = nan is not"),
    (["dataset", "data", "--out", "x"], "config = 'data' is a folder"),
    (["dataset", "cohort.toml", "--out", "x", "--scheduler", "foo"], "scheduler = 'foo' is not a Dask"),
    (["dataset", "cohort.toml", "--out", "x", "--workers", "-1"], "workers = -1 is outside [0, inf)"),
    (["evaluate", "--truth", "earlier", "--pred", "data", "--out", "."], "is the current folder"),
    (
        ["evaluate", "--truth", "earlier", "--pred", "data", "--out", "earlier", "--overwrite"],
        "holds the input",
    ),
]


@pytest.mark.parametrize(("argv", "needle"), MISTAKES, ids=[" ".join(a)[:50] for a, _ in MISTAKES])
def test_mistakes_are_one_line_exit_2_and_touch_nothing(work, capsys, argv, needle) -> None:
    before = snapshot(work)
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert needle.format(work=work) in err[0]
    assert snapshot(work) == before


def test_mount_point_is_refused(work, capsys, monkeypatch) -> None:
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == work / "earlier")
    assert cli.main(["phantom", "--out", "earlier", "--overwrite", *FAST]) == 2
    assert "is a mount point" in capsys.readouterr().err


def test_every_writing_command_takes_overwrite() -> None:
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        options = {o for action in sub._actions for o in action.option_strings}
        if "--out" in options:
            assert "--overwrite" in options, name


def test_a_bad_scheduler_in_a_new_process_leaves_nothing(tmp_path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("n_cases = 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "nmosim", "dataset", str(config), "--out", str(tmp_path / "out"),
         "--scheduler", "foo"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr and sorted(os.listdir(tmp_path)) == ["c.toml"]


# --- kills (slow: each runs a phantom) ------------------------------------------------------------------

# Runs `nmosim ARGS` with the renames of a replacement slowed down: the kill lands between them.
_PAUSED_SWAP = """
import os, sys, time
real = os.replace
def replace(src, dst):
    real(src, dst)
    if ".old-" in os.path.basename(str(dst)):
        open(sys.argv[1], "w").close()
        time.sleep(300)
os.replace = replace
from nmosim.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_kill_between_the_two_renames_of_a_replacement_is_completed_by_the_next_run(tmp_path) -> None:
    import signal
    import time

    from nmosim.simulate.outputs import verify_output

    out = tmp_path / "case"
    argv = ["phantom", "--seed", "3", "--out", str(out), *FAST]
    assert cli.main(argv) == 0
    first = (out / "truth.json").read_bytes()
    flag = tmp_path / "paused"
    paused = [sys.executable, "-c", _PAUSED_SWAP, str(flag), *argv, "--seed", "4", "--overwrite"]
    proc = subprocess.Popen(paused, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    flag.unlink()
    # The state the kill left: no output, the old one and the new one in hidden folders.
    assert not out.exists()
    assert sorted(n.split("-")[0] for n in os.listdir(tmp_path)) == [".case.old", ".case.partial"]
    # The next run, even a refused one, first completes the replacement: the new folder was whole.
    assert cli.main(argv) == 2
    assert os.listdir(tmp_path) == ["case"] and verify_output(out, "phantom") == []
    second = (out / "truth.json").read_bytes()
    assert second != first and b'"seed": 4' in second


@pytest.mark.slow
def test_kills_at_any_moment_of_a_replacement_leave_a_whole_output(tmp_path) -> None:
    import random
    import signal
    import time

    from nmosim.simulate.outputs import check_output_dir, verify_output

    out = tmp_path / "case"
    argv = [sys.executable, "-m", "nmosim", "phantom", "--seed", "5", "--out", str(out), *FAST, "--overwrite"]
    assert subprocess.run(argv, cwd=ROOT, capture_output=True).returncode == 0
    rng = random.Random(0)
    for _ in range(3):
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 12.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        check_output_dir(out, overwrite=True)  # recovers what the kill left
        assert os.listdir(tmp_path) == ["case"] and verify_output(out, "phantom") == []
