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
    "subcutaneous_fat_mm": (4.0, 60.0),  # DOMAIN.md 3: anterior thigh 8-25 (also abdomen, flanks)
    "trochanteric_fat_mm": (6.0, 75.0),  # DOMAIN.md 3: over the greater trochanter 15-50
    "gluteal_fat_mm": (8.0, 90.0),  # DOMAIN.md 3: gluteal 20-60
    "inter_hip_distance_mm": (150.0, 200.0),  # DOMAIN.md 3: 160-190; sets the size of the bones
    "shaft_cortical_thickness_mm": (3.0, 10.0),  # DOMAIN.md 3: 5-8 mid-diaphysis
    "joint_space_mm": (1.0, 6.0),  # DOMAIN.md 3: 3.5-5 superior; < 2-2.5 narrowed
    "bone_density_scale": (0.4, 1.0),  # trabecular density vs healthy; DOMAIN.md 2.10: 0.5-0.8 in SCI
    "muscle_bulk": (0.4, 1.3),  # muscle cross-section; DOMAIN.md 2.8: -0 to -60 % after SCI
}

N_BONE_MODES = 26  # principal modes of the LLP26 shape model (26 subjects)
BONE_MODE_LIMIT_SD = 2.5  # mode weights are drawn and accepted within +-2.5 standard deviations
RIGHT_DEVIATION_SD = 0.25  # spread of the right femur's own modes about the shared ones (SD units)


def _mode_weights(name: str, values: object) -> tuple[float, ...]:
    """``values`` as a tuple of at most :data:`N_BONE_MODES` weights within the mode limit."""
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise SpecError(
            f"{name} = {values!r} is not a list of numbers; allowed: up to {N_BONE_MODES} mode "
            f"weights in [-{BONE_MODE_LIMIT_SD:g}, {BONE_MODE_LIMIT_SD:g}] standard deviations"
        )
    weights = tuple(values)
    if len(weights) > N_BONE_MODES:
        raise SpecError(f"{name} has {len(weights)} weights; allowed: at most {N_BONE_MODES}")
    return tuple(
        round(check_range(f"{name}[{i}]", w, -BONE_MODE_LIMIT_SD, BONE_MODE_LIMIT_SD), 6)
        for i, w in enumerate(weights)
    )


