"""Lines for the user on stderr (``kerascnn: ...``) that may come while Keras draws a progress
bar on the same terminal: such a line first clears the bar's half-drawn line (the bar is drawn
again below it), so that it never ends up glued to the bar. And :func:`shorten`, for names in
tables and figures, and :func:`option`, for the commands that hints print."""

from __future__ import annotations

import os
import shlex
import sys


def line_start() -> str:
    """``"\\r\\x1b[K"`` (back to the line's start, clear it) where a progress bar may be half drawn
    (stdout and stderr both on a terminal that knows the escape), else ``""``.

    Example:
        >>> line_start() in ("", "\\r\\x1b[K")
        True
    """
    on_terminal = all(getattr(s, "isatty", lambda: False)() for s in (sys.stdout, sys.stderr))
    return "\r\x1b[K" if on_terminal and os.environ.get("TERM") != "dumb" else ""


def say(message: str) -> None:
    """One line on stderr, on a line of its own.

    Example:
        >>> say("kerascnn: 18 ms/step: about 8 s left for 422 more steps")  # doctest: +SKIP
    """
    print(f"{line_start()}{message}", file=sys.stderr, flush=True)


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: its middle cut out (``~``), so that both its
    start and its end (a trial's number, a run id) stay readable.

    Example:
        >>> shorten("notebook-hyperband-trial-05 (d3b3c9a2)", 24)
        'notebook-hyp~ (d3b3c9a2)'
    """
    if len(text) <= width or width < 3:
        return text[:width]
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "~" + text[-tail:]


def option(name: str, value: str | None) -> str:
    """`` --name value`` for a command the user copies from a hint, quoted for a shell; ``""``
    when ``value`` is empty.

    Example:
        >>> option("tracking-uri", "sqlite:///my runs/mlflow.db")
        " --tracking-uri 'sqlite:///my runs/mlflow.db'"
    """
    return f" --{name} {shlex.quote(value)}" if value else ""
