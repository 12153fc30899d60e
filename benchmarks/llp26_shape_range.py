"""Shape range of the LLP26 hip bones along modes 1 and 2, and the time to build them.

Run: python benchmarks/llp26_shape_range.py
"""

import time

import numpy as np

from nmosim.phantoms import bone_measures as measures
from nmosim.phantoms import llp26


def main() -> None:
    start = time.perf_counter()
    llp26.hip_bones(np.zeros(26), np.zeros(26))
    cold = time.perf_counter() - start
    start = time.perf_counter()
    llp26.hip_bones(np.full(26, 0.3), np.zeros(26))
    warm = time.perf_counter() - start
    print(f"hip_bones level {llp26.DEFAULT_LEVEL}: cold {cold:.2f} s, cached {warm:.3f} s")
    for mode in (0, 1):
        for sd in (-2.5, 0.0, 2.5):
            w = np.zeros(26)
            w[mode] = sd
            b = llp26.hip_bones(w, np.zeros(26))
            left = "left"
            print(
                f"mode {mode + 1} {sd:+.1f} SD: pelvic width {measures.pelvic_width_mm(b):.1f} mm, "
                f"inter-ASIS {measures.inter_asis_mm(b):.1f} mm, "
                f"femoral length {measures.femoral_length_mm(b, left):.1f} mm, "
                f"head {measures.head_diameter_mm(b, left):.1f} mm, "
                f"NSA {measures.neck_shaft_angle_deg(b, left):.1f} deg, "
                f"anteversion {measures.anteversion_deg(b, left):.1f} deg"
            )


if __name__ == "__main__":
    main()
