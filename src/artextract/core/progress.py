"""Progress reporting: a bar on a terminal, periodic log lines otherwise (CI, batch jobs, pipes)."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

log = logging.getLogger("artextract")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (it may be replaced after set-up, e.g. by tests)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    """Plain `time level message` lines on stderr; idempotent."""
    if log.handlers:
        log.setLevel(logging.DEBUG if verbose else logging.INFO)
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def _format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Count work done; show a tqdm bar on a terminal, else log a line every `interval` seconds.

    Use as a context manager; `update(n)` after each piece of work.
    """

    def __init__(self, total: int, desc: str, unit: str = "img", interval: float = 10.0,
                 use_bar: bool | None = None, every: int = 0, enabled: bool = True,
                 also: tuple[int, str] | None = None) -> None:
        """`every` > 0 logs a line every that many updates (instead of every `interval` seconds);
        `enabled=False` makes it silent (e.g. on all but the first of several processes); `also=(k, "img")`
        reports a second rate, k of those per unit (e.g. images per training step)."""
        self.total, self.desc, self.unit, self.interval, self.every = total, desc, unit, interval, every
        self.enabled, self.also = enabled, also
        self._logged_at = -1
        self.done = 0
        self.info = ""  # shown after the counts, e.g. the current loss
        self._closed = False
        self._start = self._last_log = time.monotonic()
        use_bar = sys.stderr.isatty() if use_bar is None else use_bar
        self._bar = None
        if use_bar and enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int = 1, info: str | None = None) -> None:
        self.done += n
        if info is not None:
            self.info = info
        if not self.enabled:
            return
        if self._bar is not None:
            if info is not None:
                self._bar.set_postfix_str(info, refresh=False)
            self._bar.update(n)
            return
        now = time.monotonic()
        due = self.done % self.every < n if self.every else now - self._last_log >= self.interval
        if due:
            self._last_log = now
            self._log_line()

    def _log_line(self) -> None:
        if self._logged_at == self.done:
            return
        self._logged_at = self.done
        rate = self.rate
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = _format_seconds(left) if left != float("inf") else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        info = f", {self.info}" if self.info else ""
        also = f", {rate * self.also[0]:.0f} {self.also[1]}/s" if self.also else ""
        log.info("%s: %d/%d %s (%.0f%%)%s, %.1f %s/s%s, %s left", self.desc, self.done, self.total, self.unit, pct,
                 info, rate, self.unit, also, eta)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.total and self.enabled:
            self._log_line()
