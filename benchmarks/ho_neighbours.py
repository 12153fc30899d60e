"""What the HO surface borders: the share of its outside neighbours that are fat, muscle, bone or other.

Usage: python benchmarks/ho_neighbours.py [--seeds 0 1 2] [--phases a b c d] [--spacing 1.5]

Each case is built through CaseSpec (the dataset path), rasterized on a crop around its HO (one sample
per voxel) and every face of an HO voxel that touches a non-HO voxel is classed by the tissue of that
voxel: fat, muscle (normal, atrophic, oedematous), bone (native pelvis or femur), other (vessel, nerve,
joint space, soft tissue). Also prints each hip's HO volume (ml, voxel count x voxel volume).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import nmosim
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import BONE_STRUCTURES, HO_STRUCTURES, Tissue

MUSCLE = (Tissue.MUSCLE, Tissue.MUSCLE_ATROPHIC, Tissue.MUSCLE_OEDEMATOUS)
CLASSES = ("fat", "muscle", "bone", "other")


def neighbour_counts(structures: np.ndarray, tissues: np.ndarray) -> dict[str, int]:
    """Faces between HO and non-HO voxels, by the class of the non-HO voxel."""
    ho = np.isin(structures, HO_STRUCTURES)
    counts = dict.fromkeys(CLASSES, 0)
    for axis in range(3):
        for shift in (1, -1):
            n_ho = np.roll(ho, shift, axis)
            n_s = np.roll(structures, shift, axis)
            n_t = np.roll(tissues, shift, axis)
            face = ho & ~n_ho
            edge = [slice(None)] * 3
            edge[axis] = 0 if shift == 1 else -1  # rolled in from the far side: not a neighbour
            face[tuple(edge)] = False
            s, t = n_s[face], n_t[face]
            bone = np.isin(s, BONE_STRUCTURES)
            counts["bone"] += int(bone.sum())
            counts["fat"] += int(((t == Tissue.FAT) & ~bone).sum())
            counts["muscle"] += int((np.isin(t, MUSCLE) & ~bone).sum())
    counts["other"] = 0
    total = int(sum(counts.values()))
    faces = 0
    for axis in range(3):
        faces += int((ho & ~np.roll(ho, 1, axis)).sum() + (ho & ~np.roll(ho, -1, axis)).sum())
    counts["other"] = faces - total
    return counts


def case_counts(seed: int, phase: str, spacing_mm: float) -> tuple[dict[str, int], dict[str, float]]:
    phantom = nmosim.build_phantom(nmosim.CaseSpec(phase=phase, seed=seed), threads=1)
    ho = [p for p in phantom.parts if p.structure in HO_STRUCTURES]
    if not ho:
        return dict.fromkeys(CLASSES, 0), {}
    lo = np.min([p.shape.bounds()[0] for p in ho], axis=0) - 6.0
    hi = np.max([p.shape.bounds()[1] for p in ho], axis=0) + 6.0
    grid = Grid.covering(tuple(lo), tuple(hi), spacing_mm)
    r = phantom.rasterize(grid, 1, threads=1)
    voxel_ml = grid.voxel_volume_mm3 / 1000.0
    volumes = {
        side: round(float((r.structures == s).sum()) * voxel_ml, 1)
        for side, s in zip(("right", "left"), HO_STRUCTURES, strict=True)
    }
    return neighbour_counts(r.structures, r.tissues), volumes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--phases", nargs="+", default=["a", "b", "c", "d"])
    parser.add_argument("--spacing", type=float, default=1.5)
    args = parser.parse_args()
    for phase in args.phases:
        total = dict.fromkeys(CLASSES, 0)
        for seed in args.seeds:
            start = time.perf_counter()
            counts, volumes = case_counts(seed, phase, args.spacing)
            n = max(1, sum(counts.values()))
            shares = "  ".join(f"{k} {100 * v / n:5.1f} %" for k, v in counts.items())
            took = time.perf_counter() - start
            print(f"phase {phase} seed {seed:3d}: {shares}  HO ml {volumes}  ({took:.0f} s)", flush=True)
            for k in CLASSES:
                total[k] += counts[k]
        n = max(1, sum(total.values()))
        shares = "  ".join(f"{k} {100 * v / n:5.1f} %" for k, v in total.items())
        print(f"phase {phase} all     : {shares}", flush=True)


if __name__ == "__main__":
    main()
