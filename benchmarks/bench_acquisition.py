"""Measure the acquisition physics on a case: noise-free texture, the dark band between the
femoral heads, quantum noise against dose, CTDIvol, and the time per configuration.

Usage: python benchmarks/bench_acquisition.py [--seed 1] [--phase c] [--slices 3] [--threads N]
Scans the case's basis maps on a few slices at the femoral heads (quick preset geometry) and
prints, per configuration: the SD of a noise-free scan in eroded muscle (HU), the mean error of
soft tissue between the heads less that of soft tissue 40 mm away (HU), and seconds; then the
quantum noise (noisy minus noise-free, muscle) at 50, 200 and 800 mAs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

import nmosim
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.materials import tissue_materials
from nmosim.simulate import ct, dose
from nmosim.simulate.pipeline import case_grids, fit_protocol, imaging_maps
from nmosim.simulate.scanner import make_protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phase", default="c")
    parser.add_argument("--slices", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    phantom = nmosim.build_phantom(nmosim.CaseSpec(seed=args.seed, phase=args.phase))
    base = fit_protocol(make_protocol("quick"), phantom)
    recon, imaging = case_grids(phantom, base, (-100.0, 80.0))
    labels = phantom.rasterize(recon, supersampling=2, threads=args.threads)
    # the femoral heads: the slice 20 mm above the widest femur section
    femur = (labels.structures == Structure.FEMUR_RIGHT).sum(axis=(1, 2))
    first = int(np.argmax(femur)) + int(round(20.0 / recon.spacing_mm[2]))
    lo, hi = first, first + args.slices
    water, bone = imaging_maps(phantom, imaging, ct.protocol_spectrum(base), threads=args.threads)
    water, bone = water[lo:hi].copy(), bone[lo:hi].copy()
    img, rec = imaging.window(slice(lo, hi)), recon.window(slice(lo, hi))
    tissues, structures = labels.tissues[lo:hi], labels.structures[lo:hi]
    muscle = np.stack([ndimage.binary_erosion(t == Tissue.MUSCLE, iterations=3) for t in tissues])
    soft_ids = [Tissue.MUSCLE, Tissue.FAT, Tissue.SOFT_TISSUE_OTHER, Tissue.MUSCLE_ATROPHIC]
    soft = np.stack([ndimage.binary_erosion(np.isin(t, soft_ids), iterations=2) for t in tissues])
    k = args.slices // 2
    right = ndimage.center_of_mass(structures[k] == Structure.FEMUR_RIGHT)
    left = ndimage.center_of_mass(structures[k] == Structure.FEMUR_LEFT)
    yy, xx = np.mgrid[0 : tissues.shape[1], 0 : tissues.shape[2]]
    y_mid, (x0, x1) = (right[0] + left[0]) / 2, sorted([right[1], left[1]])
    middle = (xx > x0 + 0.3 * (x1 - x0)) & (xx < x1 - 0.3 * (x1 - x0))
    pixel = recon.spacing_mm[0]
    between = soft & (middle & (np.abs(yy - y_mid) < 8.0 / pixel))[None]
    away = soft & (middle & (np.abs(yy - y_mid) > 40.0 / pixel))[None]
    materials = tissue_materials(trabecular_density_scale=phantom.anatomy.bone_density_scale)
    print(f"nmosim case --seed {args.seed} --phase {args.phase}: slices {lo}-{hi - 1} at z = "
          f"{rec.voxel_centers_axis(2)[0]:.1f} mm and up")  # fmt: skip

    def protocol(**overrides):
        return make_protocol("quick", n_bins=base.n_bins, recon_fov_mm=base.recon_fov_mm, **overrides)

    def scan(p, rng=None):
        return ct.simulate_ct(water, bone, img, rec, p, rng, threads=args.threads)

    def truth_hu(p):
        table = np.array([ct.reference_hu(materials[t], p) if t else -1000.0 for t in Tissue], np.float32)
        return table[tissues]

    configurations = {
        "1 ray, no bowtie, no scatter": {"bowtie": "none", "scatter": "none"},
        "quick preset": {},
        "scatter not corrected": {"scatter_correction": False},
        "bone correction": {"bone_correction": True},
        "2x2x2 sub-rays": {"focal_spot_samples": 2, "cell_samples": 2, "view_samples": 2},
        "1080 views, 2x2x1 sub-rays": {"n_views": 1080, "focal_spot_samples": 2, "cell_samples": 2},
    }
    for name, overrides in configurations.items():
        p = protocol(**overrides)
        start = time.perf_counter()
        clean = scan(p)
        seconds = time.perf_counter() - start
        error = clean - truth_hu(p)
        texture = np.mean([clean[i][muscle[i]].std() for i in range(clean.shape[0])])
        band = error[between].mean() - error[away].mean()
        print(f"{name:30s} noise-free muscle SD {texture:5.1f} HU  band {band:6.1f} HU  {seconds:5.1f} s")
    p = protocol()
    clean = scan(p)
    for seed, mas in ((1, 50.0), (2, 200.0), (3, 800.0)):
        noisy = scan(protocol(mas=mas), np.random.default_rng(seed))
        quantum = np.mean([(noisy - clean)[i][muscle[i]].std() for i in range(clean.shape[0])])
        total = np.mean([noisy[i][muscle[i]].std() for i in range(clean.shape[0])])
        ctdi = dose.ctdi_vol_mgy(protocol(mas=mas))
        print(f"{mas:5.0f} mAs  CTDIvol {ctdi:5.1f} mGy  muscle SD {total:5.1f}  quantum {quantum:5.2f} HU")


if __name__ == "__main__":
    main()
