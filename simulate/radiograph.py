"""AP pelvis radiograph: polychromatic cone-beam projection of a phantom on the CPU, with masks.

Projects basis maps and label masks through a point source onto a flat detector; it builds no
phantom and writes no files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from nmosim.phantoms.errors import check_range
from nmosim.phantoms.grid import Grid
from nmosim.simulate import physics


@dataclass(frozen=True)
class RadiographGeometry:
    """An AP radiography room (mm, kV, mAs): the tube in front of the patient, detector behind.

    The central ray runs along -y through ``(0, center_z_mm)``; the detector plane is at
    ``y = detector_y_mm`` and the focal spot ``source_to_detector_mm`` in front of it.
    Typical AP pelvis [K]: 115 cm source-image distance, 70-80 kV, 2.5 mm Al, 20-40 mAs.
    """

    source_to_detector_mm: float = 1150.0
    detector_y_mm: float = -190.0
    center_z_mm: float = 0.0
    detector_width_mm: float = 430.0
    detector_height_mm: float = 300.0
    pixel_mm: float = 1.0
    kvp: float = 75.0
    filtration_mm_al: float = 2.5
    mas: float = 25.0

    def __post_init__(self) -> None:
        check_range("source_to_detector_mm", self.source_to_detector_mm, 500.0, 2000.0)
        check_range("detector_width_mm", self.detector_width_mm, 50.0, 600.0)
        check_range("detector_height_mm", self.detector_height_mm, 50.0, 600.0)
        check_range("pixel_mm", self.pixel_mm, 0.05, 5.0)
        check_range("kvp", self.kvp, 40.0, 150.0)
        check_range("filtration_mm_al", self.filtration_mm_al, 0.0, 20.0)
        check_range("mas", self.mas, 0.01, 1000.0)

    @property
    def source_y_mm(self) -> float:
        return self.detector_y_mm + self.source_to_detector_mm

    def detector_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel centres (mm) on the detector: ``u`` along +x (columns), ``v`` along +z (rows)."""
        nu = int(round(self.detector_width_mm / self.pixel_mm))
        nv = int(round(self.detector_height_mm / self.pixel_mm))
        u = (np.arange(nu) - (nu - 1) / 2) * self.pixel_mm
        v = (np.arange(nv) - (nv - 1) / 2) * self.pixel_mm
        return u, v

    def to_dict(self) -> dict:
        return {**asdict(self), "source_y_mm": self.source_y_mm, "projection": "AP, cone beam"}


def cone_projection(volume: np.ndarray, grid: Grid, geometry: RadiographGeometry) -> np.ndarray:
    """Line integrals (value x mm) of ``volume`` [z, y, x] from the focal spot to each pixel.

    Exact for a point source: each coronal plane of the volume is magnified onto the detector
    (bilinear sampling) and added with the path length of the ray through that plane's slab.
    Returns ``[v, u]``, v along +z (superior) and u along +x (patient's right).
    """
    u, v = geometry.detector_coordinates()
    uu, vv = np.meshgrid(u, v)
    ys = grid.voxel_centers_axis(1)
    span = geometry.source_y_mm - geometry.detector_y_mm
    out = np.zeros(uu.shape, dtype=np.float64)
    x0, z0 = grid.origin_mm[0], grid.origin_mm[2]
    sx, sz = grid.spacing_mm[0], grid.spacing_mm[2]
    for j, y in enumerate(ys):
        plane = volume[:, j, :]
        if not plane.any():
            continue
        t = (geometry.source_y_mm - y) / span  # fraction of the way from source to detector
        x = t * uu
        z = geometry.center_z_mm + t * (vv - 0.0)
        coords = np.stack([(z - z0) / sz, (x - x0) / sx])
        out += ndimage.map_coordinates(plane, coords, order=1, mode="constant", cval=0.0)
    # Path length through a slab of thickness dy along a ray tilted from the central ray.
    obliquity = np.sqrt(span**2 + uu**2 + vv**2) / span
    return (out * grid.spacing_mm[1] * obliquity).astype(np.float32)


@dataclass(frozen=True)
class Radiograph:
    """An AP radiograph: ``image`` = -log(I / I0) (bone bright) on the detector, ``[v, u]`` with
    v superior-up as rows from the bottom, and masks of what projects onto each pixel."""

    image: np.ndarray
    masks: dict[str, np.ndarray]
    geometry: RadiographGeometry


def simulate_radiograph(
    water_map: np.ndarray,
    bone_map: np.ndarray,
    masks: dict[str, np.ndarray],
    grid: Grid,
    geometry: RadiographGeometry,
    rng: np.random.Generator | None,
) -> Radiograph:
    """Polychromatic AP radiograph of basis maps (volume fractions) with quantum noise.

    ``masks`` (boolean volumes on ``grid``) are projected too: a pixel is in a mask's projection
    when the ray crosses at least half a millimetre of it.
    """
    spectrum = physics.tube_spectrum(geometry.kvp, geometry.filtration_mm_al).rebinned(
        physics.PROJECTION_BIN_KEV / 2
    )
    line_water_cm = cone_projection(water_map, grid, geometry) / 10.0
    line_bone_cm = cone_projection(bone_map, grid, geometry) / 10.0
    area = geometry.pixel_mm**2
    counts = physics.expected_counts(
        line_water_cm, line_bone_cm, spectrum, mas=geometry.mas, pixel_area_mm2=area,
        source_to_detector_mm=geometry.source_to_detector_mm,
    )  # fmt: skip
    readings = counts.mean if rng is None else physics.add_noise(counts, rng, 0.0)
    i0 = physics.flat_field(
        spectrum, mas=geometry.mas, pixel_area_mm2=area, source_to_detector_mm=geometry.source_to_detector_mm
    )
    image = physics.log_projections(readings, i0)
    projected = {
        name: cone_projection(mask.astype(np.float32), grid, geometry) >= 0.5 for name, mask in masks.items()
    }
    return Radiograph(image=image, masks=projected, geometry=geometry)
