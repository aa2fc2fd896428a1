"""Every tracking write of a process, in order, on one background thread; a spool when the store fails.

Training never waits on the store: an epoch's metrics are queued and the step goes on.
TensorFlow releases the GIL while it computes, so opening the store, importing MLflow's
fluent API and drawing plots overlap with training instead of adding to it.

When a write fails (a tracking server that went away, a store that will not answer in
``KERASCNN_TRACKING_TIMEOUT`` seconds), that write and every later write of the same run
go to the run's spool folder, ``<store home>/spool/<local id>/``: ``run.json`` (where the
run belongs), ``ops.jsonl`` (the writes in order, metrics with their steps and timestamps)
and the files of its artifacts, the trained model included. ``kerascnn sync`` replays it
(:mod:`kerascnn.tracking.sync`). A run's writes are never reordered and never dropped.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import queue
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerascnn.tracking import store

SPOOL = "spool"
LOCAL_ONLY = ("monitor", "warm")  # ops that write nothing the spool could replay


@dataclass(eq=False)
class RunRef:
    """A run as the recorder knows it: our id at once, MLflow's once the store created it."""

    uri: str
    experiment: str
    name: str
    local_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    run_id: str | None = None
    parent: RunRef | None = None
    spooled: bool = False
    monitor: Any = field(default=None, repr=False)  # MLflow's system-metrics sampler, while the run is open
    logged_model: str | None = None  # models:/m-... of the model this process logged last
    spool_lock: int | None = field(default=None, repr=False)  # held while this process appends to the spool

    @property
    def spool_dir(self) -> Path:
        return store.home(self.uri) / SPOOL / self.local_id

    @property
    def label(self) -> str:
        return self.run_id or f"{self.name} (local id {self.local_id[:12]})"


@dataclass(eq=False)
class Op:
    """One write. ``data`` is JSON (what the spool keeps); ``prepare`` is local work done
    first, in order (drawing a plot into a folder); ``live`` is an object only a direct
    write can use (the Keras model, which the spool keeps as a file instead)."""

    kind: str
    run: RunRef
    data: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[], None] | None = None
    live: Any = None


class Recorder:
    """The background writer of one tracking store."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._queue: queue.Queue[Op] = queue.Queue()
        self._lock = threading.Lock()  # spool files
        self._current: Op | None = None
        self._abandoned = False
        self._down_until = 0.0
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="kerascnn-recorder", daemon=True)
        self._thread.start()

    def submit(self, op: Op) -> None:
        """Queues ``op``; returns at once."""
        if self._abandoned:
            self._spool(op)
        else:
            self._queue.put(op)

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every queued write is done (or spooled); ``False`` if ``timeout`` passed,
        in which case what is left is spooled now and the recorder spools from then on."""
        deadline = time.monotonic() + (store.flush_timeout(self.uri) if timeout is None else timeout)
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks and time.monotonic() < deadline:
                self._queue.all_tasks_done.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            if not self._queue.unfinished_tasks:
                return True
        self._abandon()
        return False

    def _abandon(self) -> None:
        """The store is too slow to wait for: spool the write in flight and everything queued."""
        self._abandoned = True
        left = [self._current] if self._current is not None else []
        while True:
            try:
                left.append(self._queue.get_nowait())
                self._queue.task_done()
            except queue.Empty:
                break
        for op in left:
            self._spool(op)

    def _loop(self) -> None:
        while True:
            op = self._queue.get()
            self._current = op
            try:
                self._handle(op)
            finally:
                self._current = None
                self._queue.task_done()

    def _handle(self, op: Op) -> None:
        if op.prepare is not None:
            try:
                op.prepare()
            except Exception as e:  # a plot that cannot be drawn must not stop tracking
                print(f"kerascnn: warning: could not prepare {op.kind} for run {op.run.label}: {e}", file=sys.stderr)
                return
            op.prepare = None
        parent_spooled = op.kind == "create" and op.run.parent is not None and op.run.parent.run_id is None
        if op.run.spooled or parent_spooled or time.monotonic() < self._down_until:
            self._spool(op)
            return
        try:
            apply(self.uri, op)
        except Exception as e:
            if self._abandoned:
                return  # already spooled by flush()
            self._down_until = time.monotonic() + store.timeout_s()
            self._warn_spooled(op.run, e)
            self._spool(op)

    def _warn_spooled(self, run: RunRef, error: BaseException) -> None:
        if run.local_id in self._warned:
            return
        self._warned.add(run.local_id)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        print(
            f"kerascnn: warning: the tracking store failed ({type(error).__name__}: {first}); run {run.label} "
            f"goes on into the spool {run.spool_dir} (`kerascnn sync` sends it)",
            file=sys.stderr,
            flush=True,
        )

    def _spool(self, op: Op) -> None:
        """Appends ``op`` to its run's spool (the run spools from now on)."""
        if op.kind in LOCAL_ONLY:
            return
        with self._lock:
            op.run.spooled = True
            folder = op.run.spool_dir
            if op.run.spool_lock is None:  # `kerascnn sync` skips a folder a writer holds
                op.run.spool_lock = store.lock_folder(folder, wait=False)
            _write_run_json(op.run)
            if op.prepare is not None:
                try:
                    op.prepare()
                except Exception:
                    return
            data = dict(op.data)
            if op.kind in ("artifacts", "model"):
                data = _keep_files(folder, op.kind, data)
            with open(folder / "ops.jsonl", "a") as f:
                f.write(json.dumps({"kind": op.kind, "data": data}) + "\n")
            if op.kind == "end" and op.run.spool_lock is not None:
                os.close(op.run.spool_lock)
                op.run.spool_lock = None


