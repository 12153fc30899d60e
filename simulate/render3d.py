"""Shaded surface renderings and surface meshes of labelled structures (bones, HO by maturity).

Turns a volume of colour classes into images and triangle meshes; it draws no figures and writes no files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nmosim.phantoms.grid import Grid

# Viewer positions around the patient as azimuths about +z (degrees): 0 = in front (anterior),
# 90 = at the patient's right, 180 = behind, 270 = at the patient's left (DESIGN.md 2: RAS+).
VIEW_AZIMUTH_DEG = {
    "AP": 0.0,
    "PA": 180.0,
    "right lateral": 90.0,
    "left lateral": 270.0,
    "right anterior oblique": 45.0,
    "left anterior oblique": 315.0,
}
LIGHT_VIEW = np.array([-0.35, 0.55, 1.0]) / np.linalg.norm([-0.35, 0.55, 1.0])  # (right, up, toward viewer)
AMBIENT = 0.28
SURFACE_LEVEL = 0.5  # the surface is where the smoothed class mask crosses one half


@dataclass(frozen=True)
class Camera:
    """An orthographic camera looking at ``centre_mm`` from azimuth ``azimuth_deg`` (about +z).

    ``right``, ``up`` and ``toward`` are unit vectors (x, y, z) of the image's columns, rows (up)
    and of the direction back to the viewer; pixels are ``pixel_mm`` wide.
    """

    azimuth_deg: float
    centre_mm: tuple[float, float, float]
    half_width_mm: float
    half_height_mm: float
    pixel_mm: float

    @property
    def toward(self) -> np.ndarray:
        a = np.deg2rad(self.azimuth_deg)
        return np.array([np.sin(a), np.cos(a), 0.0])

    @property
    def up(self) -> np.ndarray:
        return np.array([0.0, 0.0, 1.0])

    @property
    def right(self) -> np.ndarray:
        return np.cross(-self.toward, self.up)

    @property
    def shape(self) -> tuple[int, int]:
        """Image (rows, columns)."""
        return (
            int(np.ceil(2 * self.half_height_mm / self.pixel_mm)) + 1,
            int(np.ceil(2 * self.half_width_mm / self.pixel_mm)) + 1,
        )

    def project(self, points_mm: np.ndarray) -> np.ndarray:
        """Image coordinates ``[..., (column, row)]`` (pixels, row 0 at the top) of points (x, y, z)."""
        rel = np.asarray(points_mm, float) - np.asarray(self.centre_mm)
        rows, _ = self.shape
        col = (rel @ self.right + self.half_width_mm) / self.pixel_mm
        row = (rows - 1) - (rel @ self.up + self.half_height_mm) / self.pixel_mm
        return np.stack([col, row], axis=-1)


@dataclass(frozen=True)
class Rendering:
    """A shaded view: ``rgb`` (rows, cols, 3) in [0, 1], ``classes`` the class seen at each pixel
    (0: background), ``shade`` its brightness, so that the view can be coloured again."""

    rgb: np.ndarray
    classes: np.ndarray
    camera: Camera
    shade: np.ndarray
    background: tuple[float, float, float]


def recolour(rendering: Rendering, colours: dict[int, tuple[float, float, float]]) -> Rendering:
    """The same view with other class colours (no new rays)."""
    palette = np.array([rendering.background] + [colours.get(c, (0.8, 0.8, 0.8)) for c in range(1, 256)])
    rgb = palette[rendering.classes] * rendering.shade[..., None]
    rgb[rendering.classes == 0] = rendering.background
    return dataclasses.replace(rendering, rgb=np.clip(rgb, 0, 1))


def camera_for(
    classes: np.ndarray, grid: Grid, azimuth_deg: float, pixel_mm: float, margin_mm: float = 8.0
) -> Camera:
    """A camera that frames every non-zero voxel of ``classes`` seen from ``azimuth_deg``."""
    idx = np.argwhere(classes > 0)
    if idx.size == 0:
        idx = np.array([[0, 0, 0], np.array(classes.shape) - 1])
    lo, hi = idx.min(0), idx.max(0)
    corners = np.array([[z, y, x] for z in (lo[0], hi[0]) for y in (lo[1], hi[1]) for x in (lo[2], hi[2])])
    pts = grid.index_to_mm(corners)
    centre = (pts.min(0) + pts.max(0)) / 2
    cam = Camera(azimuth_deg, tuple(centre), 1.0, 1.0, pixel_mm)
    half_w = float(np.abs((pts - centre) @ cam.right).max()) + margin_mm
    half_h = float(np.abs((pts - centre) @ cam.up).max()) + margin_mm
    return Camera(azimuth_deg, tuple(float(c) for c in centre), half_w, half_h, pixel_mm)


def render_classes(
    classes: np.ndarray,
    grid: Grid,
    colours: dict[int, tuple[float, float, float]],
    camera: Camera,
    background: tuple[float, float, float] = (0.07, 0.07, 0.09),
    smoothing_voxels: float = 0.8,
    depth_half_mm: float | None = None,
) -> Rendering:
    """Shaded surface of the non-zero voxels of ``classes`` ``[z, y, x]`` seen through ``camera``.

    Rays run from the viewer into the volume; the surface is the first crossing of the smoothed
    mask at one half (sub-sample accurate), shaded by Lambert's law with normals from the depth map,
    and coloured by the class just inside the surface. ``depth_half_mm`` limits the rays to that
    distance either side of the camera's centre (default: through the whole volume).
    """
    classes, grid = crop_to_content(classes, grid)
    mask = ndimage.gaussian_filter((classes > 0).astype(np.float32), smoothing_voxels)
    rows, cols = camera.shape
    # Along the ray, steps of a voxel suffice: the crossing is interpolated between samples.
    step = max(camera.pixel_mm, min(grid.spacing_mm))
    depth_half = _depth_half_mm(classes, grid, camera) + 2 * step
    if depth_half_mm is not None:
        depth_half = min(depth_half, depth_half_mm)
    n_depth = int(np.ceil(2 * depth_half / step)) + 1
    w = depth_half - step * np.arange(n_depth)  # from the viewer's side inward
    s = -camera.half_width_mm + camera.pixel_mm * np.arange(cols)
    t = camera.half_height_mm - camera.pixel_mm * np.arange(rows)
    centre = np.asarray(camera.centre_mm)
    depth = np.full((rows, cols), -np.inf)
    hit = np.zeros((rows, cols), bool)
    # Row blocks keep the sampled field small.
    block = max(1, int(4_000_000 // max(1, cols * n_depth)))
    for r0 in range(0, rows, block):
        tt = t[r0 : r0 + block]
        pts = (
            centre
            + tt[:, None, None, None] * camera.up
            + s[None, :, None, None] * camera.right
            + w[None, None, :, None] * camera.toward
        )
        index = grid.mm_to_index(pts)  # (..., (z, y, x))
        values = ndimage.map_coordinates(mask, np.moveaxis(index, -1, 0), order=1, mode="constant")
        inside = values >= SURFACE_LEVEL
        any_hit = inside.any(axis=-1)
        k = np.argmax(inside, axis=-1)
        prev = np.clip(k - 1, 0, n_depth - 1)
        v1 = np.take_along_axis(values, k[..., None], -1)[..., 0]
        v0 = np.take_along_axis(values, prev[..., None], -1)[..., 0]
        frac = np.where(k > 0, (SURFACE_LEVEL - v0) / np.maximum(v1 - v0, 1e-6), 0.0)
        depth[r0 : r0 + block] = np.where(any_hit, w[prev] - frac * step, -np.inf)
        hit[r0 : r0 + block] = any_hit
    seen = _classes_at_hits(classes, grid, camera, depth, hit, s, t)
    shade = _lambert(depth, hit, camera.pixel_mm)
    seen[~hit] = 0
    empty = Rendering(rgb=np.empty(0), classes=seen, camera=camera, shade=shade, background=background)
    return recolour(empty, colours)


def crop_to_content(classes: np.ndarray, grid: Grid, margin: int = 3) -> tuple[np.ndarray, Grid]:
    """``classes`` cut to the box of its non-zero voxels plus ``margin`` voxels, with that box's grid."""
    spans = [np.nonzero(classes.any(axis=tuple(b for b in range(3) if b != a)))[0] for a in range(3)]
    if any(span.size == 0 for span in spans):
        return classes, grid
    lo = [max(int(span[0]) - margin, 0) for span in spans]
    hi = [min(int(span[-1]) + margin + 1, n) for span, n in zip(spans, classes.shape, strict=True)]
    sub = classes[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    origin = grid.index_to_mm(np.array(lo, float))
    return sub, Grid(sub.shape, grid.spacing_mm, tuple(float(o) for o in origin))


def _depth_half_mm(classes: np.ndarray, grid: Grid, camera: Camera) -> float:
    idx = np.argwhere(classes > 0)
    if idx.size == 0:
        return 1.0
    pts = grid.index_to_mm(np.array([idx.min(0), idx.max(0)]))
    corners = np.array([[x, y, z] for x in pts[:, 0] for y in pts[:, 1] for z in pts[:, 2]])
    return float(np.abs((corners - np.asarray(camera.centre_mm)) @ camera.toward).max())


def _classes_at_hits(
    classes: np.ndarray,
    grid: Grid,
    camera: Camera,
    depth: np.ndarray,
    hit: np.ndarray,
    s: np.ndarray,
    t: np.ndarray,
) -> np.ndarray:
    """The class a little inside the surface at each hit pixel (0 where the ray missed)."""
    out = np.zeros(hit.shape, np.uint8)
    centre = np.asarray(camera.centre_mm)
    rr, cc = np.nonzero(hit)
    base = centre + t[rr, None] * camera.up + s[cc, None] * camera.right
    spacing = max(grid.spacing_mm)
    for inward in (0.5, 1.0, 2.0, 3.0):
        todo = out[rr, cc] == 0
        if not todo.any():
            break
        pts = base[todo] + (depth[rr[todo], cc[todo]] - inward * spacing)[:, None] * camera.toward
        index = np.rint(grid.mm_to_index(pts)).astype(int)
        index = np.clip(index, 0, np.array(classes.shape) - 1)
        out[rr[todo], cc[todo]] = classes[index[:, 0], index[:, 1], index[:, 2]]
    return out


def _lambert(depth: np.ndarray, hit: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Diffuse shading from surface normals estimated on the depth map (near = larger depth)."""
    filled = np.where(hit, depth, np.nan)
    floor = np.nanmin(filled) if hit.any() else 0.0
    d = np.where(hit, depth, floor - 50.0)
    d = ndimage.gaussian_filter(d, 0.7)
    dz_drow, dz_dcol = np.gradient(d, pixel_mm)
    # Rows run downward, so the upward slope is -d/drow.
    normal = np.stack([-dz_dcol, dz_drow, np.ones_like(d)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    diffuse = np.clip(normal @ LIGHT_VIEW, 0, 1)
    return AMBIENT + (1 - AMBIENT) * diffuse


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh in patient mm: ``vertices`` (n, 3) float32 (x, y, z), ``faces`` (m, 3) uint32."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray


def surface_mesh(mask: np.ndarray, grid: Grid, step: int = 2, smoothing_voxels: float = 1.0) -> Mesh | None:
    """Triangle mesh of the surface of boolean ``mask`` ``[z, y, x]`` (marching cubes, every ``step``
    voxels); None when the mask is empty."""
    from skimage.measure import marching_cubes

    if not mask.any():
        return None
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - 3, 0)
    hi = np.minimum(idx.max(0) + 4, mask.shape)
    crop = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    field = ndimage.gaussian_filter(np.pad(crop, 2).astype(np.float32), smoothing_voxels)
    if field.max() < SURFACE_LEVEL:
        return None
    verts, faces, normals, _ = marching_cubes(field, SURFACE_LEVEL, step_size=step, allow_degenerate=False)
    verts_zyx = verts + lo - 2
    vertices = grid.index_to_mm(verts_zyx).astype(np.float32)
    spacing = np.asarray(grid.spacing_mm)
    n = normals[:, ::-1] / spacing  # index units (z, y, x) to a direction in mm (x, y, z)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    return Mesh(vertices=vertices, faces=faces.astype(np.uint32), normals=n.astype(np.float32))
