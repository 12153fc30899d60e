"""Hip bones of one subject from the LLP26 statistical shape model, as triangle meshes in the patient frame.

Samples mode weights, evaluates pelvis and femurs, places them in RAS+ mm and reads off landmarks;
it does not rasterize, measure or decide body size (the caller maps sex and size onto ``scale``).

LLP26: Auckland Bioengineering Institute lower-limb statistical shape model of 26 adults (mean and
26 PCA modes), from the PyPI package musculoskeletal-models (MPL-2.0), read at run time through
``musculoskeletal.models.get_model_path`` and never copied here (DESIGN.md 10).
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from nmosim.phantoms.lagrange_mesh import Triangulation, cached_triangulation, face_components
from nmosim.phantoms.mesh import TriangleMesh

N_MODES = 26
PELVIS_NODES = slice(0, 1946)
FEMUR_NODES = slice(1946, 2580)
_N_MODEL_NODES = 3225
_MODELS = {
    "left": "shape_models/LLP26_rigid.pc",
    "right": "shape_models/LLP26_right_mirrored_from_left_rigid.pc",
}
_MESHES = {
    "pelvis": ("pelvis_combined_cubic_flat", "pelvis_combined_cubic_mean_rigid_LLP26"),
    "left": ("femur_left_quartic_flat", "femur_left_mean_rigid_LLP26"),
    "right": ("femur_right_quartic_flat", "femur_right_mirrored_from_left_mean_rigid_LLP26"),
}
# The right-side model's femur is the left femur mirrored in place, across the atlas plane x = 108.79 mm
# (checked: the mirrored mean matches the left mean node for node to 1e-4 mm, and so do the modes).
_RIGHT_MODEL_MIRROR_X_MM = 108.7893607621652
DEFAULT_LEVEL = 6


@dataclass(frozen=True)
class HipBones:
    """Bones of one subject, mm, patient frame RAS+ (origin midway between the femoral head centres).

    ``pelvis`` is the tuple (right hip bone, left hip bone, sacrum): three closed surfaces.
    ``weights_sd`` holds the mode weights (SD units) of the "left" model (pelvis and left femur)
    and of the "right" model (right femur)."""

    pelvis: tuple[TriangleMesh, TriangleMesh, TriangleMesh]
    femur_right: TriangleMesh
    femur_left: TriangleMesh
    landmarks: dict[str, np.ndarray]
    weights_sd: dict[str, np.ndarray]
    model: dict


def _path(name: str) -> str:
    from musculoskeletal.models import get_model_path

    return str(get_model_path(name))


@functools.lru_cache(maxsize=2)
def load_model(side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean (3225, 3), modes (3225, 3, 26), sd (26,))`` of the left or right LLP26 model, mm.

    The pickle stores x, y and z in blocks of 3225 nodes; ``weights`` are the mode variances."""
    with open(_path(_MODELS[side]), "rb") as f:
        data = pickle.load(f, encoding="latin1")
    mean = np.asarray(data["mean"], float).reshape(3, _N_MODEL_NODES).T.copy()
    modes = np.asarray(data["modes"], float).reshape(3, _N_MODEL_NODES, -1).transpose(1, 0, 2).copy()
    sd = np.sqrt(np.asarray(data["weights"], float))
    return mean, modes, sd


def sample_mode_weights(rng: np.random.Generator, n_modes: int = N_MODES, clip_sd: float = 2.5) -> np.ndarray:
    """Mode weights (26,) in SD units: the first ``n_modes`` standard normal, clipped to +-``clip_sd``,
    the rest zero."""
    if not 0 <= n_modes <= N_MODES:
        raise ValueError(f"n_modes = {n_modes} is outside [0, {N_MODES}]")
    weights = np.zeros(N_MODES)
    weights[:n_modes] = np.clip(rng.standard_normal(n_modes), -clip_sd, clip_sd)
    return weights


