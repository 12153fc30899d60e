"""Time the whole hip phantom at 256^3 stage by stage: bones, per-anatomy sampling, rasterization.

Prints wall and CPU seconds of: the bone model (cold, cached); the work done once per anatomy
(the skin outline and the muscle field sampled on their lattices); the rasterization of the
heaviest parts alone and of the whole phantom (supersampling 2); and the total for a new anatomy
whose bones are cached (sampling plus rasterization), with the load average before and after.

Usage: python benchmarks/bench_phantom.py [--threads 2] [--size 256] [--repeat 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

from nmosim.phantoms import envelope
from nmosim.phantoms.anatomy import build_anatomy, muscle_field_for, scene_bounds
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.rasterize import rasterize
from nmosim.phantoms.skeleton import skeleton
from nmosim.phantoms.spec import AnatomySpec

HEAVY = ("body", "muscles", "pelvis", "femur_right", "femur_left")


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:6.2f} s wall, {self.cpu:6.2f} s CPU"


def load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def sample_once(spec: AnatomySpec) -> tuple[list, Clock, Clock, Clock]:
    """The parts of ``spec`` with the skin and the muscle field sampled: (parts, skin, muscles, build)."""
    with Clock() as skin:
        if hasattr(envelope, "sampled_body_shape"):
            envelope.sampled_body_shape(spec).bounds()
    with Clock() as muscles:
        mf = muscle_field_for(spec)
        mf.shape_of(tuple(range(len(mf.names)))).bounds()  # samples the field and reads the union
    with Clock() as build:
        parts = build_anatomy(spec, np.random.default_rng(0))
        for p in parts:
            p.shape.bounds()
    return parts, skin, muscles, build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1, help="whole-phantom rasterizations (best shown)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, {args.threads} threads; load average {load()}")
    spec = AnatomySpec()
    with Clock() as c:
        skeleton(spec)
    print(f"bone model cold:            {c}")
    with Clock() as c:
        skeleton(spec)
    print(f"bone model cached:          {c}")
    parts, skin, muscles, build = sample_once(spec)
    print(f"skin sampled:               {skin}")
    print(f"muscle field sampled:       {muscles}")
    print(f"parts built:                {build}")

    lo, hi = scene_bounds(spec)
    n = args.size
    size = (hi - lo) / n
    grid = Grid.centered((n, n, n), tuple(size), tuple((lo + hi) / 2))
    print(f"grid {n}^3, spacing {', '.join(f'{s:.2f}' for s in size)} mm, supersampling 2")
    by_name = {p.name: p for p in parts}
    for name in HEAVY:
        with Clock() as c:
            rasterize([by_name[name]], grid, supersampling=2, threads=1)
        print(f"  {name:24s} alone, 1 thread: {c}")
    rest = [p for p in parts if p.name not in HEAVY]
    with Clock() as c:
        rasterize(rest, grid, supersampling=2, threads=1)
    print(f"  {len(rest)} other parts, 1 thread:   {c}")
    best = None
    for _ in range(args.repeat):
        with Clock() as c:
            rasterize(parts, grid, supersampling=2, threads=args.threads)
        best = c if best is None or c.wall < best.wall else best
    print(f"whole phantom rasterized:   {best}")

    # A new anatomy with the same bones: everything but the bone model is done again.
    other = dataclasses.replace(spec, muscle_bulk=spec.muscle_bulk * 0.999)
    with Clock() as total:
        parts, skin, muscles, build = sample_once(other)
        with Clock() as raster:
            rasterize(parts, grid, supersampling=2, threads=args.threads)
    print(f"new anatomy (bones cached): {total}")
    print(f"  skin {skin.wall:.2f} s + muscles {muscles.wall:.2f} s + parts {build.wall:.2f} s sampled/built")
    print(f"  + rasterized {raster.wall:.2f} s (wall)")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
