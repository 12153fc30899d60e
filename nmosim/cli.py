"""The ``nmosim`` command line: a thin layer over the public functions of phantoms and simulate.

Parses, validates and reports; every user mistake ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.label_sets import PREDICTION_LABEL_SETS
from nmosim.phantoms.lesions import LATERALITIES, PhaseNotMet
from nmosim.phantoms.progression import AETIOLOGIES, PHASES
from nmosim.phantoms.rasterize import MAX_SUPERSAMPLING
from nmosim.phantoms.spec import SEXES
from nmosim.simulate.scanner import PRESETS

EMPTY_CHOICES = ("exclude", "monai", "one")  # simulate/metrics.py EMPTY_CONVENTIONS, without importing it

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- option types: each turns a bad value into one line, before any work -----------------------------


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed = {text!r} is not an integer in [0, 2**63)") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"seed = {value} is outside [0, 2**63)")
    return value


def _number(name: str, minimum: float | None = None):
    """Option type: a finite number (>= ``minimum``); refusals read ``name = value ...``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} = {text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{name} = {text} is not a finite number")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{name} = {text} is outside [{minimum:g}, inf)")
        return value

    return parse


def _count(name: str, low: int = 0, high: int | None = None):
    """Option type: an integer in [low, high] (no upper bound when ``high`` is None)."""
    allowed = f"[{low}, {'inf)' if high is None else f'{high}]'}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} = {text!r} is not an integer in {allowed}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{name} = {value} is outside {allowed}")
        return value

    return parse


def _folder(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is empty; give a folder name")
    return Path(text)


# tcp://host:port, tls://..., or host:port as Dask takes them
_SCHEDULER = re.compile(r"^(?:(?:tcp|tls|ucx|inproc|ws|wss)://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}/?$")


def _scheduler(text: str) -> str:
    if not _SCHEDULER.match(text.strip()):
        raise argparse.ArgumentTypeError(
            f"scheduler = {text!r} is not a Dask scheduler address such as tcp://10.0.0.5:8786"
        )
    return text.strip()


def _formats(text: str) -> tuple[str, ...]:
    from nmosim.simulate.case import check_formats

    try:
        return check_formats(text)
    except SpecError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_out(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--out", type=_folder, required=True, help=what)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier nmosim output in --out (one that carries nmosim's .nmosim marker); "
        "without it such a folder is refused. A folder that nmosim did not write is never replaced",
    )


def _add_phantom_options(p: argparse.ArgumentParser, single_time: bool = True) -> None:
    p.add_argument("--seed", type=_seed, default=0, help="random seed of the case, in [0, 2**63); default 0")
    _add_out(p, "output folder: a new one, created when complete (see --overwrite)")
    p.add_argument(
        "--sex",
        choices=SEXES,
        default=None,
        help="fix the sex of the sampled anatomy (default: drawn 50/50)",
    )
    p.add_argument(
        "--supersampling",
        type=_count("supersampling", 1, MAX_SUPERSAMPLING),
        default=2,
        help="sub-samples per voxel edge for partial volume, 1 to 8; default 2",
    )
    p.add_argument(
        "--phase",
        choices=PHASES,
        default=None,
        help="NHO phase = Brooker grade of the index hip, by measurement: none (0), a (I, islands), "
        "b (II, spurs leaving >= 10 mm), c (III, < 10 mm), d (IV, bony bridge); default none, "
        "or drawn from --weeks",
    )
    if single_time:
        p.add_argument(
            "--weeks",
            type=_number("weeks"),
            default=None,
            help="weeks since the neurological injury (>= 0); drives onset, growth and maturity and, "
            "without --phase, the phase",
        )
    p.add_argument(
        "--aetiology",
        choices=AETIOLOGIES,
        default="sci",
        help="spinal cord injury or brain injury: location priors (default sci)",
    )
    p.add_argument(
        "--laterality",
        choices=LATERALITIES,
        default=None,
        help="which hips have HO: the named hip only (unilateral_*) or both with the named one "
        "dominant (bilateral_*); default: drawn",
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
        help="fix one anatomy parameter, e.g. inter_hip_distance_mm=172 (mm); "
        "repeatable; names and ranges in phantoms/spec.py",
    )


def _add_spacing(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--spacing",
        type=_number("spacing_mm"),
        default=1.5,
        help="isotropic voxel size of the label grid in mm, 0.1 to 10; default 1.5",
    )


def _add_scanner_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default="quick",
        help="scanner protocol: quick (1.5 mm voxels, 360 views) or clinical "
        "(0.75 mm in-plane, 1 mm slices, 1152 views); default quick",
    )
    p.add_argument(
        "--scanner",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one protocol parameter, e.g. kvp=100, mas=50, kernel=bone, "
        "n_views=720, recon_method=sirt; repeatable; see simulate/scanner.py",
    )


