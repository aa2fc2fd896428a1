"""The writes themselves: one recorded op (see :mod:`~kerascnn.tracking.recorder`) applied to an
MLflow store with the MLflow client.

Used by the tracking writer process while a run trains, and by ``kerascnn sync`` when it
replays a spool. Every op's data is JSON: files are named by path (a spool's copy when
``folder`` is given) and reports are drawn here, from the numbers in the op.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kerascnn.tracking import store
from kerascnn.tracking.recorder import Op, RunRef

# Held while heavy modules (TensorFlow, MLflow's Keras flavor, matplotlib) are imported: two
# threads importing them at once can trip Python's import deadlock detection.
IMPORT_LOCK = threading.RLock()


def apply(uri: str, op: Op, folder: Path | None = None) -> None:
    """Writes one op to the store. ``folder`` is a spool folder its file paths are relative to.

    Example:
        >>> apply("sqlite:////tmp/doc/mlflow.db", Op("tags", run, {"tags": {"a": "1"}}))  # doctest: +SKIP
    """
    handler = _HANDLERS.get(op.kind)
    if handler is None:
        raise AssertionError(f"unknown op {op.kind}")
    handler(uri, op, folder)


def _create(uri: str, op: Op, folder: Path | None) -> None:
    run, data, c = op.run, op.data, store.client(uri)
    experiment_id = store.ensure_experiment(uri, run.experiment)
    tags = dict(data["tags"], **{"kerascnn.local_id": run.local_id})
    if run.parent is not None:
        tags["mlflow.parentRunId"] = run.parent.run_id
    created = store.retrying(c.create_run, experiment_id, start_time=data["start_time"], tags=tags, run_name=run.name)
    run.run_id, run.artifact_uri = created.info.run_id, created.info.artifact_uri


def _reopen(uri: str, op: Op, folder: Path | None) -> None:
    c = store.client(uri)
    store.retrying(c.update_run, op.run.run_id, status="RUNNING")
    dropped = [*op.data.get("drop_tags", []), *(["kerascnn.failure"] if op.data.get("drop_failure") else [])]
    for tag in dropped:  # (drop_failure: an op spooled by an earlier kerascnn)
        store.retrying(c.delete_tag, op.run.run_id, tag)
    op.run.artifact_uri = store.retrying(c.get_run, op.run.run_id).info.artifact_uri


def _batch(uri: str, op: Op, folder: Path | None) -> None:
    """Params, tags or metrics, in one ``log_batch``."""
    from mlflow.entities import Metric, Param, RunTag

    data = op.data
    entities: dict[str, list[Any]] = {
        "params": [Param(k, v) for k, v in data.get("params", {}).items()],
        "tags": [RunTag(k, v) for k, v in data.get("tags", {}).items()],
        "metrics": [Metric(k, v, t, s) for k, v, t, s in data.get("metrics", [])],
    }
    store.retrying(store.client(uri).log_batch, op.run.run_id, **{op.kind: entities[op.kind]})


def _artifacts(uri: str, op: Op, folder: Path | None) -> None:
    """Uploads a file or a folder; a ``draw`` spec first draws the run's report plots into it."""
    data, c = op.data, store.client(uri)
    path = Path(data["path"]) if folder is None else folder / data["path"]
    if data.get("draw"):
        with IMPORT_LOCK:
            from kerascnn.tracking.plots import draw_reports

        draw_reports(path, data["draw"])
    log = c.log_artifacts if path.is_dir() else c.log_artifact
    store.retrying(log, op.run.run_id, str(path), data.get("artifact_path") or None)


def _inputs(uri: str, op: Op, folder: Path | None) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    datasets = [
        DatasetInput(
            Dataset(
                d["name"],
                d["digest"],
                d["source_type"],
                json.dumps(d["source"]),
                json.dumps(d["schema"]),
                json.dumps(d["profile"]),
            ),
            tags=[InputTag("mlflow.data.context", d["context"])],
        )
        for d in op.data["datasets"]
    ]
    store.retrying(store.client(uri).log_inputs, op.run.run_id, datasets=datasets)


