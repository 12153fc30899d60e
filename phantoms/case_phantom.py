"""A drawn patient as a phantom at any time since injury: lesions grown, muscles and bones changed.

Turns a :class:`~nmosim.phantoms.case_plan.CasePlan` (drawn by plan_case) into phantoms; it draws and
measures nothing itself.
"""

from __future__ import annotations

import numpy as np

from nmosim.phantoms.anatomy import muscle_shapes
from nmosim.phantoms.case_plan import CasePlan, CaseStreams, plan_case
from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.honouring import HONOUR_SPACING_MM, MAX_ATTEMPTS
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.marbling import marbling_for
from nmosim.phantoms.muscles import muscle_names
from nmosim.phantoms.ossification import lesion_part
from nmosim.phantoms.phantom import Phantom, build_phantom
from nmosim.phantoms.progression import OEDEMA_LEAD_WEEKS, adjusted_anatomy, check_weeks, maturity_stage
from nmosim.phantoms.rasterize import Part
from nmosim.phantoms.shapes import Ellipsoid, Intersection, Offset, Shape, Union

OEDEMA_UNTIL_WEEKS = 8.0  # DOMAIN.md 2.6: oedema persists while calcifying, fades while immature
# Fat share of the streaks in a fat-infiltrated muscle: first value at onset, plus the second
# times the spread of infiltration (0 to 1). With the atrophic muscle's own 10 % fat between the
# streaks (materials.tissue_materials), the muscle holds 14.5 % fat at onset (~27 HU) and 28 % at
# full spread (~6 HU): DOMAIN.md 2.8, chronic paraplegic muscle 10-35 HU with fat streaks, severe
# fatty replacement below +10 HU; intramuscular fat ~6 % (3x normal) six weeks after injury.
MARBLING_FAT = (0.05, 0.15)
MARBLING = True  # fat streaks in fat-infiltrated muscles (marbling.py)


def _muscles_near(muscles: dict[str, Shape], shape: Shape, side: str) -> list[Shape]:
    lo, hi = shape.bounds()
    out = []
    for name, muscle in muscles.items():
        if not name.endswith(side):
            continue
        plo, phi = muscle.bounds()
        if np.all(plo <= hi) and np.all(phi >= lo):
            out.append(muscle)
    return out


def _oedema_part(name: str, swell: Shape, native: dict[str, Shape], side: str) -> Part | None:
    """Oedematous muscle: the ``side`` muscles of ``native`` within ``swell``; None when none is near."""
    near = _muscles_near(native, swell, side)
    if not near:
        return None
    return Part(name, Intersection((swell, Union(tuple(near)))), Structure.MUSCLE, Tissue.MUSCLE_OEDEMATOUS)


def fatty_parts(
    name: str, muscle: Shape, spread: float, seed: int, marbled: bool | None = None
) -> list[Part]:
    """Fat-infiltrated muscle ``name`` (a Territory of :func:`anatomy.muscle_shapes`): atrophic
    muscle, marbled with fat streaks when ``marbled`` (default :data:`MARBLING`; DOMAIN.md 2.8:
    heterogeneous, not a uniform drop in HU), their share growing with ``spread`` (0 to 1). The
    streaks come from a generator of the muscle's own, seeded by ``seed`` and the muscle: nested
    level sets of one field, so they only grow with time."""
    part = Part(f"{name}_fatty", muscle, Structure.MUSCLE, Tissue.MUSCLE_ATROPHIC)
    if not (MARBLING if marbled is None else marbled):
        return [part]
    rng = np.random.default_rng([seed, muscle_names().index(name)])
    streaks = marbling_for(part, MARBLING_FAT[0] + MARBLING_FAT[1] * spread, rng)
    return [part] if streaks is None else [part, streaks]


