"""A dose and kernel gallery: one axial slice of a case's phantom re-imaged under several protocols.

Rebuilds the phantom from a truth.json and scans one slice per protocol; it draws and writes nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.lesions import PhaseNotMet
from nmosim.phantoms.progression import PHASES
from nmosim.simulate import ct, scanner
from nmosim.simulate.case_spec import CaseSpec, build_phantom
from nmosim.simulate.pipeline import basis_maps, case_grids, fit_protocol

GALLERY_MAS = (20.0, 200.0)  # a tenth of the dose beside the quick preset's 200 mAs (DOMAIN.md 4.3)
GALLERY_KERNELS = ("soft", "bone")
# Protocol fields copied from truth.json so that the gallery's scanner is the case's scanner.
_COPIED = ("kvp", "filtration_mm_al", "n_views", "slice_thickness_mm", "recon_pixel_mm", "recon_fov_mm",
           "electronic_noise_photons", "water_correction", "imaging_oversampling", "recon_method",
           "recon_iterations")  # fmt: skip


class GalleryUnavailable(Exception):
    """The case's phantom cannot be rebuilt from its truth.json (options not recorded there)."""


@dataclass(frozen=True)
class Gallery:
    """HU slices ``[ny, nx]`` keyed by (mAs, kernel), on the in-plane part of ``grid``, at ``z_mm``;
    ``noiseless`` holds the same slice scanned without noise, per kernel (noise = slice - noiseless)."""

    slices: dict[tuple[float, str], np.ndarray]
    noiseless: dict[str, np.ndarray]
    grid: Grid
    z_mm: float


def rebuild_phantom(truth: dict):
    """The phantom of a case folder, rebuilt from the seed and options in its truth.json.

    Raises GalleryUnavailable when the rebuilt anatomy or time point differs from the recorded one
    (the case was made with options truth.json does not record, such as anatomy overrides).
    """
    generation = truth.get("generation", {})
    phase = truth.get("requested_phase")
    spec = CaseSpec(
        seed=int(truth["seed"]),
        case_index=int(truth.get("case_index", 0)),
        phase=phase if phase in PHASES else None,
        weeks=None if phase in PHASES[1:] else truth.get("weeks_since_injury"),  # a phase fixes its weeks
        aetiology=generation.get("aetiology", "sci"),
    )
    try:
        phantom = build_phantom(spec)
    except (SpecError, PhaseNotMet) as error:
        raise GalleryUnavailable(f"the phantom cannot be rebuilt from truth.json ({error})") from None
    recorded = (
        truth.get("anatomy"),
        truth.get("weeks_since_injury"),
        len(generation.get("confounders") or []),
    )
    rebuilt = (
        phantom.anatomy.to_dict(),
        phantom.metadata.get("weeks_since_injury"),
        len(phantom.metadata.get("confounders") or []),
    )
    same = json.loads(json.dumps(rebuilt)) == json.loads(json.dumps(recorded))
    if not same:
        raise GalleryUnavailable("the phantom rebuilt from truth.json differs from the case's")
    return phantom


def dose_kernel_gallery(
    truth: dict,
    z_mm: float,
    mas_values: tuple[float, ...] = GALLERY_MAS,
    kernels: tuple[str, ...] = GALLERY_KERNELS,
) -> Gallery:
    """One slice at ``z_mm`` scanned at every (mAs, kernel) with the case's scanner, same noise seed."""
    phantom = rebuild_phantom(truth)
    recorded = truth.get("scanner", {})
    base = scanner.make_protocol(
        recorded.get("preset", "quick"), **{k: recorded[k] for k in _COPIED if k in recorded}
    )
    base = fit_protocol(base, phantom)
    half = base.slice_thickness_mm / 2
    recon, imaging = case_grids(phantom, base, (z_mm - half, z_mm + half))
    labels = phantom.rasterize(imaging, supersampling=1)
    water, bone = basis_maps(phantom, labels, ct.protocol_spectrum(base))
    slices = {}
    noiseless = {
        kernel: ct.simulate_ct(water, bone, imaging, recon, dataclasses.replace(base, kernel=kernel), None)[0]
        for kernel in kernels
    }
    for mas in mas_values:
        for kernel in kernels:
            protocol = dataclasses.replace(base, mas=float(mas), kernel=kernel)
            # One noise realisation per dose, shared by the kernels: only the filter differs.
            rng = np.random.default_rng(np.random.SeedSequence((int(truth["seed"]), int(mas * 1000))))
            hu = ct.simulate_ct(water, bone, imaging, recon, protocol, rng)
            slices[(float(mas), kernel)] = hu[0]
    return Gallery(slices=slices, noiseless=noiseless, grid=recon, z_mm=float(z_mm))
