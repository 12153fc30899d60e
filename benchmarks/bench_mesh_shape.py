"""Time a pelvis-sized mesh to a MeshShape and its rasterization, against the analytic shape.

The test surface is a genus-2 "pelvis": two tilted rings (the obturator foramina) joined by a
bar and two wings, meshed by marching cubes from an analytic signed distance, so the exact
volume and distance are known. Also compares the edt package with scipy's distance transform.

Usage: python benchmarks/bench_mesh_shape.py [--step 1.7] [--resolution 1.0] [--size 256]
"""

from __future__ import annotations

import argparse
import os
import time

import edt
import numpy as np
from scipy import ndimage
from skimage.measure import marching_cubes

from nmosim.phantoms.grid import Grid
from nmosim.phantoms.mesh import TriangleMesh
from nmosim.phantoms.mesh_shape import is_watertight, mesh_shape, mesh_volume_mm3
from nmosim.phantoms.rasterize import Layer, Part, rasterize
from nmosim.phantoms.shapes import Capsule, Shape


class _Ring(Shape):
    """Torus of radii ``big`` and ``small`` (mm) around ``axis`` through ``center``."""

    def __init__(self, center, axis, big: float, small: float) -> None:
        self.center = np.asarray(center, float)
        self.axis = np.asarray(axis, float) / np.linalg.norm(axis)
        self.big, self.small = big, small

    def sdf(self, points: np.ndarray) -> np.ndarray:
        q = points - self.center
        along = q @ self.axis
        radial = np.sqrt(np.maximum(np.einsum("ij,ij->i", q, q) - along**2, 0.0))
        return np.hypot(radial - self.big, along) - self.small

    def bounds(self):
        r = self.big + self.small
        return self.center - r, self.center + r


def pelvis_like() -> Shape:
    rings = [_Ring((60, 0, 0), (1, 0.3, 0), 28, 9), _Ring((-60, 0, 0), (1, -0.3, 0), 28, 9)]
    bar = Capsule((-60, 25, 10), (60, 25, 10), 10)
    wings = [Capsule((70, 0, 20), (110, 70, 95), 14, 22), Capsule((-70, 0, 20), (-110, 70, 95), 14, 22)]
    parts = rings + [bar] + wings

    class _U(Shape):
        def sdf(self, points):
            return np.min([p.sdf(points) for p in parts], axis=0)

        def bounds(self):
            los, his = zip(*(p.bounds() for p in parts), strict=True)
            return np.min(los, axis=0), np.max(his, axis=0)

    return _U()


