"""The thin MLflow layer: where runs go, how they start and end, a metrics callback.

Tracking never owns model code and never crashes training: a failed metric
write is retried, then warned about once, and training goes on. Runs end
FINISHED, FAILED or KILLED (with the reason in the ``kerascnn.failure`` tag),
never RUNNING, whatever our code raises.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import random
import re
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from kerascnn import checks

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_EXPERIMENT = "kerascnn"
_REMOTE_SCHEMES = {"http", "https", "databricks", "postgresql", "mysql", "mssql"}
T = TypeVar("T")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The store to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``.

    SQLite paths are made absolute (relative ones are taken from the working
    directory) and checked for writability; nothing is created here (the
    store's folder appears with the first run). File stores (``./mlruns``,
    ``file:``) are refused: MLflow >= 3.13 no longer accepts them.

    Example:
        >>> resolve_tracking_uri("sqlite:////tmp/x/mlflow.db")
        'sqlite:////tmp/x/mlflow.db'
    """
    source = "tracking_uri"
    if uri is None:
        uri, source = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI, "MLFLOW_TRACKING_URI"
        if uri == DEFAULT_TRACKING_URI and "MLFLOW_TRACKING_URI" not in os.environ:
            source = "tracking_uri"
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError(f"`{source}` must be an MLflow tracking URI. Received: {source}={uri!r}")
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or uri == "sqlite:///":
            raise ValueError(
                f"`{source}` must look like sqlite:///path/to/mlflow.db. Received: {source}={uri!r}"
            )
        path = Path(uri[len("sqlite:///"):]).expanduser()
        path = path if path.is_absolute() else Path.cwd() / path
        if path.is_dir():
            raise ValueError(f"`{source}` names a folder, not a database file. Received: {source}={uri!r}")
        existing = path.parent
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"The store's folder cannot be created or written ({existing}). Received: {source}={uri!r}")
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise ValueError(f"The store file is not readable and writable. Received: {source}={uri!r}")
        return f"sqlite:///{path}"
    if scheme in _REMOTE_SCHEMES:
        return uri
    if scheme in ("", "file"):
        raise ValueError(
            "MLflow >= 3.13 refuses file stores; use a database such as sqlite:///mlruns/mlflow.db "
            f"or a server URL. Received: {source}={uri!r}"
        )
    raise ValueError(
        f"`{source}` has an unsupported scheme {scheme!r} (use sqlite:///..., http(s)://..., "
        f"postgresql://..., mysql://...). Received: {source}={uri!r}"
    )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else ``None``."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def _is_transient(error: BaseException) -> bool:
    text = str(error).lower()
    return any(s in text for s in ("database is locked", "database table is locked", "disk i/o error",
                                   "connection refused", "temporarily unavailable", "timed out"))  # fmt: skip


