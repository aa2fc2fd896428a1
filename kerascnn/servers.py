"""Running a server child (`kerascnn ui`'s MLflow dashboard, `kerascnn serve`'s scoring server)
for as long as the command runs: loopback checks, a busy port refused up front, the child in
its own process group, stopped cleanly on Ctrl-C/SIGTERM, and never outliving the command
(on Linux, even when the command is SIGKILLed)."""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TextIO

from kerascnn.errors import ArgumentError

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
STOP_GRACE_S = 10.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0")
        (True, False)
    """
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(host: str, port: int) -> None:
    """Refuses a malformed host or port, or a host this machine cannot listen on (``ArgumentError``)."""
    if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host):
        raise ArgumentError(f"`host` must be a host name or IP address. Received: host={host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ArgumentError(f"`port` must be an integer in 1..65535. Received: port={port!r}")
    unusable = port_busy(host, 0)  # any free port: only the address is in question here
    if unusable:
        raise ArgumentError(f"`host` is not an address of this machine ({unusable}). Received: host={host!r}")


def warn_if_public(host: str, what: str) -> None:
    """One warning line when ``host`` is reachable from other machines (MLflow has no authentication)."""
    if not is_loopback(host):
        print(
            f"kerascnn: warning: {what} will listen on {host}, reachable from other machines; MLflow has no "
            "authentication, so anyone who can reach it can use it",
            file=sys.stderr,
            flush=True,
        )


def base_url(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 hosts in brackets)."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def refuse_busy(host: str, port: int) -> bool:
    """Says so in one error line, and returns True, when ``host:port`` is taken."""
    busy = port_busy(host, port)
    if busy:
        print(f"kerascnn: error: cannot listen on {host}:{port} ({busy}); pick another with --port", file=sys.stderr)
    return busy is not None


def port_busy(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or ``None`` when it can (as servers bind: with
    ``SO_REUSEADDR``, so a port whose last server just stopped, its connections in TIME-WAIT, is free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether ``GET url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """The child gets SIGTERM when the command dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG;
    MLflow's launchers forward it to their uvicorn workers)."""
    with contextlib.suppress(OSError):  # not Linux: the server then outlives a SIGKILLed command
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def signal_group(process: subprocess.Popen, signum: int) -> None:
    """Signals the server and its workers (one process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def run(
    command: list[str],
    env: dict[str, str],
    ready: Callable[[], bool] | None = None,
    drop: Callable[[str], bool] | None = None,
) -> int:
    """Runs the server until it exits or Ctrl-C/SIGTERM stops it (0), printing ``ready after N s``
    once ``ready()`` holds; returns 1 when it exits on its own with 0, else its code. With ``drop``,
    the server's stdout and stderr are copied to this process's without the lines ``drop`` matches."""
    stop_requested: list[float] = []
    started: list[subprocess.Popen] = []

    def stop(signum: int, frame: object) -> None:  # only signal here; the loop below reaps
        stop_requested.append(time.monotonic())
        for p in started:
            signal_group(p, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        output = None if drop is None else subprocess.PIPE
        process = subprocess.Popen(
            command,
            start_new_session=True,
            env=env,
            stdout=output,
            stderr=output,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (prctl only)
        )
        started.append(process)
        copiers = (
            []
            if drop is None
            else [_copier(process.stdout, sys.stdout, drop), _copier(process.stderr, sys.stderr, drop)]
        )
        launched, waiting = time.monotonic(), ready is not None
        while process.poll() is None:
            time.sleep(0.2)
            if waiting and not stop_requested and ready is not None and ready():
                waiting = False
                print(f"kerascnn: ready after {time.monotonic() - launched:.1f} s", flush=True)
            if stop_requested and time.monotonic() - stop_requested[0] > STOP_GRACE_S:
                signal_group(process, signal.SIGKILL)
        for copier in copiers:
            copier.join(timeout=5)  # the server's last lines
        return 0 if stop_requested else (process.returncode or 1)
    finally:
        for p in started:
            signal_group(p, signal.SIGTERM)  # workers left behind by an exited leader
        for s, h in previous.items():
            signal.signal(s, h)


def _copier(source: Any, target: TextIO, drop: Callable[[str], bool]) -> threading.Thread:
    """A started thread that copies a server's pipe ``source`` to ``target`` line by line, but the
    lines ``drop`` matches."""

    def copy() -> None:
        closed = False  # this process's stream (a pipe whose reader is gone): drain, so the server never blocks
        for raw in source:
            line = raw.decode(errors="replace")
            if closed or drop(line):
                continue
            try:
                target.write(line)
                target.flush()
            except (OSError, ValueError):
                closed = True

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread
