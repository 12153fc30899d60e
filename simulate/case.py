"""Assemble and write case folders: phantom labels, truth.json and previews.

Orchestrates the public functions of phantoms and simulate; holds no physics and no anatomy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phantoms.phantom import Phantom, build_phantom
from phantoms.rasterize import Rasterization
from phantoms.spec import sample_anatomy
from simulate.figures import label_preview
from simulate.io import check_output_dir, staged_directory, write_json, write_nifti
from simulate.provenance import TRUTH_SCHEMA_VERSION, case_generators, software_versions


def make_phantom(seed: int, case_index: int = 0, anatomy_overrides: dict | None = None) -> Phantom:
    """The phantom of case ``(seed, case_index)``: same inputs, same phantom."""
    rngs = case_generators(seed, case_index)
    anatomy = sample_anatomy(rngs["anatomy"], **(anatomy_overrides or {}))
    return build_phantom(anatomy, rngs["soft_tissue"], metadata={"seed": seed, "case_index": case_index})


def phantom_truth(phantom: Phantom, labels: Rasterization, case_id: str) -> dict:
    """The truth.json content of a phantom on its label grid."""
    meta = phantom.metadata
    return {
        "schema_version": TRUTH_SCHEMA_VERSION,
        "case_id": case_id,
        "seed": meta.get("seed"),
        "case_index": meta.get("case_index", 0),
        "phase": meta.get("phase", "none"),
        "weeks_since_injury": meta.get("weeks_since_injury"),
        "anatomy": phantom.anatomy.to_dict(),
        "landmarks_right_mm": phantom.landmarks.to_dict(),
        "grid": labels.grid.to_dict(),
        "supersampling": labels.supersampling,
        "software": software_versions(),
    }


def write_labels(folder: Path, labels: Rasterization) -> None:
    """structures.nii.gz (uint8), tissues.nii.gz (uint8), ho_instances.nii.gz (uint16)."""
    write_nifti(folder / "structures.nii.gz", labels.structures, labels.grid, np.uint8)
    write_nifti(folder / "tissues.nii.gz", labels.tissues, labels.grid, np.uint8)
    write_nifti(folder / "ho_instances.nii.gz", labels.instances, labels.grid, np.uint16)


def write_phantom_case(
    out: Path,
    seed: int,
    spacing_mm: float = 1.5,
    supersampling: int = 2,
    anatomy_overrides: dict | None = None,
) -> Path:
    """Build, rasterize and write the phantom of ``seed`` into the folder ``out``."""
    check_output_dir(out)
    phantom = make_phantom(seed, anatomy_overrides=anatomy_overrides)
    grid = phantom.grid(spacing_mm)
    labels = phantom.rasterize(grid, supersampling)
    case_id = Path(out).name
    with staged_directory(out) as stage:
        write_labels(stage, labels)
        write_json(stage / "truth.json", phantom_truth(phantom, labels, case_id))
        label_preview(
            stage / "preview.png",
            labels.structures,
            grid,
            phantom.landmarks.head_center,
            f"{case_id}: seed {seed}, labels",
        )
    return Path(out).resolve()
