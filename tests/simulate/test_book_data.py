"""Where the book cuts and measures, on hand-built label volumes and geometry."""

import numpy as np
import pytest

from nmosim.phantoms.grid import Grid
from nmosim.simulate import book_data


def volume(nx=40):
    grid = Grid((1, 1, nx), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    return np.zeros(grid.shape, np.uint8), grid


def test_gap_runs_from_the_spur_tip_to_the_nearest_femur_voxel():
    s, grid = volume()
    s[0, 0, :3] = 3  # pelvis
    s[0, 0, 3:8] = 6  # pelvic spur, tip at x = 7
    s[0, 0, 20:] = 4  # femur_right, first voxel at x = 20
    gap = book_data.locate_gap(s, grid, "right")
    assert gap.kind == "gap"
    assert gap.spur_mm[0] == 7.0 and gap.bone_mm[0] == 20.0
    assert gap.centre_distance_mm == pytest.approx(13.0)  # 12 empty voxels: a 12 mm surface gap


def test_femoral_spur_measures_to_the_pelvis_and_left_uses_left_labels():
    s, grid = volume()
    s[0, 0, :3] = 3
    s[0, 0, 30:] = 5  # femur_left
    s[0, 0, 22:30] = 7  # femoral spur of the left hip, tip at x = 22
    s[0, 0, 10:12] = 6  # a right-hip island must not matter
    gap = book_data.locate_gap(s, grid, "left")
    assert gap.spur_mm[0] == 22.0 and gap.bone_mm[0] == 2.0


def test_bridge_islands_and_no_ho():
    s, grid = volume()
    s[0, 0, :3] = 3
    s[0, 0, 20:] = 4
    assert book_data.locate_gap(s, grid, "right") is None
    s[0, 0, 10:12] = 6
    assert book_data.locate_gap(s, grid, "right").kind == "islands"
    s[0, 0, 3:20] = 6
    bridge = book_data.locate_gap(s, grid, "right")
    assert bridge.kind == "bridge" and bridge.centre_distance_mm == 0.0


def test_radiograph_pixel_magnifies_from_the_centre_and_flips_right_to_the_viewers_left():
    geometry = {"source_y_mm": 960.0, "detector_y_mm": -190.0, "center_z_mm": 0.0, "pixel_mm": 1.0}
    shape = (301, 431)
    centre = book_data.radiograph_pixel(np.array([0.0, 0.0, 0.0]), geometry, shape)[0]
    assert centre == pytest.approx([215.0, 150.0])
    right_up = book_data.radiograph_pixel(np.array([100.0, 0.0, 50.0]), geometry, shape)[0]
    magnification = 1150.0 / 960.0  # source-detector over source-object distance
    assert right_up == pytest.approx([215.0 - 100.0 * magnification, 150.0 - 50.0 * magnification])


def test_landmark_levels_follow_the_truth_landmarks():
    truth = {"landmarks_right_mm": {"head_center": [90.0, 0.0, 5.0], "head_radius": 24.0,
                                    "lesser_trochanter": [120.0, -20.0, -55.0]},
             "anatomy": {"joint_space_mm": 4.0}}  # fmt: skip
    levels = book_data.landmark_levels_mm(truth)
    assert levels == {"acetabular roof": 33.0, "femoral head centre": 5.0, "lesser trochanter": -55.0}
    assert list(book_data.head_centre_mm(truth, "left")) == [-90.0, 0.0, 5.0]
