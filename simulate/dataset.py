"""Cohorts of CT cases from a TOML config: per-case draws, scale-out with Dask, nnU-Net and MSD layouts.

It schedules and packages cases written by :func:`nmosim.simulate.case.write_ct_case`; it never images
them itself.

Config (TOML, see ``examples/cohort.toml``)::

    name = "NHOSynth"          # dataset name: letters, digits, '_' (nnU-Net DatasetNNN_<name>)
    dataset_id = 501           # NNN, 1 to 999
    n_cases = 20               # >= 1
    seed = 2026                # >= 0
    test_fraction = 0.25       # in [0, 1); round(test_fraction * n_cases) cases go to the test split
    label_set = "ho"           # "ho" (background, ho), "bones_ho" or "all" (the structures ids)
    preset = "quick"           # scanner preset of simulate/scanner.py
    z_range_mm = [-100, 80]    # optional scan range along z (mm); default per preset
    formats = ["nifti"]        # case files: "nifti" (always: the layouts link it) and "dicom"
    [phase_mix]                # fractions over none, a, b, c, d summing to 1
    [aetiology_mix]            # fractions over sci, brain summing to 1
    [scanner]
    mas = [50, 100, 200]       # dose ladder (mAs): one drawn per case, uniformly
    kernels = ["soft", "bone"] # FBP kernels: one drawn per case, uniformly
    [scanner.overrides]        # protocol fields fixed for every case (tiny protocols in tests)

Per case ``i``, the draws (phase, aetiology, mAs, kernel, split key) come from a generator seeded
by ``SeedSequence([seed, i])``'s child after the case's own components (``nmosim.simulate.provenance``), so a
case's assignment depends on (seed, i) only, never on the number of workers or the order of work.
The test split is the ``round(test_fraction * n_cases)`` cases with the smallest split keys.

Output folder ``DIR`` (it carries nmosim's marker, which records the config it was made with):
``cases/<case_id>/`` (one case folder each, written whole through a staging folder; its marker holds
the sha256 of its files, taken as they were written), ``Dataset<NNN>_<name>/``
(nnU-Net v2 raw: imagesTr, labelsTr, imagesTs, labelsTs, dataset.json, README.md; images are hard links
to the case CTs, copies where links are impossible), ``datalist.json`` (MSD style, as MONAI reads it:
``training`` items with a ``fold`` key for ``datafold_read``, ``testing`` items as Auto3DSeg looks for
them, and ``name``, ``modality``, ``labels``, ``numTraining``, ``numTest`` for
``load_decathlon_properties``; paths relative to ``DIR``), ``cases.csv``, ``manifest.json`` (the nmosim
version, the config and the sha256 of its normalized form, and one row per case: split, draws, grades,
gaps, volumes, dose, kernel and the sha256 of every file of the case) and the dataset card
``README.md`` with ``figures/`` (:mod:`nmosim.simulate.dataset_card`). Training case ``k`` (in case
order) is in fold ``k % N_FOLDS`` (fewer folds when there are fewer training cases).
A case whose phase cannot be met is retried with the next draw (case index ``i + k * RETRY_STRIDE``).

A rerun resumes: a case folder whose files match its recorded checksums is kept, any other (damaged,
missing files, half-made) is made again. A rerun with another config or nmosim version is refused,
naming the keys that differ, unless ``regenerate`` remakes the cases whose inputs changed (keys such
as ``name`` or ``test_fraction`` change only the tables); ``overwrite`` starts the folder anew.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.label_sets import LABEL_SETS, to_label_set
from nmosim.phantoms.progression import AETIOLOGIES, PHASES
from nmosim.simulate import budget
from nmosim.simulate.dataset_card import (
    DATA_LICENCE,
    HARD_LINK_NOTE,
    MIRRORING_NOTE,
    card_text,
    has_sides,
    write_dataset_card,
)
from nmosim.simulate.io import read_json, read_nifti, write_json, write_nifti, write_text
from nmosim.simulate.outputs import (
    check_free_space,
    check_output_dir,
    discard,
    nmosim_version,
    open_output_dir,
    read_marker,
    recover,
    sha256,
    staged_directory,
    verify_output,
    write_marker,
)
from nmosim.simulate.provenance import stream_seed
from nmosim.simulate.scanner import KERNELS, PRESETS, make_protocol

RETRY_STRIDE = 1_000_000  # case index offset of a retry: far from every real index
MAX_ATTEMPTS = 4
FRACTION_TOLERANCE = 1e-6
SCHEDULER_TIMEOUT_S = 5.0
STAGE_TOPIC = "nmosim-case-stage"  # Dask event topic of the stages of cases run on workers
N_FOLDS = 5  # k-fold cross-validation folds of the training cases in datalist.json
CASE_FILES = ("ct.nii.gz", "structures.nii.gz", "tissues.nii.gz", "ho_instances.nii.gz", "truth.json")
_TOP_KEYS = ("name", "dataset_id", "n_cases", "seed", "test_fraction", "label_set", "preset", "z_range_mm",
             "formats", "phase_mix", "aetiology_mix", "scanner")  # fmt: skip
DEFAULT_FORMATS = ("nifti",)
_SCANNER_KEYS = ("mas", "kernels", "overrides")


@dataclass(frozen=True)
class CohortSpec:
    """A validated cohort config (module docstring); build it with :func:`parse_cohort`."""

    name: str = "NHOSynth"
    dataset_id: int = 501
    n_cases: int = 10
    seed: int = 0
    test_fraction: float = 0.2
    label_set: str = "ho"
    preset: str = "quick"
    z_range_mm: tuple[float, float] | None = None
    phase_mix: dict[str, float] = field(default_factory=lambda: {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25})
    aetiology_mix: dict[str, float] = field(default_factory=lambda: {"sci": 1.0})
    mas: tuple[float, ...] = (200.0,)
    kernels: tuple[str, ...] = ("standard",)
    overrides: dict[str, object] = field(default_factory=dict)
    formats: tuple[str, ...] = DEFAULT_FORMATS

    @property
    def folder_name(self) -> str:
        """nnU-Net's ``Dataset<NNN>_<name>``."""
        return f"Dataset{self.dataset_id:03d}_{self.name}"