def phantom_at(plan: CasePlan, weeks: float) -> Phantom:
    """The phantom of ``plan`` at ``weeks`` since injury: lesions grown, effects applied.

    Lesions grow about their seeds and never shrink; maturity never goes back; muscles once
    fat-infiltrated stay so. Native bone geometry is the same at every time.
    """
    weeks = check_weeks(weeks)
    course = plan.course
    anatomy = adjusted_anatomy(plan.base_anatomy, course, weeks, plan.phase == "d")
    native = muscle_shapes(anatomy)
    extra: list[Part] = []
    # DOMAIN.md 2.8: fatty infiltration spreads over the months after injury.
    spread = min(1.0, max(0.0, (weeks - 6.0) / 46.0)) * course.fatty_probability
    fatty = sorted(name for name, u in plan.fatty_draws.items() if u < spread)
    for name in fatty:
        extra.extend(fatty_parts(name, native[name], spread, plan.marbling_seed))
    oedema = False
    for side, centre, radius in plan.oedema_sites:
        if weeks >= course.onset_weeks - OEDEMA_LEAD_WEEKS:
            swell = Ellipsoid(centre, (radius, 0.8 * radius, 1.3 * radius))
            part = _oedema_part(f"oedema_{side}", swell, native, side)
            if part is not None:
                extra.append(part)
                oedema = True
    ho: list[Part] = []
    for lesion in plan.lesions:
        after = weeks - lesion.onset_weeks
        scale = lesion.scale_at(weeks, course)
        if -OEDEMA_LEAD_WEEKS <= after < OEDEMA_UNTIL_WEEKS:  # DOMAIN.md 2.9: oedema around the site
            core = lesion.geometry.shape(max(scale, 0.6))
            margin = 12.0 * (1.0 - max(after, 0.0) / OEDEMA_UNTIL_WEEKS) + 4.0
            part = _oedema_part(f"oedema_ho_{lesion.instance}", Offset(core, margin), native, lesion.side)
            if part is not None:
                extra.append(part)
                oedema = True
        shape = lesion.geometry.shape(scale) if after > 0 else None
        if shape is not None:
            stage = maturity_stage(after)
            ho.append(
                lesion_part(
                    f"ho_{lesion.instance}", shape, lesion.side, lesion.instance, stage, lesion.shell_mm
                )
            )
    parts = extra + [c.part for c in plan.confounders] + ho  # HO paints over confounders
    pattern, dominant_side = plan.pattern_at(weeks)
    metadata = {
        "phase": plan.phase,
        "weeks_since_injury": float(weeks),
        "reference_weeks": plan.reference_weeks,
        "aetiology": plan.aetiology,
        "index_side": plan.index_side,
        "pattern": pattern,
        "dominant_side": dominant_side,
        "requested_grade": dict(plan.requested_grade),
        "location": dict(plan.side_location),
        "attempts": {**plan.attempts, "total": sum(plan.attempts.values())},
        "course": course.to_dict(),
        "lesions": [
            lesion.to_dict(weeks, course) for lesion in plan.lesions if lesion.scale_at(weeks, course) >= 0.05
        ],
        "confounders": [c.to_dict() for c in plan.confounders],
        "effects": {
            "muscle_bulk": anatomy.muscle_bulk,
            "bone_density_scale": anatomy.bone_density_scale,
            "joint_space_mm": anatomy.joint_space_mm,
            "fatty_muscles": fatty,
            "oedema": oedema,
        },
        "base_anatomy": plan.base_anatomy.to_dict(),
    }
    return build_phantom(anatomy, np.random.default_rng(plan.viscera_seed), parts, metadata)


def build_case_phantom(
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
) -> Phantom:
    """One NHO case: a hip phantom whose index side has the Brooker grade of ``phase`` by measurement.

    Parameters
    ----------
    rng : the case's streams (or one generator they are spawned from); the same state gives the
        same phantom.
    phase : "none", "a" (Brooker I), "b" (II), "c" (III), "d" (IV); drawn from ``weeks`` if None.
    weeks : weeks since the neurological injury, at least :data:`~nmosim.phantoms.progression.EARLIEST_WEEKS`
        of the phase; drawn from the phase's window if None.
    aetiology : "sci" (spinal cord injury) or "brain" (TBI, stroke, anoxia): location priors, atrophy.
    confounders : add non-HO calcifications (DOMAIN.md 5); drawn (p = 0.3) if None.
    anatomy_overrides : fixed :class:`~nmosim.phantoms.spec.AnatomySpec` fields of the untreated anatomy.
    honour_spacing_mm, max_attempts : grid of the grading check and attempts per side.
    threads : worker threads of the grading checks' rasterizations (default every core).
    laterality : "unilateral_right", "unilateral_left", "bilateral_right" or "bilateral_left"
        (HO of the named, dominant hip only, or of both); drawn if None (DOMAIN.md 2.3).

    ``metadata`` holds the truth inputs (phase, weeks, aetiology, attempts, requested grade per side,
    lesions with instance id, side, location, maturity and seed point). Raises SpecError for bad
    inputs and PhaseNotMet when the phase was not reached.

    Examples
    --------
    >>> p = build_case_phantom(np.random.default_rng(3), phase="c", weeks=30)  # doctest: +SKIP
    """
    plan = plan_case(
        rng,
        phase=phase,
        weeks=weeks,
        aetiology=aetiology,
        confounders=confounders,
        anatomy_overrides=anatomy_overrides,
        honour_spacing_mm=honour_spacing_mm,
        max_attempts=max_attempts,
        threads=threads,
        laterality=laterality,
    )
    return phantom_at(plan, plan.reference_weeks)


def build_case_series(
    rng: CaseStreams | np.random.Generator,
    weeks: list[float],
    *,
    phase: str | None = None,
    aetiology: str = "sci",
    confounders: bool | None = None,
    anatomy_overrides: dict | None = None,
    honour_spacing_mm: float = HONOUR_SPACING_MM,
    threads: int | None = None,
    laterality: str | None = None,
) -> list[Phantom]:
    """One patient scanned at each of ``weeks``: same anatomy, same lesions growing and maturing.

    The phase (if given) is honoured at the last time point; earlier grades follow from growth.
    """
    if not weeks:
        raise SpecError("weeks = [] must list at least one time point")
    times = [check_weeks(w) for w in weeks]
    plan = plan_case(
        rng,
        phase=phase,
        weeks=max(times),
        aetiology=aetiology,
        confounders=confounders,
        anatomy_overrides=anatomy_overrides,
        honour_spacing_mm=honour_spacing_mm,
        threads=threads,
        laterality=laterality,
    )
    return [phantom_at(plan, w) for w in times]
