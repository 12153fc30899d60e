"""Total-variation reconstruction of fan-beam sinograms through ODL (ray transform + PDHG).

Solves, per slice, ``min_f ||A f - p||^2 + lam ||grad f||_1`` (isotropic TV) with ``f >= 0``,
``A`` ODL's fan-beam ray transform over ASTRA (``astra_cuda`` on a GPU, ``astra_cpu``
otherwise) and ``lam = tv_weight * ||A||^2`` times the pixel size, so the weight means the same
at any sampling.

ODL's fan beam rotates counter-clockwise; ours (see :class:`nmosim.simulate.scanner.ScannerProtocol`)
rotates clockwise in (x, y). Mirroring x (``x' = -x``) maps one onto the other: view ``beta``
then has its source at ``D_si (-sin beta, cos beta)``, ODL's source at angle ``beta`` for
``src_to_det_init = (0, -1)``, and bins along ``(-cos beta, -sin beta)``, ODL's detector axis
for ``det_axis_init = (-1, 0)``.
"""

from __future__ import annotations

import functools

import numpy as np

from nmosim.phantoms.grid import Grid
from nmosim.simulate.scanner import ScannerProtocol


def _odl():
    import odl
    from odl.applications import tomo

    return odl, tomo


def ray_transform(grid: Grid, protocol: ScannerProtocol, device: str):
    """ODL ray transform of one slice of ``grid`` in the mirrored frame (x' = -x), ODL's array
    axes (x', y)."""
    odl, tomo = _odl()
    _, ny, nx = grid.shape
    (dx, dy, _), (ox, oy, _) = grid.spacing_mm, grid.origin_mm
    x_max = ox + (nx - 0.5) * dx
    space = odl.uniform_discr(
        [-x_max, oy - dy / 2], [-x_max + nx * dx, oy + (ny - 0.5) * dy], [nx, ny], dtype="float32"
    )
    step = 2.0 * np.pi / protocol.n_views
    angles = odl.uniform_partition(-step / 2, 2.0 * np.pi - step / 2, protocol.n_views)
    width = protocol.n_bins * protocol.bin_width_mm
    detector = odl.uniform_partition(-width / 2, width / 2, protocol.n_bins)
    geometry = tomo.FanBeamGeometry(
        angles, detector, src_radius=protocol.source_to_iso_mm,
        det_radius=protocol.source_to_detector_mm - protocol.source_to_iso_mm,
        src_to_det_init=(0, -1), det_axis_init=(-1, 0),
    )  # fmt: skip
    impl = "astra_cuda" if device == "cuda" else "astra_cpu"
    return tomo.RayTransform(space, geometry, impl=impl)


def to_odl(slice_yx: np.ndarray) -> np.ndarray:
    """One ``[ny, nx]`` slice as ODL's ``[x', y]`` array (x mirrored)."""
    return np.ascontiguousarray(slice_yx[:, ::-1].T)


def from_odl(array: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_odl`."""
    return np.ascontiguousarray(np.asarray(array).T[:, ::-1])


@functools.lru_cache(maxsize=4)
def _solver_parts(grid: Grid, protocol: ScannerProtocol, device: str):
    odl, _ = _odl()
    ray = ray_transform(grid, protocol, device)
    gradient = odl.Gradient(ray.domain)
    op = odl.BroadcastOperator(ray, gradient)
    norm_ray = odl.power_method_opnorm(ray, maxiter=30)
    norm_op = 1.1 * odl.power_method_opnorm(op, maxiter=30)
    return ray, gradient, op, float(norm_ray), float(norm_op)


def tv_reconstruct(
    sinogram: np.ndarray,
    grid: Grid,
    protocol: ScannerProtocol,
    *,
    iterations: int | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """TV reconstruction of fan-beam line integrals ``[nz, n_views, n_bins]`` onto ``grid``,
    ``[nz, ny, nx]`` float32 in the sinogram's value per mm; ``iterations`` PDHG steps per slice
    (default ``protocol.recon_iterations``), starting from zero."""
    odl, _ = _odl()
    iterations = protocol.recon_iterations if iterations is None else int(iterations)
    ray, gradient, op, norm_ray, norm_op = _solver_parts(grid, protocol, device)
    weight = protocol.tv_weight * norm_ray**2 * grid.spacing_mm[0]
    f = odl.functionals.IndicatorNonnegativity(ray.domain)
    tau = sigma = 1.0 / norm_op
    out = np.empty(grid.shape, dtype=np.float32)
    for k in range(grid.shape[0]):
        data = ray.range.element(np.asarray(sinogram[k], dtype=np.float32))
        g = odl.functionals.SeparableSum(
            odl.functionals.L2NormSquared(ray.range).translated(data),
            weight * odl.functionals.GroupL1Norm(gradient.range),
        )
        x = ray.domain.zero()
        odl.solvers.pdhg(x, f, g, op, niter=iterations, tau=tau, sigma=sigma)
        out[k] = from_odl(x.asarray())
    return out
