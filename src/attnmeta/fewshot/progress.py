"""The progress of one long command on a person's own examples (``attnmeta adapt``,
``predict``) as lines on stderr: counted steps with the time left, and a note while a step
with no count runs (the command line shows it; the library only reports counts)."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from attnmeta.fewshot.inputs import duration_words

__all__ = ["PROGRESS_SECONDS", "ProgressLines"]

PROGRESS_SECONDS = 2.0  # a long command's progress line, at least this often


class ProgressLines:
    """The progress of one long command (adapt, predict) on stderr.

    :meth:`counter` gives the ``progress(done, total)`` a counted step calls: it prints
    ``what done/total (p%), about N s left`` (the rate since its first call) when
    ``every`` seconds have passed since the last line, and ``what total/total (N s)`` at
    the end. :meth:`waiting` prints ``stage, N s so far`` while a step with no count runs
    (the model's fit) and nothing else has been printed for ``every`` seconds.
    ``enabled``: True prints every line; None only once the command has run ``every``
    seconds (a short one stays silent); False none.
    """

    def __init__(self, enabled: bool | None, every: float = PROGRESS_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 echo: Callable[[str], None] | None = None) -> None:
        self.enabled, self.every, self.clock = enabled, every, clock
        self.echo = echo or _to_stderr
        self.started = self.last = self.stage_started = clock()
        self.stage = "working"
        self.shown = False
        self.lock = threading.Lock()

    def _due(self, now: float) -> bool:
        if self.enabled is False:
            return False
        return now - self.last >= self.every and (
            self.enabled or now - self.started >= self.every)

    def _say(self, text: str, now: float) -> None:
        self.echo(text)
        self.last, self.shown = now, True

    def begin(self, stage: str) -> None:
        """The uncounted stage now running (what :meth:`waiting` prints)."""
        with self.lock:
            self.stage, self.stage_started = stage, self.clock()

    def counter(self, what: str, then: str | None = None) -> Callable[[int, int], None] | None:
        """``progress(done, total)`` for a counted step named ``what``; ``then``: the
        stage that follows it (see :meth:`begin`). None when disabled."""
        if self.enabled is False:
            return None
        first: list[tuple[float, int]] = []

        def report(done: int, total: int) -> None:
            with self.lock:
                now = self.clock()
                if not first:
                    first.append((now, done))
                began, done_then = first[0]
                if done >= total:
                    if self.enabled or self.shown or now - self.started >= self.every:
                        self._say(f"{what} {done}/{total} ({now - began:.1f} s)", now)
                    if then is not None:
                        self.stage, self.stage_started = then, now
                elif self._due(now):
                    # at the rate since the first call (the time before it is unknown)
                    line = f"{what} {done}/{total} ({100 * done // max(total, 1)}%)"
                    if done > done_then and now > began:
                        left = (now - began) / (done - done_then) * (total - done)
                        line += f", about {duration_words(left)} left"
                    self._say(line, now)

        return report

    @contextmanager
    def waiting(self, stage: str) -> Iterator[None]:
        """Around a long call: ``stage, N s so far`` every ``every`` s that nothing else
        printed (a thread, ended with the block)."""
        if self.enabled is False:
            yield
            return
        self.begin(stage)
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(min(0.25, self.every)):
                with self.lock:
                    now = self.clock()
                    if self._due(now):
                        self._say(f"{self.stage}, "
                                  f"{duration_words(now - self.stage_started)} so far", now)

        thread = threading.Thread(target=tick, daemon=True, name="attnmeta-progress")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
