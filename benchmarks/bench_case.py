"""Time the main job, `nmosim case`, end to end at a preset, split by stage.

Usage: python benchmarks/bench_case.py [--preset quick] [--phase c] [--seed 1]
Reports the wall time of each stage and the total on this machine's cores (CPU path unless
ASTRA sees a CUDA GPU).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from nmosim.simulate.case import CaseRequest, write_ct_case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--phase", default="c")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    stages: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_ct_case(
            Path(tmp) / "case",
            CaseRequest(seed=args.seed, phase=args.phase),
            preset=args.preset,
            progress=lambda name, seconds: stages.append((name, seconds)),
        )
        total = time.perf_counter() - start
    print(f"nmosim case --preset {args.preset} --phase {args.phase} --seed {args.seed}")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    for name, seconds in stages:
        print(f"  {name:<14} {seconds:7.1f} s  {100 * seconds / total:5.1f} %")
    print(f"  {'total':<14} {total:7.1f} s")


if __name__ == "__main__":
    main()
