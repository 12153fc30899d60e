"""Assemble and write case folders: phantom labels, truth.json and previews.

Orchestrates the public functions of phantoms and simulate; holds no physics and no anatomy.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import BONE_STRUCTURES, Structure
from nmosim.phantoms.lesions import build_case_phantom, build_case_series, lesion_truth
from nmosim.phantoms.materials import tissue_materials
from nmosim.phantoms.phantom import Phantom
from nmosim.phantoms.rasterize import Rasterization
from nmosim.simulate import backend, budget, ct, physics, scanner
from nmosim.simulate.figures import ct_preview, label_preview, radiograph_overlay, radiograph_preview
from nmosim.simulate.io import write_json, write_nifti, write_npz
from nmosim.simulate.outputs import check_output_dir, staged_directory
from nmosim.simulate.provenance import TRUTH_SCHEMA_VERSION, case_generators, software_versions
from nmosim.simulate.radiograph import RadiographGeometry, simulate_radiograph


@dataclasses.dataclass(frozen=True)
class CaseRequest:
    """What a user asks of one case: seed, lesion phase or time since injury, and overrides."""

    seed: int = 0
    case_index: int = 0
    phase: str | None = None
    weeks: float | None = None
    aetiology: str = "sci"
    confounders: bool | None = None
    anatomy_overrides: dict | None = None

    def lesion_options(self) -> dict:
        # Neither phase nor weeks: a phantom without heterotopic bone.
        phase = "none" if self.phase is None and self.weeks is None else self.phase
        return {
            "phase": phase,
            "weeks": self.weeks,
            "aetiology": self.aetiology,
            "confounders": self.confounders,
            "anatomy_overrides": self.anatomy_overrides,
        }


def make_phantom(request: CaseRequest) -> Phantom:
    """The phantom of ``request``: same request, same phantom (anatomy, lesions, confounders)."""
    rngs = case_generators(request.seed, request.case_index)
    phantom = build_case_phantom(rngs["lesions"], **request.lesion_options())
    phantom.metadata.update({"seed": request.seed, "case_index": request.case_index})
    return phantom


def make_series(request: CaseRequest, weeks: list[float]) -> list[Phantom]:
    """One patient at several times since injury: same anatomy, same lesions growing."""
    rngs = case_generators(request.seed, request.case_index)
    options = request.lesion_options()
    options.pop("weeks")
    if request.phase is None:
        options["phase"] = None
    series = build_case_series(rngs["lesions"], weeks, **options)
    for phantom in series:
        phantom.metadata.update({"seed": request.seed, "case_index": request.case_index})
    return series


TRUTH_SPACING_MM = 1.0  # grid on which grades, gaps and volumes of truth.json are measured
TRUTH_MARGIN_MM = np.array([95.0, 95.0, 0.0])


def truth_labels(phantom: Phantom) -> Rasterization:
    """The phantom rasterized on a fine grid around both hips, for measuring the truth.

    One sample per voxel at ``TRUTH_SPACING_MM``: labels are those of the analytic scene at the
    voxel centres, independent of any imaging grid.
    """
    head = phantom.landmarks.head_center
    lo = np.array([-head[0], -95.0, -150.0]) - TRUTH_MARGIN_MM * [1, 0, 0]
    hi = np.array([head[0], 110.0, 95.0]) + TRUTH_MARGIN_MM * [1, 0, 0]
    return phantom.rasterize(Grid.covering(tuple(lo), tuple(hi), TRUTH_SPACING_MM), supersampling=1)


PHASE_OF_GRADE = ("none", "a", "b", "c", "d")  # Brooker 0-IV (DOMAIN.md 1.2)


def _measured_phase(measured: dict, index_side: str | None) -> str:
    """The phase that the index hip's measured grade stands for (the worse hip if none is set)."""
    grades = {side: measured[side]["brooker_grade"] for side in ("right", "left")}
    grade = grades[index_side] if index_side in grades else max(grades.values())
    return PHASE_OF_GRADE[grade]


