"""A CT quality-assurance phantom: a water cylinder with an insert section and a uniformity
section, as water- and bone-basis maps on a protocol's imaging grid.

Layout (mm, patient frame, centred on the rotation axis). Insert section (at z = 0): rods of
``INSERT_DIAMETER_MM`` on a ring of radius ``INSERT_RING_MM`` (air first, at 12 o'clock, then
clockwise), water between and around them. The air rod's rim is the edge for the MTF (a circular
edge, AAPM Report 233). Uniformity section (at z = ``UNIFORMITY_SECTION_Z_MM``): water only, for
noise, NPS and uniformity, as CT QA phantoms measure them in a module of their own (ACR CT
accreditation phantom module 3, Catphan CTP486): in the insert section the dense rods' streaks and
shading reach the centre (several HU in a noise-free scan), which is no property of the noise.
It builds maps only; scanning is :mod:`nmosim.simulate.ct`'s, measuring :mod:`.image_quality`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import Tissue
from nmosim.phantoms.materials import AIR, CORTICAL_BONE, PMMA, WATER, Material, tissue_materials
from nmosim.simulate import physics
from nmosim.simulate.ct import cylinder_grids
from nmosim.simulate.scanner import ScannerProtocol

DIAMETERS_MM = (200.0, 320.0)  # head-size and body-size water cylinders (AAPM CT phantoms)
INSERT_DIAMETER_MM = 20.0
INSERT_RING_MM = 60.0
EDGE_INSERT = "air"
# Centre of the uniformity section along z (mm): one 40 mm module away from the insert section, as
# the modules of the ACR CT accreditation phantom (each 40 mm long) follow one another.
UNIFORMITY_SECTION_Z_MM = 40.0


@dataclass(frozen=True)
class Insert:
    """A rod of ``material`` with its centre at ``center_xy_mm`` (mm) and ``diameter_mm``."""

    name: str
    material: Material
    center_xy_mm: tuple[float, float]
    diameter_mm: float = INSERT_DIAMETER_MM


@dataclass(frozen=True)
class QAPhantom:
    """The phantom: a water cylinder of ``diameter_mm`` holding ``inserts``."""

    diameter_mm: float
    inserts: tuple[Insert, ...]

    def to_dict(self) -> dict:
        return {
            "diameter_mm": self.diameter_mm,
            "material": WATER.name,
            "inserts": [
                {
                    "name": i.name,
                    "material": i.material.name,
                    "density_g_cm3": i.material.density_g_cm3,
                    "center_xy_mm": list(i.center_xy_mm),
                    "diameter_mm": i.diameter_mm,
                }
                for i in self.inserts
            ],  # fmt: skip
            "edge_insert": EDGE_INSERT,
        }


def insert_materials() -> list[tuple[str, Material]]:
    """The insert materials, from the project's tissues (DOMAIN.md 2.6, 4.2): air, fat, acrylic,
    trabecular bone (~300 HU), cortical bone (ICRU 46, ~1300 HU), mature HO cortex (~1450 HU) and
    mature HO trabecular core (~310 HU)."""
    tissues = tissue_materials()
    return [
        ("air", AIR),
        ("fat", tissues[Tissue.FAT]),
        ("acrylic", PMMA),
        ("trabecular_bone", tissues[Tissue.TRABECULAR_BONE]),
        ("cortical_bone", CORTICAL_BONE),
        ("ho_mature_cortex", tissues[Tissue.HO_CORTEX]),
        ("ho_mature_core", tissues[Tissue.HO_TRABECULAR]),
    ]


def qa_phantom(diameter_mm: float = DIAMETERS_MM[0]) -> QAPhantom:
    """The QA phantom of ``diameter_mm`` (one of :data:`DIAMETERS_MM`)."""
    if float(diameter_mm) not in DIAMETERS_MM:
        raise SpecError(f"diameter_mm = {diameter_mm!r} is not one of {{200, 320}}")
    named = insert_materials()
    inserts = []
    for k, (name, material) in enumerate(named):
        angle = 2.0 * math.pi * k / len(named)  # clockwise from anterior (+y) seen from the feet
        center = (INSERT_RING_MM * math.sin(angle), INSERT_RING_MM * math.cos(angle))
        inserts.append(Insert(name, material, (round(center[0], 6), round(center[1], 6))))
    return QAPhantom(float(diameter_mm), tuple(inserts))


def uniformity_section(phantom: QAPhantom) -> QAPhantom:
    """The uniformity section of ``phantom``: its water cylinder without inserts."""
    return QAPhantom(phantom.diameter_mm, ())


def uniform_radius_mm() -> float:
    """Radius (mm) of the uniform water centre, inside the ring of inserts by 5 mm."""
    return INSERT_RING_MM - INSERT_DIAMETER_MM / 2.0 - 5.0


def periphery_centers_mm(phantom: QAPhantom, roi_radius_mm: float) -> list[tuple[float, float]]:
    """Centres of four peripheral ROIs (anterior, right, posterior, left), 10 mm inside the rim."""
    r = phantom.diameter_mm / 2.0 - 10.0 - roi_radius_mm
    return [(0.0, r), (r, 0.0), (0.0, -r), (-r, 0.0)]


def material_basis(materials: Sequence[Material], spectrum: physics.Spectrum) -> np.ndarray:
    """Water and bone volume fractions ``(len(materials), 2)`` of each material: the fit of
    :func:`nmosim.simulate.physics.basis_coefficients`, for materials that are not tissues."""
    energies = spectrum.energies_kev
    sqrt_w = np.sqrt(spectrum.photons_per_mas_mm2 * physics.detector_weights(spectrum))
    basis = np.stack([physics.linear_attenuation_per_cm(m, energies) for m in physics.BASIS_MATERIALS], 1)
    targets = np.stack([physics.linear_attenuation_per_cm(m, energies) for m in materials], axis=1)
    coef, *_ = np.linalg.lstsq(basis * sqrt_w[:, None], targets * sqrt_w[:, None], rcond=None)
    return coef.T


def _disc_fraction(grid: Grid, center_xy: tuple[float, float], radius: float, supersample: int) -> np.ndarray:
    """Area fraction ``[y, x]`` of each pixel of ``grid`` inside a disc (``supersample**2`` points)."""
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    x = grid.voxel_centers_axis(0) - center_xy[0]
    y = grid.voxel_centers_axis(1) - center_xy[1]
    fraction = np.zeros((y.size, x.size))
    for oy in offsets:
        yy = (y + oy * grid.spacing_mm[1])[:, None] ** 2
        for ox in offsets:
            fraction += (yy + (x + ox * grid.spacing_mm[0])[None, :] ** 2) <= radius * radius
    return fraction / supersample**2


def phantom_maps(
    phantom: QAPhantom,
    protocol: ScannerProtocol,
    spectrum: physics.Spectrum,
    n_slices: int = 1,
    *,
    z_margin_mm: float = 0.0,
    z_center_mm: float = 0.0,
    supersample: int = 4,
) -> tuple[np.ndarray, np.ndarray, Grid, Grid]:
    """Basis maps of the phantom (long along z) on the protocol's grids.

    Returns ``(water_map, bone_map, imaging_grid, recon_grid)`` as
    :func:`nmosim.simulate.ct.water_cylinder_maps` does: ``n_slices`` reconstructed slices centred
    on z = ``z_center_mm`` (mm), the phantom and imaging grid reaching ``z_margin_mm`` beyond them.
    """
    if phantom.diameter_mm > 0.95 * protocol.recon_fov_mm:
        raise SpecError(f"the {phantom.diameter_mm:g} mm phantom does not fit the recon_fov_mm = "
                        f"{protocol.recon_fov_mm:g} field of view; give a larger one")  # fmt: skip
    rec, fine = (_shifted(g, z_center_mm) for g in cylinder_grids(protocol, n_slices, z_margin_mm))
    coef = material_basis([i.material for i in phantom.inserts], spectrum) if phantom.inserts else []
    water = _disc_fraction(fine, (0.0, 0.0), phantom.diameter_mm / 2.0, supersample)
    bone = np.zeros_like(water)
    for insert, (a_w, a_b) in zip(phantom.inserts, coef, strict=True):  # none in a uniformity section
        part = _disc_fraction(fine, insert.center_xy_mm, insert.diameter_mm / 2.0, supersample)
        water += part * (a_w - 1.0)  # the rod replaces water
        bone += part * a_b
    shape = fine.shape
    return (np.broadcast_to(water.astype(np.float32), shape).copy(),
            np.broadcast_to(bone.astype(np.float32), shape).copy(), fine, rec)  # fmt: skip


def _shifted(grid: Grid, dz_mm: float) -> Grid:
    """``grid`` moved by ``dz_mm`` along z."""
    ox, oy, oz = grid.origin_mm
    return Grid(grid.shape, grid.spacing_mm, (ox, oy, oz + float(dz_mm)))
