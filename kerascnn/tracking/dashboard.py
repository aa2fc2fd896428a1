"""``kerascnn ui``: the MLflow dashboard on the kit's store, on loopback unless asked otherwise."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kerascnn import checks, servers
from kerascnn.config import DEFAULT_EXPERIMENT
from kerascnn.tracking import store


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
    if not servers.is_loopback(host):
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
        experiment: The experiment whose page is printed (when it does not exist yet, the line says
            so and gives the dashboard's address).

    Example:
        >>> serve(port=5001)  # doctest: +SKIP
    """
    servers.check_address(host, port)
    checks.non_empty("experiment", experiment, maximum=checks.MAX_EXPERIMENT_NAME)
    uri = store.resolve_tracking_uri(tracking_uri, write=False)
    if store.not_made(uri):  # made below: its folder must take it
        store.resolve_tracking_uri(tracking_uri)
    if servers.refuse_busy(host, port):
        return 1
    client = store.client(uri)  # create or upgrade the store before the server opens it
    servers.warn_if_public(host, "the dashboard")
    base = servers.base_url(host, port)
    found = store.retrying(client.get_experiment_by_name, experiment)
    if found is not None and found.lifecycle_stage != "deleted":
        page = f"experiment {experiment!r}: {base}/#/experiments/{found.experiment_id}"
    elif found is not None:
        page = f"experiment {experiment!r} is deleted, every experiment: {base}"
    else:  # (the default's first run may be on its way)
        page = f"no experiment {experiment!r} yet, every experiment: {base}"
    print(f"kerascnn: MLflow dashboard for {uri} on {base}; {page} (Ctrl-C stops it)", flush=True)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no job runner: starts 2x faster
    return servers.run(
        server_command(uri, host, port),
        env,
        ready=lambda: servers.answers(f"{base}/health"),
    )