def _add_qa_parser(sub) -> None:
    qa = sub.add_parser(
        "qa",
        help="a CT quality-assurance phantom through the scanner: HU, noise, NPS, MTF, uniformity",
        description="Scan a water cylinder's insert section (air, fat, acrylic, bone, mature HO) and its "
        "water-only uniformity section twice each with the protocol of nmosim case, and the insert section "
        "once more onto a small field of 0.35 mm pixels, and write qa.json (HU per insert against the "
        "expected HU; noise SD, NPS and its peak, uniformity from the uniformity section; MTF50/MTF10 from "
        "the air insert's edge at the protocol's pixel and on the fine field; the protocol) and ct.nii.gz, "
        "ct_repeat.nii.gz, ct_uniformity.nii.gz, ct_uniformity_repeat.nii.gz, ct_targeted.nii.gz "
        "(float32 HU).",
    )
    _add_scanner_options(qa)
    qa.add_argument(
        "--diameter",
        type=_number("diameter_mm"),
        default=200.0,
        choices=(200.0, 320.0),
        metavar="200|320",
        help="water cylinder diameter in mm, 200 or 320; default 200",
    )
    qa.add_argument(
        "--slices", type=_count("slices", 1, 64), default=3, help="reconstructed slices, 1 to 64; default 3"
    )
    qa.add_argument(
        "--seed", type=_seed, default=0, help="random seed of the noise, in [0, 2**63); default 0"
    )
    _add_out(qa, "output folder: a new one, created when complete (see --overwrite)")


def run_qa(args: argparse.Namespace) -> Path:
    from nmosim.simulate import qa
    from nmosim.simulate.scanner import make_protocol

    protocol = make_protocol(args.preset, **_scanner_overrides(args.scanner))
    start = time.perf_counter()

    def progress(stage: str) -> None:
        print(f"  {stage:<14} {time.perf_counter() - start:6.1f} s", file=sys.stderr, flush=True)

    scan = qa.scan_qa(protocol, args.diameter, args.slices, args.seed, progress=progress)
    return qa.write_qa(scan, qa.qa_report(scan, args.seed, args.preset), args.out, overwrite=args.overwrite)


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
        "radiograph_ap.png/.npz, truth.json and preview PNGs (with --format dicom also a DICOM CT series "
        "and SEG in dicom/). Runs on the CPU unless ASTRA sees a "
        "CUDA GPU; NMOSIM_DEVICE=cpu|cuda forces one.",
    )
    _add_phantom_options(case)
    _add_scanner_options(case)
    case.add_argument(
        "--z-range",
        type=_number("z_range_mm"),
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="scan range along z in mm (patient frame), LOW < HIGH, meeting the body (z from -140 to "
        "135 mm); default per preset",
    )
    case.add_argument(
        "--format",
        dest="formats",
        type=_formats,
        default=("nifti",),
        metavar="nifti,dicom",
        help="file formats, comma-separated: nifti (ct.nii.gz and the label volumes) and/or dicom (a CT "
        "series in dicom/ct/, one file per slice, and a DICOM SEG of the structures, dicom/seg.dcm); "
        "default nifti",
    )
    _add_evaluation_parsers(sub)
    _add_dataset_parser(sub)
    _add_book_parser(sub)
    _add_qa_parser(sub)
    return parser


