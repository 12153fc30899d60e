"""Anatomy parameters: validation, priors and reproducible sampling."""

import dataclasses

import numpy as np
import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.spec import RANGES, AnatomySpec, sample_anatomy


def test_out_of_range_value_names_parameter_value_and_range():
    with pytest.raises(SpecError, match=r"neck_shaft_angle_deg = 200 is outside \[110, 145\]"):
        AnatomySpec(neck_shaft_angle_deg=200)


def test_unknown_parameter_and_bad_sex_are_rejected():
    with pytest.raises(SpecError, match="'leg_length_mm' is unknown"):
        sample_anatomy(np.random.default_rng(0), leg_length_mm=900)
    with pytest.raises(SpecError, match="sex"):
        AnatomySpec(sex="other")
    with pytest.raises(SpecError, match="not a number"):
        AnatomySpec(neck_length_mm="long")


def test_cortex_that_fills_the_shaft_is_rejected():
    with pytest.raises(SpecError, match="shaft_cortical_thickness_mm"):
        AnatomySpec(shaft_outer_diameter_mm=24, shaft_cortical_thickness_mm=9.5)


def test_same_seed_same_anatomy_and_different_seeds_differ():
    a = sample_anatomy(np.random.default_rng(42))
    b = sample_anatomy(np.random.default_rng(42))
    c = sample_anatomy(np.random.default_rng(43))
    assert a == b
    assert a != c


def test_samples_stay_in_range_and_follow_sex_dependent_priors():
    rng = np.random.default_rng(0)
    males = [sample_anatomy(rng, sex="male") for _ in range(200)]
    females = [sample_anatomy(rng, sex="female") for _ in range(200)]
    for spec in males + females:
        for name, (lo, hi) in RANGES.items():
            assert lo <= getattr(spec, name) <= hi
    head_m = np.mean([s.femoral_head_diameter_mm for s in males])
    head_f = np.mean([s.femoral_head_diameter_mm for s in females])
    assert 48 <= head_m <= 52 and 42 <= head_f <= 46  # DOMAIN.md 3
    nsa = np.mean([s.neck_shaft_angle_deg for s in males + females])
    assert 122 <= nsa <= 133  # DOMAIN.md 3
    assert np.std([s.neck_shaft_angle_deg for s in males]) > 2  # a population, not one hip


def test_overrides_win_and_round_trip_through_a_dict():
    spec = sample_anatomy(np.random.default_rng(1), neck_shaft_angle_deg=125.0, sex="female")
    assert spec.neck_shaft_angle_deg == 125.0 and spec.sex == "female"
    assert AnatomySpec.from_dict(spec.to_dict()) == spec
    assert {f.name for f in dataclasses.fields(AnatomySpec)} == set(spec.to_dict())
