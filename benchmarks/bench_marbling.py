"""CPU time of the stages that marbling touches, with the fat streaks of fatty muscles on and off.

Usage: python benchmarks/bench_marbling.py [--phase d] [--weeks 150] [--seed 1] [--threads 2]
Builds the case's plan once, then for marbling off and on: the phantom at the case's time
(``phantom_at``), the labels on the reconstruction grid and the imaging maps' rasterization on
the finer imaging grid of the quick preset, as ``nmosim case`` makes them. Reports process
(CPU) time, which the load of other work on the machine disturbs less than wall time.
"""

from __future__ import annotations

import argparse
import time

from nmosim.phantoms import case_phantom
from nmosim.phantoms.case_plan import plan_case
from nmosim.phantoms.labels import Tissue
from nmosim.simulate import pipeline
from nmosim.simulate.case_spec import CaseSpec
from nmosim.simulate.pipeline import IMAGING_SUPERSAMPLING, SCAN_RANGE_MM, case_grids, fit_protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phase", default="d")
    parser.add_argument("--weeks", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each setting, the fastest kept")
    args = parser.parse_args()
    spec = CaseSpec(seed=args.seed, phase=args.phase, weeks=args.weeks)
    plan = plan_case(spec.streams(), **spec.lesion_options(), threads=args.threads)
    protocol = pipeline.protocol("quick")
    results: dict[bool, dict[str, float]] = {}
    for marbled in (False, True) * args.repeat:
        case_phantom.MARBLING = marbled
        times: dict[str, float] = {}
        clock = time.process_time()
        phantom = case_phantom.phantom_at(plan, plan.reference_weeks)
        times["phantom_at"] = time.process_time() - clock
        fitted = fit_protocol(protocol, phantom)
        recon, imaging = case_grids(phantom, fitted, SCAN_RANGE_MM["quick"])
        clock = time.process_time()
        labels = phantom.rasterize(recon, supersampling=2, threads=args.threads)
        times["labels"] = time.process_time() - clock
        clock = time.process_time()
        phantom.rasterize(imaging, supersampling=IMAGING_SUPERSAMPLING, threads=args.threads)
        times["imaging raster"] = time.process_time() - clock
        fat = int((labels.tissues == Tissue.FAT).sum())
        best = results.setdefault(marbled, times)
        for k, v in times.items():
            best[k] = min(best[k], v)
        n_fatty = len(phantom.metadata["effects"]["fatty_muscles"])
        print(f"marbling {'on ' if marbled else 'off'}: {n_fatty} fatty muscles, {fat} fat voxels, "
              + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()), flush=True)  # fmt: skip
    print(f"phase {args.phase}, seed {args.seed}, {plan.reference_weeks:.0f} weeks; CPU s, best of runs")
    for k in results[False]:
        off, on = results[False][k], results[True][k]
        print(f"  {k:<16} off {off:7.1f}  on {on:7.1f}  {100 * (on / off - 1):+6.1f} %")
    both = [sum(results[m][k] for k in ("labels", "imaging raster")) for m in (False, True)]
    print(
        f"  labels + imaging off {both[0]:7.1f}  on {both[1]:7.1f}  {100 * (both[1] / both[0] - 1):+6.1f} %"
    )


if __name__ == "__main__":
    main()
