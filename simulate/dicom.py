"""DICOM files of a CT case: a CT Image Storage series (one file per slice) and a DICOM SEG of its structures.

Serializes a :class:`CTCase` that the pipeline made; it images and measures nothing, and what a
case folder holds is decided by :mod:`nmosim.simulate.case`.

Geometry. nmosim's patient frame is RAS+ and volumes are ``[z, y, x]``; DICOM's patient frame is
LPS+ (x toward the patient's left, y posterior, z superior). Each slice is stored in the orientation
viewers show by default: column index toward the patient's left, row index toward posterior
(ImageOrientationPatient ``1\\0\\0\\0\\1\\0``), so a slice is ``hu[k, ::-1, ::-1]`` and its first
pixel is the voxel ``[k, ny - 1, nx - 1]``, at LPS ``(-x, -y, z)``. Slices run from inferior to
superior (InstanceNumber 1 is the lowest).

Identity. The patient is synthetic and named so (PatientName ``SYNTHETIC^NMOSIM``, SyntheticData
``YES``); dates are fixed (the study date is an arbitrary injury date plus the case's weeks since
injury); every UID is ``2.25.<n>`` derived from the case's seed, case index, folder name and protocol
(:func:`case_uid`), so the same case gives the same bytes.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pydicom.valuerep import DSfloat

from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import STRUCTURE_NAMES, Structure
from nmosim.simulate.figures import WINDOWS
from nmosim.simulate.pipeline import HU_RANGE, CTCase

CT_FOLDER = "ct"  # under CASE/dicom/: one CT Image Storage file per slice
SEG_FILE = "seg.dcm"  # under CASE/dicom/: the DICOM SEG of the structures
HU_OFFSET = -HU_RANGE[0]  # stored value = HU + 1024 in 12 unsigned bits; RescaleIntercept -1024
INJURY_DATE = datetime.date(2000, 1, 1)  # arbitrary and fixed: the day a synthetic patient was injured
STUDY_TIME = "120000"
CT_SERIES_NUMBER, SEG_SERIES_NUMBER = 1, 2
MANUFACTURER = "nmosim"
MODEL = "nmosim synthetic hip CT"
DEVICE_SERIAL = "synthetic"
UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "nmosim.invalid")  # fixed: the UIDs of a case never change

# Segment codes, SNOMED CT (SCT) as DICOM PS3.16 lists them (read from pydicom.sr.codedict.codes):
# categories from CID 7150 (Segmentation Property Categories), types from CID 7151 (Segmentation
# Property Types) where it has one: Soft tissue 87784001 and Muscle 91727004 (CID 7166), Pelvis
# 816092008 and Femur 71341001 (CID 7192), Blood vessel 59820001, Peripheral nerve 84782009 (CID 7192).
# CID 7151 has no concept for heterotopic bone: Ossification 83323007 (CID 6132, a calcification
# descriptor) with the hip as anatomic region; confounders are Dystrophic calcification 129750001
# (CID 6010). Right 24028007 and Left 7771000 (CID 244) modify the paired structures.
_SCT = codes.SCT
SEGMENT_CODES = {
    Structure.SOFT_TISSUE: (_SCT.Tissue, _SCT.SoftTissue, None, None),
    Structure.MUSCLE: (_SCT.Tissue, _SCT.MuscleTissue, None, None),
    Structure.PELVIS: (_SCT.AnatomicalStructure, _SCT.Pelvis, None, None),
    Structure.FEMUR_RIGHT: (_SCT.AnatomicalStructure, _SCT.Femur, _SCT.Right, None),
    Structure.FEMUR_LEFT: (_SCT.AnatomicalStructure, _SCT.Femur, _SCT.Left, None),
    Structure.HO_RIGHT: (_SCT.MorphologicallyAbnormalStructure, _SCT.Ossification, None, _SCT.Right),
    Structure.HO_LEFT: (_SCT.MorphologicallyAbnormalStructure, _SCT.Ossification, None, _SCT.Left),
    Structure.VESSEL: (_SCT.AnatomicalStructure, _SCT.BloodVessel, None, None),
    Structure.NERVE: (_SCT.AnatomicalStructure, _SCT.PeripheralNerve, None, None),
    Structure.CONFOUNDER: (_SCT.MorphologicallyAbnormalStructure, _SCT.DystrophicCalcification, None, None),
}
SEGMENT_DESCRIPTIONS = {
    Structure.SOFT_TISSUE: "skin, fat and other soft tissue",
    Structure.MUSCLE: "muscle",
    Structure.PELVIS: "hip bones and sacrum",
    Structure.FEMUR_RIGHT: "right femur",
    Structure.FEMUR_LEFT: "left femur",
    Structure.HO_RIGHT: "heterotopic ossification of the right hip",
    Structure.HO_LEFT: "heterotopic ossification of the left hip",
    Structure.VESSEL: "femoral artery and vein",
    Structure.NERVE: "sciatic and femoral nerves",
    Structure.CONFOUNDER: "calcification that is not heterotopic ossification",
}
# A local coding scheme (PS3.3 8.2: designators beginning with 99) for how the labels were made.
ALGORITHM_FAMILY = hd.sr.CodedConcept("RASTERIZED", "99NMOSIM", "Rasterized analytic phantom")


def write_dicom(folder: Path | str, ct: CTCase, case_id: str) -> Path:
    """Write ``folder/ct/0001.dcm ...`` (the CT series) and ``folder/seg.dcm`` (the structures as a
    BINARY DICOM SEG referencing that series; none where no voxel has a structure). Returns ``folder``."""
    folder = Path(folder)
    series = ct_series(ct, case_id)
    (folder / CT_FOLDER).mkdir(parents=True, exist_ok=True)
    for image in series:
        dcmwrite(folder / CT_FOLDER / f"{int(image.InstanceNumber):04d}.dcm", image, enforce_file_format=True)
    if segment_labels(ct.structures):  # a SEG holds at least one segment
        dcmwrite(folder / SEG_FILE, structures_seg(ct, case_id, series), enforce_file_format=True)
    return folder


# --- geometry -----------------------------------------------------------------------------------


def slice_pixels(volume_zyx: np.ndarray, k: int) -> np.ndarray:
    """Slice ``k`` of a ``[z, y, x]`` volume as DICOM rows and columns (posterior down, patient's left
    on the right of the image): ``volume[k, ::-1, ::-1]``."""
    return volume_zyx[k, ::-1, ::-1]


def image_position_lps(grid: Grid, k: int) -> tuple[float, float, float]:
    """ImagePositionPatient (mm, LPS) of slice ``k``: the centre of voxel ``[k, ny - 1, nx - 1]``."""
    nz, ny, nx = grid.shape
    x, y, z = grid.index_to_mm(np.array([k, ny - 1, nx - 1]))
    return (-float(x), -float(y), float(z))


IMAGE_ORIENTATION_LPS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # rows toward the patient's left, columns posterior


def _ds(values: Sequence[float]) -> list[DSfloat]:
    """Decimal strings of at most 16 characters (DICOM's DS), as close to ``values`` as that allows."""
    return [DSfloat(float(v), auto_format=True) for v in values]


# --- identity ---------------------------------------------------------------------------------------


def _identity(ct: CTCase, case_id: str) -> dict:
    truth = ct.truth
    return {"seed": truth.get("seed"), "case_index": truth.get("case_index"), "case_id": case_id,
            "weeks_since_injury": truth.get("weeks_since_injury"), "phase": truth.get("phase")}  # fmt: skip


def case_uid(ct: CTCase, case_id: str, *parts: str) -> str:
    """A ``2.25.<n>`` UID from the case's identity (seed, case index, folder name, time point) and
    ``parts``: ``n`` is the integer of a name-based UUID (RFC 4122 version 5), as DICOM PS3.5 B.2
    allows; same case, same UID. (pydicom's ``generate_uid(prefix=None, ...)`` ignores its entropy
    and draws a random UUID.)"""
    identity = json.dumps(_identity(ct, case_id), sort_keys=True, default=str)
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, chr(31).join([identity, *parts])).int}"


