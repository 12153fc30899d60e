"""Compare the skin read from its lattice with the exact outline, and time its sampling.

For a few anatomies: CPU and wall seconds to sample the skin, its slopes, the Dice coefficient of
the two bodies on a 1.5 mm lattice over the scene, and how far from the exact surface (its distance,
mm, and that times the body's rescale factor, an upper bound in mm) the voxels that differ lie.

Usage: python benchmarks/skin_lattice.py [--seeds 1 2] [--step 1.5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nmosim.phantoms.envelope import body_shape, sampled_body_shape
from nmosim.phantoms.skeleton import SCENE_Z_MM, skeleton
from nmosim.phantoms.spec import AnatomySpec, sample_anatomy


def compare(spec: AnatomySpec, step: float) -> None:
    skeleton(spec)
    exact = body_shape(spec)
    wall, cpu = time.perf_counter(), time.process_time()
    sampled = sampled_body_shape(spec)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"  sampled in {wall:.2f} s wall, {cpu:.2f} s CPU; {sampled.values.size} nodes")
    print(f"  slopes: band {sampled.slope_band:.4f}, elsewhere {sampled.slope_rest:.4f}")
    lo, hi = exact.bounds()
    xs, ys = np.arange(lo[0], hi[0], step), np.arange(lo[1], hi[1], step)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    both = either = 0
    worst = 0.0
    for z in np.arange(SCENE_Z_MM[0], SCENE_Z_MM[1], step):
        pts = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, z)], axis=1)
        d = exact.sdf(pts)
        a, b = d < 0, sampled.sdf(pts) < 0
        both += int((a & b).sum())
        either += int(a.sum() + b.sum())
        if (a != b).any():
            worst = max(worst, float(np.abs(d[a != b]).max()))
    print(f"  Dice {2 * both / either:.6f} on a {step} mm lattice; {either - 2 * both} voxels differ")
    print(
        f"  farthest differing voxel: exact distance {worst:.3f} mm (at most {worst * exact.factor:.3f} mm)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--step", type=float, default=1.5)
    args = parser.parse_args()
    specs = [("default", AnatomySpec())] + [
        (f"seed {s}", sample_anatomy(np.random.default_rng(s))) for s in args.seeds
    ]
    for name, spec in specs:
        print(name)
        compare(spec, args.step)


if __name__ == "__main__":
    main()
