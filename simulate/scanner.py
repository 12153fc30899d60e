"""CT scanner protocols: validated acquisition, geometry and reconstruction settings, and presets.

Describes the scan only; it does not project, reconstruct or model X-ray physics.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from nmosim.phantoms.errors import SpecError, check_choice, check_range
from nmosim.phantoms.grid import Grid

KERNELS = ("soft", "standard", "bone")
RECON_METHODS = ("fbp", "sirt", "cgls", "tv")
# fan2d: every axial slice its own fan-beam scan (CPU and GPU); axial and helical: a multi-row
# cone beam through ASTRA 3D on the GPU (see nmosim.simulate.geometry3d).
GEOMETRIES = ("fan2d", "axial", "helical")
GEOMETRIES_3D = ("axial", "helical")

# View-angle and detector convention, stored with every protocol (see ScannerProtocol).
GEOMETRY_CONVENTION = (
    "third-generation fan beam, flat detector; rotation axis = patient z through x = y = 0; "
    "view k at beta_k = 2*pi*k/n_views; source at D_si*(sin beta, cos beta) in (x, y) mm "
    "(beta = 0: source anterior, beta = 90 deg: source at patient right); detector centre at "
    "-(D_sd - D_si)*(sin beta, cos beta); bin j centred at offset "
    "(j - (n_bins - 1)/2)*bin_width_mm along (cos beta, -sin beta) "
    "(at beta = 0 bins run toward patient right)"
)

# The multi-row detector of the axial and helical geometries (stored with such protocols).
ROW_CONVENTION = (
    "each view as the fan beam above with the source at height z_k; the detector centre opposite "
    "at the same height; row i centred (i - (detector_rows - 1)/2)*row_pitch_mm along +z; axial: "
    "rotations at fixed heights, each holding the whole slices that its collimation covers; "
    "helical: z_k = z_0 + k*table_feed_mm/n_views, view angles continuing from rotation to rotation"
)

# --- acquisition physics: focal spot, detector cell, view blur, bowtie, scatter, corrections ---
BOWTIES = ("none", "body")
SCATTER_MODELS = ("none", "kernel")
# Settings of a third-generation scanner (see ScannerProtocol): a 1.0 mm focal spot in the fan
# plane (IEC 60336 nominal 0.7-1.2 mm for body scanning), cells 90 % active across their pitch,
# 85 % of the primary photons reaching a cell detected (scintillator absorption about 0.95 times
# the anti-scatter grid's primary transmission about 0.9), a body bowtie, kernel scatter with
# its correction on, no bone correction. The sample counts trade accuracy for time: each
# multiplies the projection work (see the README, "Acquisition").
ACQUISITION_DEFAULTS: dict[str, object] = {
    "focal_spot_mm": 1.0,
    "focal_spot_samples": 2,
    "cell_aperture": 0.9,
    "cell_samples": 2,
    "view_samples": 1,
    "detector_efficiency": 0.85,
    "bowtie": "body",
    "scatter": "kernel",
    "scatter_correction": True,
    "bone_correction": False,
}
# The fields above that the cone-beam geometries (axial, helical) do not model: one ray per cell,
# no bone correction. make_protocol sets them so for those geometries unless they are given.
_FAN2D_ONLY = {"focal_spot_samples": 1, "cell_samples": 1, "view_samples": 1, "bone_correction": False}

# DOMAIN.md 4.3: 120 kVp, 150-250 mAs, DFOV 340-420 mm at 0.66-0.82 mm pixels, 0.6-1.25 mm slices.
# Geometry of a typical third-generation scanner: source-iso 595 mm, source-detector 1085.6 mm,
# a fan covering a 500 mm scan field of view. 'quick' bins channel pairs (2.2 mm) to halve the
# projection cost; its 0.75 mm imaging pixels are still sampled finer than its 1.5 mm voxels.
PRESETS: dict[str, dict[str, object]] = {
    "quick": {
        "kvp": 120.0,
        "mas": 200.0,
        "filtration_mm_al": 6.0,
        "n_views": 360,
        "n_bins": 456,
        "bin_width_mm": 2.2,
        "source_to_iso_mm": 595.0,
        "source_to_detector_mm": 1085.6,
        "slice_thickness_mm": 1.5,
        "kernel": "standard",
        "recon_method": "fbp",
        "recon_iterations": 50,
        "recon_pixel_mm": 1.5,
        "recon_fov_mm": 384.0,
        "electronic_noise_photons": 5.0,
        "water_correction": True,
        "imaging_oversampling": 2,
        # One fine slice per reconstructed slice: each slice is its own 2D fan-beam scan, so the
        # in-plane oversampling alone keeps projection and reconstruction grids apart; finer
        # slices would add the nonlinear partial volume across the slice at twice the cost.
        "imaging_oversampling_z": 1,
        # 3D geometries (GPU only): 64 rows of 0.625 mm at the iso-centre, a 40 mm collimation.
        "geometry": "fan2d",
        "detector_rows": 64,
        "row_pitch_mm": 1.14,
        "pitch": 1.0,
        "tv_weight": 1e-4,
        # one ray per reading: sub-rays multiply the projection time, the bulk of a quick case's
        **{**ACQUISITION_DEFAULTS, "focal_spot_samples": 1, "cell_samples": 1, "view_samples": 1},
    },
    "clinical": {
        "kvp": 120.0,
        "mas": 200.0,
        "filtration_mm_al": 6.0,
        "n_views": 1152,
        "n_bins": 912,
        "bin_width_mm": 1.1,
        "source_to_iso_mm": 595.0,
        "source_to_detector_mm": 1085.6,
        "slice_thickness_mm": 1.0,
        "kernel": "standard",
        "recon_method": "fbp",
        "recon_iterations": 50,
        "recon_pixel_mm": 0.75,
        "recon_fov_mm": 384.0,
        "electronic_noise_photons": 5.0,
        "water_correction": True,
        "imaging_oversampling": 2,
        "imaging_oversampling_z": 2,
        "geometry": "fan2d",
        "detector_rows": 64,
        "row_pitch_mm": 1.14,
        "pitch": 1.0,
        "tv_weight": 1e-4,
        **ACQUISITION_DEFAULTS,
    },
}


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    """Return ``value`` as int if it is a whole number in ``[lo, hi]``, else raise SpecError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if not (isinstance(value, (float, np.floating)) and float(value).is_integer()):
            raise SpecError(f"{name} = {value!r} is not a whole number in [{lo}, {hi}]")
    check_range(name, value, lo, hi)
    return int(value)