@dataclass(frozen=True)
class CaseAssignment:
    """What one case of a cohort is: its id, split and draws."""

    index: int
    case_id: str
    split: str  # "train" | "test"
    phase: str
    aetiology: str
    mas: float
    kernel: str


# --- config -------------------------------------------------------------------------------------------


def load_cohort(path: Path) -> CohortSpec:
    """Read and validate a cohort TOML file."""
    path = Path(path)
    if path.is_dir():
        raise SpecError(f"config = '{path}' is a folder; give a TOML file such as examples/cohort.toml")
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"config = '{path}' does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SpecError(f"config = '{path}' is not valid TOML: {error}") from None
    except OSError as error:
        raise SpecError(f"config = '{path}' cannot be read: {error.strerror}") from None
    return parse_cohort(config)


def _unknown(section: str, config: dict, allowed: tuple[str, ...]) -> None:
    for key in config:
        if key not in allowed:
            raise SpecError(f"{section}{key} is not a known key; allowed: {', '.join(allowed)}")


def _integer(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SpecError(f"{name} = {value!r} must be an integer in [{lo}, {hi}]")
    return int(value)


def _mix(name: str, value: object, choices: tuple[str, ...]) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise SpecError(f"{name} = {value!r} must be a table of fractions over {', '.join(choices)}")
    out = {}
    for key, fraction in value.items():
        if key not in choices:
            raise SpecError(f"{name}.{key} is not a known key; allowed: {', '.join(choices)}")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise SpecError(f"{name}.{key} = {fraction!r} must be a fraction in [0, 1]")
        out[key] = float(fraction)
    total = sum(out.values())
    if abs(total - 1.0) > FRACTION_TOLERANCE:
        raise SpecError(f"{name} fractions sum to {total:g}, must sum to 1")
    return {k: out[k] for k in choices if k in out}


def _formats(value: object) -> tuple[str, ...]:
    """The case formats of a cohort: a list of "nifti" and "dicom" that holds "nifti"."""
    from nmosim.simulate.case import check_formats

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f'formats = {value!r} must be a list such as ["nifti", "dicom"]')
    formats = check_formats(value)
    if "nifti" not in formats:
        raise SpecError(f"formats = {value!r} must hold \"nifti\": the nnU-Net and MSD layouts link "
                        "the NIfTI files")  # fmt: skip
    return formats


