"""Anatomy parameters: validation, priors and reproducible sampling."""

import dataclasses

import numpy as np
import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.spec import BONE_MODE_LIMIT_SD, N_BONE_MODES, RANGES, AnatomySpec, sample_anatomy


def test_out_of_range_value_names_parameter_value_and_range():
    with pytest.raises(SpecError, match=r"inter_hip_distance_mm = 230 is outside \[150, 200\]"):
        AnatomySpec(inter_hip_distance_mm=230)


def test_unknown_parameter_and_bad_sex_are_rejected():
    with pytest.raises(SpecError, match="'leg_length_mm' is unknown"):
        sample_anatomy(np.random.default_rng(0), leg_length_mm=900)
    with pytest.raises(SpecError, match="sex"):
        AnatomySpec(sex="other")
    with pytest.raises(SpecError, match="not a number"):
        AnatomySpec(joint_space_mm="wide")


def test_mode_weights_are_checked_one_by_one():
    with pytest.raises(SpecError, match=r"bone_modes_sd\[1\] = 3.0 is outside \[-2.5, 2.5\]"):
        AnatomySpec(bone_modes_sd=(0.0, 3.0))
    with pytest.raises(SpecError, match="at most 26"):
        AnatomySpec(bone_modes_sd=(0.0,) * 27)
    with pytest.raises(SpecError, match="not a list of numbers"):
        AnatomySpec(right_femur_deviation_sd="big")
    assert AnatomySpec(bone_modes_sd=[1, -1]).bone_modes_sd == (1.0, -1.0)  # lists from JSON/TOML


def test_same_seed_same_anatomy_and_different_seeds_differ():
    a = sample_anatomy(np.random.default_rng(42))
    b = sample_anatomy(np.random.default_rng(42))
    c = sample_anatomy(np.random.default_rng(43))
    assert a == b
    assert a != c
    assert hash(a) == hash(b)  # cached skeletons are keyed on the spec's bone parameters


def test_samples_stay_in_range_and_follow_sex_dependent_priors():
    rng = np.random.default_rng(0)
    males = [sample_anatomy(rng, sex="male") for _ in range(200)]
    females = [sample_anatomy(rng, sex="female") for _ in range(200)]
    for spec in males + females:
        for name, (lo, hi) in RANGES.items():
            assert lo <= getattr(spec, name) <= hi
        assert len(spec.bone_modes_sd) == N_BONE_MODES
        assert max(abs(w) for w in spec.bone_modes_sd) <= BONE_MODE_LIMIT_SD
    hip_m = np.mean([s.inter_hip_distance_mm for s in males])
    hip_f = np.mean([s.inter_hip_distance_mm for s in females])
    assert 160 <= hip_f < hip_m <= 190  # DOMAIN.md 3, larger in men
    modes = np.array([s.bone_modes_sd for s in males + females])
    assert np.all(np.abs(modes.mean(axis=0)) < 0.2)  # standard normal modes
    assert np.all(np.abs(modes.std(axis=0) - 1.0) < 0.15)
    deviation = np.array([s.right_femur_deviation_sd for s in males])
    assert 0.15 < deviation.std() < 0.35  # the right femur's own small deviation


def test_overrides_win_and_round_trip_through_a_dict():
    spec = sample_anatomy(np.random.default_rng(1), inter_hip_distance_mm=171.0, sex="female")
    assert spec.inter_hip_distance_mm == 171.0 and spec.sex == "female"
    assert AnatomySpec.from_dict(spec.to_dict()) == spec
    assert {f.name for f in dataclasses.fields(AnatomySpec)} == set(spec.to_dict())


def test_fat_by_site_is_validated_and_women_carry_more_over_hips_and_buttocks():
    with pytest.raises(SpecError, match=r"gluteal_fat_mm = 200 is outside"):
        AnatomySpec(gluteal_fat_mm=200)
    with pytest.raises(SpecError, match=r"trochanteric_fat_mm = 1 is outside"):
        AnatomySpec(trochanteric_fat_mm=1)
    rng = np.random.default_rng(3)
    males = [sample_anatomy(rng, sex="male") for _ in range(200)]
    females = [sample_anatomy(rng, sex="female") for _ in range(200)]

    def mean(specs, name):
        return np.mean([getattr(s, name) for s in specs])

    for name in ("trochanteric_fat_mm", "gluteal_fat_mm"):
        # DOMAIN.md 3: trochanter 15-50 mm, gluteal 20-60 mm; gynoid fat in women.
        assert 15 <= mean(males, name) < mean(females, name) - 5 <= 60
        # One adiposity: fatter people are fatter at every site.
        base = [s.subcutaneous_fat_mm for s in males]
        assert np.corrcoef(base, [getattr(s, name) for s in males])[0, 1] > 0.5
    # A thin patient's override carries over to the sites it was not asked about.
    thin = [
        sample_anatomy(np.random.default_rng(i), sex="female", subcutaneous_fat_mm=6.0) for i in range(20)
    ]
    assert mean(thin, "gluteal_fat_mm") < mean(females, "gluteal_fat_mm") - 10


def test_fat_by_site_leaves_the_generator_and_the_other_draws_alone():
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    a = sample_anatomy(rng_a)
    b = sample_anatomy(rng_b, gluteal_fat_mm=50.0, trochanteric_fat_mm=40.0)
    assert rng_a.random() == rng_b.random()  # the caller's stream is where it would be
    assert dataclasses.replace(a, gluteal_fat_mm=50.0, trochanteric_fat_mm=40.0) == b
