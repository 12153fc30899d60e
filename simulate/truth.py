"""The truth.json content of a phantom: grades, gaps and volumes measured on a fine grid, provenance.

Measures labels of the analytic scene; it images nothing and writes no files.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from nmosim.phantoms import bone_measures as measures
from nmosim.phantoms.grading import COUNTED_HO_TISSUE_NAMES
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Structure
from nmosim.phantoms.lesions import lesion_truth
from nmosim.phantoms.phantom import Phantom
from nmosim.phantoms.progression import GRADE_PHASE
from nmosim.phantoms.rasterize import Rasterization, rasterize
from nmosim.phantoms.skeleton import hip_landmarks, skeleton
from nmosim.phantoms.spec import AnatomySpec
from nmosim.simulate.provenance import TRUTH_SCHEMA_VERSION, software_versions

TRUTH_SPACING_MM = 1.0  # grid on which grades, gaps and volumes of truth.json are measured
TRUTH_MARGIN_MM = np.array([95.0, 95.0, 0.0])


def truth_labels(phantom: Phantom, threads: int | None = None, xp: ModuleType | None = None) -> Rasterization:
    """The phantom rasterized on a fine grid around both hips, for measuring the truth.

    One sample per voxel at ``TRUTH_SPACING_MM``: labels are those of the analytic scene at the
    voxel centres, independent of any imaging grid. ``xp``: the array namespace that classifies
    (default numpy; CuPy's on a GPU, see :func:`nmosim.phantoms.rasterize.rasterize`).
    """
    head = phantom.landmarks.head_center
    lo = np.array([-head[0], -95.0, -150.0]) - TRUTH_MARGIN_MM * [1, 0, 0]
    hi = np.array([head[0], 110.0, 95.0]) + TRUTH_MARGIN_MM * [1, 0, 0]
    grid = Grid.covering(tuple(lo), tuple(hi), TRUTH_SPACING_MM)
    return rasterize(phantom.parts, grid, 1, threads, xp=xp)  # Phantom.rasterize, on xp


def bone_truth(anatomy: AnatomySpec) -> dict:
    """The shape model the bones come from (name, package, version, licence, mode weights) and the
    morphology measured on its meshes: head diameter, neck-shaft angle and anteversion per side,
    pelvic width and inter-ASIS distance (mm, degrees)."""
    bones = skeleton(anatomy).bones
    sides = {
        side: {
            "head_diameter_mm": round(measures.head_diameter_mm(bones, side), 2),
            "neck_shaft_angle_deg": round(measures.neck_shaft_angle_deg(bones, side), 2),
            "anteversion_deg": round(measures.anteversion_deg(bones, side), 2),
            "femoral_length_mm": round(measures.femoral_length_mm(bones, side), 1),
        }
        for side in ("right", "left")
    }
    return {
        "model": dict(bones.model),
        "weights_sd": {k: [round(float(w), 4) for w in v] for k, v in bones.weights_sd.items()},
        "pelvic_width_mm": round(measures.pelvic_width_mm(bones), 1),
        "inter_asis_mm": round(measures.inter_asis_mm(bones), 1),
        **sides,
    }


def left_landmarks(anatomy: AnatomySpec) -> dict:
    """Landmarks of the left hip in the patient frame (mm; the left hip at x < 0)."""
    return hip_landmarks(anatomy, "left").mirrored().to_dict()


def _measured_phase(measured: dict, index_side: str | None) -> str:
    """The phase that the index hip's measured grade stands for (the worse hip if none is set)."""
    grades = {side: measured[side]["brooker_grade"] for side in ("right", "left")}
    grade = grades[index_side] if index_side in grades else max(grades.values())
    return GRADE_PHASE[grade]


def _measured_pattern(measured: dict) -> str:
    """ "none", "unilateral" or "bilateral": how many hips hold HO voxels in the labels."""
    sides = sum(1 for side in ("right", "left") if measured[side]["ho_volume_ml"] > 0)
    return ("none", "unilateral", "bilateral")[sides]


def phantom_truth(
    phantom: Phantom,
    labels: Rasterization,
    case_id: str | None = None,
    threads: int | None = None,
    xp: ModuleType | None = None,
) -> dict:
    """The truth.json content of a phantom whose labels were written on ``labels.grid``.

    ``case_id`` is the case folder's name; None in memory until the case is written. ``xp``: the
    array namespace that rasterizes the truth grid (default numpy).
    """
    meta = dict(phantom.metadata)
    meta.pop("pattern", None)  # the plan's; truth records what the labels hold
    fine = truth_labels(phantom, threads, xp)
    measured = lesion_truth(fine, phantom)
    voxel_ml = labels.grid.voxel_volume_mm3 / 1000.0
    return {
        "schema_version": TRUTH_SCHEMA_VERSION,
        "case_id": case_id,
        "seed": meta.pop("seed", None),
        "case_index": meta.pop("case_index", 0),
        "phase": _measured_phase(measured, meta.get("index_side")),
        "requested_phase": meta.pop("phase", "none"),
        "weeks_since_injury": meta.pop("weeks_since_injury", None),
        # Which hips have HO at this time, measured from the labels: "none", "unilateral" or
        # "bilateral"; and the dominant (index) hip of the plan, None without HO (DOMAIN.md 2.3).
        "pattern": _measured_pattern(measured),
        "dominant_side": meta.pop("dominant_side", None),
        # The tissue classes that the Brooker grade counts as HO bone (grading.py, DOMAIN.md 1.1, 2.6).
        "brooker_counted_tissues": list(COUNTED_HO_TISSUE_NAMES),
        "right": measured["right"],
        "left": measured["left"],
        "truth_grid": {**fine.grid.to_dict(), "supersampling": fine.supersampling},
        "labels_ho_volume_ml": {
            side: round(float((labels.structures == s).sum()) * voxel_ml, 4)
            for side, s in (("right", Structure.HO_RIGHT), ("left", Structure.HO_LEFT))
        },
        "anatomy": phantom.anatomy.to_dict(),
        "bones": bone_truth(phantom.anatomy),
        "landmarks_right_mm": phantom.landmarks.to_dict(),
        "landmarks_left_mm": left_landmarks(phantom.anatomy),
        "grid": labels.grid.to_dict(),
        "supersampling": labels.supersampling,
        "generation": meta,
        "software": software_versions(),
    }


def preview_center(truth: dict) -> np.ndarray:
    """Where previews cut (mm, x y z): through the largest lesion of the worse hip, else its femoral head."""
    sides = sorted(("right", "left"), key=lambda side: truth[side]["brooker_grade"], reverse=True)
    lesions = truth[sides[0]]["lesions"]
    if lesions:
        return np.asarray(max(lesions, key=lambda d: d["volume_ml"])["centroid_mm"])
    head = np.asarray(truth["landmarks_right_mm"]["head_center"], float)
    return head if sides[0] == "right" else head * [-1, 1, 1]
