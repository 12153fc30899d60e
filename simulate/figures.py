"""Figures for people: label previews, CT slices in clinical windows, radiographs, evaluation plots.

Draws to PNG files through matplotlib's object-oriented Figure (no pyplot, no backend switched, no
global state touched); computes nothing it shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from nmosim.phantoms.grid import Grid
from nmosim.phantoms.labels import STRUCTURE_NAMES, Structure

STRUCTURE_COLOURS = {
    Structure.BACKGROUND: "#000000",
    Structure.SOFT_TISSUE: "#e8c9a0",  # soft tissue, fat
    Structure.MUSCLE: "#b5433a",
    Structure.PELVIS: "#f2f2e6",
    Structure.FEMUR_RIGHT: "#7fb3d5",
    Structure.FEMUR_LEFT: "#a9cce3",
    Structure.HO_RIGHT: "#f39c12",
    Structure.HO_LEFT: "#f7dc6f",
    Structure.VESSEL: "#8e44ad",
    Structure.NERVE: "#27ae60",
    Structure.CONFOUNDER: "#1abc9c",
}
OUTLINED = (Structure.HO_RIGHT, Structure.HO_LEFT, Structure.CONFOUNDER)  # drawn over CT slices
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
    fig = Figure(figsize=(15, 5.6), facecolor="white")
    axes = fig.subplots(1, 3)
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


def ct_preview(
    path: Path, hu: np.ndarray, structures: np.ndarray, grid: Grid, center_mm: np.ndarray, title: str
) -> None:
    """CT slices in bone and soft-tissue windows, bone and HO outlined, through ``center_mm``."""
    fig = Figure(figsize=(15, 10.5), facecolor="black")
    axes = fig.subplots(2, 3)
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
            for label_id in OUTLINED:
                mask = labels == label_id
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=[STRUCTURE_COLOURS[label_id]], linewidths=0.8)
            ax.set_title(f"{name}, {window} window (L {level:g} / W {width:g} HU)", color="white")
            ax.set_axis_off()
    fig.suptitle(f"{title}   (patient's right on the left; HO outlined)", color="white")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=80, facecolor="black")


def radiograph_preview(path: Path, image: np.ndarray, title: str) -> None:
    """An AP radiograph (attenuation line integrals; bone bright) for people."""
    lo, hi = np.percentile(image, [1, 99.7])
    fig = Figure(figsize=(8, 8 * image.shape[0] / image.shape[1]), facecolor="black")
    ax = fig.subplots()
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
    ax.set_title(title, color="white")
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90, facecolor="black")


def radiograph_overlay(path: Path, image: np.ndarray, masks: dict[str, np.ndarray], title: str) -> None:
    """The radiograph beside itself with the projected HO outlined (right orange, left yellow)."""
    lo, hi = np.percentile(image, [1, 99.7])
    height = 6.5 * image.shape[0] / image.shape[1]
    fig = Figure(figsize=(13, height + 0.6), facecolor="black")
    axes = fig.subplots(1, 2)
    colours = {STRUCTURE_NAMES[int(s)]: STRUCTURE_COLOURS[s] for s in (Structure.HO_RIGHT, Structure.HO_LEFT)}
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


def dice_by_plot(path: Path, dice_by_group: dict[str, list[float]], key: str = "phase") -> None:
    """Box plot of the HO Dice (both hips) of each group of ``key`` (phase, mas or kernel), with the cases."""
    groups = list(dice_by_group)
    data = [dice_by_group[g] for g in groups]
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    if data:
        ax.boxplot(data)
        for i, values in enumerate(data, start=1):
            ax.plot(np.full(len(values), i), values, "o", color="tab:blue", alpha=0.5, markersize=4)
        ax.set_xticks(range(1, len(groups) + 1), groups)
    else:
        ax.text(0.5, 0.5, "no scored case", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel({"mas": "dose (mAs)"}.get(key, key))
    ax.set_ylabel("Dice, HO (both hips)")
    ax.set_title(f"HO Dice by {key} ({sum(len(d) for d in data)} cases)")
    fig.tight_layout()
    fig.savefig(path)


def grade_confusion_plot(path: Path, confusion: np.ndarray) -> None:
    """Brooker grade confusion matrix (rows truth, columns prediction) with counts."""
    fig = Figure(figsize=(5, 4.5), dpi=100)
    ax = fig.subplots()
    ax.imshow(confusion, cmap="Blues")
    names = ["0", "I", "II", "III", "IV"][: confusion.shape[0]]
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted grade")
    ax.set_ylabel("truth grade")
    top = confusion.max() if confusion.size else 0
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > top / 2 else "black")
    ax.set_title("Brooker grade per hip")
    fig.tight_layout()
    fig.savefig(path)