def phantom_truth(phantom: Phantom, labels: Rasterization, case_id: str) -> dict:
    """The truth.json content of a phantom whose labels were written on ``labels.grid``."""
    meta = dict(phantom.metadata)
    fine = truth_labels(phantom)
    measured = lesion_truth(fine, phantom)
    truth = {
        "schema_version": TRUTH_SCHEMA_VERSION,
        "case_id": case_id,
        "seed": meta.pop("seed", None),
        "case_index": meta.pop("case_index", 0),
        "phase": _measured_phase(measured, meta.get("index_side")),
        "requested_phase": meta.pop("phase", "none"),
        "weeks_since_injury": meta.pop("weeks_since_injury", None),
        "right": measured["right"],
        "left": measured["left"],
        "truth_grid": {**fine.grid.to_dict(), "supersampling": fine.supersampling},
        "labels_ho_volume_ml": {
            side: round(float((labels.structures == s).sum()) * labels.grid.voxel_volume_mm3 / 1000.0, 4)
            for side, s in (("right", Structure.HO_RIGHT), ("left", Structure.HO_LEFT))
        },
        "anatomy": phantom.anatomy.to_dict(),
        "landmarks_right_mm": phantom.landmarks.to_dict(),
        "grid": labels.grid.to_dict(),
        "supersampling": labels.supersampling,
        "generation": meta,
        "software": software_versions(),
    }
    return truth


def write_labels(folder: Path, labels: Rasterization) -> None:
    """structures.nii.gz (uint8), tissues.nii.gz (uint8), ho_instances.nii.gz (uint16)."""
    write_nifti(folder / "structures.nii.gz", labels.structures, labels.grid, np.uint8)
    write_nifti(folder / "tissues.nii.gz", labels.tissues, labels.grid, np.uint8)
    write_nifti(folder / "ho_instances.nii.gz", labels.instances, labels.grid, np.uint16)


def preview_center(phantom: Phantom, truth: dict) -> np.ndarray:
    """Where previews cut: through the largest lesion of the worse hip, else the right femoral head."""
    sides = sorted(("right", "left"), key=lambda side: truth[side]["brooker_grade"], reverse=True)
    lesions = truth[sides[0]]["lesions"]
    if lesions:
        return np.asarray(max(lesions, key=lambda d: d["volume_ml"])["centroid_mm"])
    head = phantom.landmarks.head_center
    return head if sides[0] == "right" else head * [-1, 1, 1]


def write_phantom_case(
    out: Path, request: CaseRequest, spacing_mm: float = 1.5, supersampling: int = 2, overwrite: bool = False
) -> Path:
    """Build, rasterize and write the phantom of ``request`` into the folder ``out``.

    ``overwrite`` lets it replace an earlier nmosim output (nmosim.simulate.outputs).
    """
    check_output_dir(out, overwrite)
    return write_phantom_folder(out, make_phantom(request), spacing_mm, supersampling, overwrite)


def write_phantom_folder(
    out: Path, phantom: Phantom, spacing_mm: float, supersampling: int, overwrite: bool = False
) -> Path:
    """Rasterize ``phantom`` and write labels, truth.json and preview.png into ``out``."""
    grid = phantom.grid(spacing_mm)
    labels = phantom.rasterize(grid, supersampling)
    case_id = Path(out).name
    truth = phantom_truth(phantom, labels, case_id)
    title = f"{case_id}: seed {truth['seed']}, phase {truth['phase']}, labels"
    with staged_directory(out, "phantom", overwrite) as stage:
        write_labels(stage, labels)
        write_json(stage / "truth.json", truth)
        label_preview(stage / "preview.png", labels.structures, grid, preview_center(phantom, truth), title)
    return Path(out).resolve()


def week_folder_name(weeks: float) -> str:
    """Folder of one time point of a series: ``week_WWW_WW`` (weeks to 0.01)."""
    return f"week_{weeks:06.2f}".replace(".", "_")


