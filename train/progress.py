"""Progress lines for the long steps of a training run before its first step (generating synthetic data,
validating and encoding the samples): a line when a step starts, at most one every few seconds while it runs
(count, rate, time left) and one when it ends, so a run is never silent for minutes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Progress:
    """Call with the number of items done so far; `finish()` logs the closing line with the elapsed time."""

    def __init__(self, label: str, total: int, log: logging.Logger, every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.log, self.every_s, self.clock = label, total, log, every_s, clock
        self.start = self.last = clock()
        log.info("%s: %d ...", label, total)

    def __call__(self, done: int) -> None:
        now = self.clock()
        if now - self.last < self.every_s or done >= self.total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        self.log.info("%s: %d/%d (%.0f/s, about %.0f s left)", self.label, done, self.total, rate, left)

    def finish(self) -> None:
        self.log.info("%s: %d done in %.1f s", self.label, self.total, self.clock() - self.start)
