"""Time the main job, `nmosim case`, end to end at a preset, split by stage.

Usage: python benchmarks/bench_case.py [--preset quick] [--phase c] [--seed 1] [--threads N]
       [--device cpu|cuda] [--z-range LO HI]
Reports the wall time and process CPU time of each stage (their ratio: the cores it kept busy), the
array namespace (or ASTRA device) it ran on, and the process CPU time of the whole run, through the
public API: build_phantom, simulate_ct, write_case.
The device defaults to NMOSIM_DEVICE, else CUDA when ASTRA sees a GPU; with ``cuda`` every stage
but ASTRA's runs in CuPy when it is installed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import nmosim
from nmosim.simulate import arrays, backend, pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--phase", default="c")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="default: every core")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--z-range", type=float, nargs=2, default=None, metavar=("LO", "HI"), help="mm")
    args = parser.parse_args()
    protocol = nmosim.protocol(args.preset)
    device = backend.select_device(args.device, protocol)
    xp = arrays.namespace(device)
    where = {"phantom": "numpy", **pipeline.stage_namespaces(device, xp), "write": "numpy"}
    stages: list[tuple[str, float, float]] = []  # name, wall s, process CPU s
    cpu_start = time.process_time()
    cpu_mark = cpu_start

    def record(name: str, seconds: float) -> None:
        nonlocal cpu_mark
        now = time.process_time()
        stages.append((name, seconds, now - cpu_mark))
        cpu_mark = now

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        phantom = nmosim.build_phantom(nmosim.CaseSpec(seed=args.seed, phase=args.phase))
        record("phantom", time.perf_counter() - start)
        ct = nmosim.simulate_ct(
            phantom, protocol, preset=args.preset, threads=args.threads, device=device, xp=xp,
            z_range_mm=args.z_range, progress=record,
        )  # fmt: skip
        clock = time.perf_counter()
        nmosim.write_case(ct, Path(tmp) / "case")
        record("write", time.perf_counter() - clock)
        total = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    z = f" --z-range {args.z_range[0]:g} {args.z_range[1]:g}" if args.z_range else ""
    print(f"nmosim case --preset {args.preset} --phase {args.phase} --seed {args.seed}{z} on {device}")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; grid {ct.grid.shape}")
    print(f"  {'stage':<14} {'wall':>9}  {'share':>6}  {'CPU':>7}  {'cores':>5}  namespace")
    for name, seconds, cpu_s in stages:
        share, cores = 100 * seconds / total, cpu_s / max(seconds, 1e-9)
        place = where.get(name, "?")
        print(f"  {name:<14} {seconds:7.1f} s  {share:5.1f} %  {cpu_s:5.1f} s  {cores:5.2f}  {place}")
    print(f"  {'total':<14} {total:7.1f} s  (process CPU {cpu:.1f} s)")


if __name__ == "__main__":
    main()
