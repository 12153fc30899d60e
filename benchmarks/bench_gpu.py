"""Time GPU imaging: 3D cone-beam FDK through ODL (astra_cuda), and CPU against GPU for the
slice-wise forward_project + fbp. Run: ``python benchmarks/bench_gpu.py [--slices 16]``.

Without a CUDA GPU visible to ASTRA it says so and exits with status 0 (no CUDA call is made).
"""

from __future__ import annotations

import argparse
import sys
import time

import astra
import numpy as np


def cone_beam_fdk(n: int, n_views: int) -> None:
    """Time ODL's cone-beam forward projection and FDK on an ``n``^3 Shepp-Logan volume."""
    import odl
    from odl.applications import tomo

    space = odl.uniform_discr([-128.0] * 3, [128.0] * 3, [n] * 3, dtype="float32")
    # DOMAIN.md 4.3-like geometry: source-iso 595 mm, source-detector 1085.6 mm
    geometry = tomo.cone_beam_geometry(
        space, src_radius=595.0, det_radius=490.6, num_angles=n_views, det_shape=(3 * n // 2, n)
    )
    ray = tomo.RayTransform(space, geometry, impl="astra_cuda")
    fdk = tomo.fbp_op(ray, filter_type="Hann", frequency_scaling=0.8)
    phantom = odl.phantom.shepp_logan(space, modified=True)
    start = time.perf_counter()
    data = ray(phantom)
    t_fp = time.perf_counter() - start
    start = time.perf_counter()
    rec = fdk(data)
    t_fdk = time.perf_counter() - start
    error = float(np.abs(rec.asarray() - phantom.asarray())[n // 4 : -n // 4].mean())
    print(f"cone {n}^3, {n_views} views: forward {t_fp:6.2f} s, FDK {t_fdk:6.2f} s, "
          f"mean |error| in the central half {error:.3f}")


def slices_cpu_vs_gpu(n: int, n_slices: int) -> None:
    """forward_project + fbp of ``n_slices`` slices of ``n``^2 on CPU (all cores) and GPU."""
    from nmosim.phantoms.grid import Grid
    from nmosim.simulate.backend import forward_project
    from nmosim.simulate.reconstruct import fbp
    from nmosim.simulate.scanner import make_protocol

    protocol = make_protocol("clinical", n_views=360, n_bins=512, bin_width_mm=1.5,
                             recon_fov_mm=256)
    grid = Grid.centered((n_slices, n, n), (256.0 / n, 256.0 / n, 1.0))
    volume = np.random.default_rng(0).random(grid.shape, dtype=np.float32)
    results, times = {}, {}
    for device in ("cpu", "cuda"):
        start = time.perf_counter()
        sino = forward_project(volume, grid, protocol, device=device)
        results[device] = (sino, fbp(sino, grid, protocol, device=device))
        times[device] = (time.perf_counter() - start) / n_slices
    fp_diff = np.abs(results["cuda"][0] - results["cpu"][0]).max() / results["cpu"][0].max()
    rec_diff = np.abs(results["cuda"][1] - results["cpu"][1]).mean() / volume.mean()
    print(f"slices {n}^2 x {n_slices}: cpu {times['cpu']:.4f} s/slice, "
          f"cuda {times['cuda']:.4f} s/slice, speed-up {times['cpu'] / times['cuda']:.1f}; "
          f"max FP difference {fp_diff:.2e} (of max), mean FBP difference {rec_diff:.2e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--views", type=int, default=360)
    args = parser.parse_args()
    if not astra.use_cuda():
        print("No CUDA GPU is available to ASTRA; nothing to benchmark on GPU.")
        return 0
    for n in (256, 512):
        cone_beam_fdk(n, args.views)
    for n in (256, 512):
        slices_cpu_vs_gpu(n, args.slices)
    return 0


if __name__ == "__main__":
    sys.exit(main())
