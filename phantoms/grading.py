"""Brooker grade and spur gap of each hip, measured from a ``structures`` label volume.

It only reads labels: it does not build shapes, simulate images or write files.

The rules are those of DESIGN.md section 4 (after Brooker 1973, DOMAIN.md section 1.1), per side:

- An HO component is a 26-connected component of the side's HO label (``ho_right`` or ``ho_left``).
  It is attached to the pelvis (or to the side's femur) when one of its voxels is 26-adjacent to a
  pelvis (femur) voxel. Components attached to both are bridges, to neither are islands.
- ``P`` = pelvis plus the pelvic spurs (``HO_P``); ``F`` = the side's femur plus the femoral spurs
  (``HO_F``). Grade 0: no HO; I: islands only; IV: at least one bridge; otherwise
  ``gap = min(distance(HO_P, F), distance(HO_F, P))`` gives II (gap >= 10 mm) or III (gap < 10 mm).
  Only spurs count: native pelvis-to-femur distances (the joint space) never enter, and islands
  never shorten the gap.

Gap definition. Each voxel is the closed box of its extent. The distance between two voxel sets is
the shortest Euclidean distance between their boxes (the width of empty space left between the bone
surfaces). For voxels ``a`` and ``b`` with index offsets ``d`` (per axis) and spacing ``s`` (mm)::

    distance(a, b) = sqrt(sum_i (max(|d_i| - 1, 0) * s_i) ** 2)

so voxels that share a face, edge or corner are 0 mm apart, and a spur tip with 12 empty voxels
before the femur on a 1 mm grid is exactly 12 mm away; diagonal and anisotropic offsets combine
per axis (3 empty 0.5 mm columns and 2 empty 2 mm slices give 5 mm). It is computed exactly:
the distance from ``a`` to the boxes of a set ``B`` equals the centre-to-centre distance from ``a``
to the nearest voxel of ``B`` dilated by the 3x3x3 cube, which an exact Euclidean distance
transform (``scipy.ndimage.distance_transform_edt`` with the voxel spacing) gives, evaluated on a
box around the spur that is widened until no voxel outside it could be nearer.

What counts as HO bone. Brooker grades a radiograph: islands, spurs and bridges of *bone*
(DOMAIN.md 1.1). Amorphous calcifying tissue (early calcification, ~100-300 HU, DOMAIN.md 2.6) is
faint floccular mineral, not yet bone; woven (immature), cortical and trabecular HO are bone
(DOMAIN.md 2.4: trabeculated bone from 2-5 weeks; 2.5: the ossified rim). So when a ``tissues``
volume is given, only HO voxels of :data:`COUNTED_HO_TISSUES` are HO for the grade; the rest of the
HO label is treated as soft tissue. Without ``tissues`` (a predicted label map has no tissue classes)
every voxel of the HO label counts: a predicted HO label is a claim of counted bone.

``gap_mm`` is 0.0 for grade IV (the bones touch through HO), None for grades 0 and I (there is no
spur, DESIGN.md section 5: null when undefined), and None for grade II when the opposing bone is
absent from the volume altogether (possible in a predicted segmentation; no finite gap exists).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nmosim.phantoms.errors import SpecError, check_choice
from nmosim.phantoms.labels import TISSUE_NAMES, Structure, Tissue

BROOKER_GAP_MM = 10.0  # DOMAIN.md 1.1: 1 cm between opposing bone surfaces separates II from III
# Float noise of the distance transform; far below any voxel, so exactly 10 mm stays grade II
# (DOMAIN.md 1.2: "treat exactly 10 mm as grade II").
GAP_TOLERANCE_MM = 1e-6
SIDES = ("right", "left")
# HO tissues dense enough to read as bone on a radiograph (DOMAIN.md 1.1, 2.4-2.6); HO_CALCIFYING
# (amorphous early mineral, ~150 HU) is not counted.
COUNTED_HO_TISSUES = (Tissue.HO_IMMATURE, Tissue.HO_CORTEX, Tissue.HO_TRABECULAR)
COUNTED_HO_TISSUE_NAMES = tuple(TISSUE_NAMES[int(t)] for t in COUNTED_HO_TISSUES)
ATTACHMENTS = ("island", "pelvis", "femur", "bridge")

_SIDE_LABELS = {
    "right": (int(Structure.FEMUR_RIGHT), int(Structure.HO_RIGHT)),
    "left": (int(Structure.FEMUR_LEFT), int(Structure.HO_LEFT)),
}
_PELVIS = int(Structure.PELVIS)
_CUBE = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity (DESIGN.md 4)
# First search radius around a spur: just past the 10 mm threshold, so most cases need one pass.
_FIRST_MARGIN_MM = 12.0


@dataclass(frozen=True)
class HOComponent:
    """One 26-connected component of a side's HO label.

    ``label`` numbers the side's components 1..n in raster order (``[z, y, x]``) of their first
    voxel, as ``scipy.ndimage.label`` does on the side's HO mask. ``centroid_mm`` is (x, y, z)
    in mm, ``origin_mm + index * spacing_mm``. ``bbox_zyx`` is (start, stop) voxel indices, stop
    exclusive.
    """

    label: int
    n_voxels: int
    volume_mm3: float
    attachment: str  # one of ATTACHMENTS
    centroid_mm: tuple[float, float, float]
    bbox_zyx: tuple[tuple[int, int, int], tuple[int, int, int]]

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "label": self.label,
            "n_voxels": self.n_voxels,
            "volume_mm3": self.volume_mm3,
            "attachment": self.attachment,
            "centroid_mm": list(self.centroid_mm),
            "bbox_zyx": [list(self.bbox_zyx[0]), list(self.bbox_zyx[1])],
        }


@dataclass(frozen=True)
class SideGrade:
    """Brooker grade of one hip (DESIGN.md 4); see the module docstring for the gap definition."""

    side: str  # "right" | "left"
    grade: int  # Brooker 0..4
    gap_mm: float | None  # 0.0 for IV; None for 0, I (and II without any opposing bone)
    n_islands: int  # HO components attached to neither pelvis nor femur
    n_pelvic_spurs: int  # attached to the pelvis only
    n_femoral_spurs: int  # attached to the femur only
    n_bridges: int  # attached to both
    ho_voxels: int
    ho_volume_mm3: float
    components: tuple[HOComponent, ...]

    def to_dict(self) -> dict:
        """JSON-ready dict (``gap_mm`` None becomes null)."""
        return {
            "side": self.side,
            "grade": self.grade,
            "gap_mm": self.gap_mm,
            "n_islands": self.n_islands,
            "n_pelvic_spurs": self.n_pelvic_spurs,
            "n_femoral_spurs": self.n_femoral_spurs,
            "n_bridges": self.n_bridges,
            "ho_voxels": self.ho_voxels,
            "ho_volume_mm3": self.ho_volume_mm3,
            "components": [c.to_dict() for c in self.components],
        }


def grade_side(
    structures: np.ndarray,
    spacing_mm: Sequence[float],
    side: str,
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    tissues: np.ndarray | None = None,
) -> SideGrade:
    """Brooker grade of one hip from a ``structures`` volume.

    Parameters
    ----------
    structures : integer array ``[z, y, x]`` holding the label contract ids (DESIGN.md 3).
    spacing_mm : voxel size (x, y, z) in mm; anisotropic allowed.
    side : "right" (femur_right, ho_right) or "left" (femur_left, ho_left).
    origin_mm : centre of voxel ``[0, 0, 0]`` (x, y, z) in mm; only moves ``centroid_mm``.
    tissues : optional tissue-id volume of the same shape; when given, only HO voxels whose tissue
        is in :data:`COUNTED_HO_TISSUES` count as HO (the grade and every count and volume).

    Examples
    --------
    >>> s = np.zeros((1, 1, 20), np.uint8)
    >>> s[0, 0, :3] = 3; s[0, 0, 3:5] = 6; s[0, 0, 17:] = 4   # pelvis, spur, femur_right
    >>> g = grade_side(s, (1.0, 1.0, 1.0), "right")
    >>> g.grade, g.gap_mm
    (2, 12.0)
    """
    volume = _check_structures(structures)
    spacing = _check_triple("spacing_mm", spacing_mm, positive=True)
    origin = _check_triple("origin_mm", origin_mm, positive=False)
    check_choice("side", side, SIDES)
    return _grade_side(counted_structures(volume, tissues), spacing, origin, side)


def grade_hips(
    structures: np.ndarray,
    spacing_mm: Sequence[float],
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    tissues: np.ndarray | None = None,
) -> dict[str, SideGrade]:
    """Brooker grade of both hips: ``{"right": SideGrade, "left": SideGrade}``.

    Arguments as in :func:`grade_side`.
    """
    volume = counted_structures(_check_structures(structures), tissues)
    spacing = _check_triple("spacing_mm", spacing_mm, positive=True)
    origin = _check_triple("origin_mm", origin_mm, positive=False)
    return {side: _grade_side(volume, spacing, origin, side) for side in SIDES}


def counted_structures(structures: np.ndarray, tissues: np.ndarray | None) -> np.ndarray:
    """``structures`` with HO voxels whose tissue is not counted as bone set to 0 (soft tissue).

    Returns ``structures`` itself when ``tissues`` is None (every HO voxel counts).
    """
    if tissues is None:
        return structures
    tissues = np.asarray(tissues)
    if tissues.shape != structures.shape:
        raise SpecError(f"tissues shape = {tissues.shape} must equal the structures shape {structures.shape}")
    ho = (structures == Structure.HO_RIGHT) | (structures == Structure.HO_LEFT)
    dropped = ho & ~np.isin(tissues, [int(t) for t in COUNTED_HO_TISSUES])
    if not dropped.any():
        return structures
    out = structures.copy()
    out[dropped] = 0
    return out


# --- validation -------------------------------------------------------------------------------


def _check_structures(structures: object) -> np.ndarray:
    if not isinstance(structures, np.ndarray):
        raise SpecError(f"structures = {type(structures).__name__} must be a numpy integer array [z, y, x]")
    if structures.ndim != 3 or not np.issubdtype(structures.dtype, np.integer):
        raise SpecError(
            f"structures = array of shape {structures.shape} and dtype {structures.dtype} "
            "must be a 3D integer array [z, y, x]"
        )
    return structures


def _check_triple(name: str, value: object, positive: bool) -> tuple[float, float, float]:
    need = "three finite numbers (x, y, z)"
    if positive:
        need = "three positive numbers (x, y, z) in mm"
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise SpecError(f"{name} = {value!r} must be {need}") from None
    ok = len(numbers) == 3 and all(math.isfinite(v) for v in numbers)
    if not ok or (positive and not all(v > 0 for v in numbers)):
        raise SpecError(f"{name} = {value!r} must be {need}")
    return numbers  # type: ignore[return-value]


# --- boxes and the side's HO components ---------------------------------------------------------


def _bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(start, stop) indices of the True voxels of ``mask``, stop exclusive; None if empty."""
    lo, hi = [], []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        lo.append(hit[0])
        hi.append(hit[-1] + 1)
    return np.array(lo), np.array(hi)