def sample_right_deviation(rng: np.random.Generator, sd: float = 0.25, n_modes: int = N_MODES) -> np.ndarray:
    """Deviation (26,) of the right femur's mode weights from the left's, SD units: N(0, ``sd``) in the
    first ``n_modes`` modes, so the two hips differ as a person's do."""
    deviation = np.zeros(N_MODES)
    deviation[:n_modes] = sd * rng.standard_normal(n_modes)
    return deviation


def _weights(weights_sd: np.ndarray, name: str) -> np.ndarray:
    w = np.asarray(weights_sd, float)
    if w.shape != (N_MODES,) or not np.all(np.isfinite(w)):
        raise ValueError(f"{name} must be {N_MODES} finite mode weights, got shape {w.shape}")
    return w.copy()


def nodes(weights_sd: np.ndarray, side: str = "left") -> np.ndarray:
    """All 3225 model nodes (3225, 3), atlas frame, mm, of the ``side`` model at ``weights_sd``."""
    mean, modes, sd = load_model(side)
    w = np.zeros(N_MODES)
    given = np.asarray(weights_sd, float).ravel()
    w[: given.size] = given
    return mean + modes @ (w * sd)


def triangulation(part: str, level: int = DEFAULT_LEVEL) -> Triangulation:
    """Cached triangulation of "pelvis", "left" or "right" (femur)."""
    mesh, geof = _MESHES[part]
    a = "atlas_meshes/"
    return cached_triangulation(
        _path(a + mesh + ".mesh"), _path(a + mesh + ".ens"), _path(a + geof + ".geof"), level
    )


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere ``(centre (3,), radius)`` through points (K, 3)."""
    a = np.column_stack([2 * points, np.ones(len(points))])
    b = (points**2).sum(axis=1)
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    centre = sol[:3]
    return centre, float(np.sqrt(sol[3] + centre @ centre))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _reflection(normal: np.ndarray) -> np.ndarray:
    n = _unit(normal)
    return np.eye(3) - 2 * np.outer(n, n)


# ------------------------------------------------------------------ raw subject (atlas frame)


@dataclass(frozen=True)
class _Raw:
    """Vertices of one subject in the atlas frame before the patient-frame transform."""

    pelvis: np.ndarray
    femur_left: np.ndarray
    femur_right: np.ndarray  # mirrored back and placed in the right acetabulum (a proper rigid motion)


def _atlas_vertices(
    weights_sd: np.ndarray, right_weights_sd: np.ndarray, level: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (atlas frame, mm) of the pelvis, the left femur and the right model's femur, the
    last mirrored back to a left femur in the left position (the right model is the left one
    mirrored in place)."""
    left = nodes(weights_sd, "left")
    right = nodes(right_weights_sd, "right")
    pelvis = triangulation("pelvis", level).vertices(left[PELVIS_NODES])
    femur_left = triangulation("left", level).vertices(left[FEMUR_NODES])
    femur_right = triangulation("right", level).vertices(right[FEMUR_NODES])
    femur_right[:, 0] = 2 * _RIGHT_MODEL_MIRROR_X_MM - femur_right[:, 0]
    return pelvis, femur_left, femur_right


