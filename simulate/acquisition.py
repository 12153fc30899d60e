"""Sub-rays of a detector reading: points across the focal spot and the detector cell, and
sub-views across the angle the gantry turns during one view.

A reading averages the intensities (not the line integrals) of its sub-rays, as the CT simulator
XCIST does (Wu M et al., Phys Med Biol 2022;67:194002, "XCIST - an open access x-ray/CT
simulation toolkit", BSD-3-Clause): its sub-sources, sub-detectors and sub-views; the
intensities are summed in :mod:`nmosim.simulate.ct`. :func:`detect` turns expected readings into
measured line integrals (bowtie, scatter, noise, corrections).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nmosim.phantoms.errors import SpecError
from nmosim.simulate import bowtie, physics, scatter
from nmosim.simulate.scanner import ScannerProtocol

SubRay = tuple[float, float, float]
"""``(source_mm, cell_mm, angle_rad)``: offsets of a sub-ray from the reading's central ray, see
:func:`nmosim.simulate.backend.fan_rays`."""


def _midpoints(n: int) -> np.ndarray:
    """``n`` midpoints of equal parts of [-1/2, 1/2] (one part: the centre, 0)."""
    return (np.arange(n) + 0.5) / n - 0.5


def sub_rays(protocol: ScannerProtocol) -> list[SubRay]:
    """Every combination of the protocol's focal-spot points, cell points and sub-views.

    ``focal_spot_samples`` points at the midpoints of equal parts of the focal spot's width
    ``focal_spot_mm`` (a uniform spot), ``cell_samples`` across the cell's active width
    (``cell_aperture * bin_width_mm``) and ``view_samples`` sub-views across one view's angle
    ``2 pi / n_views`` (continuous rotation). Equal weights. Order is fixed (focal spot, cell,
    view), so sums over sub-rays do not depend on anything else.
    """
    width = protocol.cell_aperture * protocol.bin_width_mm
    step = 2.0 * np.pi / protocol.n_views
    return [
        (float(s * protocol.focal_spot_mm), float(c * width), float(v * step))
        for s in _midpoints(protocol.focal_spot_samples)
        for c in _midpoints(protocol.cell_samples)
        for v in _midpoints(protocol.view_samples)
    ]


def ray_blur_iso_mm(protocol: ScannerProtocol) -> tuple[float, float]:
    """Widths (mm) at the iso-centre of the focal spot's and the cell's blur (box widths).

    A focal spot of width ``f`` blurs an object at the iso-centre by ``f (D_sd - D_si) / D_sd``,
    a cell of active width ``a`` by ``a D_si / D_sd``.
    """
    d_si, d_sd = protocol.source_to_iso_mm, protocol.source_to_detector_mm
    cell = protocol.cell_aperture * protocol.bin_width_mm
    return protocol.focal_spot_mm * (d_sd - d_si) / d_sd, cell * d_si / d_sd


def detect(
    expected: physics.Counts,
    i0: np.ndarray,
    protocol: ScannerProtocol,
    spectrum: physics.Spectrum,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """``-log(I / I0)`` (float32, ``[..., n_bins]``) of readings with expected primary
    ``expected`` and air readings ``i0`` (``[n_bins]``, through the bowtie).

    Steps: scatter added to the signal and, as Poisson quanta, to its variance (``scatter =
    'kernel'``); quantum and electronic noise (``rng=None``: the noiseless expectation, floored at
    0.5 photon); the scanner's scatter estimate subtracted (``scatter_correction``); log; the water
    correction of each column's beam (``water_correction``).
    """
    mean = np.asarray(expected.mean, dtype=np.float32)
    variance = np.asarray(expected.variance, dtype=np.float32)
    i0 = np.asarray(i0, dtype=np.float32)
    if mean.shape[-1] != protocol.n_bins or i0.shape[-1] != protocol.n_bins:
        raise SpecError(f"readings have {mean.shape[-1]} bins, the protocol {protocol.n_bins}")
    if protocol.scatter == "kernel":
        s = scatter.scatter_signal(mean, i0, protocol, spectrum)
        gain = np.divide(variance, mean, out=np.ones_like(mean), where=mean > 0)
        mean, variance = mean + s, variance + gain * s
    if rng is None:
        readings = np.maximum(mean, np.float32(0.5))
    else:
        readings = physics.add_noise(physics.Counts(mean, variance), rng, protocol.electronic_noise_photons)
    if protocol.scatter == "kernel" and protocol.scatter_correction:
        readings = scatter.correct(readings, i0, protocol, spectrum)
    projections = physics.log_projections(readings, i0)
    if protocol.water_correction:
        projections = bowtie.water_correction(_bowtie_key(protocol), spectrum)(projections)
    return projections


def _bowtie_key(protocol: ScannerProtocol) -> ScannerProtocol:
    """``protocol`` with the fields the bowtie's water correction does not depend on fixed."""
    return dataclasses.replace(protocol, mas=100.0, electronic_noise_photons=0.0, n_views=1)


def air_readings(protocol: ScannerProtocol, spectrum: physics.Spectrum, **geometry: float) -> np.ndarray:
    """Expected air reading of each column through the bowtie (photon equivalents, ``[n_bins]``)."""
    bw, bb = bowtie.basis_lines_cm(protocol, spectrum)
    return physics.expected_counts(bw, bb, spectrum, **geometry).mean
