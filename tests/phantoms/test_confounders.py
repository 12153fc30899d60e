"""Confounders are calcifications labelled ``confounder``, never HO, placed where DOMAIN.md 5 puts them."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.lesions import build_case_phantom


def test_negative_case_with_confounders_has_no_ho():
    phantom = build_case_phantom(np.random.default_rng(4), phase="none", confounders=True)
    conf = phantom.metadata["confounders"]
    assert conf
    parts = [p for p in phantom.parts if p.structure == Structure.CONFOUNDER]
    assert len(parts) == len(conf)
    assert not [p for p in phantom.parts if p.structure in (Structure.HO_RIGHT, Structure.HO_LEFT)]
    assert all(p.tissue in (Tissue.CALCIFICATION, Tissue.CORTICAL_BONE) for p in parts)
    centres = np.array([c["center_mm"] for c in conf])
    grid = Grid.covering(tuple(centres.min(0) - 25), tuple(centres.max(0) + 25), 1.0)
    r = phantom.rasterize(grid, 1)
    assert (r.structures == Structure.CONFOUNDER).any()
    assert not np.isin(r.structures, (Structure.HO_RIGHT, Structure.HO_LEFT)).any()


def test_vascular_calcification_hugs_the_artery_without_entering_it():
    for seed in range(40):
        phantom = build_case_phantom(np.random.default_rng(seed), phase="b", confounders=True)
        vascular = [c for c in phantom.metadata["confounders"] if c["kind"] == "vascular"]
        if vascular:
            break
    c = np.array(vascular[0]["center_mm"])
    grid = Grid.covering(tuple(c - 15), tuple(c + 15), 0.5)
    parts = [
        p for p in phantom.parts if p.name.startswith(("vascular_calc", "femoral_artery", "femoral_vein"))
    ]
    r = phantom.rasterize(grid, 1)
    calc = r.structures == Structure.CONFOUNDER
    vessel = r.structures == Structure.VESSEL
    assert calc.any() and parts
    # Adjacent: within a voxel or two of the vessel; HO never takes these voxels.
    grown = ndimage.binary_dilation(vessel, iterations=3)
    assert (calc & grown).sum() >= 0.9 * calc.sum()
    metadata_sides = {x["side"] for x in phantom.metadata["confounders"]}
    assert metadata_sides <= {"right", "left"}
