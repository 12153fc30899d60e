"""Sizes refused up front: memory and disk estimates from the grids, z ranges, the limit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nmosim.phantoms.anatomy import scene_bounds
from nmosim.phantoms.errors import SpecError
from nmosim.phantoms.spec import sample_anatomy
from nmosim.simulate import budget
from nmosim.simulate.scanner import make_protocol


def test_the_body_box_holds_anatomies_drawn_from_the_priors() -> None:
    for seed in range(4):
        lo, hi = scene_bounds(sample_anatomy(np.random.default_rng(seed)))
        assert np.all(hi[:2] - lo[:2] <= budget.BODY_BOX_MM), seed


def test_raster_bytes_grow_with_voxels_and_with_surface_samples() -> None:
    small = budget.raster_bytes((100, 100, 100), (2.0, 2.0, 2.0), 1)
    assert small >= 1e6 * budget.LABEL_BYTES_PER_VOXEL  # every voxel holds its labels
    assert budget.raster_bytes((200, 200, 200), (1.0, 1.0, 1.0), 1) > 8 * small * 0.99
    # Sub-samples: s**3 per voxel that a surface crosses.
    assert budget.raster_bytes((100, 100, 100), (2.0, 2.0, 2.0), 4) > 10 * small


def test_phantom_spacing_of_a_tenth_mm_is_refused_naming_it(monkeypatch) -> None:
    monkeypatch.setenv(budget.ENV_LIMIT, "64")
    need = budget.phantom_need(0.1)
    voxels = math.prod(math.ceil(e / 0.1) for e in (*budget.BODY_BOX_MM, 275.0))
    assert need.memory_bytes > voxels * budget.LABEL_BYTES_PER_VOXEL
    with pytest.raises(SpecError, match=r"spacing_mm = 0.1.*about .* GiB of memory; 64.0 GiB available"):
        budget.check_phantom(0.1)
    budget.check_phantom(1.5)  # the default fits
    with pytest.raises(SpecError, match="spacing_mm = 20 is outside"):
        budget.check_phantom(20)
    with pytest.raises(SpecError, match="supersampling = 9 is outside"):
        budget.check_phantom(2.0, 9)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"recon_pixel_mm": 0.001}, "grid .* recon_pixel_mm = 0.001"),
        ({"imaging_oversampling": 8, "recon_pixel_mm": 0.5}, "imaging grid.*imaging_oversampling = 8"),
        ({"slice_thickness_mm": 0.01}, "grid .* slice_thickness_mm = 0.01"),
        ({"n_views": 10000, "n_bins": 8192}, "projections.*n_views = 10000"),
    ],
)
def test_a_case_too_large_names_what_makes_it_large(monkeypatch, overrides, needle) -> None:
    monkeypatch.setenv(budget.ENV_LIMIT, "16")
    protocol = make_protocol("quick", **overrides)
    with pytest.raises(SpecError, match=needle):
        budget.check_case(protocol, (-100.0, 80.0))
    budget.check_case(make_protocol("quick"), (-100.0, 80.0))


def test_workers_multiply_the_memory_of_a_case(monkeypatch) -> None:
    need = budget.case_need(make_protocol("quick"), (-100.0, 80.0))
    monkeypatch.setenv(budget.ENV_LIMIT, str(2.5 * need.memory_bytes / budget.GIB))
    budget.check_case(make_protocol("quick"), (-100.0, 80.0), workers=2)
    with pytest.raises(SpecError, match=r"\(3 workers of .* each\)"):
        budget.check_case(make_protocol("quick"), (-100.0, 80.0), workers=3)


@pytest.mark.parametrize(
    ("z_range", "needle"),
    [
        ((0.0, math.inf), "must be two finite numbers"),
        ((math.nan, 10.0), "must be two finite numbers"),
        ((10.0, 10.0), "is empty"),
        ((1000.0, 1010.0), r"misses the body, which spans z in \[-150, 180\] mm"),
        ((-400.0, -150.0), "misses the body"),
    ],
)
def test_z_ranges_that_cannot_scan_the_body_are_refused(z_range, needle) -> None:
    with pytest.raises(SpecError, match=needle):
        budget.check_z_range(z_range)


def test_a_z_range_touching_the_body_passes_and_sizes_the_slices() -> None:
    assert budget.check_z_range((130, 1000)) == (130.0, 1000.0)
    short = budget.case_need(make_protocol("quick"), (0.0, 30.0))
    long = budget.case_need(make_protocol("quick"), (-100.0, 80.0))
    assert long.memory_bytes > short.memory_bytes and long.disk_bytes > short.disk_bytes


def test_dicom_adds_at_least_its_uncompressed_ct_to_the_disk_need() -> None:
    protocol = make_protocol("quick")
    nifti = budget.case_need(protocol, (-100.0, 80.0)).disk_bytes
    both = budget.case_need(protocol, (-100.0, 80.0), ("nifti", "dicom")).disk_bytes
    slices = math.ceil(180.0 / protocol.slice_thickness_mm)
    pixels = math.ceil(protocol.recon_fov_mm / protocol.recon_pixel_mm) ** 2
    assert both - nifti >= 2 * slices * pixels  # int16 pixel data, one file per slice, never compressed


def test_the_limit_comes_from_the_environment_or_the_machine(monkeypatch) -> None:
    monkeypatch.setenv(budget.ENV_LIMIT, "2")
    assert budget.memory_limit_bytes() == 2 * budget.GIB
    monkeypatch.setenv(budget.ENV_LIMIT, "lots")
    with pytest.raises(SpecError, match=f"{budget.ENV_LIMIT} = 'lots' is not a number"):
        budget.memory_limit_bytes()
    monkeypatch.delenv(budget.ENV_LIMIT)
    assert 0 < budget.memory_limit_bytes() < math.inf
