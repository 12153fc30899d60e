"""Time the GPU imaging path against the CPU and against raw ASTRA calls on the same data.

Run: ``python benchmarks/bench_gpu.py [--slices 16] [--cone 256,512] [--case quick,clinical]``.

Parts (each prints its lines, and a summary table comes last):
- slices: ``forward_project`` + ``fbp`` of n x n slices (n = 256, 512) on the CPU (all cores)
  and the GPU, and raw ASTRA ``FP_CUDA`` + ``FBP_CUDA`` (fan beam) on the same volume;
- cone: an n^3 cone-beam scan (360 views), ASTRA ``FP3D_CUDA`` and our FDK (kernel window on
  the GPU, then ``FDK_CUDA``) against raw ``FP3D_CUDA`` and ``FDK_CUDA``;
- case: ``nmosim case`` at the quick (and clinical) preset on the GPU, stage by stage, with
  cases per hour on one GPU.

Without a CUDA GPU visible to ASTRA it says so and exits with status 0 (no CUDA call is made).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import astra
import numpy as np

ROWS: list[tuple[str, str, str, str]] = []  # (work, ours, raw ASTRA or CPU, ratio)


def _timed(fn, repeat: int = 1):
    """Result and best wall time (s) of ``repeat`` calls of ``fn``."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def _sync() -> None:
    try:
        import cupy

        cupy.cuda.Device().synchronize()
    except Exception:
        pass


def parity() -> None:
    """Water cylinder (quick preset, 100 mAs) on the CPU and the GPU: median HU, quantum noise SD
    (from the difference of two scans) and the noiseless image's SD (the projector's pattern)."""
    from nmosim.simulate import ct
    from nmosim.simulate.scanner import make_protocol

    protocol = make_protocol("quick", recon_fov_mm=256, n_bins=300, mas=100.0)
    stats = {}
    for device in ("cpu", "cuda"):
        scans = [ct.simulate_water_cylinder(protocol, 180.0, np.random.default_rng(seed), n_slices=8,
                                            device=device) for seed in (5, 6)]  # fmt: skip
        clean, rec = ct.simulate_water_cylinder(protocol, 180.0, None, n_slices=2, device=device)
        x, y = rec.voxel_centers_axis(0), rec.voxel_centers_axis(1)
        inside = np.hypot(x[None, :], y[:, None]) < 60.0
        a, b = (hu[:, inside] for hu, _ in scans)
        noise = float((a - b).std() / np.sqrt(2))
        stats[device] = (float(np.median(a)), noise, float(clean[:, inside].std()), float(a.std()))
    print("water cylinder (median HU, noise SD, noiseless SD, total SD): "
          + ", ".join(f"{k} " + " ".join(f"{v:.2f}" for v in vals) for k, vals in stats.items()))  # fmt: skip
    (m0, n0, c0, t0), (m1, n1, c1, t1) = stats["cpu"], stats["cuda"]
    ROWS.append(("parity median HU", f"{m1:+.2f}", f"cpu {m0:+.2f}", f"{m1 - m0:+.2f} HU"))
    ROWS.append(("parity noise SD", f"{n1:.2f} HU", f"cpu {n0:.2f} HU", f"{100 * (n1 / n0 - 1):+.1f} %"))
    ROWS.append(("pattern SD (no noise)", f"{c1:.2f} HU", f"cpu {c0:.2f} HU", f"total {t1:.2f}/{t0:.2f}"))


def raw_astra_fan(volume: np.ndarray, grid, protocol) -> tuple[np.ndarray, np.ndarray]:
    """Raw ASTRA: FP_CUDA then FBP_CUDA (fan beam, Ram-Lak) slice by slice, objects made once."""
    from nmosim.simulate.backend import fan_geometry, volume_geometry

    vol_geom = volume_geometry(grid)
    proj_geom, _ = fan_geometry(grid, protocol)
    vol_id = astra.data2d.create("-vol", vol_geom, 0.0)
    sino_id = astra.data2d.create("-sino", proj_geom, 0.0)
    rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
    fp = astra.astra_dict("FP_CUDA")
    fp["VolumeDataId"], fp["ProjectionDataId"] = vol_id, sino_id
    bp = astra.astra_dict("FBP_CUDA")
    bp["ProjectionDataId"], bp["ReconstructionDataId"] = sino_id, rec_id
    fp_id, bp_id = astra.algorithm.create(fp), astra.algorithm.create(bp)
    sinos = np.empty((grid.shape[0], protocol.n_views, protocol.n_bins), np.float32)
    recs = np.empty(grid.shape, np.float32)
    try:
        for k in range(grid.shape[0]):
            astra.data2d.store(vol_id, volume[k])
            astra.algorithm.run(fp_id)
            sinos[k] = astra.data2d.get_shared(sino_id)
            astra.algorithm.run(bp_id)
            recs[k] = astra.data2d.get_shared(rec_id)
    finally:
        astra.algorithm.delete([fp_id, bp_id])
        astra.data2d.delete([vol_id, sino_id, rec_id])
    return sinos, recs


