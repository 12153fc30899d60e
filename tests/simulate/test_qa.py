"""The QA phantom through the scanner: insert HU, noise against dose, kernels, the nmosim qa command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nmosim.cli import main
from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.materials import PMMA, WATER
from nmosim.simulate import ct, physics, qa, qa_phantom
from nmosim.simulate.io import read_nifti
from nmosim.simulate.outputs import read_marker
from nmosim.simulate.scanner import make_protocol

# quick, with fewer views and a field of view just holding the 200 mm phantom: a few seconds a scan
SMALL = {"n_views": 240, "recon_fov_mm": 216.0}
SMALL_OPTIONS = ["--scanner", "n_views=240", "--scanner", "recon_fov_mm=216"]


@pytest.fixture(scope="module")
def report():
    scan = qa.scan_qa(make_protocol("quick", **SMALL), 200.0, n_slices=2, seed=1)
    return scan, qa.qa_report(scan, 1, "quick")


def test_phantom_layout_and_materials():
    phantom = qa_phantom.qa_phantom(200.0)
    names = [i.name for i in phantom.inserts]
    assert names[0] == "air" and {"fat", "acrylic", "cortical_bone", "trabecular_bone"} <= set(names)
    assert any(n.startswith("ho_") for n in names)
    for insert in phantom.inserts:  # inside the cylinder, clear of the uniform centre
        r = np.hypot(*insert.center_xy_mm)
        assert r + insert.diameter_mm / 2 < 100.0
        assert r - insert.diameter_mm / 2 > qa_phantom.uniform_radius_mm()
    centres = np.array([i.center_xy_mm for i in phantom.inserts])
    gaps = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
    assert gaps[~np.eye(len(centres), dtype=bool)].min() > 2 * qa_phantom.INSERT_DIAMETER_MM
    with pytest.raises(SpecError, match="diameter_mm = 250"):
        qa_phantom.qa_phantom(250.0)
    # acrylic: C5H8O2 by mass (60.0 % C, 8.1 % H, 32.0 % O), 1.19 g/cm3, reading about +120 HU
    assert PMMA.mass_fractions["C"] == pytest.approx(0.5998, abs=5e-4) and PMMA.density_g_cm3 == 1.19
    assert 90 < physics.hu_at_energy(PMMA, 65.0) < 150


def test_basis_maps_hold_each_insert_material():
    protocol = make_protocol("quick", **SMALL)
    phantom = qa_phantom.qa_phantom(200.0)
    spectrum = ct.protocol_spectrum(protocol)
    water, bone, fine, rec = qa_phantom.phantom_maps(phantom, protocol, spectrum, 1)
    assert water.shape == fine.shape and rec.shape[0] == 1
    coef = qa_phantom.material_basis([i.material for i in phantom.inserts] + [WATER], spectrum)
    np.testing.assert_allclose(coef[-1], [1.0, 0.0], atol=1e-6)  # water is the water basis
    x, y = fine.voxel_centers_axis(0), fine.voxel_centers_axis(1)
    for insert, (a_w, a_b) in zip(phantom.inserts, coef, strict=False):
        ix, iy = np.argmin(np.abs(x - insert.center_xy_mm[0])), np.argmin(np.abs(y - insert.center_xy_mm[1]))
        assert water[0, iy, ix] == pytest.approx(a_w, abs=1e-5)
        assert bone[0, iy, ix] == pytest.approx(a_b, abs=1e-5)
    # total water-equivalent area: the cylinder, minus what the rods replace
    area = water[0].sum() * fine.spacing_mm[0] * fine.spacing_mm[1]
    rod = np.pi * (qa_phantom.INSERT_DIAMETER_MM / 2) ** 2
    expected = np.pi * 100.0**2 + rod * sum(a_w - 1 for a_w, _ in coef[:-1])
    assert area == pytest.approx(expected, rel=2e-3)


def test_inserts_read_their_expected_hu(report):
    _, r = report
    rows = {row["name"]: row for row in r["inserts"]}
    for row in rows.values():  # against what a water-corrected scanner reads, bone included
        assert row["within_tolerance"], row
        tolerance = qa.HU_TOLERANCE_HU + qa.HU_TOLERANCE_FRACTION * abs(row["expected_hu"])
        assert abs(row["mean_hu"] - row["expected_hu"]) <= tolerance
    # dense bone reads 5-15 % below its monochromatic value from the beam hardening the water
    # correction leaves; soft materials within 5 % of the contrast plus 10 HU of theirs
    for name in ("cortical_bone", "ho_mature_cortex"):
        row = rows[name]
        shortfall = row["monochromatic_hu"] - row["mean_hu"]
        assert 0.05 * row["monochromatic_hu"] < shortfall < 0.15 * row["monochromatic_hu"], row
        assert row["expected_hu"] < row["monochromatic_hu"] and row["mean_hu"] > 1000.0
    for name in ("fat", "acrylic"):
        row = rows[name]
        assert abs(row["mean_hu"] - row["monochromatic_hu"]) < 10.0 + 0.05 * abs(row["monochromatic_hu"]), row
    assert rows["air"]["monochromatic_hu"] == pytest.approx(-1000.0, abs=1.0)


def test_report_is_self_consistent(report):
    scan, r = report
    # NPS integral = variance of the noise-only image over the NPS region (Parseval), close to the ROI SD
    assert r["nps"]["variance_from_nps_hu2"] == pytest.approx(r["noise"]["sd_noise_only_hu"] ** 2, rel=0.2)
    assert 0.0 < r["nps"]["peak_lp_mm"] < 0.5 / scan.grid.spacing_mm[0]
    noise = r["noise"]
    assert noise["sd_noise_only_hu"] > 0.5 and noise["sd_hu"] >= 0.9 * noise["sd_noise_only_hu"]
    assert r["uniformity"]["max_abs_difference_hu"] < 8.0 and abs(r["uniformity"]["centre_mean_hu"]) < 5.0
    kernel = r["scanner"]["kernel_mtf"]
    assert r["mtf"]["mtf50_lp_mm"] == pytest.approx(kernel["effective_mtf50_lp_mm"], rel=0.12)
    assert r["mtf"]["mtf10_lp_mm"] == pytest.approx(kernel["effective_mtf10_lp_mm"], rel=0.15)
    # the grid's limit holds up to the spread of the measurement (interpolation side lobes, window)
    assert r["mtf"]["mtf50_lp_mm"] < r["mtf"]["mtf10_lp_mm"] < 1.15 * 0.5 / scan.grid.spacing_mm[0]
    assert r["scanner"]["kernel"] == "standard" and r["nmosim_version"] and r["seed"] == 1
    json.dumps(r, allow_nan=False)  # finite numbers only


def test_noise_nps_and_uniformity_come_from_the_uniformity_section(report):
    scan, r = report
    # the uniformity section: the same cylinder without rods, one 40 mm module along z
    assert scan.uniform_grid.shape == scan.grid.shape
    dz = scan.uniform_grid.origin_mm[2] - scan.grid.origin_mm[2]
    assert dz == pytest.approx(qa_phantom.UNIFORMITY_SECTION_Z_MM)
    sections = r["phantom"]["sections"]
    assert sections["uniformity"]["inserts"] == [] and len(r["phantom"]["inserts"]) == 7
    assert r["noise"]["section"] == r["nps"]["section"] == r["uniformity"]["section"] == "uniformity"
    # the noise-only SD of both sections agree (same water path at the centre); the image SD of
    # the insert section carries the rods' streaks on top
    uniform, inserts = r["noise"], r["insert_section"]
    assert uniform["sd_noise_only_hu"] == pytest.approx(inserts["sd_noise_only_hu"], rel=0.15)
    assert (
        inserts["sd_hu"] ** 2 - inserts["sd_noise_only_hu"] ** 2
        > uniform["sd_hu"] ** 2 - uniform["sd_noise_only_hu"] ** 2
    )
    # the report's noise is that of the uniformity images, measured here directly
    x, y = scan.uniform_grid.voxel_centers_axis(0), scan.uniform_grid.voxel_centers_axis(1)
    disc = np.hypot(x[None, :], y[:, None]) <= qa_phantom.uniform_radius_mm() - 5.0
    assert scan.uniform_first[:, disc].std(ddof=1) == pytest.approx(uniform["sd_hu"], abs=2e-3)


def test_targeted_reconstruction_measures_the_mtf_on_fine_pixels(report):
    scan, r = report
    grid = scan.targeted_grid
    assert grid.spacing_mm[:2] == (qa.TARGETED_PIXEL_MM, qa.TARGETED_PIXEL_MM)
    assert grid.shape[0] == scan.grid.shape[0] and grid.origin_mm[2] == scan.grid.origin_mm[2]
    air = next(i for i in scan.phantom.inserts if i.name == "air")
    centre = [grid.voxel_centers_axis(a).mean() for a in (0, 1)]
    np.testing.assert_allclose(centre, air.center_xy_mm, atol=1e-6)
    # the air rod reads air at the centre of the targeted field, water around it
    mid = grid.shape[1] // 2
    assert scan.targeted[:, mid - 2 : mid + 3, mid - 2 : mid + 3].mean() < -900.0
    assert abs(scan.targeted[:, :8, :8].mean()) < 30.0
    # quick's 1.2 mm bins at the iso-centre cap it: the finer pixel adds little, takes nothing away
    targeted, display = r["mtf_targeted"], r["mtf"]
    assert targeted["pixel_mm"] == qa.TARGETED_PIXEL_MM and display["pixel_mm"] == 1.5
    assert display["mtf50_lp_mm"] <= targeted["mtf50_lp_mm"] < 0.5 / scan.protocol.iso_bin_width_mm
    assert (
        r["scanner"]["kernel_mtf_targeted"]["grid_limit_lp_mm"]
        > r["scanner"]["kernel_mtf"]["grid_limit_lp_mm"]
    )


def test_noise_falls_as_one_over_root_mas():
    """Quantum noise only (no electronic noise), from paired differences of two realizations."""
    sd = {}
    for mas in (50.0, 200.0):
        protocol = make_protocol(
            "quick", mas=mas, electronic_noise_photons=0.0, n_views=240, recon_fov_mm=150
        )
        rng = np.random.default_rng(7)
        a, grid = ct.simulate_water_cylinder(protocol, 120.0, rng, n_slices=2)
        b, _ = ct.simulate_water_cylinder(protocol, 120.0, rng, n_slices=2)
        x, y = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)
        centre = np.hypot(x[None, :], y[:, None]) < 40.0
        sd[mas] = ((a - b) / np.sqrt(2.0))[:, centre].std()
    assert sd[50.0] / sd[200.0] == pytest.approx(2.0, rel=0.10)


@pytest.mark.slow
def test_kernels_order_in_mtf50_and_noise_on_the_clinical_grid():
    """At 0.75 mm voxels and 1.1 mm bins the grid carries the kernels apart."""
    measured = {}
    for kernel in ("soft", "standard", "bone"):
        # all 1152 views: with fewer, the view interpolation blurs the edge 60 mm off the axis
        protocol = make_protocol("clinical", kernel=kernel, recon_fov_mm=216.0)
        r = qa.qa_report(qa.scan_qa(protocol, 200.0, 1, seed=2), 2)
        measured[kernel] = (r["mtf"]["mtf50_lp_mm"], r["noise"]["sd_noise_only_hu"], r)
    mtf50 = [measured[k][0] for k in ("soft", "standard", "bone")]
    noise = [measured[k][1] for k in ("soft", "standard", "bone")]
    assert mtf50 == sorted(mtf50) and noise == sorted(noise)
    assert 0.35 <= measured["soft"][0] <= 0.45  # DOMAIN.md 4.4
    assert measured["bone"][2]["mtf"]["peak_mtf"] > 1.03  # edge enhancement survives the grid
    for kernel, (m50, _, r) in measured.items():
        assert m50 == pytest.approx(r["scanner"]["kernel_mtf"]["effective_mtf50_lp_mm"], rel=0.1), kernel
    # the 0.75 mm pixel holds the bone kernel below DOMAIN.md 4.4's 0.6-0.9 lp/mm, the targeted field not
    bone = measured["bone"][2]
    assert bone["mtf"]["mtf50_lp_mm"] < 0.6 <= bone["mtf_targeted"]["mtf50_lp_mm"] <= 0.9


def _run(out: Path, *extra: str) -> int:
    return main(["qa", "--slices", "1", "--seed", "3", *SMALL_OPTIONS, "--out", str(out), *extra])


def test_cli_writes_the_qa_folder_and_repeats_byte_for_byte(tmp_path, capsys):
    assert _run(tmp_path / "a") == 0
    folder = tmp_path / "a"
    images = {"ct.nii.gz", "ct_repeat.nii.gz", "ct_uniformity.nii.gz", "ct_uniformity_repeat.nii.gz",
              "ct_targeted.nii.gz"}  # fmt: skip
    assert {p.name for p in folder.iterdir()} >= {"qa.json", ".nmosim", *images}
    assert read_marker(folder)["kind"] == "qa"
    report = json.loads((folder / "qa.json").read_text())
    assert report["scanner"]["n_views"] == 240 and report["scanner"]["preset"] == "quick"
    ct_volume = read_nifti(folder / "ct.nii.gz")
    assert ct_volume.data.dtype == np.float32 and ct_volume.data.shape[0] == 1
    assert ct_volume.spacing_zyx_mm == pytest.approx((1.5, 1.5, 1.5))
    assert _run(tmp_path / "b") == 0
    assert report["format"] == qa.QA_FORMAT == 2
    for name in ("qa.json", *images):
        assert (folder / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert _run(folder) == 2  # exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--diameter", "250"], "invalid choice"),
        (["--scanner", "kernel=sharp"], "kernel = 'sharp' is not one of"),
        (["--slices", "0"], "slices = 0 is outside [1, 64]"),
        (["--scanner", "recon_fov_mm=150"], "does not fit the recon_fov_mm = 150"),
        (["--preset", "fast"], "invalid choice: 'fast'"),
    ],
)
def test_cli_refuses_bad_options_in_one_line(tmp_path, capsys, options, message):
    assert main(["qa", "--out", str(tmp_path / "q"), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "q").exists()
