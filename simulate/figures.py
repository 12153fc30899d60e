"""Figures for people: label previews and CT slices in clinical windows with label outlines.

Draws to PNG files with matplotlib's Agg backend; computes nothing it shows.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from nmosim.phantoms.grid import Grid  # noqa: E402
from nmosim.phantoms.labels import STRUCTURE_NAMES  # noqa: E402

STRUCTURE_COLOURS = {
    0: "#000000",
    1: "#e8c9a0",  # soft tissue, fat
    2: "#b5433a",  # muscle
    3: "#f2f2e6",  # pelvis
    4: "#7fb3d5",  # femur right
    5: "#a9cce3",  # femur left
    6: "#f39c12",  # HO right
    7: "#f7dc6f",  # HO left
    8: "#8e44ad",  # vessel
    9: "#27ae60",  # nerve
    10: "#1abc9c",  # confounder
}
WINDOWS = {"bone": (400.0, 1800.0), "soft": (40.0, 400.0)}  # DOMAIN.md 4.3: (level, width) HU


def _views(volume: np.ndarray, index_zyx: np.ndarray) -> list[tuple[str, np.ndarray, tuple[int, int]]]:
    """Axial, coronal and sagittal slices through ``index_zyx``, oriented as radiologists read."""
    k, j, i = (int(round(v)) for v in index_zyx)
    k = int(np.clip(k, 0, volume.shape[0] - 1))
    j = int(np.clip(j, 0, volume.shape[1] - 1))
    i = int(np.clip(i, 0, volume.shape[2] - 1))
    # Radiological convention: patient's right on the viewer's left, anterior up in axial views.
    axial = volume[k][::-1, ::-1]
    coronal = volume[:, j, :][::-1, ::-1]
    sagittal = volume[:, :, i][::-1, ::-1]
    return [("axial", axial, (1, 2)), ("coronal", coronal, (0, 2)), ("sagittal", sagittal, (0, 1))]


def _aspect(grid: Grid, axes: tuple[int, int]) -> float:
    spacing_zyx = grid.spacing_mm[::-1]
    return spacing_zyx[axes[0]] / spacing_zyx[axes[1]]


def label_preview(path: Path, structures: np.ndarray, grid: Grid, center_mm: np.ndarray, title: str) -> None:
    """Axial, coronal and sagittal label slices through ``center_mm`` with a colour legend."""
    colours = [STRUCTURE_COLOURS[i] for i in range(len(STRUCTURE_COLOURS))]
    cmap = ListedColormap(colours)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), facecolor="white")
    for ax, (name, image, plane) in zip(axes, _views(structures, grid.mm_to_index(center_mm)), strict=True):
        ax.imshow(
            image,
            cmap=cmap,
            vmin=-0.5,
            vmax=len(colours) - 0.5,
            interpolation="nearest",
            aspect=_aspect(grid, plane),
        )
        ax.set_title(name)
        ax.set_axis_off()
    present = sorted(int(v) for v in np.unique(structures))
    handles = [Patch(color=STRUCTURE_COLOURS[v], label=STRUCTURE_NAMES[v]) for v in present if v != 0]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    fig.suptitle(f"{title}   (patient's right on the left)")
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def ct_preview(
    path: Path, hu: np.ndarray, structures: np.ndarray, grid: Grid, center_mm: np.ndarray, title: str
) -> None:
    """CT slices in bone and soft-tissue windows, bone and HO outlined, through ``center_mm``."""
    fig, axes = plt.subplots(2, 3, figsize=(15, 10.5), facecolor="black")
    index = grid.mm_to_index(center_mm)
    for row, (window, (level, width)) in enumerate(WINDOWS.items()):
        views = zip(_views(hu, index), _views(structures, index), strict=True)
        for ax, ((name, image, plane), (_, labels, _)) in zip(axes[row], views, strict=True):
            ax.imshow(
                image,
                cmap="gray",
                vmin=level - width / 2,
                vmax=level + width / 2,
                interpolation="nearest",
                aspect=_aspect(grid, plane),
            )
            for label_id, colour in (
                (6, STRUCTURE_COLOURS[6]),
                (7, STRUCTURE_COLOURS[7]),
                (10, STRUCTURE_COLOURS[10]),
            ):
                mask = labels == label_id
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=[colour], linewidths=0.8)
            ax.set_title(f"{name}, {window} window (L {level:g} / W {width:g} HU)", color="white")
            ax.set_axis_off()
    fig.suptitle(f"{title}   (patient's right on the left; HO outlined)", color="white")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=80, facecolor="black")
    plt.close(fig)


def radiograph_preview(path: Path, image: np.ndarray, title: str) -> None:
    """An AP radiograph (attenuation line integrals; bone bright) for people."""
    lo, hi = np.percentile(image, [1, 99.7])
    fig, ax = plt.subplots(figsize=(8, 8 * image.shape[0] / image.shape[1]), facecolor="black")
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
    ax.set_title(title, color="white")
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90, facecolor="black")
    plt.close(fig)


def radiograph_overlay(path: Path, image: np.ndarray, masks: dict[str, np.ndarray], title: str) -> None:
    """The radiograph beside itself with the projected HO outlined (right orange, left yellow)."""
    lo, hi = np.percentile(image, [1, 99.7])
    height = 6.5 * image.shape[0] / image.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(13, height + 0.6), facecolor="black")
    colours = {"ho_right": STRUCTURE_COLOURS[6], "ho_left": STRUCTURE_COLOURS[7]}
    for ax, outlined in zip(axes, (False, True), strict=True):
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        if outlined:
            for name, colour in colours.items():
                if name in masks and masks[name].any():
                    ax.contour(masks[name], levels=[0.5], colors=[colour], linewidths=1.0)
        ax.set_axis_off()
    axes[1].set_title("projected HO outlined", color="white")
    fig.suptitle(title, color="white")
    fig.tight_layout()
    fig.savefig(path, dpi=80, facecolor="black")
    plt.close(fig)