def _monitor(uri: str, op: Op, folder: Path | None) -> None:
    """MLflow's system-metrics sampler (CPU, memory, disk, network; GPUs with nvidia-ml-py).
    A sampler that cannot start (psutil missing) costs the run its ``system/...`` metrics only,
    with a warning: its other writes still go to the store."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(  # (resumed: a reopened run's samples go on after its last step)
            op.run.run_id, sampling_interval=op.data["interval_s"], resume_logging=True, tracking_uri=uri
        )
        monitor.start()
    except Exception as e:
        print(
            f"kerascnn: warning: no system metrics for run {op.run.label}: MLflow's sampler could not start "
            f"({type(e).__name__}: {e})",
            file=sys.stderr,
            flush=True,
        )
        return
    op.run.monitor = monitor


def _end(uri: str, op: Op, folder: Path | None) -> None:
    run, data, c = op.run, op.data, store.client(uri)
    if run.monitor is not None:
        run.monitor.finish()
        run.monitor = None
    tags = {**data.get("tags", {}), **({"kerascnn.failure": data["reason"]} if data.get("reason") else {})}
    if tags:
        from mlflow.entities import RunTag

        store.retrying(c.log_batch, run.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    store.retrying(c.set_terminated, run.run_id, data["status"], end_time=data["end_time"])


def _model(uri: str, op: Op, folder: Path | None) -> None:
    """An MLflow Keras model that takes raw ``uint8`` images (the training preprocessing in
    front, see :mod:`kerascnn.serving`), rebuilt from the saved ``.keras`` file, with a
    signature and the class names as metadata."""
    with IMPORT_LOCK:
        from kerascnn.device import import_tensorflow

        import_tensorflow()  # quietly, before MLflow's Keras flavor imports it
        import mlflow
        import mlflow.keras
        import numpy as np
        from mlflow.models import Model, infer_signature

        from kerascnn.data import Adaptation
        from kerascnn.loading import load_model
        from kerascnn.serving import served_model

    data, run_id = op.data, op.run.run_id
    model = load_model(Path(data["path"]) if folder is None else folder / data["path"], compile=False)
    if data.get("adaptation"):
        model = served_model(model, Adaptation.from_dict(data["adaptation"]))
    example = np.asarray(data["example"], dtype=data.get("example_dtype", "float32"))
    signature = infer_signature(example, np.asarray(data["outputs"], dtype=np.float32))
    c = store.client(uri)
    experiment_id = store.retrying(c.get_run, run_id).info.experiment_id
    logged = store.retrying(
        c.create_logged_model, experiment_id, name=data["name"], source_run_id=run_id, tags=data.get("tags")
    )
    with _requirements_known(), store.global_tracking_uri(uri):  # Model.log writes through MLflow's global store
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
    op.run.logged_model = f"models:/{logged.model_id}"


@contextlib.contextmanager
def _requirements_known() -> Iterator[None]:
    """Skips MLflow's check of a model's pip requirements against the installed packages while
    it logs one. The requirements are the versions installed where the model was trained
    (``loading.pip_requirements``): the writer cannot find a mismatch, and a later ``kerascnn
    sync`` would only compare them with its own environment. The check scans every installed
    distribution (0.28 CPU-s per process, spent beside the training steps; BENCHMARKS.md). Safe
    with threads: the one saved and put back is always MLflow's own check."""
    from mlflow.utils import environment

    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is None or check is _no_check:  # another MLflow (its check runs), or another thread's block
        yield
        return
    environment.warn_dependency_requirement_mismatches = _no_check
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = check


def _no_check(*args: Any, **kwargs: Any) -> None:
    return None


def _register(uri: str, op: Op, folder: Path | None) -> None:
    """A new version of registered model ``data["name"]`` from the run's logged model, tagged;
    ``data["alias"]`` is moved to it."""
    run, data, c = op.run, op.data, store.client(uri)
    if data.get("model"):  # logged by an earlier session of the run
        run.logged_model = data["model"]
    if run.logged_model is None:  # a replay (``kerascnn sync``): the model was logged before the store failed
        run.logged_model = last_logged_model(c, str(run.run_id))
    name = data["name"]
    existing = registered_version(uri, run.run_id, name, run.logged_model)
    if existing is not None:  # (a search run again after it finished, say)
        if data.get("alias"):
            store.retrying(c.set_registered_model_alias, name, data["alias"], existing)
        _say_registered(name, existing, data.get("alias"), "already holds this model")
        run.registered = f"models:/{name}/{existing}"
        return
    try:
        store.retrying(c.create_registered_model, name)
    except Exception as e:  # it exists: a new version of it
        if "already exists" not in str(e) and "RESOURCE_ALREADY_EXISTS" not in str(e):
            raise
    import kerascnn

    tags = dict(data.get("tags", {}), run_id=run.run_id, kerascnn_version=kerascnn.__version__)
    with store.global_tracking_uri(uri):  # MLflow's registry reads the logged model from the global store
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
    _say_registered(name, version.version, data.get("alias"))
    run.registered = f"models:/{name}/{version.version}"


