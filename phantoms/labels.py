"""Label ids of the ``structures`` and ``tissues`` volumes (the label contract).

Ids are never renumbered; new ones are appended.
"""

from __future__ import annotations

from enum import IntEnum


class Structure(IntEnum):
    """What a voxel belongs to (uint8 ``structures`` volume)."""

    BACKGROUND = 0
    SOFT_TISSUE = 1
    MUSCLE = 2
    PELVIS = 3
    FEMUR_RIGHT = 4
    FEMUR_LEFT = 5
    HO_RIGHT = 6
    HO_LEFT = 7
    VESSEL = 8
    NERVE = 9
    CONFOUNDER = 10


class Tissue(IntEnum):
    """What a voxel is made of (uint8 ``tissues`` volume); drives the physics."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    MUSCLE_ATROPHIC = 3
    MUSCLE_OEDEMATOUS = 4
    CORTICAL_BONE = 5
    TRABECULAR_BONE = 6
    MARROW_YELLOW = 7
    HO_CALCIFYING = 8
    HO_IMMATURE = 9
    HO_CORTEX = 10
    HO_TRABECULAR = 11
    SOFT_TISSUE_OTHER = 12
    CALCIFICATION = 13
    URINE = 14
    BLOOD = 15
    NERVE = 16


STRUCTURE_NAMES: dict[int, str] = {int(s): s.name.lower() for s in Structure}
TISSUE_NAMES: dict[int, str] = {int(t): t.name.lower() for t in Tissue}
N_TISSUES = len(Tissue)
BONE_STRUCTURES = (Structure.PELVIS, Structure.FEMUR_RIGHT, Structure.FEMUR_LEFT)
HO_STRUCTURES = (Structure.HO_RIGHT, Structure.HO_LEFT)
