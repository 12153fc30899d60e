"""Drawing the lesions of one hip: spurs, bridges and islands as paths with a thickness, aimed at a grade.

Draws plans in the right hip's frame from a generator; it rasterizes nothing and measures no grade.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmosim.phantoms.grading import BROOKER_GAP_MM
from nmosim.phantoms.ossification import (
    SINGLE_LOCATIONS,
    LesionGeometry,
    MuscleMap,
    Sites,
    bezier,
    lobulated_mass,
    mass_lobes,
    muscle_path,
    with_mass,
)
from nmosim.phantoms.shapes import Shape

# Gap aims (mm) drawn for a spur. The aims keep clear of 10 mm so that grids of other spacings
# measure the same grade (DOMAIN.md 1.1).
GAP_AIM_MM = {2: (13.0, 30.0), 3: (3.0, 8.0)}
ISLAND_CLEARANCE_MM = 3.0  # islands keep this much soft tissue to any bone (grade I on finer grids)
SPUR_CLEARANCE_MM = 24.0  # spurs and islands run this far outside the head and neck (muscle planes)
BRIDGE_CLEARANCE_MM = 5.0  # bridges cuff the neck (DOMAIN.md 1.5)
# Volume of the mature mass around a hip's bridges (Brooker IV), ml, drawn log-uniform.
# DOMAIN.md 1.6: ankylosing circumferential NHO ~100-500 cm3, volumes sampled log-uniform up to
# 400 cm3 (DOMAIN.md 6); a synthesis [K], not a measured distribution.
ANKYLOSIS_VOLUME_ML = (100.0, 400.0)


@dataclass
class LesionPlan:
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
    mass_ml: float = 0.0  # a mature mass in the muscle around the lesion (needs a MuscleMap)
    mass_room_mm: np.ndarray | None = None  # per muscle-map point, the mass's largest lobe extent

    def geometry(self, muscle: MuscleMap | None = None) -> LesionGeometry:
        """The lesion's shape (right-hip frame); with ``mass_ml`` it gets a mass in ``muscle``."""
        rng = np.random.default_rng(self.shape_seed)
        if self.attachment == "island":
            seed = bezier(self.control, np.array([0.5 * (self.u_start + self.u_end)]))[0]
        else:
            seed = self.control[0]
        geometry = lobulated_mass(rng, self.control, self.u_start, self.u_end, self.thickness, seed)
        if self.mass_ml > 0.0 and muscle is not None:
            lobes = mass_lobes(rng, muscle, self.control, 1000.0 * self.mass_ml, self.mass_room_mm)
            geometry = with_mass(geometry, lobes)
        return geometry


# A mass around a lesion that is not a bridge stays this much (mm) farther from the bone it must not
# reach than the lesion's own aim: the spur, not its mass, sets the gap that grades the hip.
MASS_MARGIN_MM = 3.0


def mass_room(plan: LesionPlan, bones: list[Shape], muscle: MuscleMap) -> np.ndarray | None:
    """Per point of ``muscle`` (C order), how far (mm) a mass lobe of ``plan`` may reach without
    changing the hip's grade: an island's mass keeps clear of both bones (``bones`` = [pelvis,
    femur], right-hip frame), a spur's of the opposing bone by its gap aim; None for a bridge."""
    if plan.attachment == "bridge":
        return None
    pts = muscle.points()
    if plan.attachment == "island":
        clear = [bones[0], bones[1]]
        keep = ISLAND_CLEARANCE_MM + MASS_MARGIN_MM
    else:
        clear = [bones[1] if plan.attachment == "pelvis" else bones[0]]
        keep = float(plan.target_gap or 0.0) + MASS_MARGIN_MM
    return np.min([b.sdf(pts) for b in clear], axis=0) - keep


def _arc_length(control: np.ndarray, u0: float = 0.0, u1: float = 1.0) -> float:
    pts = bezier(control, np.linspace(u0, u1, 64))
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


