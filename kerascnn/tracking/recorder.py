"""Every tracking write of a store, in order, on one background thread; a spool when the store fails.

The :class:`Recorder` runs inside the tracking writer process (:mod:`kerascnn.tracking.writer`),
so that neither MLflow nor the store ever holds up a training step. Its ops are JSON
(:class:`Op`): what a run is (:class:`RunRef`), what to write, files by path.

When a write fails (a tracking server that went away, a store that will not answer in
``KERASCNN_TRACKING_TIMEOUT`` seconds), that write and every later write of the same run
go to the run's spool folder, ``<store home>/spool/<local id>/``: ``run.json`` (where the
run belongs), ``ops.jsonl`` (the writes in order, metrics with their steps and timestamps)
and the files of its artifacts, the trained model included. ``kerascnn sync`` replays it
(:mod:`kerascnn.tracking.sync`). A run's writes are never reordered and never dropped.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerascnn import console
from kerascnn.tracking import store

SPOOL = "spool"
LOCAL_ONLY = ("monitor",)  # ops that write nothing the spool could replay
MODEL_KEY = "kerascnn.model_key"  # the tag that tells a logged model from the run's others
LABELS = ("kerascnn.kind", "kerascnn.model", "kerascnn.dataset")  # a run's tags that its spool folder keeps
_SPOOL_LOCK = threading.Lock()  # spool files of this process


@dataclass(eq=False)
class RunRef:
    """A run as the kit knows it: our id at once, MLflow's once the store created it."""

    uri: str
    experiment: str
    name: str
    local_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    run_id: str | None = None
    parent: RunRef | None = None
    spooled: bool = False
    artifact_uri: str | None = None  # where the store keeps the run's artifacts, once created
    monitor: Any = field(default=None, repr=False)  # MLflow's system-metrics sampler, while the run is open
    logged_model: str | None = None  # models:/m-... of the model logged last
    registered: str | None = None  # models:/NAME/VERSION, once the run's model is registered
    spool_lock: int | None = field(default=None, repr=False)  # held while this process appends to the spool
    labels: dict[str, str] = field(default_factory=dict)  # its LABELS tags, listed while it waits in the spool

    @property
    def spool_dir(self) -> Path:
        return store.home(self.uri) / SPOOL / self.local_id

    @property
    def label(self) -> str:
        return self.run_id or f"{self.name} (local id {self.local_id[:12]})"

    def to_wire(self) -> dict[str, Any]:
        """The run as JSON, for the writer process (its parent included)."""
        return {
            "local_id": self.local_id,
            "experiment": self.experiment,
            "name": self.name,
            "run_id": self.run_id,
            "spooled": self.spooled,
            "labels": self.labels,
            "parent": self.parent.to_wire() if self.parent else None,
        }

    @classmethod
    def from_wire(cls, uri: str, wire: dict[str, Any], known: dict[str, RunRef]) -> RunRef:
        """The run ``wire`` describes: the same object for the same local id, updated.

        Example:
            >>> known = {}
            >>> a = RunRef.from_wire("sqlite:////tmp/x.db", {"local_id": "1", "experiment": "e", "name": "n"}, known)
            >>> a is RunRef.from_wire("sqlite:////tmp/x.db", {"local_id": "1", "run_id": "ab"}, known), a.run_id
            (True, 'ab')
        """
        ref = known.get(wire["local_id"])
        if ref is None:
            parent = cls.from_wire(uri, wire["parent"], known) if wire.get("parent") else None
            ref = known[wire["local_id"]] = cls(
                uri, wire["experiment"], wire["name"], local_id=wire["local_id"], parent=parent
            )
        ref.run_id = ref.run_id or wire.get("run_id")
        ref.spooled = ref.spooled or bool(wire.get("spooled"))
        ref.labels = ref.labels or wire.get("labels", {})
        return ref


def labels_of(tags: dict[str, str]) -> dict[str, str]:
    """The :data:`LABELS` among a run's ``tags``.

    Example:
        >>> labels_of({"kerascnn.model": "lenet5", "kerascnn.pid": "7"})
        {'kerascnn.model': 'lenet5'}
    """
    return {k: tags[k] for k in LABELS if k in tags}


@dataclass(eq=False)
class Op:
    """One write: its kind (``create``, ``params``, ``metrics``, ``artifacts``, ``model``,
    ``end``...), its run, and its data (JSON, which is what the spool keeps)."""

    kind: str
    run: RunRef
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # its number on the way to the writer process


class Recorder:
    """The background writer of one tracking store; ``on_done(op)`` is called once each op
    is written or spooled."""

    def __init__(self, uri: str, on_done: Callable[[Op], None] | None = None) -> None:
        self.uri = uri
        self.on_done = on_done
        self._queue: queue.Queue[Op] = queue.Queue()
        self._current: Op | None = None
        self._abandoned = False
        self._down_until = 0.0
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="kerascnn-recorder", daemon=True)
        self._thread.start()

    def submit(self, op: Op) -> None:
        """Queues ``op``; returns at once."""
        if self._abandoned:
            spool(op)
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
            spool(op)

    def _loop(self) -> None:
        while True:
            op = self._queue.get()
            self._current = op
            try:
                self._handle(op)
            finally:
                self._current = None
                if self.on_done is not None:
                    self.on_done(op)
                self._queue.task_done()

    def _handle(self, op: Op) -> None:
        from kerascnn.tracking.writes import apply

        parent_spooled = op.kind == "create" and op.run.parent is not None and op.run.parent.run_id is None
        if op.run.spooled or parent_spooled or time.monotonic() < self._down_until:
            spool(op)
            return
        try:
            apply(self.uri, op)
        except Exception as e:
            if self._abandoned:
                return  # already spooled by flush()
            self._down_until = time.monotonic() + store.timeout_s()
            self._warn_spooled(op.run, e)
            spool(op)

    def _warn_spooled(self, run: RunRef, error: BaseException) -> None:
        if run.local_id in self._warned:
            return
        self._warned.add(run.local_id)
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        database = [line for line in lines if re.match(r"\([\w.]+Error\) ", line)]  # SQLAlchemy: "(sqlite3.X) ..."
        reason = console.shorten((database or lines or [type(error).__name__])[0], 200)
        console.say(
            f"kerascnn: warning: the tracking store failed ({type(error).__name__}: {reason}); run {run.label} "
            f"goes on into the spool {run.spool_dir} (`kerascnn sync` sends it)"
        )


def plain(value: Any) -> Any:
    """JSON for what ``json`` does not know: NumPy numbers and arrays (anything else as text).

    Example:
        >>> import numpy as np; json.dumps({"a": np.arange(2)}, default=plain)
        '{"a": [0, 1]}'
    """
    return value.tolist() if hasattr(value, "tolist") else str(value)


def spool(op: Op) -> None:
    """Appends ``op`` to its run's spool (the run spools from now on). A spool that cannot be
    written (a full disk) is reported on stderr; training goes on."""
    try:
        _append(op)
    except Exception as e:
        console.say(
            f"kerascnn: warning: could not write the {op.kind} of run {op.run.label} to the spool "
            f"{op.run.spool_dir} ({type(e).__name__}: {e}); it is lost"
        )


def _append(op: Op) -> None:
    if op.kind in LOCAL_ONLY:
        return
    with _SPOOL_LOCK:
        op.run.spooled = True
        folder = op.run.spool_dir
        if op.run.spool_lock is None:  # `kerascnn sync` skips a folder a writer holds
            op.run.spool_lock = store.lock_folder(folder, wait=False)
        _write_run_json(op.run)
        data = dict(op.data)
        if op.kind in ("artifacts", "model"):
            data = _keep_files(folder, data)
        with open(folder / "ops.jsonl", "a") as f:
            f.write(json.dumps({"kind": op.kind, "data": data}, default=plain) + "\n")
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
        "labels": run.labels,  # (its create op, with these tags, may have reached the store before it failed)
    }
    (run.spool_dir / "run.json").write_text(json.dumps(info, indent=1))


def _keep_files(folder: Path, data: dict[str, Any]) -> dict[str, Any]:
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
