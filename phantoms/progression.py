"""Time since neurological injury -> HO onset, growth, maturity stage, phase, and effects on the anatomy.

Pure functions of weeks and of a per-patient course drawn once; it builds no shapes and rasterizes nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from nmosim.phantoms.errors import SpecError, check_choice, check_range
from nmosim.phantoms.spec import RANGES, AnatomySpec

PHASES = ("none", "a", "b", "c", "d")
PHASE_GRADE = {"none": 0, "a": 1, "b": 2, "c": 3, "d": 4}  # DOMAIN.md 1.2: phase -> Brooker grade
GRADE_PHASE = {g: p for p, g in PHASE_GRADE.items()}
AETIOLOGIES = ("sci", "brain")  # spinal cord injury; brain injury (TBI, stroke, anoxia)
STAGES = ("oedema", "calcifying", "immature", "maturing", "mature")  # DOMAIN.md 2.6 (Ledermann 1-4)

ONSET_WEEKS = (3.0, 8.0, 12.0)  # DOMAIN.md 2.4 / 6: onset 3-12 weeks, peak ~8 (min, mode, max)
HALF_TIME_WEEKS = (6.0, 10.0)  # DOMAIN.md 2.7: logistic half-time 6-10 weeks after onset
MAX_WEEKS = 520.0  # ten years: beyond any plateau (DOMAIN.md 2.7: plateau by 6-12 months)
OEDEMA_LEAD_WEEKS = 2.0  # DOMAIN.md 2.4/2.9: swelling precedes first calcification by ~12 days

# Weeks after onset before a phase can be reached. DOMAIN.md 2.4: first calcification within ~2 weeks
# of swelling (islands), trabeculated bone 2-5 weeks, growth fastest over the first 1-3 months
# (spurs that approach the opposing bone), ankylosis only once a bridge has grown and ossified
# (months; Garland 1980 ankylosis in 16 % of TBI hips, late): phase d waits for the mature stage
# (STAGE_STARTS_WEEKS, 24 weeks; DOMAIN.md 2.4: maturation complete by ~6-18 months), so that an
# ankylosing mass is mature bone, a corticated shell over trabecular bone (DOMAIN.md 2.6). The
# earliest weeks since injury of a phase is the earliest onset (3 weeks) plus this lead. Phase a
# waits for the immature stage (STAGE_STARTS_WEEKS, 2 weeks): the Brooker grade counts only HO
# dense enough to read as bone, not the amorphous calcifying tissue that comes first
# (grading.COUNTED_HO_TISSUES, DOMAIN.md 1.1, 2.4).
MIN_WEEKS_AFTER_ONSET = {"none": 0.0, "a": 2.0, "b": 3.0, "c": 5.0, "d": 24.0}
EARLIEST_WEEKS = {
    p: (0.0 if p == "none" else ONSET_WEEKS[0] + lead) for p, lead in MIN_WEEKS_AFTER_ONSET.items()
}
# Weeks since injury drawn when a phase is requested without a time (uniform in the window).
PHASE_WEEKS_WINDOW = {
    "none": (2.0, 104.0),
    "a": (6.0, 16.0),
    "b": (10.0, 40.0),
    "c": (14.0, 60.0),
    "d": (30.0, 104.0),
}
# Final severity when the phase is drawn from time; DOMAIN.md 1.6: ankylosis in 16 % of TBI hips,
# fewer (3-8 %) in SCI patients. A synthesis, not a measured distribution.
FINAL_PHASE_PRIOR = {
    "sci": {"a": 0.35, "b": 0.30, "c": 0.23, "d": 0.12},
    "brain": {"a": 0.30, "b": 0.28, "c": 0.24, "d": 0.18},
}
# Stage boundaries in weeks since onset, from DOMAIN.md 2.4's time axis (weeks since injury,
# typical onset ~2 weeks): 2-4 faint calcification, 4-12 immature, 12-26 maturing, > 26 mature.
STAGE_STARTS_WEEKS = {"calcifying": 0.0, "immature": 2.0, "maturing": 10.0, "mature": 24.0}


@dataclass(frozen=True)
class Course:
    """Per-patient time course, drawn once so that a longitudinal series shares it.

    Times are weeks since the neurological injury; fractions are dimensionless.
    """

    aetiology: str
    onset_weeks: float  # first calcification on the index side
    contralateral_delay_weeks: float  # the other side starts this much later
    half_time_weeks: float  # logistic growth: half the final volume this long after onset
    atrophy_max: float  # final loss of muscle cross-section (DOMAIN.md 2.8)
    atrophy_time_weeks: float  # e-folding time of that loss
    density_min: float  # final factor on trabecular density (DOMAIN.md 2.10)
    joint_narrowing: float  # fraction of joint space lost with ankylosis (DOMAIN.md 1.5)
    fatty_probability: float  # chance that a hip muscle is fat-infiltrated once chronic

    def to_dict(self) -> dict:
        return asdict(self)


def check_phase(phase: str) -> str:
    """``phase`` if it is one of :data:`PHASES`, else :class:`SpecError`."""
    return str(check_choice("phase", phase, PHASES))


def check_aetiology(aetiology: str) -> str:
    return str(check_choice("aetiology", aetiology, AETIOLOGIES))


def check_weeks(weeks: float, phase: str | None = None) -> float:
    """Validate weeks since injury, and that ``phase`` can have been reached by then."""
    w = check_range("weeks", weeks, 0.0, MAX_WEEKS)
    if phase is not None and w < EARLIEST_WEEKS[phase]:
        raise SpecError(
            f"weeks = {weeks!r} is too early for phase {phase!r}: it needs at least "
            f"{EARLIEST_WEEKS[phase]:g} weeks since injury (onset >= {ONSET_WEEKS[0]:g} weeks "
            f"plus {MIN_WEEKS_AFTER_ONSET[phase]:g} weeks of growth)"
        )
    return w


def sample_course(
    rng: np.random.Generator, aetiology: str = "sci", latest_onset_weeks: float | None = None
) -> Course:
    """Draw a patient's course; ``latest_onset_weeks`` caps the onset (a phase must be reachable)."""
    check_aetiology(aetiology)
    lo, mode, hi = ONSET_WEEKS
    if latest_onset_weeks is not None:
        hi = max(lo + 1e-6, min(hi, latest_onset_weeks))
        mode = min(mode, hi)
    onset = float(rng.triangular(lo, min(mode, hi), hi)) if hi > lo else lo
    sci = aetiology == "sci"
    return Course(
        aetiology=aetiology,
        onset_weeks=round(onset, 3),
        contralateral_delay_weeks=round(float(rng.uniform(0.0, 3.0)), 3),
        half_time_weeks=round(float(rng.uniform(*HALF_TIME_WEEKS)), 3),
        # DOMAIN.md 2.8: CSA -30..-60 % in chronic complete SCI, about -14 % when incomplete;
        # brain injury is taken as the milder end.
        atrophy_max=round(float(rng.uniform(0.30, 0.55) if sci else rng.uniform(0.10, 0.30)), 3),
        atrophy_time_weeks=round(float(rng.uniform(6.0, 16.0)), 3),  # -33..-45 % by 6 wk (2.8)
        # DOMAIN.md 2.10: trabecular density x 0.5-0.8 in chronic SCI; milder after brain injury.
        density_min=round(float(rng.uniform(0.5, 0.8) if sci else rng.uniform(0.75, 0.95)), 3),
        joint_narrowing=round(float(rng.uniform(0.3, 0.6)), 3),  # DOMAIN.md 1.5: narrowing
        fatty_probability=round(float(rng.uniform(0.4, 0.9) if sci else rng.uniform(0.1, 0.4)), 3),
    )


