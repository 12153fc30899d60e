"""Clinical measurements of hip bones (mm, degrees) from their meshes and landmarks.

Plain functions over a :class:`~nmosim.phantoms.llp26.HipBones`; they measure and never change shapes.
"""

from __future__ import annotations

import numpy as np

from nmosim.phantoms.llp26 import HipBones


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def head_diameter_mm(bones: HipBones, side: str) -> float:
    """Femoral head diameter, mm: twice the radius of the sphere fitted to the head."""
    return 2.0 * float(bones.landmarks[f"head_radius_{side}"])


def neck_shaft_angle_deg(bones: HipBones, side: str) -> float:
    """Angle between the neck axis (base to head) and the distal shaft axis, degrees."""
    lm = bones.landmarks
    return float(np.degrees(np.arccos(np.clip(lm[f"neck_axis_{side}"] @ lm[f"shaft_axis_{side}"], -1, 1))))


def anteversion_deg(bones: HipBones, side: str, reference: str = "posterior_condyle") -> float:
    """Femoral anteversion, degrees: the neck axis against the knee axis (lateral to medial), both
    projected on the plane perpendicular to the shaft; positive when the neck points anteriorly (+y)
    of the knee axis. ``reference`` is "posterior_condyle" (the posterior condylar axis, as in most
    CT studies) or "epicondyle" (the transepicondylar axis)."""
    lm = bones.landmarks
    shaft = lm[f"shaft_axis_{side}"]
    plane = np.eye(3) - np.outer(shaft, shaft)
    neck = _unit(plane @ lm[f"neck_axis_{side}"])
    if reference == "posterior_condyle":
        knee_axis = lm[f"posterior_condyle_medial_{side}"] - lm[f"posterior_condyle_lateral_{side}"]
    elif reference == "epicondyle":
        knee_axis = lm[f"medial_epicondyle_{side}"] - lm[f"lateral_epicondyle_{side}"]
    else:
        raise ValueError(f"reference = {reference!r} is not one of 'posterior_condyle', 'epicondyle'")
    condyles = _unit(plane @ knee_axis)
    anterior = plane @ np.array([0.0, 1.0, 0.0])
    anterior = _unit(anterior - (anterior @ condyles) * condyles)
    return float(np.degrees(np.arctan2(neck @ anterior, neck @ condyles)))


def pelvic_width_mm(bones: HipBones) -> float:
    """Bi-iliac width, mm: x extent of the two hip bones above the acetabular centres (iliac crests)."""
    right, left = bones.pelvis[0].vertices, bones.pelvis[1].vertices
    z0 = max(bones.landmarks["acetabular_centre_right"][2], bones.landmarks["acetabular_centre_left"][2])
    return float(right[right[:, 2] > z0, 0].max() - left[left[:, 2] > z0, 0].min())


def inter_asis_mm(bones: HipBones) -> float:
    """Distance between the two anterior superior iliac spines, mm."""
    return float(np.linalg.norm(bones.landmarks["asis_right"] - bones.landmarks["asis_left"]))


def inter_head_mm(bones: HipBones) -> float:
    """Distance between the two femoral head centres, mm."""
    return float(np.linalg.norm(bones.landmarks["head_centre_right"] - bones.landmarks["head_centre_left"]))


def femoral_length_mm(bones: HipBones, side: str) -> float:
    """Femoral length, mm, along the shaft axis: from the top of the head (centre plus one radius) to
    the most distal point of the condyles."""
    lm = bones.landmarks
    femur = bones.femur_right if side == "right" else bones.femur_left
    axis, centre = lm[f"shaft_axis_{side}"], lm[f"head_centre_{side}"]
    return float(((femur.vertices - centre) @ axis).max() + lm[f"head_radius_{side}"])