def _spur_plan(
    rng: np.random.Generator,
    sites: Sites,
    bones: list[Shape],
    location: str,
    attachment: str,
    gap_mm: float,
    muscle: MuscleMap | None = None,
) -> LesionPlan | None:
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
    control = muscle_path(sites, start, end, sites.head_radius + SPUR_CLEARANCE_MM, muscle)
    length = _arc_length(control)
    tip = float(rng.uniform(3.0, 5.0))
    base = float(np.clip(min(rng.uniform(6.0, 12.0), room - gap_mm - 1.0), tip, 12.0))
    u_end = 1.0 - (gap_mm + 4.0 + 0.5 * tip) / length  # the end point lies 4 mm inside its bone
    return LesionPlan(
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


def _bridge_plan(
    rng: np.random.Generator, sites: Sites, location: str, muscle: MuscleMap | None = None
) -> LesionPlan:
    """A bridge from the pelvis to the femur around the neck (DOMAIN.md 1.5: cuffing the neck)."""
    control = muscle_path(
        sites,
        sites.pelvic[location],
        sites.femoral[location],
        sites.head_radius + BRIDGE_CLEARANCE_MM,
        muscle,
    )
    thickness = (float(rng.uniform(8.0, 13.0)), float(rng.uniform(7.0, 11.0)))
    return LesionPlan(
        location, "bridge", control, 0.0, 1.0, thickness, int(rng.integers(2**31)), None, _arc_length(control)
    )


def _island_plan(
    rng: np.random.Generator,
    sites: Sites,
    location: str,
    bones: list[Shape],
    muscle: MuscleMap | None = None,
) -> LesionPlan | None:
    """A free island in the muscle plane of ``location``, clear of both bones; None if none fits."""
    control = muscle_path(
        sites, sites.pelvic[location], sites.femoral[location], sites.head_radius + SPUR_CLEARANCE_MM, muscle
    )
    length = _arc_length(control)
    for _ in range(12):
        size = float(rng.uniform(6.0, 24.0))  # DOMAIN.md 1.6: islands 2-10 mm up to a few cm
        centre = float(rng.uniform(0.3, 0.7))
        half = 0.5 * size / length
        t = float(rng.uniform(3.0, 8.0))
        if muscle is not None:  # the deepest of a few places on the path, no thicker than the muscle
            us = np.append(rng.uniform(0.25, 0.75, 6), centre)
            depths = muscle.depth_at(bezier(control, us))
            centre = float(us[int(np.argmax(depths))])
            t = float(np.clip(depths.max(), 3.0, t))
        plan = LesionPlan(
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


def draw_side(
    rng: np.random.Generator,
    sites: Sites,
    bones: list[Shape],
    grade: int,
    category: str,
    muscle: MuscleMap | None = None,
) -> list[LesionPlan]:
    """Lesion plans (right-hip frame) for a hip of Brooker ``grade`` at location ``category``.

    Paths run through the muscle of ``muscle`` where it is given; at grade IV the bridges carry
    a mature mass of :data:`ANKYLOSIS_VOLUME_ML` in all (shared among them).
    """
    main = category if category != "circumferential" else SINGLE_LOCATIONS[int(rng.integers(4))]
    plans: list[LesionPlan] = []
    if grade == 1:
        for k in range(int(rng.integers(1, 4))):
            loc = main if k == 0 else SINGLE_LOCATIONS[int(rng.integers(4))]
            island = _island_plan(rng, sites, loc, bones, muscle)
            if island is not None:
                plans.append(island)
        return plans
    if grade == 4:
        plans.append(_bridge_plan(rng, sites, main, muscle))
    else:
        aim = float(rng.uniform(*GAP_AIM_MM[grade]))
        first = "pelvis" if rng.random() < 0.5 else "femur"
        # Where the two bones lie too near each other for the aimed gap at the drawn location (a
        # narrow hip), the spur goes to the next location that has room: the grade comes first.
        others = [loc for loc in SINGLE_LOCATIONS if loc != main]
        others = [others[i] for i in rng.permutation(len(others))]
        for location in (main, *others):
            for attachment in (first, "femur" if first == "pelvis" else "pelvis"):
                spur = _spur_plan(rng, sites, bones, location, attachment, aim, muscle)
                if spur is not None:
                    plans.append(spur)
                    break
            if plans:
                main = location
                break
        if not plans:
            return plans
    if category == "circumferential":  # DOMAIN.md 1.4: combinations; the main lesion sets the grade
        for _ in range(int(rng.integers(1, 3))):
            loc = _other_location(rng, main)
            if grade == 4 and rng.random() < 0.5:
                plans.append(_bridge_plan(rng, sites, loc, muscle))
            else:
                base = plans[0].target_gap if plans[0].target_gap is not None else 10.0
                attach = "pelvis" if rng.random() < 0.5 else "femur"
                spur = _spur_plan(
                    rng, sites, bones, loc, attach, base + float(rng.uniform(4.0, 12.0)), muscle
                )
                if spur is not None:
                    plans.append(spur)
    if rng.random() < 0.3:  # an extra island elsewhere
        island = _island_plan(rng, sites, _other_location(rng, main), bones, muscle)
        if island is not None:
            plans.append(island)
    if grade == 4:
        bridges = [p for p in plans if p.attachment == "bridge"]
        lo, hi = np.log(ANKYLOSIS_VOLUME_ML)
        total = float(np.exp(rng.uniform(lo, hi)))
        for bridge in bridges:
            bridge.mass_ml = total / len(bridges)
    return plans
