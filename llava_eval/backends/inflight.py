"""Many requests to one server at once, within a bounded in-flight window that adapts to the server: a 429
halves the window and pauses every new request for the server's Retry-After; each window's worth of successes
grows it by one again, up to the limit (additive increase, multiplicative decrease). 5xx, timeouts, dropped
connections and malformed replies back off exponentially, per request. A request that fails every try is
`Unanswered` (recorded as missing, never as an empty answer); a `SetupError` (wrong key, model or endpoint)
stops everything. Jobs start in the order given, so a server's prefix cache sees an image's questions together.
"""

from __future__ import annotations

import itertools
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

from llava_types import Unanswered, UserError

BACKOFF = 1.0  # seconds before the second try of a request the server gave no Retry-After for; doubles per try
MAX_BACKOFF = 60.0


class SetupError(UserError):
    """The endpoint, key or model is wrong: nothing can be answered."""


class Retry(Exception):
    """A failed attempt that another may fix. `retry_after`: the seconds the server asked for."""

    def __init__(self, reason: str, retry_after: float | None = None, rate_limited: bool = False):
        super().__init__(reason)
        self.reason, self.retry_after, self.rate_limited = reason, retry_after, rate_limited


class Refused(Exception):
    """The server refused this one request (400, 413, 422: too long, bad input); retrying will not help."""


class Window:
    """How many requests may be in flight now (`size`, between 1 and `limit`), and until when new ones wait."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic):
        if limit < 1:
            raise UserError(f"the in-flight window must be at least 1, got {limit}")
        self.limit, self.size, self.clock = limit, limit, clock
        self.active = self.streak = self.rate_limits = 0
        self.paused_until = 0.0
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            while True:
                wait = self.paused_until - self.clock()
                if wait <= 0 and self.active < self.size:
                    self.active += 1
                    return
                self._cond.wait(timeout=wait if wait > 0 else None)

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def succeeded(self) -> None:
        with self._cond:
            self.streak += 1
            if self.streak >= self.size and self.size < self.limit:
                self.size, self.streak = self.size + 1, 0
                self._cond.notify_all()

    def rate_limited(self, retry_after: float) -> None:
        with self._cond:
            self.rate_limits += 1
            self.size, self.streak = max(1, self.size // 2), 0
            self.paused_until = max(self.paused_until, self.clock() + retry_after)


class _Batch:
    """One batch of jobs in a stream: its results, and when the last of them is in."""

    def __init__(self, jobs: Sequence):
        self.jobs, self.results, self.left = jobs, [None] * len(jobs), len(jobs)
        self.done = threading.Event()
        if not jobs:
            self.done.set()


class Dispatcher:
    """Runs `call(job)` for every job on up to `window.limit` daemon threads (daemons: Ctrl-C is not held up
    by requests still in flight), each job tried `retries + 1` times."""

    def __init__(self, window: Window, retries: int, backoff: float | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.window, self.retries, self.sleep = window, retries, sleep
        self.backoff = BACKOFF if backoff is None else backoff

    def run(self, jobs: Sequence, call: Callable, prepare: Callable | None = None) -> list:
        """Results in job order: `call(prepare(job))`, or `Unanswered` with the last failure's reason. `prepare`
        (building a request body, encoding its images) runs once per job, outside the window."""
        results = self.stream([jobs], call, prepare)
        try:
            return next(results)
        finally:
            results.close()

    def stream(self, batches: Iterable[Sequence], call: Callable, prepare: Callable | None = None,
               ahead: int = 1) -> Iterator[list]:
        """`run` over each batch, the results yielded batch by batch in order, while up to `ahead` later batches
        are already queued: the window stays full across a batch's end (its last requests and the caller's work
        on its results overlap the next batch's first requests). A batch is taken from `batches` only when
        there is room for it ahead."""
        todo: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()
        fatal: list[BaseException] = []
        threads: list[threading.Thread] = []

        def work() -> None:
            while not stop.is_set():
                item = todo.get()
                if item is None:
                    return
                batch, index = item
                try:
                    job = batch.jobs[index]
                    batch.results[index] = self._one(prepare(job) if prepare else job, call)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
                    fatal.append(exc)
                    stop.set()
                    return
                with lock:
                    batch.left -= 1
                    if not batch.left:
                        batch.done.set()

        lock, pending, source = threading.Lock(), deque(), iter(batches)
        queued = 0

        def submit() -> None:
            nonlocal queued
            for jobs in itertools.islice(source, 1 + ahead - len(pending)):
                batch = _Batch(jobs)
                pending.append(batch)
                for index in range(len(jobs)):
                    todo.put((batch, index))
                queued += len(jobs)
                while len(threads) < min(self.window.limit, queued):
                    threads.append(threading.Thread(target=work, daemon=True))
                    threads[-1].start()

        try:
            submit()
            while pending:
                while not pending[0].done.wait(timeout=0.1) and not fatal:
                    pass
                if fatal:
                    raise fatal[0]
                yield pending.popleft().results
                submit()
        finally:
            stop.set()  # Ctrl-C or an error: no new request starts; those in flight end with the process
            for _ in threads:
                todo.put(None)

    def _one(self, job, call):
        delay, reason = self.backoff, ""
        for attempt in range(self.retries + 1):
            self.window.acquire()
            try:
                result = call(job)
            except Retry as exc:
                failure = exc
            except Refused as exc:
                return Unanswered(f"refused by the server: {exc}")
            else:
                self.window.succeeded()
                return result
            finally:
                self.window.release()
            reason = failure.reason
            if failure.rate_limited:
                self.window.rate_limited(failure.retry_after if failure.retry_after is not None else delay)
            if attempt < self.retries:
                wait = failure.retry_after if failure.retry_after is not None else delay * (1 + random.random())
                self.sleep(wait)
                delay = min(delay * 2, MAX_BACKOFF)
        return Unanswered(f"no answer after {self.retries + 1} tries: {reason}")