def _scanner_text(ct: CTCase) -> str:
    return json.dumps(ct.truth.get("scanner") or {}, sort_keys=True, default=str)


def study_date(ct: CTCase) -> str:
    """The fixed study date (YYYYMMDD): :data:`INJURY_DATE` plus the case's weeks since injury."""
    weeks = ct.truth.get("weeks_since_injury")
    days = int(round(7 * float(weeks))) if isinstance(weeks, (int, float)) else 0
    return (INJURY_DATE + datetime.timedelta(days=max(days, 0))).strftime("%Y%m%d")


def _nmosim_version() -> str:
    from nmosim.simulate.outputs import nmosim_version

    return nmosim_version()


def _patient_and_study(ds: Dataset, ct: CTCase, case_id: str) -> None:
    """Synthetic patient, the study, the frame of reference, equipment and fixed dates."""
    truth = ct.truth
    sex = str((truth.get("anatomy") or {}).get("sex", "")).lower()
    ds.PatientName = "SYNTHETIC^NMOSIM"
    ds.PatientID = f"NMOSIM-{truth.get('seed')}-{truth.get('case_index')}"[:64]
    ds.PatientBirthDate = ""
    ds.PatientSex = {"male": "M", "female": "F"}.get(sex, "O")
    ds.PatientComments = (f"Synthetic phantom made by nmosim (seed {truth.get('seed')}, case index "
                          f"{truth.get('case_index')}, case {case_id}); not a real person.")  # fmt: skip
    ds.SyntheticData = "YES"
    ds.StudyInstanceUID = case_uid(ct, case_id, "study")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = study_date(ct)
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = STUDY_TIME
    ds.InstanceCreationDate, ds.InstanceCreationTime = study_date(ct), STUDY_TIME
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"nmosim synthetic hip CT, phase {truth.get('phase')}"[:64]
    ds.FrameOfReferenceUID = case_uid(ct, case_id, "frame of reference")
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MODEL
    ds.SoftwareVersions = _nmosim_version()
    ds.DeviceSerialNumber = DEVICE_SERIAL


