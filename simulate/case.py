"""Assemble and write case folders: phantom labels, truth.json and previews.

Orchestrates the public functions of phantoms and simulate; holds no physics and no anatomy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from phantoms.errors import SpecError
from phantoms.grid import Grid
from phantoms.labels import BONE_STRUCTURES, Structure
from phantoms.materials import tissue_materials
from phantoms.phantom import Phantom, build_phantom
from phantoms.rasterize import Rasterization
from phantoms.spec import sample_anatomy
from simulate import backend, ct, physics, scanner
from simulate.figures import ct_preview, label_preview, radiograph_preview
from simulate.io import check_output_dir, staged_directory, write_json, write_nifti
from simulate.provenance import TRUTH_SCHEMA_VERSION, case_generators, software_versions
from simulate.radiograph import RadiographGeometry, simulate_radiograph


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


# ----------------------------------------------------------------------------------------------
# CT cases
# ----------------------------------------------------------------------------------------------

# Scan range along z (mm) per preset. DOMAIN.md 4.3: iliac crest to below the lesser trochanter;
# the quick preset keeps the hip joints, trochanters and AIIS, where hip HO lies (DOMAIN.md 1.5).
SCAN_RANGE_MM = {"quick": (-100.0, 80.0), "clinical": (-130.0, 125.0)}
FOV_MARGIN_MM = 12.0


def case_grids(phantom: Phantom, protocol, z_range_mm: tuple[float, float]) -> tuple[Grid, Grid]:
    """Reconstruction grid (labels and CT) and the finer imaging grid, covering the body."""
    lo, hi = phantom.bounds()
    width = float(max(hi[0] - lo[0], hi[1] - lo[1])) + 2 * FOV_MARGIN_MM
    if width > protocol.scan_fov_mm:
        raise SpecError(
            f"body width {width:.0f} mm exceeds the scan field of view {protocol.scan_fov_mm:.0f} mm; "
            "use more detector bins (n_bins) or a smaller body"
        )
    protocol_fov = dataclasses.replace(protocol, recon_fov_mm=max(protocol.recon_fov_mm, width))
    center = (float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2)
    recon = scanner.recon_grid(protocol_fov, z_range_mm[0], z_range_mm[1], center_xy_mm=center)
    xy_lo = (float(lo[0]) - 2.0, float(lo[1]) - 2.0)
    xy_hi = (float(hi[0]) + 2.0, float(hi[1]) + 2.0)
    imaging = scanner.imaging_grid(protocol_fov, recon, xy_lo, xy_hi)
    return recon, imaging


def basis_maps(
    phantom: Phantom, grid: Grid, protocol, supersampling: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Water- and bone-equivalent volume fractions of the phantom on ``grid`` (float32)."""
    materials = tissue_materials(trabecular_density_scale=phantom.anatomy.bone_density_scale)
    coefficients = ct.tissue_basis(protocol, materials)
    labels = phantom.rasterize(grid, supersampling)
    return labels.weighted_sum(coefficients[:, 0]), labels.weighted_sum(coefficients[:, 1]), labels


def write_ct_case(
    out: Path,
    seed: int,
    preset: str = "quick",
    protocol_overrides: dict | None = None,
    anatomy_overrides: dict | None = None,
    z_range_mm: tuple[float, float] | None = None,
    progress=None,
) -> Path:
    """Build the phantom of ``seed``, image it with CT and an AP radiograph, write the case folder.

    ``progress(stage, seconds)`` is called after each stage with its wall time.
    """
    report = progress or (lambda stage, seconds: None)
    check_output_dir(out)
    protocol = scanner.make_protocol(preset, **(protocol_overrides or {}))
    z_range = z_range_mm or SCAN_RANGE_MM[preset]
    clock = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        report(name, now - clock)
        clock = now

    timings: dict[str, float] = {}
    rngs = case_generators(seed, 0)
    phantom = make_phantom(seed, anatomy_overrides=anatomy_overrides)
    recon, imaging = case_grids(phantom, protocol, z_range)
    stage("phantom")
    labels = phantom.rasterize(recon, supersampling=2)
    stage("labels")
    water, bone, fine_labels = basis_maps(phantom, imaging, protocol)
    stage("imaging maps")
    hu = ct.simulate_ct(water, bone, imaging, recon, protocol, rngs["imaging"])
    stage("ct")
    geometry = RadiographGeometry()
    rad_grid = phantom.grid(max(2.0, protocol.recon_pixel_mm))
    rad_labels = phantom.rasterize(rad_grid, supersampling=1)
    rad_basis = physics.basis_coefficients(
        tissue_materials(trabecular_density_scale=phantom.anatomy.bone_density_scale),
        physics.tube_spectrum(geometry.kvp, geometry.filtration_mm_al),
    )
    masks = {
        "bone": np.isin(rad_labels.structures, [int(s) for s in BONE_STRUCTURES]),
        "ho_right": rad_labels.structures == Structure.HO_RIGHT,
        "ho_left": rad_labels.structures == Structure.HO_LEFT,
    }
    radiograph = simulate_radiograph(
        rad_labels.weighted_sum(rad_basis[:, 0]), rad_labels.weighted_sum(rad_basis[:, 1]), masks,
        rad_grid, geometry, np.random.default_rng(rngs["imaging"].integers(2**63)),
    )  # fmt: skip
    stage("radiograph")
    case_id = Path(out).name
    truth = phantom_truth(phantom, labels, case_id)
    truth["scanner"] = {
        "preset": preset,
        **protocol.to_dict(),
        "scan_range_mm": list(z_range),
        "reconstruction_grid": recon.to_dict(),
        "imaging_grid": imaging.to_dict(),
        "device": backend.select_device(),
    }
    truth["radiograph"] = geometry.to_dict()
    hu_int = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    with staged_directory(out) as folder:
        write_nifti(folder / "ct.nii.gz", hu_int, recon, np.int16)
        write_labels(folder, labels)
        save_radiograph(folder / "radiograph_ap.npz", radiograph)
        radiograph_preview(
            folder / "radiograph_ap.png",
            radiograph.image[::-1, ::-1],
            f"{case_id}: AP pelvis, {geometry.kvp:g} kV (patient's right on the left)",
        )
        ct_preview(
            folder / "preview_ct.png",
            hu_int,
            labels.structures,
            recon,
            phantom.landmarks.head_center,
            f"{case_id}: CT ({preset})",
        )
        stage("write")
        truth["timings_s"] = timings
        write_json(folder / "truth.json", truth)
    del fine_labels
    return Path(out).resolve()


def save_radiograph(path: Path, radiograph) -> None:
    """The raw radiograph and its projected masks, for programs (npz, atomically)."""
    arrays = {"image": radiograph.image, **{f"mask_{k}": v for k, v in radiograph.masks.items()}}
    tmp = path.with_name(f".{path.name}.partial.npz")
    np.savez_compressed(tmp, **arrays, geometry_json=np.array(json.dumps(radiograph.geometry.to_dict())))
    os.replace(tmp, path)
