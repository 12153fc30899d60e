"""CTDI of both presets in the 32 cm PMMA phantom against DOMAIN.md 4.3.

Usage: python benchmarks/dose_ctdi.py
Prints, per preset, the centre and peripheral dose per 100 mAs, their ratio, CTDIw per 100 mAs and
CTDIvol at the preset's mAs, with the GP buildup factor of water (simulate/dose.py), with no
buildup (primary photons only) and with the linear ``1 + mu x`` used before, against DOMAIN.md
4.3's abdomen-pelvis CTDIvol of 10-20 mGy at 150-250 reference mAs.
"""

from __future__ import annotations

import numpy as np

from nmosim.simulate import dose
from nmosim.simulate.scanner import PRESETS, make_protocol

BUILDUPS = {
    "GP water (dose.py)": dose.buildup_factor,
    "none (primary)": lambda e, x: np.ones(np.broadcast_shapes(np.shape(e), np.shape(x))),
    "linear 1 + mu x": lambda e, x: 1.0 + np.broadcast_to(x, np.broadcast_shapes(np.shape(e), np.shape(x))),
}


def main() -> None:
    print("DOMAIN.md 4.3: CTDIvol 10-20 mGy at 150-250 mAs (4.0-13.3 mGy per 100 mAs)")
    print(f"{'preset':9s}{'buildup':22s}{'centre':>8s}{'periph':>8s}{'ratio':>7s}{'CTDIw/100':>10s}"
          f"{'mAs':>6s}{'CTDIvol':>9s}   (mGy)")  # fmt: skip
    original = dose.buildup_factor
    try:
        for preset in PRESETS:
            p = make_protocol(preset)
            for name, buildup in BUILDUPS.items():
                dose.buildup_factor = buildup
                dose._point_dose.cache_clear()
                key = dose._key(p)
                centre = dose.point_dose_mgy(key, (0.0, 0.0))
                periphery = dose.point_dose_mgy(key, (0.0, dose.PHANTOM_RADIUS_MM - dose.PERIPHERY_DEPTH_MM))
                print(f"{preset:9s}{name:22s}{centre:8.2f}{periphery:8.2f}{centre / periphery:7.2f}"
                      f"{dose.ctdi_w_mgy(key):10.2f}{p.mas:6.0f}{dose.ctdi_vol_mgy(p):9.2f}")  # fmt: skip
    finally:
        dose.buildup_factor = original
        dose._point_dose.cache_clear()


if __name__ == "__main__":
    main()