def growth_fraction(weeks_after_onset: float, half_time_weeks: float) -> float:
    """Fraction (0-1) of the final HO volume reached ``weeks_after_onset`` weeks after onset.

    Logistic in time (DOMAIN.md 2.7), shifted so that it is 0 at onset and 1 on the plateau; its
    steepness puts the plateau (> 97 %) between 6 and 12 months.

    >>> growth_fraction(0.0, 8.0), round(growth_fraction(8.0, 8.0), 2), round(growth_fraction(52, 8), 2)
    (0.0, 0.48, 1.0)
    """
    if weeks_after_onset <= 0:
        return 0.0
    k = half_time_weeks / 3.0

    def logistic(t: float) -> float:
        return 1.0 / (1.0 + math.exp(-(t - half_time_weeks) / k))

    base = logistic(0.0)
    return min(1.0, (logistic(weeks_after_onset) - base) / (1.0 - base))


def linear_growth(weeks_after_onset: float, half_time_weeks: float) -> float:
    """Linear scale (0-1) of a lesion: the cube root of :func:`growth_fraction`."""
    return growth_fraction(weeks_after_onset, half_time_weeks) ** (1.0 / 3.0)


def maturity_stage(weeks_after_onset: float) -> str:
    """Maturity stage (one of :data:`STAGES`) ``weeks_after_onset`` weeks after onset (DOMAIN.md 2.4)."""
    stage = "oedema"
    for name, start in STAGE_STARTS_WEEKS.items():
        if weeks_after_onset >= start:
            stage = name
    return stage