def parse_cohort(config: dict) -> CohortSpec:
    """Validate a cohort config dict (as read from TOML); errors name the key (``SpecError``)."""
    _unknown("", config, _TOP_KEYS)
    d = CohortSpec()
    name = config.get("name", d.name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise SpecError(f"name = {name!r} must be letters, digits or '_'")
    test_fraction = config.get("test_fraction", d.test_fraction)
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float))
        or not (0 <= test_fraction < 1)
    ):
        raise SpecError(f"test_fraction = {test_fraction!r} is outside [0, 1)")
    label_set = config.get("label_set", d.label_set)
    if label_set not in LABEL_SETS:
        raise SpecError(f"label_set = {label_set!r} is not one of {{{', '.join(LABEL_SETS)}}}")
    preset = config.get("preset", d.preset)
    if preset not in PRESETS:
        raise SpecError(f"preset = {preset!r} is not one of {{{', '.join(PRESETS)}}}")
    z_range = config.get("z_range_mm")
    if z_range is not None:
        ok = (
            isinstance(z_range, list)
            and len(z_range) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in z_range)
        )
        if not ok:
            raise SpecError(f"z_range_mm = {z_range!r} must be [low, high] in mm with low < high")
        z_range = budget.check_z_range(z_range)  # finite, not empty, meets the body
    formats = _formats(config.get("formats", list(d.formats)))
    scanner = config.get("scanner", {})
    if not isinstance(scanner, dict):
        raise SpecError(f"scanner = {scanner!r} must be a table")
    _unknown("scanner.", scanner, _SCANNER_KEYS)
    mas = scanner.get("mas", list(d.mas))
    if (
        not isinstance(mas, list)
        or not mas
        or not all(isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0 for m in mas)
    ):
        raise SpecError(f"scanner.mas = {mas!r} must be a non-empty list of doses > 0 (mAs)")
    kernels = scanner.get("kernels", list(d.kernels))
    if not isinstance(kernels, list) or not kernels or any(k not in KERNELS for k in kernels):
        raise SpecError(f"scanner.kernels = {kernels!r} must be a non-empty list of {', '.join(KERNELS)}")
    overrides = scanner.get("overrides", {})
    if not isinstance(overrides, dict) or {"mas", "kernel"} & set(overrides):
        raise SpecError("scanner.overrides must be a table of protocol fields other than mas and kernel")
    spec = CohortSpec(
        name=name,
        dataset_id=_integer("dataset_id", config.get("dataset_id", d.dataset_id), 1, 999),
        n_cases=_integer("n_cases", config.get("n_cases", d.n_cases), 1, 100_000),
        seed=_integer("seed", config.get("seed", d.seed), 0, 2**63 - 1),
        test_fraction=float(test_fraction),
        label_set=label_set,
        preset=preset,
        z_range_mm=z_range,
        phase_mix=_mix("phase_mix", config.get("phase_mix", d.phase_mix), PHASES),
        aetiology_mix=_mix("aetiology_mix", config.get("aetiology_mix", d.aetiology_mix), AETIOLOGIES),
        mas=tuple(float(m) for m in mas),
        kernels=tuple(kernels),
        overrides=dict(overrides),
        formats=formats,
    )
    for m in spec.mas:  # every protocol of the cohort must be valid before any work starts
        for k in spec.kernels:
            try:
                make_protocol(spec.preset, **spec.overrides, mas=m, kernel=k)
            except SpecError as error:
                raise SpecError(f"scanner: {error}") from None
            except TypeError as error:
                raise SpecError(f"scanner.overrides: {error}") from None
    return spec


