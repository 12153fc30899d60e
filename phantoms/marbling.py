"""Fatty infiltration of a wasted muscle as marbling: fat streaks along its fibres.

Builds shapes from a muscle's path and a generator; it never rasterizes. DOMAIN.md 2.8: chronic
paraplegic muscle reads 10-35 HU, heterogeneous with fat streaks, not a uniform drop in HU.
"""

from __future__ import annotations

import numpy as np

from nmosim.phantoms.labels import Structure, Tissue
from nmosim.phantoms.rasterize import Part
from nmosim.phantoms.shapes import Intersection, Shape, Union, tube

STREAK_RADIUS_MM = (0.6, 1.8)  # half-widths of the streaks: 1-4 mm of fat across
WIGGLE_MM = 2.5  # how far a streak strays from a straight copy of the path
MAX_STREAKS = 160


def _perpendiculars(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = direction / np.linalg.norm(direction)
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    a = np.cross(d, helper)
    a /= np.linalg.norm(a)
    return a, np.cross(d, a)


def streak_shape(
    path: np.ndarray, spread_mm: float, fraction: float, rng: np.random.Generator
) -> Shape | None:
    """Thin wavy tubes (mm) that run beside ``path`` (K, 3), offset up to ``spread_mm`` across it,
    as many as make about ``fraction`` of a disc of that radius; None when there are none."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction = {fraction!r} is outside [0, 1]")
    path = np.asarray(path, float)
    a, b = _perpendiculars(path[-1] - path[0])
    # Points along the path, 8 per segment, where each streak may bend a little.
    t = np.linspace(0.0, 1.0, 9)[:-1]
    along = np.vstack(
        [p + t[:, None] * (q - p) for p, q in zip(path[:-1], path[1:], strict=True)] + [path[-1:]]
    )
    lo, hi = STREAK_RADIUS_MM
    mean_r2 = (lo * lo + lo * hi + hi * hi) / 3.0  # E[r^2], r uniform in [lo, hi]
    wanted = fraction * spread_mm**2 / mean_r2
    n = min(int(round(wanted)), MAX_STREAKS)
    widen = np.sqrt(wanted / n) if n else 1.0  # fewer, wider streaks past MAX_STREAKS
    tubes = []
    for _ in range(n):
        radius = float(rng.uniform(lo, hi)) * widen
        rho, phi = spread_mm * np.sqrt(rng.random()), rng.uniform(0.0, 2.0 * np.pi)
        offset = rho * (np.cos(phi) * a + np.sin(phi) * b)
        wiggle = rng.normal(0.0, WIGGLE_MM, (len(along), 2))
        pts = along + offset + wiggle[:, :1] * a + wiggle[:, 1:] * b
        tubes.append(tube(pts, [radius] * len(pts)))
    if not tubes:
        return None
    return Union(tuple(tubes))


def marbling_part(
    name: str, muscle: Shape, path: np.ndarray, spread_mm: float, fraction: float, rng: np.random.Generator
) -> Part | None:
    """A fat Part of streaks inside ``muscle`` (painted over it), named ``f"{name}_marbling"``.

    ``fraction`` is the share of fat across the muscle (DOMAIN.md 2.8: intramuscular fat 2 % in
    health, about 6 % six weeks after injury, far more in chronic wasting); ``spread_mm`` is how
    far from its path the muscle extends (its reach).
    """
    streaks = streak_shape(path, spread_mm, fraction, rng)
    if streaks is None:
        return None
    return Part(f"{name}_marbling", Intersection((streaks, muscle)), Structure.MUSCLE, Tissue.FAT)


def marbling_for(muscle: Part, fraction: float, rng: np.random.Generator) -> Part | None:
    """:func:`marbling_part` for a Part made by ``muscles.muscle_parts``: its path and size come
    from the part's territory; the streaks spread over up to three PCSA radii of its path."""
    territory = muscle.shape
    field, i = territory.muscles, territory.index
    spread = float(min(field.reaches[i], 3.0 * field.radii[i]))
    return marbling_part(muscle.name, territory, field.paths[i], spread, fraction, rng)
