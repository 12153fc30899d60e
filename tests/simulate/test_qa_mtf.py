"""The bone kernel's MTF50 on a targeted field of fine pixels, against DOMAIN.md 4.4."""

from __future__ import annotations

import numpy as np

from nmosim.phantoms.materials import AIR
from nmosim.simulate import ct, image_quality, qa, qa_phantom
from nmosim.simulate.scanner import make_protocol


def _edge_mtf50(image: np.ndarray, grid, insert: qa_phantom.Insert) -> float:
    """MTF50 (lp/mm) of the rim of ``insert`` in ``image``, the ESF in radial bins of a tenth of
    a pixel (AAPM Report 233's circular edge)."""
    pixel = grid.spacing_mm[0]
    offsets, esf = image_quality.disc_edge_profile(
        image, pixel, insert.center_xy_mm, insert.diameter_mm / 2.0, origin_xy_mm=grid.origin_mm[:2]
    )
    freq, mtf = image_quality.mtf_from_esf(esf, offsets[1] - offsets[0])
    return image_quality.mtf_at(freq, mtf, 0.5)


def test_bone_kernel_reaches_its_mtf50_on_a_targeted_field():
    """The clinical detector (1.1 mm channels, 1152 views, 1 mm focal spot), bone kernel, noise
    free; an 80 mm water cylinder with the 20 mm air rod 25 mm off the axis, so the scan is small.
    On the 0.35 mm pixels of a targeted field the MTF50 lies in DOMAIN.md 4.4's 0.6-0.9 lp/mm;
    the 0.75 mm display pixel (Nyquist 0.67 lp/mm) holds it at the bottom of that range at best
    (0.61 lp/mm here, for 200 or 201 bins), well below the targeted field."""
    protocol = make_protocol("clinical", kernel="bone", recon_fov_mm=100.0, n_bins=200)
    air = qa_phantom.Insert("air", AIR, (0.0, 25.0))
    phantom = qa_phantom.QAPhantom(80.0, (air,))
    water, bone, fine, display = qa_phantom.phantom_maps(phantom, protocol, ct.protocol_spectrum(protocol), 1)
    target = qa.targeted_grid(phantom, protocol, display)
    assert target.spacing_mm[0] == qa.TARGETED_PIXEL_MM
    fine_mtf50 = _edge_mtf50(
        ct.simulate_ct(water, bone, fine, target, protocol, None, threads=2), target, air
    )
    display_mtf50 = _edge_mtf50(
        ct.simulate_ct(water, bone, fine, display, protocol, None, threads=2), display, air
    )
    assert 0.6 <= fine_mtf50 <= 0.9
    assert display_mtf50 < 0.5 / display.spacing_mm[0] and display_mtf50 < fine_mtf50 - 0.1
