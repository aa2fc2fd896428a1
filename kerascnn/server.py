"""``kerascnn serve``: MLflow's scoring server for a run's or a registered model, on loopback by default.

A thin wrapper around ``mlflow models serve -m URI --env-manager local -w 1``: the model runs in
this Python environment (no conda or virtualenv is built), the store is passed to the server,
and the environment's ``bin`` folder comes first on the server's ``PATH`` (MLflow starts
``uvicorn`` by name, which fails with "exec: uvicorn: not found" when the virtual environment
is not activated). The server takes raw ``uint8`` images: POST ``{"inputs": images}`` (a nested
list of 0-255 integers, shape ``(N, H, W, C)``) to ``/invocations``; it answers
``{"predictions": [[probabilities], ...]}``. Floats are cast to ``uint8`` by MLflow (truncated).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from kerascnn.errors import ArgumentError
from kerascnn.tracking.dashboard import STOP_GRACE_S, _die_with_parent, _port_busy, _signal_group, is_loopback

DEFAULT_PORT = 5001  # `kerascnn ui` takes 5000
READY_TIMEOUT_S = 180.0


def serve_command(model_uri: str, host: str, port: int) -> list[str]:
    """The ``mlflow models serve`` command line.

    Example:
        >>> serve_command("models:/digits@champion", "127.0.0.1", 5001)[1:4]
        ['models', 'serve', '-m']
    """
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    return [str(mlflow_cli) if mlflow_cli.exists() else "mlflow", "models", "serve", "-m", model_uri,
            "--env-manager", "local", "-h", host, "-p", str(port), "-w", "1"]  # fmt: skip


def server_env(tracking_uri: str) -> dict[str, str]:
    """The server's environment: the store, and this Python's ``bin`` folder first on ``PATH``
    (not resolved: a virtual environment's ``python`` is a symlink out of it)."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return dict(os.environ, PATH=path, MLFLOW_TRACKING_URI=tracking_uri)


def example_request(base: str, image_shape: tuple[int, ...]) -> str:
    """A shell command that POSTs one black image to the server.

    Example:
        >>> example_request("http://127.0.0.1:5001", (28, 28, 1))[:40]
        "python3 -c 'import json; print(json.dump"
    """
    h, w, c = image_shape
    payload = f'{{"inputs": [[[[0] * {c}] * {w}] * {h}]}}'
    return (f"python3 -c 'import json; print(json.dumps({payload}))' | curl -s {base}/invocations "
            "-H 'Content-Type: application/json' -d @-")  # fmt: skip


def serve(model: str, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, tracking_uri: str | None = None) -> int:
    """Serves ``model`` until Ctrl-C/SIGTERM; returns the exit code (1: the port is busy or the server failed).

    Args:
        model: ``runs:/RUN_ID[/NAME]``, a run id, ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.
        host: Bind address; anything but loopback is warned about (the server has no authentication).
        port: TCP port.
        tracking_uri: The store (default as in ``train``).

    Example:
        >>> serve("models:/digits@champion", port=5001)  # doctest: +SKIP
    """
    from kerascnn import sources

    _check_address(host, port)
    source = sources.resolve(model, tracking_uri)
    if source.model_uri is None:
        raise ArgumentError("`serve` takes a logged or registered MLflow model (runs:/RUN_ID, models:/NAME@ALIAS, "
                            f"models:/NAME/VERSION), not a .keras file. Received: model={model!r}")  # fmt: skip
    busy = _port_busy(host, port)
    if busy:
        print(f"kerascnn: error: cannot listen on {host}:{port} ({busy}); pick another with --port", file=sys.stderr)
        return 1
    if not is_loopback(host):
        print(f"kerascnn: warning: the model server will listen on {host}, reachable from other machines; it has "
              "no authentication", file=sys.stderr, flush=True)  # fmt: skip
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    shape = _input_shape(source)
    named = model if model == source.model_uri else f"{model} ({source.model_uri})"
    print(f"kerascnn: serving {named} on {base}/invocations; it takes uint8 images "
          f"{list(shape)} as {{\"inputs\": [...]}} (0-255 integers). Try:\n  {example_request(base, shape)}\n"
          "kerascnn: starting (about 15 s); Ctrl-C stops it", flush=True)  # fmt: skip
    return _run(serve_command(source.model_uri, host, port), server_env(str(source.tracking_uri)), base)


def _check_address(host: Any, port: Any) -> None:
    if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host):
        raise ArgumentError(f"`host` must be a host name or IP address. Received: host={host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ArgumentError(f"`port` must be an integer in 1..65535. Received: port={port!r}")


def _input_shape(source: Any) -> tuple[int, ...]:
    """The image shape in the logged model's signature (its ``MLmodel`` file; no model is loaded)."""
    import tempfile

    from mlflow.models import Model

    from kerascnn.sources import download
    from kerascnn.tracking import store

    location = store.retrying(store.client(source.tracking_uri).get_logged_model, source.model_id).artifact_location
    with tempfile.TemporaryDirectory(prefix="kerascnn-mlmodel-") as folder:
        local = download(artifact_uri=f"{location.rstrip('/')}/MLmodel", tracking_uri=source.tracking_uri,
                         dst_path=folder)  # fmt: skip
        signature = Model.load(local).signature
    return tuple(int(d) for d in signature.inputs.inputs[0].shape[1:])


def _run(command: list[str], env: dict[str, str], base: str) -> int:
    """Runs the server in its own process group; prints when it answers ``/ping``; stops it on SIGINT/SIGTERM."""
    stop_requested: list[float] = []
    started: list[subprocess.Popen] = []

    def stop(signum: int, frame: object) -> None:  # only signal here; the loop below reaps
        stop_requested.append(time.monotonic())
        for p in started:
            _signal_group(p, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        process = subprocess.Popen(command, start_new_session=True, env=env, preexec_fn=_die_with_parent)
        started.append(process)
        launched, ready = time.monotonic(), False
        while process.poll() is None:
            time.sleep(0.2)
            if not ready and not stop_requested and _answers(f"{base}/ping"):
                ready = True
                print(f"kerascnn: ready after {time.monotonic() - launched:.1f} s", flush=True)
            if stop_requested and time.monotonic() - stop_requested[0] > STOP_GRACE_S:
                _signal_group(process, signal.SIGKILL)
        return 0 if stop_requested else (process.returncode or 1)
    finally:
        for p in started:
            _signal_group(p, signal.SIGTERM)  # workers left behind by an exited leader
        for s, h in previous.items():
            signal.signal(s, h)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def predictions(base: str, images: Any, timeout: float = 60) -> list[list[float]]:
    """POSTs ``uint8`` images to a running server; returns its probabilities (one list per image).

    Example:
        >>> predictions("http://127.0.0.1:5001", x_test[:2])  # doctest: +SKIP
        [[0.001, ...], [...]]
    """
    body = json.dumps({"inputs": images.tolist() if hasattr(images, "tolist") else images}).encode()
    request = urllib.request.Request(f"{base}/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())["predictions"]
