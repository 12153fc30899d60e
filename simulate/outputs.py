"""Output-folder safety: nmosim's marker, checks before any work, staged writes and their recovery.

It decides where and how outputs land on disk, never what they hold (serialization is io.py's job).

The rules (README, "Output folders and resuming"):

- Every folder nmosim writes as an output carries the marker file ``.nmosim`` (JSON: the kind of
  output, the nmosim version and, for staged folders, the sha256 of every file), written last.
- ``out`` is a new folder, an empty one, or one that carries the marker, and that only with
  ``overwrite``. Never empty, the current folder or a parent of it, the root, the home folder, a mount
  point, a file, a symbolic link or a non-empty folder without the marker. All checked before any work.
- A folder is written beside its target as ``.NAME.partial-TOKEN`` and renamed into place when whole.
  An existing target is first renamed ``.NAME.old-TOKEN``, then ``.NAME.trash-TOKEN`` to be removed.
  Files are written as ``.STEM.partial-TOKEN.SUFFIXES`` and renamed. TOKEN is ``PID-HOST-RANDOM`` of
  the writing process. A later run that finds such debris of a process that is gone completes the swap
  (when the new folder carries its marker, it is whole) or undoes it, and removes the rest.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from nmosim.phantoms.errors import SpecError

MARKER = ".nmosim"
MARKER_FORMAT = 1
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_TOKEN = r"\d+-[0-9a-f]{8}-[0-9a-f]{8}"
_LEGACY_TOKEN = r"[a-z0-9_]{8}"  # tempfile.mkdtemp's names, from nmosim before 0.2
_DEBRIS = re.compile(
    rf"^\.(?P<name>.+?)\.(?P<state>partial|old|trash)-(?P<token>{_TOKEN}|{_LEGACY_TOKEN})"
    r"(?P<suffix>(?:\.[A-Za-z0-9]+)*)$"
)
# Bytes a staging name adds to a folder's name: '.', '.partial-' and the longest token.
STAGING_ROOM = len(".") + len(".partial-") + len("4194304-12345678-12345678")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def nmosim_version() -> str:
    try:
        return metadata.version("nmosim")
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        return "0+unknown"


# --- staging names and debris --------------------------------------------------------------------------


def new_token() -> str:
    """``PID-HOST-RANDOM`` of this process: whose staging names these are."""
    return f"{os.getpid()}-{_HOST}-{secrets.token_hex(4)}"


def staging_path(target: Path, state: str, token: str, keep_suffix: bool = False) -> Path:
    """The hidden sibling of ``target`` in ``state`` (partial, old, trash).

    ``keep_suffix`` keeps a file's suffixes last (``.ct.partial-T.nii.gz``), for writers that choose
    the format by the name's ending.
    """
    target = Path(target)
    name, suffix = target.name, ""
    if keep_suffix:
        suffix = "".join(Path(name).suffixes)
        if suffix == name or not re.fullmatch(r"(?:\.[A-Za-z0-9]+)*", suffix):
            suffix = ""
        name = name[: len(name) - len(suffix)]
    return target.with_name(f".{name}.{state}-{token}{suffix}")


def is_staging_name(name: str) -> bool:
    return _DEBRIS.match(name) is not None


def is_hidden(path: Path, root: Path) -> bool:
    """Whether ``path`` lies in or below a folder under ``root`` whose name starts with '.': staging
    folders of a killed run, never case folders. Finders of case folders skip them."""
    return any(part.startswith(".") for part in Path(path).relative_to(root).parts)


def _owner_alive(token: str) -> bool:
    """Whether the process that made a staging name may still be writing it.

    Debris from another machine counts as dead: one run at a time writes an output folder.
    """
    match = re.fullmatch(r"(\d+)-([0-9a-f]{8})-[0-9a-f]{8}", token)
    if not match or match[2] != _HOST:
        return False
    pid = int(match[1])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


def discard(path: Path) -> None:
    """Remove a file or folder; a folder is renamed ``.NAME.trash-TOKEN`` first, so that a kill
    during the removal leaves only debris that :func:`recover` removes."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    match = _DEBRIS.match(path.name)
    if match and match["state"] == "trash":
        trash = path
    else:
        base = path.with_name(match["name"] + match["suffix"]) if match else path
        trash = staging_path(base, "trash", new_token())
        os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def recover(parent: Path, name: str | None = None) -> list[str]:
    """Recover or remove the staging debris of dead processes in folder ``parent``.

    Only the debris of target ``name`` when given (a run's own), else all of it (in folders that
    nmosim owns, such as a dataset's ``cases``). A swap cut between its two renames (target missing,
    ``old`` and ``partial`` of one token present) is completed when the new folder carries its
    marker, else undone; a lone ``old`` comes back if the target is missing; the rest is removed.
    Returns what was done, one line per target.
    """
    parent = Path(parent)
    try:
        entries = list(os.scandir(parent))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    groups: dict[str, list[tuple[str, str, Path]]] = {}
    for entry in entries:
        match = _DEBRIS.match(entry.name)
        if not match:
            continue
        target = match["name"] + match["suffix"]
        if (name is not None and target != name) or _owner_alive(match["token"]):
            continue
        if not re.fullmatch(_TOKEN, match["token"]) and not _legacy_debris(Path(entry.path), match):
            continue  # a name that only looks like nmosim's: not ours to touch
        groups.setdefault(target, []).append((match["state"], match["token"], Path(entry.path)))
    return [_recover_target(parent / target, items) for target, items in sorted(groups.items())]


