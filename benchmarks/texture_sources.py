"""Separate the sources of the fixed (noise-free) image texture, one setting changed at a time.

Usage: python benchmarks/texture_sources.py [--seed 1] [--phase c] [--slices 3] [--threads N]
    [--preset quick] [--cache FILE] [--qa-table]

Prints, per configuration, the SD (HU) of noise-free scans in these regions:
  qa     the centre disc (40 mm) of the 200 mm QA phantom's insert section
         (:mod:`nmosim.simulate.qa_phantom`), where the rods' streaks reach;
  uniform the same disc in its uniformity section (water only), where qa.json measures noise;
  water  a 320 mm water cylinder within 120 mm of its axis;
  muscle muscle of the case at the femoral heads at least ``ERODE_MM`` from any other tissue
         (distance on the labels, supersampled 2), with the imaging maps as the case rasterizes
         them ("stepped"), anti-aliased ("aa": supersampling 2), and from the anti-aliased maps
         with bone as water of the same attenuation at the beam's effective energy ("mono bone":
         its contrast kept, its beam hardening gone) or as plain water ("no bone").
The maps of the case are cached in ``--cache`` (an npz) so a rerun skips the phantom.

``--qa-table``: instead, what makes the insert section's centre texture, one change at a time
(bone inserts as water of equal attenuation at the beam's effective energy, no scatter, no
bowtie, more views, sub-rays, leaving out the dense or the air rods, water only), SD in the 40 mm
disc and in a 20 mm one.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

import nmosim
from nmosim.phantoms.labels import Structure, Tissue
from nmosim.simulate import ct, image_quality, physics, qa_phantom
from nmosim.simulate.pipeline import basis_maps, case_grids, fit_protocol
from nmosim.simulate.scanner import make_protocol

ERODE_MM = 3.0


def case_maps(args) -> dict:
    """Basis maps (stepped and anti-aliased) of a few slices at the femoral heads, the ROI, and
    the detector width and field of view that the case's protocol is fitted to."""
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.exists():
        return dict(np.load(cache))
    phantom = nmosim.build_phantom(nmosim.CaseSpec(seed=args.seed, phase=args.phase))
    base = fit_protocol(make_protocol(args.preset), phantom)
    recon, imaging = case_grids(phantom, base, (-100.0, 80.0))
    labels = phantom.rasterize(recon, supersampling=2, threads=args.threads)
    femur = (labels.structures == Structure.FEMUR_RIGHT).sum(axis=(1, 2))
    lo = int(np.argmax(femur)) + int(round(20.0 / recon.spacing_mm[2]))
    hi = lo + args.slices
    tissues = labels.tissues[lo:hi]
    out = {"tissues": tissues, "lo": lo, "hi": hi, "n_bins": base.n_bins, "recon_fov_mm": base.recon_fov_mm}
    spectrum = ct.protocol_spectrum(base)
    for name, ss in (("stepped", 1), ("aa", 2)):
        fine = phantom.rasterize(imaging, supersampling=ss, threads=args.threads)
        water, bone = basis_maps(phantom, fine, spectrum)
        out[f"water_{name}"], out[f"bone_{name}"] = water[lo:hi].copy(), bone[lo:hi].copy()
    pixel = recon.spacing_mm[0]
    out["roi"] = np.stack(
        [ndimage.distance_transform_edt(t == Tissue.MUSCLE) * pixel >= ERODE_MM for t in tissues]
    )
    img, rec = imaging.window(slice(lo, hi)), recon.window(slice(lo, hi))
    out["img"] = np.array([*img.shape, *img.spacing_mm, *img.origin_mm])
    out["rec"] = np.array([*rec.shape, *rec.spacing_mm, *rec.origin_mm])
    if cache is not None:
        np.savez_compressed(cache, **out)
    return out


def _grid(row: np.ndarray):
    from nmosim.phantoms.grid import Grid

    return Grid(tuple(int(v) for v in row[:3]), tuple(row[3:6]), tuple(row[6:9]))


CENTRE_MM = qa_phantom.uniform_radius_mm() - 5.0  # qa.json's centre disc


def qa_sd(p, threads, phantom=None, mono_bone=False, radii=(CENTRE_MM,)):
    """SD (HU) of a noise-free scan of ``phantom`` (default: the 200 mm QA phantom's insert
    section) in centre discs of ``radii`` (mm); ``mono_bone``: bone basis as water of equal
    attenuation at the beam's effective energy (no beam hardening from it)."""
    phantom = qa_phantom.qa_phantom(200.0) if phantom is None else phantom
    w, b, fine, rec = qa_phantom.phantom_maps(phantom, p, ct.protocol_spectrum(p), 1)
    if mono_bone:
        w, b = _mono_bone(w, b, p)
    hu = ct.simulate_ct(w, b, fine, rec, p, None, threads=threads)[0]
    sds = []
    for radius in radii:
        mask = image_quality.disc_mask(hu.shape, rec.spacing_mm[0], (0.0, 0.0), radius, rec.origin_mm[:2])
        sds.append(float(hu[mask].std()))
    return sds[0] if len(sds) == 1 else sds


def _mono_bone(water, bone, p):
    spectrum = ct.protocol_spectrum(p)
    energy = physics.effective_energy_kev(spectrum, water_cm=20.0)
    mu_w, mu_b = (float(physics.linear_attenuation_per_cm(m, [energy])[0]) for m in physics.BASIS_MATERIALS)
    return water + bone * np.float32(mu_b / mu_w), np.zeros_like(bone)