def slices(n: int, n_slices: int) -> None:
    from nmosim.phantoms.grid import Grid
    from nmosim.simulate import arrays
    from nmosim.simulate.backend import forward_project
    from nmosim.simulate.reconstruct import fbp
    from nmosim.simulate.scanner import make_protocol

    protocol = make_protocol("clinical", n_views=360, n_bins=512, bin_width_mm=1.5, recon_fov_mm=256)
    grid = Grid.centered((n_slices, n, n), (256.0 / n, 256.0 / n, 1.0))
    volume = np.random.default_rng(0).random(grid.shape, dtype=np.float32)

    def ours(device: str):
        sino = forward_project(volume, grid, protocol, device=device)
        rec = fbp(sino, grid, protocol, device=device)
        _sync()
        return sino, rec

    ours("cuda")  # warm-up: kernels, FFT plans, rebinning matrix
    (cpu_s, cpu_r), t_cpu = _timed(lambda: ours("cpu"))
    (gpu_s, gpu_r), t_gpu = _timed(lambda: ours("cuda"), repeat=3)
    _, t_fp = _timed(lambda: forward_project(volume, grid, protocol, device="cuda"), repeat=3)
    raw_astra_fan(volume, grid, protocol)
    _, t_raw = _timed(lambda: raw_astra_fan(volume, grid, protocol), repeat=3)
    fp_diff = np.abs(gpu_s - cpu_s).max() / cpu_s.max()
    rec_diff = np.abs(gpu_r - cpu_r).max() / np.abs(cpu_r).max()
    per = 1e3 / n_slices
    path = "CuPy FBP" if arrays.has_gpu_arrays() else "ASTRA BP"
    print(
        f"slices {n}^2 x {n_slices} ({path}): cpu {t_cpu * per:.2f} ms/slice, gpu {t_gpu * per:.2f} ms/slice "
        f"(FP {t_fp * per:.2f}), raw ASTRA FP+FBP {t_raw * per:.2f} "
        f"ms/slice; speed-up {t_cpu / t_gpu:.1f}x; "
        f"max |FP gpu-cpu| {fp_diff:.1e} of max, max |FBP gpu-cpu| {rec_diff:.1e} of max"
    )
    ROWS.append((f"slice FP+FBP {n}^2", f"{t_gpu * per:.2f} ms", f"cpu {t_cpu * per:.1f} ms",
                 f"{t_cpu / t_gpu:.0f}x cpu"))  # fmt: skip
    ROWS.append((f"  vs raw ASTRA {n}^2", f"{t_gpu * per:.2f} ms", f"astra {t_raw * per:.2f} ms",
                 f"{t_gpu / t_raw:.2f}x astra"))  # fmt: skip


