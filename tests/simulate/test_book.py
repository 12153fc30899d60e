"""`nmosim book` end to end on a small case and series: self-contained pages, text from the truth,
hidden quiz answers, same bytes twice, and errors."""

import base64
import json
import re
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser

import pytest

from nmosim.cli import main
from nmosim.simulate import book_data, report_text
from nmosim.simulate.outputs import MARKER

SMALL = ["--scanner", "recon_pixel_mm=4", "--scanner", "n_views=90", "--scanner", "slice_thickness_mm=4"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    out = tmp_path_factory.mktemp("book") / "case_c"
    assert (
        main(["case", "--phase", "c", "--seed", "2", "--out", str(out), "--z-range", "-70", "40", *SMALL])
        == 0
    )
    return out


@pytest.fixture(scope="module")
def book(case, tmp_path_factory):
    out = tmp_path_factory.mktemp("book") / "book"
    assert main(["book", str(case), "--out", str(out)]) == 0
    return out


class _Page(HTMLParser):
    """Collects image sources, links, scripts and the text outside and inside <details>."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.script_sources = [], [], []
        self.depth = 0
        self.outside, self.inside = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "a":
            self.links.append(attrs.get("href", ""))
        if tag == "script" and "src" in attrs:
            self.script_sources.append(attrs["src"])
        if tag == "details":
            self.depth += 1

    def handle_endtag(self, tag):
        if tag == "details":
            self.depth -= 1

    def handle_data(self, data):
        (self.inside if self.depth else self.outside).append(data)


def parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_case_book_is_self_contained(book):
    assert {p.name for p in book.iterdir()} == {MARKER, "index.html", "quiz.html"}
    for name in ("index.html", "quiz.html"):
        page = parse(book / name)
        # Case page: two MPR windows, renderings, radiograph, gallery, gap; quiz: MPR, renderings,
        # radiograph and the gap inside the hidden answers.
        assert len(page.images) >= (6 if name == "index.html" else 4)
        for src in page.images:
            assert src.startswith("data:image/png;base64,")
            assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
        assert not page.script_sources  # every script is inline: no CDN
        for href in page.links:
            assert not href.startswith(("http:", "https:", "//")), href
    html = (book / "index.html").read_text(encoding="utf-8")
    assert 'id="mesh-data"' in html and "canvas" in html
    # The embedded meshes decode to triangles whose corners are vertices of the mesh.
    payload = json.loads(
        re.search(r'<script type="application/json" id="mesh-data">(.*?)</script>', html).group(1)
    )
    names = {m["name"] for m in payload["meshes"]}
    assert {"pelvis", "femur"} <= names and any(n.startswith("HO, ") for n in names)
    for mesh in payload["meshes"]:
        n_vertices = len(base64.b64decode(mesh["positions"])) // 12
        width = 4 if mesh["wide"] else 2
        indices = base64.b64decode(mesh["indices"])
        assert len(indices) % (3 * width) == 0
        assert (
            max(int.from_bytes(indices[i : i + width], "little") for i in range(0, len(indices), width))
            < n_vertices
        )


def test_findings_state_the_truth(case, book):
    truth = json.loads((case / "truth.json").read_text())
    text = " ".join(parse(book / "index.html").outside)
    for side in ("right", "left"):
        grade = truth[side]["brooker_grade"]
        assert f"{side.capitalize()} hip:" in text
        assert report_text.grade_text(grade) in text
        if truth[side]["gap_mm"] is not None and grade in (2, 3):
            assert f"{truth[side]['gap_mm']:.1f} mm" in text
        if grade:
            assert f"{truth[side]['ho_volume_ml']:.1f} mL" in text
    assert f"Phase {truth['phase']}" in text


def test_quiz_hides_every_answer_until_clicked(case, book):
    truth = json.loads((case / "truth.json").read_text())
    page = parse(book / "quiz.html")
    outside, inside = " ".join(page.outside), " ".join(page.inside)
    for item in report_text.quiz(truth):
        assert item.question in outside
        assert item.answer in inside and item.answer not in outside
    for side in ("right", "left"):
        if truth[side]["brooker_grade"]:
            assert report_text.grade_text(truth[side]["brooker_grade"]) not in outside


def test_same_case_gives_the_same_book_bytes(case, book, tmp_path):
    again = tmp_path / "again"
    assert main(["book", str(case), "--out", str(again)]) == 0
    for name in ("index.html", "quiz.html"):
        assert (again / name).read_bytes() == (book / name).read_bytes()


def test_gap_line_ends_on_the_spur_and_the_opposing_bone(case):
    folder = book_data.read_case_folder(case)
    for side in ("right", "left"):
        gap = book_data.locate_gap(folder.structures, folder.grid, side)
        grade = folder.truth[side]["brooker_grade"]
        if grade == 0:
            assert gap is None
            continue
        if grade not in (2, 3):
            continue
        spur = folder.structures[tuple(folder.grid.mm_to_index(gap.spur_mm).round().astype(int))]
        bone = folder.structures[tuple(folder.grid.mm_to_index(gap.bone_mm).round().astype(int))]
        assert spur == (6 if side == "right" else 7)
        assert bone in (3, 4 if side == "right" else 5, 6 if side == "right" else 7)
        # Centre to centre, the line is at most one voxel diagonal longer than the surface gap.
        diagonal = sum(s * s for s in folder.grid.spacing_mm) ** 0.5
        assert folder.truth[side]["gap_mm"] - diagonal <= gap.centre_distance_mm
        assert gap.centre_distance_mm <= folder.truth[side]["gap_mm"] + 2 * diagonal


def test_bad_sources_are_one_line_errors(tmp_path, capsys):
    assert main(["book", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["book", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("nmosim book: error:") for line in err)
    assert not (tmp_path / "out").exists()


def test_the_book_never_replaces_its_source(case, tmp_path):
    before = sorted(p.name for p in case.iterdir())
    for out in (case, case / "book", case.parent):
        assert main(["book", str(case), "--out", str(out)]) == 2
    assert sorted(p.name for p in case.iterdir()) == before


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    out = tmp_path_factory.mktemp("book") / "series"
    argv = ["series", "--seed", "2", "--weeks", "10,30", "--phase", "c", "--spacing", "4", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_series_book_shows_every_time_point(series, tmp_path):
    out = tmp_path / "series_book"
    assert main(["book", str(series), "--out", str(out)]) == 0
    weeks = sorted(p.name for p in series.iterdir() if p.is_dir())
    assert {p.name for p in out.iterdir()} == {MARKER, "index.html", *weeks}
    page = parse(out / "index.html")
    assert len(page.images) == 2
    assert [h for h in page.links if h.endswith("/index.html")] == [f"{w}/index.html" for w in weeks]
    for week in weeks:
        truth = json.loads((series / week / "truth.json").read_text())
        sub = parse(out / week / "index.html")
        assert sub.images and "MPR, labels" in " ".join(sub.outside)  # no CT in a phantom folder
        assert f"{truth['right']['ho_volume_ml']:.1f}" in " ".join(page.outside)


def test_a_folder_of_several_patients_is_not_a_series(series, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    first = sorted(p for p in series.iterdir() if p.is_dir())[0]
    for name, seed in (("a", 2), ("b", 3)):
        (mixed / name).mkdir()
        for f in first.iterdir():
            (mixed / name / f.name).write_bytes(f.read_bytes())
        truth = json.loads((mixed / name / "truth.json").read_text())
        truth["seed"] = seed
        (mixed / name / "truth.json").write_text(json.dumps(truth))
    assert main(["book", str(mixed), "--out", str(tmp_path / "out")]) == 2


# Injected first in <head>: records failed loads, uncaught errors and console.error, then reports
# the images once the page has loaded.
BROWSER_CHECK = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? "failed to load " + t.tagName : "uncaught: " + e.message);
}, true);
var __consoleError = console.error;
console.error = function () {
  window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
  __consoleError.apply(console, arguments);
};
window.addEventListener("load", function () {
  setTimeout(function () {
    var images = Array.prototype.slice.call(document.images);
    var out = document.createElement("pre");
    out.id = "browser-check";
    out.textContent = JSON.stringify({
      images: images.length,
      broken: images.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length,
      errors: window.__errors,
      viewers: document.querySelectorAll("canvas.viewer").length,
    });
    document.body.appendChild(out);
  }, 300);
});
</script>"""


def _chromium():
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (Debian package chromium)")
def test_pages_load_in_headless_chromium_without_errors(book, tmp_path):
    for name in ("index.html", "quiz.html"):
        html = (book / name).read_text(encoding="utf-8")
        page = tmp_path / name
        page.write_text(html.replace("<head>", "<head>" + BROWSER_CHECK, 1), encoding="utf-8")
        argv = [_chromium(), "--headless", "--no-sandbox", "--enable-unsafe-swiftshader",
                "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom",
                page.as_uri()]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=tmp_path)
        found = re.search(r'<pre id="browser-check">(.*?)</pre>', done.stdout, re.S)
        assert found, done.stderr[-2000:]
        report = json.loads(unescape(found.group(1)))
        assert report["images"] == len(parse(book / name).images) > 0
        assert report["broken"] == 0
        assert report["errors"] == []
        # The 3D view is on the case page (a note replaces it where WebGL is missing), not in the quiz.
        assert report["viewers"] == (1 if name == "index.html" else 0)
        uncaught = [line for line in done.stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]
        assert not uncaught


def test_an_earlier_book_is_replaced_only_with_overwrite(book, case, capsys):
    before = (book / "index.html").read_bytes()
    assert main(["book", str(case), "--out", str(book)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (book / "index.html").read_bytes() == before
