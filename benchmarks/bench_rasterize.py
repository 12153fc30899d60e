"""Time the rasterization of the full hip scene (voxels per second) and how it grows with size.

Usage: python benchmarks/bench_rasterize.py [--sizes 128 256 384] [--supersampling 1 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from nmosim.phantoms.anatomy import scene_bounds
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.phantom import build_phantom
from nmosim.phantoms.spec import AnatomySpec


def scene_grid(phantom, n: int) -> Grid:
    lo, hi = phantom.bounds()
    spacing = tuple((hi - lo) / n)
    return Grid.centered((n, n, n), spacing, tuple((lo + hi) / 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 384])
    parser.add_argument("--supersampling", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    phantom = build_phantom(AnatomySpec(), np.random.default_rng(0))
    cold = time.perf_counter() - start
    start = time.perf_counter()
    build_phantom(AnatomySpec(), np.random.default_rng(0))
    warm = time.perf_counter() - start
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"hip scene: {len(phantom.parts)} parts; {os.cpu_count()} cores; load average {load}")
    print(f"build: {cold:.2f} s with the bone model cold, {warm:.2f} s cached")
    lo, hi = scene_bounds(AnatomySpec())
    grid = Grid.covering(tuple(lo), tuple(hi), 1.5)
    start, cpu = time.perf_counter(), time.process_time()
    phantom.rasterize(grid, supersampling=2)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"scene grid {grid.shape} at 1.5 mm, supersampling 2: {wall:.2f} s wall, {cpu:.2f} s CPU")
    print(f"{'size':>6} {'ss':>3} {'seconds':>9} {'Mvoxel/s':>9} {'partial %':>9}")
    results = {}
    for s in args.supersampling:
        for n in args.sizes:
            grid = scene_grid(phantom, n)
            best = np.inf
            for _ in range(args.repeats if n <= 256 else 1):
                start = time.perf_counter()
                labels = phantom.rasterize(grid, supersampling=s)
                best = min(best, time.perf_counter() - start)
            voxels = n**3
            results[(s, n)] = best
            mixed = 100.0 * labels.mixed_index.size / voxels
            print(f"{n:>5}^3 {s:>3} {best:>9.2f} {voxels / best / 1e6:>9.2f} {mixed:>9.2f}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"load average after: {load}")
    for s in args.supersampling:
        sizes = [n for n in args.sizes if (s, n) in results]
        if len(sizes) >= 2:
            times = np.array([results[(s, n)] for n in sizes])
            slope = np.polyfit(np.log(sizes), np.log(times), 1)[0]
            print(f"supersampling {s}: time grows as n^{slope:.2f} (n^3 voxels; a surface grows as n^2)")


if __name__ == "__main__":
    main()
