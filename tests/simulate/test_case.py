"""`nmosim case` end to end at a small size: files, HU of tissues, geometry, truth and errors."""

import itertools
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from nmosim.cli import main
from nmosim.phantoms.grading import grade_hips
from nmosim.phantoms.labels import BONE_STRUCTURES, HO_STRUCTURES, Structure, Tissue

SMALL = [
    "--scanner", "recon_pixel_mm=2", "--scanner", "slice_thickness_mm=2", "--scanner", "n_views=240",
    "--scanner", "kernel=soft",
]  # fmt: skip


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    out = tmp_path_factory.mktemp("ct") / "case_c"
    argv = ["case", "--phase", "c", "--seed", "2", "--out", str(out), "--z-range", "-112", "12", *SMALL]
    assert main(argv) == 0
    return out


def load(case, name):
    image = nib.load(case / name)
    return np.asarray(image.dataobj), image


def eroded_mean(ct, mask, iterations=1):
    core = ndimage.binary_erosion(mask, iterations=iterations)
    assert core.sum() > 30
    return float(ct[core].mean())


def test_case_folder_holds_the_contract_files(case):
    names = {p.name for p in case.iterdir()}
    expected = {"ct.nii.gz", "structures.nii.gz", "tissues.nii.gz", "ho_instances.nii.gz",
                "radiograph_ap.png", "radiograph_ap.npz", "truth.json", "preview_ct.png"}  # fmt: skip
    assert expected <= names
    ct, image = load(case, "ct.nii.gz")
    labels, limage = load(case, "structures.nii.gz")
    assert ct.dtype == np.int16 and labels.dtype == np.uint8 and ct.shape == labels.shape
    assert np.allclose(image.affine, limage.affine)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert float(image.header["scl_slope"]) in (1.0,) or np.isnan(image.header["scl_slope"])
    truth = json.loads((case / "truth.json").read_text())
    for key in ("schema_version", "case_id", "seed", "phase", "weeks_since_injury", "right", "left",
                "anatomy", "scanner", "software", "grid"):  # fmt: skip
        assert key in truth, key
    assert truth["scanner"]["n_views"] == 240 and truth["scanner"]["kernel"] == "soft"
    with np.load(case / "radiograph_ap.npz") as rad:
        assert rad["image"].ndim == 2 and rad["mask_bone"].any()


def test_tissue_hu_fall_in_clinical_ranges(case):
    ct, _ = load(case, "ct.nii.gz")
    tissues, _ = load(case, "tissues.nii.gz")
    fat = eroded_mean(ct, tissues == Tissue.FAT, 2)
    muscle = eroded_mean(ct, tissues == Tissue.MUSCLE, 1)
    assert -120 <= fat <= -80, fat  # DOMAIN.md 4.1: fat -100 (-120 to -80)
    assert 30 <= muscle <= 60, muscle  # DOMAIN.md 4.1 / 2.8: 45-55 normal, lower with atrophy


def test_air_inside_the_scan_field_reads_minus_1000(case):
    ct, image = load(case, "ct.nii.gz")
    structures, _ = load(case, "structures.nii.gz")
    truth = json.loads((case / "truth.json").read_text())
    i, j, _ = np.meshgrid(*[np.arange(n) for n in ct.shape], indexing="ij")
    x, y, _ = nib.affines.apply_affine(image.affine, np.stack([i, j, np.zeros_like(i)], -1)).transpose(
        3, 0, 1, 2
    )
    scan_radius = (
        truth["scanner"]["n_bins"]
        * truth["scanner"]["bin_width_mm"]
        / 2
        / (truth["scanner"]["source_to_detector_mm"] / truth["scanner"]["source_to_iso_mm"])
    )
    air = ndimage.binary_erosion(structures == 0, iterations=4) & (np.hypot(x, y) < 0.9 * scan_radius)
    assert air.sum() > 100
    # Scatter and bowtie corrections leave a few HU, as on scanners (air reads -1000 +- 15).
    assert -1015 <= float(ct[air].mean()) <= -985, float(ct[air].mean())


def test_femoral_shaft_cortex_is_dense_bone(case):
    ct, _ = load(case, "ct.nii.gz")
    tissues, _ = load(case, "tissues.nii.gz")
    structures, _ = load(case, "structures.nii.gz")
    cortex = (tissues == Tissue.CORTICAL_BONE) & (structures == Structure.FEMUR_RIGHT)
    core = ndimage.binary_erosion(cortex, iterations=1)
    values = ct[core]
    assert values.size > 20
    # DOMAIN.md 4.1: 1500-1900 in the diaphysis; 2 mm voxels and beam hardening read lower.
    assert 1150 <= float(np.median(values)) <= 1900, float(np.median(values))