def _add_dataset_parser(sub) -> None:
    dataset = sub.add_parser(
        "dataset",
        help="a cohort of CT cases from a TOML config, scheduled with Dask, in nnU-Net and MSD layouts",
        description="Write DIR/cases/<case_id> (resumable: complete cases are skipped), "
        "DIR/Dataset<NNN>_<name> (nnU-Net v2 raw), datalist.json (MSD/MONAI), cases.csv and "
        "manifest.json. Config keys are documented in examples/cohort.toml.",
    )
    dataset.add_argument("config", type=_folder, help="cohort config (TOML)")
    _add_out(dataset, "dataset folder: created, or resumed when it holds a dataset of the same config "
             "(finished cases are checked against their checksums and kept)")  # fmt: skip
    dataset.add_argument(
        "--regenerate",
        action="store_true",
        help="the config (or nmosim version) differs from the one the dataset was made with: remake "
        "the cases that it changes and rewrite the tables; without it such a rerun is refused",
    )
    dataset.add_argument(
        "--workers",
        type=_count("workers"),
        default=1,
        help="worker processes of the embedded Dask LocalCluster (one thread each); 0 runs the cases "
        "one by one in this process; default 1",
    )
    dataset.add_argument(
        "--scheduler",
        type=_scheduler,
        default=None,
        metavar="ADDRESS",
        help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (instead of a LocalCluster)",
    )


def run_dataset(args: argparse.Namespace) -> Path:
    from nmosim.progress import Reporter
    from nmosim.simulate.dataset import build_dataset, load_cohort

    spec = load_cohort(args.config)
    reporter = Reporter(spec.n_cases)
    where = args.scheduler or (f"{args.workers} Dask worker(s)" if args.workers else "this process")
    reporter.message(f"{spec.n_cases} cases on {where}; each: {', '.join(reporter.stages)}")

    def progress(done: int, total: int, row: dict) -> None:
        note = "kept, checksums match" if row.get("skipped") else row.get("status", "")
        if row.get("remade"):
            note = f"remade: {row['remade'][0]}"
        reporter.finished(row["case_id"], f"done ({note})", free=bool(row.get("skipped")))

    def on_stage(event: dict) -> None:
        reporter.stage(event["case_id"], event["stage"], event["seconds"])

    try:
        out = build_dataset(spec, args.out, args.workers, args.scheduler, progress, overwrite=args.overwrite,
                            regenerate=args.regenerate, on_stage=on_stage)  # fmt: skip
    finally:
        reporter.close()
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
    evaluate.add_argument("--truth", type=_folder, required=True, help="folder holding the case folders")
    evaluate.add_argument("--pred", type=_folder, required=True, help="folder holding <case_id>.nii.gz")
    _add_out(evaluate, "report folder, created when complete")
    evaluate.add_argument(
        "--tolerance-mm",
        type=_number("tolerance_mm", minimum=0),
        default=2.0,
        help="surface tolerance of the normalized surface distance in mm, >= 0; default 2",
    )
    evaluate.add_argument(
        "--iou-threshold",
        type=_number("iou_threshold"),
        default=0.0,
        help="a predicted lesion detects a truth lesion when their IoU exceeds this, in [0, 1); "
        "default 0 (any shared voxel)",
    )
    evaluate.add_argument(
        "--pred-labels",
        choices=("auto", *PREDICTION_LABEL_SETS),
        default="auto",
        help="label ids of the predictions: structures (6 ho_right, 7 ho_left) or a label set of nmosim "
        "dataset: bones_ho (4 ho_right, 5 ho_left) or ho (1 = HO, side by the sign of x); default auto: "
        "the dataset.json in --pred, else the dataset of --truth, else the prediction values",
    )
    evaluate.add_argument(
        "--empty",
        choices=EMPTY_CHOICES,
        default="exclude",
        help="a class empty in truth and prediction: exclude (default: no score, counted apart, out of "
        "the means), one (Dice 1, as MONAI with ignore_empty=False) or monai (every empty-truth class "
        "undefined, as MONAI's default ignore_empty=True)",
    )

    baseline = sub.add_parser(
        "baseline",
        help="a simple HO detector (mineral without a mirror image on the other side) writing predictions",
        description="For each case folder under --cases holding ct.nii.gz write OUT/<case_id>.nii.gz: "
        "a label map with 6 (ho_right) and 7 (ho_left), ready for nmosim evaluate. Method and limits "
        "in simulate/baseline.py.",
    )
    baseline.add_argument("--cases", type=_folder, required=True, help="folder holding the case folders")
    _add_out(baseline, "prediction folder, created when every prediction is written")
    baseline.add_argument(
        "--threshold-hu",
        type=_number("threshold_hu"),
        default=150.0,
        help="candidate voxels above this HU; default 150",
    )
    baseline.add_argument(
        "--mirror-tolerance-mm",
        type=_number("mirror_tolerance_mm", minimum=0),
        default=10.0,
        help="mineral pieces that reach farther than this (mm) from the mirror image of the other side are "
        "HO, down to 0.4 of this distance; default 10",
    )
    baseline.add_argument(
        "--min-volume-ml",
        type=_number("min_volume_ml", minimum=0),
        default=0.1,
        help="drop components smaller than this (ml, >= 0); default 0.1",
    )