def _legacy_debris(path: Path, match: re.Match) -> bool:
    """Staging folders of nmosim before 0.2: ``.NAME.partial-XXXXXXXX`` folders and
    ``.NAME.old-XXXXXXXX`` folders holding just ``NAME``."""
    if match["suffix"] or not path.is_dir() or path.is_symlink():
        return False
    if match["state"] == "partial":
        return True
    return match["state"] == "old" and os.listdir(path) == [match["name"]]


def _recover_target(target: Path, items: list[tuple[str, str, Path]]) -> str:
    olds = {token: path for state, token, path in items if state == "old"}
    partials = {token: path for state, token, path in items if state == "partial"}
    rest = [path for state, _, path in items if state == "trash"]
    done = f"removed debris of {target.name}"
    if not os.path.lexists(target) and olds:
        token = max(olds, key=lambda t: olds[t].stat().st_mtime)
        old, partial = olds.pop(token), partials.pop(token, None)
        if partial is not None and partial.is_dir() and read_marker(partial) is not None:
            os.replace(partial, target)  # the new folder is whole: complete the swap
            rest.append(old)
            done = f"completed the replacement of {target.name}"
        else:
            os.replace(_old_content(old, target.name), target)  # undo
            rest += [p for p in (old, partial) if p is not None and os.path.lexists(p)]
            done = f"restored {target.name}"
    for path in [*olds.values(), *partials.values(), *rest]:
        discard(path)
    return done


def _old_content(old: Path, name: str) -> Path:
    """The folder that was renamed ``old``; nmosim before 0.2 moved it into ``old/NAME``."""
    inner = old / name
    if not (old / MARKER).exists() and inner.is_dir() and len(os.listdir(old)) == 1:
        return inner
    return old


# --- marker and checksums ------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` by relative path, less its own marker and staging debris."""
    folder = Path(folder)
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and rel.as_posix() != MARKER and not any(map(is_staging_name, rel.parts)):
            out[rel.as_posix()] = sha256(path)
    return out


