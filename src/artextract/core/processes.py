"""Worker processes that never outlive the run that started them."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def become_worker() -> None:
    """Call first thing in a pool worker. A terminal's Ctrl-C reaches the whole process group, and the parent alone
    decides what it means (save, then stop the pool). And on Linux the kernel kills the worker when the parent dies:
    a parent killed with SIGKILL cannot shut its pool down, and forked workers, which hold the task pipe open
    themselves, would otherwise wait on it forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return  # no prctl (an unusual libc): workers then end when they next find the pipe closed
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)
