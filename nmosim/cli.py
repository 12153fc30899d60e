"""The ``nmosim`` command line: a thin layer over the public functions of phantoms and simulate.

Parses, validates and reports; every user mistake ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.lesions import PhaseNotMet

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_phantom_options(p: argparse.ArgumentParser, single_time: bool = True) -> None:
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
        "--phase",
        choices=("none", "a", "b", "c", "d"),
        default=None,
        help="NHO phase = Brooker grade of the index hip, by measurement: none (0), a (I, islands), "
        "b (II, spurs leaving >= 10 mm), c (III, < 10 mm), d (IV, bony bridge); default none, "
        "or drawn from --weeks",
    )
    if single_time:
        p.add_argument(
            "--weeks",
            type=float,
            default=None,
            help="weeks since the neurological injury (>= 0); drives onset, growth and maturity and, "
            "without --phase, the phase",
        )
    p.add_argument(
        "--aetiology",
        choices=("sci", "brain"),
        default="sci",
        help="spinal cord injury or brain injury: location priors (default sci)",
    )
    p.add_argument(
        "--confounders",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add calcifications that are not HO (phleboliths, vascular calcification, calcific "
        "tendinitis, rim osteophytes); default: drawn for some cases",
    )
    p.add_argument(
        "--anatomy",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix one anatomy parameter, e.g. neck_shaft_angle_deg=125 (mm, degrees); "
        "repeatable; names and ranges in phantoms/spec.py",
    )


def _add_spacing(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--spacing",
        type=float,
        default=1.5,
        help="isotropic voxel size of the label grid in mm, 0.1 to 10; default 1.5",
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
    _add_spacing(phantom)

    series = sub.add_parser(
        "series",
        help="one patient at several times since injury (phantoms, no imaging)",
        description="One folder per time point (week_WWW_WW) with the same anatomy and lesion ids; "
        "lesions grow and mature over time.",
    )
    _add_phantom_options(series, single_time=False)
    series.add_argument(
        "--weeks",
        dest="series_weeks",
        required=True,
        metavar="W1,W2,...",
        help="comma-separated weeks since injury, e.g. 4,8,16,32,52",
    )
    _add_spacing(series)

    case = sub.add_parser(
        "case",
        help="a labelled CT case: phantom, CT in HU, labels and an AP radiograph (the main job)",
        description="Write ct.nii.gz (int16 HU), structures/tissues/ho_instances.nii.gz, "
        "radiograph_ap.png/.npz, truth.json and preview PNGs. Runs on the CPU unless ASTRA sees a "
        "CUDA GPU; NMOSIM_DEVICE=cpu|cuda forces one.",
    )
    _add_phantom_options(case)
    case.add_argument(
        "--preset",
        choices=("quick", "clinical"),
        default="quick",
        help="scanner protocol: quick (1.5 mm voxels, 360 views) or clinical "
        "(0.75 mm in-plane, 1 mm slices, 1152 views); default quick",
    )
    case.add_argument(
        "--scanner",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one protocol parameter, e.g. kvp=100, mas=50, kernel=bone, "
        "n_views=720, recon_method=sirt; repeatable; see simulate/scanner.py",
    )
    case.add_argument(
        "--z-range",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="scan range along z in mm (patient frame); default per preset",
    )
    _add_evaluation_parsers(sub)
    _add_dataset_parser(sub)
    _add_book_parser(sub)
    return parser


def _add_dataset_parser(sub) -> None:
    dataset = sub.add_parser(
        "dataset",
        help="a cohort of CT cases from a TOML config, scheduled with Dask, in nnU-Net and MSD layouts",
        description="Write DIR/cases/<case_id> (resumable: complete cases are skipped), "
        "DIR/Dataset<NNN>_<name> (nnU-Net v2 raw), datalist.json (MSD/MONAI), cases.csv and "
        "manifest.json. Config keys are documented in examples/cohort.toml.",
    )
    dataset.add_argument("config", type=Path, help="cohort config (TOML)")
    dataset.add_argument("--out", type=Path, required=True, help="dataset folder (created or resumed)")
    dataset.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of the embedded Dask LocalCluster (one thread each); 0 runs the cases "
        "one by one in this process; default 1",
    )
    dataset.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (instead of a LocalCluster)",
    )


def run_dataset(args: argparse.Namespace) -> Path:
    from nmosim.simulate.dataset import build_dataset, load_cohort

    spec = load_cohort(args.config)

    def progress(done: int, total: int, row: dict) -> None:
        filled = int(30 * done / total)
        note = "skipped, complete" if row.get("skipped") else row.get("status", "")
        bar = "#" * filled + "." * (30 - filled)
        print(f"\r  [{bar}] {done}/{total} {row['case_id']} ({note})   ", end="", file=sys.stderr, flush=True)

    out = build_dataset(spec, args.out, args.workers, args.scheduler, progress)
    print(file=sys.stderr)
    return out


def _add_evaluation_parsers(sub) -> None:
    """Subcommands that score predictions (evaluate) and make simple ones (baseline)."""
    evaluate = sub.add_parser(
        "evaluate",
        help="score predicted label maps against the truth of case folders",
        description="For each case folder under --truth (a folder with structures.nii.gz), read "
        "PRED/<case_id>.nii.gz: a label map on the case grid in the structures ids (6 ho_right, "
        "7 ho_left required; 3/4/5 bones scored when present). Writes metrics_per_case.csv, "
        "summary.json and PNG plots: Dice, HD95 (mm), NSD, volume errors (ml), lesion detection and "
        "Brooker grades, by phase, dose (mAs) and kernel. See simulate/evaluate.py for conventions.",
    )
    evaluate.add_argument("--truth", type=Path, required=True, help="folder holding the case folders")
    evaluate.add_argument("--pred", type=Path, required=True, help="folder holding <case_id>.nii.gz")
    evaluate.add_argument("--out", type=Path, required=True, help="report folder (created if needed)")
    evaluate.add_argument(
        "--tolerance-mm",
        type=float,
        default=2.0,
        help="surface tolerance of the normalized surface distance in mm, >= 0; default 2",
    )
    evaluate.add_argument(
        "--iou-threshold",
        type=float,
        default=0.0,
        help="a predicted lesion detects a truth lesion when their IoU exceeds this, in [0, 1); "
        "default 0 (any shared voxel)",
    )
    evaluate.add_argument(
        "--pred-labels",
        choices=("structures", "bones_ho", "ho"),
        default="structures",
        help="label ids of the predictions: structures (6 ho_right, 7 ho_left; default) or a label set "
        "of nmosim dataset: bones_ho (4 ho_right, 5 ho_left) or ho (1 = HO, side by the sign of x)",
    )

    baseline = sub.add_parser(
        "baseline",
        help="a simple HO detector (HU threshold minus the native bones) writing predictions",
        description="For each case folder under --cases holding ct.nii.gz write OUT/<case_id>.nii.gz: "
        "a label map with 6 (ho_right) and 7 (ho_left), ready for nmosim evaluate. Method and limits "
        "in simulate/baseline.py.",
    )
    baseline.add_argument("--cases", type=Path, required=True, help="folder holding the case folders")
    baseline.add_argument("--out", type=Path, required=True, help="prediction folder (created if needed)")
    baseline.add_argument(
        "--threshold-hu", type=float, default=150.0, help="candidate voxels above this HU; default 150"
    )
    baseline.add_argument(
        "--bone-components",
        type=int,
        default=3,
        help="the largest components taken as native bone (pelvis, two femurs); default 3",
    )
    baseline.add_argument(
        "--min-volume-ml", type=float, default=0.1, help="drop components smaller than this (ml); default 0.1"
    )


def run_baseline(args: argparse.Namespace) -> Path:
    from nmosim.simulate.baseline import run_baseline as baseline

    def progress(done: int, total: int, case_id: str) -> None:
        print(f"\r  predicted {done}/{total} {case_id:<30}", end="", file=sys.stderr, flush=True)

    out = baseline(args.cases, args.out, args.threshold_hu, args.bone_components, args.min_volume_ml,
                   progress=progress)  # fmt: skip
    print(file=sys.stderr)
    return out


def run_evaluate(args: argparse.Namespace) -> Path:
    from nmosim.simulate.evaluate import evaluate, write_report

    def progress(done: int, total: int, case_id: str) -> None:
        print(f"\r  evaluated {done}/{total} {case_id:<30}", end="", file=sys.stderr, flush=True)

    rows, summary = evaluate(
        args.truth, args.pred, args.tolerance_mm, args.iou_threshold, progress, args.pred_labels
    )
    print(file=sys.stderr)
    for status, count in summary["status_counts"].items():
        print(f"  {status}: {count} case(s)", file=sys.stderr)
    return write_report(args.out, rows, summary)


def _split_pairs(option: str, pairs: list[str]) -> list[tuple[str, str]]:
    """``NAME=VALUE`` strings of the repeatable ``option`` as (name, value) pairs."""
    out = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SpecError(f"{option} = {pair!r} is not of the form NAME=VALUE")
        out.append((name, value))
    return out


def _scanner_overrides(pairs: list[str]) -> dict[str, object]:
    """Parse ``NAME=VALUE`` protocol overrides: numbers, booleans or words."""
    out: dict[str, object] = {}
    for name, value in _split_pairs("scanner", pairs):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            out[name] = lowered == "true"
            continue
        try:
            number = float(value)
            out[name] = int(number) if number.is_integer() and "." not in value else number
        except ValueError:
            out[name] = value
    return out


def _check_common(args: argparse.Namespace) -> None:
    if args.seed < 0:
        raise SpecError(f"seed = {args.seed} is outside [0, 2**63)")


def _anatomy_overrides(pairs: list[str]) -> dict[str, object]:
    """Parse ``NAME=VALUE`` pairs; values are numbers except ``sex``."""
    out: dict[str, object] = {}
    for name, value in _split_pairs("anatomy", pairs):
        if name == "sex":
            out[name] = value
            continue
        try:
            out[name] = float(value)
        except ValueError:
            raise SpecError(f"{name} = {value!r} is not a number") from None
    return out


def _request(args: argparse.Namespace):
    from nmosim.simulate.case import CaseRequest

    _check_common(args)
    overrides = _anatomy_overrides(args.anatomy)
    if args.sex:
        overrides["sex"] = args.sex
    return CaseRequest(
        seed=args.seed,
        phase=args.phase,
        weeks=getattr(args, "weeks", None),
        aetiology=args.aetiology,
        confounders=args.confounders,
        anatomy_overrides=overrides,
    )


def run_phantom(args: argparse.Namespace) -> Path:
    from nmosim.simulate.case import write_phantom_case

    request = _request(args)
    return write_phantom_case(args.out, request, spacing_mm=args.spacing, supersampling=args.supersampling)


def _weeks_list(text: str) -> list[float]:
    try:
        weeks = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise SpecError(f"weeks = {text!r} is not a comma-separated list of numbers") from None
    if not weeks:
        raise SpecError(f"weeks = {text!r} lists no time point")
    return weeks


def run_series(args: argparse.Namespace) -> Path:
    from nmosim.simulate.case import write_series

    weeks = _weeks_list(args.series_weeks)
    request = _request(args)
    return write_series(args.out, request, weeks, spacing_mm=args.spacing, supersampling=args.supersampling)


def run_case(args: argparse.Namespace) -> Path:
    from nmosim.simulate.case import write_ct_case

    def progress(stage: str, seconds: float) -> None:
        print(f"  {stage:<14} {seconds:6.1f} s", file=sys.stderr, flush=True)

    return write_ct_case(
        args.out,
        _request(args),
        preset=args.preset,
        protocol_overrides=_scanner_overrides(args.scanner),
        z_range_mm=tuple(args.z_range) if args.z_range else None,
        progress=progress,
    )


def _add_book_parser(sub) -> None:
    book = sub.add_parser(
        "book",
        help="a self-contained HTML teaching book of a case folder or a series folder",
        description="Write OUT/index.html (figures, 3D renderings, an interactive 3D view, findings from "
        "truth.json) and OUT/quiz.html (answers hidden until clicked) for a case folder of nmosim case "
        "or phantom; for a series folder of nmosim series, a series page with one page per time point. "
        "Images are embedded: the pages need no network.",
    )
    book.add_argument("source", type=Path, metavar="CASE_OR_SERIES", help="a case folder or a series folder")
    book.add_argument(
        "--out", type=Path, required=True, help="book folder (created or replaced when complete)"
    )


def run_book(args: argparse.Namespace) -> Path:
    from nmosim.simulate.book import write_book

    def progress(stage: str, seconds: float) -> None:
        print(f"  {stage:<20} {seconds:6.1f} s", file=sys.stderr, flush=True)

    return write_book(args.source, args.out, progress=progress)


COMMANDS = {"phantom": run_phantom, "case": run_case, "series": run_series, "evaluate": run_evaluate,
            "baseline": run_baseline, "dataset": run_dataset, "book": run_book}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        out = COMMANDS[args.command](args)
    except SpecError as error:
        print(f"nmosim {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PhaseNotMet as error:
        print(f"nmosim {args.command}: failed: {error}; another --seed will do", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nmosim: interrupted; nothing was left half-written", file=sys.stderr)
        return 130
    print(f"nmosim {args.command}: wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0