def _say_registered(name: str, version: Any, alias: str | None, what: str = "") -> None:
    text = f"{name} version {version} {what}" if what else f"registered {name} version {version}"
    print(f"kerascnn: {text}" + (f" (alias {alias})" if alias else ""), file=sys.stderr, flush=True)


def last_logged_model(c: Any, run_id: str) -> str:
    """``models:/ID`` of the complete (READY) model run ``run_id`` logged last."""
    from mlflow.entities import LoggedModelStatus

    logged = _run_models(c, run_id, order_by=[{"field_name": "creation_time", "ascending": False}])
    found = [m for m in logged if m.status == LoggedModelStatus.READY]
    if not found:
        raise RuntimeError(f"run {run_id} logged no model to register")
    return f"models:/{found[0].model_id}"


def ready_model(uri: str, run_id: str | None, name: str, tags: dict[str, str] | None = None) -> str | None:
    """The ``models:/m-...`` URI of the run's complete (READY) logged model ``name`` with ``tags``,
    if it has one. One left PENDING (its writer or an earlier sync was killed while uploading it)
    is marked FAILED: it is to be logged again.

    Example:
        >>> ready_model(uri, run_id, "best_model", {"kerascnn.trial_id": "3"})  # doctest: +SKIP
        'models:/m-0123...'
    """
    from mlflow.entities import LoggedModelStatus

    if run_id is None:
        return None
    c = store.client(uri)
    models = _run_models(c, run_id, [f"name = '{name}'", *(f"tags.`{k}` = '{v}'" for k, v in (tags or {}).items())])
    for broken in (m for m in models if m.status == LoggedModelStatus.PENDING):
        store.retrying(c.finalize_logged_model, broken.model_id, LoggedModelStatus.FAILED)
    ready = [m for m in models if m.status == LoggedModelStatus.READY]
    return f"models:/{ready[0].model_id}" if ready else None


def _run_models(c: Any, run_id: str, where: list[str] | None = None, order_by: Any = None) -> list[Any]:
    """The models run ``run_id`` logged (any status) that match every condition of ``where``."""
    experiment_id = store.retrying(c.get_run, run_id).info.experiment_id
    conditions = " AND ".join([f"source_run_id = '{run_id}'", *(where or [])])
    return store.retrying(c.search_logged_models, [experiment_id], conditions, order_by=order_by)


def registered_version(uri: str, run_id: str | None, name: str, model: str | None) -> str | None:
    """The version of registered model ``name`` made from the run's logged ``model`` (its last
    complete one when ``None``), if there is one; one of a model whose upload was cut off does
    not count.

    Example:
        >>> registered_version("sqlite:////tmp/doc/mlflow.db", run_id, "digits", None)  # doctest: +SKIP
        '2'
    """
    if run_id is None:
        return None
    if model is None:  # logged before the store went away
        try:
            model = last_logged_model(store.client(uri), run_id)
        except RuntimeError:
            return None
    versions = store.retrying(store.client(uri).search_model_versions, f"name = '{name}' AND run_id = '{run_id}'")
    return next((str(v.version) for v in versions if model in (v.source, f"models:/{v.model_id}")), None)


_HANDLERS: dict[str, Callable[[str, Op, Path | None], None]] = {
    "create": _create,
    "reopen": _reopen,
    "params": _batch,
    "tags": _batch,
    "metrics": _batch,
    "artifacts": _artifacts,
    "inputs": _inputs,
    "model": _model,
    "register": _register,
    "monitor": _monitor,
    "end": _end,
}

__all__ = ["Op", "RunRef", "apply"]
