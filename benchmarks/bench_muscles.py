"""Time the muscle set rasterized at 1.5 mm on the default scene grid, and report how much of the
soft tissue it fills (usage: python benchmarks/bench_muscles.py [bulk] [threads])."""

from __future__ import annotations

import sys
import time

import numpy as np

from nmosim.phantoms.anatomy import body_shape, lean_shape, scene_bounds
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.muscles import muscle_parts, standin_landmarks
from nmosim.phantoms.rasterize import Part, rasterize
from nmosim.phantoms.spec import AnatomySpec


def main() -> None:
    bulk = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    spec = AnatomySpec()
    lo, hi = scene_bounds(spec)
    grid = Grid.covering(tuple(lo), tuple(hi), 1.5)
    t0 = time.perf_counter()
    parts = muscle_parts(standin_landmarks(spec), lean_shape(spec), bulk)
    t1 = time.perf_counter()
    c1 = time.process_time()
    body = Part("body", body_shape(spec), Structure.SOFT_TISSUE, Tissue.FAT)
    r = rasterize([body, *parts], grid, supersampling=2, threads=threads)
    t2 = time.perf_counter()
    c2 = time.process_time()
    print(f"grid {grid.shape} at 1.5 mm, {len(parts)} muscles, bulk {bulk}, {threads} threads")
    print(f"build {t1 - t0:.2f} s, rasterize {t2 - t1:.2f} s wall, {c2 - c1:.2f} s CPU")
    zs = grid.origin_mm[2] + np.arange(grid.shape[0]) * grid.spacing_mm[2]
    for z0, z1 in ((-130, -100), (-60, -30), (0, 30), (60, 90), (100, 130)):
        sl = (zs >= z0) & (zs <= z1)
        fat = r.tissue_fraction(Tissue.FAT)[sl].sum()
        muscle = r.tissue_fraction(Tissue.MUSCLE)[sl].sum()
        print(f"z {z0:5d}..{z1:4d} mm: muscle {100 * muscle / (fat + muscle):.1f} % of soft tissue")


if __name__ == "__main__":
    main()
