"""Trabecular texture: a seeded field of position that modulates the density of cancellous bone.

A sum of plane waves with random directions and phases and power-law amplitudes (more power at
longer wavelengths, as the texture of cancellous bone on clinical CT), evaluated at any point in
mm: the same bone reads the same on every grid. Knows nothing of grids or X-rays.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from nmosim.phantoms.shapes import clip, namespace

N_WAVES = 32
WAVELENGTH_MM = (2.5, 30.0)  # from about two CT voxels to the size of a trochanter
POWER_EXPONENT = 1.5  # amplitude ~ wavelength ** (POWER_EXPONENT / 2)
# DOMAIN.md 4.1: cancellous bone reads 200-400 HU in the femoral head/neck and 150-250 HU in the
# intertrochanteric region, so its density varies by about +-25 % about the mean within one hip.
TEXTURE_SD = 0.2
_LIMITS = (0.4, 1.6)  # a factor is never negative however the waves add up


def _waves(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wave vectors (rad/mm), phases and amplitudes of ``seed``'s texture (unit variance)."""
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    direction = rng.normal(size=(N_WAVES, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    lo, hi = np.log(WAVELENGTH_MM[0]), np.log(WAVELENGTH_MM[1])
    wavelength = np.exp(rng.uniform(lo, hi, N_WAVES))
    phase = rng.uniform(0.0, 2.0 * np.pi, N_WAVES)
    amplitude = wavelength ** (POWER_EXPONENT / 2.0)
    amplitude *= np.sqrt(2.0 / np.sum(amplitude**2))  # variance of sum(a cos) is sum(a**2) / 2
    return direction * (2.0 * np.pi / wavelength)[:, None], phase, amplitude


def trabecular_texture(
    points_mm: Any, seed: int, sd: float = TEXTURE_SD, xp: ModuleType | None = None
) -> Any:
    """Relative density (mean 1, standard deviation about ``sd``) of cancellous bone at
    ``points_mm`` (N, 3), float32; the same ``seed`` and point give the same value.

    Runs in the array namespace ``xp`` (default: that of ``points_mm``; numpy for lists) and
    returns its array: the waves are drawn on the host, the sums run where the points are.
    """
    xp = namespace(points_mm) if xp is None else xp
    k_np, phase_np, amplitude_np = _waves(seed)
    k, phase, amplitude = (xp.asarray(a) for a in (k_np.T, phase_np, amplitude_np))
    points = xp.asarray(points_mm, dtype=xp.float64)
    n = points.shape[0]
    out = xp.zeros(n, dtype=xp.float64)
    for start in range(0, n, 65536):  # bounded memory: (chunk, N_WAVES) at a time
        stop = min(start + 65536, n)
        out[start:stop] = xp.cos(points[start:stop, :] @ k + phase) @ amplitude
    return xp.astype(clip(xp, 1.0 + sd * out, *_LIMITS), xp.float32)
