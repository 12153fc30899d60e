"""simulate_ct in memory: one stream per component, threads that change nothing, a case read back whole."""

from __future__ import annotations

import numpy as np
import pytest

import nmosim
from nmosim.simulate.provenance import STREAM_KEYS, case_generators, stream_seed

TINY = {"recon_pixel_mm": 4, "slice_thickness_mm": 3, "n_views": 90}
Z_RANGE = (-3.0, 3.0)


@pytest.fixture(scope="module")
def phantom():
    return nmosim.build_phantom(nmosim.CaseSpec(phase="b", seed=5))


@pytest.fixture(scope="module")
def ct(phantom):
    return nmosim.simulate_ct(phantom, nmosim.protocol("quick", **TINY), z_range_mm=Z_RANGE)


def test_ct_case_volumes_share_one_grid_and_the_contract_types(ct):
    for name, dtype in (("hu", np.int16), ("structures", np.uint8), ("tissues", np.uint8),
                        ("ho_instances", np.uint16)):  # fmt: skip
        volume = getattr(ct, name)
        assert volume.shape == ct.grid.shape and volume.dtype == dtype, name
    assert ct.truth["scanner"]["n_views"] == 90 and ct.truth["case_id"] is None
    # the labels' HO volume in the truth is that of the returned structures
    voxel_ml = ct.grid.voxel_volume_mm3 / 1000
    assert ct.truth["labels_ho_volume_ml"]["right"] == round(float((ct.structures == 6).sum()) * voxel_ml, 4)


def test_changing_the_ct_protocol_leaves_the_radiograph_unchanged(phantom, ct):
    other = nmosim.simulate_ct(phantom, nmosim.protocol("quick", **{**TINY, "n_views": 60, "mas": 80}),
                               z_range_mm=Z_RANGE)  # fmt: skip
    assert not np.array_equal(other.hu, ct.hu)
    assert np.array_equal(other.radiograph.image, ct.radiograph.image)


def test_threads_change_no_byte(phantom, ct):
    again = nmosim.simulate_ct(phantom, nmosim.protocol("quick", **TINY), z_range_mm=Z_RANGE, threads=1)
    for name in ("hu", "structures", "tissues", "ho_instances"):
        assert getattr(again, name).tobytes() == getattr(ct, name).tobytes(), name
    assert np.array_equal(again.radiograph.image, ct.radiograph.image)


def test_progress_reports_every_stage(phantom):
    stages = []
    nmosim.simulate_ct(phantom, nmosim.protocol("quick", **TINY), z_range_mm=Z_RANGE,
                       progress=lambda stage, seconds: stages.append((stage, seconds)))  # fmt: skip
    assert [s for s, _ in stages] == ["labels", "imaging maps", "ct", "radiograph", "truth"]
    assert all(seconds >= 0 for _, seconds in stages)


def test_write_and_read_give_back_the_same_case(ct, tmp_path):
    folder = nmosim.write_case(ct, tmp_path / "case_0005")
    back = nmosim.read_case(folder)
    for name in ("hu", "structures", "tissues", "ho_instances"):
        assert np.array_equal(getattr(back, name), getattr(ct, name)), name
    assert back.grid == ct.grid
    assert np.array_equal(back.radiograph.image, ct.radiograph.image)
    assert back.radiograph.masks.keys() == ct.radiograph.masks.keys()
    assert back.radiograph.geometry == ct.radiograph.geometry
    assert back.truth["case_id"] == "case_0005" and back.truth["right"] == ct.truth["right"]


def test_the_anatomy_does_not_depend_on_the_lesions():
    # The anatomy and soft tissue have their own streams: asking for HO changes neither.
    plain = nmosim.build_phantom(nmosim.CaseSpec(phase="none", seed=11))
    with_ho = nmosim.build_phantom(nmosim.CaseSpec(phase="a", seed=11, confounders=True))
    assert plain.metadata["base_anatomy"] == with_ho.metadata["base_anatomy"]
    assert plain.metadata["lesions"] == [] and with_ho.metadata["lesions"]
    points = np.random.default_rng(0).uniform(-150, 150, size=(200, 3))

    def bowel(phantom):  # distances of the bowel loops at fixed points: equal loops, equal distances
        return np.stack([p.shape.sdf(points) for p in phantom.parts if p.name.startswith("bowel_")])

    assert bowel(plain).size and np.array_equal(bowel(plain), bowel(with_ho))


