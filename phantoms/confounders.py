"""Calcifications that are not HO (DOMAIN.md 5): phleboliths, vascular calcification, calcific tendinitis,
acetabular-rim osteophytes, as Parts labelled ``confounder``. It never labels anything as HO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmosim.phantoms.anatomy import (
    ARTERY_RADIUS_MM,
    HipLandmarks,
    femur_shape,
    hip_landmarks,
    vessel_nerve_paths,
)
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.ossification import point_at_depth, unit
from nmosim.phantoms.rasterize import Part
from nmosim.phantoms.shapes import (
    Capsule,
    Difference,
    Ellipsoid,
    HalfSpace,
    Intersection,
    MirrorX,
    Shape,
    Sphere,
)
from nmosim.phantoms.spec import AnatomySpec

KINDS = ("phlebolith", "vascular", "tendinitis", "osteophyte")


@dataclass(frozen=True)
class Confounder:
    """One confounder: its kind, side and centre (mm), and the Part that paints it."""

    kind: str
    side: str
    center_mm: tuple[float, float, float]
    part: Part

    def to_dict(self) -> dict:
        return {"kind": self.kind, "side": self.side, "center_mm": list(self.center_mm)}


def _side(shape: Shape, side: str) -> Shape:
    return shape if side == "right" else MirrorX(shape)


def _flip(p: np.ndarray, side: str) -> tuple[float, float, float]:
    q = np.asarray(p, float) * (np.array([1.0, 1.0, 1.0]) if side == "right" else np.array([-1.0, 1.0, 1.0]))
    return tuple(float(v) for v in q)


def _part(name: str, shape: Shape, tissue: int = Tissue.CALCIFICATION) -> Part:
    return Part(name, shape, Structure.CONFOUNDER, tissue)


def phleboliths(rng: np.random.Generator, lm: HipLandmarks, side: str, n: int) -> list[Confounder]:
    """Round 2-5 mm calcified rings with a lucent centre in the pelvic venous plexus (DOMAIN.md 5)."""
    ps = lm.pelvic_scale
    out = []
    for i in range(n):
        # Perivesical/perirectal plexus: beside the bladder and rectum, below the pelvic inlet.
        c = np.array([rng.uniform(22, 42), rng.uniform(-35, 25), rng.uniform(-32, -6)]) * ps
        r = float(rng.uniform(1.0, 2.5))
        ring = Difference(Sphere(c, r), Sphere(c, 0.45 * r))
        out.append(
            Confounder("phlebolith", side, _flip(c, side), _part(f"phlebolith_{side}_{i}", _side(ring, side)))
        )
    return out


def vascular_calcifications(
    rng: np.random.Generator, spec: AnatomySpec, side: str, n: int
) -> list[Confounder]:
    """Plaque arcs in the wall of ``side``'s femoral artery (DOMAIN.md 5: tram-track along the vessel),
    on the artery that the scene draws (:func:`nmosim.phantoms.anatomy.vessel_nerve_paths`), in the
    groin and upper thigh: from 30 mm above to 70 mm below the femoral head's centre.

    The arcs lie just outside the artery's lumen (its radius plus 1.0-1.5 mm from its axis), so the
    vessel, painted over them, keeps its shape and the calcification stays adjacent to it, on the
    wall that faces away from the vein (which runs medial to the artery).
    """
    path, _ = vessel_nerve_paths(spec, side)["femoral_artery"]
    head_z = hip_landmarks(spec, side).head_center[2]
    near_hip = np.flatnonzero((path[:-1, 2] <= head_z + 30.0) & (path[1:, 2] >= head_z - 70.0))
    lateral = 1.0 if side == "right" else -1.0
    out = []
    for i in range(n):
        a = int(near_hip[int(rng.integers(near_hip.size))])
        t = rng.uniform(0.1, 0.9)
        p = path[a] + t * (path[a + 1] - path[a])
        tangent = unit(path[a + 1] - path[a])
        length = float(rng.uniform(3.0, 8.0))
        outer = ARTERY_RADIUS_MM + float(rng.uniform(1.0, 1.5))
        shell = Difference(
            Capsule(p - length * tangent, p + length * tangent, outer),
            Capsule(p - 2 * length * tangent, p + 2 * length * tangent, ARTERY_RADIUS_MM),
        )
        normal = unit(np.cross(tangent, rng.normal(size=3)))
        if normal[0] * lateral < 0:
            normal = -normal
        arc = Intersection((shell, HalfSpace(p - 1.0 * normal, -normal, extent_mm=outer + length)))
        center = tuple(float(v) for v in p)
        out.append(Confounder("vascular", side, center, _part(f"vascular_calc_{side}_{i}", arc)))
    return out


def calcific_tendinitis(
    rng: np.random.Generator, spec: AnatomySpec, lm: HipLandmarks, side: str
) -> Confounder:
    """A homogeneous 3-20 mm deposit at the gluteus medius insertion on the greater trochanter."""
    femur = femur_shape(spec, side)
    gt = lm.greater_trochanter
    outward = unit(np.array([0.6, rng.uniform(-0.3, 0.3), 0.8]))
    surface = point_at_depth(femur, gt + 40.0 * outward, gt, 0.0)
    radii = rng.uniform(1.5, 8.0) * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.5, 0.9)])
    c = surface + (radii.max() + rng.uniform(1.0, 3.0)) * outward  # in the tendon, off the cortex
    blob = Ellipsoid(c, radii)
    return Confounder("tendinitis", side, _flip(c, side), _part(f"tendinitis_{side}", _side(blob, side)))


def rim_osteophytes(
    rng: np.random.Generator, spec: AnatomySpec, lm: HipLandmarks, side: str, n: int
) -> list[Confounder]:
    """Marginal bony lips 2-8 mm on the acetabular rim (DOMAIN.md 5: contiguous with the rim)."""
    a = unit(lm.acetabular_axis)
    e1 = unit(np.cross(a, [0.0, 1.0, 0.0]))
    e2 = np.cross(a, e1)
    outer = lm.head_radius + spec.joint_space_mm
    out = []
    for i in range(n):
        theta = rng.uniform(0.0, 2 * np.pi)
        radial = np.cos(theta) * e1 + np.sin(theta) * e2
        rim = lm.head_center + outer * (0.51 * a + 0.86 * radial)  # where socket and opening meet
        base = rim + 3.0 * radial - 3.0 * a  # inside the rim's bone
        tip = rim + float(rng.uniform(2.0, 8.0)) * (0.8 * a + 0.6 * radial)
        lip = Capsule(base, tip, float(rng.uniform(2.5, 4.0)), float(rng.uniform(1.0, 2.0)))
        out.append(
            Confounder(
                "osteophyte",
                side,
                _flip(tip, side),
                _part(f"osteophyte_{side}_{i}", _side(lip, side), Tissue.CORTICAL_BONE),
            )
        )
    return out


def sample_confounders(
    rng: np.random.Generator, spec: AnatomySpec, kinds: tuple[str, ...] | None = None
) -> list[Confounder]:
    """Draw confounders of ``kinds`` (all of :data:`KINDS` by default; at least one kind is kept).

    Each kind appears with probability 0.6 (the first drawn kind always), on one side or both,
    placed about that side's own landmarks.
    """
    kinds = KINDS if kinds is None else kinds
    chosen = [k for k in kinds if rng.random() < 0.6]
    if not chosen:
        chosen = [kinds[int(rng.integers(len(kinds)))]]
    out: list[Confounder] = []
    for kind in chosen:
        r = rng.random()
        sides = ("right", "left") if r < 0.4 else (("right",) if r < 0.7 else ("left",))
        for side in sides:
            lm = hip_landmarks(spec, side)
            if kind == "phlebolith":
                out += phleboliths(rng, lm, side, int(rng.integers(1, 5)))
            elif kind == "vascular":
                out += vascular_calcifications(rng, spec, side, int(rng.integers(1, 5)))
            elif kind == "tendinitis":
                out.append(calcific_tendinitis(rng, spec, lm, side))
            else:
                out += rim_osteophytes(rng, spec, lm, side, int(rng.integers(1, 4)))
    return out
