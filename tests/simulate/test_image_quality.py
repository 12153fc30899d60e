"""Image-quality measures against synthetic images with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erfc

from nmosim.simulate import image_quality as iq


def blurred_disc(n: int, pixel: float, radius: float, sigma: float, inside: float, outside: float):
    """A centred disc whose rim is blurred by a Gaussian of ``sigma`` mm, sampled at pixel centres
    (an image whose MTF is exp(-2 pi**2 sigma**2 f**2) while the radius is large against sigma)."""
    c = (np.arange(n) - (n - 1) / 2) * pixel
    r = np.hypot(c[None, :], c[:, None])
    step = 0.5 * erfc((r - radius) / (np.sqrt(2.0) * sigma))
    return outside + (inside - outside) * step, (-(n - 1) / 2 * pixel, -(n - 1) / 2 * pixel)


@pytest.mark.parametrize("sigma", [0.4, 0.8])
def test_mtf_of_a_gaussian_blurred_edge_is_the_analytic_one(sigma):
    image, origin = blurred_disc(96, 0.5, 12.0, sigma, -1000.0, 0.0)
    offsets, esf = iq.disc_edge_profile(image, 0.5, (0.0, 0.0), 12.0, half_width_mm=8.0, origin_xy_mm=origin)
    freq, mtf = iq.mtf_from_esf(esf, offsets[1] - offsets[0])
    # exp(-2 pi^2 sigma^2 f^2) = level  ->  f = sqrt(-ln(level) / 2) / (pi sigma)
    for level in (0.5, 0.1):
        expected = np.sqrt(-np.log(level) / 2.0) / (np.pi * sigma)
        assert iq.mtf_at(freq, mtf, level) == pytest.approx(expected, rel=0.04)
    assert mtf[0] == pytest.approx(1.0)


def test_an_edge_off_the_pixel_grid_is_measured_at_its_own_centre():
    c = np.arange(80) * 0.6
    x, y = np.meshgrid(c, c)
    centre = (23.3, 24.1)
    r = np.hypot(x - centre[0], y - centre[1])
    image = 100.0 * 0.5 * erfc((r - 10.0) / (np.sqrt(2.0) * 0.5))
    offsets, esf = iq.disc_edge_profile(image, 0.6, centre, 10.0, half_width_mm=6.0)
    freq, mtf = iq.mtf_from_esf(esf, offsets[1] - offsets[0])
    assert iq.mtf_at(freq, mtf, 0.5) == pytest.approx(np.sqrt(np.log(2) / 2) / (np.pi * 0.5), rel=0.04)
    # a wrong centre smears the edge: the MTF50 drops clearly
    offsets, esf = iq.disc_edge_profile(image, 0.6, (centre[0] + 1.0, centre[1]), 10.0, half_width_mm=6.0)
    freq, wrong = iq.mtf_from_esf(esf, offsets[1] - offsets[0])
    assert iq.mtf_at(freq, wrong, 0.5) < 0.8 * iq.mtf_at(freq, mtf, 0.5)


def test_white_noise_has_a_flat_nps_whose_integral_is_the_variance():
    rng = np.random.default_rng(3)
    sd, pixel = 12.0, 0.7
    rois = rng.normal(0.0, sd, (40, 64, 64))
    fx, fy, nps = iq.nps_2d(rois, pixel)
    assert nps.shape == (64, 64) and fx[32] == 0.0 and fx[-1] < 0.5 / pixel
    integral = nps.sum() * (fx[1] - fx[0]) * (fy[1] - fy[0])
    assert integral == pytest.approx(np.mean([r.var(ddof=0) for r in rois]), rel=1e-9)  # Parseval
    assert integral == pytest.approx(sd**2, rel=0.03)
    f, radial = iq.radial_nps(fx, fy, nps)
    assert np.all(np.abs(radial[2:] / (sd**2 * pixel**2) - 1.0) < 0.15)  # flat at sigma^2 dx dy


def test_nps_peak_is_found_at_the_frequency_of_ring_filtered_noise():
    rng = np.random.default_rng(4)
    pixel, n, f0 = 0.5, 64, 0.4
    fx = np.fft.fftfreq(n, d=pixel)
    ring = np.exp(-(((np.hypot(fx[None, :], fx[:, None]) - f0) / 0.05) ** 2))
    noise = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(30, n, n))) * ring))
    f, radial = iq.radial_nps(*iq.nps_2d(noise, pixel))
    assert iq.nps_peak_lp_mm(f, radial) == pytest.approx(f0, abs=f[1])


def test_roi_statistics_and_noise_only_difference():
    rng = np.random.default_rng(5)
    mask = iq.disc_mask((101, 101), 0.5, (0.0, 0.0), 10.0, origin_xy_mm=(-25.0, -25.0))
    assert mask.sum() == pytest.approx(np.pi * 20.0**2, rel=0.02)  # area / pixel area
    assert mask[50, 50] and not mask[50, 71] and mask[50, 70]
    structure = np.linspace(-50, 50, 101)[None, :] * np.ones((101, 1))
    a = structure + rng.normal(0.0, 5.0, (101, 101))
    b = structure + rng.normal(0.0, 5.0, (101, 101))
    stats = iq.roi_stats(iq.noise_only(a, b), mask)
    assert stats.n == mask.sum() and abs(stats.mean) < 1.0
    assert stats.sd == pytest.approx(5.0, rel=0.08)  # the structure cancels, sqrt(2) undone
    assert iq.roi_stats(a, mask).sd > 8.0  # with the structure
    with pytest.raises(ValueError, match="no standard deviation"):
        iq.roi_stats(a, np.zeros_like(mask))
