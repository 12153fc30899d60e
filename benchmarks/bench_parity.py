"""Image noise and sharpness against the parity of the detector's bin count.

Usage: python benchmarks/bench_parity.py [--bins 455,456,457] [--preset quick] [--slices 1]

Per bin count, with the preset's geometry otherwise:

* radial noise profile: SD (1/mm, times 1e4) of FBP images of white noise (SD 0.01 per reading,
  the same for every count) in rings around the iso-centre, 16 slices of 2 mm pixels over 200 mm;
  this is where the rebinned samples' phase against the fan bins shows (at the centre);
* the QA phantom (``nmosim qa``, 200 mm, seed 0): noise-only SD in HU of the uniformity section's
  centre disc, MTF50 (lp/mm) of the air insert's edge on the display pixel and on the targeted
  field of fine pixels, the mean HU of the uniformity section's centre disc (water) and of the fat
  insert.

CPU seconds per row are process time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nmosim.phantoms.grid import Grid
from nmosim.simulate import qa
from nmosim.simulate.reconstruct import fbp
from nmosim.simulate.scanner import make_protocol

RINGS_MM = ((0, 10), (10, 25), (25, 50), (50, 75), (75, 100))


def noise_profile(protocol) -> list[float]:
    """SD (1/mm) of white-noise reconstructions in :data:`RINGS_MM` around the iso-centre."""
    grid = Grid.centered((16, 100, 100), (2.0, 2.0, 1.0))
    noise = np.random.default_rng(0).normal(0.0, 0.01, (grid.shape[0], protocol.n_views, protocol.n_bins))
    image = fbp(noise.astype(np.float32), grid, protocol)
    x, y = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)
    r = np.hypot(x[None, :], y[:, None])
    return [float(image[:, (r >= lo) & (r < hi)].std()) for lo, hi in RINGS_MM]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bins", default="455,456,457")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--slices", type=int, default=1)
    args = parser.parse_args()
    rings = " ".join(f"{lo:>3}-{hi:<3}" for lo, hi in RINGS_MM)
    print(f"white-noise SD x 1e4, rings (mm): {rings} | QA: noiseSD_HU MTF50 tMTF50 water_HU fat_HU | cpu s")
    for n_bins in (int(b) for b in args.bins.split(",")):
        start = time.process_time()
        protocol = make_protocol(args.preset, n_bins=n_bins)
        profile = " ".join(f"{1e4 * sd:7.3f}" for sd in noise_profile(protocol))
        report = qa.qa_report(qa.scan_qa(protocol, 200.0, args.slices, seed=0), 0, args.preset)
        fat = next(row for row in report["inserts"] if row["name"] == "fat")
        cells = [
            f"{n_bins:5d} bins: {profile}",
            f"{report['noise']['sd_noise_only_hu']:7.2f}",
            f"{report['mtf']['mtf50_lp_mm']:.3f}  {report['mtf_targeted']['mtf50_lp_mm']:.3f}",
            f"{report['noise']['mean_hu']:6.2f}  {fat['mean_hu']:7.2f}",
            f"{time.process_time() - start:6.0f}",
        ]
        print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
