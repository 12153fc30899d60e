"""What a user asks of one case (:class:`CaseSpec`, validated once) and the phantom it gives.

Seeds the phantom's components from ``(seed, case_index)``; it images nothing and writes no files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from nmosim.phantoms.case_plan import check_laterality
from nmosim.phantoms.errors import SpecError, check_choice, check_range
from nmosim.phantoms.lesions import CaseStreams, build_case_phantom, build_case_series
from nmosim.phantoms.phantom import Phantom
from nmosim.phantoms.progression import AETIOLOGIES, PHASES, check_weeks
from nmosim.phantoms.rasterize import worker_threads
from nmosim.phantoms.spec import RANGES, SEXES, AnatomySpec
from nmosim.simulate.provenance import stream_seed

MAX_SEED = 2**63  # seeds and case indices are integers in [0, 2**63)


@dataclasses.dataclass(frozen=True)
class CaseSpec:
    """One case: seed and case index, lesion phase or time since injury, aetiology, overrides.

    ``phase`` is "none", "a", "b", "c" or "d" (Brooker 0 to IV of the index hip, by measurement);
    ``weeks`` is the time since injury (weeks); with neither, the hip has no heterotopic bone.
    ``confounders`` None draws them for some cases. ``anatomy_overrides`` fix anatomy parameters
    (mm, degrees; names and ranges in :mod:`nmosim.phantoms.spec`). ``laterality`` fixes which hips
    have HO: "unilateral_right", "unilateral_left", "bilateral_right" or "bilateral_left" (the
    named hip dominant; drawn if None, DOMAIN.md 2.3). Validated on construction:
    a bad value raises :class:`~nmosim.phantoms.errors.SpecError`.

    >>> CaseSpec(phase="c", seed=1).phase
    'c'
    """

    seed: int = 0
    case_index: int = 0
    phase: str | None = None
    weeks: float | None = None
    aetiology: str = "sci"
    confounders: bool | None = None
    anatomy_overrides: Mapping[str, object] | None = None
    laterality: str | None = None

    def __post_init__(self) -> None:
        for name in ("seed", "case_index"):
            value = getattr(self, name)
            integral = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            if not integral or not 0 <= value < MAX_SEED:
                raise SpecError(f"{name} = {value!r} is outside [0, 2**63)")
            object.__setattr__(self, name, int(value))
        if self.phase is not None:
            check_choice("phase", self.phase, PHASES)
        if self.weeks is not None:
            object.__setattr__(self, "weeks", check_weeks(self.weeks, self.phase))
        check_choice("aetiology", self.aetiology, AETIOLOGIES)
        if self.laterality is not None:
            check_laterality(self.laterality)
        if self.confounders not in (None, True, False):
            raise SpecError(f"confounders = {self.confounders!r} is not one of {{None, True, False}}")
        overrides = dict(self.anatomy_overrides or {})
        known = {f.name for f in dataclasses.fields(AnatomySpec)}
        for name, value in overrides.items():
            if name not in known:
                raise SpecError(f"anatomy parameter {name!r} is unknown; allowed: {sorted(known)}")
            if name == "sex":
                check_choice("sex", value, SEXES)
            elif name in RANGES:
                check_range(name, value, *RANGES[name])
        object.__setattr__(self, "anatomy_overrides", overrides)

    def lesion_options(self) -> dict:
        """Keyword arguments of :func:`~nmosim.phantoms.lesions.build_case_phantom`."""
        # Neither phase nor weeks: a phantom without heterotopic bone.
        phase = "none" if self.phase is None and self.weeks is None else self.phase
        return {
            "phase": phase,
            "weeks": self.weeks,
            "aetiology": self.aetiology,
            "confounders": self.confounders,
            "anatomy_overrides": dict(self.anatomy_overrides or {}),
            "laterality": self.laterality,
        }

    def streams(self) -> CaseStreams:
        """The generators of the phantom's components, each from its own stream (DESIGN.md 9)."""
        return CaseStreams(
            *(np.random.default_rng(stream_seed(self.seed, self.case_index, name))
              for name in ("anatomy", "soft_tissue", "lesions"))
        )  # fmt: skip


def build_phantom(spec: CaseSpec, *, threads: int | None = None) -> Phantom:
    """The phantom of ``spec``: an analytic scene with labels on demand; same spec, same phantom.

    ``threads`` work the rasterizations that check the phase (default every core; same phantom).

    Raises :class:`~nmosim.phantoms.lesions.PhaseNotMet` when the phase was not reached by
    measurement (another seed will do).
    """
    worker_threads(threads)  # a bad count is refused before any work
    phantom = build_case_phantom(spec.streams(), **spec.lesion_options(), threads=threads)
    phantom.metadata.update({"seed": spec.seed, "case_index": spec.case_index})
    return phantom


def build_series(spec: CaseSpec, weeks: Sequence[float], *, threads: int | None = None) -> list[Phantom]:
    """One patient at each of ``weeks`` since injury: same anatomy, same lesions growing.

    ``spec.weeks`` is ignored; the phase (if given) is honoured at the last time point.
    """
    options = spec.lesion_options()
    options.pop("weeks")
    options["phase"] = spec.phase
    worker_threads(threads)
    series = build_case_series(spec.streams(), list(weeks), **options, threads=threads)
    for phantom in series:
        phantom.metadata.update({"seed": spec.seed, "case_index": spec.case_index})
    return series
