"""SIGTERM/SIGHUP, and a closed output pipe, as exceptions, so runs end KILLED (not RUNNING) and
the process exits promptly; a signal's exception that something swallowed is raised again at the
next epoch's end."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO


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


class OutputClosed(Terminated):
    """Raised in the main thread when the reader of stdout or stderr went away (``kerascnn tune
    | head``): the work stops as SIGPIPE stops a process, and can be resumed as after SIGTERM."""

    def __init__(self) -> None:
        super().__init__(signal.SIGPIPE)
        self.args = ("its output was closed (SIGPIPE)",)


HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Holds SIGINT, SIGTERM and SIGHUP back inside the block, so that ending a run in the store
    cannot itself be interrupted; the first one received acts after the block, as it would have
    (SIGTERM and SIGHUP, which would end the process, raise :class:`Terminated`).

    Handlers, not a signal mask: a mask holds a signal back from one thread only, and the
    kernel hands a process's signal to any other (the writer's, TensorFlow's).

    Example:
        >>> with deferred():
        ...     pass
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    held = [s for s in HELD if signal.getsignal(s) is not None]  # (None: set outside Python, kept)
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        signum = signal.Signals(received[0])
        if signum != signal.SIGINT and previous[signum] == signal.SIG_DFL:
            raise Terminated(signum)
        signal.raise_signal(signum)  # (Python's Ctrl-C handler raises KeyboardInterrupt)


_raised: list[BaseException] = []  # the signal's exception raised in this block, if any


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (main thread only), and
    :func:`raise_again` can raise a signal's exception again (Ctrl-C's ``KeyboardInterrupt`` too,
    unless someone else handles SIGINT).

    Example:
        >>> with terminate_as_exception():
        ...     pass
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        error = KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)
        _raised[:] = [error]
        raise error

    handled = [signal.SIGTERM, signal.SIGHUP]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # Python's own (or a notebook's) Ctrl-C
        handled.append(signal.SIGINT)
    _raised.clear()
    previous = {s: signal.signal(s, handler) for s in handled}
    try:
        yield
    finally:
        _raised.clear()
        for s, h in previous.items():
            signal.signal(s, h)


def raise_again() -> None:
    """Raises the exception of a signal received in the block again, where it cannot have
    propagated (it was raised inside something that swallows exceptions: Python ignores one
    raised in a weakref callback or ``__del__``, with an "Exception ignored" line).

    Example:
        >>> raise_again()  # nothing was received
    """
    if _raised:
        raise _raised.pop()


class _Guarded:
    """A text stream on which a broken pipe raises :class:`OutputClosed` (once per process, in
    the main thread); the stream's descriptor then points at ``/dev/null``, so that whatever
    is written after it, in any thread, is dropped without an error."""

    def __init__(self, stream: TextIO, broken: list[bool]) -> None:
        self._stream, self._broken = stream, broken

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._closed()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._closed()

    def _closed(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._stream.fileno())
            finally:
                os.close(null)
        if not self._broken and threading.current_thread() is threading.main_thread():
            self._broken.append(True)
            _raised[:] = [error := OutputClosed()]
            raise error


@contextlib.contextmanager
def output_closed_as_exception() -> Iterator[None]:
    """Within the block, writing to ``sys.stdout`` or ``sys.stderr`` after its reader went away
    raises :class:`OutputClosed` (the process would otherwise fail the trial or run it was in,
    a ``BrokenPipeError`` like any error, and carry on).

    Example:
        >>> with output_closed_as_exception():
        ...     print("read")
        read
    """
    saved, broken = (sys.stdout, sys.stderr), list[bool]()
    sys.stdout, sys.stderr = _Guarded(sys.stdout, broken), _Guarded(sys.stderr, broken)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