def test_component_streams_are_fixed_children_of_the_case_seed():
    children = np.random.SeedSequence([7, 3]).spawn(max(STREAM_KEYS.values()) + 1)
    generators = case_generators(7, 3)
    for name, key in STREAM_KEYS.items():
        expected = np.random.default_rng(children[key]).integers(2**62, size=4)
        drawn = np.random.default_rng(stream_seed(7, 3, name)).integers(2**62, size=4)
        assert np.array_equal(drawn, expected)
        if name in generators:
            assert np.array_equal(generators[name].integers(2**62, size=4), expected)
    assert len(set(STREAM_KEYS.values())) == len(STREAM_KEYS)


def test_a_phantom_without_a_seed_is_refused():
    from nmosim.phantoms.phantom import build_phantom
    from nmosim.phantoms.spec import AnatomySpec

    with pytest.raises(nmosim.SpecError, match="phantom has no seed"):
        nmosim.simulate_ct(build_phantom(AnatomySpec()), nmosim.protocol("quick", **TINY), z_range_mm=Z_RANGE)


def test_threads_of_the_phantom_build_change_nothing():
    spec = nmosim.CaseSpec(phase="a", seed=11)
    one, default = nmosim.build_phantom(spec, threads=1), nmosim.build_phantom(spec)
    assert one.metadata == default.metadata and one.metadata["lesions"]
    for bad_spec in (spec, nmosim.CaseSpec(phase="none", seed=11)):  # refused with or without HO
        with pytest.raises(nmosim.SpecError, match="threads = 0 is outside"):
            nmosim.build_phantom(bad_spec, threads=0)


def test_the_scan_field_holds_the_body_with_the_fewest_bins(phantom):
    """The detector covers the skin measured on the labels, and a pair of bins fewer would not
    reach the body plus its margin (or the preset's detector already does)."""
    from dataclasses import replace

    from nmosim.simulate.pipeline import FOV_MARGIN_MM, fit_protocol

    labels = phantom.rasterize(phantom.grid(3.0), supersampling=1)
    grid = labels.grid
    x, y = grid.voxel_centers_axis(0), grid.voxel_centers_axis(1)
    body = (labels.tissues != 0).any(axis=0)
    reach = float(np.hypot(x[None, :], y[:, None])[body].max()) + 3.0 / np.sqrt(2.0)  # voxel corners
    for preset in ("quick", "clinical"):
        base = nmosim.protocol(preset)
        fitted = fit_protocol(base, phantom)
        assert fitted.scan_fov_mm / 2 >= reach + FOV_MARGIN_MM - 3.0, preset  # the radius is sampled
        assert fitted.n_bins >= base.n_bins and fitted.bin_width_mm == base.bin_width_mm
        # bins come in pairs, one at each end: the preset's bins keep their places
        assert (fitted.n_bins - base.n_bins) % 2 == 0
        if fitted.n_bins > base.n_bins:
            fewer = replace(fitted, n_bins=fitted.n_bins - 2)
            assert fewer.scan_fov_mm < 2 * (phantom.body_radius() + FOV_MARGIN_MM), preset
    # a body wider than the quick preset's field widens it by the fewest pairs
    narrow = nmosim.protocol("quick", n_bins=300, recon_fov_mm=300)
    fitted = fit_protocol(narrow, phantom)
    assert fitted.n_bins > 300 and (fitted.n_bins - 300) % 2 == 0
    assert fitted.scan_fov_mm >= 2 * (phantom.body_radius() + FOV_MARGIN_MM)
    assert replace(fitted, n_bins=fitted.n_bins - 2).scan_fov_mm < 2 * (phantom.body_radius() + FOV_MARGIN_MM)
    # the measured radius is the skin's, within the sampling of both
    assert reach - 3.0 <= phantom.body_radius() <= reach + 5.0