# --- assignment -----------------------------------------------------------------------------------------


def _draw(rng: np.random.Generator, mix: dict[str, float]) -> str:
    keys = list(mix)
    return keys[int(rng.choice(len(keys), p=np.array([mix[k] for k in keys])))]


def assign_cases(spec: CohortSpec) -> list[CaseAssignment]:
    """Per-case id, split and draws; depends on (seed, index) only (module docstring)."""
    draws = []
    for index in range(spec.n_cases):
        seq = stream_seed(spec.seed, index, "cohort")  # the stream the cohort has always drawn from
        rng = np.random.default_rng(seq)
        draws.append((
            _draw(rng, spec.phase_mix), _draw(rng, spec.aetiology_mix),
            spec.mas[int(rng.integers(len(spec.mas)))], spec.kernels[int(rng.integers(len(spec.kernels)))],
            float(rng.random()),
        ))  # fmt: skip
    n_test = int(round(spec.test_fraction * spec.n_cases))
    order = sorted(range(spec.n_cases), key=lambda i: (draws[i][4], i))
    test = set(order[:n_test])
    return [
        CaseAssignment(i, f"case_{i:04d}", "test" if i in test else "train", *draws[i][:4])
        for i in range(spec.n_cases)
    ]


# --- one case (runs on a worker) ---------------------------------------------------------------------------


def is_complete(folder: Path) -> bool:
    """A case folder is complete when its files match the checksums its marker recorded."""
    return Path(folder).is_dir() and verify_output(folder, "case") == []


def case_inputs(spec: CohortSpec, case: CaseAssignment, version: str | None = None) -> dict:
    """Everything a case folder depends on: same inputs, same bytes."""
    return {
        "nmosim": version or nmosim_version(), "seed": spec.seed, "index": case.index, "phase": case.phase,
        "aetiology": case.aetiology, "mas": case.mas, "kernel": case.kernel, "preset": spec.preset,
        "z_range_mm": list(spec.z_range_mm) if spec.z_range_mm else None,
        "overrides": _normalized(spec.overrides),
        **({"formats": list(spec.formats)} if spec.formats != DEFAULT_FORMATS else {}),
    }  # fmt: skip