def _slices(lo: np.ndarray, hi: np.ndarray) -> tuple[slice, ...]:
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


class _Components:
    """The side's HO components, labelled on a box one voxel larger than the HO (origin ``lo``)."""

    def __init__(self, labels: np.ndarray, lo: np.ndarray) -> None:
        self.labels = labels
        self.lo = lo

    def mask(self, ids: list[int], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Voxels of components ``ids`` inside the global box ``[lo, hi)``."""
        out = np.zeros(tuple(hi - lo), dtype=bool)
        a = np.maximum(lo, self.lo)
        b = np.minimum(hi, self.lo + np.array(self.labels.shape))
        if ids and np.all(b > a):
            inside = self.labels[_slices(a - self.lo, b - self.lo)]
            out[_slices(a - lo, b - lo)] = np.isin(inside, ids)
        return out

    def bbox(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        whole = self.lo + np.array(self.labels.shape)
        lo, hi = _bbox(self.mask(ids, self.lo, whole))  # type: ignore[misc]
        return lo + self.lo, hi + self.lo


# --- grading -----------------------------------------------------------------------------------


def _grade_side(
    structures: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    origin_xyz: tuple[float, float, float],
    side: str,
) -> SideGrade:
    femur_label, ho_label = _SIDE_LABELS[side]
    box = _bbox(structures == ho_label)
    if box is None:  # grade 0: no HO on this side
        return SideGrade(side, 0, None, 0, 0, 0, 0, 0, 0.0, ())

    shape = np.array(structures.shape)
    # One voxel around the HO holds every pelvis/femur voxel that can touch it.
    lo = np.maximum(box[0] - 1, 0)
    hi = np.minimum(box[1] + 1, shape)
    sub = structures[_slices(lo, hi)]
    ho = sub == ho_label
    labels, n = ndimage.label(ho, structure=_CUBE)
    comps = _Components(labels, lo)
    ids = list(range(1, n + 1))
    on_pelvis = _touching(labels, sub == _PELVIS)
    on_femur = _touching(labels, sub == femur_label)
    attachment = {
        i: ATTACHMENTS[(i in on_pelvis) + 2 * (i in on_femur)]  # island, pelvis, femur, bridge
        for i in ids
    }
    pelvic = [i for i in ids if attachment[i] == "pelvis"]
    femoral = [i for i in ids if attachment[i] == "femur"]
    n_bridges = sum(attachment[i] == "bridge" for i in ids)

    if n_bridges:  # P and F connected through HO
        grade, gap_mm = 4, 0.0
    elif not pelvic and not femoral:  # islands only
        grade, gap_mm = 1, None
    else:
        spacing_zyx = np.array(spacing_xyz[::-1])
        gap = min(
            _gap_mm(structures, spacing_zyx, comps, pelvic, femur_label, femoral),
            _gap_mm(structures, spacing_zyx, comps, femoral, _PELVIS, pelvic),
        )
        grade = 2 if gap >= BROOKER_GAP_MM - GAP_TOLERANCE_MM else 3
        gap_mm = None if math.isinf(gap) else gap

    voxel_mm3 = float(np.prod(spacing_xyz))
    components = _describe(labels, ho, n, lo, attachment, spacing_xyz, origin_xyz, voxel_mm3)
    ho_voxels = sum(c.n_voxels for c in components)
    return SideGrade(
        side=side,
        grade=grade,
        gap_mm=gap_mm,
        n_islands=sum(attachment[i] == "island" for i in ids),
        n_pelvic_spurs=len(pelvic),
        n_femoral_spurs=len(femoral),
        n_bridges=n_bridges,
        ho_voxels=ho_voxels,
        ho_volume_mm3=ho_voxels * voxel_mm3,
        components=components,
    )


def _touching(labels: np.ndarray, bone: np.ndarray) -> set[int]:
    """Ids of the components in ``labels`` with a voxel 26-adjacent to a ``bone`` voxel."""
    near_bone = ndimage.binary_dilation(bone, _CUBE)
    return set(np.unique(labels[near_bone & (labels > 0)]).tolist())


def _describe(
    labels: np.ndarray,
    ho: np.ndarray,
    n: int,
    lo: np.ndarray,
    attachment: dict[int, str],
    spacing_xyz: tuple[float, float, float],
    origin_xyz: tuple[float, float, float],
    voxel_mm3: float,
) -> tuple[HOComponent, ...]:
    ids = range(1, n + 1)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    centroids = ndimage.center_of_mass(ho, labels, ids)
    objects = ndimage.find_objects(labels)
    out = []
    for i, centre, obj in zip(ids, centroids, objects, strict=True):
        index_xyz = (np.asarray(centre) + lo)[::-1]
        centroid = np.asarray(origin_xyz) + index_xyz * np.asarray(spacing_xyz)
        start = tuple(int(s.start + o) for s, o in zip(obj, lo, strict=True))
        stop = tuple(int(s.stop + o) for s, o in zip(obj, lo, strict=True))
        out.append(
            HOComponent(
                label=i,
                n_voxels=int(counts[i]),
                volume_mm3=int(counts[i]) * voxel_mm3,
                attachment=attachment[i],
                centroid_mm=tuple(float(c) for c in centroid),
                bbox_zyx=(start, stop),
            )
        )
    return tuple(out)


# --- the gap -----------------------------------------------------------------------------------


def _gap_mm(
    structures: np.ndarray,
    spacing_zyx: np.ndarray,
    comps: _Components,
    spur_ids: list[int],
    bone_label: int,
    opposing_ids: list[int],
) -> float:
    """Exact gap (mm, module docstring) from the spurs ``spur_ids`` to the opposing bone.

    The opposing bone is ``bone_label`` plus the HO components ``opposing_ids``. Returns inf when
    there are no spurs or no opposing bone anywhere in the volume.
    """
    if not spur_ids:
        return math.inf
    shape = np.array(structures.shape)
    spur_lo, spur_hi = comps.bbox(spur_ids)
    margin_mm = _FIRST_MARGIN_MM
    while True:
        pad = np.ceil(margin_mm / spacing_zyx).astype(int)
        lo = np.maximum(spur_lo - pad, 0)
        hi = np.minimum(spur_hi + pad, shape)
        found = _nearest_in_box(structures, spacing_zyx, comps, spur_ids, bone_label, opposing_ids, lo, hi)
        # Every voxel outside [lo, hi) lies at least `sure` mm (centre to centre) from every spur.
        sure = math.inf
        for axis in range(3):
            if lo[axis] > 0:
                sure = min(sure, (spur_lo[axis] - lo[axis] + 1) * spacing_zyx[axis])
            if hi[axis] < shape[axis]:
                sure = min(sure, (hi[axis] - spur_hi[axis] + 1) * spacing_zyx[axis])
        if found <= sure:
            return found
        # A box padded by the distance found is sure to contain the nearest voxel.
        margin_mm = 2.0 * margin_mm if math.isinf(found) else found


def _nearest_in_box(
    structures: np.ndarray,
    spacing_zyx: np.ndarray,
    comps: _Components,
    spur_ids: list[int],
    bone_label: int,
    opposing_ids: list[int],
    lo: np.ndarray,
    hi: np.ndarray,
) -> float:
    """Gap from the spurs to the opposing-bone voxels in the box ``[lo, hi)``; inf if none."""
    ext_lo = np.maximum(lo - 1, 0)
    ext_hi = np.minimum(hi + 1, np.array(structures.shape))
    opposing = structures[_slices(ext_lo, ext_hi)] == bone_label
    opposing |= comps.mask(opposing_ids, ext_lo, ext_hi)
    if not opposing.any():
        return math.inf
    # Box distance to a voxel set = centre distance to the set grown by the 3x3x3 cube.
    grown = ndimage.binary_dilation(opposing, _CUBE)[_slices(lo - ext_lo, hi - ext_lo)]
    distance = ndimage.distance_transform_edt(~grown, sampling=spacing_zyx)
    return float(distance[comps.mask(spur_ids, lo, hi)].min())