def marching_mesh(shape: Shape, step: float) -> TriangleMesh:
    lo, hi = shape.bounds()
    axes = [np.arange(lo[a] - 2 * step, hi[a] + 2 * step, step) for a in range(3)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    values = -shape.sdf(np.stack([x.ravel(), y.ravel(), z.ravel()], 1)).reshape(x.shape)
    v, f, _, _ = marching_cubes(values, 0.0, spacing=(step,) * 3)
    origin = np.array([a[0] for a in axes])
    return TriangleMesh(v + origin, np.ascontiguousarray(f[:, ::-1]).astype(np.int64))


def best_of(fn, repeats: int):
    best, out = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step", type=float, default=1.7, help="marching-cubes step (mm)")
    parser.add_argument("--resolution", type=float, nargs="+", default=[1.0, 1.5])
    parser.add_argument("--size", type=int, default=256, help="raster grid edge (voxels)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layer", type=float, default=3.0, help="cortex depth (mm)")
    args = parser.parse_args()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{os.cpu_count()} cores; load average {load}")
    analytic = pelvis_like()
    mesh = marching_mesh(analytic, args.step)
    lo, hi = mesh.bounds()
    print(
        f"mesh: {len(mesh.faces)} triangles, box {np.round(hi - lo)} mm, watertight {is_watertight(mesh)}, "
        f"volume {mesh_volume_mm3(mesh) / 1e3:.1f} cm3"
    )
    pad = 10.0
    spacing = float(np.max(hi - lo + 2 * pad)) / args.size
    grid = Grid.centered((args.size,) * 3, (spacing,) * 3, tuple((lo + hi) / 2))
    print(f"raster grid {args.size}^3 at {spacing:.2f} mm")

    t, ref = best_of(lambda: rasterize([Part("p", analytic, 1, 2)], grid, supersampling=2), 1)
    ref_volume = ref.tissue_fraction(2).sum() * grid.voxel_volume_mm3
    print(f"analytic shape rasterized: {t:.2f} s, volume {ref_volume / 1e3:.2f} cm3")
    cored = rasterize([Part("p", analytic, 1, 2, layers=(Layer(args.layer, 3),))], grid, supersampling=2)
    ref_core = cored.tissue_fraction(3).sum() * grid.voxel_volume_mm3
    print(f"  core under a {args.layer} mm layer (union of exact distances): {ref_core / 1e3:.2f} cm3")
    mesh_volume = mesh_volume_mm3(mesh)
    shapes = {}
    for h in args.resolution:
        t_build, shape = best_of(lambda h=h: mesh_shape(mesh, resolution_mm=h), args.repeats)
        shapes[h] = shape
        n = shape.values.size
        print(f"resolution {h} mm: grid {shape.values.shape} ({n / 1e6:.1f} M points), build {t_build:.2f} s")
        t_r, r = best_of(lambda s=shape: rasterize([Part("p", s, 1, 2)], grid, supersampling=2), args.repeats)
        volume = r.tissue_fraction(2).sum() * grid.voxel_volume_mm3
        agree = np.mean(r.tissues == ref.tissues)
        vs_ref, vs_mesh = 100 * (volume / ref_volume - 1), 100 * (volume / mesh_volume - 1)
        print(
            f"  rasterize 256^3 ss=2: {t_r:.2f} s, volume {volume / 1e3:.2f} cm3 "
            f"({vs_ref:+.2f} % vs analytic, {vs_mesh:+.2f} % vs mesh), labels agree {100 * agree:.3f} %, "
            f"mixed voxels {r.mixed_index.size}"
        )
        part = Part("p", shape, 1, 2, layers=(Layer(args.layer, 3),))
        t_l, r = best_of(lambda p=part: rasterize([p], grid, supersampling=2), 1)
        core = r.tissue_fraction(3).sum() * grid.voxel_volume_mm3
        print(
            f"  with a {args.layer} mm cortex layer: {t_l:.2f} s, core {core / 1e3:.2f} cm3 "
            f"({100 * (core / ref_core - 1):+.2f} % vs analytic)"
        )
        # The core boundary lies beyond the exact band: compare with a band that covers it.
        t_w, wide = best_of(lambda h=h: mesh_shape(mesh, resolution_mm=h, exact_mm=args.layer + 2 * h), 1)
        r = rasterize([Part("p", wide, 1, 2, layers=(Layer(args.layer, 3),))], grid, supersampling=2)
        core_wide = r.tissue_fraction(3).sum() * grid.voxel_volume_mm3
        print(
            f"  exact band {args.layer + 2 * h} mm: build {t_w:.2f} s, core {core_wide / 1e3:.2f} cm3 "
            f"(default band core {100 * (core / core_wide - 1):+.2f} %)"
        )
        points = np.random.default_rng(0).uniform(lo - 5, hi + 5, (1_000_000, 3))
        t_q, d = best_of(lambda s=shape, p=points: s.sdf(p), args.repeats)
        print(f"  sdf of 1e6 random points: {t_q:.3f} s")

    shape = shapes[min(shapes)]
    mask = np.abs(shape.values) > 2 * shape.resolution_mm
    t_edt, _ = best_of(lambda: edt.edt(mask, parallel=2), args.repeats)
    t_scipy, _ = best_of(lambda: ndimage.distance_transform_edt(mask), 1)
    print(
        f"distance transform of {mask.shape}: edt {t_edt:.3f} s, scipy {t_scipy:.3f} s, "
        f"scipy / edt = {t_scipy / t_edt:.1f}"
    )


if __name__ == "__main__":
    main()
