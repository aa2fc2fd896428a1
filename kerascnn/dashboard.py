"""``kerascnn ui``: the MLflow dashboard on the kit's store, on loopback unless asked otherwise."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kerascnn import tracking

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
    command = [str(mlflow_cli) if mlflow_cli.exists() else "mlflow", "server",
               "--backend-store-uri", tracking_uri, "--host", host, "--port", str(port), "--workers", "1"]  # fmt: skip
    db = tracking.sqlite_path(tracking_uri)
    if db is not None:  # experiments created in the UI keep their artifacts beside the store too
        command += ["--artifacts-destination", (db.parent / "artifacts").as_uri()]
    if not is_loopback(host):
        command += ["--allowed-hosts", "*"]
    return command


def serve(*, host: str = "127.0.0.1", port: int = 5000, tracking_uri: str | None = None) -> int:
    """Serves the dashboard until Ctrl-C/SIGTERM; returns the server's exit code.

    Args:
        host: Bind address; anything but loopback is warned about (MLflow has
            no authentication).
        port: TCP port.
        tracking_uri: The store (default as in ``train``).

    Example:
        >>> serve(port=5001)  # doctest: +SKIP
    """
    if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host):
        raise ValueError(f"`host` must be a host name or IP address. Received: host={host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"`port` must be an integer in 1..65535. Received: port={port!r}")
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.client(uri)  # create or upgrade the store before the server opens it
    if not is_loopback(host):
        print(f"kerascnn: warning: the dashboard will listen on {host}, reachable from other machines; "
              "MLflow has no authentication, so anyone who can reach it can read and change your runs",
              file=sys.stderr, flush=True)  # fmt: skip
    shown = f"[{host}]" if ":" in host else host
    print(f"kerascnn: MLflow dashboard for {uri} on http://{shown}:{port} (Ctrl-C stops it)", flush=True)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no job runner: starts 2x faster
    stop_requested: list[float] = []
    started: list[subprocess.Popen] = []

    def stop(signum: int, frame: object) -> None:  # only signal here; the loop below reaps
        stop_requested.append(time.monotonic())
        for p in started:
            _signal_group(p, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if stop_requested:
            return 0
        process = subprocess.Popen(server_command(uri, host, port), start_new_session=True, env=env)
        started.append(process)
        while process.poll() is None:
            time.sleep(0.2)
            if stop_requested and time.monotonic() - stop_requested[0] > STOP_GRACE_S:
                _signal_group(process, signal.SIGKILL)
        return 0 if stop_requested else process.returncode
    finally:
        for p in started:
            _signal_group(p, signal.SIGTERM)  # workers left behind by an exited leader
        for s, h in previous.items():
            signal.signal(s, h)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Signals the server and its workers (one process group)."""
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
