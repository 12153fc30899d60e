"""Measured truth of a phantom's lesions: per side grade, gap, HO volume by tissue, each lesion.

Measures rasterized labels; it builds no phantom and writes no files.
"""

from __future__ import annotations

import numpy as np

from nmosim.phantoms.grading import SIDES, counted_structures, grade_side
from nmosim.phantoms.labels import TISSUE_NAMES, Structure
from nmosim.phantoms.phantom import Phantom
from nmosim.phantoms.rasterize import Rasterization


def lesion_truth(rasterization: Rasterization, phantom: Phantom) -> dict:
    """Per side, measured from labels: Brooker grade, gap, HO volume (ml) in all, by tissue and as
    counted by the grade, and each lesion's volume (ml) and centroid (mm, x y z), with its location
    and maturity from metadata. The grade counts only HO of ``COUNTED_HO_TISSUES`` (grading.py)."""
    grid = rasterization.grid
    voxel_ml = grid.voxel_volume_mm3 / 1000.0
    known = {d["instance"]: d for d in phantom.metadata.get("lesions", [])}
    counted = counted_structures(rasterization.structures, rasterization.tissues)
    out = {}
    for side in SIDES:
        label = Structure.HO_RIGHT if side == "right" else Structure.HO_LEFT
        g = grade_side(counted, grid.spacing_mm, side, grid.origin_mm)
        ho = rasterization.structures == label
        tissues = np.bincount(rasterization.tissues[ho], minlength=len(TISSUE_NAMES))
        by_tissue = {TISSUE_NAMES[t]: round(float(n) * voxel_ml, 4) for t, n in enumerate(tissues) if n}
        lesions = []
        ids = rasterization.instances[ho]
        for instance in sorted(set(np.unique(ids).tolist()) - {0}):
            where = np.argwhere(ho & (rasterization.instances == instance))
            info = known.get(instance, {})
            lesions.append(
                {
                    "instance": int(instance),
                    "location": info.get("location"),
                    "maturity": info.get("maturity"),
                    "volume_ml": round(len(where) * voxel_ml, 4),
                    "centroid_mm": [round(float(v), 2) for v in grid.index_to_mm(where.mean(axis=0))],
                }
            )
        out[side] = {
            "brooker_grade": g.grade,
            "gap_mm": None if g.gap_mm is None else round(g.gap_mm, 3),
            "ho_volume_ml": round(float(ho.sum()) * voxel_ml, 4),
            "graded_ho_volume_ml": round(g.ho_volume_mm3 / 1000.0, 4),
            "ho_volume_ml_by_tissue": by_tissue,
            "lesions": lesions,
        }
    return out
