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

# An ideal room for the geometry tests: 1 mm pixels, no focal spot, LSF, scatter or grid.
GEOMETRY = RadiographGeometry(
    detector_width_mm=240, detector_height_mm=200, pixel_mm=1.0, detector_pitch_mm=0.25, projection_mm=1.0,
    center_z_mm=0.0, focal_spot_mm=0.0, detector_lsf_mm=0.0, scatter=False, grid=False,
)  # fmt: skip


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


# --- detector, scatter, grid and processing ---------------------------------------------------------

SMALL = dict(
    detector_width_mm=60, detector_height_mm=60, pixel_mm=0.3, detector_pitch_mm=0.15, projection_mm=0.3
)


def edge_phantom():
    """A 40 mm water block whose right half (x > 0) holds bone, centred on the blur plane (y = 0)."""
    grid = Grid.centered((60, 40, 60), (1.0, 1.0, 1.0))
    water = np.zeros(grid.shape, np.float32)
    water[:, 0:40, :] = 1.0
    bone = np.zeros_like(water)
    x = grid.voxel_centers_axis(0)
    bone[:, 10:30, x > 0] = 1.0
    return water, bone, grid


def edge_width_mm(image: np.ndarray, pixel_mm: float) -> float:
    """10-90 % rise distance (mm) of the mean edge profile across the image's columns."""
    profile = image[image.shape[0] // 4 : 3 * image.shape[0] // 4].mean(axis=0)
    lo, hi = np.median(profile[:40]), np.median(profile[-40:])
    p = (profile - lo) / (hi - lo)
    x = np.arange(p.size) * pixel_mm
    return float(np.interp(0.9, p, x) - np.interp(0.1, p, x))


def test_edge_spread_widens_with_the_focal_spot_by_the_geometric_unsharpness():
    water, bone, grid = edge_phantom()
    widths, blurs = [], []
    for focal in (0.3, 2.0):
        g = RadiographGeometry(**SMALL, focal_spot_mm=focal, scatter=False, grid=False)
        image = simulate_radiograph(water, bone, {}, grid, g, None).image
        widths.append(edge_width_mm(image, g.pixel_mm))
        # f (M - 1) at the blur plane, computed here from the room (not from the geometry's property).
        m = g.source_to_detector_mm / (g.source_to_detector_mm + g.detector_y_mm)
        blurs.append(focal * (m - 1.0))
    assert widths[1] > widths[0]
    # A Gaussian of FWHM b adds (in quadrature) a 10-90 % width of 2.563 b / 2.355.
    added = np.sqrt(widths[1] ** 2 - widths[0] ** 2)
    expected = 2.563 / 2.355 * np.sqrt(blurs[1] ** 2 - blurs[0] ** 2)
    assert added == pytest.approx(expected, rel=0.35)


def slab_scatter_fraction(grid_on: bool) -> float:
    """Scatter fraction at the centre behind 20 cm of water filling a 280 mm field (AP pelvis size)."""
    grid = Grid.centered((75, 50, 75), (4.0, 4.0, 4.0))
    water = np.zeros(grid.shape, np.float32)
    water[:, 0:50, :] = 1.0  # 200 mm thick
    bone = np.zeros_like(water)
    room = dict(detector_width_mm=280, detector_height_mm=280, pixel_mm=1.0, detector_pitch_mm=0.2)
    room |= dict(projection_mm=2.0, grid=grid_on)
    with_s = simulate_radiograph(water, bone, {}, grid, RadiographGeometry(**room, scatter=True), None).image
    without = simulate_radiograph(
        water, bone, {}, grid, RadiographGeometry(**room, scatter=False), None
    ).image
    c = tuple(n // 2 for n in with_s.shape)
    # image = -log(reading / I0): the ratio of primary to primary + scatter is exp(with - without).
    return float(1.0 - np.exp(with_s[c] - without[c]))


def test_scatter_fraction_of_an_ap_pelvis_falls_to_a_quarter_with_a_grid():
    no_grid, grid = slab_scatter_fraction(False), slab_scatter_fraction(True)
    assert 0.5 <= no_grid <= 0.7  # AP pelvis without grid (Bushberg 2012 ch. 7)
    assert 0.15 <= grid <= 0.3  # with a 12:1 grid
    assert grid < no_grid


def bridge_phantom(with_bridge: bool):
    """Soft tissue 200 mm thick with a pelvis block and a femur block 20 mm apart, joined (or not)
    by a 6 mm bar of immature HO (bone fraction 0.35)."""
    grid = Grid.centered((80, 60, 60), (1.0, 4.0, 1.0))
    water = np.zeros(grid.shape, np.float32)
    water[:, 5:55, :] = 1.0
    bone = np.zeros_like(water)
    bone[50:70, 28:33, 15:45] = 1.0  # pelvis (z 10..30 mm above the centre)
    bone[10:30, 28:33, 15:45] = 1.0  # femur
    if with_bridge:
        bone[30:50, 29:31, 27:33] = 0.35
    return water, bone, grid


def bridge_cnr(with_bridge: bool, seed: int = 3) -> float:
    water, bone, grid = bridge_phantom(with_bridge)
    g = RadiographGeometry(detector_width_mm=80, detector_height_mm=80, pixel_mm=0.3, detector_pitch_mm=0.15)
    r = simulate_radiograph(water, bone, {}, grid, g, np.random.default_rng(seed))
    u, v = g.detector_coordinates()
    m = g.source_to_detector_mm / (g.source_y_mm - 0.0)  # magnification of the bridge's plane
    rows = np.abs(v) < 6 * m  # the middle of the 20 mm joint space
    bar = np.abs(u) < 2 * m
    beside = (np.abs(u) > 6 * m) & (np.abs(u) < 12 * m)
    img = r.processed[rows]
    background = img[:, beside]
    return float((img[:, bar].mean() - background.mean()) / background.std())


def test_a_bridging_ho_bar_stands_out_in_the_processed_image():
    assert bridge_cnr(True) > 4.0  # Rose criterion (CNR 3-5): visible
    assert abs(bridge_cnr(False)) < 2.0  # nothing there: no contrast


def test_output_shape_pixel_size_processing_range_and_same_seed_same_bytes():
    water, bone, grid = edge_phantom()
    g = RadiographGeometry(**SMALL)
    a = simulate_radiograph(water, bone, {"bone": bone > 0}, grid, g, np.random.default_rng(7))
    b = simulate_radiograph(water, bone, {"bone": bone > 0}, grid, g, np.random.default_rng(7))
    c = simulate_radiograph(water, bone, {"bone": bone > 0}, grid, g, np.random.default_rng(8))
    assert a.image.shape == a.processed.shape == a.masks["bone"].shape == (200, 200)  # 60 mm / 0.3 mm
    u, v = g.detector_coordinates()
    assert np.allclose(np.diff(u), 0.3) and np.allclose(np.diff(v), 0.3)
    assert a.processed.min() >= 0.0 and a.processed.max() <= 1.0
    assert a.image.tobytes() == b.image.tobytes() and a.processed.tobytes() == b.processed.tobytes()
    assert a.image.tobytes() != c.image.tobytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pixel_mm": 0.25, "detector_pitch_mm": 0.15}, "pixel_mm = 0.25 must be an integer multiple"),
        ({"focal_spot_mm": -1.0}, "focal_spot_mm = -1"),
        ({"grid_scatter_transmission": 2.0}, "grid_scatter_transmission = 2"),
        ({"grid": "yes"}, "grid = 'yes' is not one of"),
    ],
)
def test_bad_detector_settings_name_the_parameter(kwargs, message):
    with pytest.raises(SpecError, match=message):
        RadiographGeometry(**kwargs)
