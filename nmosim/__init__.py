"""nmosim: synthetic hip CT with exact ground truth for neurogenic heterotopic ossification.

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
