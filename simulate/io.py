"""Reading and writing case files: NIfTI volumes with an RAS affine, JSON, npz and text, each file
atomically.

Only serialization lives here; what to write, and what a file read back means, is decided by the
callers; where and how folders land (checks, staging, markers) by :mod:`nmosim.simulate.outputs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.simulate.outputs import atomic_write


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
    atomic_write(Path(path), lambda tmp: nib.save(to_nifti(volume_zyx, grid, dtype), tmp))


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON (keys in insertion order) atomically."""
    text = json.dumps(payload, indent=2, allow_nan=False, default=_json_default) + "\n"
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to a compressed ``.npz`` file atomically."""
    atomic_write(Path(path), lambda tmp: np.savez_compressed(tmp, **arrays))


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