def _write_run_json(run: RunRef) -> None:
    info = {
        "local_id": run.local_id,
        "run_id": run.run_id,
        "uri": run.uri,
        "experiment": run.experiment,
        "name": run.name,
        "parent_local_id": run.parent.local_id if run.parent else None,
        "parent_run_id": run.parent.run_id if run.parent else None,
    }
    (run.spool_dir / "run.json").write_text(json.dumps(info, indent=1))


def _keep_files(folder: Path, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Copies an op's local files into the spool; the op then points at the copies."""
    source = Path(data["path"])
    target = folder / "files" / uuid.uuid4().hex[:12]
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        target.mkdir(parents=True)
        shutil.copy2(source, target / source.name)
        target = target / source.name
    return dict(data, path=str(target.relative_to(folder)))


def apply(uri: str, op: Op, folder: Path | None = None) -> None:
    """Writes one op to the store. ``folder`` is a spool folder its file paths are relative to."""
    from mlflow.entities import Metric, Param, RunTag

    c = store.client(uri)
    run, data = op.run, op.data
    if op.kind == "create":
        experiment_id = store.ensure_experiment(uri, run.experiment)
        tags = dict(data["tags"], **{"kerascnn.local_id": run.local_id})
        if run.parent is not None:
            tags["mlflow.parentRunId"] = run.parent.run_id
        created = store.retrying(
            c.create_run, experiment_id, start_time=data["start_time"], tags=tags, run_name=run.name
        )
        run.run_id = created.info.run_id
        return
    run_id = run.run_id
    if op.kind == "reopen":
        store.retrying(c.update_run, run_id, status="RUNNING")
        if data.get("drop_failure"):
            store.retrying(c.delete_tag, run_id, "kerascnn.failure")
    elif op.kind == "params":
        store.retrying(c.log_batch, run_id, params=[Param(k, v) for k, v in data["params"].items()])
    elif op.kind == "tags":
        store.retrying(c.log_batch, run_id, tags=[RunTag(k, v) for k, v in data["tags"].items()])
    elif op.kind == "metrics":
        store.retrying(c.log_batch, run_id, metrics=[Metric(k, v, t, s) for k, v, t, s in data["metrics"]])
    elif op.kind == "artifacts":
        path = Path(data["path"]) if folder is None else folder / data["path"]
        log = c.log_artifacts if path.is_dir() else c.log_artifact
        store.retrying(log, run_id, str(path), data.get("artifact_path") or None)
    elif op.kind == "inputs":
        store.retrying(c.log_inputs, run_id, datasets=[_dataset_input(d) for d in data["datasets"]])
    elif op.kind == "model":
        run.logged_model = _log_model(uri, run_id, op, folder)
    elif op.kind == "register":
        _register(c, run, data)
    elif op.kind == "monitor":
        run.monitor = _start_monitor(uri, run_id, data["interval_s"])
    elif op.kind == "warm":
        _import_quietly(data["modules"])
    elif op.kind == "end":
        if run.monitor is not None:
            run.monitor.finish()
            run.monitor = None
        if data.get("reason"):
            store.retrying(c.set_tag, run_id, "kerascnn.failure", data["reason"])
        store.retrying(c.set_terminated, run_id, data["status"], end_time=data["end_time"])
    else:
        raise AssertionError(f"unknown op {op.kind}")


def _dataset_input(d: dict[str, Any]) -> Any:
    """An MLflow dataset input (name, digest, source, split context) from its JSON description."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(
        d["name"],
        d["digest"],
        d["source_type"],
        json.dumps(d["source"]),
        json.dumps(d["schema"]),
        json.dumps(d["profile"]),
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", d["context"])])


def _import_quietly(modules: list[str]) -> None:
    """Imports ``modules`` now (a module that fails is imported again, and fails loudly, where used)."""
    import importlib

    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _start_monitor(uri: str, run_id: str | None, interval_s: float) -> Any:
    """MLflow's system-metrics sampler (CPU, memory, disk, network; GPUs with nvidia-ml-py)."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, tracking_uri=uri)
    monitor.start()
    return monitor


def _log_model(uri: str, run_id: str | None, op: Op, folder: Path | None) -> str:
    """An MLflow Keras model that takes raw ``uint8`` images (the training preprocessing in
    front, see :mod:`kerascnn.serving`), with a signature and the class names as metadata;
    rebuilt from the saved ``.keras`` file when replayed from the spool."""
    import mlflow
    import mlflow.keras
    import numpy as np
    from mlflow.models import Model, infer_signature

    from kerascnn.data import Adaptation
    from kerascnn.serving import served_model

    data = op.data
    model = op.live
    if model is None:
        from kerascnn.loading import load_model

        model = load_model(Path(data["path"]) if folder is None else folder / data["path"], compile=False)
    if data.get("adaptation"):
        model = served_model(model, Adaptation.from_dict(data["adaptation"]))
    example = np.asarray(data["example"], dtype=data.get("example_dtype", "float32"))
    outputs = np.asarray(data["outputs"], dtype=np.float32)
    signature = infer_signature(example, outputs)
    mlflow.set_tracking_uri(uri)
    c = store.client(uri)
    experiment_id = store.retrying(c.get_run, run_id).info.experiment_id
    logged = store.retrying(c.create_logged_model, experiment_id, name=data["name"], source_run_id=run_id)
    Model.log(
        artifact_path=None,
        name=data["name"],
        flavor=mlflow.keras,
        run_id=run_id,
        model_id=logged.model_id,
        model=model,
        signature=signature,
        pip_requirements=data["requirements"],
        metadata=data.get("metadata"),
    )
    return f"models:/{logged.model_id}"


def _register(c: Any, run: RunRef, data: dict[str, Any]) -> None:
    """A new version of registered model ``data["name"]`` from the run's logged model, tagged;
    ``data["alias"]`` is moved to it."""
    if run.logged_model is None:
        raise RuntimeError("no logged model to register")
    name = data["name"]
    try:
        store.retrying(c.create_registered_model, name)
    except Exception as e:  # it exists: a new version of it
        if "already exists" not in str(e) and "RESOURCE_ALREADY_EXISTS" not in str(e):
            raise
    import kerascnn

    tags = dict(data.get("tags", {}), run_id=run.run_id, kerascnn_version=kerascnn.__version__)
    version = store.retrying(
        c.create_model_version,
        name,
        run.logged_model,
        run_id=run.run_id,
        tags=tags,
        model_id=run.logged_model.removeprefix("models:/"),
    )
    if data.get("alias"):
        store.retrying(c.set_registered_model_alias, name, data["alias"], version.version)
    print(
        f"kerascnn: registered {name} version {version.version}"
        + (f" (alias {data['alias']})" if data.get("alias") else ""),
        file=sys.stderr,
        flush=True,
    )


@functools.lru_cache(maxsize=8)
def recorder(uri: str) -> Recorder:
    """The process's recorder of store ``uri`` (flushed, bounded, at exit)."""
    r = Recorder(uri)
    atexit.register(r.flush)
    return r