def run_case(
    spec: CohortSpec,
    case: CaseAssignment,
    cases_dir: Path,
    writer: Callable | None = None,
    on_stage: Callable[[dict], None] | None = None,
) -> dict:
    """Write one case (unless a whole one is there) and return its manifest row.

    A case folder whose files do not match its marker's checksums (or that has none) is removed and
    made again; the row says why under ``remade``. ``writer(out, request, preset=, protocol_overrides=,
    z_range_mm=, threads=, progress=)`` (and ``formats=`` for a cohort with more formats than NIfTI)
    defaults to :func:`nmosim.simulate.case.write_ct_case`;
    ``threads`` is the thread count of the Dask worker that runs the case (None, every core, outside
    a worker). After each stage of the case, ``{"case_id", "stage", "seconds"}`` goes to ``on_stage``
    or, inside a Dask worker, to the worker's event topic ``STAGE_TOPIC`` (the client subscribes).
    """
    from nmosim.phantoms.lesions import PhaseNotMet
    from nmosim.simulate.case import CaseRequest, write_ct_case

    write = writer or write_ct_case
    folder = Path(cases_dir) / case.case_id
    problems = verify_output(folder, "case") if os.path.lexists(folder) else []
    skipped = os.path.lexists(folder) and not problems
    if problems:
        discard(folder)
    threads = worker_threads()

    def stage(name: str, seconds: float) -> None:
        _report_stage({"case_id": case.case_id, "stage": name, "seconds": float(seconds)}, on_stage)

    attempt = 0
    while not skipped:
        index = case.index + attempt * RETRY_STRIDE
        request = CaseRequest(seed=spec.seed, case_index=index, phase=case.phase, aetiology=case.aetiology)
        extra = {"formats": spec.formats} if spec.formats != DEFAULT_FORMATS else {}
        try:
            write(folder, request, preset=spec.preset, z_range_mm=spec.z_range_mm, threads=threads,
                  protocol_overrides={**spec.overrides, "mas": case.mas, "kernel": case.kernel},
                  progress=stage, **extra)  # fmt: skip
            break
        except PhaseNotMet:
            attempt += 1
            if attempt == MAX_ATTEMPTS:
                return {**asdict(case), "status": "failed", "skipped": False, "remade": problems[:1]}
    return {**asdict(case), **case_row(folder), "status": "ok", "skipped": skipped, "remade": problems[:1]}


def _report_stage(event: dict, on_stage: Callable[[dict], None] | None) -> None:
    if on_stage is not None:
        on_stage(event)
        return
    try:
        from distributed import get_worker

        get_worker().log_event(STAGE_TOPIC, event)
    except (ImportError, ValueError):  # ValueError: not inside a worker, and nobody listens
        pass


def worker_threads() -> int | None:
    """Threads of the Dask worker running the calling task (a case uses no more); None outside one."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError):  # ValueError: not inside a worker
        return None


def case_row(folder: Path) -> dict:
    """Grades, gaps, volumes, dose, kernel and file checksums (as recorded when written) of a case."""
    truth = read_json(folder / "truth.json")
    scanner = truth.get("scanner", {})
    row: dict[str, object] = {
        "case_index_used": truth.get("case_index"),
        "measured_phase": truth.get("phase"),
    }
    for side in ("right", "left"):
        info = truth.get(side, {})
        row[f"grade_{side}"] = info.get("brooker_grade")
        row[f"gap_mm_{side}"] = info.get("gap_mm")
        row[f"ho_volume_ml_{side}"] = info.get("ho_volume_ml")
    row["scanner_mas"] = scanner.get("mas")
    row["scanner_kernel"] = scanner.get("kernel")
    marker = read_marker(folder) or {}
    files = marker.get("files")
    row["sha256"] = (
        dict(files)
        if isinstance(files, dict)
        else {
            p.name: sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")
        }
    )
    return row


# --- the cohort ---------------------------------------------------------------------------------------------


def run_cases(
    spec: CohortSpec,
    cases_dir: Path,
    client=None,
    progress: Callable[[int, int, dict], None] | None = None,
    writer: Callable | None = None,
    on_stage: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Write every case of ``spec`` into ``cases_dir``; rows in case order.

    Without a Dask ``client`` the cases run one after the other in this process.
    ``progress(done, total, row)`` follows each case, ``on_stage(event)`` each stage of a case
    (:func:`run_case`; from workers through the client's subscription to ``STAGE_TOPIC``).
    """
    assignments = assign_cases(spec)
    cases_dir = Path(cases_dir)
    cases_dir.mkdir(parents=True, exist_ok=True)
    total = len(assignments)
    rows: dict[int, dict] = {}
    if client is None:
        for case in assignments:
            rows[case.index] = run_case(spec, case, cases_dir, writer, on_stage)
            if progress:
                progress(len(rows), total, rows[case.index])
        return [rows[i] for i in sorted(rows)]
    from distributed import as_completed

    if on_stage is not None:
        client.subscribe_topic(STAGE_TOPIC, lambda event: on_stage(event[1]))
    try:
        futures = {client.submit(run_case, spec, case, cases_dir, writer, pure=False): case.index
                   for case in assignments}  # fmt: skip
        for future in as_completed(list(futures), loop=client.loop):
            rows[futures[future]] = future.result()
            if progress:
                progress(len(rows), total, rows[futures[future]])
    finally:
        if on_stage is not None:
            client.unsubscribe_topic(STAGE_TOPIC)
    return [rows[i] for i in sorted(rows)]


