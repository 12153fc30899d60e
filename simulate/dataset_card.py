"""The dataset card: README.md of a dataset folder (what, config, version, licence, citation, labels) and
its figures of the phase, dose and kernel distributions.

It describes a finished dataset from its config and manifest rows; it never makes or reads case files.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nmosim.phantoms.label_sets import LABEL_SET_STRUCTURES, to_label_set
from nmosim.simulate.io import write_text

DATA_LICENCE = "CC BY 4.0"
DATA_LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"
SOFTWARE_LICENCE = "BSD-3-Clause"
FIGURES = {"phase": "phase.png", "mas": "dose_mas.png", "kernel": "kernel.png"}
FIGURE_TITLES = {"phase": "cases by phase", "mas": "cases by dose (mAs)", "kernel": "cases by FBP kernel"}
MIRRORING_NOTE = (
    "This label set has right and left classes. nnU-Net's default trainer mirrors the training patches "
    "along every axis (and at inference), which swaps right and left and teaches the network that the "
    "sides are interchangeable. Train with nnUNetTrainerNoMirroring (nnUNetv2_train ... -tr "
    "nnUNetTrainerNoMirroring), or use the label set 'ho' and take the side from the x coordinate."
)
HARD_LINK_NOTE = (
    "imagesTr/ and imagesTs/ are hard links to cases/<case_id>/ct.nii.gz (copies where the file system "
    "cannot link): they take no extra space, and writing into one changes the other. Copy the dataset "
    "with cp -a or rsync -H to keep the links; a plain copy doubles the size of the CTs."
)


def has_sides(label_set: str) -> bool:
    """True when the label set names right and left classes (nnU-Net's mirroring swaps them)."""
    names = to_label_set(np.zeros(1, np.uint8), label_set)[1]
    return any(n.endswith("_right") for n in names) and any(n.endswith("_left") for n in names)


def label_table(label_set: str) -> list[tuple[int, str, str]]:
    """``(label, name, structures ids it holds)`` of every label of ``label_set``."""
    names = to_label_set(np.zeros(1, np.uint8), label_set)[1]
    rows = []
    for name, value in names.items():
        if label_set == "all":
            held = str(value)
        elif value == 0:
            held = "every other"
        else:
            held = ", ".join(str(int(s)) for s in LABEL_SET_STRUCTURES[label_set][value - 1])
        rows.append((value, name, held))
    return rows


def distributions(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Counts of the finished cases by phase, dose (mAs) and kernel, in a stable order."""
    ok = [r for r in rows if r.get("status") == "ok"]
    out = {}
    for key in FIGURES:
        counts = Counter(f"{float(r[key]):g}" if key == "mas" else str(r[key]) for r in ok)
        order = sorted(counts, key=lambda g: (float(g), g) if key == "mas" else (0, g))
        out[key] = {g: counts[g] for g in order}
    return out


def distribution_plot(path: Path, counts: dict[str, int], key: str) -> None:
    """Bar chart of case counts per group of ``key`` (phase, mas or kernel)."""
    fig = Figure(figsize=(4.0, 3.0), dpi=90)
    ax = fig.add_subplot()
    groups = list(counts)
    ax.bar(range(len(groups)), [counts[g] for g in groups], color="#4a7ab5")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("cases")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(FIGURE_TITLES[key])
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})


def card_text(record: dict, rows: list[dict], folder_name: str, figures_prefix: str = "figures/") -> str:
    """The README.md of a dataset from its config record (``dataset.config_record``) and rows."""
    config = record["config"]
    version = record["nmosim_version"]
    label_set = config["label_set"]
    ok = [r for r in rows if r.get("status") == "ok"]
    n_train = sum(r["split"] == "train" for r in ok)
    n_test = sum(r["split"] == "test" for r in ok)
    failed = len(rows) - len(ok)
    counts = distributions(rows)
    lines = [
        f"# {config['name']}: synthetic hip CT with exact ground truth for neurogenic heterotopic "
        "ossification",
        "",
        f"Made by nmosim {version}. {len(ok)} cases ({n_train} training, {n_test} test)"
        + (f"; {failed} could not meet their phase and are left out." if failed else "."),
        "Every case is a simulated CT (HU, NIfTI) of a hip phantom with its voxel labels, HO instances, "
        "tissues and truth.json (phase, Brooker grade and gap per hip, the scanner protocol). The labels "
        "are exact by construction: no reader drew them. The images are not of any person.",
        "",
        "## Layout",
        "",
        "- `cases/<case_id>/`: ct.nii.gz, structures.nii.gz, tissues.nii.gz, ho_instances.nii.gz, truth.json",
        f"- `{folder_name}/`: nnU-Net v2 raw dataset (imagesTr, labelsTr, imagesTs, labelsTs, dataset.json)",
        "- `datalist.json`: MONAI / Auto3DSeg datalist (`training` with `fold` keys, `testing`, and the "
        "properties `name`, `modality`, `labels`, `numTraining` read by `load_decathlon_properties`)",
        "- `manifest.json`: nmosim version, config and its sha256, one row per case with the sha256 of "
        "its files",
        "- `cases.csv`: one row per case (split, phase, dose, kernel, grades, gaps, HO volumes)",
        "",
        HARD_LINK_NOTE,
        "",
        "## Labels",
        "",
        f"Label set `{label_set}` (labelsTr, labelsTs and datalist.json); `cases/*/structures.nii.gz` always "
        "holds the structures ids.",
        "",
        "| label | name | structures ids |",
        "|---|---|---|",
        *(f"| {v} | {n} | {h} |" for v, n, h in label_table(label_set)),
        "",
    ]
    if has_sides(label_set):
        lines += ["### nnU-Net and right/left", "", MIRRORING_NOTE, ""]
    lines += ["## Distributions", ""]
    for key, name in FIGURES.items():
        table = ", ".join(f"{g}: {c}" for g, c in counts[key].items()) or "none"
        title = FIGURE_TITLES[key]
        lines += [f"![{title}]({figures_prefix}{name})", "", f"{title}: {table}", ""]
    lines += [
        "## Config",
        "",
        f"config sha256 `{record['config_sha256']}`; the same config and nmosim version give the same bytes.",
        "",
        "```json",
        json.dumps(config, indent=2, sort_keys=True),
        "```",
        "",
        "## Licence",
        "",
        f"The generated data (images, labels, tables) are licensed {DATA_LICENCE} ({DATA_LICENCE_URL}): "
        "share and adapt them, crediting nmosim as below. nmosim itself is " + SOFTWARE_LICENCE + ".",
        "",
        "## How to cite",
        "",
        f"Cite the software and this dataset's config: nmosim {version}, dataset {config['name']} "
        f"(`{folder_name}`), config sha256 `{record['config_sha256'][:16]}`.",
        "",
        "```bibtex",
        "@software{nmosim,",
        "  title = {nmosim: synthetic hip CT with exact ground truth for neurogenic heterotopic "
        "ossification},",
        f"  version = {{{version}}},",
        f"  note = {{dataset {config['name']}, config sha256 {record['config_sha256']}}}",
        "}",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_dataset_card(out: Path, record: dict, rows: list[dict], folder_name: str) -> None:
    """Write ``out/README.md`` and its figures ``out/figures/*.png`` (``folder_name``: the nnU-Net one)."""
    out = Path(out)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    for key, counts in distributions(rows).items():
        distribution_plot(figures / FIGURES[key], counts, key)
    write_text(out / "README.md", card_text(record, rows, folder_name))