def _raw(weights_sd: np.ndarray, right_weights_sd: np.ndarray, level: int, sets: dict | None) -> _Raw:
    """Evaluate the two models and seat both femoral heads in their cups (atlas frame, mm)."""
    pelvis, femur_left, femur_right = _atlas_vertices(weights_sd, right_weights_sd, level)
    if sets is None:
        sets = _placement_sets(pelvis, femur_left, femur_right, level)
    head_l, radius_l = fit_sphere(femur_left[sets["head_left"]])
    head_u, radius_r = fit_sphere(femur_right[sets["head_right"]])
    acet_l = _seat(pelvis[sets["acetabulum_left"]], radius_l)
    acet_r = _seat(pelvis[sets["acetabulum_right"]], radius_r)
    # Seat the heads: the modes also carry each training subject's hip pose, and a sum of clipped
    # modes moves the head up to ~9 mm off the centre of its cup (1.5 mm at the mean). Each femur is
    # translated (never rotated) so that its head centre is the seat found by _seat.
    femur_left = femur_left + (acet_l - head_l)
    # the right femur: the left-like femur mirrored across the plane bisecting the two acetabular
    # centres, its head centred in the right cup
    # (with the mirroring back above, a proper rotation: the faces stay outward)
    mirror = _reflection(acet_r - acet_l)
    placed = (femur_right - head_u) @ mirror.T + acet_r
    return _Raw(pelvis, femur_left, placed)


def _seat(cup: np.ndarray, radius: float, clearance_mm: float = 0.5) -> np.ndarray:
    """Head centre (3,) for a head of ``radius`` mm in the cup vertices (K, 3): the centre of the
    sphere fitted to the cup, moved the least so that no cup vertex comes closer than ``radius`` +
    ``clearance_mm`` (the left cup of the LLP26 mean bulges ~5 mm into a centred head)."""
    centre, _ = fit_sphere(cup)

    def residuals(shift: np.ndarray) -> np.ndarray:
        gap = np.linalg.norm(cup - centre - shift, axis=1) - radius - clearance_mm
        return np.concatenate([0.05 * shift, np.minimum(gap, 0.0)])

    return centre + least_squares(residuals, np.zeros(3), xtol=1e-10, ftol=1e-10).x