# --- the CT series ------------------------------------------------------------------------------


def ct_series(ct: CTCase, case_id: str) -> list[Dataset]:
    """One CT Image Storage dataset per slice of ``ct.hu`` (inferior first), in LPS.

    Stored values are HU + 1024 in 12 unsigned bits (RescaleIntercept -1024, RescaleSlope 1,
    RescaleType HU); ValueError for HU outside [-1024, 3071], which CT cannot store.
    """
    hu = np.asarray(ct.hu)
    if hu.size and (int(hu.min()) < HU_RANGE[0] or int(hu.max()) > HU_RANGE[1]):
        raise ValueError(f"hu spans [{int(hu.min())}, {int(hu.max())}], outside {list(HU_RANGE)}")
    scanner = ct.truth.get("scanner") or {}
    series_uid = case_uid(ct, case_id, "ct series", _scanner_text(ct))
    sx, sy, sz = ct.grid.spacing_mm
    images = []
    for k in range(ct.grid.shape[0]):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = case_uid(ct, case_id, "ct image", _scanner_text(ct), str(k))
        _patient_and_study(ds, ct, case_id)
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = CT_SERIES_NUMBER
        ds.SeriesDescription = f"CT {scanner.get('kernel', '')} kernel, {scanner.get('preset') or 'custom'}"
        ds.BodyPartExamined = "PELVIS"
        ds.PatientPosition = "HFS"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = _ds(image_position_lps(ct.grid, k))
        ds.ImageOrientationPatient = _ds(IMAGE_ORIENTATION_LPS)
        ds.PixelSpacing = _ds((sy, sx))  # row spacing (between rows, along y) first
        ds.SliceThickness = DSfloat(float(scanner.get("slice_thickness_mm") or sz), auto_format=True)
        ds.SpacingBetweenSlices = DSfloat(sz, auto_format=True)
        ds.SliceLocation = DSfloat(image_position_lps(ct.grid, k)[2], auto_format=True)
        _acquisition(ds, scanner)
        ds.WindowCenter = _ds([WINDOWS["soft"][0], WINDOWS["bone"][0]])
        ds.WindowWidth = _ds([WINDOWS["soft"][1], WINDOWS["bone"][1]])
        ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "BONE"]
        ds.RescaleIntercept = DSfloat(-HU_OFFSET, auto_format=True)
        ds.RescaleSlope = DSfloat(1, auto_format=True)
        ds.RescaleType = "HU"
        pixels = np.ascontiguousarray(slice_pixels(hu, k).astype(np.int32) + HU_OFFSET).astype(np.uint16)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels.astype("<u2").tobytes()
        ds.file_meta = _file_meta(ds)
        images.append(ds)
    return images


