"""The teaching book: self-contained HTML pages of a case folder or a series, with a quiz version.

Assembles figures, text and the interactive view into pages and writes them atomically; it draws no
figure and measures nothing itself.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nmosim.phantoms.errors import SpecError
from nmosim.simulate import book_figures, report_text, webview
from nmosim.simulate.book_data import (
    SIDES,
    CaseFolder,
    focus_mm,
    is_case_folder,
    landmark_levels_mm,
    locate_gap,
    read_case_folder,
    series_folders,
)
from nmosim.simulate.gallery import GALLERY_KERNELS, GALLERY_MAS, GalleryUnavailable, dose_kernel_gallery
from nmosim.simulate.outputs import check_output_dir, staged_directory

CASE_VIEWS = ["AP", "PA", "right lateral", "right anterior oblique"]
Progress = Callable[[str, float], None]

STYLE = """
:root { color-scheme: dark; }
body { background: #111114; color: #eeeeee; font: 18px/1.5 system-ui, sans-serif; margin: 0; }
main { max-width: 1500px; margin: 0 auto; padding: 1em 2em 4em; }
nav { position: sticky; top: 0; background: #1c1c22; padding: .5em 2em; z-index: 1; }
nav a { color: #ffd24d; margin-right: 1.2em; text-decoration: none; }
h1 { font-size: 2em; margin: .4em 0; } h2 { color: #ffd24d; border-bottom: 1px solid #444; }
figure { margin: 1.2em 0; } figure img { width: 100%; height: auto; display: block; }
figcaption { color: #cccccc; font-size: .9em; margin-top: .4em; }
.report p { max-width: 75em; } .report b { color: #ffd24d; }
table { border-collapse: collapse; } td, th { border: 1px solid #555; padding: .3em .8em; }
details { background: #1c1c22; padding: .6em 1em; margin: .6em 0; border-radius: 6px; }
summary { cursor: pointer; color: #7fdbff; }
.viewer { width: 100%; height: 620px; background: #000; display: block; touch-action: none; }
.note { color: #aaaaaa; font-size: .85em; }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _figure(png: bytes, caption: str) -> str:
    return f"<figure>{_img(png, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _page(title: str, nav: list[tuple[str, str]], body: str, script: str = "") -> str:
    links = "".join(f'<a href="{href}">{html.escape(text)}</a>' for href, text in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><nav>{links}</nav><main>\n{body}\n</main>{script}</body></html>\n"
    )


def _report_html(truth: dict) -> str:
    sections = report_text.findings(truth)
    return (
        '<div class="report">'
        + "".join(f"<p><b>{name.upper()}.</b> {html.escape(text)}</p>" for name, text in sections.items())
        + "</div>"
    )


def _truth_gap(truth: dict, side: str) -> str:
    gap = truth[side].get("gap_mm")
    return f"{gap:.1f} mm" if gap is not None else "none"


class _Clock:
    def __init__(self, progress: Progress | None) -> None:
        self.report = progress or (lambda stage, seconds: None)
        self.last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.report(stage, now - self.last)
        self.last = now


def case_pages(
    case: CaseFolder,
    progress: Progress | None = None,
    views: list[str] | None = None,
    interactive: bool = True,
    gallery: bool = True,
) -> dict[str, str]:
    """The case's book page and its quiz page: ``{"index.html": ..., "quiz.html": ...}``."""
    clock = _Clock(progress)
    truth = case.truth
    views = views or CASE_VIEWS
    case_id = truth.get("case_id", case.path.name)
    figures: dict[str, tuple[bytes, str]] = {}
    windows = list(book_figures.WINDOWS) if case.hu is not None else ["labels"]
    for window in windows:
        figures[f"mpr {window}"] = (
            book_figures.mpr_figure(case, window),
            report_text.caption("mpr", truth, where=focus_mm(truth)[1], window=window),
        )
    clock("mpr")
    classes = book_figures.render_volume(case)
    renderings = book_figures.render_views(case, views)
    figures["render"] = (
        book_figures.renderings_figure(case, views, renderings),
        report_text.caption("render", truth, views=views),
    )
    quiz_figures = {
        "MPR, bone window": book_figures.mpr_figure(case, windows[0], outlines=False),
        "3D renderings": book_figures.renderings_figure(
            case, views, book_figures.quiz_renderings(renderings), quiz=True
        ),
    }
    clock("renderings")
    gaps = {side: locate_gap(case.structures, case.grid, side) for side in SIDES}
    gap_figures = []
    for side in SIDES:
        gap = gaps[side]
        if gap is not None and gap.kind in ("gap", "bridge"):
            label = _truth_gap(truth, side)
            gap_figures.append(
                (
                    book_figures.gap_figure(case, gap, label, classes),
                    f"{side.capitalize()} hip, {report_text.grade_text(truth[side]['brooker_grade'])}: "
                    + report_text.caption("gap", truth, gap=label if gap.kind == "gap" else "0 mm (bridge)"),
                )
            )
    clock("gap")
    if case.radiograph is not None:
        figures["radiograph"] = (
            book_figures.radiograph_figure(case, gaps),
            report_text.caption("radiograph", truth, kvp=case.radiograph["geometry"]["kvp"]),
        )
        clock("radiograph")
    gallery_html = _gallery_section(case) if gallery and case.hu is not None and "scanner" in truth else ""
    if gallery_html:
        clock("dose and kernel gallery")
    viewer = webview.viewer_html(case, classes) if interactive else ""
    clock("interactive view")
    header = (
        f"<h1>{html.escape(case_id)}</h1><p>Phase {html.escape(str(truth['phase']))}, "
        f"{_weeks_text(truth)}right {report_text.grade_text(truth['right']['brooker_grade'])}, "
        f"left {report_text.grade_text(truth['left']['brooker_grade'])}. "
        'Every image is embedded in this file; it needs no network. <a href="quiz.html">Quiz version</a>.</p>'
    )
    sections = [("report", "Report", _report_html(truth))]
    for window in windows:
        sections.append((f"mpr-{window.split()[0]}", f"MPR, {window}", _figure(*figures[f"mpr {window}"])))
    sections.append(("render", "3D renderings", _figure(*figures["render"])))
    if viewer:
        sections.append(("interactive", "Interactive 3D", viewer))
    if "radiograph" in figures:
        sections.append(("radiograph", "Radiograph and CT", _figure(*figures["radiograph"])))
    if gallery_html:
        sections.append(("gallery", "Dose and kernel", gallery_html))
    if gap_figures:
        sections.append(
            ("gap", "Brooker grade: the gap", _gap_intro() + "".join(_figure(*f) for f in gap_figures))
        )
    body = header + "".join(
        f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>'
        for sid, title, content in sections
    )
    nav = [(f"#{sid}", title) for sid, title, _ in sections] + [("quiz.html", "Quiz")]
    script = webview.VIEWER_SCRIPT if viewer else ""
    index = _page(f"{case_id}: teaching case", nav, body, script)
    if "radiograph" in figures:
        quiz_figures["radiograph"] = figures["radiograph"][0]
    quiz = _quiz_page(case_id, truth, quiz_figures, gap_figures)
    clock("pages")
    return {"index.html": index, "quiz.html": quiz}


def _gallery_section(case: CaseFolder) -> str:
    """The same slice re-imaged at two doses and two kernels, or a note why it cannot be."""
    z_mm = landmark_levels_mm(case.truth)["femoral head centre"]
    try:
        result = dose_kernel_gallery(case.truth, z_mm)
    except GalleryUnavailable as why:
        return f'<p class="note">No dose and kernel gallery: {html.escape(str(why))}.</p>'
    k = int(
        np.clip(np.rint((z_mm - case.grid.origin_mm[2]) / case.grid.spacing_mm[2]), 0, case.grid.shape[0] - 1)
    )
    same_plane = case.grid.shape[1:] == result.grid.shape[1:] and np.allclose(
        case.grid.origin_mm[:2], result.grid.origin_mm[:2]
    )
    png = book_figures.gallery_figure(result, case.structures[k] > 0 if same_plane else None)
    caption = (
        f"{case.truth.get('case_id', '')}: the axial slice through the femoral heads scanned again with the "
        f"case's scanner at {' and '.join(f'{m:g}' for m in GALLERY_MAS)} mAs, reconstructed with "
        f"{' and '.join(GALLERY_KERNELS)} kernels (soft-tissue window). The noise SD is measured "
        "inside the body against a scan without noise. Noise grows as the dose falls and the kernel "
        "sharpens; look for dark beam-hardening streaks between the femoral heads."
    )
    return _figure(png, caption)


def _weeks_text(truth: dict) -> str:
    weeks = truth.get("weeks_since_injury")
    return f"{weeks:.0f} weeks after injury; " if weeks is not None else ""


def _gap_intro() -> str:
    # DOMAIN.md 1.1: the 1 cm rule, measured between opposing bone surfaces.
    return (
        "<p>Brooker grades a hip by the narrowest space a spur leaves to the opposing bone: II when it is "
        "at least 1 cm, III below 1 cm, IV when bone bridges pelvis and femur. The green line joins the "
        "spur to the nearest opposing bone; its number is the true 3D gap.</p>"
    )


def _quiz_page(case_id: str, truth: dict, figures: dict[str, bytes], gap_figures: list) -> str:
    """The case's images without outlines, maturity colours or numbers, then questions; answers,
    the report and the gap figures stay hidden until clicked."""
    parts = [
        f"<h1>{html.escape(case_id)}: quiz</h1><p>Look at the images, answer, then click to check."
        ' <a href="index.html">Back to the case</a>.</p>'
    ]
    for name, png in figures.items():
        parts.append(f"<h2>{html.escape(name.capitalize())}</h2><figure>{_img(png, name)}</figure>")
    parts.append("<h2>Questions</h2>")
    for n, item in enumerate(report_text.quiz(truth), start=1):
        parts.append(
            f"<p><b>{n}.</b> {html.escape(item.question)}</p>"
            f"<details><summary>Show answer</summary><p>{html.escape(item.answer)}</p></details>"
        )
    gaps = "".join(_figure(*f) for f in gap_figures)
    parts.append(
        f"<details><summary>Show the full report and the gap figures</summary>{_report_html(truth)}"
        f"{gaps}</details>"
    )
    return _page(f"{case_id}: quiz", [("index.html", "Case"), ("#", "Top")], "".join(parts))


def series_pages(folder: Path, progress: Progress | None = None) -> dict[str, str]:
    """The series page (index.html) and one page per time point (in time-point folders)."""
    clock = _Clock(progress)
    paths = series_folders(folder)
    cases = [read_case_folder(p) for p in paths]
    truths = [c.truth for c in cases]
    weeks = [float(t.get("weeks_since_injury") or 0.0) for t in truths]
    clock("read")
    renderings = [book_figures.render_views(c, ["AP"])[0] for c in cases]
    titles = [
        f"week {w:g}: phase {t['phase']}\nR {report_text.grade_text(t['right']['brooker_grade'])}, "
        f"L {report_text.grade_text(t['left']['brooker_grade'])}"
        for w, t in zip(weeks, truths, strict=True)
    ]
    strip = book_figures.series_strip(titles, renderings, cases)
    chart = book_figures.series_chart(weeks, truths)
    clock("series figures")
    pages = {}
    rows = []
    for path, case, w in zip(paths, cases, weeks, strict=True):
        for name, text in case_pages(case, views=["AP", "right lateral"]).items():
            pages[f"{path.name}/{name}"] = text
        t = case.truth
        cells = [f'<a href="{path.name}/index.html">{w:g}</a>', html.escape(str(t["phase"]))]
        for side in SIDES:
            stages = sorted({lesion["maturity"] for lesion in t[side]["lesions"]})
            cells += [
                report_text.grade_text(t[side]["brooker_grade"]),
                _truth_gap(t, side),
                f"{t[side]['ho_volume_ml']:.1f}",
                ", ".join(stages) or "-",
            ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        clock(f"page {path.name}")
    head = (
        "<tr><th>weeks</th><th>phase</th><th>right grade</th><th>right gap</th><th>right HO (mL)</th>"
        "<th>right maturity</th><th>left grade</th><th>left gap</th><th>left HO (mL)</th>"
        "<th>left maturity</th></tr>"
    )
    name = Path(folder).name
    body = (
        f"<h1>{html.escape(name)}: one patient over time</h1>"
        f"<p>Seed {html.escape(str(truths[0].get('seed')))}, {len(cases)} time points. "
        "Every image is embedded; the page needs no network. Click a week for its own page.</p>"
        f'<section id="phases"><h2>The phases, side by side</h2>'
        + _figure(
            strip,
            report_text.caption(
                "series", truths[0] | {"case_id": name}, weeks=", ".join(f"{w:g}" for w in weeks)
            ),
        )
        + '</section><section id="course"><h2>Volume and maturity over weeks</h2>'
        + _figure(chart, f"{name}: HO volume per hip and its composition per time point (from truth.json).")
        + f'</section><section id="table"><h2>Time points</h2><table>{head}{"".join(rows)}</table></section>'
    )
    nav = [("#phases", "Phases"), ("#course", "Course"), ("#table", "Time points")]
    pages["index.html"] = _page(f"{name}: series", nav, body)
    return pages


def book_pages(source: Path, progress: Progress | None = None) -> dict[str, str]:
    """The pages of the book of ``source``, a case folder or a series folder, by relative path."""
    source = Path(source)
    if not source.is_dir():
        raise SpecError(f"case = '{source}' is not a folder")
    if is_case_folder(source):
        return case_pages(read_case_folder(source), progress)
    return series_pages(source, progress)


def write_book(source: Path, out: Path, progress: Progress | None = None, overwrite: bool = False) -> Path:
    """Write the book of ``source`` (case or series folder) into folder ``out``, whole or not at all;
    ``overwrite`` lets it replace an earlier nmosim output (:mod:`nmosim.simulate.outputs`)."""
    src, dst = Path(source).resolve(), Path(out).resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        raise SpecError(f"out = '{out}' overlaps the case or series folder '{source}'; choose another folder")
    check_output_dir(out, overwrite)  # before any work
    pages = book_pages(source, progress)
    with staged_directory(out, "book", overwrite) as stage:
        for relative, text in sorted(pages.items()):
            target = stage / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    return Path(out).resolve()
