"""DICOM output: the CT series and the SEG read back by pydicom, highdicom and SimpleITK, in the
patient's LPS frame, valid for dciodvfy, and the same bytes for the same case."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

from nmosim.cli import main  # noqa: E402
from nmosim.phantoms.errors import SpecError  # noqa: E402
from nmosim.phantoms.grid import Grid  # noqa: E402
from nmosim.phantoms.labels import STRUCTURE_NAMES  # noqa: E402
from nmosim.simulate.case import check_formats, read_case, write_case  # noqa: E402
from nmosim.simulate.dataset import assign_cases, config_record, parse_cohort, run_case  # noqa: E402
from nmosim.simulate.dicom import write_dicom  # noqa: E402
from nmosim.simulate.io import to_nifti  # noqa: E402
from nmosim.simulate.pipeline import CTCase  # noqa: E402

# An asymmetric grid (nx != ny, three spacings, an origin off the centre): a flipped or swapped axis
# moves some voxel to another position, which the tests below see.
GRID = Grid((3, 5, 7), (0.8, 1.3, 2.5), (-10.0, 20.0, -5.0))
TINY = ["--seed", "5", "--phase", "b", "--z-range", "-3", "3", "--scanner", "recon_pixel_mm=4",
        "--scanner", "n_views=90"]  # fmt: skip


def hand_case() -> CTCase:
    """Every voxel its own HU value; structures with every id in every slice but one, and the scanner
    fields that the CT series reports."""
    hu = (np.arange(np.prod(GRID.shape)).reshape(GRID.shape) * 37 - 1024).astype(np.int16)
    structures = np.zeros(GRID.shape, np.uint8)
    structures[:, 1:, :] = (np.arange(4 * 7).reshape(4, 7) % 11)[None]
    structures[2] = 0  # a slice with no structure at all: a SEG frame that is left out
    scanner = {"kvp": 100.0, "mas": 150.0, "kernel": "bone", "slice_thickness_mm": 2.5, "recon_fov_mm": 300.0,
               "source_to_iso_mm": 595.0, "source_to_detector_mm": 1085.6}  # fmt: skip
    truth = {"seed": 7, "case_index": 3, "phase": "c", "weeks_since_injury": 10.0,
             "anatomy": {"sex": "female"}, "scanner": scanner}  # fmt: skip
    zeros = np.zeros(GRID.shape, np.uint8)
    return CTCase(hu=hu, structures=structures, tissues=zeros, ho_instances=zeros.astype(np.uint16),
                  grid=GRID, radiograph=None, truth=truth)  # fmt: skip


@pytest.fixture(scope="module")
def hand(tmp_path_factory) -> tuple[CTCase, Path]:
    folder = tmp_path_factory.mktemp("hand") / "dicom"
    ct = hand_case()
    write_dicom(folder, ct, "case_0003")
    return ct, folder


def read_series(folder: Path) -> list:
    return [pydicom.dcmread(p) for p in sorted((folder / "ct").glob("*.dcm"))]


def lps_to_ras(point) -> np.ndarray:
    return np.asarray(point, float) * [-1, -1, 1]


# --- the CT series ----------------------------------------------------------------------------------


def test_every_pixel_holds_the_hu_of_the_voxel_at_its_position(hand):
    """Position of each pixel from the DICOM geometry (LPS), through the NIfTI affine (RAS) to a
    voxel: the pixel's HU is that voxel's (unique) HU."""
    ct, folder = hand
    images = read_series(folder)
    assert len(images) == GRID.shape[0]
    inverse = np.linalg.inv(to_nifti(ct.hu, GRID, np.int16).affine)
    for image in images:
        hu = image.pixel_array * float(image.RescaleSlope) + float(image.RescaleIntercept)
        orientation = np.array(image.ImageOrientationPatient, float)
        row_dir, col_dir = orientation[:3], orientation[3:]  # along a row (columns grow), along a column
        row_mm, col_mm = (float(s) for s in image.PixelSpacing)  # between rows, between columns
        origin = np.array(image.ImagePositionPatient, float)
        assert hu.shape == (GRID.shape[1], GRID.shape[2])
        for r in range(hu.shape[0]):
            for c in range(hu.shape[1]):
                lps = origin + c * col_mm * row_dir + r * row_mm * col_dir
                i, j, k = np.rint(inverse @ [*lps_to_ras(lps), 1.0])[:3].astype(int)
                assert hu[r, c] == ct.hu[k, j, i]


def test_series_geometry_is_lps_and_slices_run_up_the_patient(hand):
    ct, folder = hand
    images = read_series(folder)
    sx, sy, sz = GRID.spacing_mm
    for k, image in enumerate(images):
        assert image.InstanceNumber == k + 1
        assert [float(v) for v in image.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert [float(v) for v in image.PixelSpacing] == [sy, sx]  # row spacing first
        # the first pixel: the patient's most right (RAS x largest) and anterior voxel, slice k
        x, y, z = GRID.index_to_mm(np.array([k, GRID.shape[1] - 1, GRID.shape[2] - 1]))
        assert np.allclose([float(v) for v in image.ImagePositionPatient], [-x, -y, z], atol=1e-9)
        assert float(image.SliceLocation) == pytest.approx(z)
    assert float(images[0].SliceThickness) == 2.5 and float(images[0].SpacingBetweenSlices) == sz


def test_series_carries_rescale_windows_protocol_and_a_synthetic_identity(hand):
    ct, folder = hand
    images = read_series(folder)
    first = images[0]
    assert first.SOPClassUID == pydicom.uid.CTImageStorage and first.Modality == "CT"
    assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (1.0, -1024.0)
    assert first.RescaleType == "HU"
    assert [float(v) for v in first.WindowCenter] == [40, 400]  # soft tissue, bone
    assert [float(v) for v in first.WindowWidth] == [400, 1800]
    assert float(first.KVP) == 100 and first.Exposure == 150 and first.ConvolutionKernel == "BONE"
    assert float(first.ReconstructionDiameter) == 300
    assert "SYNTHETIC" in str(first.PatientName) and "not a real person" in first.PatientComments
    assert first.SyntheticData == "YES" and first.PatientSex == "F"
    assert first.StudyDate == "20000311"  # 2000-01-01 plus 10 weeks
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({image[key].value for image in images}) == 1
    uids = [image.SOPInstanceUID for image in images]
    assert len(set(uids)) == len(uids)
    for uid in [*uids, first.StudyInstanceUID, first.SeriesInstanceUID]:
        assert len(uid) <= 64 and re.fullmatch(r"2\.25\.[1-9]\d*", uid)


def test_hu_that_ct_cannot_store_is_refused(tmp_path):
    ct = hand_case()
    hu = ct.hu.copy()
    hu[0, 0, 0] = 3072
    with pytest.raises(ValueError, match="outside"):
        write_dicom(tmp_path, CTCase(**{**ct.__dict__, "hu": hu}), "x")


def test_a_case_without_structures_has_a_series_and_no_seg(tmp_path):
    ct = hand_case()
    write_dicom(tmp_path, CTCase(**{**ct.__dict__, "structures": np.zeros_like(ct.structures)}), "x")
    assert len(read_series(tmp_path)) == GRID.shape[0] and not (tmp_path / "seg.dcm").exists()


# --- the SEG -----------------------------------------------------------------------------------------------


def test_seg_holds_the_structures_on_the_ct_frames(hand):
    ct, folder = hand
    seg = hd.seg.segread(folder / "seg.dcm")
    images = read_series(folder)
    present = sorted(set(np.unique(ct.structures).tolist()) - {0})
    labels = {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}
    assert sorted(labels.values(), key=lambda n: list(STRUCTURE_NAMES.values()).index(n)) == [
        STRUCTURE_NAMES[i] for i in present
    ]
    ids = {number: list(STRUCTURE_NAMES.values()).index(name) for number, name in labels.items()}
    assert seg.SeriesInstanceUID != images[0].SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == images[0].SeriesInstanceUID
    assert seg.FrameOfReferenceUID == images[0].FrameOfReferenceUID
    for k, image in enumerate(images):
        if k == 2:  # the empty slice has no frame
            continue
        pixels = seg.get_pixels_by_source_instance([image.SOPInstanceUID], combine_segments=True)[0]
        as_ids = np.vectorize(lambda n: ids.get(int(n), 0))(pixels)
        assert np.array_equal(as_ids, ct.structures[k, ::-1, ::-1])
    positions = {tuple(float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient)
                 for f in seg.PerFrameFunctionalGroupsSequence}  # fmt: skip
    kept = [image for k, image in enumerate(images) if k != 2]
    assert positions == {tuple(float(v) for v in image.ImagePositionPatient) for image in kept}


def test_seg_segments_are_snomed_coded_and_made_by_nmosim(hand):
    _, folder = hand
    seg = pydicom.dcmread(folder / "seg.dcm")
    assert seg.SegmentationType == "BINARY"
    segments = {s.SegmentLabel: s for s in seg.SegmentSequence}
    ho = segments["ho_right"]
    assert ho.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"  # morphologically abnormal
    assert ho.SegmentedPropertyTypeCodeSequence[0].CodeValue == "83323007"  # ossification
    assert ho.AnatomicRegionSequence[0].CodeValue == "29836001"  # hip
    assert ho.AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0].CodeValue == "24028007"  # right
    femur = segments["femur_left"].SegmentedPropertyTypeCodeSequence[0]
    assert femur.CodeValue == "71341001"  # femur
    assert femur.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "7771000"  # left
    for segment in segments.values():
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        assert segment.SegmentAlgorithmName == "nmosim"


# --- same case, same bytes ------------------------------------------------------------------------


def test_the_same_case_gives_the_same_bytes_and_another_case_other_uids(tmp_path):
    ct = hand_case()
    for name in ("a", "b"):
        write_dicom(tmp_path / name / "dicom", ct, "case_0003")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.dcm"))
    assert len(files) == GRID.shape[0] + 1
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    other = CTCase(**{**ct.__dict__, "truth": {**ct.truth, "seed": 8}})
    write_dicom(tmp_path / "c" / "dicom", other, "case_0003")
    first, changed = (pydicom.dcmread(tmp_path / x / "dicom" / "seg.dcm") for x in ("a", "c"))
    assert first.StudyInstanceUID != changed.StudyInstanceUID
    assert first.SOPInstanceUID != changed.SOPInstanceUID


# --- a case through the command line: SimpleITK and dciodvfy --------------------------------------------


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "case_0005"
    assert main(["case", *TINY, "--format", "nifti,dicom", "--out", str(out)]) == 0
    return out


def test_simpleitk_reads_the_series_on_the_grid_of_the_nifti(case_folder):
    sitk = pytest.importorskip("SimpleITK")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(case_folder / "dicom" / "ct")))
    series = reader.Execute()
    nifti = sitk.DICOMOrient(sitk.ReadImage(str(case_folder / "ct.nii.gz")), "LPS")  # RAS grid, as LPS
    assert series.GetSize() == nifti.GetSize()
    assert np.allclose(series.GetOrigin(), nifti.GetOrigin(), atol=1e-3)  # NIfTI's affine is float32
    assert np.allclose(series.GetSpacing(), nifti.GetSpacing(), atol=1e-5)
    assert np.allclose(series.GetDirection(), nifti.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(series), sitk.GetArrayFromImage(nifti))
    assert np.array_equal(sitk.GetArrayFromImage(series)[:, ::-1, ::-1], read_case(case_folder).hu)


def _dciodvfy_errors(path: Path) -> list[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    # SyntheticData (0008,001C) joined the standard after the dictionary of older dciodvfy builds
    # (Debian 12's), which call it an unknown attribute; every other error counts.
    return [line for line in lines if line.startswith("Error") and "(0x0008,0x001c)" not in line]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) absent")
def test_dciodvfy_finds_no_error_in_a_ct_image_and_the_seg(case_folder):
    assert _dciodvfy_errors(case_folder / "dicom" / "ct" / "0001.dcm") == []
    assert _dciodvfy_errors(case_folder / "dicom" / "seg.dcm") == []


def test_a_case_in_dicom_alone_has_no_nifti(tmp_path, case_folder):
    ct = read_case(case_folder)
    out = write_case(ct, tmp_path / "case_0005", formats="dicom")
    assert not list(out.glob("*.nii.gz")) and (out / "truth.json").is_file()
    assert sorted(p.name for p in (out / "dicom" / "ct").iterdir()) == [
        p.name for p in sorted((case_folder / "dicom" / "ct").iterdir())
    ]


# --- formats ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [("nifti", ("nifti",)), ("dicom,nifti", ("nifti", "dicom")),
                                                 (["DICOM"], ("dicom",))])  # fmt: skip
def test_formats_are_read_in_one_order(given, expected):
    assert check_formats(given) == expected


@pytest.mark.parametrize("given", ["png", "nifti,", "", []])
def test_unknown_formats_are_refused(given):
    with pytest.raises(SpecError, match="formats = "):
        check_formats(given)


def test_the_command_line_refuses_an_unknown_format_in_one_line(tmp_path, capsys):
    assert main(["case", "--format", "nifti,png", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "formats = 'png' is not one of {nifti, dicom}" in err[0]
    assert not (tmp_path / "x").exists()


def test_a_cohort_takes_formats_that_hold_nifti():
    assert parse_cohort({"formats": ["dicom", "nifti"]}).formats == ("nifti", "dicom")
    refused = ((["dicom"], 'must hold "nifti"'), ("nifti", "must be a list"), (["nifti", "xml"], "xml"))
    for bad, message in refused:
        with pytest.raises(SpecError, match=message):
            parse_cohort({"formats": bad})


def test_a_cohort_without_formats_keeps_the_config_record_of_earlier_datasets():
    assert "formats" not in config_record(parse_cohort({}))["config"]
    assert config_record(parse_cohort({"formats": ["nifti"]})) == config_record(parse_cohort({}))
    both = config_record(parse_cohort({"formats": ["nifti", "dicom"]}))
    assert both["config"]["formats"] == ["nifti", "dicom"]


def test_a_cohort_with_dicom_asks_its_writer_for_dicom(tmp_path):
    spec = parse_cohort({"n_cases": 1, "formats": ["nifti", "dicom"]})
    given = {}

    def writer(out, request, **options):
        given.update(options)
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        run_case(spec, assign_cases(spec)[0], tmp_path, writer)
    assert given["formats"] == ("nifti", "dicom")