@dataclass(frozen=True)
class AnatomySpec:
    """Parameters of one adult hip; lengths in mm, scales dimensionless.

    The bones come from the LLP26 statistical shape model (see :mod:`nmosim.phantoms.llp26`):
    ``bone_modes_sd`` weights its principal modes (standard deviations; missing modes are 0), the
    pelvis and left femur share them and the right femur adds ``right_femur_deviation_sd``, so the
    hips differ as real ones do. ``inter_hip_distance_mm`` sets the size: the bones are scaled so
    the femoral head centres lie exactly that far apart. Head size, neck-shaft angle and version
    follow from the shape and are measured, not set (truth.json records them).
    ``bone_texture_seed`` seeds the texture of cancellous bone (:mod:`nmosim.phantoms.texture`).
    Subcutaneous fat (mm, under 2 mm of skin) is ``subcutaneous_fat_mm`` over the anterior thigh,
    abdomen and flanks, ``trochanteric_fat_mm`` lateral to the greater trochanters and
    ``gluteal_fat_mm`` over the buttocks (:mod:`nmosim.phantoms.envelope` blends them).

    The patient frame is RAS+ (mm) with the origin midway between the femoral head centres.
    Values are checked against :data:`RANGES` on construction.
    """

    sex: str = "male"
    body_scale: float = 1.0
    subcutaneous_fat_mm: float = 20.0
    trochanteric_fat_mm: float = 26.0
    gluteal_fat_mm: float = 32.0
    inter_hip_distance_mm: float = 175.0
    shaft_cortical_thickness_mm: float = 6.5
    joint_space_mm: float = 4.0
    bone_density_scale: float = 1.0
    muscle_bulk: float = 1.0
    bone_modes_sd: tuple[float, ...] = ()
    right_femur_deviation_sd: tuple[float, ...] = ()
    bone_texture_seed: int = 0

    def __post_init__(self) -> None:
        check_choice("sex", self.sex, SEXES)
        for name, (lo, hi) in RANGES.items():
            object.__setattr__(self, name, check_range(name, getattr(self, name), lo, hi))
        for name in ("bone_modes_sd", "right_femur_deviation_sd"):
            object.__setattr__(self, name, _mode_weights(name, getattr(self, name)))
        seed = check_range("bone_texture_seed", self.bone_texture_seed, 0, 2**32 - 1)
        if seed != int(seed):
            raise SpecError(f"bone_texture_seed = {self.bone_texture_seed!r} is not a whole number")
        object.__setattr__(self, "bone_texture_seed", int(seed))

    def to_dict(self) -> dict:
        values = asdict(self)
        for name in ("bone_modes_sd", "right_femur_deviation_sd"):
            values[name] = list(values[name])
        return values

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
        "inter_hip_distance_mm": (180.0, 8.0),
        "shaft_cortical_thickness_mm": (6.8, 0.7),
        "body_scale": (1.02, 0.07),
        "subcutaneous_fat_mm": (18.0, 7.0),
    },
    "female": {
        "inter_hip_distance_mm": (168.0, 7.0),
        "shaft_cortical_thickness_mm": (5.8, 0.7),  # thinner in women (DOMAIN.md 3)
        "body_scale": (0.96, 0.07),
        "subcutaneous_fat_mm": (26.0, 9.0),
    },
}
# Fat over the lateral hips and buttocks: (mean, sd) per sex, drawn correlated with
# subcutaneous_fat_mm (one adiposity, BMI-like, sets all three). Women carry more fat over the
# buttocks and lateral hips (gynoid distribution [K]); values within DOMAIN.md 3 (trochanter
# 15-50 mm, gluteal 20-60 mm).
_SITE_FAT_PRIORS: dict[str, dict[str, tuple[float, float]]] = {
    "male": {"trochanteric_fat_mm": (24.0, 8.0), "gluteal_fat_mm": (30.0, 10.0)},
    "female": {"trochanteric_fat_mm": (36.0, 10.0), "gluteal_fat_mm": (42.0, 12.0)},
}
SITE_FAT_CORRELATION = 0.8  # correlation of each site's fat with subcutaneous_fat_mm [K]
_SITE_FAT_STREAM = 0x5F4A  # the site fats draw from their own stream, keyed on the texture seed

_COMMON_PRIORS: dict[str, tuple[float, float]] = {
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
    >>> 150 <= spec.inter_hip_distance_mm <= 200 and len(spec.bone_modes_sd) == 26
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
    # The shape model's modes: shared by both hips, plus the right femur's own small deviation.
    modes = np.clip(rng.normal(0.0, 1.0, N_BONE_MODES), -BONE_MODE_LIMIT_SD, BONE_MODE_LIMIT_SD)
    deviation = np.clip(rng.normal(0.0, RIGHT_DEVIATION_SD, N_BONE_MODES), -1.0, 1.0)
    values["bone_modes_sd"] = tuple(round(float(w), 4) for w in modes)
    values["right_femur_deviation_sd"] = tuple(round(float(w), 4) for w in deviation)
    values["bone_texture_seed"] = int(rng.integers(2**32))
    fat = overrides.get("subcutaneous_fat_mm", values["subcutaneous_fat_mm"])
    values.update(_site_fats(str(sex), float(fat), values["bone_texture_seed"]))
    values.update(overrides)
    return AnatomySpec(**values)


def _site_fats(sex: str, subcutaneous_fat_mm: float, key: int) -> dict[str, float]:
    """Fat over the trochanters and buttocks (mm), correlated with ``subcutaneous_fat_mm``.

    Drawn from a stream of their own (keyed on ``key``), so the caller's generator and every
    other parameter are those drawn before these fields existed.
    """
    rng = np.random.default_rng((key, _SITE_FAT_STREAM))
    mean, sd = _PRIORS[sex]["subcutaneous_fat_mm"]
    adiposity = (subcutaneous_fat_mm - mean) / sd
    rho = SITE_FAT_CORRELATION
    out = {}
    for name in sorted(_SITE_FAT_PRIORS[sex]):
        mu, sigma = _SITE_FAT_PRIORS[sex][name]
        z = rho * adiposity + np.sqrt(1.0 - rho**2) * rng.normal()
        lo, hi = RANGES[name]
        out[name] = round(float(np.clip(mu + sigma * z, lo, hi)), 3)
    return out
