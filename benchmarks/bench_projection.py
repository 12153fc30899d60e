"""Time slice-wise fan-beam projection and FBP: nmosim's wrappers against bare ASTRA calls.

Run: ``python benchmarks/bench_projection.py [--slices 16] [--sizes 128 256 512] [--repeats 2] [--body]``.
For each slice size it times, on the same random slices (360 views x 512 bins; with ``--body``,
random values inside an elliptic body of 80 x 56 % of the slice, air's 0.001 around it, which
nmosim projects over the box around the body only):
  raw    bare ASTRA, sequential: one projector and algorithm, then per slice FP (fanflat) and
         the same FBP work as nmosim (fan -> parallel rebinning, numpy ramp filter) finished
         by ASTRA's parallel 'linear' BP; 'ideal N' is that time divided by N threads;
  fanbp  for reference, bare ASTRA FP plus a 360 degree fan-beam BP (line_fanflat),
         i.e. the cost of a fan-beam FBP done directly with ASTRA's CPU backprojector;
  ours   nmosim.simulate.backend.forward_project + nmosim.simulate.reconstruct.fbp with 1 and 2 threads;
  mat    the same inside backend.reused_projections, as a case projects its slabs: the CPU
         projects through a sparse matrix of ASTRA's kernel, built once; its build is in the
         time, spread over the slices (more slices spread it thinner; a case has hundreds).
         Planes whose matrix exceeds backend.MATRIX_MAX_WEIGHTS go through ASTRA: '-'.
nmosim's CPU FBP backprojects with its own pixel-driven loop (ASTRA's CPU parallel
backprojectors ripple by about 2 %), so 'ours / raw' compares different backprojectors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from functools import partial

import astra
import numpy as np

from nmosim.phantoms.grid import Grid
from nmosim.simulate import backend, fan_matrix
from nmosim.simulate.backend import forward_project
from nmosim.simulate.reconstruct import (
    fbp,
    filter_parallel,
    parallel_sampling,
    rebin_to_parallel,
)
from nmosim.simulate.scanner import make_protocol

FOV_MM = 256.0


def raw_astra(volume: np.ndarray, grid: Grid, protocol, fan_bp: bool = False) -> float:
    """Seconds for bare ASTRA FP + FBP-equivalent of every slice, sequential, objects reused."""
    start = time.perf_counter()
    vol_geom = backend.volume_geometry(grid)
    fan_geom, _ = backend.fan_geometry(grid, protocol)
    angles, t_step, n_t = parallel_sampling(protocol)
    par_geom, weights = backend.parallel_geometry(grid, angles, t_step, n_t)
    fan_proj = astra.create_projector("line_fanflat", fan_geom, vol_geom)
    par_proj = astra.create_projector("linear", par_geom, vol_geom)
    vol_id = astra.data2d.create("-vol", vol_geom, 0.0)
    sino_id = astra.data2d.create("-sino", fan_geom, 0.0)
    par_id = astra.data2d.create("-sino", par_geom, 0.0)
    rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
    fp_cfg = astra.astra_dict("FP")
    fp_cfg.update(ProjectorId=fan_proj, ProjectionDataId=sino_id, VolumeDataId=vol_id)
    bp_cfg = astra.astra_dict("BP")
    if fan_bp:
        bp_cfg.update(ProjectorId=fan_proj, ProjectionDataId=sino_id, ReconstructionDataId=rec_id)
    else:
        bp_cfg.update(ProjectorId=par_proj, ProjectionDataId=par_id, ReconstructionDataId=rec_id)
    fp_alg, bp_alg = astra.algorithm.create(fp_cfg), astra.algorithm.create(bp_cfg)
    cos_weight = np.cos(np.arctan(protocol.bin_offsets_mm() / protocol.source_to_detector_mm))
    scale = (np.pi / angles.size) * weights[:, None]
    for k in range(volume.shape[0]):
        astra.data2d.store(vol_id, volume[k])
        astra.algorithm.run(fp_alg)
        sino = astra.data2d.get_shared(sino_id)
        if fan_bp:  # cosine weighting and ramp filtering along the fan detector
            sino[...] = filter_parallel(sino * cos_weight, protocol.iso_bin_width_mm, "standard")
        else:
            rebinned = rebin_to_parallel(sino, protocol)
            astra.data2d.store(par_id, filter_parallel(rebinned, t_step, "standard") * scale)
        astra.algorithm.run(bp_alg)
        astra.data2d.get(rec_id)
    astra.algorithm.delete([fp_alg, bp_alg])
    astra.projector.delete([fan_proj, par_proj])
    astra.data2d.delete([vol_id, sino_id, par_id, rec_id])
    return time.perf_counter() - start


def ours(volume: np.ndarray, grid: Grid, protocol, threads: int, reuse: bool = False) -> float:
    """Seconds for forward_project + fbp of every slice with ``threads`` threads (``reuse``:
    inside backend.reused_projections, the matrix built within the time)."""
    start = time.perf_counter()
    with backend.reused_projections() if reuse else contextlib.nullcontext():
        sino = forward_project(volume, grid, protocol, threads=threads, device="cpu")
    fbp(sino, grid, protocol, kernel="standard", threads=threads, device="cpu")
    return time.perf_counter() - start


def fits_matrix(grid: Grid, protocol) -> bool:
    """Whether reused_projections holds a matrix for this plane (within MATRIX_MAX_WEIGHTS)."""
    fan_geom, _ = backend.fan_geometry(grid, protocol)
    weights = fan_matrix.estimated_weights(backend.volume_geometry(grid), fan_geom)
    return weights <= backend.MATRIX_MAX_WEIGHTS


def body_mask(n: int) -> np.ndarray:
    """An ellipse of 80 x 56 % of an ``n`` x ``n`` slice (rows y, columns x): a body in air."""
    u = (np.arange(n) + 0.5) / n - 0.5
    return (u[None, :] / 0.40) ** 2 + (u[:, None] / 0.28) ** 2 <= 1.0


def timings(repeats: int, runs: dict) -> dict:
    """Shortest of ``repeats`` timings of each ``runs[name]()``; the runs are interleaved so
    that load from other processes spreads evenly over them."""
    times = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name] = min(times[name], run())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--views", type=int, default=360)
    parser.add_argument("--bins", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--body", action="store_true", help="a body in air instead of a full slice")
    args = parser.parse_args()

    # 512 bins of 1.5 mm cover a 397 mm scan field, more than the 362 mm slice diagonal.
    protocol = make_protocol(
        "quick", n_views=args.views, n_bins=args.bins, bin_width_mm=1.5, recon_fov_mm=FOV_MM
    )
    print(f"ASTRA {astra.__version__}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(
        f"{args.views} views x {args.bins} bins, {args.slices} slices per size, "
        f"best of {args.repeats}; seconds per slice"
    )
    header = (
        f"{'size':>6} {'raw':>7} {'fanbp':>7} {'ours1':>7} {'ours2':>7} "
        f"{'ours1/raw':>9} {'ours2/ideal2':>12} {'speedup':>7} {'mat1':>7} {'mat2':>7} {'mat1/raw':>8}"
    )
    print(header)
    previous = None
    for n in args.sizes:
        grid = Grid.centered((args.slices, n, n), (FOV_MM / n, FOV_MM / n, 1.0))
        volume = np.random.default_rng(n).random(grid.shape, dtype=np.float32)
        if args.body:
            volume[:, ~body_mask(n)] = np.float32(0.001)
        ours(volume[:2], Grid.centered((2, n, n), grid.spacing_mm), protocol, 1)  # warm caches
        runs = {
            "raw": partial(raw_astra, volume, grid, protocol),
            "fan": partial(raw_astra, volume, grid, protocol, fan_bp=True),
            "one": partial(ours, volume, grid, protocol, 1),
            "two": partial(ours, volume, grid, protocol, 2),
        }
        if fits_matrix(grid, protocol):
            runs["mat1"] = partial(ours, volume, grid, protocol, 1, reuse=True)
            runs["mat2"] = partial(ours, volume, grid, protocol, 2, reuse=True)
        t = {name: seconds / args.slices for name, seconds in timings(args.repeats, runs).items()}
        raw, fan, one, two = t["raw"], t["fan"], t["one"], t["two"]
        matrix = f"{t['mat1']:7.4f} {t['mat2']:7.4f} {t['mat1'] / raw:8.2f}" if "mat1" in t else f"{'-':>24}"
        print(
            f"{n:>5}² {raw:7.4f} {fan:7.4f} {one:7.4f} {two:7.4f} {one / raw:9.2f} "
            f"{two / (raw / 2):12.2f} {one / two:7.2f} {matrix}   (load {os.getloadavg()[0]:.1f})"
        )
        if previous is not None:
            print(
                f"{'':>6} growth vs {previous[0]}²: raw x{raw / previous[1]:.2f}, "
                f"ours x{one / previous[2]:.2f} (pixels x{(n / previous[0]) ** 2:.0f})"
            )
        previous = (n, raw, one)


if __name__ == "__main__":
    main()
