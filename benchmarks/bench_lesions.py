"""Cost of the lesion model: build and rasterize a phase d phantom against a phase none one.

Usage: python benchmarks/bench_lesions.py [--size 256] [--seeds 1 2 3]
Building includes honouring the requested phase by measurement; rasterization is of the whole
scene on a size^3 grid with supersampling 2.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from nmosim.phantoms.grid import Grid
from nmosim.phantoms.lesions import build_case_phantom


def scene_grid(phantom, n: int) -> Grid:
    lo, hi = phantom.bounds()
    return Grid.centered((n, n, n), tuple((hi - lo) / n), tuple((lo + hi) / 2))


def timed(phase: str, seed: int, n: int) -> tuple[float, float]:
    start = time.perf_counter()
    phantom = build_case_phantom(np.random.default_rng(seed), phase=phase)
    built = time.perf_counter() - start
    grid = scene_grid(phantom, n)
    start = time.perf_counter()
    phantom.rasterize(grid, supersampling=2)
    return built, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.2f}; grid {args.size}^3, supersampling 2")
    totals = {}
    for phase in ("none", "d"):
        rows = [timed(phase, seed, args.size) for seed in args.seeds]
        build = float(np.median([r[0] for r in rows]))
        raster = float(np.median([r[1] for r in rows]))
        totals[phase] = build + raster
        total = build + raster
        print(f"phase {phase:>4}: build {build:6.2f} s  rasterize {raster:6.2f} s  total {total:6.2f} s")
    print(f"phase d / phase none: {totals['d'] / totals['none']:.2f} (target < 1.5)")


if __name__ == "__main__":
    main()