def qa_table(preset: str, threads) -> None:
    """The insert section's centre texture, one change at a time (see the module's docstring)."""
    full = qa_phantom.qa_phantom(200.0)

    def without(names):
        return dataclasses.replace(full, inserts=tuple(i for i in full.inserts if i.name not in names))

    dense = {"cortical_bone", "ho_mature_cortex"}
    rows = {
        "preset": ({}, full, False),
        "bone inserts monochromatic": ({}, full, True),
        "no scatter": ({"scatter": "none"}, full, False),
        "no bowtie": ({"bowtie": "none"}, full, False),
        "1440 views": ({"n_views": 1440}, full, False),
        "imaging oversampling 4": ({"imaging_oversampling": 4}, full, False),
        "focal 2 x cell 2": ({"focal_spot_samples": 2, "cell_samples": 2}, full, False),
        "soft kernel": ({"kernel": "soft"}, full, False),
        "no cortical, HO cortex": ({}, without(dense), False),
        "no air rod": ({}, without({"air"}), False),
        "no air, cortical, HO cortex": ({}, without(dense | {"air"}), False),
        "water only (uniformity)": ({}, qa_phantom.uniformity_section(full), False),
        "water only, 1440 views": ({"n_views": 1440}, qa_phantom.uniformity_section(full), False),
    }
    radii = (CENTRE_MM, 20.0)
    print(f"preset {preset}; noise-free SD (HU) at the QA phantom's centre, one change at a time")
    print(f"{'change':30s}{'r 40 mm':>10s}{'r 20 mm':>10s}   cpu s")
    for name, (overrides, phantom, mono) in rows.items():
        start = time.process_time()
        sd40, sd20 = qa_sd(make_protocol(preset, **overrides), threads, phantom, mono, radii)
        print(f"{name:30s}{sd40:10.2f}{sd20:10.2f}   {time.process_time() - start:5.1f}", flush=True)


def water_sd(p, threads) -> float:
    hu, rec = ct.simulate_water_cylinder(p, 320.0, None, threads=threads)
    x, y = rec.voxel_centers_axis(0), rec.voxel_centers_axis(1)
    return float(hu[0][np.hypot(x[None, :], y[:, None]) < 120.0].std())


def muscle_sd(p, maps, kind, threads) -> float:
    water, bone = (maps[f"{name}_{'stepped' if kind == 'stepped' else 'aa'}"] for name in ("water", "bone"))
    if kind == "no bone":  # bone as water: neither its contrast nor its hardening
        water, bone = water + bone, np.zeros_like(bone)
    elif kind == "mono bone":  # bone as water of the same attenuation at the effective energy
        water, bone = _mono_bone(water, bone, p)
    hu = ct.simulate_ct(water, bone, _grid(maps["img"]), _grid(maps["rec"]), p, None, threads=threads)
    roi = maps["roi"]
    return float(np.mean([hu[i][roi[i]].std() for i in range(hu.shape[0])]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phase", default="c")
    parser.add_argument("--slices", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--only", default=None, help="comma-separated configuration names")
    parser.add_argument("--regions", default="qa,uniform,water,stepped,aa,mono bone,no bone")
    parser.add_argument(
        "--qa-table", action="store_true", help="the QA centre's sources, one change at a time"
    )
    args = parser.parse_args()
    if args.qa_table:
        qa_table(args.preset, args.threads)
        return
    maps = None
    configurations = {
        "preset": {},
        "720 views": {"n_views": 720},
        "1440 views": {"n_views": 1440},
        "view_samples 2": {"view_samples": 2},
        "focal 2 x cell 2": {"focal_spot_samples": 2, "cell_samples": 2},
        "imaging oversampling 4": {"imaging_oversampling": 4},
        "soft kernel": {"kernel": "soft"},
        "no bowtie, no scatter": {"bowtie": "none", "scatter": "none"},
    }
    if args.only:
        configurations = {k: v for k, v in configurations.items() if k in args.only.split(",")}
    regions = args.regions.split(",")
    print(f"preset {args.preset}; SD of noise-free scans (HU); muscle >= {ERODE_MM:g} mm from other tissue")
    print(f"{'configuration':24s}" + "".join(f"{r:>10s}" for r in regions) + "   seconds")
    for name, overrides in configurations.items():
        start = time.perf_counter()
        row = []
        for region in regions:
            if region == "qa":
                row.append(qa_sd(make_protocol(args.preset, **overrides), args.threads))
            elif region == "uniform":
                uniform = qa_phantom.uniformity_section(qa_phantom.qa_phantom(200.0))
                row.append(qa_sd(make_protocol(args.preset, **overrides), args.threads, uniform))
            elif region == "water":
                row.append(water_sd(make_protocol(args.preset, **overrides), args.threads))
            else:
                maps = case_maps(args) if maps is None else maps
                fitted = {"n_bins": int(maps["n_bins"]), "recon_fov_mm": float(maps["recon_fov_mm"])}
                p = make_protocol(args.preset, **{**fitted, **overrides})
                row.append(muscle_sd(p, maps, region, args.threads))
        seconds = time.perf_counter() - start
        print(f"{name:24s}" + "".join(f"{v:10.2f}" for v in row) + f"   {seconds:7.1f}", flush=True)


if __name__ == "__main__":
    main()
