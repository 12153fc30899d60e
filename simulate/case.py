"""Case folders on disk: a CT case or a phantom written (DESIGN.md 5) and a CT case read back.

Serializes what the pipeline made, with previews for people; it simulates and measures nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nmosim.phantoms.errors import SpecError, check_range
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.phantom import Phantom
from nmosim.simulate import backend
from nmosim.simulate.case_spec import CaseSpec, build_phantom
from nmosim.simulate.figures import ct_preview, label_preview, radiograph_overlay, radiograph_preview
from nmosim.simulate.io import read_json, read_nifti, write_json, write_nifti, write_npz
from nmosim.simulate.outputs import check_output_dir, staged_directory
from nmosim.simulate.pipeline import SCAN_RANGE_MM, CTCase, Progress, protocol, simulate_ct
from nmosim.simulate.radiograph import Radiograph, RadiographGeometry
from nmosim.simulate.truth import phantom_truth, preview_center

CaseRequest = CaseSpec  # the name cohort code has long used for a case's request
LABEL_FILES = {"structures": ("structures.nii.gz", np.uint8), "tissues": ("tissues.nii.gz", np.uint8),
               "ho_instances": ("ho_instances.nii.gz", np.uint16)}  # fmt: skip
FORMATS = ("nifti", "dicom")  # what a case folder can hold besides truth.json, radiograph and previews
DICOM_FOLDER = "dicom"


def write_labels(
    folder: Path, grid: Grid, structures: np.ndarray, tissues: np.ndarray, instances: np.ndarray
) -> None:
    """structures.nii.gz (uint8), tissues.nii.gz (uint8), ho_instances.nii.gz (uint16) on ``grid``."""
    volumes = {"structures": structures, "tissues": tissues, "ho_instances": instances}
    for name, (filename, dtype) in LABEL_FILES.items():
        write_nifti(folder / filename, volumes[name], grid, dtype)


# --- phantoms ---------------------------------------------------------------------------------


def write_phantom(
    phantom: Phantom,
    out: Path | str,
    *,
    spacing_mm: float = 1.5,
    supersampling: int = 2,
    threads: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Rasterize ``phantom`` on a grid of ``spacing_mm`` (mm) and write its labels, truth.json and
    preview.png into the new folder ``out``, which appears when complete; ``overwrite`` lets it
    replace an earlier nmosim output (:mod:`nmosim.simulate.outputs`). Returns the folder."""
    check_output_dir(out, overwrite)
    grid = phantom.grid(spacing_mm)
    labels = phantom.rasterize(grid, supersampling, threads=threads)
    case_id = Path(out).name
    truth = phantom_truth(phantom, labels, case_id, threads=threads)
    title = f"{case_id}: seed {truth['seed']}, phase {truth['phase']}, labels"
    with staged_directory(out, "phantom", overwrite) as stage:
        write_labels(stage, grid, labels.structures, labels.tissues, labels.instances)
        write_json(stage / "truth.json", truth)
        label_preview(stage / "preview.png", labels.structures, grid, preview_center(truth), title)
    return Path(out).resolve()


def week_folder_name(weeks: float) -> str:
    """The folder of one time point of a series: ``week_WWW_WW`` (weeks to 0.01)."""
    return f"week_{weeks:06.2f}".replace(".", "_")


def check_series_weeks(weeks: Sequence[float]) -> None:
    """Refuse time points that would fall into one series folder (:class:`SpecError`)."""
    names = [week_folder_name(w) for w in weeks]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise SpecError(f"weeks = {weeks[names.index(name)]:g} and {weeks[i]:g} fall into one folder, "
                            f"{name}; give time points at least 0.01 week apart")  # fmt: skip


