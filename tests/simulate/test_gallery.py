"""The dose and kernel gallery: the case's phantom rebuilt from truth.json, noise falling with dose."""

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from nmosim.cli import main
from nmosim.simulate.gallery import GalleryUnavailable, dose_kernel_gallery, rebuild_phantom

SMALL = ["--scanner", "recon_pixel_mm=4", "--scanner", "n_views=90", "--scanner", "slice_thickness_mm=4"]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    out = tmp_path_factory.mktemp("gallery") / "case_b"
    assert (
        main(["case", "--phase", "b", "--seed", "4", "--out", str(out), "--z-range", "-20", "20", *SMALL])
        == 0
    )
    return out


def test_noise_falls_as_the_dose_rises_and_the_scan_matches_the_case(case):
    truth = json.loads((case / "truth.json").read_text())
    z_mm = truth["grid"]["origin_mm_xyz"][2] + 4.0 * 4  # the centre of the case's fifth slice
    gallery = dose_kernel_gallery(truth, z_mm, mas_values=(20.0, 200.0), kernels=("soft",))
    structures = np.asarray(nib.load(case / "structures.nii.gz").dataobj).transpose(2, 1, 0)[4]
    body = ndimage.binary_erosion(structures > 0, iterations=3)
    noise = {mas: float((gallery.slices[(mas, "soft")] - gallery.noiseless["soft"])[body].std()) for mas in
             (20.0, 200.0)}  # fmt: skip
    # Quantum noise scales as 1/sqrt(mAs): a tenth of the dose, about 3.2 times the noise.
    assert 2.4 < noise[20.0] / noise[200.0] < 4.0
    # The noiseless rescan sits on the case's grid and agrees with its CT up to noise and kernel.
    ct = np.asarray(nib.load(case / "ct.nii.gz").dataobj).transpose(2, 1, 0)[4].astype(float)
    assert gallery.grid.shape[1:] == ct.shape
    assert np.median(np.abs(gallery.noiseless["soft"] - ct)[body]) < 30.0


def test_a_truth_the_seed_does_not_reproduce_is_refused(case):
    truth = json.loads((case / "truth.json").read_text())
    rebuild_phantom(truth)  # the recorded case rebuilds
    truth["anatomy"]["inter_hip_distance_mm"] += 5.0  # as if made with an anatomy override
    with pytest.raises(GalleryUnavailable):
        rebuild_phantom(truth)
