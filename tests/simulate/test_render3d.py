"""Surface renderings and meshes against shapes whose outline and position are known."""

import numpy as np
import pytest

from nmosim.phantoms.grid import Grid
from nmosim.simulate import render3d

COLOURS = {1: (1.0, 1.0, 1.0), 2: (1.0, 0.0, 0.0)}


def ball(grid, centre, radius):
    z, y, x = np.meshgrid(*(grid.voxel_centers_axis(a) for a in (2, 1, 0)), indexing="ij")
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius**2


@pytest.fixture
def scene():
    grid = Grid.centered((40, 40, 80), (2.0, 2.0, 2.0))
    classes = np.zeros(grid.shape, np.uint8)
    classes[ball(grid, (40.0, 0.0, 0.0), 20.0)] = 1  # a ball on the patient's right
    classes[ball(grid, (-40.0, 0.0, 0.0), 12.0)] = 2  # a smaller one on the left
    return grid, classes


def seen(rendering, value):
    return rendering.classes == value


def test_ap_view_shows_the_patients_right_on_the_viewers_left(scene):
    grid, classes = scene
    camera = render3d.camera_for(classes, grid, render3d.VIEW_AZIMUTH_DEG["AP"], 1.0)
    rendering = render3d.render_classes(classes, grid, COLOURS, camera)
    right_cols = np.nonzero(seen(rendering, 1).any(axis=0))[0]
    left_cols = np.nonzero(seen(rendering, 2).any(axis=0))[0]
    assert right_cols.mean() < left_cols.mean()
    pa = render3d.render_classes(classes, grid, COLOURS, render3d.camera_for(classes, grid, 180.0, 1.0))
    assert np.nonzero(seen(pa, 1).any(axis=0))[0].mean() > np.nonzero(seen(pa, 2).any(axis=0))[0].mean()


def test_a_ball_shows_a_disc_of_its_radius_where_the_camera_projects_its_centre(scene):
    grid, classes = scene
    for azimuth in (0.0, 45.0, 90.0):
        camera = render3d.camera_for(classes, grid, azimuth, 0.5)
        rendering = render3d.render_classes(classes, grid, COLOURS, camera)
        disc = seen(rendering, 1)
        if azimuth == 90.0:  # seen from the right, the near ball hides the far one
            disc = rendering.classes > 0
        area_mm2 = disc.sum() * camera.pixel_mm**2
        if azimuth != 90.0:
            assert area_mm2 == pytest.approx(np.pi * 20.0**2, rel=0.08)
            rows, cols = np.nonzero(disc)
            col, row = camera.project(np.array([40.0, 0.0, 0.0]))
            assert cols.mean() == pytest.approx(col, abs=1.5) and rows.mean() == pytest.approx(row, abs=1.5)


def test_shading_is_brightest_facing_the_light(scene):
    grid, classes = scene
    camera = render3d.camera_for(classes, grid, 0.0, 0.5)
    rendering = render3d.render_classes(classes, grid, COLOURS, camera)
    brightness = rendering.rgb.sum(axis=-1)
    col, row = camera.project(np.array([40.0, 0.0, 0.0]))
    centre = brightness[int(round(row)), int(round(col))]
    rim = brightness[int(round(row)), int(round(col)) + int(18 / camera.pixel_mm)]
    assert centre > rim


def test_mesh_vertices_lie_on_the_ball_surface(scene):
    grid, classes = scene
    mesh = render3d.surface_mesh(classes == 1, grid, step=1)
    radius = np.linalg.norm(mesh.vertices - np.array([40.0, 0.0, 0.0]), axis=1)
    assert np.abs(radius - 20.0).max() < 2.0  # one voxel
    assert mesh.faces.max() < len(mesh.vertices)
    assert render3d.surface_mesh(np.zeros((4, 4, 4), bool), grid) is None
