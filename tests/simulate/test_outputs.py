"""Output-folder safety: refusals that touch nothing, staged writes, markers, and recovery of debris."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.simulate import outputs
from nmosim.simulate.outputs import (
    MARKER,
    STAGING_ROOM,
    atomic_write,
    check_free_space,
    check_output_dir,
    is_hidden,
    read_marker,
    recover,
    staged_directory,
    staging_path,
    verify_output,
    write_marker,
)


def listing(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes: what a refusal must leave as it was."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def nmosim_folder(path: Path, text: str = "old", kind: str = "phantom") -> Path:
    path.mkdir(parents=True)
    (path / "truth.json").write_text(text)
    write_marker(path, kind)
    return path


@pytest.fixture
def dead_token() -> str:
    """A staging token of a process of this machine that has ended."""
    code = "import os; print(os.getpid())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return outputs.new_token().replace(str(os.getpid()), proc.stdout.strip(), 1)


# --- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ("", "is empty"),
        (".", "is the current folder"),
        ("./", "is the current folder"),
        ("..", "is a parent of the current folder"),
        ("/", "is the root folder"),
        ("~nosuchuser/x", "no such user"),
        ("thesis.txt", "exists and is not a folder"),
        ("data", "nmosim did not write"),
        ("x" * 250, "is a name of 250 bytes"),
    ],
)
def test_refusals_name_out_and_touch_nothing(tmp_path, monkeypatch, given, needle) -> None:
    work = tmp_path / "work"
    (work / "data" / ".ssh").mkdir(parents=True)
    (work / "data" / ".ssh" / "id_rsa").write_text("secret")
    (work / "thesis.txt").write_text("chapter 1")
    monkeypatch.chdir(work)
    before = listing(tmp_path)
    with pytest.raises(SpecError, match=needle) as error:
        check_output_dir(given, overwrite=True)
    assert str(error.value).startswith("out = ")
    assert listing(tmp_path) == before and sorted(os.listdir(work)) == ["data", "thesis.txt"]


def test_home_mount_point_and_symlink_are_refused(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(SpecError, match="is the home folder"):
        check_output_dir("~", overwrite=True)
    mount = nmosim_folder(tmp_path / "disk")
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == mount)
    with pytest.raises(SpecError, match="is a mount point"):
        check_output_dir(mount, overwrite=True)
    link = tmp_path / "link"
    link.symlink_to(nmosim_folder(tmp_path / "real"))
    with pytest.raises(SpecError, match="symbolic link"):
        check_output_dir(link, overwrite=True)


def test_nmosim_folder_needs_overwrite_and_empty_or_new_ones_pass(tmp_path) -> None:
    earlier = nmosim_folder(tmp_path / "case", kind="case")
    with pytest.raises(SpecError, match="holds an earlier nmosim case output; give --overwrite"):
        check_output_dir(earlier)
    assert check_output_dir(earlier, overwrite=True) == earlier
    assert check_output_dir(earlier, kind="case", resume=True) == earlier
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty") == tmp_path / "empty"
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()
    # The longest name that leaves room for the staging names passes.
    assert check_output_dir(tmp_path / ("y" * (255 - STAGING_ROOM))).name == "y" * (255 - STAGING_ROOM)


def test_a_file_as_parent_is_not_writable(tmp_path) -> None:
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(SpecError, match="is not writable: .*a_file' is not a folder"):
        check_output_dir(tmp_path / "a_file" / "case")


# --- staged writes -----------------------------------------------------------------------------------------


def test_staged_directory_writes_whole_with_marker_and_checksums(tmp_path) -> None:
    out = tmp_path / "new" / "case"
    with staged_directory(out, "case") as stage:
        assert stage.parent == out.parent and stage.name.startswith(".case.partial-")
        assert not out.exists()
        (stage / "ct.nii.gz").write_bytes(b"ct")
    marker = read_marker(out)
    assert marker["kind"] == "case" and set(marker["files"]) == {"ct.nii.gz"}
    assert verify_output(out, "case") == []
    assert os.listdir(out.parent) == ["case"]


def test_failure_leaves_nothing_not_even_new_parents(tmp_path) -> None:
    with pytest.raises(RuntimeError), staged_directory(tmp_path / "a" / "b" / "case", "case") as stage:
        (stage / "ct.nii.gz").write_bytes(b"half")
        raise RuntimeError("killed by a bug")
    assert list(tmp_path.iterdir()) == []


def test_replacing_needs_overwrite_and_keeps_the_old_one_on_failure(tmp_path) -> None:
    out = nmosim_folder(tmp_path / "case")
    with pytest.raises(SpecError, match="give --overwrite"), staged_directory(out, "phantom"):
        pass
    with pytest.raises(RuntimeError), staged_directory(out, "phantom", overwrite=True) as stage:
        (stage / "truth.json").write_text("new")
        raise RuntimeError("failed")
    assert (out / "truth.json").read_text() == "old"
    with staged_directory(out, "phantom", overwrite=True) as stage:
        (stage / "truth.json").write_text("new")
    assert (out / "truth.json").read_text() == "new" and os.listdir(tmp_path) == ["case"]


def test_full_disk_names_the_path_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    def no_space(tmp: str) -> None:
        Path(tmp).write_bytes(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SpecError, match=r"no space left to write '.*truth.json'"):
        atomic_write(tmp_path / "truth.json", no_space)
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "case"
    with pytest.raises(SpecError, match=r"out = '.*case': the disk is full .* more than the 1000 bytes"):
        with staged_directory(out, "case") as stage:
            (stage / "a.bin").write_bytes(b"y" * 1000)
            atomic_write(stage / "truth.json", no_space)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(outputs, "free_bytes", lambda path: 10 * 1024**2)
    with pytest.raises(SpecError, match=r"out = '.*case' needs about 2.0 GiB of disk space; 10.0 MiB free"):
        check_free_space(out, 2 * 1024**3)


def test_verify_output_finds_changed_and_missing_files(tmp_path) -> None:
    out = tmp_path / "case"
    with staged_directory(out, "case") as stage:
        (stage / "ct.nii.gz").write_bytes(b"\x00\x01\x02")
        (stage / "truth.json").write_text("{}")
    (out / "ct.nii.gz").write_bytes(b"\x00\x01\x03")
    (out / "truth.json").unlink()
    assert verify_output(out) == ["case/ct.nii.gz does not match its checksum", "case/truth.json is missing"]
    (out / MARKER).write_text("{not json")
    assert verify_output(out) == [f"case has no readable {MARKER} marker"]


def test_atomic_write_keeps_the_suffix_for_format_sniffing_writers(tmp_path) -> None:
    seen = []
    atomic_write(tmp_path / "image.npz", lambda tmp: seen.append(tmp) or Path(tmp).write_bytes(b"z"))
    assert seen[0].endswith(".npz") and Path(seen[0]).name.startswith(".image.partial-")
    assert os.listdir(tmp_path) == ["image.npz"]


def test_is_hidden() -> None:
    root = Path("/data")
    assert is_hidden(root / ".case_0001.partial-x" / "ct", root)
    assert not is_hidden(root / "cases" / "case_0001", root)


# --- recovery of a killed run's debris --------------------------------------------------------------------


def test_swap_cut_between_renames_is_completed_when_the_new_folder_is_whole(tmp_path, dead_token) -> None:
    out = tmp_path / "case"
    old = nmosim_folder(staging_path(out, "old", dead_token), "old")
    nmosim_folder(staging_path(out, "partial", dead_token), "new")
    check_output_dir(out, overwrite=True)
    assert (out / "truth.json").read_text() == "new" and os.listdir(tmp_path) == ["case"]
    assert not old.exists()


def test_swap_cut_before_the_new_folder_was_whole_is_undone(tmp_path, dead_token) -> None:
    out = tmp_path / "case"
    nmosim_folder(staging_path(out, "old", dead_token), "old")
    partial = staging_path(out, "partial", dead_token)
    partial.mkdir()
    (partial / "ct.nii.gz").write_bytes(b"half")  # no marker: not whole
    recover(tmp_path, "case")
    assert (out / "truth.json").read_text() == "old" and os.listdir(tmp_path) == ["case"]


def test_leftovers_of_dead_runs_go_live_ones_stay(tmp_path, dead_token) -> None:
    out = nmosim_folder(tmp_path / "case", "current")
    for state in ("old", "partial", "trash"):
        nmosim_folder(staging_path(out, state, dead_token), state)
    live = staging_path(out, "partial", outputs.new_token())  # this process: still writing
    live.mkdir()
    other = staging_path(tmp_path / "other", "partial", dead_token)  # not this run's target
    other.mkdir()
    check_output_dir(out, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == sorted(["case", live.name, other.name])
    assert (out / "truth.json").read_text() == "current"
    recover(tmp_path)  # a folder nmosim owns: all dead debris goes
    assert sorted(os.listdir(tmp_path)) == sorted(["case", live.name])


def test_half_written_files_of_dead_runs_are_removed(tmp_path, dead_token) -> None:
    tmp = staging_path(tmp_path / "manifest.json", "partial", dead_token, keep_suffix=True)
    tmp.write_text("{half")
    (tmp_path / "manifest.json").write_text("{}")
    assert recover(tmp_path) == ["removed debris of manifest.json"]
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_debris_of_earlier_versions_is_recovered(tmp_path) -> None:
    """Before the marker, a replacement moved the old folder into ``.NAME.old-XXXXXXXX/NAME``."""
    out = tmp_path / "case"
    (tmp_path / ".case.old-k2j3h4g5" / "case").mkdir(parents=True)
    (tmp_path / ".case.old-k2j3h4g5" / "case" / "truth.json").write_text("old")
    (tmp_path / ".case.partial-a1b2c3d4").mkdir()
    (tmp_path / ".atwrite.partial-zz9y8x7w").mkdir()
    (tmp_path / ".case.old-20240101").mkdir()  # a user's backup that only looks like debris
    (tmp_path / ".case.old-20240101" / "notes.txt").write_text("mine")
    recover(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [".case.old-20240101", "case"]
    assert (out / "truth.json").read_text() == "old"


def test_marker_is_json_with_kind_and_version(tmp_path) -> None:
    folder = nmosim_folder(tmp_path / "p", kind="series")
    marker = json.loads((folder / MARKER).read_text())
    assert marker["kind"] == "series" and marker["nmosim"] == outputs.nmosim_version()
    assert marker["files"] == {"truth.json": outputs.sha256(folder / "truth.json")}
