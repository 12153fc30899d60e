"""Findings, captions and quiz questions in radiology-report style, written from a case's truth.json.

Plain text from a truth dict; it reads no files, measures nothing and draws nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

SIDES = ("right", "left")
ROMAN = ("0", "I", "II", "III", "IV")
# DOMAIN.md 1.1: Brooker 1973, wording after Radiopaedia / SCIRE.
BROOKER_MEANING = (
    "no heterotopic ossification",
    "islands of bone in the soft tissues, attached to neither pelvis nor femur",
    "spurs from pelvis or femur leaving at least 1 cm between opposing bone surfaces",
    "spurs reducing the space between opposing bone surfaces to less than 1 cm",
    "apparent bony ankylosis: a continuous bridge of bone between pelvis and femur",
)
# DOMAIN.md 2.6: CT appearance by maturity stage (Ledermann grades 1-4 plus maturing).
MATURITY_MEANING = {
    "oedema": "swollen, hypoattenuating muscle without calcification (Ledermann 1)",
    "calcifying": "faint, amorphous, mostly peripheral calcification of 100-300 HU (Ledermann 2)",
    "immature": "a partial, irregular rim of 300-700 HU around a heterogeneous, stippled centre "
    "(Ledermann 3)",
    "maturing": "a continuous rim of 600-1000 HU with trabeculation starting inside",
    "mature": "a corticated shell 1-3 mm thick (800-1500 HU) around trabecular bone with fatty marrow "
    "(Ledermann 4)",
}
PHASE_MEANING = {  # DOMAIN.md 1.2
    "none": "no heterotopic ossification",
    "a": "small isolated peri-articular ossifications (Brooker I)",
    "b": "spurs or a partial bridge leaving more than 1 cm (Brooker II)",
    "c": "spurs leaving less than 1 cm (Brooker III)",
    "d": "complete bridging, extra-articular bony ankylosis (Brooker IV)",
}
AETIOLOGY = {"sci": "spinal cord injury", "brain": "brain injury"}
CONFOUNDER_NAMES = {
    "phlebolith": "phlebolith",
    "vascular": "vascular calcification",
    "tendinitis": "calcific tendinitis",
    "osteophyte": "osteophyte",
}
TISSUE_WORDS = {
    "ho_calcifying": "calcifying",
    "ho_immature": "immature",
    "ho_cortex": "cortical shell",
    "ho_trabecular": "trabecular core",
}
JOINT_SPACE_NARROW_MM = 2.5  # DOMAIN.md 3: superior joint space 3.5-5 mm; below 2-2.5 mm is narrowing


@dataclass(frozen=True)
class QuizItem:
    """One question about a case and its answer, both plain text."""

    question: str
    answer: str


def _ml(value: float) -> str:
    return f"{value:.1f} mL"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def grade_text(grade: int) -> str:
    """'Brooker III' for 3."""
    return f"Brooker {ROMAN[grade]}"


def side_summary(truth: dict, side: str) -> str:
    """One sentence on one hip: maturity, location, volume, grade and gap."""
    hip = truth[side]
    grade = int(hip["brooker_grade"])
    if grade == 0:
        return f"{side.capitalize()} hip: no heterotopic ossification (Brooker 0)."
    lesions = hip["lesions"]
    maturities = sorted({str(lesion.get("maturity")) for lesion in lesions})
    locations = sorted({str(lesion.get("location")) for lesion in lesions})
    by_tissue = ", ".join(
        f"{TISSUE_WORDS.get(name, name)} {_ml(v)}" for name, v in hip["ho_volume_ml_by_tissue"].items()
    )
    text = (
        f"{side.capitalize()} hip: {' and '.join(maturities)} heterotopic ossification, "
        f"{' and '.join(locations)}, {_plural(len(lesions), 'lesion')}, {_ml(hip['ho_volume_ml'])}"
        f"{f' ({by_tissue})' if by_tissue else ''}. "
    )
    gap = hip.get("gap_mm")
    if grade == 4:
        text += "Bone bridges pelvis and femur: "
    elif grade in (2, 3) and gap is not None:
        text += f"The narrowest gap between a spur and the opposing bone measures {gap:.1f} mm: "
    else:
        text += "The ossification touches neither pelvis nor femur: "
    return text + f"{grade_text(grade)} ({BROOKER_MEANING[grade]})."


def _muscle_and_bone(truth: dict) -> list[str]:
    generation = truth.get("generation", {})
    effects = generation.get("effects", {})
    base = generation.get("base_anatomy", {})
    out = []
    bulk, base_bulk = effects.get("muscle_bulk"), base.get("muscle_bulk")
    if bulk is not None and base_bulk:
        change = 100.0 * (bulk / base_bulk - 1.0)
        if change < -2:
            out.append(f"Muscle atrophy: muscle bulk {abs(change):.0f} % below the pre-injury value.")
    fatty = effects.get("fatty_muscles") or []
    if fatty:
        # "gluteus_maximus_1_left" -> "gluteus maximus": side and part number dropped
        names = sorted({re.sub(r"_\d+$", "", name.rsplit("_", 1)[0]).replace("_", " ") for name in fatty})
        out.append(f"Fatty infiltration of {_plural(len(fatty), 'muscle')}: {', '.join(names)}.")
    if effects.get("oedema"):
        out.append("Oedematous, swollen muscle around the lesions.")  # DOMAIN.md 2.9
    density, base_density = effects.get("bone_density_scale"), base.get("bone_density_scale")
    if density is not None and base_density:
        change = 100.0 * (density / base_density - 1.0)
        if change < -2:
            out.append(
                f"Demineralization: native trabecular bone density {abs(change):.0f} % below the "
                "pre-injury value."
            )
    joint = effects.get("joint_space_mm", truth.get("anatomy", {}).get("joint_space_mm"))
    base_joint = base.get("joint_space_mm")
    if joint is not None:
        if base_joint is not None and joint < base_joint - 0.5:
            state = f"narrowed from {base_joint:.1f} mm"  # DOMAIN.md 1.5: narrowing with ankylosis
        else:
            state = "narrowed" if joint < JOINT_SPACE_NARROW_MM else "preserved"
        out.append(f"Hip joint space {joint:.1f} mm ({state}).")
    return out


def confounder_text(truth: dict) -> str:
    """The calcifications that are not HO, counted by kind and side; '' when there are none."""
    items = truth.get("generation", {}).get("confounders") or []
    if not items:
        return ""
    counts = Counter((CONFOUNDER_NAMES.get(c["kind"], c["kind"]), c.get("side", "")) for c in items)
    parts = [
        f"{_plural(n, kind)} ({side})" if side else _plural(n, kind)
        for (kind, side), n in sorted(counts.items())
    ]
    return "Not heterotopic ossification (confounders): " + "; ".join(parts) + "."


def findings(truth: dict) -> dict[str, str]:
    """Report sections: 'technique', 'findings' and 'impression', each a paragraph."""
    weeks = truth.get("weeks_since_injury")
    aetiology = AETIOLOGY.get(truth.get("generation", {}).get("aetiology", ""), "neurological injury")
    scanner = truth.get("scanner")
    if scanner:
        technique = (
            f"CT of the pelvis and both hips, {scanner['kvp']:g} kVp, {scanner['mas']:g} mAs, "
            f"{scanner['kernel']} kernel, {scanner['recon_pixel_mm']:g} mm voxels; AP pelvis radiograph."
        )
    else:
        technique = "Label volumes of the phantom (no CT simulated)."
    if weeks is not None:
        technique += f" {weeks:.0f} weeks after {aetiology}."
    body = [side_summary(truth, side) for side in SIDES] + _muscle_and_bone(truth)
    confounders = confounder_text(truth)
    if confounders:
        body.append(confounders)
    grades = {side: int(truth[side]["brooker_grade"]) for side in SIDES}
    if max(grades.values()) == 0:
        impression = "No heterotopic ossification about either hip."
    else:
        impression = (
            "Neurogenic heterotopic ossification: "
            + ", ".join(f"{side} {grade_text(g)}" for side, g in grades.items() if g > 0)
            + f". Phase {truth['phase']}: {PHASE_MEANING.get(truth['phase'], '')}."
        )
    return {"technique": technique, "findings": " ".join(body), "impression": impression}


def quiz(truth: dict) -> list[QuizItem]:
    """Questions an educator can ask about the case, with answers from the truth."""
    grades = {side: int(truth[side]["brooker_grade"]) for side in SIDES}
    items = [
        QuizItem(
            "Which hip shows heterotopic ossification, and what is the Brooker grade of each hip?",
            "; ".join(f"{side}: {grade_text(g)} ({BROOKER_MEANING[g]})" for side, g in grades.items()) + ".",
        ),
        QuizItem(
            "Which phase of the progression (a to d) is this?",
            f"Phase {truth['phase']}: {PHASE_MEANING.get(truth['phase'], '')}.",
        ),
    ]
    gaps = [(side, truth[side]["gap_mm"]) for side in SIDES if grades[side] in (2, 3)]
    if gaps:
        items.append(
            QuizItem(
                "Measure the narrowest gap between a spur and the opposing bone. Does it reach 1 cm?",
                "; ".join(
                    f"{side}: {gap:.1f} mm, {'at least' if gap >= 10 else 'less than'} 1 cm, so "
                    f"{grade_text(grades[side])}"
                    for side, gap in gaps
                )
                + ".",
            )
        )
    lesions = [(side, lesion) for side in SIDES for lesion in truth[side]["lesions"]]
    if lesions:
        stages = sorted({lesion["maturity"] for _, lesion in lesions})
        items.append(
            QuizItem(
                "How mature is the ossification, and which CT features tell?",
                " ".join(f"{stage.capitalize()}: {MATURITY_MEANING.get(stage, '')}." for stage in stages),
            )
        )
        items.append(
            QuizItem(
                "Where around the hip does the ossification lie?",
                "; ".join(
                    f"{side}: {lesion['location']} ({_ml(lesion['volume_ml'])})" for side, lesion in lesions
                )
                + ".",
            )
        )
    confounders = confounder_text(truth)
    if confounders:
        items.append(QuizItem("Which calcifications are not heterotopic ossification?", confounders))
    return items


def caption(figure: str, truth: dict, **details: object) -> str:
    """The caption of one of the book's figures (``figure`` names it; details fill it in)."""
    case = truth.get("case_id", "case")
    if figure == "mpr":
        source = "CT" if details["window"] != "labels" else "label volume"
        return (
            f"{case}: axial {source} at the acetabular roof, the femoral head centre and the lesser "
            f"trochanter; coronal and sagittal through {details['where']}; "
            f"{details['window']}. HO is outlined by maturity stage, confounders dashed; patient's right "
            "on the viewer's left."
        )
    if figure == "render":
        return (
            f"{case}: shaded surface renderings of pelvis, femurs and HO (coloured by maturity) from "
            f"{', '.join(details['views'])}. Look for bone bridging pelvis and femur."
        )
    if figure == "radiograph":
        return (
            f"{case}: AP pelvis radiograph ({details['kvp']:g} kV), alone and with the HO projected onto "
            "it, beside a coronal CT slab. Projection can only shorten a 3D distance, so the film can "
            "over-grade."  # DOMAIN.md 1.1
        )
    if figure == "gap":
        return (
            f"{case}: where the Brooker grade is decided. The line joins the spur to the nearest opposing "
            f"bone; truth gap {details['gap']}, measured on the 1 mm truth grid between bone surfaces."
        )
    if figure == "series":
        return f"{case}: the same patient at {details['weeks']} weeks after injury, AP surface renderings."
    raise ValueError(f"unknown figure {figure!r}")
