"""Findings and quiz text written from hand-made truth dictionaries."""

from nmosim.simulate import report_text


def side(grade, gap=None, volume=0.0, maturity="mature", location="anterior"):
    lesions = [] if grade == 0 else [{"instance": 1, "location": location, "maturity": maturity,
                                      "volume_ml": volume, "centroid_mm": [0, 0, 0]}]  # fmt: skip
    return {"brooker_grade": grade, "gap_mm": gap, "ho_volume_ml": volume,
            "ho_volume_ml_by_tissue": {"ho_cortex": volume / 2, "ho_trabecular": volume / 2} if grade else {},
            "lesions": lesions}  # fmt: skip


def truth(right, left, phase="c", **generation):
    return {"case_id": "t", "phase": phase, "weeks_since_injury": 30.0, "right": right, "left": left,
            "generation": {"aetiology": "sci", **generation}}  # fmt: skip


def test_findings_name_grade_gap_volume_and_maturity_per_side():
    t = truth(side(3, gap=6.3, volume=12.34, maturity="maturing", location="posterior"), side(0))
    text = report_text.findings(t)
    assert "Right hip: maturing heterotopic ossification, posterior" in text["findings"]
    assert "12.3 mL" in text["findings"] and "measures 6.3 mm" in text["findings"]
    assert "Brooker III" in text["findings"] and "less than 1 cm" in text["findings"]
    assert "Left hip: no heterotopic ossification (Brooker 0)" in text["findings"]
    assert text["impression"].startswith("Neurogenic heterotopic ossification: right Brooker III.")
    assert "30 weeks after spinal cord injury" in text["technique"]


def test_bridge_and_islands_are_worded_as_brooker_defines_them():
    text = report_text.findings(truth(side(4, gap=0.0, volume=50.0), side(1, volume=0.4), phase="d"))[
        "findings"
    ]
    assert "Bone bridges pelvis and femur: Brooker IV" in text
    assert "touches neither pelvis nor femur: Brooker I" in text


def test_atrophy_demineralization_narrowing_and_confounders_come_from_the_generation_record():
    t = truth(
        side(2, gap=14.0, volume=5.0), side(0),
        effects={"muscle_bulk": 0.6, "bone_density_scale": 0.5, "joint_space_mm": 2.0,
                 "fatty_muscles": ["gluteus_maximus_left", "gluteus_maximus_right"], "oedema": False},
        base_anatomy={"muscle_bulk": 1.0, "bone_density_scale": 1.0, "joint_space_mm": 4.0},
        confounders=[{"kind": "phlebolith", "side": "left"}, {"kind": "phlebolith", "side": "left"}],
    )  # fmt: skip
    text = report_text.findings(t)["findings"]
    assert "muscle bulk 40 % below" in text
    assert "bone density 50 % below" in text
    assert "Hip joint space 2.0 mm (narrowed from 4.0 mm)" in text
    assert "Fatty infiltration of 2 muscles: gluteus maximus." in text
    assert "2 phleboliths (left)" in text


def test_no_ho_gives_a_negative_impression_and_a_short_quiz():
    t = truth(side(0), side(0), phase="none")
    assert report_text.findings(t)["impression"] == "No heterotopic ossification about either hip."
    questions = [q.question for q in report_text.quiz(t)]
    assert len(questions) == 2  # grade and phase; no gap, maturity or location to ask about


def test_quiz_asks_for_the_gap_and_answers_with_the_one_centimetre_rule():
    items = report_text.quiz(truth(side(2, gap=10.0, volume=3.0), side(3, gap=9.9, volume=3.0)))
    gap = next(q for q in items if "gap" in q.question)
    assert "right: 10.0 mm, at least 1 cm, so Brooker II" in gap.answer
    assert "left: 9.9 mm, less than 1 cm, so Brooker III" in gap.answer
