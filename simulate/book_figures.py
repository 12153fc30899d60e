"""The teaching book's figures: MPR panels, surface renderings, radiograph and gap, series charts.

Draws with matplotlib's object-oriented Figure API and returns PNG bytes; it reads no files.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy import ndimage

from nmosim.phantoms.labels import STRUCTURE_NAMES, Structure
from nmosim.phantoms.progression import STAGES
from nmosim.simulate import render3d
from nmosim.simulate.book_data import (
    CaseFolder,
    GapLocation,
    focus_mm,
    head_centre_mm,
    landmark_levels_mm,
    maturity_volume,
    radiograph_pixel,
)

WINDOWS = {"bone window": (400.0, 1800.0), "soft-tissue window": (40.0, 400.0)}  # DOMAIN.md 4.3 (L, W) HU
STAGE_COLOURS = {  # light to dark as the lesion matures (DOMAIN.md 2.6)
    "oedema": "#7ad151",
    "calcifying": "#fde725",
    "immature": "#fb9b06",
    "maturing": "#e8432e",
    "mature": "#c41d9b",
}
CONFOUNDER_COLOUR = "#22d3ee"
LABEL_COLOURS = {
    0: "#000000",
    1: "#b08a66",
    2: "#8c3b35",
    3: "#e9e4d4",
    4: "#c6d3e3",
    5: "#c6d3e3",
    6: "#f39c12",
    7: "#f7dc6f",
    8: "#8e44ad",
    9: "#27ae60",
    10: CONFOUNDER_COLOUR,
}
# Render classes: pelvis, femur, confounder, then one class per maturity stage.
PELVIS_CLASS, FEMUR_CLASS, CONFOUNDER_CLASS, STAGE_CLASS0 = 1, 2, 3, 10
RENDER_COLOURS = {
    PELVIS_CLASS: (0.93, 0.90, 0.82),
    FEMUR_CLASS: (0.80, 0.86, 0.93),
    CONFOUNDER_CLASS: (0.13, 0.83, 0.93),
    **{
        STAGE_CLASS0 + k: tuple(int(c[i : i + 2], 16) / 255 for i in (1, 3, 5))
        for k, c in enumerate(STAGE_COLOURS.values(), start=1)
    },
}
if TYPE_CHECKING:  # the gallery rebuilds phantoms; figures only need its type
    from nmosim.simulate.gallery import Gallery

SCALE_BAR_MM = 50.0
DPI = 100
TEXT = "#f2f2f2"
FACE = "#111114"


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes, without the software tag so equal figures give equal bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor=fig.get_facecolor(), metadata={"Software": None})
    return buffer.getvalue()


def render_volume(case: CaseFolder) -> np.ndarray:
    """The classes that surface renderings colour: pelvis, femurs, confounders and HO by maturity."""
    s = case.structures
    classes = np.zeros(s.shape, np.uint8)
    classes[s == Structure.PELVIS] = PELVIS_CLASS
    classes[(s == Structure.FEMUR_RIGHT) | (s == Structure.FEMUR_LEFT)] = FEMUR_CLASS
    classes[s == Structure.CONFOUNDER] = CONFOUNDER_CLASS
    stage = maturity_volume(case.instances, case.truth)
    ho = np.isin(s, [int(Structure.HO_RIGHT), int(Structure.HO_LEFT)])
    # HO of an unknown stage is drawn as mature bone rather than hidden.
    classes[ho] = STAGE_CLASS0 + np.where(stage[ho] > 0, stage[ho], len(STAGES))
    return classes


def _stage_handles(stages: list[str], confounder: bool) -> list:
    handles = [Patch(color=STAGE_COLOURS[s], label=f"HO, {s}") for s in stages]
    if confounder:
        handles.append(Patch(color=CONFOUNDER_COLOUR, label="not HO (confounder)"))
    return handles


def _stages_present(case: CaseFolder) -> list[str]:
    found = {lesion.get("maturity") for side in ("right", "left") for lesion in case.truth[side]["lesions"]}
    return [s for s in STAGES if s in found]


def _scale_bar(ax, width_mm: float, height_mm: float) -> None:
    """A 50 mm bar in the lower right corner of an image drawn with an extent in mm."""
    x1 = width_mm * 0.95
    y = height_mm * 0.94
    ax.plot([x1 - SCALE_BAR_MM, x1], [y, y], color="white", linewidth=3, solid_capstyle="butt")
    ax.text(
        x1 - SCALE_BAR_MM / 2,
        y - height_mm * 0.02,
        f"{SCALE_BAR_MM:g} mm",
        color="white",
        ha="center",
        va="bottom",
        fontsize=9,
        bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 1.5},
    )


def _orientation(ax, left: str, right: str, top: str, bottom: str) -> None:
    style = {"color": "#ffd24d", "fontsize": 12, "fontweight": "bold", "transform": ax.transAxes}
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


def _plane(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """A slice oriented as radiologists read: right on the viewer's left, anterior or superior up,
    anterior on the left in sagittal views."""
    if plane == "axial":
        return volume[index][::-1, ::-1]
    if plane == "coronal":
        return volume[:, index, :][::-1, ::-1]
    return volume[:, :, index][::-1, ::-1]


PLANE_AXES = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}  # (columns, rows) as (x, y, z) axes
PLANE_MARKERS = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}


def _draw_slice(
    ax, case: CaseFolder, stage_vol: np.ndarray, plane: str, index: int, window, outlines: bool = True
) -> None:
    grid = case.grid
    cols_axis, rows_axis = PLANE_AXES[plane]
    image = _plane(case.hu if case.hu is not None else case.structures, plane, index)
    width = image.shape[1] * grid.spacing_mm[cols_axis]
    height = image.shape[0] * grid.spacing_mm[rows_axis]
    extent = (0.0, width, height, 0.0)
    if case.hu is not None:
        level, span = window
        ax.imshow(
            image,
            cmap="gray",
            vmin=level - span / 2,
            vmax=level + span / 2,
            extent=extent,
            interpolation="bilinear",
        )
    else:
        cmap = ListedColormap([LABEL_COLOURS[i] for i in range(len(LABEL_COLOURS))])
        ax.imshow(
            image, cmap=cmap, vmin=-0.5, vmax=len(LABEL_COLOURS) - 0.5, extent=extent, interpolation="nearest"
        )
    stages = _plane(stage_vol, plane, index) if outlines else np.zeros((1, 1))
    for k, stage in enumerate(STAGES, start=1):
        mask = stages == k
        if mask.any():
            ax.contour(
                mask,
                levels=[0.5],
                colors=[STAGE_COLOURS[stage]],
                linewidths=1.6,
                extent=extent,
                origin="upper",
            )
    confounder = (_plane(case.structures, plane, index) == Structure.CONFOUNDER) & outlines
    if confounder.any():
        ax.contour(
            confounder,
            levels=[0.5],
            colors=[CONFOUNDER_COLOUR],
            linewidths=1.0,
            linestyles="dashed",
            extent=extent,
            origin="upper",
        )
    _orientation(ax, *PLANE_MARKERS[plane])
    _scale_bar(ax, width, height)
    ax.set_axis_off()


def mpr_figure(case: CaseFolder, window: str, outlines: bool = True) -> bytes:
    """Axial slices at the three landmark levels, coronal and sagittal through the index hip's lesion,
    in ``window`` (a key of WINDOWS; labels are shown where the folder has no CT). Without
    ``outlines`` (for a quiz) neither HO nor confounders are marked."""
    grid = case.grid
    focus, where = focus_mm(case.truth)
    focus_index = np.clip(np.rint(grid.mm_to_index(focus)).astype(int), 0, np.array(grid.shape) - 1)
    stage_vol = maturity_volume(case.instances, case.truth)
    panels = []
    for level, z_mm in landmark_levels_mm(case.truth).items():
        k = int(np.clip(np.rint((z_mm - grid.origin_mm[2]) / grid.spacing_mm[2]), 0, grid.shape[0] - 1))
        panels.append(
            ("axial", k, f"axial, {level}\nz = {round(grid.origin_mm[2] + k * grid.spacing_mm[2]):+d} mm")
        )
    panels.append(("coronal", int(focus_index[1]), f"coronal through {where}"))
    panels.append(("sagittal", int(focus_index[2]), f"sagittal through {where}"))
    fig = Figure(figsize=(17, 8.4), facecolor=FACE)
    gs = fig.add_gridspec(2, 3, height_ratios=[1, 1])
    title = window if case.hu is not None else "labels (no CT in this folder)"
    for n, (plane, index, label) in enumerate(panels):
        ax = fig.add_subplot(gs[n // 3, n % 3])
        _draw_slice(ax, case, stage_vol, plane, index, WINDOWS.get(window), outlines)
        ax.set_title(label, color=TEXT, fontsize=12)
    legend_ax = fig.add_subplot(gs[1, 2])
    legend_ax.set_axis_off()
    handles = _stage_handles(_stages_present(case), bool((case.structures == Structure.CONFOUNDER).any()))
    handles = handles if outlines else []
    if case.hu is None:  # label colours need their names
        present = np.unique(case.structures)
        handles += [
            Patch(color=LABEL_COLOURS[int(v)], label=STRUCTURE_NAMES[int(v)].replace("_", " "))
            for v in present
            if 0 < v < len(LABEL_COLOURS)
        ]
    if handles:
        legend_ax.legend(
            handles=handles,
            loc="center",
            fontsize=13,
            frameon=False,
            labelcolor=TEXT,
            title="outlines" if case.hu is not None else "labels and outlines",
            ncol=1 if case.hu is not None else 2,
            title_fontsize=13,
        ).get_title().set_color(TEXT)
    legend_ax.text(
        0.5,
        0.05,
        f"{case.truth.get('case_id', '')}: {title}",
        color=TEXT,
        ha="center",
        fontsize=12,
        transform=legend_ax.transAxes,
    )
    fig.tight_layout()
    return png_bytes(fig)


def render_pixel_mm(grid) -> float:
    """Rendering pixel: 1 mm, or two thirds of a coarser voxel (finer pixels add no detail there)."""
    return max(1.0, 2.0 / 3.0 * min(grid.spacing_mm))


def render_views(
    case: CaseFolder, views: list[str], pixel_mm: float | None = None
) -> list[render3d.Rendering]:
    """Shaded renderings of the case's bones and HO from the named views (keys of VIEW_AZIMUTH_DEG)."""
    classes = render_volume(case)
    pixel_mm = pixel_mm or render_pixel_mm(case.grid)
    out = []
    for name in views:
        camera = render3d.camera_for(classes, case.grid, render3d.VIEW_AZIMUTH_DEG[name], pixel_mm)
        out.append(render3d.render_classes(classes, case.grid, RENDER_COLOURS, camera))
    return out


VIEW_MARKERS = {  # (left, right) edge of the image for each view, the patient's axis seen there
    "AP": ("R", "L"),
    "PA": ("L", "R"),
    "right lateral": ("P", "A"),
    "left lateral": ("A", "P"),
    "right anterior oblique": ("R", "L"),
    "left anterior oblique": ("R", "L"),
}


def _quiz_handles() -> list:
    return [
        Patch(color=RENDER_COLOURS[PELVIS_CLASS], label="pelvis"),
        Patch(color=RENDER_COLOURS[FEMUR_CLASS], label="femur"),
        Patch(color=QUIZ_HO_COLOUR, label="HO"),
    ]


def _render_handles(case: CaseFolder) -> list:
    handles = [
        Patch(color=RENDER_COLOURS[PELVIS_CLASS], label="pelvis"),
        Patch(color=RENDER_COLOURS[FEMUR_CLASS], label="femur"),
    ]
    return handles + _stage_handles(
        _stages_present(case), bool((case.structures == Structure.CONFOUNDER).any())
    )


QUIZ_HO_COLOUR = (0.95, 0.55, 0.10)


def quiz_renderings(renderings: list[render3d.Rendering]) -> list[render3d.Rendering]:
    """The views with every HO in one colour, confounders as bone: nothing tells maturity or what is
    not HO before the answer is opened."""
    colours = dict(RENDER_COLOURS)
    colours[CONFOUNDER_CLASS] = RENDER_COLOURS[PELVIS_CLASS]
    for k in range(1, len(STAGES) + 1):
        colours[STAGE_CLASS0 + k] = QUIZ_HO_COLOUR
    return [render3d.recolour(r, colours) for r in renderings]


