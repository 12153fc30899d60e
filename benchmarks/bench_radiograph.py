"""Time of the AP radiograph stage (rasterize + basis maps + projection, blur, scatter, processing).

Usage: python benchmarks/bench_radiograph.py [--seed 1] [--phase d] [--repeats 3] [--baseline FILE]
``--baseline`` names an older radiograph module (a .py file) to time the same stage with, for a
before/after comparison on the same machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import numpy as np

import nmosim
from nmosim.simulate import pipeline, radiograph


def stage_seconds(phantom, module, geometry, repeats: int) -> float:
    """Fastest of ``repeats`` runs of the radiograph stage with ``module.simulate_radiograph``."""
    best = np.inf
    original = pipeline.simulate_radiograph
    pipeline.simulate_radiograph = module.simulate_radiograph
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            pipeline.ap_radiograph(phantom, 1.5, np.random.default_rng(0), geometry=geometry)
            best = min(best, time.perf_counter() - t0)
    finally:
        pipeline.simulate_radiograph = original
    return best


def projection_cost(phantom) -> None:
    """Seconds of one cone projection of the water map at 1.0 and 0.5 mm pitch, extrapolated to
    0.15 mm by the pixel count (the cost is one interpolation per pixel and plane)."""
    geometry = radiograph.RadiographGeometry()
    grid = phantom.grid(2.0)
    labels = phantom.rasterize(grid, supersampling=1)
    water, _ = pipeline.basis_maps(phantom, labels, pipeline.physics.tube_spectrum(geometry.kvp, 2.5))
    for pitch in (1.0, 0.5):
        t0 = time.perf_counter()
        radiograph.cone_projection(water, grid, geometry, pitch)
        seconds = time.perf_counter() - t0
        fine = seconds * (pitch / 0.15) ** 2
        print(f"one projection at {pitch} mm: {seconds:.2f} s; at 0.15 mm ~{fine:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phase", default="d")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=None)
    parser.add_argument("--pitch-cost", action="store_true", help="time one projection at 1.0 and 0.5 mm")
    args = parser.parse_args()
    phantom = nmosim.build_phantom(nmosim.CaseSpec(seed=args.seed, phase=args.phase))
    new = stage_seconds(phantom, radiograph, radiograph.RadiographGeometry(), args.repeats)
    print(f"radiograph stage, this code: {new:.2f} s")
    if args.pitch_cost:
        projection_cost(phantom)
    if args.baseline:
        spec = importlib.util.spec_from_file_location("baseline_radiograph", args.baseline)
        old = importlib.util.module_from_spec(spec)
        sys.modules["baseline_radiograph"] = old  # dataclasses look their module up
        spec.loader.exec_module(old)
        base = stage_seconds(phantom, old, old.RadiographGeometry(), args.repeats)
        print(f"radiograph stage, baseline: {base:.2f} s; ratio {new / base:.2f}")


if __name__ == "__main__":
    main()
