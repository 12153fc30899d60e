"""Time the body envelope, vessels, nerves and pelvis: building the scene and rasterizing those parts.

CPU seconds (process time, all threads) are reported beside wall seconds, as the wall time on a
shared machine follows its load. The bone model is built once before timing.

Usage: python benchmarks/bench_envelope.py [--size 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from nmosim.phantoms.grid import Grid
from nmosim.phantoms.phantom import build_phantom
from nmosim.phantoms.rasterize import rasterize
from nmosim.phantoms.skeleton import skeleton
from nmosim.phantoms.spec import AnatomySpec

GROUPS = {
    "body": ("body",),
    "vessels and nerves": ("femoral_", "sciatic_"),
    "pelvis (cortex layer)": ("pelvis",),
}


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    spec = AnatomySpec()
    skeleton(spec)  # the bone model, cached: not timed
    phantom, wall, cpu = _timed(lambda: build_phantom(spec, np.random.default_rng(0)))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{os.cpu_count()} cores, load {load}; build (bones cached): {wall:.2f} s wall, {cpu:.2f} s CPU")
    lo, hi = phantom.bounds()
    n = args.size
    grid = Grid.centered((n, n, n), tuple((hi - lo) / n), tuple((lo + hi) / 2))
    for label, prefixes in GROUPS.items():
        parts = [p for p in phantom.parts if p.name.startswith(prefixes)]
        _, wall, cpu = _timed(lambda parts=parts: rasterize(parts, grid, 2, args.threads))
        what = f"{label:>22} ({len(parts)} parts) at {n}^3, supersampling 2"
        print(f"{what}: {wall:6.2f} s wall, {cpu:6.2f} s CPU")


if __name__ == "__main__":
    main()