def write_series(
    series: Sequence[Phantom],
    out: Path | str,
    *,
    spacing_mm: float = 1.5,
    supersampling: int = 2,
    threads: int | None = None,
    overwrite: bool = False,
) -> Path:
    """A longitudinal series: one phantom folder per time point in ``out``, all in one rename."""
    check_series_weeks([phantom.metadata["weeks_since_injury"] for phantom in series])
    with staged_directory(Path(out), "series", overwrite) as stage:
        for phantom in series:
            write_phantom(phantom, stage / week_folder_name(phantom.metadata["weeks_since_injury"]),
                          spacing_mm=spacing_mm,
                          supersampling=supersampling, threads=threads)  # fmt: skip
    return Path(out).resolve()


# --- CT cases ---------------------------------------------------------------------------------


def check_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """The file formats of a case folder, validated: a comma-separated text (``"nifti,dicom"``) or a
    sequence of names out of :data:`FORMATS`, in that order, each once (:class:`SpecError` otherwise)."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip().lower() if isinstance(n, str) else n for n in names]
    for name in names:
        if name not in FORMATS:
            raise SpecError(f"formats = {name!r} is not one of {{{', '.join(FORMATS)}}}")
    if not names:
        raise SpecError(f"formats = {formats!r} is empty; give one or more of {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in names)


def write_case(
    ct: CTCase, out: Path | str, overwrite: bool = False, formats: str | Sequence[str] = ("nifti",)
) -> Path:
    """Write the case folder of DESIGN.md 5 for ``ct`` into the new folder ``out``, which appears
    when complete; ``overwrite`` lets it replace an earlier nmosim output.

    ``formats`` (:func:`check_formats`): ``nifti`` writes the NIfTI volumes of DESIGN.md 5, ``dicom``
    the CT series ``dicom/ct/`` and the DICOM SEG ``dicom/seg.dcm`` (:mod:`nmosim.simulate.dicom`);
    truth.json, the radiograph and the previews are always written.
    truth.json's ``case_id`` is the folder's name. Returns the folder, resolved.
    """
    out = Path(out)
    formats = check_formats(formats)
    case_id = out.name
    truth = {**ct.truth, "case_id": case_id}
    preset = (truth.get("scanner") or {}).get("preset") or "custom protocol"
    with staged_directory(out, "case", overwrite) as folder, ThreadPoolExecutor(max_workers=1) as pool:
        # The NIfTI volumes compress (zlib, outside the GIL) while the figures draw here.
        volumes = pool.submit(_write_volumes, folder, ct) if "nifti" in formats else None
        if "dicom" in formats:
            from nmosim.simulate.dicom import write_dicom  # pydicom and highdicom load only when asked

            write_dicom(folder / DICOM_FOLDER, ct, case_id)
        save_radiograph(folder / "radiograph_ap.npz", ct.radiograph)
        display = ct.radiograph.image if ct.radiograph.processed is None else ct.radiograph.processed
        shown = display[::-1, ::-1]  # superior up, patient's right on the viewer's left
        title = f"{case_id}: AP pelvis, {ct.radiograph.geometry.kvp:g} kV (patient's right on the left)"
        radiograph_preview(folder / "radiograph_ap.png", shown, title)
        radiograph_overlay(
            folder / "preview_radiograph.png",
            shown,
            {name: mask[::-1, ::-1] for name, mask in ct.radiograph.masks.items()},
            f"{title}, phase {truth['phase']}",
        )
        ct_preview(
            folder / "preview_ct.png", ct.hu, ct.structures, ct.grid, preview_center(truth),
            f"{case_id}: CT ({preset}), phase {truth['phase']}",
        )  # fmt: skip
        write_json(folder / "truth.json", truth)
        if volumes is not None:
            volumes.result()
    return out.resolve()


def _write_volumes(folder: Path, ct: CTCase) -> None:
    """ct.nii.gz (int16 HU) and the label volumes of ``ct`` into ``folder``."""
    write_nifti(folder / "ct.nii.gz", ct.hu, ct.grid, np.int16)
    write_labels(folder, ct.grid, ct.structures, ct.tissues, ct.ho_instances)


def read_case(folder: Path | str) -> CTCase:
    """The :class:`CTCase` of a case folder written by :func:`write_case`."""
    folder = Path(folder)
    ct = read_nifti(folder / "ct.nii.gz")
    truth = read_json(folder / "truth.json")
    volumes = {name: read_nifti(folder / filename).data.astype(dtype, copy=False)
               for name, (filename, dtype) in LABEL_FILES.items()}  # fmt: skip
    return CTCase(
        hu=ct.data.astype(np.int16, copy=False),
        grid=_exact_grid(ct.grid(), truth),
        radiograph=load_radiograph(folder / "radiograph_ap.npz"),
        truth=truth,
        **volumes,
    )


def _exact_grid(grid: Grid, truth: dict) -> Grid:
    """The grid of truth.json (float64) where it is the NIfTI's (whose affine is float32)."""
    saved = truth.get("grid") or {}
    try:
        exact = Grid(tuple(saved["shape_zyx"]), tuple(saved["spacing_mm_xyz"]), tuple(saved["origin_mm_xyz"]))
    except (KeyError, TypeError, ValueError):
        return grid
    same = exact.shape == grid.shape and np.allclose(exact.affine(), grid.affine(), atol=1e-3)
    return exact if same else grid


