"""Time course: onset, logistic growth, maturity stages, phase from weeks, effects on the anatomy."""

from __future__ import annotations

import numpy as np
import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.progression import (
    EARLIEST_WEEKS,
    PHASES,
    STAGES,
    TIME_EFFECT_FIELDS,
    adjusted_anatomy,
    check_weeks,
    growth_fraction,
    linear_growth,
    maturity_stage,
    phase_from_weeks,
    sample_course,
)
from nmosim.phantoms.spec import AnatomySpec


def test_onset_within_3_to_12_weeks_and_peaks_near_8():
    rng = np.random.default_rng(0)
    onsets = np.array([sample_course(rng).onset_weeks for _ in range(400)])
    assert onsets.min() >= 3.0 and onsets.max() <= 12.0
    hist, edges = np.histogram(onsets, bins=9, range=(3, 12))
    assert 6.0 <= edges[hist.argmax()] <= 9.0  # DOMAIN.md 2.4: peak ~8 weeks


def test_growth_is_logistic_monotone_and_plateaus_within_a_year():
    t = np.linspace(0, 104, 400)
    for half in (6.0, 10.0):
        f = np.array([growth_fraction(x, half) for x in t])
        assert f[0] == 0.0 and np.all(np.diff(f) >= 0)
        assert 0.35 < growth_fraction(half, half) < 0.6  # about half at the half-time
        assert growth_fraction(52.0, half) > 0.97  # DOMAIN.md 2.7: plateau by 6-12 months
        assert linear_growth(20.0, half) == pytest.approx(growth_fraction(20.0, half) ** (1 / 3))


def test_maturity_never_goes_back_and_follows_domain_axis():
    stages = [STAGES.index(maturity_stage(w)) for w in np.linspace(-4, 80, 300)]
    assert np.all(np.diff(stages) >= 0)
    assert maturity_stage(-1) == "oedema" and maturity_stage(1) == "calcifying"
    assert maturity_stage(40) == "mature"


def test_phase_from_weeks_is_none_before_onset_and_respects_lead_times():
    rng = np.random.default_rng(1)
    for _ in range(200):
        course = sample_course(rng)
        weeks = float(rng.uniform(0, 104))
        phase = phase_from_weeks(rng, weeks, course)
        assert phase in PHASES
        if weeks < course.onset_weeks:
            assert phase == "none"
        assert weeks >= EARLIEST_WEEKS[phase]


@pytest.mark.parametrize(
    ("weeks", "phase", "word"), [(-1, None, "weeks"), (2, "d", "too early"), (3, "b", "too early")]
)
def test_bad_weeks_raise_spec_error(weeks, phase, word):
    with pytest.raises(SpecError, match=word):
        check_weeks(weeks, phase)


def test_effects_change_only_time_fields_within_domain_ranges():
    spec = AnatomySpec()
    course = sample_course(np.random.default_rng(2), "sci")
    early = adjusted_anatomy(spec, course, 1.0, ankylosed=False)
    late = adjusted_anatomy(spec, course, 104.0, ankylosed=True)
    for name, value in spec.to_dict().items():
        if name not in TIME_EFFECT_FIELDS:
            assert late.to_dict()[name] == value
    assert late.muscle_bulk < early.muscle_bulk <= spec.muscle_bulk
    assert 0.4 <= late.muscle_bulk / spec.muscle_bulk <= 0.7  # DOMAIN.md 2.8: CSA -30..-60 %
    assert 0.45 <= late.bone_density_scale <= 0.8  # DOMAIN.md 2.10 (x 0.9 with ankylosis)
    assert late.joint_space_mm < spec.joint_space_mm  # narrowing with ankylosis
    assert adjusted_anatomy(spec, course, 104.0, ankylosed=False).joint_space_mm == spec.joint_space_mm
