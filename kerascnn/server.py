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
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

from kerascnn import servers
from kerascnn.errors import ArgumentError

DEFAULT_PORT = 5001  # `kerascnn ui` takes 5000
READY_TIMEOUT_S = 180.0


def serve_command(model_uri: str, host: str, port: int) -> list[str]:
    """The ``mlflow models serve`` command line.

    Example:
        >>> serve_command("models:/digits@champion", "127.0.0.1", 5001)[1:4]
        ['models', 'serve', '-m']
    """
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    return [
        str(mlflow_cli) if mlflow_cli.exists() else "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        host,
        "-p",
        str(port),
        "-w",
        "1",
    ]


def server_env(tracking_uri: str) -> dict[str, str]:
    """The server's environment: the store, this Python's ``bin`` folder first on ``PATH``
    (not resolved: a virtual environment's ``python`` is a symlink out of it), TensorFlow's
    C++ info lines off, and no download progress bars unless on a terminal."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    env = dict(os.environ, PATH=path, MLFLOW_TRACKING_URI=tracking_uri)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as in the kit's own processes (see `tensorflow_startup`)
    if not sys.stderr.isatty():  # MLflow's download bars are "\r"-joined noise in a pipe or a log file
        env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return env


def example_request(base: str, image_shape: tuple[int, ...]) -> str:
    """A shell command that POSTs one black image to the server.

    Example:
        >>> example_request("http://127.0.0.1:5001", (28, 28, 1))[:40]
        "python3 -c 'import json; print(json.dump"
    """
    h, w, c = image_shape
    payload = f'{{"inputs": [[[[0] * {c}] * {w}] * {h}]}}'
    return (
        f"python3 -c 'import json; print(json.dumps({payload}))' | curl -s {base}/invocations "
        "-H 'Content-Type: application/json' -d @-"
    )


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
    from kerascnn.tracking.store import RUN_ID

    servers.check_address(host, port)
    tracked = ArgumentError(
        "`serve` takes a logged or registered MLflow model (runs:/RUN_ID, a run id, models:/NAME@ALIAS, "
        f"models:/NAME/VERSION), not a model file. Received: model={model!r}"
    )
    if not isinstance(model, str) or not (model.startswith(("runs:/", "models:/")) or RUN_ID.fullmatch(model)):
        raise tracked  # (not "Model file not found": a file is not what it takes)
    source = sources.resolve(model, tracking_uri)
    if source.model_uri is None:
        raise tracked
    if servers.refuse_busy(host, port):
        return 1
    servers.warn_if_public(host, "the model server")
    base = servers.base_url(host, port)
    shape = _input_shape(source)
    named = model if model == source.model_uri else f"{model} ({source.model_uri})"
    print(
        f"kerascnn: serving {named} on {base}/invocations; it takes uint8 images "
        f'{list(shape)} as {{"inputs": [...]}} (0-255 integers). Try:\n  {example_request(base, shape)}\n'
        "kerascnn: starting (about 15 s); Ctrl-C stops it",
        flush=True,
    )
    return servers.run(
        serve_command(source.model_uri, host, port),
        server_env(str(source.tracking_uri)),
        ready=lambda: servers.answers(f"{base}{READY_PROBE}"),
        drop=lambda line: keras_progress(line) or tensorflow_startup(line) or f"GET {READY_PROBE} " in line,
    )


READY_PROBE = "/ping?from=kerascnn"  # (the server's access log line for it is the kit's, not the user's: dropped)


def tensorflow_startup(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's C++ start-up lines, written to the server's stderr
    before absl's logging is set up (date ``0000 00:00``), whatever ``TF_CPP_MIN_LOG_LEVEL`` says:
    the oneDNN notice and the CUDA probe, which ``kerascnn`` hides from its own imports too.

    Example:
        >>> tensorflow_startup("I0000 00:00:1796486091.427506   25367 cudart_stub.cc:31] Could not find cuda drivers")
        True
        >>> tensorflow_startup("INFO:     Started server process [25367]")
        False
    """
    return line.startswith("WARNING: All log messages before absl::InitializeLog()") or (
        re.match(r"[IWE]0000 00:00:\d+\.\d+ +\d+ [\w.]+:\d+\] ", line) is not None
    )


def keras_progress(line: str) -> bool:
    """Whether ``line`` is a Keras progress bar: MLflow's Keras flavor predicts with Keras' default
    ``verbose``, a bar (``"\\r"``, colour escapes, backspaces) on the server's stdout per request.

    Example:
        >>> keras_progress("\\r\\x1b[1m1/1\\x1b[0m \\x1b[32m━━━━\\x1b[0m \\x1b[1m0s\\x1b[0m 93ms/step\\n")
        True
        >>> keras_progress('INFO:     127.0.0.1:53816 - "POST /invocations HTTP/1.1" 200 OK\\n')
        False
    """
    plain = re.sub(r"\x1b\[[0-9;]*m|[\r\b]", " ", line)
    return re.search(r"\b\d+/\d+ .*\d+(?:us|ms|s)/step\s*$", plain) is not None


def _input_shape(source: Any) -> tuple[int, ...]:
    """The image shape in the logged model's signature (its ``MLmodel`` file; no model is loaded)."""
    import tempfile

    from mlflow.models import Model

    from kerascnn.sources import download
    from kerascnn.tracking import store

    location = store.retrying(store.client(source.tracking_uri).get_logged_model, source.model_id).artifact_location
    with tempfile.TemporaryDirectory(prefix="kerascnn-mlmodel-") as folder:
        local = download(
            artifact_uri=f"{location.rstrip('/')}/MLmodel", tracking_uri=source.tracking_uri, dst_path=folder
        )
        signature = Model.load(local).signature
    return tuple(int(d) for d in signature.inputs.inputs[0].shape[1:])


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