def _case_progress(verb: str):
    """``(progress(done, total, case_id), reporter)`` for commands that go case by case."""
    from nmosim.progress import Reporter

    reporter = Reporter(0, stages=(verb,))

    def progress(done: int, total: int, case_id: str) -> None:
        reporter.total = total
        reporter.finished(case_id, verb)

    return progress, reporter


def run_baseline(args: argparse.Namespace) -> Path:
    from nmosim.simulate.baseline import run_baseline as baseline

    progress, reporter = _case_progress("predicted")
    try:
        out = baseline(args.cases, args.out, args.threshold_hu, args.min_volume_ml,
                       mirror_tolerance_mm=args.mirror_tolerance_mm, progress=progress,
                       overwrite=args.overwrite)  # fmt: skip
    finally:
        reporter.close()
    return out


def run_evaluate(args: argparse.Namespace) -> Path:
    import nmosim

    progress, reporter = _case_progress("evaluated")
    try:
        rows, summary = nmosim.evaluate(args.truth, args.pred, args.tolerance_mm, args.iou_threshold,
                                        progress, args.pred_labels, args.empty)  # fmt: skip
    finally:
        reporter.close()
    print(f"  label set {summary['pred_labels']} ({summary['pred_labels_source']}); empty classes: "
          f"{args.empty}", file=sys.stderr)  # fmt: skip
    for status, count in summary["status_counts"].items():
        print(f"  {status}: {count} case(s)", file=sys.stderr)
    return nmosim.write_report(args.out, rows, summary, overwrite=args.overwrite)


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


def _spec(args: argparse.Namespace):
    import nmosim

    overrides = _anatomy_overrides(args.anatomy)
    if args.sex:
        overrides["sex"] = args.sex
    return nmosim.CaseSpec(
        seed=args.seed,
        phase=args.phase,
        weeks=getattr(args, "weeks", None),
        aetiology=args.aetiology,
        confounders=args.confounders,
        anatomy_overrides=overrides,
        laterality=args.laterality,
    )


def run_phantom(args: argparse.Namespace) -> Path:
    import nmosim

    phantom = nmosim.build_phantom(_spec(args))
    return nmosim.write_phantom(phantom, args.out, spacing_mm=args.spacing, supersampling=args.supersampling,
                                overwrite=args.overwrite)  # fmt: skip


def _weeks_list(text: str) -> list[float]:
    from nmosim.simulate.case import check_series_weeks

    try:
        weeks = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise SpecError(f"weeks = {text!r} is not a comma-separated list of numbers") from None
    if not weeks:
        raise SpecError(f"weeks = {text!r} lists no time point")
    check_series_weeks(weeks)  # each time point its own folder
    return weeks


def run_series(args: argparse.Namespace) -> Path:
    import nmosim

    weeks = _weeks_list(args.series_weeks)
    spec = _spec(args)
    series = nmosim.build_series(spec, weeks)
    return nmosim.write_series(series, args.out, spacing_mm=args.spacing, supersampling=args.supersampling,
                               overwrite=args.overwrite)  # fmt: skip


