"""Cases per hour of `nmosim dataset` at a preset with 1 and 2 Dask workers, and peak memory.

Usage: python benchmarks/bench_dataset.py [--cases 4] [--workers 1 2] [--preset quick]
Each worker count runs in a fresh process on an embedded LocalCluster; the peak resident memory
of the largest worker process is read from the operating system when the cluster has closed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(cases: int, workers: int, preset: str) -> dict:
    from nmosim.simulate.dataset import build_dataset, parse_cohort

    spec = parse_cohort({"n_cases": cases, "seed": 11, "preset": preset, "test_fraction": 0.0,
                         "phase_mix": {"b": 0.5, "d": 0.5}})  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        build_dataset(spec, Path(tmp) / "cohort", workers=workers)
        seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"workers": workers, "cases": cases, "seconds": seconds, "peak_worker_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.cases, args.one, args.preset)))
        return
    print(f"{args.cases} cases at preset {args.preset}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{'workers':>7} {'seconds':>9} {'cases/hour':>11} {'peak MiB/worker':>16}")
    for workers in args.workers:
        cmd = [
            sys.executable,
            __file__,
            "--cases",
            str(args.cases),
            "--preset",
            args.preset,
            "--one",
            str(workers),
        ]
        row = json.loads(
            subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        )
        rate = 3600 * row["cases"] / row["seconds"]
        print(f"{workers:>7} {row['seconds']:>9.1f} {rate:>11.1f} {row['peak_worker_mib']:>16.0f}")


if __name__ == "__main__":
    main()
