"""Tests of nmosim/progress.py: lines without carriage returns off a terminal, the ETA, redraws on one."""

from __future__ import annotations

import io

from nmosim.progress import CASE_STAGES, Reporter, duration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_event_off_a_terminal_with_an_eta() -> None:
    clock, out = Clock(), io.StringIO()
    reporter = Reporter(4, stream=out, clock=clock)  # a StringIO is no terminal
    assert reporter.eta_s() is None
    reporter.finished("case_0000", "kept", free=True)  # costs nothing: not in the rate
    for stage in CASE_STAGES[:4]:
        clock.now += 10.0
        reporter.stage("case_0001", stage, 10.0)
    # 40 s for 4/7 of one case: 3 cases of real work take 210 s, 170 s are left
    assert abs(reporter.eta_s() - 170.0) < 1e-9
    for stage in CASE_STAGES[4:]:
        clock.now += 10.0
        reporter.stage("case_0001", stage, 10.0)
    reporter.finished("case_0001", "done (ok)")
    assert abs(reporter.eta_s() - 140.0) < 1e-9  # 70 s a case, two left
    reporter.close()
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 1 + 7 + 1
    assert lines[4] == "  [1/4 cases, 40s elapsed, ETA 2m50s] case_0001 ct (4/7) 10.0 s"
    assert lines[-1] == "  [2/4 cases, 1m10s elapsed, ETA 2m20s] case_0001 done (ok)"


def test_on_a_terminal_stages_redraw_one_line_and_cases_stay() -> None:
    out = io.StringIO()
    reporter = Reporter(2, stream=out, tty=True, clock=Clock())
    reporter.stage("case_0000", "phantom", 1.0)
    reporter.stage("case_0000", "labels", 1.0)
    reporter.finished("case_0000", "done")
    reporter.stage("case_0001", "phantom", 1.0)
    reporter.message("summary")
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 5  # four events drawn, one clearing before the message
    assert text.endswith("\r\x1b[K  summary\n")
    assert text.split("\n")[0].endswith("case_0000 done")


def test_duration() -> None:
    assert (duration(0.4), duration(59.6), duration(3725)) == ("0s", "1m00s", "1h02m")