def run_case(args: argparse.Namespace) -> Path:
    import nmosim

    def progress(stage: str, seconds: float) -> None:
        print(f"  {stage:<14} {seconds:6.1f} s", file=sys.stderr, flush=True)

    spec = _spec(args)
    protocol = nmosim.protocol(args.preset, **_scanner_overrides(args.scanner))
    # a forced but absent GPU, or a cone-beam geometry without one, is reported before any work
    device = nmosim.select_device(protocol=protocol)
    start = time.perf_counter()
    phantom = nmosim.build_phantom(spec)
    progress("phantom", time.perf_counter() - start)
    z_range = tuple(args.z_range) if args.z_range else None  # None: the preset's range
    ct = nmosim.simulate_ct(phantom, protocol, z_range_mm=z_range, supersampling=args.supersampling,
                            preset=args.preset, device=device, progress=progress)  # fmt: skip
    start = time.perf_counter()
    folder = nmosim.write_case(ct, args.out, overwrite=args.overwrite, formats=args.formats)
    progress("write", time.perf_counter() - start)
    return folder


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
    _add_out(book, "book folder: a new one, created when complete (see --overwrite)")


def run_book(args: argparse.Namespace) -> Path:
    from nmosim.simulate.book import write_book

    def progress(stage: str, seconds: float) -> None:
        print(f"  {stage:<20} {seconds:6.1f} s", file=sys.stderr, flush=True)

    return write_book(args.source, args.out, progress=progress, overwrite=args.overwrite)


COMMANDS = {"phantom": run_phantom, "case": run_case, "series": run_series, "evaluate": run_evaluate,
            "baseline": run_baseline, "dataset": run_dataset, "book": run_book, "qa": run_qa}  # fmt: skip


# What each command writes, for nmosim's marker in its output folder.
KINDS = {"phantom": "phantom", "series": "series", "case": "case", "dataset": "dataset",
         "evaluate": "evaluate", "baseline": "baseline", "book": "book", "qa": "qa"}  # fmt: skip
_INPUTS = {"dataset": ("config",), "evaluate": ("truth", "pred"), "baseline": ("cases",), "book": ("source",)}


def _need(args: argparse.Namespace):
    """Memory and disk of a phantom, series or case (:mod:`nmosim.simulate.budget`), refused above the
    memory limit; None for other commands (a dataset sizes its cases itself)."""
    from nmosim.simulate import budget

    if args.command in ("phantom", "series"):
        n = len(_weeks_list(args.series_weeks)) if args.command == "series" else 1
        return budget.check_phantom(args.spacing, args.supersampling, n)
    if args.command == "case":
        from nmosim.simulate.case import SCAN_RANGE_MM
        from nmosim.simulate.scanner import make_protocol

        protocol = make_protocol(args.preset, **_scanner_overrides(args.scanner))
        z_range = tuple(args.z_range) if args.z_range else SCAN_RANGE_MM[args.preset]
        return budget.check_case(protocol, z_range, formats=args.formats)
    return None


def preflight(args: argparse.Namespace) -> None:
    """Checks before any work: the output folder (DESIGN.md 11), inputs that replacing it would
    remove (``--overwrite``), memory and disk. Raises :class:`SpecError`."""
    from nmosim.simulate.outputs import check_free_space, check_output_dir

    resume = args.command == "dataset"
    out = check_output_dir(args.out, args.overwrite, kind=KINDS[args.command], resume=resume)
    for name in _INPUTS.get(args.command, ()):
        given = os.path.realpath(getattr(args, name))
        if args.overwrite and out.exists() and Path(given).is_relative_to(os.path.realpath(out)):
            raise SpecError(f"out = '{out}' holds the input {name} = '{getattr(args, name)}'; "
                            "give another folder")  # fmt: skip
    need = _need(args)
    if need is not None:
        check_free_space(out, need.disk_bytes)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nmosim ARGV``; returns the exit code (0, 2 for a user's mistake), never raises SystemExit."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a refused option (one line printed already)
        return stop.code if isinstance(stop.code, int) else EXIT_BAD_INPUT
    start = time.perf_counter()
    try:
        preflight(args)
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
