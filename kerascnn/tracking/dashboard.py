"""``kerascnn ui``: the MLflow dashboard on the kit's store, on loopback unless asked otherwise."""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from kerascnn.config import DEFAULT_EXPERIMENT
from kerascnn.errors import ArgumentError
from kerascnn.tracking import store

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


def server_command(tracking_uri: str, host: str, port: int) -> list[str]:
    """The ``mlflow server`` command line for a resolved store."""
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_cli) if mlflow_cli.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    db = store.sqlite_path(tracking_uri)
    if db is not None:  # experiments created in the UI keep their artifacts beside the store too
        command += ["--artifacts-destination", (db.parent / "artifacts").as_uri()]
    if not is_loopback(host):
        command += ["--allowed-hosts", "*"]
    return command


def serve(
    *, host: str = "127.0.0.1", port: int = 5000, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT
) -> int:
    """Serves the dashboard until Ctrl-C/SIGTERM; returns the exit code (1: the port is busy
    or the server failed). The server dies with this process, even when it is SIGKILLed.

    Args:
        host: Bind address; anything but loopback is warned about (MLflow has no
            authentication).
        port: TCP port.
        tracking_uri: The store (default as in ``train``).
        experiment: The experiment whose page is printed (when it exists).

    Example:
        >>> serve(port=5001)  # doctest: +SKIP
    """
    if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host):
        raise ArgumentError(f"`host` must be a host name or IP address. Received: host={host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ArgumentError(f"`port` must be an integer in 1..65535. Received: port={port!r}")
    uri = store.resolve_tracking_uri(tracking_uri)
    busy = _port_busy(host, port)
    if busy:
        print(f"kerascnn: error: cannot listen on {host}:{port} ({busy}); pick another with --port", file=sys.stderr)
        return 1
    client = store.client(uri)  # create or upgrade the store before the server opens it
    if not is_loopback(host):
        print(
            f"kerascnn: warning: the dashboard will listen on {host}, reachable from other machines; "
            "MLflow has no authentication, so anyone who can reach it can read and change your runs",
            file=sys.stderr,
            flush=True,
        )
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    found = store.retrying(client.get_experiment_by_name, experiment)
    page = f"{base}/#/experiments/{found.experiment_id}" if found is not None else base
    print(
        f"kerascnn: MLflow dashboard for {uri} on {base}; experiment {experiment!r}: {page} (Ctrl-C stops it)",
        flush=True,
    )
    return _run_server(server_command(uri, host, port))


def _port_busy(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or ``None`` when it can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """The server gets SIGTERM when ``kerascnn ui`` dies, even by SIGKILL (Linux; MLflow's
    launcher forwards it to its uvicorn workers)."""
    with contextlib.suppress(OSError):  # not Linux: the server then outlives a SIGKILLed ui
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _run_server(command: list[str]) -> int:
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no job runner: starts 2x faster
    stop_requested: list[float] = []
    started: list[subprocess.Popen] = []

    def stop(signum: int, frame: object) -> None:  # only signal here; the loop below reaps
        stop_requested.append(time.monotonic())
        for p in started:
            _signal_group(p, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        process = subprocess.Popen(command, start_new_session=True, env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509 (prctl only; no locks taken)
        started.append(process)
        while process.poll() is None:
            time.sleep(0.2)
            if stop_requested and time.monotonic() - stop_requested[0] > STOP_GRACE_S:
                _signal_group(process, signal.SIGKILL)
        return 0 if stop_requested else (process.returncode or 1)
    finally:
        for p in started:
            _signal_group(p, signal.SIGTERM)  # workers left behind by an exited leader
        for s, h in previous.items():
            signal.signal(s, h)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Signals the server and its workers (one process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