class _client:
    """A Dask client on an embedded LocalCluster or an existing scheduler (None for ``workers = 0``
    without a scheduler); closes what it opened."""

    def __init__(self, workers: int, scheduler: str | None) -> None:
        self.workers, self.scheduler = workers, scheduler
        self.cluster = None
        self.client = None

    def __enter__(self):
        if self.workers == 0 and self.scheduler is None:
            return None
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s", set_as_default=False)
            except (OSError, TimeoutError, ValueError) as error:
                raise SpecError(f"scheduler = {self.scheduler!r} is not reachable: {error}") from None
            return self.client
        # Scheduler and worker logs below errors stay quiet: the CLI draws its own progress. No
        # dashboard; the scheduler's HTTP server takes a free port (on the default 8787, taken by
        # another cluster, Dask warns "Port 8787 is already in use").
        self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None, host="127.0.0.1",
                                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                    silence_logs=logging.ERROR)  # fmt: skip
        self.client = Client(self.cluster, set_as_default=False)
        return self.client

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def label_map(structures: np.ndarray, label_set: str) -> tuple[np.ndarray, dict[str, int]]:
    """Structures ids mapped to the consecutive labels of ``label_set`` and the label names."""
    return to_label_set(structures, label_set)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_layouts(spec: CohortSpec, out: Path, rows: list[dict]) -> Path:
    """nnU-Net v2 raw folder, datalist.json, cases.csv and manifest.json for the finished cases."""
    out = Path(out)
    ok = [r for r in rows if r["status"] == "ok"]
    record = config_record(spec)
    labels_names: dict[str, int] = {}
    with staged_directory(out / spec.folder_name, "nnunet", overwrite=True) as stage:
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (stage / sub).mkdir()
        for row in ok:
            suffix = "Tr" if row["split"] == "train" else "Ts"
            case_dir = out / "cases" / row["case_id"]
            _link_or_copy(case_dir / "ct.nii.gz", stage / f"images{suffix}" / f"{row['case_id']}_0000.nii.gz")
            volume = read_nifti(case_dir / "structures.nii.gz")
            mapped, labels_names = label_map(volume.data, spec.label_set)
            target = stage / f"labels{suffix}" / f"{row['case_id']}.nii.gz"
            write_nifti(target, mapped, volume.grid(), np.uint8)
        if not labels_names:
            labels_names = label_map(np.zeros((1, 1, 1), np.uint8), spec.label_set)[1]
        meta = {
            "name": spec.name,
            "description": "Synthetic hip CT with exact ground truth for neurogenic HO (nmosim)",
            "reference": "nmosim",
            "licence": DATA_LICENCE,
            "release": record["nmosim_version"],
            "channel_names": {"0": "CT"},
            "labels": labels_names,
            "numTraining": sum(r["split"] == "train" for r in ok),
            "numTest": sum(r["split"] == "test" for r in ok),
            "file_ending": ".nii.gz",
            "label_set": spec.label_set,
            "images": HARD_LINK_NOTE,
        }
        if has_sides(spec.label_set):
            meta["mirroring"] = MIRRORING_NOTE
        write_json(stage / "dataset.json", meta)
        write_text(stage / "README.md", card_text(record, rows, spec.folder_name, "../figures/"))
    write_json(out / "datalist.json", datalist(spec, ok))
    write_json(out / "manifest.json", {**record, "cases": [_manifest_row(r) for r in rows]})
    _write_cases_csv(out / "cases.csv", rows)
    write_dataset_card(out, record, rows, spec.folder_name)
    return out


