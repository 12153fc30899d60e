"""Reading and writing case files: NIfTI volumes with an RAS affine, JSON, and whole folders atomically.

Only serialization lives here; what to write, and what a file read back means, is decided by the callers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid


def to_nifti(volume_zyx: np.ndarray, grid: Grid, dtype: np.dtype | type) -> nib.Nifti1Image:
    """NIfTI image of a ``[z, y, x]`` volume: data ``[i, j, k] = [x, y, z]``, RAS affine.

    sform and qform are both the grid's affine with code 1 (scanner); slope 1, intercept 0.
    """
    if volume_zyx.shape != grid.shape:
        raise ValueError(f"volume shape {volume_zyx.shape} does not match grid shape {grid.shape}")
    data = np.ascontiguousarray(np.transpose(volume_zyx, (2, 1, 0)).astype(dtype, copy=False))
    affine = grid.affine()
    header = nib.Nifti1Header()
    header.set_data_dtype(data.dtype)
    header.set_xyzt_units("mm")
    image = nib.Nifti1Image(data, affine, header)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_slope_inter(1.0, 0.0)
    return image


@dataclass(frozen=True)
class NiftiVolume:
    """A NIfTI volume read back: ``data`` ``[z, y, x]`` as stored, its 4x4 ``affine`` (mm) and the
    voxel spacing ``spacing_zyx_mm`` from the header."""

    data: np.ndarray
    affine: np.ndarray
    spacing_zyx_mm: tuple[float, float, float]

    def grid(self) -> Grid:
        """The :class:`Grid` of an axis-aligned RAS affine (as nmosim writes); SpecError otherwise."""
        spacing = np.diag(self.affine)[:3]
        off_diagonal = self.affine[:3, :3] - np.diag(spacing)
        if np.any(np.abs(off_diagonal) > 1e-6) or np.any(spacing <= 0):
            raise SpecError(f"affine = {self.affine[:3].tolist()} is not an axis-aligned RAS grid")
        return Grid(self.data.shape, tuple(spacing), tuple(self.affine[:3, 3]))


def read_nifti(path: Path) -> NiftiVolume:
    """Read a 3D NIfTI file (or 4D with one volume) as ``[z, y, x]`` data, affine and spacing.

    Raises what nibabel raises for a file it cannot read (OSError, ValueError, ...) and
    ValueError for a volume that is not 3D.
    """
    image = nib.load(str(path))
    data = np.asanyarray(image.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path} holds a {data.ndim}D volume, not 3D")
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    return NiftiVolume(np.transpose(data, (2, 1, 0)), np.asarray(image.affine, float), zooms[::-1])


def read_json(path: Path) -> dict:
    """Read a JSON object (a dict); ValueError when the file holds something else."""
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(payload, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return payload


def write_nifti(path: Path, volume_zyx: np.ndarray, grid: Grid, dtype: np.dtype | type) -> None:
    """Write ``volume_zyx`` to ``path`` (.nii.gz) through a temporary file and a rename."""
    _atomic_write(Path(path), lambda tmp: nib.save(to_nifti(volume_zyx, grid, dtype), tmp))


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON (keys in insertion order) atomically."""
    text = json.dumps(payload, indent=2, allow_nan=False, default=_json_default) + "\n"
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to a compressed ``.npz`` file atomically."""
    _atomic_write(Path(path), lambda tmp: np.savez_compressed(tmp, **arrays))


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_dir(out: Path) -> Path:
    """Check that folder ``out`` can be written, touching nothing for good; return it resolved.

    Raises :class:`SpecError` naming ``out`` when it is a file, or when its nearest existing
    ancestor is not a directory one can create files in.
    """
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise SpecError(f"out = '{out}' exists and is not a directory")
    ancestor = out if out.exists() else out.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(f"{ancestor} is not a directory")
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise SpecError(f"out = '{out}' is not writable: {error}") from None
    return out


@contextmanager
def staged_directory(out: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out`` in one rename.

    On failure the temporary folder is removed and ``out`` is left as it was: nothing is ever
    half-written. An existing ``out`` is replaced only when the new one is complete.
    """
    out = check_output_dir(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SpecError(f"out = '{out}' is not writable: {error}") from None
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    os.chmod(stage, 0o777 & ~_umask())
    try:
        yield stage
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(stage, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
