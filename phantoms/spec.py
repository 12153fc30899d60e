"""Validated anatomy parameters with units, their allowed ranges and population priors.

Only parameters and sampling live here; building shapes from them is anatomy.py's job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from nmosim.phantoms.errors import SpecError, check_choice, check_range

SEXES = ("male", "female")

# Allowed ranges: a little wider than the adult values of DOMAIN.md section 3, so that priors
# have tails but no anatomy is impossible. Units are in the names.
RANGES: dict[str, tuple[float, float]] = {
    "body_scale": (0.8, 1.25),  # soft-tissue envelope relative to a median adult
    "subcutaneous_fat_mm": (4.0, 60.0),  # DOMAIN.md 3: thigh 8-25, trochanter 15-50, gluteal 20-60
    "femoral_head_diameter_mm": (38.0, 58.0),  # DOMAIN.md 3: M 48-52, F 42-46
    "neck_length_mm": (25.0, 45.0),  # DOMAIN.md 3: 30-40
    "neck_shaft_angle_deg": (110.0, 145.0),  # DOMAIN.md 3: 122-133, Hartel IQR 118-126
    "femoral_anteversion_deg": (-15.0, 40.0),  # DOMAIN.md 3: 10-15, range -24..+49
    "acetabular_inclination_deg": (25.0, 55.0),  # DOMAIN.md 3: 35-45 radiographic
    "acetabular_anteversion_deg": (5.0, 35.0),  # DOMAIN.md 3: 15-20 on CT
    "inter_hip_distance_mm": (150.0, 200.0),  # DOMAIN.md 3: 160-190
    "shaft_outer_diameter_mm": (22.0, 36.0),  # DOMAIN.md 3: 25-32
    "shaft_cortical_thickness_mm": (3.0, 10.0),  # DOMAIN.md 3: 5-8 mid-diaphysis
    "joint_space_mm": (1.0, 6.0),  # DOMAIN.md 3: 3.5-5 superior; < 2-2.5 narrowed
    "bone_density_scale": (0.4, 1.0),  # trabecular density vs healthy; DOMAIN.md 2.10: 0.5-0.8 in SCI
    "muscle_bulk": (0.4, 1.3),  # muscle cross-section; DOMAIN.md 2.8: -0 to -60 % after SCI
}


@dataclass(frozen=True)
class AnatomySpec:
    """Parameters of one adult hip; lengths in mm, angles in degrees, scales dimensionless.

    The patient frame is RAS+ (mm) with the origin midway between the femoral head centres.
    Values are checked against :data:`RANGES` on construction.
    """

    sex: str = "male"
    body_scale: float = 1.0
    subcutaneous_fat_mm: float = 20.0
    femoral_head_diameter_mm: float = 50.0
    neck_length_mm: float = 35.0
    neck_shaft_angle_deg: float = 128.0
    femoral_anteversion_deg: float = 12.0
    acetabular_inclination_deg: float = 40.0
    acetabular_anteversion_deg: float = 18.0
    inter_hip_distance_mm: float = 175.0
    shaft_outer_diameter_mm: float = 29.0
    shaft_cortical_thickness_mm: float = 6.5
    joint_space_mm: float = 4.0
    bone_density_scale: float = 1.0
    muscle_bulk: float = 1.0

    def __post_init__(self) -> None:
        check_choice("sex", self.sex, SEXES)
        for name, (lo, hi) in RANGES.items():
            object.__setattr__(self, name, check_range(name, getattr(self, name), lo, hi))
        canal = self.shaft_outer_diameter_mm - 2 * self.shaft_cortical_thickness_mm
        if canal < 6.0:
            raise SpecError(
                f"shaft_cortical_thickness_mm = {self.shaft_cortical_thickness_mm:g} leaves a "
                f"marrow canal of {canal:g} mm in a {self.shaft_outer_diameter_mm:g} mm shaft; "
                "allowed: canal of at least 6 mm"
            )

    @property
    def head_radius_mm(self) -> float:
        return self.femoral_head_diameter_mm / 2.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AnatomySpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpecError(f"anatomy parameter {unknown[0]!r} is unknown; allowed: {sorted(known)}")
        return cls(**values)


# Priors: (mean, sd) per sex, truncated to RANGES. Sources in DOMAIN.md section 3.
_PRIORS: dict[str, dict[str, tuple[float, float]]] = {
    "male": {
        "femoral_head_diameter_mm": (50.0, 1.8),
        "neck_length_mm": (36.0, 3.0),
        "neck_shaft_angle_deg": (128.0, 5.0),  # Toogood 129.2, Jiang 133.0, Hartel 122.2
        "femoral_anteversion_deg": (12.1, 7.0),  # Hartel: M 12.1
        "acetabular_anteversion_deg": (17.5, 4.0),  # Jiang 18.8, higher in women
        "inter_hip_distance_mm": (180.0, 8.0),
        "shaft_outer_diameter_mm": (30.0, 1.8),
        "shaft_cortical_thickness_mm": (6.8, 0.7),
        "body_scale": (1.02, 0.07),
        "subcutaneous_fat_mm": (18.0, 7.0),
    },
    "female": {
        "femoral_head_diameter_mm": (44.0, 1.6),
        "neck_length_mm": (32.0, 3.0),
        "neck_shaft_angle_deg": (127.0, 5.0),
        "femoral_anteversion_deg": (16.4, 7.0),  # Hartel: F 16.4
        "acetabular_anteversion_deg": (20.0, 4.0),
        "inter_hip_distance_mm": (168.0, 7.0),
        "shaft_outer_diameter_mm": (27.0, 1.6),
        "shaft_cortical_thickness_mm": (5.8, 0.7),  # thinner in women (DOMAIN.md 3)
        "body_scale": (0.96, 0.07),
        "subcutaneous_fat_mm": (26.0, 9.0),
    },
}
_COMMON_PRIORS: dict[str, tuple[float, float]] = {
    "acetabular_inclination_deg": (40.0, 3.5),
    "joint_space_mm": (4.2, 0.4),
    "bone_density_scale": (0.95, 0.03),
    "muscle_bulk": (1.0, 0.08),
}


def sample_anatomy(rng: np.random.Generator, **overrides: object) -> AnatomySpec:
    """Draw an adult hip from the population priors; ``overrides`` fix chosen parameters.

    ``sex`` is drawn 50/50 unless given; other priors depend on it.

    Examples
    --------
    >>> spec = sample_anatomy(np.random.default_rng(0), sex="female")
    >>> 38 <= spec.femoral_head_diameter_mm <= 58
    True
    """
    known = {f.name for f in fields(AnatomySpec)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SpecError(f"anatomy parameter {unknown[0]!r} is unknown; allowed: {sorted(known)}")
    sex = overrides.get("sex") or SEXES[int(rng.integers(2))]
    check_choice("sex", sex, SEXES)
    values: dict[str, object] = {"sex": sex}
    priors = {**_COMMON_PRIORS, **_PRIORS[str(sex)]}
    for name in sorted(priors):  # fixed order: same seed, same anatomy
        mean, sd = priors[name]
        lo, hi = RANGES[name]
        draw = float(np.clip(rng.normal(mean, sd), lo, hi))
        values[name] = round(draw, 3)
    # Keep a marrow canal of at least 8 mm whatever the draws.
    outer = float(values["shaft_outer_diameter_mm"])
    values["shaft_cortical_thickness_mm"] = min(
        float(values["shaft_cortical_thickness_mm"]), round((outer - 8.0) / 2.0, 3)
    )
    values.update(overrides)
    return AnatomySpec(**values)