def datalist(spec: CohortSpec, ok: list[dict]) -> dict:
    """datalist.json: MSD properties, ``training`` with ``fold`` keys and ``testing`` (module docstring)."""
    folder = spec.folder_name
    names = label_map(np.zeros((1, 1, 1), np.uint8), spec.label_set)[1]
    train = [r for r in ok if r["split"] == "train"]
    test = [r for r in ok if r["split"] == "test"]
    n_folds = max(1, min(N_FOLDS, len(train)))

    def item(row: dict, s: str) -> dict:
        return {"image": f"{folder}/images{s}/{row['case_id']}_0000.nii.gz",
                "label": f"{folder}/labels{s}/{row['case_id']}.nii.gz"}  # fmt: skip

    return {
        "name": spec.name,
        "description": "Synthetic hip CT with exact ground truth for neurogenic HO (nmosim)",
        "reference": "nmosim",
        "licence": DATA_LICENCE,
        "release": nmosim_version(),
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(v): n for n, v in names.items()},
        "label_set": spec.label_set,
        "numTraining": len(train),
        "numTest": len(test),
        "numFolds": n_folds,
        "training": [{**item(r, "Tr"), "fold": k % n_folds} for k, r in enumerate(train)],
        "testing": [item(r, "Ts") for r in test],
    }


def _spec_dict(spec: CohortSpec) -> dict:
    d = asdict(spec)
    d["z_range_mm"] = list(spec.z_range_mm) if spec.z_range_mm else None
    d["formats"] = list(spec.formats)
    if spec.formats == DEFAULT_FORMATS:  # the config of a dataset made before formats existed
        del d["formats"]
    return d


