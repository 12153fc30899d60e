"""Time the rasterizer and the shapes' distances in numpy against another array-API namespace.

Run: ``python benchmarks/bench_rasterize_xp.py [--mm 3.0] [--supersampling 2] [--namespace auto]``.

``--namespace``: ``auto`` (CuPy when it sees a GPU, else numpy's own namespace, the module
``numpy`` itself instead of the ``array_api_compat`` wrapper the default path uses), ``cupy``,
``numpy`` or ``strict`` (array_api_strict: checks portability, not speed). Prints, for the hip
scene on a grid of ``--mm`` voxels and for the distances of a few shapes at 10^6 points, wall and
CPU seconds of both and their ratio (other / numpy). Labels are compared too: on numpy's and
array_api_strict's namespaces they must be the same bytes.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from nmosim.phantoms.anatomy import scene_bounds
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.phantom import build_phantom
from nmosim.phantoms.rasterize import rasterize
from nmosim.phantoms.shapes import runs_on_array_api, to_host
from nmosim.phantoms.spec import AnatomySpec


def _namespace(name: str):
    if name in ("auto", "cupy"):
        from nmosim.simulate import arrays

        if arrays.has_gpu_arrays():
            return "cupy", arrays.namespace("cuda")
        if name == "cupy":
            raise SystemExit("no CuPy with a GPU here")
    if name == "strict":
        import array_api_strict

        return "array_api_strict", array_api_strict
    return "numpy (module)", np


def _sync(xp) -> None:
    """Wait for the GPU, if any, so that wall times include the work."""
    if "cupy" in getattr(xp, "__name__", ""):
        import cupy

        cupy.cuda.Device().synchronize()


def _timed(fn, xp=None, repeat: int = 2):
    """Result, best wall seconds and the CPU seconds of that run."""
    best, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        out = fn()
        _sync(xp)
        wall = time.perf_counter() - wall0
        if wall < best:
            best, cpu = wall, time.process_time() - cpu0
    return out, best, cpu


def _same(a, b) -> str:
    fields = ("structures", "tissues", "instances", "mixed_index", "mixed_fractions")
    if all(np.array_equal(getattr(a, f), getattr(b, f)) for f in fields):
        return "identical"
    differ = int(((a.structures != b.structures) | (a.tissues != b.tissues)).sum())
    return f"{differ} voxels differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mm", type=float, default=3.0)
    parser.add_argument("--supersampling", type=int, default=2)
    parser.add_argument("--namespace", default="auto", choices=["auto", "cupy", "numpy", "strict"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--points", type=int, default=1_000_000)
    args = parser.parse_args()
    label, xp = _namespace(args.namespace)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load}; other namespace: {label}")

    phantom = build_phantom(AnatomySpec(), np.random.default_rng(0))
    on_host = [p.name for p in phantom.parts if not runs_on_array_api(p.shape)]
    print(f"hip scene: {len(phantom.parts)} parts; numpy-only on the host: {', '.join(on_host) or 'none'}")
    lo, hi = scene_bounds(AnatomySpec())
    grid = Grid.covering(tuple(lo), tuple(hi), args.mm)
    s = args.supersampling
    print(f"{'work':<40} {'numpy s':>9} {'cpu s':>7} {'other s':>9} {'cpu s':>7} {'ratio':>6}")

    def run(namespace):
        return lambda: rasterize(phantom.parts, grid, s, threads=args.threads, xp=namespace)

    ref, t_np, c_np = _timed(run(None))
    got, t_xp, c_xp = _timed(run(xp), xp)
    work = f"rasterize {grid.shape}, s={s}"
    times = f"{t_np:>9.2f} {c_np:>7.2f} {t_xp:>9.2f} {c_xp:>7.2f} {t_xp / t_np:>6.2f}"
    print(f"{work:<40} {times}  {_same(ref, got)}")

    pts = np.random.default_rng(0).uniform(lo, hi, size=(args.points, 3))
    pts_xp = xp.asarray(pts)
    for part in phantom.parts[:40]:
        if not runs_on_array_api(part.shape) or type(part.shape).__name__ in {"Sphere", "Capsule"}:
            continue
        d_np, t_np, c_np = _timed(lambda sh=part.shape: sh.sdf(pts))
        d_xp, t_xp, c_xp = _timed(lambda sh=part.shape: sh.sdf(pts_xp), xp)
        err = float(np.abs(to_host(d_xp) - d_np).max())
        work = f"sdf {part.name} ({type(part.shape).__name__}), {args.points} points"
        print(
            f"{work[:40]:<40} {t_np:>9.3f} {c_np:>7.3f} {t_xp:>9.3f} {c_xp:>7.3f} {t_xp / t_np:>6.2f}"
            f"  max |diff| {err:.1e} mm"
        )


if __name__ == "__main__":
    main()
