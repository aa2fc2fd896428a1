"""Lines for the user on stderr (``kerascnn: ...``) that may come while Keras draws a progress
bar on the same terminal: such a line first clears the bar's half-drawn line (the bar is drawn
again below it), so that it never ends up glued to the bar. And :func:`shorten` and :func:`pad`,
for names in tables and figures (measured in a terminal's columns: a CJK character or an emoji
takes two), and :func:`option`, for the commands that hints print; :func:`uncoloured` keeps
colour out where ``NO_COLOR`` asks it to (https://no-color.org)."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import sys
import unicodedata
from collections.abc import Iterator
from typing import Any

_SGR = re.compile(r"\x1b\[[0-9;]*m")  # colour and bold
_TO_GO = re.compile(r"\x1b\[37m(━*)")  # the grey part of Keras' bar: the steps to go


def line_start() -> str:
    """``"\\r\\x1b[K"`` (back to the line's start, clear it) where a progress bar may be half drawn
    (stdout and stderr both on a terminal that knows the escape), else ``""``.

    Example:
        >>> line_start() in ("", "\\r\\x1b[K")
        True
    """
    on_terminal = all(getattr(s, "isatty", lambda: False)() for s in (sys.stdout, sys.stderr))
    return "\r\x1b[K" if on_terminal and os.environ.get("TERM") != "dumb" else ""


class _Uncoloured:
    """A text stream's writes without colour codes (Keras' progress bar hard-codes them); the
    bar's steps to go, grey in colour, are drawn thin (``━━━───``)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        text = _TO_GO.sub(lambda m: "─" * len(m.group(1)), text)
        return int(self._stream.write(_SGR.sub("", text)))

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding: the stream's own
        return getattr(self._stream, name)


@contextlib.contextmanager
def uncoloured() -> Iterator[None]:
    """Within it, what is written to stdout has no colour codes if ``NO_COLOR`` is set (and not empty).

    Example:
        >>> with uncoloured():
        ...     print("\x1b[1m1/1\x1b[0m")  # doctest: +SKIP
    """
    if not os.environ.get("NO_COLOR"):
        yield
        return
    with contextlib.redirect_stdout(_Uncoloured(sys.stdout)):
        yield


def say(message: str) -> None:
    """One line on stderr, on a line of its own.

    Example:
        >>> say("kerascnn: 18 ms/step: about 8 s left for 422 more steps")  # doctest: +SKIP
    """
    print(f"{line_start()}{message}", file=sys.stderr, flush=True)


def _width(c: str) -> int:
    """Columns of one character: 0 for marks, format characters (zero-width space and joiner),
    Hangul's medial and final jamo and emoji skin tones; 2 for wide ones (CJK, most emoji)."""
    if unicodedata.category(c) in ("Mn", "Me", "Cf") or "\u1160" <= c <= "\u11ff" or "\U0001f3fb" <= c <= "\U0001f3ff":
        return 0
    return 2 if unicodedata.east_asian_width(c) in "WF" else 1


def columns(text: str) -> int:
    """How many terminal columns ``text`` takes: two for a wide character (CJK, most emoji),
    none for a combining mark, and an emoji joined to the one before it (``U+200D``) adds none.

    Example:
        >>> columns("run-重み"), len("run-重み")
        (8, 6)
    """
    total, joined = 0, False
    for c in text:
        total += 0 if joined else _width(c)
        joined = c == "\u200d"
    return total


def _fit(text: str, width: int, *, end: bool = False) -> str:
    """The longest start (or ``end``, without a mark left at its start) of ``text`` within ``width`` columns."""
    kept = ""
    for c in reversed(text) if end else text:
        longer = c + kept if end else kept + c
        if columns(longer) > width:
            break
        kept = longer
    while end and kept and _width(kept[0]) == 0:  # (no mark or joiner without what it belongs to)
        kept = kept[1:]
    return kept


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` columns: its middle cut out (``~``), so that both its
    start and its end (a trial's number, a run id) stay readable.

    Example:
        >>> shorten("notebook-hyperband-trial-05 (d3b3c9a2)", 24)
        'notebook-hyp~ (d3b3c9a2)'
    """
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)  # (a tab, a newline: one space)
    if columns(text) <= width or width < 3:
        return _fit(text, width)
    tail = (width - 1) // 2
    return _fit(text, width - 1 - tail) + "~" + _fit(text, tail, end=True)


def pad(text: str, width: int, *, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` columns (on the left when ``right``-aligned).

    Example:
        >>> pad("重み", 6) + "|"
        '重み  |'
    """
    spaces = " " * max(0, width - columns(text))
    return spaces + text if right else text + spaces


def table_width() -> int | None:
    """The columns a table may take on a terminal (its width, or ``COLUMNS`` where set), else
    ``None``: in a pipe or a file, no limit, names in full for ``grep`` (whatever ``COLUMNS``
    a parent process left, as pytest-xdist does).

    Example:
        >>> table_width() is None or table_width() > 0
        True
    """
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def table(
    rows: list[tuple[str, ...]], *, right: set[int], shrink: dict[int, int], width: int | None = None
) -> list[str]:
    """``rows`` (the header first) as aligned lines, two spaces apart; ``right``: the columns
    aligned right; ``shrink``: column -> its least width, the columns :func:`shorten` cuts, in
    this order, until the lines fit in ``width`` (if they can).

    Example:
        >>> table([("name", "acc"), ("a-long-run-name", "0.99")], right={1}, shrink={0: 6}, width=12)
        ['name     acc', 'a-l~me  0.99']
    """
    widths = [max(columns(r[i]) for r in rows) for i in range(len(rows[0]))]
    over = sum(widths) + 2 * (len(widths) - 1) - width if width else 0
    for i, least in shrink.items():
        cut = max(0, min(over, widths[i] - least))
        widths[i], over = widths[i] - cut, over - cut
    lines = (
        (pad(shorten(c, widths[i]) if i in shrink else c, widths[i], right=i in right) for i, c in enumerate(r))
        for r in rows
    )
    return ["  ".join(line).rstrip() for line in lines]


def first(names: list[str], n: int) -> str:
    """The first ``n`` names, and how many more.

    Example:
        >>> first(["a", "b", "c"], 2)
        'a, b and 1 more'
    """
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def option(name: str, value: str | None) -> str:
    """`` --name value`` for a command the user copies from a hint, quoted for a shell; ``""``
    when ``value`` is empty.

    Example:
        >>> option("tracking-uri", "sqlite:///my runs/mlflow.db")
        " --tracking-uri 'sqlite:///my runs/mlflow.db'"
    """
    return f" --{name} {shlex.quote(value)}" if value else ""
