"""``kerascnn sync``: replays spooled runs into the store once it is back.

Each run's spool (see :mod:`~kerascnn.tracking.recorder`) is replayed in order under a
lock on its folder (a second ``sync``, or the process still writing it, is waited out by
skipping the folder): the run is found again by id or by its ``kerascnn.local_id`` tag, or
created (under its parent, found the same way); params, tags, artifacts and models are
written where missing, and every metric step exactly once (steps already in the store
are skipped), so replaying twice changes nothing. A spool without an end (its process
died) ends the run KILLED. The folder is removed once the run is in the store.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerascnn.tracking import store
from kerascnn.tracking.recorder import MODEL_KEY, SPOOL, Op, RunRef
from kerascnn.tracking.writes import apply, ready_model, registered_version


@dataclass
class Spooled:
    """One run waiting in the spool."""

    folder: Path
    info: dict[str, Any]
    ops: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        ends = [op["data"]["status"] for op in self.ops if op["kind"] == "end"]
        return ends[-1] if ends else "RUNNING"

    def metrics(self) -> dict[str, float]:
        """The last value of every metric in the spool."""
        last: dict[str, float] = {}
        for op in self.ops:
            if op["kind"] == "metrics":
                last.update({k: v for k, v, _, _ in op["data"]["metrics"]})
        return last

    def best(self, name: str) -> float | None:
        """The highest value of metric ``name`` in the spool (``None`` without one)."""
        values = (v for op in self.ops if op["kind"] == "metrics" for k, v, _, _ in op["data"]["metrics"] if k == name)
        return max(values, default=None)


def _read(folder: Path) -> Spooled | None:
    try:
        info = json.loads((folder / "run.json").read_text())
        lines = (folder / "ops.jsonl").read_text().splitlines() if (folder / "ops.jsonl").exists() else []
    except (OSError, ValueError):
        return None
    ops = []
    for line in lines:
        try:
            ops.append(json.loads(line))
        except ValueError:  # a line torn by a kill: the ops before it stand
            break
    return Spooled(folder, info, ops)


def pending(tracking_uri: str | None = None) -> list[Spooled]:
    """The runs waiting in the spool of a store, parents first.

    Example:
        >>> [s.info["name"] for s in pending()]  # doctest: +SKIP
        ['mnist_cnn-mnist']
    """
    uri = store.resolve_tracking_uri(tracking_uri, write=False)
    root = store.home(uri) / SPOOL
    found = [s for f in sorted(root.iterdir()) if f.is_dir() and (s := _read(f))] if root.is_dir() else []
    found = [s for s in found if store.same_store(s.info.get("uri", "")) == uri]  # (recorded with ".." before)
    return sorted(found, key=lambda s: s.info.get("parent_local_id") is not None)


@dataclass
class SyncReport:
    """What ``sync`` did: runs replayed (local id -> run id), busy ones skipped, failures."""

    synced: dict[str, str] = field(default_factory=dict)
    busy: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"synced": self.synced, "busy": self.busy, "failed": self.failed}


def sync(tracking_uri: str | None = None) -> SyncReport:
    """Replays every spooled run of the store into it (see the module docstring).

    Args:
        tracking_uri: The store whose spool to send (default as in ``train``).

    Returns:
        A :class:`SyncReport`: the runs sent (local id to run id), those another process is
        sending, and those that failed (they stay in the spool).

    Example:
        >>> sync().synced  # doctest: +SKIP
        {'3f0c...': '9a1b...'}
    """
    uri = store.resolve_tracking_uri(tracking_uri)
    report = SyncReport()
    for spooled in pending(uri):
        try:
            fd = os.open(spooled.folder, os.O_RDONLY)  # not lock_folder: a folder synced meanwhile stays gone
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            report.busy.append(spooled.info["local_id"])
            continue
        try:
            current = _read(spooled.folder)  # re-read under the lock: another sync may have finished it
            if current is not None:
                report.synced[current.info["local_id"]] = _replay(uri, current)
                shutil.rmtree(current.folder)
        except Exception as e:  # the store is still down, say: keep the spool, report it
            report.failed[spooled.info["local_id"]] = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        finally:
            os.close(fd)
    return report


def _replay(uri: str, spooled: Spooled) -> str:
    """Writes one spooled run into the store; returns its run id."""
    info = spooled.info
    parent = None
    if info.get("parent_local_id") or info.get("parent_run_id"):
        parent_id = info.get("parent_run_id") or _find_by_local_id(uri, info["experiment"], info["parent_local_id"])
        parent = RunRef(uri, info["experiment"], "", run_id=parent_id)
    run = RunRef(
        uri,
        info["experiment"],
        info["name"],
        local_id=info["local_id"],
        parent=parent,
        run_id=info.get("run_id") or _find_by_local_id(uri, info["experiment"], info["local_id"]),
    )
    seen: dict[str, set[tuple[int, int]]] = {}
    for entry in spooled.ops:
        op = Op(entry["kind"], run, entry["data"])
        if op.kind == "create" and run.run_id is not None:
            continue  # created before the store went away (or by an earlier sync)
        if op.kind == "metrics":
            op.data = dict(op.data, metrics=_new_metrics(uri, run.run_id, op.data["metrics"], seen))
            if not op.data["metrics"]:
                continue
        if op.kind == "params":
            op.data = dict(op.data, params=_new_params(uri, run.run_id, op.data["params"]))
        if op.kind == "model" and (logged := ready_model(uri, run.run_id, op.data["name"], _key(op.data))):
            run.logged_model = logged
            continue
        model = op.data.get("model") or run.logged_model
        if op.kind == "register" and registered_version(uri, run.run_id, op.data["name"], model):
            continue
        if op.kind == "end" and _ended_since(uri, run.run_id, op.data["end_time"]):
            continue  # resumed and ended again meanwhile: its later end stands
        apply(uri, op, folder=spooled.folder)
    if spooled.status == "RUNNING" and not _ended_since(uri, run.run_id, 0):  # its process died before the run ended
        import time

        reason = "its process ended before the run did; replayed from the spool by kerascnn sync"
        apply(uri, Op("end", run, {"status": "KILLED", "reason": reason, "end_time": int(time.time() * 1000)}))
    assert run.run_id is not None
    return run.run_id


def _ended_since(uri: str, run_id: str | None, end_time: int) -> bool:
    """Whether the run has ended in the store at or after ``end_time`` (ms)."""
    if run_id is None:
        return False
    info = store.retrying(store.client(uri).get_run, run_id).info
    return info.status in ("FINISHED", "FAILED", "KILLED") and (info.end_time or 0) >= end_time


def _find_by_local_id(uri: str, experiment: str, local_id: str | None) -> str | None:
    if not local_id:
        return None
    c = store.client(uri)
    found = store.retrying(c.get_experiment_by_name, experiment)
    if found is None:
        return None
    runs = store.retrying(c.search_runs, [found.experiment_id], f"tags.`kerascnn.local_id` = '{local_id}'")
    return runs[0].info.run_id if runs else None


def _new_metrics(
    uri: str, run_id: str | None, metrics: list[list[Any]], seen: dict[str, set[tuple[int, int]]]
) -> list[list[Any]]:
    """The metric points not in the store yet (same key, step and timestamp)."""
    fresh = []
    for key, value, timestamp, step in metrics:
        if key not in seen:
            history = store.retrying(store.client(uri).get_metric_history, run_id, key) if run_id else []
            seen[key] = {(m.step, m.timestamp) for m in history}
        if (step, timestamp) not in seen[key]:
            seen[key].add((step, timestamp))
            fresh.append([key, value, timestamp, step])
    return fresh


def _new_params(uri: str, run_id: str | None, params: dict[str, str]) -> dict[str, str]:
    logged = store.retrying(store.client(uri).get_run, run_id).data.params if run_id else {}
    return {k: v for k, v in params.items() if k not in logged}


def _key(model_op: dict[str, Any]) -> dict[str, str] | None:
    """The tag that tells the model this op logs from the run's others (None in a spool of an
    earlier kerascnn: its model is found by name)."""
    key = (model_op.get("tags") or {}).get(MODEL_KEY)
    return {MODEL_KEY: key} if key else None
