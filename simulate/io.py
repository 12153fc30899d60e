"""Writing case files: NIfTI volumes with an RAS affine, JSON, npz and text, each file atomically.

Only serialization lives here; what to write is decided by the callers, and where and how folders
land (checks, staging, markers) by :mod:`nmosim.simulate.outputs`.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

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