def renderings_figure(
    case: CaseFolder, views: list[str], renderings: list[render3d.Rendering], quiz: bool = False
) -> bytes:
    """A 2 x 2 (or 1 x n) panel of shaded renderings with view names, sides and a scale bar."""
    ncols = 2 if len(views) == 4 else len(views)
    nrows = int(np.ceil(len(views) / ncols))
    fig = Figure(figsize=(8.2 * ncols, 4.6 * nrows + 0.8), facecolor=FACE)
    for n, (name, rendering) in enumerate(zip(views, renderings, strict=True)):
        ax = fig.add_subplot(nrows, ncols, n + 1)
        rows, cols = rendering.rgb.shape[:2]
        width, height = cols * rendering.camera.pixel_mm, rows * rendering.camera.pixel_mm
        ax.imshow(rendering.rgb, extent=(0, width, height, 0), interpolation="bilinear")
        left, right = VIEW_MARKERS[name]
        _orientation(ax, left, right, "S", "I")
        _scale_bar(ax, width, height)
        ax.set_title(f"{name} view", color=TEXT, fontsize=13)
        ax.set_axis_off()
    fig.legend(
        handles=_render_handles(case) if not quiz else _quiz_handles(),
        loc="lower center",
        ncol=8,
        frameon=False,
        labelcolor=TEXT,
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return png_bytes(fig)


def _radiograph_panel(ax, image: np.ndarray) -> None:
    lo, hi = np.percentile(image, [1, 99.7])
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
    _orientation(ax, "R", "L", "S", "I")
    ax.set_axis_off()


def radiograph_figure(case: CaseFolder, gaps: dict[str, GapLocation | None]) -> bytes:
    """The AP radiograph alone, with the projected HO and the gaps, and a coronal CT slab beside it."""
    rad = case.radiograph
    # the processed display image, as a radiograph is read (simulate.radiograph.process); the raw
    # log image where an older folder has none
    shown = rad["processed"] if rad.get("processed") is not None else rad["image"]
    image = shown[::-1, ::-1]  # superior up, patient's right on the viewer's left
    geometry = rad["geometry"]
    fig = Figure(figsize=(18, 6.2), facecolor=FACE)
    ax1, ax2, ax3 = fig.add_subplot(1, 3, 1), fig.add_subplot(1, 3, 2), fig.add_subplot(1, 3, 3)
    _radiograph_panel(ax1, image)
    ax1.set_title(f"AP pelvis radiograph, {geometry['kvp']:g} kV", color=TEXT, fontsize=13)
    _radiograph_panel(ax2, image)
    for side, colour in (("right", LABEL_COLOURS[6]), ("left", LABEL_COLOURS[7])):
        mask = rad.get(f"mask_ho_{side}")
        if mask is not None and mask.any():
            ax2.contour(mask[::-1, ::-1], levels=[0.5], colors=[colour], linewidths=1.4)
        gap = gaps.get(side)
        if gap is not None and gap.kind == "gap":
            ends = radiograph_pixel(np.array([gap.spur_mm, gap.bone_mm]), geometry, image.shape)
            ax2.plot(ends[:, 0], ends[:, 1], color="#00ff88", linewidth=2.2)
            ax2.plot(ends[:, 0], ends[:, 1], "o", color="#00ff88", markersize=4)
            # The line's length on the film, scaled back to the patient: projection only shortens it
            # (DOMAIN.md 1.1: the radiograph can over-grade).
            middle_y = (gap.spur_mm[1] + gap.bone_mm[1]) / 2
            magnification = (geometry["source_y_mm"] - geometry["detector_y_mm"]) / (
                geometry["source_y_mm"] - middle_y
            )
            seen_mm = float(np.linalg.norm(ends[1] - ends[0])) * geometry["pixel_mm"] / magnification
            ax2.annotate(
                f"on the film {seen_mm:.0f} mm\nin 3D {gap.centre_distance_mm:.0f} mm (centre to centre)",
                ends.mean(0),
                xytext=(-12, 18),
                textcoords="offset points",
                color="#00ff88",
                fontsize=10,
                ha="right",
                bbox={"facecolor": "black", "alpha": 0.7, "edgecolor": "none"},
            )
    ax2.set_title("projected HO (right orange, left yellow) and the 3D gap", color=TEXT, fontsize=13)
    _coronal_slab(ax3, case, gaps)
    fig.tight_layout()
    return png_bytes(fig)


def _coronal_slab(ax, case: CaseFolder, gaps: dict[str, GapLocation | None]) -> None:
    """Maximum-intensity coronal slab of the CT over the HO's front-to-back extent (bone window)."""
    grid = case.grid
    ho = np.isin(case.structures, [int(Structure.HO_RIGHT), int(Structure.HO_LEFT)])
    head_j = int(
        np.clip(np.rint(grid.mm_to_index(head_centre_mm(case.truth, "right"))[1]), 0, grid.shape[1] - 1)
    )
    rows = np.nonzero(ho.any(axis=(0, 2)))[0]
    lo, hi = (rows.min(), rows.max() + 1) if rows.size else (max(head_j - 10, 0), head_j + 10)
    volume = case.hu if case.hu is not None else case.structures.astype(np.int16) * 100
    slab = volume[:, lo:hi, :].max(axis=1)[::-1, ::-1]
    sx, sz = grid.spacing_mm[0], grid.spacing_mm[2]
    width, height = slab.shape[1] * sx, slab.shape[0] * sz
    level, span = WINDOWS["bone window"]
    ax.imshow(slab, cmap="gray", vmin=level - span / 2, vmax=level + span / 2, extent=(0, width, height, 0))
    x_max = grid.origin_mm[0] + (grid.shape[2] - 1) * sx
    z_max = grid.origin_mm[2] + (grid.shape[0] - 1) * sz
    for gap in gaps.values():
        if gap is not None and gap.kind == "gap":
            pts = np.array([gap.spur_mm, gap.bone_mm])
            ax.plot(
                x_max - pts[:, 0] + sx / 2, z_max - pts[:, 2] + sz / 2, "o-", color="#00ff88", linewidth=2
            )
    _orientation(ax, "R", "L", "S", "I")
    _scale_bar(ax, width, height)
    ax.set_title("CT, coronal maximum-intensity slab through the HO", color=TEXT, fontsize=13)
    ax.set_axis_off()


def gap_figure(case: CaseFolder, gap: GapLocation, truth_gap: str, classes: np.ndarray) -> bytes:
    """A close surface rendering of one hip seen square to its gap (or bridge), the gap drawn and
    measured, beside the CT slice through it."""
    spur, bone = np.asarray(gap.spur_mm), np.asarray(gap.bone_mm)
    middle = (spur + bone) / 2
    vector = bone - spur
    azimuth = np.rad2deg(np.arctan2(-vector[1], vector[0])) if np.hypot(*vector[:2]) > 1e-6 else 0.0
    head = head_centre_mm(case.truth, gap.side)
    toward = np.array([np.sin(np.deg2rad(azimuth)), np.cos(np.deg2rad(azimuth)), 0.0])
    if toward @ (middle - head) < 0:  # look from the side the lesion is on, so bone does not hide it
        azimuth += 180.0
    camera = render3d.Camera(
        float(azimuth % 360), tuple(middle), 70.0, 70.0, 0.7 * render_pixel_mm(case.grid)
    )
    # Rays start 90 mm in front of the gap: the other hip and far bone stay out of the way.
    rendering = render3d.render_classes(classes, case.grid, RENDER_COLOURS, camera, depth_half_mm=90.0)
    fig = Figure(figsize=(14, 7.2), facecolor=FACE)
    ax = fig.add_subplot(1, 2, 1)
    width, height = rendering.rgb.shape[1] * camera.pixel_mm, rendering.rgb.shape[0] * camera.pixel_mm
    ax.imshow(rendering.rgb, interpolation="bilinear", extent=(0, width, height, 0))
    ends = camera.project(np.array([spur, bone])) * camera.pixel_mm
    colour = "#00ff88"
    if gap.kind == "gap":
        ax.plot(ends[:, 0], ends[:, 1], "o-", color=colour, linewidth=2.5, markersize=5)
        ax.annotate(
            f"gap {truth_gap}",
            ends.mean(0),
            xytext=(12, -12),
            textcoords="offset points",
            color=colour,
            fontsize=15,
            fontweight="bold",
        )
    else:
        ax.plot(
            ends[0, 0],
            ends[0, 1],
            "o",
            markersize=28,
            markerfacecolor="none",
            markeredgecolor=colour,
            markeredgewidth=2.5,
        )
        ax.annotate(
            gap.kind,
            ends[0],
            xytext=(20, -20),
            textcoords="offset points",
            color=colour,
            fontsize=15,
            fontweight="bold",
        )
    _scale_bar(ax, width, height)
    _orientation(ax, *_screen_markers(camera), "S", "I")
    ax.set_title(f"{gap.side} hip, surface rendering seen square to the gap", color=TEXT, fontsize=13)
    ax.set_axis_off()
    ax2 = fig.add_subplot(1, 2, 2)
    _gap_slice(ax2, case, gap)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return png_bytes(fig)


def _screen_markers(camera: render3d.Camera) -> tuple[str, str]:
    """Letters for the left and right image edges: the patient axis closest to the screen's x."""
    right = camera.right
    axis = int(np.argmax(np.abs(right[:2])))
    letters = ("L", "R") if axis == 0 else ("P", "A")  # (negative, positive) direction
    positive = letters[1] if right[axis] > 0 else letters[0]
    negative = letters[0] if right[axis] > 0 else letters[1]
    return negative, positive


def _gap_slice(ax, case: CaseFolder, gap: GapLocation) -> None:
    """The coronal CT (or label) slice through the middle of the gap, cropped around it."""
    grid = case.grid
    middle = (np.asarray(gap.spur_mm) + np.asarray(gap.bone_mm)) / 2
    k, j, i = np.clip(np.rint(grid.mm_to_index(middle)).astype(int), 0, np.array(grid.shape) - 1)
    half = 45  # mm around the gap
    sx, sz = grid.spacing_mm[0], grid.spacing_mm[2]
    i0, i1 = max(0, i - int(half / sx)), min(grid.shape[2], i + int(half / sx) + 1)
    k0, k1 = max(0, k - int(half / sz)), min(grid.shape[0], k + int(half / sz) + 1)
    volume = case.hu if case.hu is not None else case.structures.astype(np.int16) * 100
    crop = volume[k0:k1, j, i0:i1][::-1, ::-1]
    stage = maturity_volume(case.instances, case.truth)[k0:k1, j, i0:i1][::-1, ::-1]
    width, height = crop.shape[1] * sx, crop.shape[0] * sz
    level, span = WINDOWS["bone window"]
    ax.imshow(
        crop,
        cmap="gray",
        vmin=level - span / 2,
        vmax=level + span / 2,
        extent=(0, width, height, 0),
        interpolation="bilinear",
    )
    for n, name in enumerate(STAGES, start=1):
        if (stage == n).any():
            ax.contour(
                stage == n,
                levels=[0.5],
                colors=[STAGE_COLOURS[name]],
                linewidths=1.5,
                extent=(0, width, height, 0),
                origin="upper",
            )
    x_hi = grid.origin_mm[0] + (i1 - 1) * sx
    z_hi = grid.origin_mm[2] + (k1 - 1) * sz
    pts = np.array([gap.spur_mm, gap.bone_mm])
    ax.plot(x_hi - pts[:, 0] + sx / 2, z_hi - pts[:, 2] + sz / 2, "o-", color="#00ff88", linewidth=2)
    _orientation(ax, "R", "L", "S", "I")
    _scale_bar(ax, width, height)
    ax.set_title(
        f"coronal CT through the gap (y = {middle[1]:.0f} mm), the gap line projected on it",
        color=TEXT,
        fontsize=12,
    )
    ax.set_axis_off()


def series_strip(titles: list[str], renderings: list[render3d.Rendering], cases: list[CaseFolder]) -> bytes:
    """The same patient's AP renderings side by side, one per time point (the phases a-d)."""
    n = len(renderings)
    fig = Figure(figsize=(4.6 * n, 5.6), facecolor=FACE)
    for m, (title, rendering) in enumerate(zip(titles, renderings, strict=True)):
        ax = fig.add_subplot(1, n, m + 1)
        ax.imshow(rendering.rgb, interpolation="bilinear")
        ax.set_title(title, color=TEXT, fontsize=13)
        _orientation(ax, "R", "L", "S", "I")
        ax.set_axis_off()
    fig.legend(
        handles=_series_handles(cases),
        loc="lower center",
        ncol=8,
        frameon=False,
        labelcolor=TEXT,
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return png_bytes(fig)


def _series_handles(cases: list[CaseFolder]) -> list:
    stages = {stage for case in cases for stage in _stages_present(case)}
    confounder = any((case.structures == Structure.CONFOUNDER).any() for case in cases)
    return [
        Patch(color=RENDER_COLOURS[PELVIS_CLASS], label="pelvis"),
        Patch(color=RENDER_COLOURS[FEMUR_CLASS], label="femur"),
    ] + _stage_handles([s for s in STAGES if s in stages], confounder)


def series_chart(weeks: list[float], truths: list[dict]) -> bytes:
    """HO volume per hip over weeks, and what the HO is made of (a measure of maturity) per time point."""
    fig = Figure(figsize=(15, 5.4), facecolor="white")
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for side, colour in (("right", LABEL_COLOURS[6]), ("left", "#b7950b")):
        ax1.plot(
            weeks,
            [t[side]["ho_volume_ml"] for t in truths],
            "o-",
            color=colour,
            label=f"{side} hip",
            linewidth=2.5,
        )
    ax1.set_xlabel("weeks since injury", fontsize=13)
    ax1.set_ylabel("HO volume (mL)", fontsize=13)
    ax1.set_title("HO volume", fontsize=14)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=12)
    tissue_colours = {
        "ho_calcifying": STAGE_COLOURS["calcifying"],
        "ho_immature": STAGE_COLOURS["immature"],
        "ho_cortex": STAGE_COLOURS["mature"],
        "ho_trabecular": "#7b4f9d",
    }
    x = np.arange(len(weeks))
    bottom = np.zeros(len(weeks))
    for tissue, colour in tissue_colours.items():
        values = np.array(
            [sum(t[s]["ho_volume_ml_by_tissue"].get(tissue, 0.0) for s in ("right", "left")) for t in truths]
        )
        if values.any():
            ax2.bar(x, values, bottom=bottom, color=colour, label=tissue.replace("ho_", "HO "), width=0.6)
            bottom += values
    ax2.set_xticks(x, [f"{w:g}" for w in weeks])
    ax2.set_xlabel("weeks since injury", fontsize=13)
    ax2.set_ylabel("HO volume, both hips (mL)", fontsize=13)
    ax2.set_title("what the HO is made of, week by week", fontsize=14)
    if bottom.any():
        ax2.legend(fontsize=11)
    fig.tight_layout()
    return png_bytes(fig)


def gallery_figure(gallery: Gallery, body: np.ndarray | None) -> bytes:
    """The gallery's slices in a soft-tissue window: rows by dose, columns by kernel, each with the
    noise (standard deviation of slice minus noiseless slice, HU) inside the eroded ``body`` mask."""
    doses = sorted({mas for mas, _ in gallery.slices})
    kernels = list(dict.fromkeys(kernel for _, kernel in gallery.slices))
    roi = None if body is None else ndimage.binary_erosion(body, iterations=5)
    rows = (
        np.nonzero(roi.any(axis=1))[0] if roi is not None and roi.any() else np.arange(gallery.grid.shape[1])
    )
    cols = (
        np.nonzero(roi.any(axis=0))[0] if roi is not None and roi.any() else np.arange(gallery.grid.shape[2])
    )
    crop = (slice(max(rows[0] - 8, 0), rows[-1] + 9), slice(max(cols[0] - 8, 0), cols[-1] + 9))
    level, span = WINDOWS["soft-tissue window"]
    fig = Figure(figsize=(6.0 * len(kernels), 4.4 * len(doses)), facecolor=FACE)
    sx, sy = gallery.grid.spacing_mm[0], gallery.grid.spacing_mm[1]
    for r, mas in enumerate(doses):
        for c, kernel in enumerate(kernels):
            hu = gallery.slices[(mas, kernel)]
            ax = fig.add_subplot(len(doses), len(kernels), r * len(kernels) + c + 1)
            image = hu[crop][::-1, ::-1]  # anterior up, patient's right on the viewer's left
            width, height = image.shape[1] * sx, image.shape[0] * sy
            ax.imshow(image, cmap="gray", vmin=level - span / 2, vmax=level + span / 2,
                      extent=(0, width, height, 0), interpolation="nearest")  # fmt: skip
            title = f"{mas:g} mAs, {kernel} kernel"
            if roi is not None and roi.any():
                noise = (hu - gallery.noiseless[kernel])[roi]
                title += f": noise SD {float(noise.std()):.0f} HU"
            ax.set_title(title, color=TEXT, fontsize=14)
            _orientation(ax, "R", "L", "A", "P")
            _scale_bar(ax, width, height)
            ax.set_axis_off()
    fig.tight_layout()
    return png_bytes(fig)