def _normalized(value: object) -> object:
    """Numbers as floats (``4`` and ``4.0`` are one config), tables with sorted keys."""
    if isinstance(value, dict):
        return {str(k): _normalized(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_normalized(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def config_record(spec: CohortSpec) -> dict:
    """The nmosim version, the config and the sha256 of its normalized JSON (manifest and marker)."""
    config = _spec_dict(spec)
    text = json.dumps(_normalized(config), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return {"nmosim_version": nmosim_version(), "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "config": config}  # fmt: skip


_TOML_NAMES = {"mas": "scanner.mas", "kernels": "scanner.kernels", "overrides": "scanner.overrides"}


def _flat(config: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in config.items():
        name = prefix + (_TOML_NAMES.get(key, key) if not prefix else key)
        if isinstance(value, dict) and value:
            out.update(_flat(value, name + "."))
        else:
            out[name] = _normalized(value)
    return out


def config_changes(before: dict, after: dict) -> list[str]:
    """``key: old -> new`` for every config key (TOML names) and the nmosim version that differ."""
    changes = []
    if before.get("nmosim_version") != after["nmosim_version"]:
        changes.append(f"nmosim version: {before.get('nmosim_version')} -> {after['nmosim_version']}")
    old, new = _flat(before.get("config") or {}), _flat(after["config"])
    for key in sorted(set(old) | set(new), key=lambda k: (k not in new, k)):
        if old.get(key, "unset") != new.get(key, "unset"):
            changes.append(f"{key}: {_shown(old.get(key, 'unset'))} -> {_shown(new.get(key, 'unset'))}")
    return changes


def _shown(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)


def spec_from_config(config: dict) -> CohortSpec | None:
    """The :class:`CohortSpec` of a recorded config, or None when it no longer parses."""
    try:
        values = dict(config)
        values["z_range_mm"] = tuple(values["z_range_mm"]) if values.get("z_range_mm") else None
        values["mas"], values["kernels"] = tuple(values["mas"]), tuple(values["kernels"])
        values["formats"] = tuple(values.get("formats", DEFAULT_FORMATS))
        return CohortSpec(**values)
    except (TypeError, KeyError, ValueError):
        return None


def _manifest_row(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("skipped", "remade")}


CSV_COLUMNS = ("case_id", "index", "split", "status", "phase", "measured_phase", "aetiology", "mas", "kernel",
               "grade_right", "grade_left", "gap_mm_right", "gap_mm_left", "ho_volume_ml_right",
               "ho_volume_ml_left", "case_index_used")  # fmt: skip


def _write_cases_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in CSV_COLUMNS])
    write_text(path, buffer.getvalue())


def build_dataset(
    spec: CohortSpec,
    out: Path,
    workers: int = 1,
    scheduler: str | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    writer: Callable | None = None,
    *,
    overwrite: bool = False,
    regenerate: bool = False,
    on_stage: Callable[[dict], None] | None = None,
) -> Path:
    """Write (or resume) the cohort ``spec`` into ``out``: cases, layouts, tables (module docstring).

    Everything that can be refused is refused before anything is written: sizes (memory per case
    times ``workers``, disk), the folder, a config that differs from the folder's (unless
    ``regenerate``) and an unreachable scheduler.
    """
    from nmosim.simulate.case import SCAN_RANGE_MM

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise SpecError(f"workers = {workers!r} must be an integer >= 0")
    protocol = make_protocol(spec.preset, **spec.overrides)  # dose and kernel do not change sizes
    z_range = spec.z_range_mm or SCAN_RANGE_MM[spec.preset]
    need = budget.check_case(protocol, z_range, workers=workers if scheduler is None else 1,
                             formats=spec.formats)  # fmt: skip
    out = check_output_dir(out, overwrite, kind="dataset", resume=True)
    record = config_record(spec)
    previous = None if overwrite else read_marker(out)
    changes = config_changes(previous, record) if previous else []
    if changes and not regenerate:
        raise SpecError(
            f"out = '{out}' holds a dataset made with another config ({'; '.join(changes)}); give "
            "--regenerate to remake what changed or --overwrite to start anew"
        )
    made = 0 if previous is None or changes else sum(p.is_dir() for p in (out / "cases").glob("case_*"))
    check_free_space(out, max(spec.n_cases - made, 0) * need.disk_bytes * 1.2)  # + the nnU-Net labels
    with _client(workers, scheduler) as client:  # reachable before anything is written
        out = open_output_dir(out, "dataset", overwrite, extra=record)
        recover(out)
        recover(out / "cases")
        if changes:
            _forget_changed(spec, previous, out, record)
        rows = run_cases(spec, out / "cases", client, progress, writer, on_stage)
    return write_layouts(spec, out, rows)


def _forget_changed(spec: CohortSpec, previous: dict, out: Path, record: dict) -> None:
    """Remove the tables, the nnU-Net folder and every case whose inputs the new config changes, then
    record the new config: from then on every case in ``out`` belongs to it."""
    old_spec = spec_from_config(previous.get("config") or {})
    old_version = previous.get("nmosim_version", previous.get("nmosim"))
    old = {}  # a config that this version cannot read: every case changes
    if old_spec is not None:
        old = {c.case_id: case_inputs(old_spec, c, old_version) for c in assign_cases(old_spec)}
    new = {c.case_id: case_inputs(spec, c) for c in assign_cases(spec)}
    for name in ("manifest.json", "cases.csv", "datalist.json", spec.folder_name,
                 old_spec.folder_name if old_spec else None):  # fmt: skip
        if name and os.path.lexists(out / name):
            discard(out / name)
    cases = out / "cases"
    for folder in sorted(cases.iterdir()) if cases.is_dir() else []:
        changed = folder.name not in new or old.get(folder.name) != new[folder.name]
        if changed and not folder.name.startswith("."):
            discard(folder)
    write_marker(out, "dataset", record, checksums=False)
