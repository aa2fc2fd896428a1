"""SIGTERM/SIGHUP as exceptions, so runs end KILLED (not RUNNING) and the process exits promptly."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM/SIGHUP.

    A ``BaseException`` like ``KeyboardInterrupt``, so that KerasTuner does not
    mistake it for a failed trial and carry on.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Holds SIGINT, SIGTERM and SIGHUP back inside the block (delivered after it), so that
    ending a run in the store cannot itself be interrupted.

    Example:
        >>> with deferred():
        ...     pass
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (main thread only).

    Example:
        >>> with terminate_as_exception():
        ...     pass
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
