"""Three drawn hips side by side: axial and coronal cuts and an AP projection of the bones.

Writes docs/three_seeds.png (the picture in README). Tissues are shown at nominal HU
(DOMAIN.md 4.1), not through the CT simulation: this shows the anatomy the scanner sees.

    python examples/three_seeds.py [seed ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import nmosim  # noqa: E402
from nmosim.phantoms.labels import BONE_STRUCTURES, Tissue  # noqa: E402

# Nominal HU per tissue id for display only (DOMAIN.md 4.1, typical values).
NOMINAL_HU = {
    Tissue.AIR: -1000, Tissue.FAT: -100, Tissue.MUSCLE: 50, Tissue.MUSCLE_ATROPHIC: 20,
    Tissue.MUSCLE_OEDEMATOUS: 25, Tissue.CORTICAL_BONE: 1600, Tissue.TRABECULAR_BONE: 300,
    Tissue.MARROW_YELLOW: -80, Tissue.HO_CALCIFYING: 150, Tissue.HO_IMMATURE: 500,
    Tissue.HO_CORTEX: 1200, Tissue.HO_TRABECULAR: 300, Tissue.SOFT_TISSUE_OTHER: 90,
    Tissue.CALCIFICATION: 700, Tissue.URINE: 10, Tissue.BLOOD: 40, Tissue.NERVE: 30,
}  # fmt: skip


def main(seeds: list[int]) -> Path:
    fig, axes = plt.subplots(len(seeds), 3, figsize=(15, 4.6 * len(seeds)), facecolor="black")
    for row, seed in zip(np.atleast_2d(axes), seeds, strict=True):
        phantom = nmosim.build_phantom(nmosim.CaseSpec(phase="c", seed=seed))
        grid = phantom.grid(1.5)
        labels = phantom.rasterize(grid, supersampling=1)
        hu = labels.weighted_sum([NOMINAL_HU[Tissue(t)] for t in range(len(Tissue))])
        x, y, z = (grid.voxel_centers_axis(a) for a in range(3))
        extent_xy = (x[0], x[-1], y[0], y[-1])
        extent_xz = (x[0], x[-1], z[0], z[-1])
        k = int(np.argmin(np.abs(z - 0.0)))
        j = int(np.argmin(np.abs(y - 0.0)))
        window = {"cmap": "gray", "vmin": -160, "vmax": 240, "origin": "lower"}
        row[0].imshow(hu[k], extent=extent_xy, **window)
        row[1].imshow(hu[:, j], extent=extent_xz, **window)
        bone = np.isin(labels.structures, [int(s) for s in BONE_STRUCTURES]).sum(axis=1)
        row[2].imshow(bone, extent=extent_xz, cmap="gray", origin="lower")
        anatomy = phantom.anatomy
        titles = (f"seed {seed}: {anatomy.sex}, axial z = 0", "coronal y = 0", "AP projection of the bones")
        for ax, title in zip(row, titles, strict=True):
            ax.set_title(title, color="white")
            ax.invert_xaxis()  # radiological view: the patient's right on the left
            ax.axis("off")
    out = Path(__file__).resolve().parent.parent / "docs" / "three_seeds.png"
    fig.savefig(out, dpi=60, bbox_inches="tight", facecolor="black")
    return out


if __name__ == "__main__":
    print(main([int(s) for s in sys.argv[1:]] or [1, 2, 3]))