def cone(n: int, n_views: int) -> None:
    from nmosim.phantoms.grid import Grid
    from nmosim.simulate import geometry3d as g3
    from nmosim.simulate.scanner import make_protocol

    # 0.5 mm voxels; n rows and 1.5 n bins of 1 mm at 1.82x magnification hold the cube
    size = 0.5 * n
    protocol = make_protocol(
        "clinical", geometry="axial", n_views=n_views, n_bins=3 * n // 2, bin_width_mm=1.0,
        detector_rows=n, row_pitch_mm=1.0, recon_fov_mm=min(size, 200.0),
    )  # fmt: skip
    grid = Grid.centered((n, n, n), (0.5, 0.5, 0.5))
    x = grid.voxel_centers_axis(0)
    r2 = x[None, None, :] ** 2 + x[None, :, None] ** 2 + x[:, None, None] ** 2
    volume = np.where(r2 < (0.4 * size) ** 2, 0.02, 0.0).astype(np.float32)
    volume[r2 < (0.1 * size) ** 2] = 0.04
    geometry = g3.circular_cone_geometry(protocol)
    g3.forward_project_cone(volume[:8], Grid.centered((8, n, n), (0.5, 0.5, 0.5)), geometry)  # warm-up
    data, t_fp = _timed(lambda: g3.forward_project_cone(volume, grid, geometry))
    _, t_raw_fp = _timed(lambda: _raw_fp3d(volume, grid, geometry))
    ours_order = g3.to_astra_cone(data)  # the circular geometry's bins run the other way
    g3.fdk(ours_order, grid, protocol)  # warm-up: FFT plans
    ours, t_fdk = _timed(lambda: g3.fdk(ours_order, grid, protocol))
    _, t_raw_fdk = _timed(lambda: _raw_fdk(data, grid, geometry))
    middle = ours[n // 2 - n // 8 : n // 2 + n // 8]
    error = float(np.abs(middle - volume[n // 2 - n // 8 : n // 2 + n // 8]).mean())
    detector = f"{protocol.detector_rows}x{protocol.n_bins}"
    print(
        f"cone {n}^3, {n_views} views, {detector} detector: FP3D {t_fp:.2f} s (raw {t_raw_fp:.2f}), "
        f"FDK {t_fdk:.2f} s (raw FDK_CUDA {t_raw_fdk:.2f}); mean |error| in the middle {error:.2e} 1/mm"
    )
    ROWS.append(
        (f"cone FDK {n}^3", f"{t_fdk:.2f} s", f"astra {t_raw_fdk:.2f} s", f"{t_fdk / t_raw_fdk:.2f}x astra")
    )
    ROWS.append(
        (f"cone FP {n}^3", f"{t_fp:.2f} s", f"astra {t_raw_fp:.2f} s", f"{t_fp / t_raw_fp:.2f}x astra")
    )


def _raw_fp3d(volume, grid, geometry):
    from nmosim.simulate.backend import volume_geometry_3d

    proj_id, data = astra.create_sino3d_gpu(volume, geometry, volume_geometry_3d(grid), returnData=True)
    astra.data3d.delete(proj_id)
    return data


def _raw_fdk(data, grid, geometry):
    """ASTRA's FDK_CUDA through its plain host-memory interface."""
    from nmosim.simulate.backend import volume_geometry_3d

    proj_id = astra.data3d.create("-proj3d", geometry, data)
    vol_id = astra.data3d.create("-vol", volume_geometry_3d(grid), 0.0)
    cfg = astra.astra_dict("FDK_CUDA")
    cfg["ProjectionDataId"], cfg["ReconstructionDataId"] = proj_id, vol_id
    alg_id = astra.algorithm.create(cfg)
    try:
        astra.algorithm.run(alg_id)
        return astra.data3d.get(vol_id)
    finally:
        astra.algorithm.delete(alg_id)
        astra.data3d.delete([proj_id, vol_id])


def case(spec: str) -> None:
    """``nmosim case`` at preset ``spec`` (``preset`` or ``preset:geometry``) on the GPU."""
    from nmosim.simulate.case import CaseRequest, write_ct_case

    preset, _, geometry = spec.partition(":")
    overrides = {"geometry": geometry} if geometry else None
    stages: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_ct_case(Path(tmp) / "case", CaseRequest(seed=1, phase="c"), preset=preset,
                      protocol_overrides=overrides,
                      progress=lambda name, seconds: stages.append((name, seconds)))  # fmt: skip
        total = time.perf_counter() - start
    line = ", ".join(f"{k} {v:.1f}" for k, v in stages)
    print(f"case --preset {preset} {geometry or 'fan2d'} on the GPU: {line}; total {total:.1f} s")
    ct_s = dict(stages).get("ct", float("nan"))
    ROWS.append((f"case {spec}", f"{total:.1f} s", f"ct stage {ct_s:.1f} s", f"{3600 / total:.0f} cases/h"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--views", type=int, default=360)
    parser.add_argument("--sizes", default="256,512", help="slice sizes n (n x n)")
    parser.add_argument("--cone", default="256,512", help="cone-beam volume sizes n (n^3)")
    parser.add_argument(
        "--case", default="quick", help="presets (or preset:geometry) to run as cases, or 'none'"
    )
    parser.add_argument("--no-parity", dest="parity", action="store_false", help="skip the water parity scan")
    args = parser.parse_args()
    if not astra.use_cuda():
        print("No CUDA GPU is available to ASTRA; nothing to benchmark on GPU.")
        return 0
    print(f"{os.cpu_count()} cores; GPU: {_gpu_name()}")
    parts = [(parity,)] if args.parity else []
    parts += [(slices, int(n), args.slices) for n in args.sizes.split(",") if n]
    parts += [(cone, int(n), args.views) for n in args.cone.split(",") if n]
    parts += [(case, p) for p in args.case.split(",") if p and p != "none"]
    for fn, *a in parts:
        try:
            fn(*a)
            sys.stdout.flush()
        except Exception as error:  # report and go on: one table at the end
            print(f"{fn.__name__}{tuple(a)} failed: {type(error).__name__}: {error}")
            ROWS.append((f"{fn.__name__} {a[0] if a else ''}", "failed", type(error).__name__, ""))
    print(f"\n{'work':<22} {'ours':>10} {'reference':>18} {'ratio':>14}")
    for row in ROWS:
        print(f"{row[0]:<22} {row[1]:>10} {row[2]:>18} {row[3]:>14}")
    return 0


def _gpu_name() -> str:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:
        return "unknown (no CuPy)"


if __name__ == "__main__":
    sys.exit(main())
