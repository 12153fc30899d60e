"""Drawing one patient: anatomy, time course, phase, which hips have HO and where, lesions, confounders.

Returns a plan that phantoms at any time are built from; it builds no phantom and writes nothing.

Laterality is a choice of the plan (:data:`LATERALITIES`): HO of one hip only, or of both with one
dominant. Bilateral with probability :data:`P_BILATERAL` (DOMAIN.md 2.3), the dominant (index) side
right with probability :data:`P_RIGHT_DOMINANT`; or fixed by the caller. The requested phase applies to
the dominant hip; the other hip of a bilateral case has grade ``index grade - k`` (k = 0, 1, 2 with
probabilities :data:`CONTRALATERAL_DROP`, at least I) and steps down further until one is met by
measurement. When one hip's HO comes out smaller than the other's by more than 1:5 (DOMAIN.md
2.3), its main lesion grows a mature mass in the muscle, clear of the bone it must not reach, to a
drawn ratio of 1:1 to 1:5, as long as its grade still holds. The plan gives each side's
requested grade; truth reports the grades measured from the labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmosim.phantoms.anatomy import femur_shape, hip_bone_shape, hip_landmarks
from nmosim.phantoms.confounders import Confounder, sample_confounders
from nmosim.phantoms.errors import check_choice
from nmosim.phantoms.grading import SIDES
from nmosim.phantoms.honouring import (
    HONOUR_SPACING_MM,
    MAX_ATTEMPTS,
    SideCrop,
    honour_mass,
    honour_other_side,
    honour_side,
    side_crop,
    side_volume_ml,
)
from nmosim.phantoms.lesion_plans import SPUR_CLEARANCE_MM
from nmosim.phantoms.muscles import muscle_names
from nmosim.phantoms.ossification import (
    LOCATION_PRIOR,
    LesionGeometry,
    MuscleMap,
    bezier,
    bowed_path,
    hip_sites,
    muscle_map,
)
from nmosim.phantoms.progression import (
    GRADE_PHASE,
    MIN_WEEKS_AFTER_ONSET,
    OEDEMA_LEAD_WEEKS,
    PHASE_GRADE,
    PHASE_WEEKS_WINDOW,
    Course,
    adjusted_anatomy,
    check_aetiology,
    check_phase,
    check_weeks,
    linear_growth,
    maturity_stage,
    phase_from_weeks,
    sample_course,
)
from nmosim.phantoms.shapes import Shape
from nmosim.phantoms.spec import AnatomySpec, sample_anatomy

P_BILATERAL = {"sci": 0.4, "brain": 0.3}  # DOMAIN.md 2.3: 0.3-0.5 in SCI
# DOMAIN.md 2.3 gives no side that dominates more often: either side dominates equally often.
P_RIGHT_DOMINANT = 0.5
# "<pattern>_<dominant side>": HO of the dominant hip only, or of both hips with that one the worse.
LATERALITIES = ("unilateral_right", "unilateral_left", "bilateral_right", "bilateral_left")
CONTRALATERAL_DROP = (0.3, 0.45, 0.25)  # P(other side = index grade - 0, 1, 2); DOMAIN.md 2.3
# DOMAIN.md 2.3: when bilateral, the volume ratio between the sides is 1:1 to 1:5.
VOLUME_RATIO = (1.0, 5.0)
MAX_VOLUME_RATIO = VOLUME_RATIO[1]
# The honour grid counts whole voxels of 1.5 mm; other grids (the case's, its truth's) read a few
# per cent either way, so the honoured ratio keeps this share of the largest below it.
RATIO_MARGIN = 0.95
MAX_SCALE = {"bridge": 1.0, "other": 1.5}  # growth beyond the reference size; ankylosis is complete


@dataclass(frozen=True)
class CaseStreams:
    """The generators of a phantom's components (DESIGN.md 9); each draws only its own part.

    ``anatomy``: the bone and body shape parameters; ``soft_tissue``: bowel loops and which muscles
    turn fatty; ``lesions``: time course, phase, sides, lesions, confounders and oedema.
    """

    anatomy: np.random.Generator
    soft_tissue: np.random.Generator
    lesions: np.random.Generator

    @classmethod
    def spawned_from(cls, rng: np.random.Generator) -> CaseStreams:
        """Three independent streams spawned from one generator."""
        anatomy, soft_tissue, lesions = rng.spawn(3)
        return cls(anatomy, soft_tissue, lesions)


@dataclass(frozen=True)
class LesionSpec:
    """One HO lesion: identity, place, attachment, onset and reference geometry (mm)."""

    instance: int
    side: str
    location: str  # one of SINGLE_LOCATIONS
    attachment: str  # intended: island, pelvis, femur or bridge
    geometry: LesionGeometry
    reference_scale: float  # linear growth (0-1) at the reference time
    onset_weeks: float
    shell_mm: float  # mature cortex thickness, DOMAIN.md 2.6: 1-3 mm

    def scale_at(self, weeks: float, course: Course) -> float:
        """Size at ``weeks`` relative to the reference size (0 before onset)."""
        growth = linear_growth(weeks - self.onset_weeks, course.half_time_weeks)
        cap = MAX_SCALE["bridge" if self.attachment == "bridge" else "other"]
        return min(cap, growth / self.reference_scale)

    def to_dict(self, weeks: float, course: Course) -> dict:
        return {
            "instance": self.instance,
            "side": self.side,
            "location": self.location,
            "attachment": self.attachment,
            "maturity": maturity_stage(weeks - self.onset_weeks),
            "seed_mm": [round(float(v), 3) for v in self.geometry.seed_mm],
            "growth_scale": round(self.scale_at(weeks, course), 4),
            "onset_weeks": self.onset_weeks,
            "shell_mm": self.shell_mm,
        }


@dataclass
class CasePlan:
    """Everything drawn for one patient; phantoms at any time are built from it."""

    base_anatomy: AnatomySpec
    course: Course
    phase: str
    aetiology: str
    reference_weeks: float
    index_side: str
    requested_grade: dict[str, int]
    side_location: dict[str, str | None]
    lesions: list[LesionSpec]
    confounders: list[Confounder]
    attempts: dict[str, int]
    viscera_seed: int
    fatty_draws: dict[str, float]
    oedema_sites: list[tuple[str, np.ndarray, float]] = field(default_factory=list)
    marbling_seed: int = 0  # fat streaks of the fat-infiltrated muscles
    laterality: str = "unilateral_right"  # the drawn or asked choice, one of LATERALITIES

    def pattern_at(self, weeks: float) -> tuple[str, str | None]:
        """("none" | "unilateral" | "bilateral", dominant side or None): the hips that have HO at
        ``weeks`` (a lesion exists once past onset and 5 % of its reference size)."""
        sides = {
            lesion.side
            for lesion in self.lesions
            if weeks > lesion.onset_weeks and lesion.scale_at(weeks, self.course) >= 0.05
        }
        if not sides:
            return "none", None
        if len(sides) == 2:
            return "bilateral", self.index_side
        return "unilateral", sides.pop()


def _within_volume_ratio(
    rng: np.random.Generator,
    honoured: dict[str, tuple[list, list, SideCrop, list[Shape], MuscleMap]],
    grades: dict[str, int],
) -> dict[str, int]:
    """Bring a bilateral case's hips within :data:`MAX_VOLUME_RATIO` of each other (DOMAIN.md 2.3):
    when one hip's measured HO is smaller than the other's over that ratio (less
    :data:`RATIO_MARGIN`), its main lesion gets a mass making the larger-to-smaller ratio a draw of
    :data:`VOLUME_RATIO` (log-uniform; at most the ratio less the margin), as long as that hip's
    grade (``grades``) still holds. Updates ``honoured``; returns the measurements spent
    per side."""
    ratio = float(np.exp(rng.uniform(*np.log(VOLUME_RATIO))))  # drawn whether used or not
    volumes = {side: side_volume_ml(h[2], side, h[1], h[0]) for side, h in honoured.items()}
    spent = dict.fromkeys(honoured, 1)
    small, large = sorted(honoured, key=lambda side: (volumes[side], side))
    least = volumes[large] / (MAX_VOLUME_RATIO * RATIO_MARGIN)
    if volumes[small] >= least:
        return spent
    plans, _, crop, bones, muscle = honoured[small]
    target = max(volumes[large] / ratio, least)
    massed, n = honour_mass(crop, bones, small, grades[small], plans, muscle, (volumes[small], target, least))
    if massed is not None:
        honoured[small] = (plans, massed, crop, bones, muscle)
    spent[small] += n
    return spent


def check_laterality(laterality: str) -> str:
    """``laterality`` if it is one of :data:`LATERALITIES`, else :class:`SpecError`."""
    return str(check_choice("laterality", laterality, LATERALITIES))


def draw_laterality(rng: np.random.Generator, aetiology: str) -> str:
    """One of :data:`LATERALITIES`: bilateral with probability :data:`P_BILATERAL` (DOMAIN.md 2.3),
    the dominant side right with probability :data:`P_RIGHT_DOMINANT`."""
    pattern = "bilateral" if rng.random() < P_BILATERAL[aetiology] else "unilateral"
    side = "right" if rng.random() < P_RIGHT_DOMINANT else "left"
    return f"{pattern}_{side}"


def _choice(rng: np.random.Generator, prior: dict[str, float]) -> str:
    names = list(prior)
    p = np.array([prior[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def plan_case(
    rng: CaseStreams | np.random.Generator,
    *,
    phase: str | None = None,
    weeks: float | None = None,
    aetiology: str = "sci",
    confounders: bool | None = None,
    anatomy_overrides: dict | None = None,
    honour_spacing_mm: float = HONOUR_SPACING_MM,
    max_attempts: int = MAX_ATTEMPTS,
    threads: int | None = None,
    laterality: str | None = None,
) -> CasePlan:
    """Draw one patient (anatomy, course, lesions honoured at ``weeks``, confounders).

    ``rng``: the case's streams, or one generator that they are spawned from. ``laterality``: one
    of :data:`LATERALITIES`, drawn if None. Other arguments as in
    :func:`~nmosim.phantoms.case_phantom.build_case_phantom`; the plan builds phantoms at any time
    with :func:`~nmosim.phantoms.case_phantom.phantom_at`.
    """
    check_aetiology(aetiology)
    if laterality is not None:
        check_laterality(laterality)
    if phase is not None:
        check_phase(phase)
    if weeks is not None:
        weeks = check_weeks(weeks, phase)
    streams = rng if isinstance(rng, CaseStreams) else CaseStreams.spawned_from(rng)
    # The lesion stream's children: adding one at the end leaves the others' draws unchanged.
    r_course, r_phase, r_lesion, r_conf, r_oedema, r_ratio = streams.lesions.spawn(6)
    base = sample_anatomy(streams.anatomy, **(anatomy_overrides or {}))
    if weeks is None:
        weeks = round(float(r_phase.uniform(*PHASE_WEEKS_WINDOW[phase or "none"])), 2)
    latest = None if phase in (None, "none") else weeks - MIN_WEEKS_AFTER_ONSET[phase]
    course = sample_course(r_course, aetiology, latest)
    if phase is None:
        phase = phase_from_weeks(r_phase, weeks, course)
    grade = PHASE_GRADE[phase]
    # Every draw is made whether used or not, so that fixing the laterality changes no other draw.
    drawn = draw_laterality(r_phase, aetiology)
    drop = int(r_phase.choice(3, p=CONTRALATERAL_DROP))
    pattern, index_side = (laterality or drawn).split("_")
    other = "left" if index_side == "right" else "right"
    requested = {index_side: grade, other: 0}
    if grade > 0 and pattern == "bilateral":
        requested[other] = max(1, grade - drop)
    onsets = {index_side: course.onset_weeks, other: course.onset_weeks}
    if requested[other]:
        lead = MIN_WEEKS_AFTER_ONSET[GRADE_PHASE[requested[other]]]
        delay = min(course.contralateral_delay_weeks, max(0.0, weeks - course.onset_weeks - lead))
        onsets[other] = round(course.onset_weeks + delay, 3)
    category = _choice(r_phase, LOCATION_PRIOR[aetiology])
    side_location: dict[str, str | None] = {index_side: category if grade else None, other: None}
    if requested[other]:
        side_location[other] = (
            category if r_phase.random() < 0.6 else _choice(r_phase, LOCATION_PRIOR[aetiology])
        )

    ankylosed = grade == 4
    ref_anatomy = adjusted_anatomy(base, course, weeks, ankylosed)
    attempts = {"right": 0, "left": 0}
    honoured: dict[str, tuple[list, list, SideCrop, list[Shape], MuscleMap]] = {}
    for side in SIDES:
        if not requested[side]:
            continue
        side_lm = hip_landmarks(ref_anatomy, side)
        sites = hip_sites(ref_anatomy, side_lm, side)
        bones = [hip_bone_shape(ref_anatomy, side), femur_shape(ref_anatomy, side)]
        crop = side_crop(ref_anatomy, side_lm, side, honour_spacing_mm, threads)
        muscle = muscle_map(ref_anatomy, side_lm, side, crop.occupied)
        if side == index_side:
            plans, geometries, n = honour_side(
                r_lesion, crop, sites, bones, side, requested[side], side_location[side], max_attempts, muscle
            )
        else:
            # Only the index hip's grade is asked for; the other hip steps down until one is met.
            plans, geometries, n = honour_other_side(
                r_lesion, crop, sites, bones, side, requested, side_location[side], max_attempts, muscle
            )
            if not plans:
                continue
        attempts[side] = n
        honoured[side] = (plans, geometries, crop, bones, muscle)
    if len(honoured) == 2:
        for side, n in _within_volume_ratio(r_ratio, honoured, requested).items():
            attempts[side] += n
    lesions: list[LesionSpec] = []
    for side in SIDES:
        if side not in honoured:
            continue
        plans, geometries = honoured[side][:2]
        g_ref = linear_growth(weeks - onsets[side], course.half_time_weeks)
        for plan, geometry in zip(plans, geometries, strict=True):
            lesions.append(
                LesionSpec(
                    instance=len(lesions) + 1,
                    side=side,
                    location=plan.location,
                    attachment=plan.attachment,
                    geometry=geometry,
                    reference_scale=g_ref,
                    onset_weeks=onsets[side],
                    shell_mm=round(float(r_lesion.uniform(1.0, 3.0)), 3),  # DOMAIN.md 2.6
                )
            )
    if confounders is None:
        confounders = bool(r_conf.random() < 0.3)
    conf = sample_confounders(r_conf, ref_anatomy) if confounders else []
    fatty = {name: float(streams.soft_tissue.random()) for name in muscle_names()}
    viscera_seed = int(streams.soft_tissue.integers(2**63))
    marbling_seed = int(streams.soft_tissue.integers(2**63))
    oedema_sites = []
    if grade == 0 and course.onset_weeks - OEDEMA_LEAD_WEEKS <= weeks < course.onset_weeks:
        # DOMAIN.md 2.9: swelling precedes calcification at the future lesion site.
        loc = _choice(r_oedema, LOCATION_PRIOR[aetiology])
        loc = loc if loc != "circumferential" else "anterior"
        sites = hip_sites(ref_anatomy, hip_landmarks(ref_anatomy, index_side), index_side)
        control = bowed_path(
            sites, sites.pelvic[loc], sites.femoral[loc], sites.head_radius + SPUR_CLEARANCE_MM
        )
        centre = bezier(control, np.array([0.5]))[0]
        oedema_sites.append((index_side, centre * ([1, 1, 1] if index_side == "right" else [-1, 1, 1]), 20.0))
    return CasePlan(
        base_anatomy=base,
        course=course,
        phase=phase,
        aetiology=aetiology,
        reference_weeks=float(weeks),
        index_side=index_side,
        requested_grade=requested,
        side_location=side_location,
        lesions=lesions,
        confounders=conf,
        attempts=attempts,
        viscera_seed=viscera_seed,
        fatty_draws=fatty,
        oedema_sites=oedema_sites,
        marbling_seed=marbling_seed,
        laterality=f"{pattern}_{index_side}",
    )