def retrying(fn: Callable[..., T], *args: Any, attempts: int = 8, **kwargs: Any) -> T:
    """Calls ``fn``, retrying transient store errors (SQLite locks, dropped connections)
    with jittered exponential backoff.

    Example:
        >>> retrying(lambda: 42)
        42
    """
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if attempt == attempts - 1 or not _is_transient(e):
                raise
            time.sleep(min(4.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def lock_folder(folder: Path, *, wait: bool) -> int | None:
    """Takes an exclusive ``flock`` on ``folder`` itself (created if missing; no lock file is
    left behind) and returns the descriptor holding it: closing it releases the lock. With
    ``wait=False``, returns ``None`` when another process holds the lock.

    Example:
        >>> fd = lock_folder(Path("/tmp/kerascnn-lock-demo"), wait=True); os.close(fd)
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialises first-time set-up of a SQLite store across processes."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    fd = lock_folder(db.parent, wait=True)
    try:
        yield
    finally:
        os.close(fd)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"


@functools.lru_cache(maxsize=8)
def client(uri: str) -> Any:
    """The ``MlflowClient`` of ``uri`` (one per process and store).

    A new SQLite store is created under a file lock: MLflow migrates the
    schema without one, and processes creating the same store at once can
    leave it broken for good (see the Reliability section of the README).
    """
    from mlflow.tracking import MlflowClient

    try:
        with _store_lock(uri):
            c = MlflowClient(tracking_uri=uri)
            retrying(c.search_experiments, max_results=1)
    except Exception as e:  # a corrupt file, a server that is down, a foreign database...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ValueError(f"Cannot open the MLflow store ({type(e).__name__}: {first}). Received: tracking_uri={uri!r}") from None
    return c


def warm_up() -> None:
    """Starts, in a background thread, the slow one-off scan MLflow makes of the installed
    packages when it logs a model (about 1 s), so it overlaps with training."""

    def scan() -> None:
        try:
            from mlflow.utils import requirements_utils

            requirements_utils._init_packages_to_modules_map()
        except Exception:  # only a speed-up; log_model does the scan itself otherwise
            pass

    threading.Thread(target=scan, name="kerascnn-mlflow-warmup", daemon=True).start()


def ensure_experiment(uri: str, name: str) -> str:
    """Returns the id of experiment ``name``, creating it (artifacts beside a SQLite store).

    Example:
        >>> ensure_experiment("sqlite:////tmp/x/mlflow.db", "demo")  # doctest: +SKIP
        '1'
    """
    checks.non_empty("experiment", name)
    c = client(uri)
    found = retrying(c.get_experiment_by_name, name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise ValueError(
                f"Experiment is deleted; restore it (mlflow experiments restore) or pick another name. "
                f"Received: experiment={name!r}"
            )
        return found.experiment_id
    db = sqlite_path(uri)
    location = (db.parent / "artifacts" / _slug(name)).as_uri() if db else None
    with _store_lock(uri):  # SQLite: one creator at a time
        found = retrying(c.get_experiment_by_name, name)
        if found is not None:
            return found.experiment_id
        try:
            return retrying(c.create_experiment, name, artifact_location=location)
        except Exception as e:  # a server: another process created it first
            if "RESOURCE_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
                raise
            return retrying(c.get_experiment_by_name, name).experiment_id


def environment_tags() -> dict[str, str]:
    """Versions and device of this process, as run tags."""
    import keras
    import tensorflow as tf

    import kerascnn
    from kerascnn import device

    return {
        "kerascnn.version": kerascnn.__version__,
        "tensorflow.version": tf.__version__,
        "keras.version": keras.__version__,
        "kerascnn.device": device.describe_devices(),
        "kerascnn.host": socket.gethostname(),
        "kerascnn.pid": str(os.getpid()),
    }


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``, values as MLflow stores them (<= 6000 chars)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


class MetricsLogger:
    """Logs metrics to one run; never raises (warns once and keeps training)."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id, self.failed = uri, run_id, False
        self._client = client(uri)

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if _finite_number(v)]
        try:
            retrying(self._client.log_batch, self.run_id, metrics=batch)
        except Exception as e:  # tracking must not crash training
            if not self.failed:
                warnings.warn(f"MLflow metric logging failed, training continues: {e}", stacklevel=2)
            self.failed = True


def _finite_number(value: Any) -> bool:
    try:
        return float(value) == float(value) and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False


def epoch_callback(logger: MetricsLogger) -> Any:
    """A Keras callback logging each epoch's logs and the learning rate at step = epoch."""
    import keras

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            metrics = dict(logs or {})
            try:
                metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            except Exception:  # an optimizer without a readable rate
                pass
            logger.log(metrics, step=epoch)

        def __deepcopy__(self, memo: dict) -> MlflowEpochLogger:  # KerasTuner copies trial callbacks
            return MlflowEpochLogger()

    return MlflowEpochLogger()


def log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    """Logs ``params`` (nested dicts flattened) to ``run_id`` in one batch."""
    from mlflow.entities import Param

    retrying(client.log_batch, run_id, params=[Param(k, v) for k, v in flatten_params(params).items()])


def reopen_run(client: Any, run: Any) -> None:
    """Sets an interrupted run RUNNING again and drops the reason it ended (the interruption is over)."""
    retrying(client.update_run, run.info.run_id, status="RUNNING")
    if "kerascnn.failure" in run.data.tags:
        retrying(client.delete_tag, run.info.run_id, "kerascnn.failure")


def log_keras_model(uri: str, run_id: str, model: Any, name: str, example: Any, outputs: Any = None) -> None:
    """Logs ``model`` as an MLflow Keras model with a signature inferred from ``example``
    (inputs in the model's own shape) and its ``outputs``, predicted when not given (pass them
    after multi-worker training: ``predict`` is a collective op there). Requirements are
    given, not inferred (6-7 s saved)."""
    import mlflow
    import mlflow.keras
    from mlflow.models import infer_signature

    from kerascnn.loading import pip_requirements

    signature = infer_signature(example, model.predict(example, verbose=0) if outputs is None else outputs)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.keras.log_model(model, name=name, signature=signature, pip_requirements=pip_requirements())


def end_run(uri: str, run_id: str, status: str, reason: str | None = None) -> None:
    """Ends ``run_id`` with ``status`` (and the one-line ``reason`` as a tag), retrying locks."""
    c = client(uri)
    if reason:
        retrying(c.set_tag, run_id, "kerascnn.failure", " ".join(reason.split())[:5000])
    retrying(c.set_terminated, run_id, status)


def end_failed(uri: str, run_id: str, error: BaseException) -> None:
    """Ends ``run_id`` KILLED (SIGTERM/SIGHUP) or FAILED with ``error`` as the reason, and marks
    ``error`` with the run for the CLI's message. A store that is down is reported on stderr;
    the original error is what propagates."""
    status = failure_status(error)
    error.kerascnn_run_id, error.kerascnn_status = run_id, status
    try:
        end_run(uri, run_id, status, describe_failure(error))
    except Exception as e:
        print(f"kerascnn: could not mark run {run_id} as ended: {e}", file=sys.stderr)


def failure_status(error: BaseException) -> str:
    """KILLED for SIGTERM/SIGHUP, FAILED otherwise (including Ctrl-C)."""
    from kerascnn.signals import Terminated

    return "KILLED" if isinstance(error, Terminated) else "FAILED"


def describe_failure(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "KeyboardInterrupt: interrupted (Ctrl-C / SIGINT)"
    return f"{type(error).__name__}: {error}"


def process_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
