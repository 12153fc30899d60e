"""Provenance for truth files: software versions and the seeding of a case's components.

Reports facts about the run; never changes them.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np

# 1.1: every component draws from its own stream (anatomy, soft tissue, lesions, imaging,
# radiograph); the same seed draws other numbers than under 1.0.
# 1.2: bones from the LLP26 shape model: "bones" (model, mode weights, measured morphology) and
# "landmarks_left_mm" added, anatomy parameters of the analytic bones removed; a per-hip key
# ("brooker_counted_tissues") names the HO tissue classes the Brooker grade counts.
TRUTH_SCHEMA_VERSION = "1.3"
# The stream of each component: the spawn key of its child of ``SeedSequence((seed, case_index))``.
# Keys are fixed once given: a component added later takes a new key and leaves the others' draws
# as they were. Key 4 belongs to the cohort's per-case draws (phase, dose, kernel, split).
STREAM_KEYS = {"anatomy": 0, "soft_tissue": 1, "lesions": 2, "imaging": 3, "cohort": 4, "radiograph": 5}
COMPONENTS = ("anatomy", "soft_tissue", "lesions", "imaging", "radiograph")


def software_versions() -> dict[str, str]:
    """Versions of nmosim and of the libraries that shape its output."""
    out = {}
    for dist in (
        "nmosim", "numpy", "scipy", "astra-toolbox", "odl", "nibabel", "spekpy", "xraylib",
        "musculoskeletal-models", "edt",
    ):  # fmt: skip
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def stream_seed(seed: int, case_index: int, name: str) -> np.random.SeedSequence:
    """The seed sequence of stream ``name`` (a key of :data:`STREAM_KEYS`) of case ``(seed, case_index)``.

    It equals the child of ``SeedSequence([seed, case_index])`` spawned under the stream's key.
    """
    return np.random.SeedSequence([int(seed), int(case_index)], spawn_key=(STREAM_KEYS[name],))


def case_generators(seed: int, case_index: int = 0) -> dict[str, np.random.Generator]:
    """One independent generator per component, from ``(seed, case_index)`` (DESIGN.md 2)."""
    return {name: np.random.default_rng(stream_seed(seed, case_index, name)) for name in COMPONENTS}
