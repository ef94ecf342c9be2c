"""Ctrl-C and SIGTERM during training: the first asks the loop to stop at the next step boundary (which it saves,
so --resume continues exactly there), a second one aborts at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from artextract.core.progress import log


class StopAtStep(Exception):
    """The first Ctrl-C, acted on at a step boundary: the state is whole and is saved."""


class AbortNow(KeyboardInterrupt):
    """A second Ctrl-C: stop in the middle of whatever runs, saving nothing."""


class StopRequest:
    requested = False


@contextlib.contextmanager
def stop_on_first_ctrl_c() -> Iterator[StopRequest]:
    """The first Ctrl-C (or SIGTERM) asks the loop to stop after the current step (which it then saves); a second
    one interrupts at once."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            raise AbortNow
        stop.requested = True
        if signum == signal.SIGTERM:  # what SLURM, Kubernetes and `kill` send before a kill -9
            log.warning("SIGTERM: stopping after this step and saving a checkpoint (a second one aborts at once)")
        else:
            log.warning("Ctrl-C: stopping after this step and saving a checkpoint (press again to abort at once)")

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, earlier in previous.items():
            signal.signal(number, earlier)
