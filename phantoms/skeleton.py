"""The bones of one hip as shapes: LLP26 meshes sized, placed and turned into signed distances.

Takes an :class:`AnatomySpec`'s bone parameters (mode weights, inter-hip distance), asks the shape
model for the meshes and landmarks (:mod:`nmosim.phantoms.llp26`) and makes each bone a
:class:`~nmosim.phantoms.mesh_shape.MeshShape`. Built once per set of bone parameters and cached:
the joint space, cortex and canal that change with time are cheap shapes laid over these.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from nmosim.phantoms.llp26 import HipBones, hip_bones
from nmosim.phantoms.mesh import TriangleMesh
from nmosim.phantoms.mesh_shape import MeshShape, mesh_shape
from nmosim.phantoms.spec import BONE_MODE_LIMIT_SD, N_BONE_MODES, AnatomySpec

SIDES = ("right", "left")
MESH_RESOLUTION_MM = 1.0  # spacing of the signed-distance grids of the bones
# The scene spans these heights (mm): from below the lesser trochanters to above the iliac crests
# of the largest pelvis drawn. The femurs' distance grids end 30 mm lower: below that the femur
# reads as absent, and no grid of the scene reaches there.
SCENE_Z_MM = (-150.0, 180.0)
FEMUR_GRID_BOTTOM_MM = SCENE_Z_MM[0] - 30.0
REFERENCE_INTER_HIP_MM = 175.0  # the hip size that pelvic_scale 1 stands for (DOMAIN.md 3)
_FLIP_X = np.array([-1.0, 1.0, 1.0])


@dataclass(frozen=True)
class HipLandmarks:
    """Key points of one hip (mm, patient frame), given as if it were the right hip.

    The left hip's landmarks are mirrored through x = 0 (see :func:`hip_landmarks`), so code that
    places things about a hip works on the right-side frame and mirrors its result for the left.
    ``neck_axis`` points from the neck base toward the head centre, ``shaft_axis`` distally and
    ``acetabular_axis`` along the outward normal of the acetabular opening.
    """

    head_center: np.ndarray
    head_radius: float
    neck_axis: np.ndarray
    neck_base: np.ndarray
    shaft_axis: np.ndarray
    shaft_radius: float
    greater_trochanter: np.ndarray
    lesser_trochanter: np.ndarray
    intertrochanteric_crest: np.ndarray
    acetabular_center: np.ndarray
    acetabular_axis: np.ndarray
    aiis: np.ndarray
    asis: np.ndarray
    psis: np.ndarray
    pubic_tubercle: np.ndarray
    ischial_tuberosity: np.ndarray
    ischial_spine: np.ndarray
    knee_center: np.ndarray
    pelvic_scale: float

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}

    def mirrored(self) -> HipLandmarks:
        """The same landmarks reflected through x = 0 (right-side frame <-> the left hip's own)."""
        return HipLandmarks(
            **{k: (v * _FLIP_X if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}
        )


@dataclass(frozen=True, eq=False)
class Skeleton:
    """The pelvis and both femurs as shapes, their meshes and the landmarks of each hip."""

    pelvis: MeshShape
    femurs: dict[str, MeshShape]
    bones: HipBones
    landmarks: dict[str, HipLandmarks]  # per side, in the right-side frame (left mirrored)

    def femur(self, side: str) -> MeshShape:
        return self.femurs[side]


def _weights(values: tuple[float, ...]) -> np.ndarray:
    w = np.zeros(N_BONE_MODES)
    w[: len(values)] = values
    return w


def _scaled(bones: HipBones, factor: float) -> HipBones:
    """``bones`` scaled about the origin by ``factor`` (positions and radii; axes unchanged)."""
    m = np.eye(3) * factor
    zero = np.zeros(3)

    def mesh(x):
        if isinstance(x, TriangleMesh):
            return x.transformed(m, zero)
        return tuple(mesh(p) for p in x)

    marks = {}
    for key, value in bones.landmarks.items():
        is_axis = "_axis_" in key or key.endswith("_axis")
        marks[key] = np.asarray(value, float) if is_axis else np.asarray(value, float) * factor
    return HipBones(
        pelvis=mesh(bones.pelvis),
        femur_right=mesh(bones.femur_right),
        femur_left=mesh(bones.femur_left),
        landmarks=marks,
        weights_sd=bones.weights_sd,
        model={**bones.model, "scale": round(float(bones.model.get("scale", 1.0)) * factor, 6)},
    )


def _pelvis_mesh(pelvis) -> TriangleMesh:
    """One mesh of the pelvis, whether the model gives it whole or in parts."""
    if isinstance(pelvis, TriangleMesh):
        return pelvis
    parts = list(pelvis)
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    return TriangleMesh(
        np.concatenate([p.vertices for p in parts]),
        np.concatenate([p.faces + o for p, o in zip(parts, offsets, strict=True)]),
    )


# The shaft is sampled in a slab 16 mm thick centred 40 mm below the lesser trochanter; in some
# shapes the mesh's rows of vertices lie up to about 20 mm apart there and the slab holds too few
# of them, and then it is centred on the nearest vertex farther down the shaft (narrower, not the
# flare above).
SHAFT_RING_MM = 40.0
SHAFT_RING_HALF_MM = 8.0
SHAFT_RING_MIN_VERTICES = 6  # about one row of the mesh


def shaft_ring(vertices: np.ndarray, lesser: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """The femoral surface ``vertices`` (N, 3, mm) in a slab across the shaft about
    :data:`SHAFT_RING_MM` below the lesser trochanter along the unit shaft ``axis``."""
    height = (vertices - lesser) @ axis
    ring = vertices[np.abs(height - SHAFT_RING_MM) < SHAFT_RING_HALF_MM]
    if len(ring) >= SHAFT_RING_MIN_VERTICES:
        return ring
    centre = float(height[height >= SHAFT_RING_MM].min())
    return vertices[np.abs(height - centre) < SHAFT_RING_HALF_MM]


def _shaft_radius(femur: TriangleMesh, lesser: np.ndarray, axis: np.ndarray) -> float:
    """Mean outer radius (mm) of the shaft 40 mm below the lesser trochanter: the mean distance of
    the surface vertices in a slab there (:func:`shaft_ring`) from their centroid (the shaft is
    near straight)."""
    ring = shaft_ring(femur.vertices, lesser, axis)
    ring = ring - ((ring - lesser) @ axis)[:, None] * axis  # onto one plane
    return float(np.mean(np.linalg.norm(ring - ring.mean(axis=0), axis=1)))


def _side_landmarks(bones: HipBones, side: str, pelvic_scale: float) -> HipLandmarks:
    m = bones.landmarks

    def point(name: str) -> np.ndarray:
        return np.asarray(m[f"{name}_{side}"], float)

    head, lesser = point("head_centre"), point("lesser_trochanter")
    shaft_axis = point("shaft_axis")
    marks = HipLandmarks(
        head_center=head,
        head_radius=float(m[f"head_radius_{side}"]),
        neck_axis=point("neck_axis"),
        neck_base=point("neck_base"),
        shaft_axis=shaft_axis,
        shaft_radius=_shaft_radius(getattr(bones, f"femur_{side}"), lesser, shaft_axis),
        greater_trochanter=point("greater_trochanter"),
        lesser_trochanter=lesser,
        intertrochanteric_crest=point("intertrochanteric_crest"),
        acetabular_center=point("acetabular_centre"),
        acetabular_axis=point("acetabular_axis"),
        aiis=point("aiis"),
        asis=point("asis"),
        psis=point("psis"),
        pubic_tubercle=point("pubic_tubercle"),
        ischial_tuberosity=point("ischial_tuberosity"),
        ischial_spine=point("ischial_spine"),
        knee_center=point("knee_centre"),
        pelvic_scale=pelvic_scale,
    )
    return marks if side == "right" else marks.mirrored()


def skeleton(spec: AnatomySpec) -> Skeleton:
    """The bones of ``spec``: same bone parameters, same (cached) skeleton."""
    return _skeleton(spec.bone_modes_sd, spec.right_femur_deviation_sd, spec.inter_hip_distance_mm)


@functools.lru_cache(maxsize=8)
def _skeleton(modes: tuple[float, ...], deviation: tuple[float, ...], inter_hip_mm: float) -> Skeleton:
    shared = _weights(modes)
    right = np.clip(shared + _weights(deviation), -BONE_MODE_LIMIT_SD, BONE_MODE_LIMIT_SD) - shared
    bones = hip_bones(shared, right)
    heads = [np.asarray(bones.landmarks[f"head_centre_{s}"], float) for s in SIDES]
    bones = _scaled(bones, inter_hip_mm / float(np.linalg.norm(heads[0] - heads[1])))
    # The three shapes build side by side (each alone in its numbers): much of the work is numpy's
    # and the distance transforms', outside the GIL.
    with ThreadPoolExecutor(max_workers=min(3, os.cpu_count() or 1)) as pool:
        pelvis_job = pool.submit(mesh_shape, _pelvis_mesh(bones.pelvis), MESH_RESOLUTION_MM)
        femur_jobs = {
            side: pool.submit(
                mesh_shape, getattr(bones, f"femur_{side}"), MESH_RESOLUTION_MM, z_min_mm=FEMUR_GRID_BOTTOM_MM
            )
            for side in SIDES
        }
        femurs = {side: job.result() for side, job in femur_jobs.items()}
        pelvis = pelvis_job.result()
    scale = inter_hip_mm / REFERENCE_INTER_HIP_MM
    landmarks = {s: _side_landmarks(bones, s, scale) for s in SIDES}
    return Skeleton(pelvis=pelvis, femurs=femurs, bones=bones, landmarks=landmarks)


def hip_landmarks(spec: AnatomySpec, side: str = "right") -> HipLandmarks:
    """Landmarks of ``side``'s hip in the right-side frame (the left hip mirrored through x = 0)."""
    return skeleton(spec).landmarks[side]