def write_series(
    out: Path,
    request: CaseRequest,
    weeks: list[float],
    spacing_mm: float = 1.5,
    supersampling: int = 2,
    overwrite: bool = False,
) -> Path:
    """A longitudinal series: one phantom folder per time point in ``out``, all in one rename."""
    check_output_dir(out, overwrite)
    names = [week_folder_name(w) for w in weeks]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise SpecError(f"weeks = {weeks[names.index(name)]:g} and {weeks[i]:g} fall into one folder, "
                            f"{name}; give time points at least 0.01 week apart")  # fmt: skip
    series = make_series(request, weeks)
    with staged_directory(out, "series", overwrite) as stage:
        for phantom in series:
            name = week_folder_name(phantom.metadata["weeks_since_injury"])
            write_phantom_folder(stage / name, phantom, spacing_mm, supersampling)
    return Path(out).resolve()


# ----------------------------------------------------------------------------------------------
# CT cases
# ----------------------------------------------------------------------------------------------

# Scan range along z (mm) per preset. DOMAIN.md 4.3: iliac crest to below the lesser trochanter;
# the quick preset keeps the hip joints, trochanters and AIIS, where hip HO lies (DOMAIN.md 1.5).
SCAN_RANGE_MM = {"quick": (-100.0, 80.0), "clinical": (-130.0, 125.0)}
FOV_MARGIN_MM = 12.0


def fit_protocol(protocol, phantom: Phantom):
    """``protocol`` with a detector wide enough for the body and a field of view that holds it.

    A body reaching beyond the scan field would be truncated; instead the detector gets more
    bins of the same pitch, as a wide-bore scanner would have (recorded in truth.json).
    """
    lo, hi = phantom.bounds()
    corners = np.array([[x, y] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])])
    radius = float(np.hypot(corners[:, 0], corners[:, 1]).max()) + FOV_MARGIN_MM
    if 2 * radius > protocol.scan_fov_mm:
        bins = int(np.ceil(2 * radius / protocol.iso_bin_width_mm)) + 2
        protocol = dataclasses.replace(protocol, n_bins=bins)
    side = float(max(hi[0] - lo[0], hi[1] - lo[1])) + 2 * FOV_MARGIN_MM
    return dataclasses.replace(
        protocol, recon_fov_mm=min(max(protocol.recon_fov_mm, side), protocol.scan_fov_mm)
    )


def case_grids(phantom: Phantom, protocol, z_range_mm: tuple[float, float]) -> tuple[Grid, Grid]:
    """Reconstruction grid (labels and CT) and the finer imaging grid, covering the body."""
    lo, hi = phantom.bounds()
    center = (float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2)
    recon = scanner.recon_grid(protocol, z_range_mm[0], z_range_mm[1], center_xy_mm=center)
    xy_lo = (float(lo[0]) - 2.0, float(lo[1]) - 2.0)
    xy_hi = (float(hi[0]) + 2.0, float(hi[1]) + 2.0)
    imaging = scanner.imaging_grid(protocol, recon, xy_lo, xy_hi)
    return recon, imaging


def outside_scan_field(grid: Grid, protocol) -> np.ndarray:
    """In-plane mask ``[ny, nx]`` of voxels beyond the scan field of view, where no ray passed."""
    x, y = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)
    return np.hypot(x[None, :], y[:, None]) > protocol.scan_fov_mm / 2


def basis_maps(phantom: Phantom, labels: Rasterization, spectrum) -> tuple[np.ndarray, np.ndarray]:
    """Water- and bone-equivalent volume fractions (float32) of rasterized ``labels`` of
    ``phantom``, fitted over ``spectrum``; the phantom's bone density sets its trabecular bone."""
    materials = tissue_materials(trabecular_density_scale=phantom.anatomy.bone_density_scale)
    coefficients = physics.basis_coefficients(materials, spectrum)
    return labels.weighted_sum(coefficients[:, 0]), labels.weighted_sum(coefficients[:, 1])


