"""Progress a person can follow on stderr: per stage of each case, with elapsed time and an ETA.

It formats and writes lines for the command line; it computes nothing of the cases and is never used by
library code. On a terminal the running line is redrawn in place; anywhere else (a log file, a pipe,
CI) every event is one line of its own and no carriage return is written.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

CASE_STAGES = ("phantom", "labels", "imaging maps", "ct", "radiograph", "truth", "write")


def duration(seconds: float) -> str:
    """``seconds`` as ``42s``, ``3m05s`` or ``2h07m``.

    >>> duration(185.2)
    '3m05s'
    """
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Reporter:
    """Progress of ``total`` items of work (cases), each made of ``stages``.

    The ETA counts the stages done by the items still running and leaves out the items that cost
    nothing (kept from an earlier run): remaining work / rate of the work done so far.
    """

    def __init__(
        self,
        total: int,
        what: str = "case",
        stages: Sequence[str] = CASE_STAGES,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.what, self.stages = total, what, tuple(stages)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.free = 0  # items that took no work (kept)
        self.running: dict[str, int] = {}  # item -> stages done
        self.drawn = False
        self.lock = threading.Lock()  # stage events of Dask workers arrive on the client's thread

    # --- numbers ---

    def work_done(self) -> float:
        """Items of real work done, counting the finished stages of running items as fractions."""
        partial = sum(min(n, len(self.stages)) / len(self.stages) for n in self.running.values())
        return self.done - self.free + partial

    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None before any work is done."""
        work = self.work_done()
        if work <= 0:
            return None
        left = max(self.total - self.free - work, 0.0)
        return (self.clock() - self.start) * left / work

    def status(self) -> str:
        """``3/20 cases, 1m10s elapsed, ETA 6m40s``."""
        eta = self.eta_s()
        eta_text = "ETA --" if eta is None else f"ETA {duration(eta)}"
        elapsed = duration(self.clock() - self.start)
        return f"{self.done}/{self.total} {self.what}s, {elapsed} elapsed, {eta_text}"

    # --- events ---

    def stage(self, item: str, stage: str, seconds: float) -> None:
        """``item`` finished ``stage`` in ``seconds``."""
        self.running[item] = self.running.get(item, 0) + 1
        n = self.running[item]
        step = f"{n}/{len(self.stages)}" if stage in self.stages else "-"
        self._event(f"{item} {stage} ({step}) {seconds:.1f} s", permanent=False)

    def finished(self, item: str, note: str = "", free: bool = False) -> None:
        """``item`` is done; ``free`` when it took no work (kept from an earlier run)."""
        self.running.pop(item, None)
        self.done += 1
        self.free += bool(free)
        self._event(f"{item} {note}".rstrip(), permanent=True)

    def message(self, text: str) -> None:
        """A line of its own (a start, a summary)."""
        self._clear()
        print(f"  {text}", file=self.stream, flush=True)

    def close(self) -> None:
        """End a line redrawn in place."""
        self._clear()

    def _event(self, text: str, permanent: bool) -> None:
        with self.lock:
            self._write(f"  [{self.status()}] {text}", permanent)

    def _write(self, line: str, permanent: bool) -> None:
        if not self.tty:
            print(line, file=self.stream, flush=True)
            return
        self.stream.write("\r\x1b[K" + line)
        self.drawn = True
        if permanent:
            self.stream.write("\n")
            self.drawn = False
        self.stream.flush()

    def _clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False
