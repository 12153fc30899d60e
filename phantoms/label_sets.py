"""The label sets that datasets are written in, and their mapping to and from the structures ids.

One table for writing training labels and for reading predictions back; it reads and writes no files.

- ``all``: the structures ids of DESIGN.md 3, unchanged.
- ``bones_ho``: 1 pelvis, 2 femur_right, 3 femur_left, 4 ho_right, 5 ho_left.
- ``ho``: 1 = heterotopic bone of either hip; the side of a voxel is the sign of its x (RAS+).
"""

from __future__ import annotations

import numpy as np

from nmosim.phantoms.errors import check_choice
from nmosim.phantoms.labels import BONE_STRUCTURES, HO_STRUCTURES, STRUCTURE_NAMES, Structure

# Structures of each consecutive label 1, 2, ... (label 0 is the background).
LABEL_SET_STRUCTURES: dict[str, tuple[tuple[Structure, ...], ...]] = {
    "bones_ho": tuple((s,) for s in (*BONE_STRUCTURES, *HO_STRUCTURES)),
    "ho": (HO_STRUCTURES,),
}
LABEL_SET_NAMES: dict[str, tuple[str, ...]] = {
    "bones_ho": ("background", *(STRUCTURE_NAMES[int(s)] for s in (*BONE_STRUCTURES, *HO_STRUCTURES))),
    "ho": ("background", "ho"),
}
LABEL_SETS = ("ho", "bones_ho", "all")
# The label sets a prediction may come in, by the names evaluation uses ("structures" = "all").
PREDICTION_LABEL_SETS = {"structures": "all", "bones_ho": "bones_ho", "ho": "ho"}


def to_label_set(structures: np.ndarray, label_set: str) -> tuple[np.ndarray, dict[str, int]]:
    """Structures ids mapped to the consecutive labels of ``label_set`` (uint8) and the label names.

    >>> to_label_set(np.array([0, 3, 6, 7], np.uint8), "bones_ho")[0]
    array([0, 1, 4, 5], dtype=uint8)
    """
    check_choice("label_set", label_set, LABEL_SETS)
    if label_set == "all":
        return structures.astype(np.uint8), {name: i for i, name in STRUCTURE_NAMES.items()}
    lut = np.zeros(256, np.uint8)
    for value, group in enumerate(LABEL_SET_STRUCTURES[label_set], start=1):
        lut[[int(s) for s in group]] = value
    names = LABEL_SET_NAMES[label_set]
    return lut[structures.astype(np.uint8)], {n: i for i, n in enumerate(names)}


def from_label_set(labels: np.ndarray, label_set: str, x_mm: np.ndarray) -> np.ndarray:
    """Labels of ``label_set`` back to structures ids (int64), the inverse of :func:`to_label_set`.

    ``x_mm`` (broadcastable to ``labels``) is each voxel's x in the patient frame: in the ``ho`` set
    it gives the side, x > 0 being the patient's right. Values outside the set map to 0.

    >>> from_label_set(np.array([0, 1, 1]), "ho", np.array([0.0, 5.0, -5.0]))
    array([0, 6, 7])
    """
    check_choice("label_set", label_set, LABEL_SETS)
    if label_set == "all":
        return labels.astype(np.int64)
    out = np.zeros(labels.shape, np.int64)
    if label_set == "ho":
        right = np.broadcast_to(np.asarray(x_mm) > 0, labels.shape)
        out[(labels == 1) & right] = int(Structure.HO_RIGHT)
        out[(labels == 1) & ~right] = int(Structure.HO_LEFT)
        return out
    for value, (structure,) in enumerate(LABEL_SET_STRUCTURES[label_set], start=1):
        out[labels == value] = int(structure)
    return out