def write_marker(folder: Path, kind: str, extra: dict | None = None, checksums: bool = True) -> dict:
    """Write ``folder/.nmosim``: kind, nmosim version, ``extra`` and the checksums of its files."""
    payload: dict[str, object] = {"format": MARKER_FORMAT, "kind": kind, "nmosim": nmosim_version()}
    payload.update(extra or {})
    if checksums:
        payload["files"] = file_checksums(folder)
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    atomic_write(Path(folder) / MARKER, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return payload


def read_marker(folder: Path) -> dict | None:
    """The marker of ``folder``, or None when it has none or it cannot be read."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def verify_output(folder: Path, kind: str | None = None) -> list[str]:
    """What is wrong with an output folder against its marker: missing or changed files; [] if whole."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        return [f"{folder.name} has no readable {MARKER} marker"]
    if kind is not None and marker["kind"] != kind:
        return [f"{folder.name} holds a {marker['kind']} output, not a {kind}"]
    files = marker.get("files")
    if not isinstance(files, dict):
        return [f"{folder.name}/{MARKER} lists no checksums"]
    problems = []
    for rel, digest in sorted(files.items()):
        path = folder / rel
        if not path.is_file():
            problems.append(f"{folder.name}/{rel} is missing")
        elif sha256(path) != digest:
            problems.append(f"{folder.name}/{rel} does not match its checksum")
    return problems


# --- checks --------------------------------------------------------------------------------------------


def check_output_dir(
    out: Path | str, overwrite: bool = False, *, kind: str | None = None, resume: bool = False
) -> Path:
    """Check that ``out`` may be written (rules in the module docstring); return it absolute.

    Refusals raise :class:`SpecError` naming ``out`` and touch nothing. A folder that passes the
    static rules first has the debris of a killed run on it recovered (:func:`recover`); then an
    existing folder must be empty or carry the marker and ``overwrite`` be given, or, with
    ``resume``, carry the marker of ``kind`` (an output built in place, such as a dataset).
    """
    path = _absolute(out)
    _refuse_special(path)
    _check_names(path)
    _check_writable(path)
    recover(path.parent, path.name)
    if _non_empty(path):
        marker = read_marker(path)
        if marker is None and not (path / MARKER).exists():
            raise SpecError(
                f"out = '{path}' is a folder that nmosim did not write (it is not empty and has no "
                f"{MARKER} marker); choose a new folder"
            )
        found = marker["kind"] if marker else "unreadable"
        if not overwrite and not (resume and found == kind):
            raise SpecError(
                f"out = '{path}' holds an earlier nmosim {found} output; give --overwrite to replace it"
            )
    return path


def _non_empty(path: Path) -> bool:
    if not path.is_dir():
        return False
    with os.scandir(path) as entries:
        return next(entries, None) is not None


def _absolute(out: Path | str) -> Path:
    text = os.fspath(out)
    if not text.strip():
        raise SpecError(f"out = {text!r} is empty; give a folder name")
    if "\x00" in text:
        raise SpecError(f"out = {text!r} holds a NUL character")
    if text.startswith("~"):
        expanded = os.path.expanduser(text)
        if expanded.startswith("~"):
            user = text[1:].split(os.sep, 1)[0]
            raise SpecError(f"out = '{text}' starts with '~{user}', but no such user's home is known")
        text = expanded
    return Path(os.path.abspath(text))


def _refuse_special(path: Path) -> None:
    real = Path(os.path.realpath(path))
    if path.is_symlink():
        raise SpecError(f"out = '{path}' is a symbolic link; give the folder it points to, '{real}'")
    if real == Path(real.anchor):
        raise SpecError(f"out = '{path}' is the root folder; give a new folder")
    try:
        cwd = Path(os.path.realpath(os.getcwd()))
    except FileNotFoundError:  # the current folder was removed
        cwd = None
    if cwd is not None and real == cwd:
        raise SpecError(f"out = '{path}' is the current folder; give a new folder, e.g. out/case_0001")
    if cwd is not None and real in cwd.parents:
        raise SpecError(f"out = '{path}' is a parent of the current folder; give a new folder")
    try:
        home = Path(os.path.realpath(Path.home()))
    except (RuntimeError, KeyError):
        home = None
    if home is not None and real == home:
        raise SpecError(f"out = '{path}' is the home folder; give a new folder")
    if path.exists() and not path.is_dir():
        raise SpecError(f"out = '{path}' exists and is not a folder")
    if path.is_dir() and os.path.ismount(path):
        raise SpecError(f"out = '{path}' is a mount point; give a new folder inside it")


def _existing_ancestor(path: Path) -> Path:
    ancestor = path
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    return ancestor


def _check_names(path: Path) -> None:
    ancestor = _existing_ancestor(path.parent)
    probe = ancestor if ancestor.is_dir() else ancestor.parent
    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
        path_max = os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    new_parts = path.relative_to(ancestor).parts if path != ancestor else ()
    for part in [*new_parts[:-1], path.name]:
        room = 0 if part != path.name or is_staging_name(part) else STAGING_ROOM
        size = len(os.fsencode(part))
        if size + room > name_max:
            shown = part if len(part) <= 40 else part[:37] + "..."
            raise SpecError(
                f"out = '{shown}' is a name of {size} bytes; this file system allows "
                f"{name_max - room} for an output folder ({name_max} less room for nmosim's staging names)"
            )
    # Room below out for the deepest file nmosim writes (a dataset's nnU-Net label) and staging names.
    if len(os.fsencode(str(path))) + 2 * STAGING_ROOM + 100 > path_max:
        raise SpecError(
            f"out = '{path}' is a path of {len(str(path))} characters, too long for this file system"
        )


def _check_writable(path: Path) -> None:
    ancestor = _existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise SpecError(f"out = '{path}' is not writable: '{ancestor}' is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise SpecError(f"out = '{path}' is not writable: no permission to write in '{ancestor}'")


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n_bytes) < 1024 or unit == "TiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def free_bytes(path: Path) -> int:
    """Free disk space (bytes) for a non-root user on the file system that holds ``path``."""
    return shutil.disk_usage(_existing_ancestor(Path(path).absolute())).free


def check_free_space(out: Path, needed_bytes: float) -> None:
    """Refuse (:class:`SpecError`) when the file system of ``out`` has less than ``needed_bytes`` free."""
    free = free_bytes(out)
    if needed_bytes > free:
        raise SpecError(
            f"out = '{out}' needs about {_size(needed_bytes)} of disk space; {_size(free)} free there"
        )


def _no_space(out: Path, error: BaseException, written: int) -> SpecError | None:
    cause = error.__cause__ if isinstance(error, SpecError) else error
    if not isinstance(cause, OSError) or cause.errno not in _NO_SPACE:
        return None
    return SpecError(
        f"out = '{out}': the disk is full ({_size(free_bytes(out))} free there); this output needs more "
        f"than the {_size(written)} it had written, which were removed"
    )


# --- writing -------------------------------------------------------------------------------------------


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write file ``path`` through ``write(tmp)`` on a hidden sibling and a rename: whole or absent.

    A full disk raises :class:`SpecError` naming the path, with the sibling removed.
    """
    path = Path(path)
    tmp = staging_path(path, "partial", new_token(), keep_suffix=True)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            raise SpecError(
                f"no space left to write '{path}' ({_size(free_bytes(path.parent))} free there)"
            ) from error
        raise


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and missing ancestors; return those created, outermost first."""
    missing = []
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    created = []
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        except OSError as error:
            _remove_created(created)
            raise SpecError(f"out = '{path}' is not writable: {error}") from None
        created.append(path)
    return created


def _remove_created(created: list[Path]) -> None:
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            pass


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


@contextmanager
def staged_directory(
    out: Path, kind: str, overwrite: bool = False, *, needed_bytes: float = 0, extra: dict | None = None
) -> Iterator[Path]:
    """Yield a hidden folder beside ``out``; when the block ends it gets the marker and replaces ``out``.

    ``out`` is checked first (:func:`check_output_dir`, ``overwrite``) and ``needed_bytes`` of disk
    space. On failure the hidden folder and any parent folders made for it are removed and ``out`` is
    as it was. Replacing renames ``out`` aside, the new folder in, then removes the old one: a kill
    at any point leaves debris that the next run's check recovers into a whole ``out``.
    """
    out = check_output_dir(out, overwrite)
    check_free_space(out, needed_bytes)
    created = _make_parents(out.parent)
    token = new_token()
    stage = staging_path(out, "partial", token)
    try:
        os.mkdir(stage)
    except OSError as error:
        _remove_created(created)
        raise SpecError(f"out = '{out}' is not writable: {error}") from None
    try:
        yield stage
        write_marker(stage, kind, extra)
        check_output_dir(out, overwrite)  # nothing else took its place meanwhile
        _swap(stage, out, token)
    except BaseException as error:
        written = _tree_bytes(stage) if stage.exists() else 0
        shutil.rmtree(stage, ignore_errors=True)
        _remove_created(created)
        full = _no_space(out, error, written)
        if full is not None:
            raise full from None
        raise


def _swap(stage: Path, out: Path, token: str) -> None:
    if not os.path.lexists(out):
        os.replace(stage, out)
        return
    old = staging_path(out, "old", token)
    os.replace(out, old)
    try:
        os.replace(stage, out)
    except BaseException:
        os.replace(old, out)
        raise
    discard(old)


def open_output_dir(out: Path, kind: str, overwrite: bool = False, extra: dict | None = None) -> Path:
    """Create (or reopen) folder ``out`` for an output built in place, such as a dataset.

    A folder that carries the marker of ``kind`` is reopened as it is (the caller resumes it), unless
    ``overwrite`` asks for a new one: the old one is renamed aside, the new one made with its marker,
    then the old one removed. A new folder gets the marker (``kind`` and ``extra``, no checksums) first.
    """
    out = check_output_dir(out, overwrite, kind=kind, resume=True)
    marker = read_marker(out) if out.is_dir() else None
    if marker is not None and marker["kind"] == kind and not overwrite:
        return out
    old = None
    if _non_empty(out):
        old = staging_path(out, "old", new_token())
        os.replace(out, old)
    created = _make_parents(out)
    try:
        write_marker(out, kind, extra, checksums=False)
    except BaseException:
        _remove_created(created)
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        discard(old)
    return out