def write_ct_case(
    out: Path,
    request: CaseRequest,
    preset: str = "quick",
    protocol_overrides: dict | None = None,
    z_range_mm: tuple[float, float] | None = None,
    progress=None,
    overwrite: bool = False,
) -> Path:
    """Build the phantom of ``request``, image it with CT and an AP radiograph, write the case folder.

    ``progress(stage, seconds)`` is called after each stage with its wall time.
    """
    report = progress or (lambda stage, seconds: None)
    check_output_dir(out, overwrite)
    protocol = scanner.make_protocol(preset, **(protocol_overrides or {}))
    device = backend.select_device()  # a forced but absent GPU is reported before any work
    z_range = budget.check_z_range(z_range_mm or SCAN_RANGE_MM[preset])  # finite, meets the body
    clock = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        report(name, now - clock)
        clock = now

    rngs = case_generators(request.seed, request.case_index)
    phantom = make_phantom(request)
    protocol = fit_protocol(protocol, phantom)
    recon, imaging = case_grids(phantom, protocol, z_range)
    stage("phantom")
    labels = phantom.rasterize(recon, supersampling=2)
    stage("labels")
    water, bone = basis_maps(
        phantom, phantom.rasterize(imaging, supersampling=1), ct.protocol_spectrum(protocol)
    )
    stage("imaging maps")
    hu = ct.simulate_ct(water, bone, imaging, recon, protocol, rngs["imaging"], device=device)
    stage("ct")
    geometry = RadiographGeometry()
    rad_grid = phantom.grid(max(2.0, protocol.recon_pixel_mm))
    rad_labels = phantom.rasterize(rad_grid, supersampling=1)
    masks = {
        "bone": np.isin(rad_labels.structures, [int(s) for s in BONE_STRUCTURES]),
        "ho_right": rad_labels.structures == Structure.HO_RIGHT,
        "ho_left": rad_labels.structures == Structure.HO_LEFT,
    }
    rad_water, rad_bone = basis_maps(
        phantom, rad_labels, physics.tube_spectrum(geometry.kvp, geometry.filtration_mm_al)
    )
    radiograph = simulate_radiograph(
        rad_water, rad_bone, masks, rad_grid, geometry, np.random.default_rng(rngs["imaging"].integers(2**63))
    )
    stage("radiograph")
    case_id = Path(out).name
    truth = phantom_truth(phantom, labels, case_id)
    stage("truth")
    truth["scanner"] = {
        "preset": preset,
        **protocol.to_dict(),
        "scan_range_mm": list(z_range),
        "reconstruction_grid": recon.to_dict(),
        "imaging_grid": imaging.to_dict(),
        "device": device,
    }
    truth["radiograph"] = geometry.to_dict()
    hu_int = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    hu_int[:, outside_scan_field(recon, protocol)] = -1024  # no data there, as scanners show it
    with staged_directory(out, "case", overwrite) as folder:
        write_nifti(folder / "ct.nii.gz", hu_int, recon, np.int16)
        write_labels(folder, labels)
        save_radiograph(folder / "radiograph_ap.npz", radiograph)
        shown = radiograph.image[::-1, ::-1]  # superior up, patient's right on the viewer's left
        title = f"{case_id}: AP pelvis, {geometry.kvp:g} kV (patient's right on the left)"
        radiograph_preview(folder / "radiograph_ap.png", shown, title)
        radiograph_overlay(
            folder / "preview_radiograph.png",
            shown,
            {name: mask[::-1, ::-1] for name, mask in radiograph.masks.items()},
            f"{title}, phase {truth['phase']}",
        )
        ct_preview(
            folder / "preview_ct.png",
            hu_int,
            labels.structures,
            recon,
            preview_center(phantom, truth),
            f"{case_id}: CT ({preset}), phase {truth['phase']}",
        )
        stage("write")
        write_json(folder / "truth.json", truth)
    return Path(out).resolve()


def save_radiograph(path: Path, radiograph) -> None:
    """The raw radiograph and its projected masks, for programs (npz)."""
    arrays = {"image": radiograph.image, **{f"mask_{k}": v for k, v in radiograph.masks.items()}}
    write_npz(path, {**arrays, "geometry_json": np.array(json.dumps(radiograph.geometry.to_dict()))})