def save_radiograph(path: Path, radiograph: Radiograph) -> None:
    """The raw radiograph, its processed display image and its projected masks, for programs (npz)."""
    arrays = {"image": radiograph.image, **{f"mask_{k}": v for k, v in radiograph.masks.items()}}
    if radiograph.processed is not None:
        arrays["processed"] = radiograph.processed
    write_npz(path, {**arrays, "geometry_json": np.array(json.dumps(radiograph.geometry.to_dict()))})


def load_radiograph(path: Path) -> Radiograph:
    """The radiograph saved by :func:`save_radiograph`."""
    with np.load(path) as saved:
        geometry = json.loads(str(saved["geometry_json"]))
        names = {f.name for f in dataclasses.fields(RadiographGeometry)}
        masks = {key.removeprefix("mask_"): saved[key] for key in saved.files if key.startswith("mask_")}
        if "detector_pitch_mm" not in geometry:  # written before the detector model: one pitch
            geometry |= {"detector_pitch_mm": geometry["pixel_mm"], "projection_mm": geometry["pixel_mm"]}
        processed = saved["processed"] if "processed" in saved.files else None
        return Radiograph(
            image=saved["image"], masks=masks,
            geometry=RadiographGeometry(**{k: v for k, v in geometry.items() if k in names}),
            processed=processed,
        )  # fmt: skip


def write_ct_case(
    out: Path,
    request: CaseSpec,
    preset: str = "quick",
    protocol_overrides: dict | None = None,
    z_range_mm: tuple[float, float] | None = None,
    progress: Progress | None = None,
    supersampling: int = 2,
    device: str | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    formats: str | Sequence[str] = ("nifti",),
) -> Path:
    """Build the phantom of ``request``, image it, and write the case folder ``out`` in ``formats``
    (one call of each public step: :func:`build_phantom`, :func:`simulate_ct`, :func:`write_case`)."""
    formats = check_formats(formats)
    check_output_dir(out, overwrite)
    scan = protocol(preset, **(protocol_overrides or {}))
    check_range("supersampling", supersampling, 1, 8)
    # a forced but absent GPU, or a cone-beam geometry without one, is reported before any work
    device = backend.select_device(device, scan)
    clock = time.perf_counter()
    phantom = build_phantom(request, threads=threads)
    if progress:
        progress("phantom", time.perf_counter() - clock)
    ct = simulate_ct(
        phantom, scan, z_range_mm=z_range_mm or SCAN_RANGE_MM[preset], supersampling=supersampling,
        preset=preset, device=device, threads=threads, progress=progress,
    )  # fmt: skip
    clock = time.perf_counter()
    folder = write_case(ct, out, overwrite, formats)
    if progress:
        progress("write", time.perf_counter() - clock)
    return folder
