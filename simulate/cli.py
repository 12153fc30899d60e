"""The ``nmosim`` command line: a thin layer over the public functions of phantoms and simulate.

Parses, validates and reports; every user mistake ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from phantoms.errors import SpecError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_phantom_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed of the case (integer >= 0); default 0")
    p.add_argument(
        "--out", type=Path, required=True, help="output folder (created or replaced when complete)"
    )
    p.add_argument(
        "--sex",
        choices=("male", "female"),
        default=None,
        help="fix the sex of the sampled anatomy (default: drawn 50/50)",
    )
    p.add_argument(
        "--supersampling",
        type=int,
        default=2,
        help="sub-samples per voxel edge for partial volume, 1 to 8; default 2",
    )
    p.add_argument(
        "--anatomy",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix one anatomy parameter, e.g. neck_shaft_angle_deg=125 (mm, degrees); "
        "repeatable; names and ranges in phantoms/spec.py",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nmosim",
        description=(
            "Synthetic hip CT with exact ground truth for neurogenic heterotopic ossification. "
            "Lengths in mm, angles in degrees, doses in mAs."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    phantom = sub.add_parser(
        "phantom",
        help="build and rasterize a phantom (no imaging)",
        description="Write structures.nii.gz, tissues.nii.gz, truth.json and preview.png.",
    )
    _add_phantom_options(phantom)
    phantom.add_argument(
        "--spacing",
        type=float,
        default=1.5,
        help="isotropic voxel size of the label grid in mm, 0.1 to 10; default 1.5",
    )
    return parser


def _check_common(args: argparse.Namespace) -> None:
    if args.seed < 0:
        raise SpecError(f"seed = {args.seed} is outside [0, 2**63)")


def _anatomy_overrides(pairs: list[str]) -> dict[str, object]:
    """Parse ``NAME=VALUE`` pairs; values are numbers except ``sex``."""
    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SpecError(f"anatomy = {pair!r} is not of the form NAME=VALUE")
        if name == "sex":
            out[name] = value
            continue
        try:
            out[name] = float(value)
        except ValueError:
            raise SpecError(f"{name} = {value!r} is not a number") from None
    return out


def run_phantom(args: argparse.Namespace) -> Path:
    from simulate.case import write_phantom_case

    _check_common(args)
    overrides = _anatomy_overrides(args.anatomy)
    if args.sex:
        overrides["sex"] = args.sex
    return write_phantom_case(
        args.out,
        seed=args.seed,
        spacing_mm=args.spacing,
        supersampling=args.supersampling,
        anatomy_overrides=overrides,
    )


COMMANDS = {"phantom": run_phantom}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        out = COMMANDS[args.command](args)
    except SpecError as error:
        print(f"nmosim {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("nmosim: interrupted; nothing was left half-written", file=sys.stderr)
        return 130
    print(f"nmosim {args.command}: wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
