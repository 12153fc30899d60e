"""A whole NHO case: phase, time, lesions on one or both hips honoured by measurement, effects, confounders.

Builds phantoms and measures their labels on small crops; it does not simulate images or write files.

How a requested phase is honoured: the phase sets the Brooker grade of the index side (DOMAIN.md 1.2).
Lesions are drawn at their size at the reference time, the parts that paint over lesions (native bone,
joint space, vessels, nerves) are rasterized once on a crop around the hip, the lesions are rasterized
on top and graded with :func:`nmosim.phantoms.grading.grade_side`. Spurs whose measured gap misses its target
are lengthened or shortened along their path, other failures redraw the side's lesions; every
measurement is an attempt, at most ``max_attempts`` per side, after which :class:`PhaseNotMet` is raised.

Contralateral side: with probability :data:`P_BILATERAL` (DOMAIN.md 2.3) the other hip has HO too, of
grade ``index grade - k`` (k = 0, 1, 2 with probabilities :data:`CONTRALATERAL_DROP`, at least I), so
the index side is the worse one and grades differ by up to two. It is honoured the same way. The
metadata give each side's requested grade; truth should report the grades measured from the labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from nmosim.phantoms.anatomy import HipLandmarks, build_anatomy, femur_shape, hip_bone_shape, hip_landmarks
from nmosim.phantoms.confounders import Confounder, sample_confounders
from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grading import BROOKER_GAP_MM, SIDES, grade_side
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import TISSUE_NAMES, Structure, Tissue
from nmosim.phantoms.ossification import (
    LOCATION_PRIOR,
    LOCATIONS,
    SINGLE_LOCATIONS,
    LesionGeometry,
    Sites,
    bezier,
    bowed_path,
    hip_sites,
    lesion_part,
    lobulated_mass,
    mirror,
)
from nmosim.phantoms.phantom import Phantom, build_phantom
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
from nmosim.phantoms.rasterize import Part, Rasterization, rasterize
from nmosim.phantoms.shapes import Ellipsoid, Intersection, Offset, Shape, Union
from nmosim.phantoms.spec import AnatomySpec, sample_anatomy

HONOUR_SPACING_MM = 1.5
MAX_ATTEMPTS = 24
P_BILATERAL = {"sci": 0.4, "brain": 0.3}  # DOMAIN.md 2.3: 0.3-0.5 in SCI
CONTRALATERAL_DROP = (0.3, 0.45, 0.25)  # P(other side = index grade - 0, 1, 2); DOMAIN.md 2.3
# Gap aims (mm) drawn for a spur, and what a measurement on the honour grid must show. The aims keep
# clear of 10 mm so that grids of other spacings measure the same grade (DOMAIN.md 1.1).
GAP_AIM_MM = {2: (13.0, 30.0), 3: (3.0, 8.0)}
GAP_ACCEPT_MM = {2: (12.5, math.inf), 3: (2.5, 8.0)}
ISLAND_CLEARANCE_MM = 3.0  # islands keep this much soft tissue to any bone (grade I on finer grids)
CROP_PAD_MM = 36.0  # crop around the lesions: holds every opposing bone nearer than the largest aim
SPUR_CLEARANCE_MM = 24.0  # spurs and islands run this far outside the head and neck (muscle planes)
BRIDGE_CLEARANCE_MM = 5.0  # bridges cuff the neck (DOMAIN.md 1.5)
MAX_SCALE = {"bridge": 1.0, "other": 1.5}  # growth beyond the reference size; ankylosis is complete
OEDEMA_UNTIL_WEEKS = 8.0  # DOMAIN.md 2.6: oedema persists while calcifying, fades while immature


class PhaseNotMet(RuntimeError):
    """The requested phase could not be drawn within the allowed attempts."""


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
class _Plan:
    """A lesion being drawn on the right hip; ``u_end`` is what honouring adjusts."""

    location: str
    attachment: str
    control: np.ndarray
    u_start: float
    u_end: float
    thickness: tuple[float, float]
    shape_seed: int
    target_gap: float | None = None
    length_mm: float = 1.0
    last: tuple[float, float] | None = None  # (u_end, gap) of the previous measurement

    def geometry(self) -> LesionGeometry:
        rng = np.random.default_rng(self.shape_seed)
        if self.attachment == "island":
            seed = bezier(self.control, np.array([0.5 * (self.u_start + self.u_end)]))[0]
        else:
            seed = self.control[0]
        return lobulated_mass(rng, self.control, self.u_start, self.u_end, self.thickness, seed)


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


# --- sampling a side's lesions -------------------------------------------------------------------


def _arc_length(control: np.ndarray, u0: float = 0.0, u1: float = 1.0) -> float:
    pts = bezier(control, np.linspace(u0, u1, 64))
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


def _spur_plan(
    rng: np.random.Generator, sites: Sites, bones: list[Shape], location: str, attachment: str, gap_mm: float
) -> _Plan | None:
    """A spur from the pelvis or femur toward the opposing bone, aimed to stop ``gap_mm`` short.

    The base is made thin enough that the spur's own base leaves the aimed gap to the opposing bone;
    None when the anchor lies too near the opposing bone for that gap.
    """
    a, b = sites.pelvic[location], sites.femoral[location]
    start, end = (a, b) if attachment == "pelvis" else (b, a)
    opposing = bones[1] if attachment == "pelvis" else bones[0]
    room = float(opposing.sdf(start[None, :])[0])  # anchor to opposing bone surface (mm)
    gap_mm = min(gap_mm, max(GAP_AIM_MM[2][0], room - 5.0)) if gap_mm >= BROOKER_GAP_MM else gap_mm
    if room - gap_mm < 6.0:
        return None
    control = bowed_path(sites, start, end, sites.head_radius + SPUR_CLEARANCE_MM)
    length = _arc_length(control)
    tip = float(rng.uniform(3.0, 5.0))
    base = float(np.clip(min(rng.uniform(6.0, 12.0), room - gap_mm - 1.0), tip, 12.0))
    u_end = 1.0 - (gap_mm + 4.0 + 0.5 * tip) / length  # the end point lies 4 mm inside its bone
    return _Plan(
        location,
        attachment,
        control,
        0.0,
        float(np.clip(u_end, 0.2, 0.95)),
        (base, tip),
        int(rng.integers(2**31)),
        gap_mm,
        length,
    )


def _bridge_plan(rng: np.random.Generator, sites: Sites, location: str) -> _Plan:
    """A bridge from the pelvis to the femur around the neck (DOMAIN.md 1.5: cuffing the neck)."""
    control = bowed_path(
        sites, sites.pelvic[location], sites.femoral[location], sites.head_radius + BRIDGE_CLEARANCE_MM
    )
    thickness = (float(rng.uniform(8.0, 13.0)), float(rng.uniform(7.0, 11.0)))
    return _Plan(
        location, "bridge", control, 0.0, 1.0, thickness, int(rng.integers(2**31)), None, _arc_length(control)
    )


def _island_plan(rng: np.random.Generator, sites: Sites, location: str, bones: list[Shape]) -> _Plan | None:
    """A free island in the muscle plane of ``location``, clear of both bones; None if none fits."""
    control = bowed_path(
        sites, sites.pelvic[location], sites.femoral[location], sites.head_radius + SPUR_CLEARANCE_MM
    )
    length = _arc_length(control)
    for _ in range(12):
        size = float(rng.uniform(6.0, 24.0))  # DOMAIN.md 1.6: islands 2-10 mm up to a few cm
        centre = float(rng.uniform(0.3, 0.7))
        half = 0.5 * size / length
        t = float(rng.uniform(3.0, 8.0))
        plan = _Plan(
            location, "island", control, centre - half, centre + half, (t, 0.8 * t), int(rng.integers(2**31))
        )
        if _clearance_mm(plan.geometry(), bones, rng) >= ISLAND_CLEARANCE_MM + 2.0:
            return plan
    return None


def _clearance_mm(geometry: LesionGeometry, bones: list[Shape], rng: np.random.Generator) -> float:
    """Approximate distance (mm) from the lesion's surface to the nearest bone (surface samples)."""
    pts = []
    for lobe in geometry.lobes:
        d = rng.normal(size=(64, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        pts.append(lobe.center + (d * lobe.radii) @ lobe.rotation.T)
    for c, r in geometry.bumps:
        d = rng.normal(size=(16, 3))
        pts.append(c + r * d / np.linalg.norm(d, axis=1, keepdims=True))
    p = np.concatenate(pts)
    return float(min(b.sdf(p).min() for b in bones))


def _other_location(rng: np.random.Generator, exclude: str) -> str:
    options = [loc for loc in SINGLE_LOCATIONS if loc != exclude]
    return options[int(rng.integers(len(options)))]


def _draw_side(
    rng: np.random.Generator, sites: Sites, bones: list[Shape], grade: int, category: str
) -> list[_Plan]:
    """Lesion plans (right-hip frame) for a hip of Brooker ``grade`` at location ``category``."""
    main = category if category != "circumferential" else SINGLE_LOCATIONS[int(rng.integers(4))]
    plans: list[_Plan] = []
    if grade == 1:
        for k in range(int(rng.integers(1, 4))):
            loc = main if k == 0 else SINGLE_LOCATIONS[int(rng.integers(4))]
            island = _island_plan(rng, sites, loc, bones)
            if island is not None:
                plans.append(island)
        return plans
    if grade == 4:
        plans.append(_bridge_plan(rng, sites, main))
    else:
        aim = float(rng.uniform(*GAP_AIM_MM[grade]))
        first = "pelvis" if rng.random() < 0.5 else "femur"
        for attachment in (first, "femur" if first == "pelvis" else "pelvis"):
            spur = _spur_plan(rng, sites, bones, main, attachment, aim)
            if spur is not None:
                plans.append(spur)
                break
        if not plans:
            return plans
    if category == "circumferential":  # DOMAIN.md 1.4: combinations; the main lesion sets the grade
        for _ in range(int(rng.integers(1, 3))):
            loc = _other_location(rng, main)
            if grade == 4 and rng.random() < 0.5:
                plans.append(_bridge_plan(rng, sites, loc))
            else:
                base = plans[0].target_gap if plans[0].target_gap is not None else 10.0
                attach = "pelvis" if rng.random() < 0.5 else "femur"
                spur = _spur_plan(rng, sites, bones, loc, attach, base + float(rng.uniform(4.0, 12.0)))
                if spur is not None:
                    plans.append(spur)
    if rng.random() < 0.3:  # an extra island elsewhere
        island = _island_plan(rng, sites, _other_location(rng, main), bones)
        if island is not None:
            plans.append(island)
    return plans


# --- measuring and honouring --------------------------------------------------------------------


@dataclass
class _SideCrop:
    """Native parts painted over lesions (bone, joint space, vessels, nerves), rasterized once."""

    grid: Grid
    structures: np.ndarray


def _upper_parts(spec: AnatomySpec) -> list[Part]:
    """The parts painted over lesions, in order (build_anatomy's contract)."""
    marker = Part("marker", Ellipsoid((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), 0, 0)
    parts = build_anatomy(spec, None, [marker])
    return parts[next(i for i, p in enumerate(parts) if p is marker) + 1 :]


def _side_crop(spec: AnatomySpec, lm: HipLandmarks, side: str, spacing_mm: float) -> _SideCrop:
    sign = 1.0 if side == "right" else -1.0
    hc = lm.head_center * np.array([sign, 1.0, 1.0])
    lo, hi = hc - [105.0, 105.0, 115.0], hc + [105.0, 105.0, 110.0]
    grid = Grid.covering(tuple(lo), tuple(hi), spacing_mm)
    upper = [p for p in _upper_parts(spec) if p.name.endswith(side) or p.name == "pelvis"]
    return _SideCrop(grid, rasterize(upper, grid, 1).structures)


def _crop_for(crop: _SideCrop, shapes: list[Shape]) -> tuple[Grid, tuple[slice, ...]]:
    """Sub-grid of the side crop (same voxels) around ``shapes`` padded by :data:`CROP_PAD_MM`."""
    los, his = zip(*(s.bounds() for s in shapes), strict=True)
    lo = np.min(los, axis=0) - CROP_PAD_MM
    hi = np.max(his, axis=0) + CROP_PAD_MM
    g = crop.grid
    a = np.clip(np.floor(g.mm_to_index(lo)).astype(int), 0, g.shape)
    b = np.clip(np.ceil(g.mm_to_index(hi)).astype(int) + 1, 0, g.shape)
    b = np.maximum(b, a + 1)
    origin = g.index_to_mm(a)
    return Grid(tuple(int(v) for v in b - a), g.spacing_mm, tuple(origin)), tuple(
        slice(int(x), int(y)) for x, y in zip(a, b, strict=True)
    )


def _measure(
    crop: _SideCrop, side: str, geometries: list[LesionGeometry], plans: list[_Plan]
) -> tuple[object, list[float], np.ndarray, Grid]:
    """Rasterize the side's lesions under the native parts on the crop; grade and per-lesion distances.

    Returns the SideGrade, each lesion's distance (mm, voxel boxes) to the bone it must keep clear of
    (the opposing bone for spurs, any bone for islands, 0 for bridges; inf if it vanished), the
    structures and the grid.
    """
    parts = [
        lesion_part(f"ho_{i + 1}", g.shape(1.0), side, i + 1, "mature", 2.0) for i, g in enumerate(geometries)
    ]
    grid, sl = _crop_for(crop, [p.shape for p in parts])
    r = rasterize(parts, grid, 1)
    structures = crop.structures[sl].copy()
    instances = np.zeros(grid.shape, np.uint16)
    free = structures == 0
    structures[free] = r.structures[free]
    instances[free] = r.instances[free]
    grade = grade_side(structures, grid.spacing_mm, side, grid.origin_mm)
    femur = Structure.FEMUR_RIGHT if side == "right" else Structure.FEMUR_LEFT
    spacing_zyx = np.asarray(grid.spacing_mm[::-1])
    cube = np.ones((3, 3, 3), bool)
    distance: dict[str, np.ndarray] = {}

    ho = structures == (Structure.HO_RIGHT if side == "right" else Structure.HO_LEFT)
    with_spurs = {  # DESIGN.md 4: the opposing bone includes the opposing spurs
        k: np.isin(instances, [i + 1 for i, p in enumerate(plans) if p.attachment == k]) & ho
        for k in ("pelvis", "femur")
    }

    def to(kind: str) -> np.ndarray:
        if kind not in distance:
            mask = {
                "pelvis": (structures == Structure.PELVIS) | with_spurs["pelvis"],
                "femur": (structures == femur) | with_spurs["femur"],
                "bone": (structures == Structure.PELVIS) | (structures == femur),
            }[kind]
            distance[kind] = ndimage.distance_transform_edt(
                ~ndimage.binary_dilation(mask, cube), sampling=spacing_zyx
            )
        return distance[kind]

    gaps = []
    for i, plan in enumerate(plans):
        voxels = instances == i + 1
        if not voxels.any():
            gaps.append(math.inf)
            continue
        kind = {"pelvis": "femur", "femur": "pelvis", "island": "bone", "bridge": None}[plan.attachment]
        gaps.append(0.0 if kind is None else float(to(kind)[voxels].min()))
    return grade, gaps, structures, grid


def _acceptable(grade_obj, grade: int, plans: list[_Plan], gaps: list[float]) -> bool:
    if grade_obj.grade != grade:
        return False
    if grade in GAP_ACCEPT_MM:
        lo, hi = GAP_ACCEPT_MM[grade]
        gap = math.inf if grade_obj.gap_mm is None else grade_obj.gap_mm
        if not lo <= gap <= hi:
            return False
    return all(g >= ISLAND_CLEARANCE_MM for p, g in zip(plans, gaps, strict=True) if p.attachment == "island")


def _adjust(plans: list[_Plan], gaps: list[float], grade: int) -> bool:
    """Shorten spurs that come too near the opposing bone, lengthen the main one toward its aim.

    Windows: the main spur (the first) must land within 1.5 mm of its aim; the others only need to
    stay farther than the grade allows (b: 13 mm, c: 3 mm). False when nothing can be adjusted.
    """
    changed = False
    for k, (plan, gap) in enumerate(zip(plans, gaps, strict=True)):
        if plan.attachment not in ("pelvis", "femur"):
            continue
        if not math.isfinite(gap) or plan.target_gap is None:
            return False  # the spur vanished under native parts: redraw
        floor = GAP_ACCEPT_MM[grade][0] + 0.5
        lo, hi = (plan.target_gap - 1.5, plan.target_gap + 1.5) if k == 0 else (floor, math.inf)
        if lo <= gap <= hi:
            continue
        aim = plan.target_gap if k == 0 else floor + 2.0
        slope = -plan.length_mm  # d gap / d u_end if the tip alone sets the gap
        if plan.last is not None and gap > 0.0 and plan.last[1] > 0.0 and plan.last[0] != plan.u_end:
            secant = (gap - plan.last[1]) / (plan.u_end - plan.last[0])
            slope = min(-0.2 * plan.length_mm, secant)  # the body, not the tip, may set the gap
        step = (aim - gap) / slope if gap > 0.0 else -(aim + 4.0) / plan.length_mm
        plan.last = (plan.u_end, gap)
        plan.u_end = float(np.clip(plan.u_end + step, 0.08, 1.1))
        changed = True
    return changed


def _honour_side(
    rng: np.random.Generator,
    crop: _SideCrop,
    sites: Sites,
    bones: list[Shape],
    side: str,
    grade: int,
    category: str,
    max_attempts: int,
) -> tuple[list[_Plan], list[LesionGeometry], int]:
    """Draw lesions for ``side`` until their measured grade is ``grade``; returns plans and attempts."""
    plans: list[_Plan] = []
    adjustments = 0
    for attempt in range(1, max_attempts + 1):
        if not plans or adjustments >= 3:
            plans = _draw_side(rng, sites, bones, grade, category)
            adjustments = 0
        if not plans:
            continue
        right = [p.geometry() for p in plans]
        geometries = right if side == "right" else [mirror(g) for g in right]
        grade_obj, gaps, _, _ = _measure(crop, side, geometries, plans)
        if _acceptable(grade_obj, grade, plans, gaps):
            return plans, geometries, attempt
        if grade in (2, 3) and _adjust(plans, gaps, grade):
            adjustments += 1
        else:
            plans = []
    raise PhaseNotMet(
        f"Brooker grade {grade} on the {side} hip was not reached by measurement in {max_attempts} attempts"
    )


def _honour_other_side(
    rng: np.random.Generator,
    crop: _SideCrop,
    sites: Sites,
    bones: list[Shape],
    side: str,
    requested: dict[str, int],
    category: str,
    max_attempts: int,
) -> tuple[list[_Plan], list[LesionGeometry], int]:
    """As :func:`_honour_side` for the contralateral hip, lowering its grade when one is not met;
    ``requested[side]`` is updated to the grade reached (0 and no lesions if none was)."""
    spent = 0
    for grade in range(requested[side], 0, -1):
        try:
            plans, geometries, n = _honour_side(rng, crop, sites, bones, side, grade, category, max_attempts)
        except PhaseNotMet:
            spent += max_attempts
            continue
        requested[side] = grade
        return plans, geometries, spent + n
    requested[side] = 0
    return [], [], spent


# --- the case -----------------------------------------------------------------------------------


def _choice(rng: np.random.Generator, prior: dict[str, float]) -> str:
    names = list(prior)
    p = np.array([prior[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def plan_case(
    rng: np.random.Generator,
    *,
    phase: str | None = None,
    weeks: float | None = None,
    aetiology: str = "sci",
    confounders: bool | None = None,
    anatomy_overrides: dict | None = None,
    honour_spacing_mm: float = HONOUR_SPACING_MM,
    max_attempts: int = MAX_ATTEMPTS,
) -> CasePlan:
    """Draw one patient (anatomy, course, lesions honoured at ``weeks``, confounders).

    Arguments as in :func:`build_case_phantom`; the plan builds phantoms at any time with
    :func:`phantom_at`.
    """
    check_aetiology(aetiology)
    if phase is not None:
        check_phase(phase)
    if weeks is not None:
        weeks = check_weeks(weeks, phase)
    r_anat, r_course, r_phase, r_lesion, r_conf, r_misc = rng.spawn(6)
    base = sample_anatomy(r_anat, **(anatomy_overrides or {}))
    if weeks is None:
        weeks = round(float(r_phase.uniform(*PHASE_WEEKS_WINDOW[phase or "none"])), 2)
    latest = None if phase in (None, "none") else weeks - MIN_WEEKS_AFTER_ONSET[phase]
    course = sample_course(r_course, aetiology, latest)
    if phase is None:
        phase = phase_from_weeks(r_phase, weeks, course)
    grade = PHASE_GRADE[phase]
    index_side = SIDES[int(r_phase.integers(2))]
    other = "left" if index_side == "right" else "right"
    requested = {index_side: grade, other: 0}
    if grade > 0 and r_phase.random() < P_BILATERAL[aetiology]:
        drop = int(r_phase.choice(3, p=CONTRALATERAL_DROP))
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
    lm = hip_landmarks(ref_anatomy)
    sites = hip_sites(ref_anatomy, lm)
    bones = [hip_bone_shape(ref_anatomy, lm), femur_shape(ref_anatomy, lm)]
    lesions: list[LesionSpec] = []
    attempts = {"right": 0, "left": 0}
    for side in SIDES:
        if not requested[side]:
            continue
        crop = _side_crop(ref_anatomy, lm, side, honour_spacing_mm)
        if side == index_side:
            plans, geometries, n = _honour_side(
                r_lesion, crop, sites, bones, side, requested[side], side_location[side], max_attempts
            )
        else:
            # Only the index hip's grade is asked for; the other hip steps down until one is met.
            plans, geometries, n = _honour_other_side(
                r_lesion, crop, sites, bones, side, requested, side_location[side], max_attempts
            )
            if not plans:
                continue
        attempts[side] = n
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
    conf = sample_confounders(r_conf, ref_anatomy, lm) if confounders else []
    muscles = [p.name for p in build_anatomy(base, None) if p.structure == Structure.MUSCLE]
    fatty = {name: float(r_misc.random()) for name in muscles}
    oedema_sites = []
    if grade == 0 and course.onset_weeks - OEDEMA_LEAD_WEEKS <= weeks < course.onset_weeks:
        # DOMAIN.md 2.9: swelling precedes calcification at the future lesion site.
        loc = _choice(r_misc, LOCATION_PRIOR[aetiology])
        loc = loc if loc != "circumferential" else "anterior"
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
        viscera_seed=int(r_misc.integers(2**63)),
        fatty_draws=fatty,
        oedema_sites=oedema_sites,
    )


def _muscles_near(parts: list[Part], shape: Shape, side: str) -> list[Shape]:
    lo, hi = shape.bounds()
    out = []
    for p in parts:
        if p.structure != Structure.MUSCLE or not p.name.endswith(side):
            continue
        plo, phi = p.shape.bounds()
        if np.all(plo <= hi) and np.all(phi >= lo):
            out.append(p.shape)
    return out


def phantom_at(plan: CasePlan, weeks: float) -> Phantom:
    """The phantom of ``plan`` at ``weeks`` since injury: lesions grown, effects applied.

    Lesions grow about their seeds and never shrink; maturity never goes back; muscles once
    fat-infiltrated stay so. Native bone geometry is the same at every time.
    """
    weeks = check_weeks(weeks)
    course = plan.course
    anatomy = adjusted_anatomy(plan.base_anatomy, course, weeks, plan.phase == "d")
    native = build_anatomy(anatomy, None)
    extra: list[Part] = []
    # DOMAIN.md 2.8: fatty infiltration spreads over the months after injury.
    spread = min(1.0, max(0.0, (weeks - 6.0) / 46.0)) * course.fatty_probability
    fatty = sorted(name for name, u in plan.fatty_draws.items() if u < spread)
    by_name = {p.name: p for p in native}
    for name in fatty:
        extra.append(Part(f"{name}_fatty", by_name[name].shape, Structure.MUSCLE, Tissue.MUSCLE_ATROPHIC))
    oedema = False
    for side, centre, radius in plan.oedema_sites:
        if weeks >= course.onset_weeks - OEDEMA_LEAD_WEEKS:
            swell = Ellipsoid(centre, (radius, 0.8 * radius, 1.3 * radius))
            near = _muscles_near(native, swell, side)
            if near:
                extra.append(
                    Part(
                        f"oedema_{side}",
                        Intersection((swell, Union(tuple(near)))),
                        Structure.MUSCLE,
                        Tissue.MUSCLE_OEDEMATOUS,
                    )
                )
                oedema = True
    ho: list[Part] = []
    for lesion in plan.lesions:
        after = weeks - lesion.onset_weeks
        scale = lesion.scale_at(weeks, course)
        if -OEDEMA_LEAD_WEEKS <= after < OEDEMA_UNTIL_WEEKS:  # DOMAIN.md 2.9: oedema around the site
            core = lesion.geometry.shape(max(scale, 0.6))
            margin = 12.0 * (1.0 - max(after, 0.0) / OEDEMA_UNTIL_WEEKS) + 4.0
            swell = Offset(core, margin)
            near = _muscles_near(native, swell, lesion.side)
            if near:
                extra.append(
                    Part(
                        f"oedema_ho_{lesion.instance}",
                        Intersection((swell, Union(tuple(near)))),
                        Structure.MUSCLE,
                        Tissue.MUSCLE_OEDEMATOUS,
                    )
                )
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
    metadata = {
        "phase": plan.phase,
        "weeks_since_injury": float(weeks),
        "reference_weeks": plan.reference_weeks,
        "aetiology": plan.aetiology,
        "index_side": plan.index_side,
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
    rng: np.random.Generator,
    *,
    phase: str | None = None,
    weeks: float | None = None,
    aetiology: str = "sci",
    confounders: bool | None = None,
    anatomy_overrides: dict | None = None,
    honour_spacing_mm: float = HONOUR_SPACING_MM,
    max_attempts: int = MAX_ATTEMPTS,
) -> Phantom:
    """One NHO case: a hip phantom whose index side has the Brooker grade of ``phase`` by measurement.

    Parameters
    ----------
    rng : the case's generator; the same state gives the same phantom.
    phase : "none", "a" (Brooker I), "b" (II), "c" (III), "d" (IV); drawn from ``weeks`` if None.
    weeks : weeks since the neurological injury, at least :data:`~nmosim.phantoms.progression.EARLIEST_WEEKS`
        of the phase; drawn from the phase's window if None.
    aetiology : "sci" (spinal cord injury) or "brain" (TBI, stroke, anoxia): location priors, atrophy.
    confounders : add non-HO calcifications (DOMAIN.md 5); drawn (p = 0.3) if None.
    anatomy_overrides : fixed :class:`~nmosim.phantoms.spec.AnatomySpec` fields of the untreated anatomy.
    honour_spacing_mm, max_attempts : grid of the grading check and attempts per side.

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
    )
    return phantom_at(plan, plan.reference_weeks)


def build_case_series(
    rng: np.random.Generator,
    weeks: list[float],
    *,
    phase: str | None = None,
    aetiology: str = "sci",
    confounders: bool | None = None,
    anatomy_overrides: dict | None = None,
    honour_spacing_mm: float = HONOUR_SPACING_MM,
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
    )
    return [phantom_at(plan, w) for w in times]


# --- measured truth -----------------------------------------------------------------------------


def lesion_truth(rasterization: Rasterization, phantom: Phantom) -> dict:
    """Per side, measured from labels: Brooker grade, gap, HO volume (ml) in all and by tissue, and
    each lesion's volume (ml) and centroid (mm, x y z), with its location and maturity from metadata."""
    grid = rasterization.grid
    voxel_ml = grid.voxel_volume_mm3 / 1000.0
    known = {d["instance"]: d for d in phantom.metadata.get("lesions", [])}
    out = {}
    for side in SIDES:
        label = Structure.HO_RIGHT if side == "right" else Structure.HO_LEFT
        g = grade_side(rasterization.structures, grid.spacing_mm, side, grid.origin_mm)
        ho = rasterization.structures == label
        tissues = np.bincount(rasterization.tissues[ho], minlength=len(TISSUE_NAMES))
        by_tissue = {TISSUE_NAMES[t]: round(float(n) * voxel_ml, 4) for t, n in enumerate(tissues) if n}
        lesions = []
        ids = rasterization.instances[ho]
        for instance in sorted(set(np.unique(ids).tolist()) - {0}):
            where = np.argwhere(ho & (rasterization.instances == instance))
            info = known.get(instance, {})
            lesions.append(
                {
                    "instance": int(instance),
                    "location": info.get("location"),
                    "maturity": info.get("maturity"),
                    "volume_ml": round(len(where) * voxel_ml, 4),
                    "centroid_mm": [round(float(v), 2) for v in grid.index_to_mm(where.mean(axis=0))],
                }
            )
        out[side] = {
            "brooker_grade": g.grade,
            "gap_mm": None if g.gap_mm is None else round(g.gap_mm, 3),
            "ho_volume_ml": round(g.ho_volume_mm3 / 1000.0, 4),
            "ho_volume_ml_by_tissue": by_tissue,
            "lesions": lesions,
        }
    return out


__all__ = [
    "LOCATIONS",
    "CasePlan",
    "LesionSpec",
    "PhaseNotMet",
    "build_case_phantom",
    "build_case_series",
    "lesion_truth",
    "phantom_at",
    "plan_case",
]
