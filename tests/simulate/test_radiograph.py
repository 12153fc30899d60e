"""AP radiograph: cone-beam geometry against closed-form chords, polychromatic signal, masks."""

import numpy as np
import pytest

from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.grid import Grid
from nmosim.phantoms.materials import WATER
from nmosim.phantoms.rasterize import Part, rasterize
from nmosim.phantoms.shapes import Sphere
from nmosim.simulate.physics import linear_attenuation_per_cm, tube_spectrum
from nmosim.simulate.radiograph import RadiographGeometry, cone_projection, simulate_radiograph

GEOMETRY = RadiographGeometry(detector_width_mm=240, detector_height_mm=200, pixel_mm=1.0, center_z_mm=0.0)


def sphere_volume(center, radius, spacing=1.0):
    grid = Grid.centered((120, 140, 140), (spacing,) * 3)
    labels = rasterize([Part("ball", Sphere(center, radius), 1, 2)], grid, supersampling=3)
    return labels.tissue_fraction(2), grid


def pixel_of(point, geometry):
    """Detector pixel (row v, column u) hit by the ray from the focal spot through ``point``."""
    span = geometry.source_y_mm - geometry.detector_y_mm
    t = (geometry.source_y_mm - point[1]) / span
    u, v = geometry.detector_coordinates()
    col = np.argmin(np.abs(u - point[0] / t))
    row = np.argmin(np.abs(v - (point[2] - geometry.center_z_mm) / t))
    return row, col


def test_chord_through_a_sphere_centre_is_its_diameter_at_the_magnified_position():
    centre, radius = (30.0, 10.0, -20.0), 25.0
    volume, grid = sphere_volume(centre, radius)
    image = cone_projection(volume, grid, GEOMETRY)
    row, col = pixel_of(centre, GEOMETRY)
    assert np.unravel_index(image.argmax(), image.shape) == pytest.approx((row, col), abs=1)
    assert image[row, col] == pytest.approx(2 * radius, rel=0.01)
    # The shadow is magnified: its width on the detector is 2R / t (t < 1 at the object).
    span = GEOMETRY.source_y_mm - GEOMETRY.detector_y_mm
    t = (GEOMETRY.source_y_mm - centre[1]) / span
    shadow_width = (image[row] > 0.5).sum() * GEOMETRY.pixel_mm
    assert shadow_width == pytest.approx(2 * radius / t, abs=3 * GEOMETRY.pixel_mm)


def test_right_side_projects_to_positive_u_and_superior_to_positive_v():
    volume, grid = sphere_volume((50.0, 0.0, 30.0), 8.0)
    image = cone_projection(volume, grid, GEOMETRY)
    u, v = GEOMETRY.detector_coordinates()
    row, col = np.unravel_index(image.argmax(), image.shape)
    assert u[col] > 0 and v[row] > 0


def test_radiograph_attenuation_masks_and_noise():
    volume, grid = sphere_volume((0.0, 0.0, 0.0), 40.0)
    masks = {"ball": volume >= 0.5}
    clean = simulate_radiograph(volume, np.zeros_like(volume), masks, grid, GEOMETRY, None)
    row, col = pixel_of((0, 0, 0), GEOMETRY)
    # 8 cm of water: the energy-weighted transmission of the tube spectrum, computed directly.
    spectrum = tube_spectrum(GEOMETRY.kvp, GEOMETRY.filtration_mm_al)
    weight = spectrum.photons_per_mas_mm2 * spectrum.energies_kev
    mu = linear_attenuation_per_cm(WATER, spectrum.energies_kev)
    expected = -np.log((weight * np.exp(-mu * 8.0)).sum() / weight.sum())
    assert clean.image[row, col] == pytest.approx(expected, rel=0.01)
    assert abs(clean.image[5, 5]) < 1e-4  # air
    assert clean.masks["ball"][row, col] and not clean.masks["ball"][5, 5]
    noisy = simulate_radiograph(
        volume, np.zeros_like(volume), masks, grid, GEOMETRY, np.random.default_rng(0)
    )
    again = simulate_radiograph(
        volume, np.zeros_like(volume), masks, grid, GEOMETRY, np.random.default_rng(0)
    )
    assert np.array_equal(noisy.image, again.image)
    assert 0 < np.std(noisy.image[:20, :20]) < 0.05


def test_bad_geometry_names_the_parameter():
    with pytest.raises(SpecError, match="kvp = 300"):
        RadiographGeometry(kvp=300)