def phase_from_weeks(rng: np.random.Generator, weeks: float, course: Course) -> str:
    """Draw the phase a patient has reached ``weeks`` weeks after injury.

    A final severity is drawn from :data:`FINAL_PHASE_PRIOR`; the phase reached is the most severe
    one not above it whose lead time after onset has passed (growth needs time to reach a bone).
    Before onset the phase is "none".
    """
    prior = FINAL_PHASE_PRIOR[course.aetiology]
    names = list(prior)
    final = names[int(rng.choice(len(names), p=np.array(list(prior.values()))))]
    after = weeks - course.onset_weeks
    if after < MIN_WEEKS_AFTER_ONSET["a"]:
        return "none"
    reached = [p for p in names if after >= MIN_WEEKS_AFTER_ONSET[p]]
    return min(reached[-1], final)  # phases are ordered a < b < c < d


def adjusted_anatomy(spec: AnatomySpec, course: Course, weeks: float, ankylosed: bool) -> AnatomySpec:
    """``spec`` with the effects of ``weeks`` since injury: atrophy, demineralization, narrowing.

    Muscle bulk falls exponentially towards ``1 - atrophy_max`` (DOMAIN.md 2.8); trabecular density
    towards ``density_min`` over ~1-2 years (DOMAIN.md 2.10: femoral neck -20..-30 % in 1-2 years),
    ankylosis adds 10 % (DOMAIN.md 2.10) and narrows the joint space over the year after onset
    (DOMAIN.md 1.5). Only these three fields change; the bones' geometry never does.
    """
    w = max(0.0, weeks)
    bulk = spec.muscle_bulk * (1.0 - course.atrophy_max * (1.0 - math.exp(-w / course.atrophy_time_weeks)))
    density = spec.bone_density_scale * (1.0 - (1.0 - course.density_min) * (1.0 - math.exp(-w / 40.0)))
    joint = spec.joint_space_mm
    if ankylosed:
        density *= 0.9
        progress = min(1.0, max(0.0, (w - course.onset_weeks) / 52.0))
        joint = joint * (1.0 - course.joint_narrowing * progress)

    def clip(name: str, value: float) -> float:
        lo, hi = RANGES[name]
        return round(min(hi, max(lo, value)), 3)

    return replace(
        spec,
        muscle_bulk=clip("muscle_bulk", bulk),
        bone_density_scale=clip("bone_density_scale", density),
        joint_space_mm=clip("joint_space_mm", joint),
    )


TIME_EFFECT_FIELDS = ("muscle_bulk", "bone_density_scale", "joint_space_mm")