def _check_positive(name: str, value: object, hi: float) -> float:
    """Return ``value`` as float if ``0 < value <= hi``, else raise SpecError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{name} = {value!r} is not a number; allowed range (0, {hi:g}]") from None
    if not (0.0 < number <= hi):  # also catches NaN
        raise SpecError(f"{name} = {value!r} is outside (0, {hi:g}]")
    return number


# Allowed ranges, checked in ScannerProtocol.__post_init__ (closed intervals unless "positive").
_RANGES = {
    "kvp": (70.0, 150.0),
    "filtration_mm_al": (0.0, 10.0),
    "source_to_iso_mm": (100.0, 2000.0),
    "source_to_detector_mm": (100.0, 4000.0),
    "recon_fov_mm": (10.0, 1000.0),
    "electronic_noise_photons": (0.0, 1e4),
    "focal_spot_mm": (0.0, 3.0),
}
_POSITIVE = {
    "mas": 1000.0,
    "bin_width_mm": 5.0,
    "slice_thickness_mm": 10.0,
    "recon_pixel_mm": 5.0,
    "row_pitch_mm": 5.0,
    "pitch": 1.0,
    "tv_weight": 1.0,
    "cell_aperture": 1.0,
    "detector_efficiency": 1.0,
}
_INTEGERS = {
    "n_views": (1, 10000),
    "n_bins": (8, 8192),
    "recon_iterations": (1, 10000),
    "imaging_oversampling": (1, 8),
    "imaging_oversampling_z": (1, 8),
    "detector_rows": (1, 512),
    "focal_spot_samples": (1, 16),
    "cell_samples": (1, 16),
    "view_samples": (1, 16),
}


@dataclass(frozen=True)
class ScannerProtocol:
    """One CT acquisition and reconstruction, validated on construction.

    Geometry (patient frame RAS+, mm): a third-generation fan beam with a flat detector rotating
    about the patient z axis through x = y = 0. View ``k`` is at ``beta_k = 2 pi k / n_views``;
    the source sits at ``source_to_iso_mm * (sin beta, cos beta)`` in (x, y), so at beta = 0 it is
    anterior and at 90 degrees at the patient's right. The detector centre is opposite, at
    ``-(source_to_detector_mm - source_to_iso_mm) * (sin beta, cos beta)``; bin ``j`` is centred
    ``(j - (n_bins - 1) / 2) * bin_width_mm`` along ``(cos beta, -sin beta)``. Each axial slice is
    scanned the same way (one detector row per slice).

    Attributes
    ----------
    kvp : tube voltage in kV, [70, 150].
    mas : tube current-time product per rotation in mAs, (0, 1000].
    filtration_mm_al : added filtration in mm of aluminium, [0, 10].
    n_views : projections per 360 degree rotation, [1, 10000].
    n_bins : detector channels, [8, 8192].
    bin_width_mm : channel pitch at the detector in mm, (0, 5].
    source_to_iso_mm, source_to_detector_mm : distances in mm, [100, 2000] and [100, 4000]; the
        detector lies beyond the iso-centre.
    slice_thickness_mm : reconstructed slice thickness (and spacing) in mm, (0, 10].
    kernel : FBP kernel, one of soft, standard, bone.
    recon_method : fbp, sirt or cgls; ``recon_iterations`` is used by the iterative ones.
    recon_pixel_mm : in-plane pixel of the reconstruction in mm, (0, 5].
    recon_fov_mm : reconstructed field of view (square side) in mm; must lie inside the fan.
    electronic_noise_photons : standard deviation of the additive detector noise per reading,
        in photon equivalents, [0, 10000].
    water_correction : apply a water beam-hardening correction.
    imaging_oversampling : the imaging grid is this many times finer than the reconstruction grid
        in-plane, [1, 8].
    imaging_oversampling_z : fine imaging slices per reconstructed slice, [1, 8]; they are added
        as intensities, giving the nonlinear partial-volume effect across the slice (fan2d).
    geometry : fan2d (default; each axial slice its own fan-beam scan, CPU and GPU), axial
        (multi-row cone beam, step and shoot, FDK) or helical (multi-row cone beam on a helix,
        table feed ``pitch * collimation_mm`` per rotation); the 3D ones need a GPU.
    detector_rows : detector rows of the 3D geometries, [1, 512].
    row_pitch_mm : row pitch at the detector in mm, (0, 5]; ``collimation_mm`` is the rows'
        extent at the iso-centre.
    pitch : helical table feed per rotation over the collimation, (0, 1].
    tv_weight : weight of the total variation for ``recon_method = tv``, relative to the data
        term (dimensionless), (0, 1].
    focal_spot_mm : width of the focal spot across the fan (mm, as seen from the detector), [0, 3].
    focal_spot_samples, cell_samples, view_samples : sub-rays per reading, [1, 16] each: points
        across the focal spot, across the cell's active width, and sub-views across the angle the
        gantry turns during one view (view blur); a reading averages the intensities of all
        their combinations (fan2d; the cone-beam geometries take 1).
    cell_aperture : active width of a detector cell over its pitch, (0, 1].
    detector_efficiency : fraction of the primary photons reaching a cell's active area that are
        detected (anti-scatter grid transmission times scintillator absorption), (0, 1].
    bowtie : beam-shaping filter, none or body (:mod:`nmosim.simulate.bowtie`).
    scatter : none, or kernel (scatter from the primary by a detector kernel,
        :mod:`nmosim.simulate.scatter`); ``scatter_correction`` subtracts the scanner's estimate.
    bone_correction : two-pass bone beam-hardening correction (fan2d;
        :mod:`nmosim.simulate.beam_hardening`).
    """

    kvp: float
    mas: float
    filtration_mm_al: float
    n_views: int
    n_bins: int
    bin_width_mm: float
    source_to_iso_mm: float
    source_to_detector_mm: float
    slice_thickness_mm: float
    kernel: str
    recon_method: str
    recon_iterations: int
    recon_pixel_mm: float
    recon_fov_mm: float
    electronic_noise_photons: float
    water_correction: bool
    imaging_oversampling: int
    imaging_oversampling_z: int
    geometry: str = "fan2d"
    detector_rows: int = 64
    row_pitch_mm: float = 1.14
    pitch: float = 1.0
    tv_weight: float = 1e-4
    # acquisition physics (see ACQUISITION_DEFAULTS)
    focal_spot_mm: float = 1.0
    focal_spot_samples: int = 2
    cell_aperture: float = 0.9
    cell_samples: int = 2
    view_samples: int = 1
    detector_efficiency: float = 0.85
    bowtie: str = "body"
    scatter: str = "kernel"
    scatter_correction: bool = True
    bone_correction: bool = False

    def __post_init__(self) -> None:
        for name, (lo, hi) in _RANGES.items():
            object.__setattr__(self, name, check_range(name, getattr(self, name), lo, hi))
        for name, hi in _POSITIVE.items():
            object.__setattr__(self, name, _check_positive(name, getattr(self, name), hi))
        for name, (lo, hi) in _INTEGERS.items():
            object.__setattr__(self, name, _check_int(name, getattr(self, name), lo, hi))
        check_choice("kernel", self.kernel, KERNELS)
        check_choice("recon_method", self.recon_method, RECON_METHODS)
        check_choice("geometry", self.geometry, GEOMETRIES)
        if self.geometry == "axial" and self.slice_thickness_mm > self.collimation_mm:
            raise SpecError(
                f"slice_thickness_mm = {self.slice_thickness_mm:g} is outside (0, {self.collimation_mm:.4g}] "
                f"for geometry = 'axial': {self.detector_rows} rows of {self.row_pitch_mm:g} mm collimate "
                f"{self.collimation_mm:.4g} mm at the iso-centre"
            )
        if self.geometry == "axial" and self.recon_method == "tv":
            raise SpecError("recon_method = 'tv' is not one of {fbp, sirt, cgls} for geometry = 'axial'")
        for name in ("water_correction", "scatter_correction", "bone_correction"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise SpecError(f"{name} = {value!r} is not one of {{True, False}}")
            object.__setattr__(self, name, bool(value))
        check_choice("bowtie", self.bowtie, BOWTIES)
        check_choice("scatter", self.scatter, SCATTER_MODELS)
        if self.geometry in GEOMETRIES_3D:
            for name, only in _FAN2D_ONLY.items():
                if getattr(self, name) != only:
                    raise SpecError(
                        f"{name} = {getattr(self, name)!r} is not one of {{{only!r}}} for geometry = "
                        f"{self.geometry!r} (the cone-beam scan takes one ray per cell, no bone correction)"
                    )
        if self.source_to_detector_mm <= self.source_to_iso_mm:
            raise SpecError(
                f"source_to_detector_mm = {self.source_to_detector_mm:g} must exceed "
                f"source_to_iso_mm = {self.source_to_iso_mm:g}"
            )
        if self.recon_fov_mm > self.scan_fov_mm:
            raise SpecError(
                f"recon_fov_mm = {self.recon_fov_mm:g} is outside [10, {self.scan_fov_mm:.4g}]: "
                f"{self.n_bins} bins of {self.bin_width_mm:g} mm cover a "
                f"{self.scan_fov_mm:.4g} mm scan field of view"
            )

    # --- derived geometry -------------------------------------------------------------------
    @property
    def magnification(self) -> float:
        """Source-detector over source-iso distance (dimensionless)."""
        return self.source_to_detector_mm / self.source_to_iso_mm

    @property
    def iso_bin_width_mm(self) -> float:
        """Channel pitch scaled back to the iso-centre, in mm."""
        return self.bin_width_mm / self.magnification

    @property
    def fan_angle_deg(self) -> float:
        """Full fan angle in degrees (edge to edge of the detector)."""
        half_width = self.n_bins * self.bin_width_mm / 2.0
        return math.degrees(2.0 * math.atan(half_width / self.source_to_detector_mm))

    @property
    def scan_fov_mm(self) -> float:
        """Diameter in mm of the circle that every view sees whole (the scan field of view)."""
        return 2.0 * self.source_to_iso_mm * math.sin(math.radians(self.fan_angle_deg / 2.0))

    @property
    def collimation_mm(self) -> float:
        """Extent of the detector rows along z at the iso-centre, in mm."""
        return self.detector_rows * self.row_pitch_mm / self.magnification

    @property
    def table_feed_mm(self) -> float:
        """Table travel per rotation in mm: ``pitch * collimation_mm`` (helical), else 0."""
        return self.pitch * self.collimation_mm if self.geometry == "helical" else 0.0

    @property
    def cone_angle_deg(self) -> float:
        """Full cone angle along z in degrees (edge to edge of the rows)."""
        half_height = self.detector_rows * self.row_pitch_mm / 2.0
        return math.degrees(2.0 * math.atan(half_height / self.source_to_detector_mm))

    def view_angles_rad(self) -> np.ndarray:
        """Source angles ``beta_k = 2 pi k / n_views`` in radians, float64 of length ``n_views``."""
        return 2.0 * np.pi * np.arange(self.n_views) / self.n_views

    def bin_offsets_mm(self) -> np.ndarray:
        """Signed offsets in mm of the bin centres from the detector centre, at the detector."""
        return (np.arange(self.n_bins) - (self.n_bins - 1) / 2.0) * self.bin_width_mm

    def to_dict(self) -> dict:
        """JSON-ready description (settings plus derived geometry) for truth.json."""
        d = asdict(self)
        if self.geometry == "fan2d":  # the 3D settings do not apply
            for name in ("geometry", "detector_rows", "row_pitch_mm", "pitch"):
                del d[name]
        if self.recon_method != "tv":
            del d["tv_weight"]
        d["geometry"] = {
            "type": "fanflat" if self.geometry == "fan2d" else self.geometry,
            "convention": GEOMETRY_CONVENTION,
            "source_to_iso_mm": self.source_to_iso_mm,
            "source_to_detector_mm": self.source_to_detector_mm,
            "n_views": self.n_views,
            "n_bins": self.n_bins,
            "bin_width_mm": self.bin_width_mm,
            "iso_bin_width_mm": self.iso_bin_width_mm,
            "fan_angle_deg": self.fan_angle_deg,
            "scan_fov_mm": self.scan_fov_mm,
            "rotation_deg": 360.0,
        }
        if self.geometry != "fan2d":
            d["geometry"].update(
                row_convention=ROW_CONVENTION,
                detector_rows=self.detector_rows,
                row_pitch_mm=self.row_pitch_mm,
                collimation_mm=self.collimation_mm,
                cone_angle_deg=self.cone_angle_deg,
                pitch=self.pitch if self.geometry == "helical" else None,
                table_feed_mm=self.table_feed_mm,
            )
        d["recon_voxel_mm"] = [self.recon_pixel_mm, self.recon_pixel_mm, self.slice_thickness_mm]
        from nmosim.simulate.dose import ctdi_vol_mgy  # dose imports this module

        d["ctdi_vol_mgy"] = round(ctdi_vol_mgy(self), 3)
        return d


def make_protocol(preset: str = "quick", **overrides: object) -> ScannerProtocol:
    """Protocol from a named preset (``quick`` or ``clinical``) with some fields overridden.

    Examples
    --------
    >>> make_protocol("clinical", kernel="bone").kernel
    'bone'

    For the cone-beam geometries the fan2d-only acquisition settings (sample counts, bone
    correction) take their single-ray values unless given.
    """
    if preset not in PRESETS:
        raise SpecError(f"preset = {preset!r} is not one of {{{', '.join(PRESETS)}}}")
    names = tuple(f.name for f in fields(ScannerProtocol))
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise SpecError(f"unknown scanner parameter {unknown[0]!r}; allowed parameters: {', '.join(names)}")
    settings = {**PRESETS[preset], **overrides}
    if settings.get("geometry") in GEOMETRIES_3D:
        settings = {**settings, **{k: v for k, v in _FAN2D_ONLY.items() if k not in overrides}}
    return ScannerProtocol(**settings)


def recon_grid(
    protocol: ScannerProtocol,
    z_lower_mm: float,
    z_upper_mm: float,
    center_xy_mm: tuple[float, float] = (0.0, 0.0),
) -> Grid:
    """Reconstruction grid: a square ``recon_fov_mm`` field at ``recon_pixel_mm``, slices of
    ``slice_thickness_mm`` covering ``[z_lower_mm, z_upper_mm]``, centred on ``center_xy_mm``."""
    if not z_upper_mm > z_lower_mm:
        raise SpecError(f"z range [{z_lower_mm:g}, {z_upper_mm:g}] mm is empty")
    n_xy = max(int(round(protocol.recon_fov_mm / protocol.recon_pixel_mm)), 1)
    n_z = max(int(math.ceil((z_upper_mm - z_lower_mm) / protocol.slice_thickness_mm - 1e-9)), 1)
    spacing = (protocol.recon_pixel_mm, protocol.recon_pixel_mm, protocol.slice_thickness_mm)
    center = (center_xy_mm[0], center_xy_mm[1], (z_lower_mm + z_upper_mm) / 2.0)
    return Grid.centered((n_z, n_xy, n_xy), spacing, center)


def imaging_grid(
    protocol: ScannerProtocol,
    recon: Grid,
    xy_lower_mm: tuple[float, float] | None = None,
    xy_upper_mm: tuple[float, float] | None = None,
) -> Grid:
    """Finer grid for imaging: ``imaging_oversampling`` times finer than ``recon`` in-plane and
    ``imaging_oversampling_z`` times along z.

    Along z it subdivides each reconstruction slice exactly (``kz`` fine slices per slice), so
    fine slices can be summed into reconstruction slices. In-plane it covers the box
    ``[xy_lower_mm, xy_upper_mm]`` (default: the reconstruction grid's extent); make it cover the
    whole object, since anything outside it is invisible to the rays.
    """
    k, kz = protocol.imaging_oversampling, protocol.imaging_oversampling_z
    sx, sy, sz = recon.spacing_mm
    fine = (sx / k, sy / k, sz / kz)
    nz_rec, ny_rec, nx_rec = recon.shape
    ox, oy, oz = recon.origin_mm
    if xy_lower_mm is None:
        xy_lower_mm = (ox - sx / 2.0, oy - sy / 2.0)
    if xy_upper_mm is None:
        xy_upper_mm = (ox + (nx_rec - 0.5) * sx, oy + (ny_rec - 0.5) * sy)
    nx = max(int(math.ceil((xy_upper_mm[0] - xy_lower_mm[0]) / fine[0] - 1e-9)), 1)
    ny = max(int(math.ceil((xy_upper_mm[1] - xy_lower_mm[1]) / fine[1] - 1e-9)), 1)
    cx = (xy_lower_mm[0] + xy_upper_mm[0]) / 2.0
    cy = (xy_lower_mm[1] + xy_upper_mm[1]) / 2.0
    origin_z = oz - sz / 2.0 + fine[2] / 2.0
    return Grid(
        (nz_rec * kz, ny, nx),
        fine,
        (cx - (nx - 1) / 2.0 * fine[0], cy - (ny - 1) / 2.0 * fine[1], origin_z),
    )
