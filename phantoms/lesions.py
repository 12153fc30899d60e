"""The lesion model's public face: a whole NHO case drawn, honoured by measurement, and measured.

Re-exports only; the work lives in case_plan (drawing a patient), lesion_plans (drawing one hip's
lesions), honouring (a grade met by measurement), case_phantom (the phantom at a time since
injury) and lesion_truth (what the labels show).
"""

from __future__ import annotations

from nmosim.phantoms.case_phantom import build_case_phantom, build_case_series, phantom_at
from nmosim.phantoms.case_plan import LATERALITIES, CasePlan, CaseStreams, LesionSpec, plan_case
from nmosim.phantoms.honouring import PhaseNotMet
from nmosim.phantoms.lesion_truth import lesion_truth
from nmosim.phantoms.ossification import LOCATIONS

__all__ = [
    "LATERALITIES",
    "LOCATIONS",
    "CasePlan",
    "CaseStreams",
    "LesionSpec",
    "PhaseNotMet",
    "build_case_phantom",
    "build_case_series",
    "lesion_truth",
    "phantom_at",
    "plan_case",
]