def _acquisition(ds: Dataset, scanner: dict) -> None:
    """Tube and reconstruction attributes from the protocol in truth.json (those it has)."""
    if scanner.get("kvp") is not None:
        ds.KVP = DSfloat(float(scanner["kvp"]), auto_format=True)
    if scanner.get("mas") is not None:
        ds.Exposure = int(round(float(scanner["mas"])))  # mAs, per rotation
        ds.ExposureInuAs = int(round(1000 * float(scanner["mas"])))
    if scanner.get("kernel"):
        ds.ConvolutionKernel = str(scanner["kernel"]).upper()
    if scanner.get("recon_fov_mm") is not None:
        ds.ReconstructionDiameter = DSfloat(float(scanner["recon_fov_mm"]), auto_format=True)
    if scanner.get("source_to_detector_mm") is not None:
        ds.DistanceSourceToDetector = DSfloat(float(scanner["source_to_detector_mm"]), auto_format=True)
    if scanner.get("source_to_iso_mm") is not None:
        ds.DistanceSourceToPatient = DSfloat(float(scanner["source_to_iso_mm"]), auto_format=True)
    fov = (scanner.get("geometry") or {}).get("scan_fov_mm")
    if fov is not None:
        ds.DataCollectionDiameter = DSfloat(float(fov), auto_format=True)


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


# --- the SEG ------------------------------------------------------------------------------------------


def segment_labels(structures: np.ndarray) -> list[int]:
    """The structures ids (DESIGN.md 3) present in ``structures``, background left out, ascending;
    segment ``n`` of the SEG is the ``n``-th of them."""
    return [int(v) for v in np.unique(structures) if int(v) in SEGMENT_CODES]


def _coded(code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning)


def _segment(
    number: int, label: int, algorithm: hd.AlgorithmIdentificationSequence
) -> hd.seg.SegmentDescription:
    category, kind, type_modifier, region_modifier = SEGMENT_CODES[Structure(label)]
    regions = [_SCT.Hip] if region_modifier is not None else None
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=STRUCTURE_NAMES[label],
        segmented_property_category=category,
        segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=regions,
    )
    description.SegmentDescription = f"nmosim structures id {label}: {SEGMENT_DESCRIPTIONS[Structure(label)]}"
    if type_modifier is not None:
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            _coded(type_modifier)
        ]
    if region_modifier is not None:
        description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [_coded(region_modifier)]
    return description


def structures_seg(ct: CTCase, case_id: str, series: Sequence[Dataset]) -> hd.seg.Segmentation:
    """The structures of ``ct`` as a BINARY DICOM SEG on the frames of the CT ``series``: one segment
    per structures id present (:func:`segment_labels`), SNOMED CT coded (:data:`SEGMENT_CODES`)."""
    labels = segment_labels(ct.structures)
    lookup = np.zeros(256, np.uint8)
    lookup[labels] = np.arange(1, len(labels) + 1)
    segments = lookup[ct.structures]  # segment numbers, [z, y, x]
    frames = np.stack([slice_pixels(segments, k) for k in range(ct.grid.shape[0])])
    algorithm = hd.AlgorithmIdentificationSequence(name="nmosim", family=ALGORITHM_FAMILY,
                                                   version=_nmosim_version())  # fmt: skip
    seg = hd.seg.Segmentation(
        source_images=list(series),
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment(n, label, algorithm) for n, label in enumerate(labels, start=1)],
        series_instance_uid=case_uid(ct, case_id, "seg series", series[0].SeriesInstanceUID),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=case_uid(ct, case_id, "seg image", series[0].SeriesInstanceUID),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL,
        software_versions=_nmosim_version(),
        device_serial_number=DEVICE_SERIAL,
        content_label="STRUCTURES",
        content_description="nmosim structures (exact labels of the synthetic phantom)",
        content_creator_name="NMOSIM^SYNTHETIC",
        series_description="nmosim structures",
        content_date=study_date(ct),
        content_time=STUDY_TIME,
    )
    return _settle(seg, ct, case_id)


def _settle(seg: hd.seg.Segmentation, ct: CTCase, case_id: str) -> hd.seg.Segmentation:
    """Replace what highdicom draws afresh on every call (creation and contribution times, the
    dimension organization UID) by values derived from the case, so the same case gives the same bytes."""
    seg.InstanceCreationDate, seg.InstanceCreationTime = study_date(ct), STUDY_TIME
    seg.SeriesDate, seg.SeriesTime = study_date(ct), STUDY_TIME
    seg.SyntheticData = "YES"
    for equipment in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in equipment:
            equipment.ContributionDateTime = study_date(ct) + STUDY_TIME
    old = seg.DimensionOrganizationSequence[0].DimensionOrganizationUID
    new = case_uid(ct, case_id, "seg dimension organization")
    seg.DimensionOrganizationSequence[0].DimensionOrganizationUID = new
    for item in seg.get("DimensionIndexSequence", []):
        if item.get("DimensionOrganizationUID") == old:
            item.DimensionOrganizationUID = new
    return seg