def test_ct_is_not_flipped_or_shifted_against_the_labels(case):
    ct, image = load(case, "ct.nii.gz")
    structures, _ = load(case, "structures.nii.gz")
    spacing = np.array(image.header.get_zooms())
    for label in (Structure.FEMUR_RIGHT, Structure.FEMUR_LEFT):
        mask = structures == label
        bright = (ct > 200) & ndimage.binary_dilation(mask, iterations=3)
        a = np.array(ndimage.center_of_mass(mask)) * spacing
        b = np.array(ndimage.center_of_mass(bright)) * spacing
        # In-plane (x, y) only: along z the bright centroid follows bone density (a demineralized
        # head reads darker than the shaft), so z is checked by the overlap below.
        assert np.all(np.abs(a - b)[:2] <= spacing[:2]), (a, b)
    # Bright voxels overlap the bone labels best as they are: not shifted by up to 2 voxels along
    # any axis (x, y, z of the NIfTI data), not flipped along any.
    bone = np.isin(structures, [int(s) for s in (*BONE_STRUCTURES, *HO_STRUCTURES)])
    bright = ct > 200
    here = int((bright & bone).sum())
    for shift in itertools.product(range(-2, 3), repeat=3):
        if any(shift):
            assert int((np.roll(bright, shift, axis=(0, 1, 2)) & bone).sum()) < here, shift
    for axis in range(3):
        assert int((np.flip(bright, axis) & bone).sum()) < here, axis


def test_truth_grade_is_measured_and_matches_the_labels(case):
    truth = json.loads((case / "truth.json").read_text())
    index = truth["generation"]["index_side"]
    assert truth[index]["brooker_grade"] == 3 and 0 < truth[index]["gap_mm"] < 10
    structures, image = load(case, "structures.nii.gz")
    zyx = np.transpose(structures, (2, 1, 0))
    graded = grade_hips(zyx, tuple(float(z) for z in image.header.get_zooms()))
    assert graded[index].grade >= 2  # coarse 2 mm labels may only shorten or close a gap
    assert truth[index]["ho_volume_ml"] > 0


def test_truth_pattern_names_the_hips_whose_labels_hold_ho(case):
    truth = json.loads((case / "truth.json").read_text())
    structures, _ = load(case, "structures.nii.gz")
    # The case's labels are coarse (2 mm): a hip whose HO is under a voxel may show none there,
    # so the check runs from the labels to the pattern.
    sides = {s for s, label in (("right", Structure.HO_RIGHT), ("left", Structure.HO_LEFT))
             if (structures == int(label)).any()}  # fmt: skip
    assert truth["dominant_side"] in sides
    if len(sides) == 2:
        assert truth["pattern"] == "bilateral"
    assert truth["pattern"] in ("unilateral", "bilateral")


def test_truth_records_the_tissues_that_the_grade_counts(case):
    truth = json.loads((case / "truth.json").read_text())
    assert truth["schema_version"] == "1.3"
    assert truth["brooker_counted_tissues"] == ["ho_immature", "ho_cortex", "ho_trabecular"]
    for side in ("right", "left"):
        hip = truth[side]
        counted = sum(
            v for k, v in hip["ho_volume_ml_by_tissue"].items() if k in truth["brooker_counted_tissues"]
        )
        assert hip["graded_ho_volume_ml"] == pytest.approx(counted, abs=1e-3)
        assert hip["graded_ho_volume_ml"] <= hip["ho_volume_ml"] + 1e-9


def test_bad_scanner_values_are_one_line_errors(tmp_path):
    for extra, needle in (
        (["--scanner", "n_views=0"], "n_views = 0 is outside"),
        (["--scanner", "kvp=300"], "kvp = 300 is outside [70, 150]"),
        (["--scanner", "mas=-1"], "mas = -1"),
        (["--scanner", "kernel=sharp"], "kernel = 'sharp' is not one of"),
        (["--scanner", "kvp"], "scanner = 'kvp' is not of the form NAME=VALUE"),
        (["--phase", "d", "--weeks", "2"], "weeks = 2.0 is too early for phase 'd'"),
    ):
        out = tmp_path / "bad"
        proc = subprocess.run([sys.executable, "-m", "nmosim", "case", "--out", str(out), *extra],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], proc.stderr
        assert not out.exists()


def test_forcing_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    import astra

    if astra.use_cuda():
        pytest.skip("a CUDA GPU is present")
    argv = ["case", "--out", str(tmp_path / "x"), "--z-range", "-2", "2", *SMALL]
    env = {**os.environ, "NMOSIM_DEVICE": "cuda"}
    proc = subprocess.run([sys.executable, "-m", "nmosim", *argv], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 2
    assert "NMOSIM_DEVICE = 'cuda' but no CUDA GPU" in proc.stderr


def test_same_seed_same_bytes(tmp_path):
    tiny = ["--seed", "5", "--phase", "b", "--z-range", "-3", "3", "--scanner", "recon_pixel_mm=4",
            "--scanner", "slice_thickness_mm=3", "--scanner", "n_views=90"]  # fmt: skip
    first, second = tmp_path / "a" / "case", tmp_path / "b" / "case"  # case_id is the folder name
    assert main(["case", *tiny, "--out", str(first)]) == 0
    assert main(["case", *tiny, "--out", str(second)]) == 0
    for name in ("ct.nii.gz", "structures.nii.gz", "tissues.nii.gz", "ho_instances.nii.gz",
                 "radiograph_ap.npz", "truth.json"):  # fmt: skip
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_supersampling_reaches_the_labels(tmp_path):
    tiny = ["--seed", "5", "--phase", "b", "--z-range", "-3", "3", "--scanner", "recon_pixel_mm=4",
            "--scanner", "slice_thickness_mm=3", "--scanner", "n_views=90"]  # fmt: skip
    out = tmp_path / "case"
    assert main(["case", *tiny, "--supersampling", "1", "--out", str(out)]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["supersampling"] == 1  # the label grid was sampled once per voxel, as asked
    assert main(["case", *tiny, "--supersampling", "9", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
