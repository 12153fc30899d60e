"""Time the main job, `nmosim case`, end to end at a preset, split by stage.

Usage: python benchmarks/bench_case.py [--preset quick] [--phase c] [--seed 1] [--threads N]
Reports the wall time of each stage and the total on this machine's cores (CPU path unless
ASTRA sees a CUDA GPU), through the public API: build_phantom, simulate_ct, write_case.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import nmosim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--phase", default="c")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="default: every core")
    args = parser.parse_args()
    stages: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        phantom = nmosim.build_phantom(nmosim.CaseSpec(seed=args.seed, phase=args.phase))
        stages.append(("phantom", time.perf_counter() - start))
        ct = nmosim.simulate_ct(
            phantom, nmosim.protocol(args.preset), preset=args.preset, threads=args.threads,
            progress=lambda name, seconds: stages.append((name, seconds)),
        )  # fmt: skip
        clock = time.perf_counter()
        nmosim.write_case(ct, Path(tmp) / "case")
        stages.append(("write", time.perf_counter() - clock))
        total = time.perf_counter() - start
    print(f"nmosim case --preset {args.preset} --phase {args.phase} --seed {args.seed}")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    for name, seconds in stages:
        print(f"  {name:<14} {seconds:7.1f} s  {100 * seconds / total:5.1f} %")
    print(f"  {'total':<14} {total:7.1f} s")


if __name__ == "__main__":
    main()
