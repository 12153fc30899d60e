"""nmosim: synthetic hip CT with exact ground truth for neurogenic heterotopic ossification.

The in-memory API (DESIGN.md 9), re-exported here::

    spec = nmosim.CaseSpec(phase="c", seed=1)        # frozen, validated
    phantom = nmosim.build_phantom(spec)             # analytic scene, labels on demand
    ct = nmosim.simulate_ct(phantom, nmosim.protocol("quick", mas=100))
    nmosim.write_case(ct, "out/case_0001"); nmosim.read_case("out/case_0001")

``nmosim.phantoms`` builds the anatomy, lesions and grades; ``nmosim.simulate`` images and writes them.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

# Installed, phantoms/ and simulate/ sit inside this package. In a source checkout they sit beside
# it (package-dir in pyproject.toml), so the checkout's root joins the search path of submodules:
# ``import nmosim.phantoms`` then works from the repository root as it does once installed.
_checkout = Path(__file__).resolve().parent.parent
if not (Path(__file__).parent / "phantoms").is_dir() and (_checkout / "phantoms" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 (a package's own __path__)

try:
    __version__ = metadata.version("nmosim")
except metadata.PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"

# The public API: these names and the modules they come from load on first use, so that
# ``import nmosim`` stays cheap and the command line starts fast.
_API = {
    "CaseSpec": "nmosim.simulate.case_spec",
    "build_phantom": "nmosim.simulate.case_spec",
    "build_series": "nmosim.simulate.case_spec",
    "protocol": "nmosim.simulate.pipeline",
    "simulate_ct": "nmosim.simulate.pipeline",
    "CTCase": "nmosim.simulate.pipeline",
    "write_case": "nmosim.simulate.case",
    "write_phantom": "nmosim.simulate.case",
    "write_series": "nmosim.simulate.case",
    "select_device": "nmosim.simulate.backend",
    "read_case": "nmosim.simulate.case",
    "grade": "nmosim.phantoms.grading:grade_hips",  # grade(structures, spacing_mm) per side
    "evaluate": "nmosim.simulate.evaluate",
    "write_report": "nmosim.simulate.evaluate",
    "PhaseNotMet": "nmosim.phantoms.honouring",
    "SpecError": "nmosim.phantoms.errors",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> object:
    if name in _API:
        from importlib import import_module

        module, _, attribute = _API[name].partition(":")
        value = getattr(import_module(module), attribute or name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nmosim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
