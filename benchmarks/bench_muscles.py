"""Time the muscles and the whole hip phantom, and report how much of the soft tissue is muscle.

Prints: the bone model cold and cached; the muscle field sampled once per anatomy; the muscle union
alone rasterized at 1.5 mm; the whole phantom at 1.5 mm and at 256^3 (supersampling 2); muscle
share of soft tissue by level and the intermuscular fat at the femoral heads.

Usage: python benchmarks/bench_muscles.py [--bulk 1.0] [--threads 2] [--save labels.npz]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from nmosim.phantoms.anatomy import build_anatomy, muscle_field_for, scene_bounds
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.rasterize import rasterize
from nmosim.phantoms.skeleton import skeleton
from nmosim.phantoms.spec import AnatomySpec


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:6.2f} s wall, {self.cpu:6.2f} s CPU"


def soft_tissue_report(r, grid: Grid) -> None:
    zs = grid.origin_mm[2] + np.arange(grid.shape[0]) * grid.spacing_mm[2]
    fat_all, muscle_all = r.tissue_fraction(Tissue.FAT), r.tissue_fraction(Tissue.MUSCLE)
    for z0, z1 in ((-130, -100), (-60, -30), (-10, 10), (0, 30), (60, 90), (100, 130)):
        sl = (zs >= z0) & (zs <= z1)
        fat, muscle = fat_all[sl].sum(), muscle_all[sl].sum()
        print(f"  z {z0:5d}..{z1:4d} mm: muscle {100 * muscle / (fat + muscle):5.1f} % of fat + muscle")
    # Intermuscular fat at the heads (z -10..10 mm): fat in the body that is not subcutaneous,
    # i.e. deeper than 25 mm from the skin's outline in the slice.
    from scipy import ndimage

    sl = (zs >= -10) & (zs <= 10)
    body = r.structures[sl] != Structure.BACKGROUND
    depth = np.stack([ndimage.distance_transform_edt(b, sampling=grid.spacing_mm[1::-1][::-1]) for b in body])
    deep = depth > 25.0
    fat = fat_all[sl][deep].sum()
    muscle = muscle_all[sl][deep].sum()
    print(f"  heads z -10..10 mm, deeper than 25 mm: fat {100 * fat / (fat + muscle):5.1f} % of fat + muscle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bulk", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", default="")
    args = parser.parse_args()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{os.cpu_count()} cores, {args.threads} threads; load average {load}")
    spec = AnatomySpec(muscle_bulk=args.bulk)
    with Clock() as c:
        skeleton(spec)
    print(f"bone model cold:        {c}")
    with Clock() as c:
        skeleton(spec)
    print(f"bone model cached:      {c}")
    lo, hi = scene_bounds(spec)
    grid = Grid.covering(tuple(lo), tuple(hi), 1.5)
    with Clock() as c:
        parts = build_anatomy(spec, np.random.default_rng(0))
        muscles = next(p for p in parts if p.name == "muscles")
        muscles.shape.bounds()  # samples the muscle field
    print(f"muscle field sampled:   {c}")
    with Clock() as c:
        rasterize([muscles], grid, supersampling=2, threads=args.threads)
    print(f"muscle union {grid.shape} 1.5 mm: {c}")
    with Clock() as c:
        r = rasterize(parts, grid, supersampling=2, threads=args.threads)
    print(f"whole phantom {grid.shape} 1.5 mm: {c}")
    soft_tissue_report(r, grid)
    if args.save:
        np.savez_compressed(args.save, structures=r.structures, tissues=r.tissues)
    n = 256
    size = (hi - lo) / n
    big = Grid.centered((n, n, n), tuple(size), tuple((lo + hi) / 2))
    with Clock() as c:
        rasterize(parts, big, supersampling=2, threads=args.threads)
    print(f"whole phantom 256^3 ({', '.join(f'{s:.2f}' for s in size)} mm): {c}")
    with Clock() as c:
        muscle_field_for(AnatomySpec(muscle_bulk=args.bulk * 0.999)).shape_of((0,)).bounds()
    print(f"muscle field of another anatomy (bones cached): {c}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"load average after: {load}")


if __name__ == "__main__":
    main()