def _shell(points: np.ndarray, subset: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """The ``subset`` indices within [radius - 2, radius + 4] mm of ``centre``."""
    return subset[np.abs(np.linalg.norm(points[subset] - centre, axis=1) - radius - 1.0) < 3.0]


def _near_sphere(points: np.ndarray, centre: np.ndarray, radius: float, band_mm: float) -> np.ndarray:
    return np.flatnonzero(np.abs(np.linalg.norm(points - centre, axis=1) - radius) < band_mm)


def _head_set(femur: np.ndarray) -> np.ndarray:
    """Vertices on the spherical femoral head of a left femur (atlas frame: medial is -x)."""
    top = femur[femur[:, 2] > femur[:, 2].max() - 60]
    start = top[np.argmin(top[:, 0])]
    centre, radius = start + np.array([22.0, 0.0, 0.0]), 22.0
    for band in (8.0, 5.0, 3.0, 2.0, 1.5, 1.5):
        idx = _near_sphere(femur, centre, radius, band)
        idx = idx[np.linalg.norm(femur[idx] - centre, axis=1) < radius + band]
        # the head only: the side of the centre away from the neck (medial-superior hemisphere plus)
        idx = idx[(femur[idx] - centre) @ _unit(np.array([-1.0, 0.0, 0.6])) > -0.35 * radius]
        centre, radius = fit_sphere(femur[idx])
    return idx


def _hip_bone_labels(level: int) -> np.ndarray:
    tri = triangulation("pelvis", level)
    labels = face_components(tri.faces, tri.T.shape[0])
    vertex_label = np.empty(tri.T.shape[0], dtype=np.int64)
    vertex_label[tri.faces.ravel()] = np.repeat(labels, 3)
    return vertex_label


def _pelvis_parts(pelvis: np.ndarray, level: int) -> dict[str, np.ndarray]:
    """Vertex indices of the right hip bone, left hip bone and sacrum (atlas: patient left is +x)."""
    vertex_label = _hip_bone_labels(level)
    groups = [np.flatnonzero(vertex_label == k) for k in np.unique(vertex_label)]
    groups.sort(key=len)  # the sacrum has the most vertices; the hip bones are equal in size
    hips = sorted(groups[:2], key=lambda g: pelvis[g, 0].mean())
    return {"right": hips[0], "left": hips[1], "sacrum": groups[2]}


def _placement_sets(
    pelvis: np.ndarray, femur_left: np.ndarray, femur_right_leftlike: np.ndarray, level: int
) -> dict:
    parts = _pelvis_parts(pelvis, level)
    head_l = _head_set(femur_left)
    head_r = _head_set(femur_right_leftlike)
    centre, radius = fit_sphere(femur_left[head_l])
    mid_x = 0.5 * (pelvis[parts["left"], 0].mean() + pelvis[parts["right"], 0].mean())
    # left cup: hip-bone vertices in a shell around the (articulated) left head; right cup: the same
    # shell around the seat found for the right hip-bone vertices nearest to the mirrored left cup
    acet_l = _shell(pelvis, parts["left"], centre, radius)
    mirrored_cup = pelvis[acet_l] * np.array([-1.0, 1.0, 1.0]) + np.array([2 * mid_x, 0.0, 0.0])
    first = np.unique(parts["right"][cKDTree(pelvis[parts["right"]]).query(mirrored_cup)[1]])
    acet_r = _shell(pelvis, parts["right"], _seat(pelvis[first], radius), radius)
    return {"head_left": head_l, "head_right": head_r, "acetabulum_left": acet_l, "acetabulum_right": acet_r}


# ------------------------------------------------------------------ patient frame and landmarks


def _frame(head_right: np.ndarray, head_left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (rows x, y, z of RAS+ in atlas coordinates) and origin: x from the left to the right
    head centre, z the atlas (scanner) superior axis made perpendicular to x, y = z cross x."""
    x = _unit(head_right - head_left)
    z = _unit(np.array([0.0, 0.0, 1.0]) - x[2] * x)
    return np.stack([x, np.cross(z, x), z]), 0.5 * (head_right + head_left)


def _argmax(
    points: np.ndarray, candidates: np.ndarray, score: np.ndarray, within_mm: float = 0.0
) -> np.ndarray:
    """The candidates whose score is within ``within_mm`` of the highest (at least the best one)."""
    if candidates.size == 0:
        raise RuntimeError("empty landmark region on the LLP26 mean")
    return candidates[score >= score.max() - within_mm]


def _femur_rules(f: np.ndarray, head: np.ndarray, sign: float) -> dict[str, np.ndarray]:
    """Vertex index sets on a mean femur in RAS+ (``sign`` +1 right, -1 left: lateral is sign * x)."""
    centre, radius = fit_sphere(f[head])
    z = f[:, 2]
    length = centre[2] - z.min()
    shaft = np.flatnonzero((z < centre[2] - 0.3 * length) & (z > centre[2] - 0.75 * length))
    shaft_centre = f[shaft].mean(axis=0)
    lateral = sign * (f[:, 0] - shaft_centre[0])
    distal = np.flatnonzero(z < z.min() + 50.0)
    gt = np.flatnonzero((lateral > 10.0) & (z > centre[2] - 50.0))
    band = np.flatnonzero((z > centre[2] - 80.0) & (z < centre[2] - 35.0))
    posteromedial = _unit(np.array([-sign, -1.0, 0.0]))
    rules = {
        "head": head,
        "shaft": shaft,
        # epicondyles: the most medial / lateral distal vertices, averaged over the top 2 mm so the
        # point does not hop between neighbouring vertices
        "medial_epicondyle": _argmax(f, distal, -lateral[distal], 2.0),
        "lateral_epicondyle": _argmax(f, distal, lateral[distal], 2.0),
        "greater_trochanter": _argmax(f, gt, z[gt]),
        "lesser_trochanter": _argmax(f, band, (f[band] - shaft_centre) @ posteromedial),
    }
    # posterior condyles: the most posterior distal vertices on either side of the knee centre
    knee = 0.5 * (f[rules["medial_epicondyle"]].mean(axis=0) + f[rules["lateral_epicondyle"]].mean(axis=0))
    side_of_knee = sign * (f[:, 0] - knee[0])
    for name, half in (("medial", side_of_knee < -10.0), ("lateral", side_of_knee > 10.0)):
        cond = distal[half[distal]]
        rules[f"posterior_condyle_{name}"] = _argmax(f, cond, -f[cond, 1], 1.0)
    gt_p, lt_p = f[rules["greater_trochanter"][0]], f[rules["lesser_trochanter"][0]]
    mid = 0.5 * (gt_p + lt_p)
    lo, hi = sorted((sign * gt_p[0], sign * lt_p[0]))
    crest = np.flatnonzero((np.abs(z - mid[2]) < 8.0) & (sign * f[:, 0] > lo) & (sign * f[:, 0] < hi))
    rules["intertrochanteric_crest"] = _argmax(f, crest, -f[crest, 1])
    return rules


def _hip_rules(p: np.ndarray, hip: np.ndarray, cup: np.ndarray, sign: float) -> dict[str, np.ndarray]:
    """Vertex index sets on a mean hip bone in RAS+ (``sign`` +1 right, -1 left)."""
    a, _ = fit_sphere(p[cup])
    x, y, z = p[hip, 0], p[hip, 1], p[hip, 2]
    medial = -sign * x

    def pick(mask: np.ndarray, score: np.ndarray) -> np.ndarray:
        return _argmax(p, hip[mask], score[mask])

    return {
        "acetabulum": cup,
        "asis": pick(z > a[2] + 45.0, y),
        "aiis": pick((z > a[2] + 10.0) & (z < a[2] + 40.0), y),
        "psis": pick(z > a[2] + 20.0, -y),
        "ischial_tuberosity": pick(np.ones_like(z, bool), -z),
        "ischial_spine": pick((y < a[1] - 15.0) & (z > a[2] - 35.0) & (z < a[2] + 5.0), medial),
        # the anterior-superior corner of the symphyseal face: within 4 mm of the most medial point
        "symphysis_face": pick(
            (y > a[1]) & (z < a[2]) & (medial > medial[(y > a[1]) & (z < a[2])].max() - 4.0), y + z
        ),
        "pubic_tubercle": pick((np.abs(x) > 15.0) & (np.abs(x) < 35.0) & (z < a[2]) & (y > a[1]), y),
    }


@dataclass(frozen=True)
class _Rules:
    sets: dict  # placement sets (atlas-frame vertex indices)
    parts: dict[str, np.ndarray]  # pelvis vertex indices of right, left, sacrum
    femur: dict[str, dict[str, np.ndarray]]
    hip: dict[str, dict[str, np.ndarray]]
    promontory: np.ndarray


@functools.lru_cache(maxsize=4)
def _rules(level: int) -> _Rules:
    """Landmark vertex sets, chosen once by geometry on the mean shape."""
    zero = np.zeros(N_MODES)
    sets = _placement_sets(*_atlas_vertices(zero, zero, level), level)
    raw = _raw(zero, zero, level, sets)
    rot, origin = _frame(
        fit_sphere(raw.femur_right[sets["head_right"]])[0], fit_sphere(raw.femur_left[sets["head_left"]])[0]
    )
    ras = {k: (getattr(raw, k) - origin) @ rot.T for k in ("pelvis", "femur_left", "femur_right")}
    parts = _pelvis_parts(raw.pelvis, level)
    femur = {
        "right": _femur_rules(ras["femur_right"], sets["head_right"], 1.0),
        "left": _femur_rules(ras["femur_left"], sets["head_left"], -1.0),
    }
    hip = {
        "right": _hip_rules(ras["pelvis"], parts["right"], sets["acetabulum_right"], 1.0),
        "left": _hip_rules(ras["pelvis"], parts["left"], sets["acetabulum_left"], -1.0),
    }
    p, sacrum = ras["pelvis"], parts["sacrum"]
    top = sacrum[(np.abs(p[sacrum, 0]) < 10.0) & (p[sacrum, 2] > p[sacrum, 2].max() - 50.0)]
    return _Rules(sets, parts, femur, hip, _argmax(p, top, p[top, 1]))


def section_centroid(
    vertices: np.ndarray, faces: np.ndarray, point: np.ndarray, normal: np.ndarray, max_mm: float
) -> np.ndarray:
    """Centroid (3,) of the cut of a surface by the plane through ``point`` with ``normal``, using
    only cut segments within ``max_mm`` of ``point`` (length-weighted segment midpoints)."""
    s = (vertices - point) @ normal
    sf = s[faces]
    cut = faces[(sf.min(axis=1) < 0) & (sf.max(axis=1) > 0)]
    sc = s[cut]
    mids, lengths = [], []
    for tri, st in zip(cut, sc, strict=True):
        ends = [
            vertices[tri[i]] + st[i] / (st[i] - st[j]) * (vertices[tri[j]] - vertices[tri[i]])
            for i, j in ((0, 1), (1, 2), (2, 0))
            if (st[i] < 0) != (st[j] < 0)
        ]
        mids.append(0.5 * (ends[0] + ends[1]))
        lengths.append(np.linalg.norm(ends[1] - ends[0]))
    mids, lengths = np.array(mids), np.array(lengths)
    keep = np.linalg.norm(mids - point, axis=1) < max_mm
    return (mids[keep] * lengths[keep, None]).sum(axis=0) / lengths[keep].sum()


def _neck_axis(
    f: np.ndarray, faces: np.ndarray, centre: np.ndarray, radius: float, sign: float
) -> np.ndarray:
    """Unit neck axis (base to head): through the head centre and the centroid of the neck's cross
    section 1.2 head radii from it, iterated from a lateral start."""
    towards_base = np.array([sign, 0.0, 0.0])
    for _ in range(10):
        cut = section_centroid(f, faces, centre + 1.2 * radius * towards_base, towards_base, 1.4 * radius)
        towards_base = _unit(cut - centre)
    return -towards_base


def _femur_landmarks(
    f: np.ndarray, faces: np.ndarray, rules: dict[str, np.ndarray], side: str, sign: float
) -> dict[str, np.ndarray]:
    centre, radius = fit_sphere(f[rules["head"]])
    shaft = f[rules["shaft"]]
    axis = np.linalg.svd(shaft - shaft.mean(axis=0))[2][0]
    axis = -axis if axis[2] > 0 else axis  # distal
    neck_axis = _neck_axis(f, faces, centre, radius, sign)
    # neck base: the point of the neck axis closest to the shaft axis line
    shaft_centre = shaft.mean(axis=0)
    w0 = centre - shaft_centre
    b = neck_axis @ axis
    t = (b * (axis @ w0) - neck_axis @ w0) / (1.0 - b * b)
    neck_base = centre + t * neck_axis
    out = {
        "head_centre": centre,
        "head_radius": np.array(radius),
        "shaft_axis": axis,
        "neck_base": neck_base,
        "neck_axis": neck_axis,
    }
    for name in (
        "greater_trochanter",
        "lesser_trochanter",
        "intertrochanteric_crest",
        "medial_epicondyle",
        "lateral_epicondyle",
        "posterior_condyle_medial",
        "posterior_condyle_lateral",
    ):
        out[name] = f[rules[name]].mean(axis=0)
    out["knee_centre"] = 0.5 * (out["medial_epicondyle"] + out["lateral_epicondyle"])
    return {f"{k}_{side}": v for k, v in out.items()}


def _hip_landmarks(p: np.ndarray, rules: dict[str, np.ndarray], side: str) -> dict[str, np.ndarray]:
    cup = p[rules["acetabulum"]]
    centre, _ = fit_sphere(cup)
    out = {"acetabular_centre": centre, "acetabular_axis": _unit(centre - cup.mean(axis=0))}
    for name in ("asis", "aiis", "psis", "ischial_tuberosity", "ischial_spine", "pubic_tubercle"):
        out[name] = p[rules[name]].mean(axis=0)
    return {f"{k}_{side}": v for k, v in out.items()}


def _submesh(vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray) -> TriangleMesh:
    """The faces whose vertices are all in ``keep`` (vertex indices), reindexed."""
    new_index = np.full(len(vertices), -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))
    sub = new_index[faces]
    sub = sub[np.all(sub >= 0, axis=1)]
    return TriangleMesh(np.ascontiguousarray(vertices[keep]), np.ascontiguousarray(sub, dtype=np.int64))


def hip_bones(
    weights_sd: np.ndarray, right_deviation_sd: np.ndarray, scale: float = 1.0, level: int = DEFAULT_LEVEL
) -> HipBones:
    """Pelvis (right hip bone, left hip bone, sacrum) and both femurs of one subject, mm, RAS+.

    ``weights_sd`` (26,) are the left model's mode weights (pelvis and left femur); the right femur
    takes the right-side model at ``weights_sd + right_deviation_sd``, mirrored into the right
    acetabulum so that it sits there as the left femur sits in the left. ``scale`` multiplies all
    coordinates about the origin (body size). ``level`` subdivisions per element edge."""
    if not scale > 0:
        raise ValueError(f"scale = {scale} is outside (0, inf)")
    w = _weights(weights_sd, "weights_sd")
    w_right = w + _weights(right_deviation_sd, "right_deviation_sd")
    rules = _rules(level)
    raw = _raw(w, w_right, level, rules.sets)
    rot, origin = _frame(
        fit_sphere(raw.femur_right[rules.sets["head_right"]])[0],
        fit_sphere(raw.femur_left[rules.sets["head_left"]])[0],
    )

    def to_patient(v: np.ndarray) -> np.ndarray:
        return scale * ((v - origin) @ rot.T)

    pelvis, femur_left, femur_right = (
        to_patient(raw.pelvis),
        to_patient(raw.femur_left),
        to_patient(raw.femur_right),
    )
    faces_right, faces_left = triangulation("right", level).faces, triangulation("left", level).faces
    landmarks: dict[str, np.ndarray] = {}
    landmarks |= _femur_landmarks(femur_right, faces_right, rules.femur["right"], "right", 1.0)
    landmarks |= _femur_landmarks(femur_left, faces_left, rules.femur["left"], "left", -1.0)
    landmarks |= _hip_landmarks(pelvis, rules.hip["right"], "right")
    landmarks |= _hip_landmarks(pelvis, rules.hip["left"], "left")
    landmarks["sacral_promontory"] = pelvis[rules.promontory].mean(axis=0)
    landmarks["pubic_symphysis"] = 0.5 * (
        pelvis[rules.hip["right"]["symphysis_face"]].mean(axis=0)
        + pelvis[rules.hip["left"]["symphysis_face"]].mean(axis=0)
    )
    landmarks = {k: np.asarray(landmarks[k], float) for k in sorted(landmarks)}
    faces = triangulation("pelvis", level).faces
    parts = tuple(_submesh(pelvis, faces, rules.parts[k]) for k in ("right", "left", "sacrum"))
    return HipBones(
        pelvis=parts,
        femur_right=TriangleMesh(np.ascontiguousarray(femur_right), faces_right.copy()),
        femur_left=TriangleMesh(np.ascontiguousarray(femur_left), faces_left.copy()),
        landmarks=landmarks,
        weights_sd={"left": w, "right": w_right},
        model={
            "name": "LLP26",
            "package": "musculoskeletal-models",
            "version": version("musculoskeletal-models"),
            "licence": "MPL-2.0",
            "source": "Auckland Bioengineering Institute",
            "level": level,
            "scale": float(scale),
        },
    )
