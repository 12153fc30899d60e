"""Provenance for truth files: software versions and the seeding of a case's components.

Reports facts about the run; never changes them.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np

TRUTH_SCHEMA_VERSION = "1.0"
COMPONENTS = ("anatomy", "soft_tissue", "lesions", "imaging")


def software_versions() -> dict[str, str]:
    """Versions of nmosim and of the libraries that shape its output."""
    out = {}
    for dist in ("nmosim", "numpy", "scipy", "astra-toolbox", "odl", "nibabel", "spekpy", "xraylib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def case_generators(seed: int, case_index: int = 0) -> dict[str, np.random.Generator]:
    """One independent generator per component, from ``(seed, case_index)`` (DESIGN.md 2)."""
    children = np.random.SeedSequence([int(seed), int(case_index)]).spawn(len(COMPONENTS))
    return {name: np.random.default_rng(ss) for name, ss in zip(COMPONENTS, children, strict=True)}
