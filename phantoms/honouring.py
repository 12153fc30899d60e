"""Honouring a requested Brooker grade by measurement: lesions rasterized on a crop, graded, adjusted.

Measures drawn lesion plans against the native parts of one hip; it draws no anatomy and builds no phantom.

How a grade is honoured (DOMAIN.md 1.2): lesions are drawn at their size at the reference time, the
parts that paint over lesions (native bone, joint space, vessels, nerves) are rasterized once on a
crop around the hip, the lesions are rasterized on top and graded with
:func:`nmosim.phantoms.grading.grade_side`. Spurs whose measured gap misses its target are lengthened
or shortened along their path, other failures redraw the side's lesions; every measurement is an
attempt, at most ``max_attempts`` per side, after which :class:`PhaseNotMet` is raised. Lesions are
drawn along paths through the hip's muscles (a :class:`~nmosim.phantoms.ossification.MuscleMap` of the
anatomy at the reference time, with the crop's native parts marked), and bridges carry their mature
mass in that muscle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nmosim.phantoms.anatomy import HipLandmarks, build_anatomy
from nmosim.phantoms.grading import SideGrade, grade_side
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Structure
from nmosim.phantoms.lesion_plans import ISLAND_CLEARANCE_MM, LesionPlan, draw_side, mass_room
from nmosim.phantoms.ossification import (
    SINGLE_LOCATIONS,
    LesionGeometry,
    MuscleMap,
    Sites,
    lesion_part,
    mirror,
)
from nmosim.phantoms.rasterize import Part, rasterize
from nmosim.phantoms.shapes import Ellipsoid, Shape
from nmosim.phantoms.spec import AnatomySpec

HONOUR_SPACING_MM = 1.5
MAX_ATTEMPTS = 24
MUSCLE_PATH_DRAWS = 3  # drawn layouts per side whose paths run through the muscle map
MASS_TRIES = 4  # masses measured around a hip's main lesion (see honour_mass)
# What a measurement on the honour grid must show of a spur's gap (mm) for grades II and III.
GAP_ACCEPT_MM = {2: (12.5, math.inf), 3: (2.5, 8.0)}
CROP_PAD_MM = 36.0  # crop around the lesions: holds every opposing bone nearer than the largest aim


class PhaseNotMet(RuntimeError):
    """The requested phase could not be drawn within the allowed attempts."""


@dataclass
class SideCrop:
    """Native parts painted over lesions (bone, joint space, vessels, nerves), rasterized once."""

    grid: Grid
    structures: np.ndarray
    threads: int | None = None  # worker threads of every rasterization on the crop (None: every core)

    def occupied(self, points: np.ndarray) -> np.ndarray:
        """Whether a native part lies at ``points`` (N, 3, mm, patient frame): nearest voxel, False
        outside the crop."""
        idx = np.rint(self.grid.mm_to_index(np.asarray(points, float))).astype(int)
        inside = np.all((idx >= 0) & (idx < np.asarray(self.grid.shape)), axis=1)
        out = np.zeros(len(idx), bool)
        z, y, x = idx[inside].T
        out[inside] = self.structures[z, y, x] != 0
        return out


def _upper_parts(spec: AnatomySpec) -> list[Part]:
    """The parts painted over lesions, in order (build_anatomy's contract)."""
    marker = Part("marker", Ellipsoid((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), 0, 0)
    parts = build_anatomy(spec, None, [marker])
    return parts[next(i for i, p in enumerate(parts) if p is marker) + 1 :]


def side_crop(
    spec: AnatomySpec, lm: HipLandmarks, side: str, spacing_mm: float, threads: int | None = None
) -> SideCrop:
    sign = 1.0 if side == "right" else -1.0
    hc = lm.head_center * np.array([sign, 1.0, 1.0])
    lo, hi = hc - [105.0, 105.0, 115.0], hc + [105.0, 105.0, 110.0]
    grid = Grid.covering(tuple(lo), tuple(hi), spacing_mm)
    upper = [p for p in _upper_parts(spec) if p.name.endswith(side) or p.name == "pelvis"]
    return SideCrop(grid, rasterize(upper, grid, 1, threads).structures, threads)


def _crop_for(crop: SideCrop, shapes: list[Shape]) -> tuple[Grid, tuple[slice, ...]]:
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
    crop: SideCrop, side: str, geometries: list[LesionGeometry], plans: list[LesionPlan]
) -> tuple[SideGrade, list[float], np.ndarray, Grid]:
    """Rasterize the side's lesions under the native parts on the crop; grade and per-lesion distances.

    Returns the SideGrade, each lesion's distance (mm, voxel boxes) to the bone it must keep clear of
    (the opposing bone for spurs, any bone for islands, 0 for bridges; inf if it vanished), the
    structures and the grid.
    """
    parts = [
        lesion_part(f"ho_{i + 1}", g.shape(1.0), side, i + 1, "mature", 2.0) for i, g in enumerate(geometries)
    ]
    grid, sl = _crop_for(crop, [p.shape for p in parts])
    r = rasterize(parts, grid, 1, crop.threads)
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


def _acceptable(grade_obj: SideGrade, grade: int, plans: list[LesionPlan], gaps: list[float]) -> bool:
    if grade_obj.grade != grade:
        return False
    if grade in GAP_ACCEPT_MM:
        lo, hi = GAP_ACCEPT_MM[grade]
        gap = math.inf if grade_obj.gap_mm is None else grade_obj.gap_mm
        if not lo <= gap <= hi:
            return False
    return all(g >= ISLAND_CLEARANCE_MM for p, g in zip(plans, gaps, strict=True) if p.attachment == "island")


def _adjust(plans: list[LesionPlan], gaps: list[float], grade: int) -> bool:
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


def _side_geometries(plans: list[LesionPlan], side: str, muscle: MuscleMap | None) -> list[LesionGeometry]:
    """The shapes of ``plans`` (drawn on the right hip) on ``side``'s hip."""
    right = [p.geometry(muscle) for p in plans]
    return right if side == "right" else [mirror(g) for g in right]


def honour_side(
    rng: np.random.Generator,
    crop: SideCrop,
    sites: Sites,
    bones: list[Shape],
    side: str,
    grade: int,
    category: str,
    max_attempts: int,
    muscle: MuscleMap | None = None,
) -> tuple[list[LesionPlan], list[LesionGeometry], int]:
    """Draw lesions for ``side`` until their measured grade is ``grade``; returns plans and attempts.

    ``muscle``: the hip's muscles, for paths in the muscle planes and the masses of bridges."""
    plans: list[LesionPlan] = []
    adjustments = 0
    draws = 0
    # After two drawn layouts at the asked location fail, the others are tried in turn: in some
    # hips one location cannot hold the grade (bones too near for a gap, a spur that meets the
    # other bone wherever it stops), and the grade comes first.
    others = [loc for loc in SINGLE_LOCATIONS if loc != category]
    for attempt in range(1, max_attempts + 1):
        if not plans or adjustments >= 3:
            where = category if draws < 2 else others[(draws - 2) % len(others)]
            # Paths through the muscle first; should those layouts fail (a bend can bring a spur's
            # body against the opposing bone), the plain bowed paths: the grade comes first.
            paths = muscle if draws < MUSCLE_PATH_DRAWS else None
            plans = draw_side(rng, sites, bones, grade, where, paths)
            adjustments = 0
            draws += 1
        if not plans:
            continue
        geometries = _side_geometries(plans, side, muscle)
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


def honour_other_side(
    rng: np.random.Generator,
    crop: SideCrop,
    sites: Sites,
    bones: list[Shape],
    side: str,
    requested: dict[str, int],
    category: str,
    max_attempts: int,
    muscle: MuscleMap | None = None,
) -> tuple[list[LesionPlan], list[LesionGeometry], int]:
    """As :func:`honour_side` for the contralateral hip, lowering its grade when one is not met;
    ``requested[side]`` is updated to the grade reached (0 and no lesions if none was)."""
    spent = 0
    for grade in range(requested[side], 0, -1):
        try:
            plans, geometries, n = honour_side(
                rng, crop, sites, bones, side, grade, category, max_attempts, muscle
            )
        except PhaseNotMet:
            spent += max_attempts
            continue
        requested[side] = grade
        return plans, geometries, spent + n
    requested[side] = 0
    return [], [], spent


def _ho_volume_ml(structures: np.ndarray, grid: Grid, side: str) -> float:
    """HO volume (ml) of ``side`` in measured ``structures``: voxel count times voxel volume."""
    ho = Structure.HO_RIGHT if side == "right" else Structure.HO_LEFT
    return float((structures == ho).sum() * grid.voxel_volume_mm3 / 1000.0)


def side_volume_ml(
    crop: SideCrop, side: str, geometries: list[LesionGeometry], plans: list[LesionPlan]
) -> float:
    """HO volume (ml) of ``side``'s lesions as measured on the crop, under the native parts."""
    _, _, structures, grid = _measure(crop, side, geometries, plans)
    return _ho_volume_ml(structures, grid, side)


def honour_mass(
    crop: SideCrop,
    bones: list[Shape],
    side: str,
    grade: int,
    plans: list[LesionPlan],
    muscle: MuscleMap,
    volumes_ml: tuple[float, float, float],
) -> tuple[list[LesionGeometry] | None, int]:
    """Give ``side``'s main lesion (``plans[0]``, honoured at ``grade``) a mature mass in the muscle
    around it, kept clear of the bone it must not reach (:func:`~nmosim.phantoms.lesion_plans.mass_room`).

    ``volumes_ml``: the side's measured HO volume now, the volume to reach and the least to accept
    (ml, measured on the crop). A mass adds less than its own volume where it overlaps the lesion it
    grows from, so a mass that falls short is asked again, larger by the shortfall; one that breaks
    the grade is halved, and no later mass comes back to its size. At most :data:`MASS_TRIES`
    measurements. Returns the first geometries that keep the grade and reach the least volume, else
    the largest that keep the grade, else None with the plans unchanged; and the measurements spent.
    A bridge's mass is replaced, shared among bridges."""
    now_ml, target_ml, least_ml = volumes_ml
    main = plans[0]
    bridges = [p for p in plans if p.attachment == "bridge"] if main.attachment == "bridge" else [main]
    before = [(p.mass_ml, p.mass_room_mm) for p in bridges]
    room = mass_room(main, bones, muscle)
    ask, too_large = target_ml - now_ml, math.inf
    best: tuple[float, float, list[LesionGeometry]] | None = None  # (volume, ask, geometries)

    def set_mass(ml: float) -> None:
        for p in bridges:
            p.mass_ml, p.mass_room_mm = ml / len(bridges), room

    for k in range(MASS_TRIES):
        set_mass(ask)
        geometries = _side_geometries(plans, side, muscle)
        grade_obj, gaps, structures, grid = _measure(crop, side, geometries, plans)
        if not _acceptable(grade_obj, grade, plans, gaps):
            too_large = ask
            ask /= 2.0
            continue
        volume = _ho_volume_ml(structures, grid, side)
        if best is None or volume > best[0]:
            best = (volume, ask, geometries)
        if volume >= least_ml:
            return geometries, k + 1
        added = volume - now_ml
        grown = ask * (target_ml - now_ml) / added if added > 0.0 else 2.0 * ask
        ask = min(grown, 0.5 * (ask + too_large))
    if best is not None:
        set_mass(best[1])
        return best[2], MASS_TRIES
    for p, (ml, r) in zip(bridges, before, strict=True):
        p.mass_ml, p.mass_room_mm = ml, r
    return None, MASS_TRIES
