"""One tracked run: created or reopened, locked, written to, and always ended.

``TrackedRun`` is the only way the kit writes a run; ``lifecycle`` is the context manager
that ``train`` and ``tune`` (and each trial) run inside: whatever happens in the block,
the run ends FINISHED, FAILED (exceptions, a NaN loss, Ctrl-C) or KILLED (SIGTERM/SIGHUP),
with the reason in the ``kerascnn.failure`` tag; signals are held back while it ends.
The outcome reaches the CLI through :func:`last_outcome`, as MLflow's own
``mlflow.last_active_run()`` does.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerascnn.errors import ArgumentError
from kerascnn.tracking.recorder import MODEL_KEY, Op, RunRef, labels_of, spool
from kerascnn.tracking.writer import recorder

MAX_PARAM_LENGTH = 6000
ACTIVE_TAG = "kerascnn.active_seconds"  # the run's time in its sessions, without the pauses between them


@dataclass(frozen=True)
class RunOutcome:
    """How the last run of this process ended."""

    run_id: str | None
    local_id: str
    status: str
    reason: str | None
    spool: Path | None
    resumable: bool = True  # an interrupted session can be continued (False: its training had ended)

    @property
    def label(self) -> str:
        return self.run_id or f"(local id {self.local_id[:12]})"


_last: list[RunOutcome] = []


def last_outcome() -> RunOutcome | None:
    """How the most recently ended run of this process ended (``None`` before any).

    Example:
        >>> last_outcome() is None or last_outcome().status in ("FINISHED", "FAILED", "KILLED")
        True
    """
    return _last[-1] if _last else None


def _now_ms() -> int:
    return int(time.time() * 1000)


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``, values as MLflow stores them (<= 6000 chars).

    Example:
        >>> flatten_params({"a": {"b": 1}, "c": "x"})
        {'a.b': '1', 'c': 'x'}
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def failure_status(error: BaseException) -> str:
    """KILLED for SIGTERM/SIGHUP, FAILED otherwise (including Ctrl-C)."""
    from kerascnn.signals import Terminated

    return "KILLED" if isinstance(error, Terminated) else "FAILED"


def describe_failure(error: BaseException) -> str:
    """The one-line reason a run ended."""
    if isinstance(error, KeyboardInterrupt):
        return "KeyboardInterrupt: interrupted (Ctrl-C / SIGINT)"
    return " ".join(f"{type(error).__name__}: {error}".split())[:5000]


class TrackedRun:
    """An MLflow run written by the store's writer process (never blocking training).

    Example:
        >>> run = TrackedRun.start("sqlite:////tmp/doc/mlflow.db", "demo", "doc-run", tags={})  # doctest: +SKIP
        >>> run.log_metrics({"loss": 0.3}, step=0); run.finish()  # doctest: +SKIP
    """

    def __init__(self, ref: RunRef) -> None:
        self.ref = ref
        self._offline = False  # written to the spool here, no writer process, no store
        self._lock: int | None = None
        self.locked: Path | None = None  # the folder held by lock()
        self.resumable = True  # set False once the training it runs has ended (only evaluation is left)
        self.status: str | None = None
        self._opened_ms = _now_ms()
        self._earlier_s: float | None = 0.0  # its earlier sessions' time (None: unknown, a killed one)

    # -- open ---------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        uri: str,
        experiment: str,
        name: str,
        *,
        tags: dict[str, str],
        params: dict[str, Any] | None = None,
        parent: TrackedRun | None = None,
        lock: Callable[[str], Path] | None = None,
        offline: bool = False,
    ) -> TrackedRun:
        """Creates a run (in the background: ``run_id`` is known once the store answered).
        ``lock(local_id)`` names a folder to hold while this process writes the run;
        ``offline`` writes it to the spool only (``kerascnn sync`` sends it)."""
        parent_ref = parent.ref if parent else None
        run = cls(RunRef(uri, experiment, name, parent=parent_ref, spooled=offline, labels=labels_of(tags)))
        run._offline = offline
        if lock is not None:
            run.lock(lock(run.ref.local_id))
        run._submit("create", tags=dict(tags), start_time=_now_ms())
        if params:
            run.log_params(params)
        return run

    @classmethod
    def reopen(
        cls, uri: str, experiment: str, existing: Any, *, tags: dict[str, str], lock: Path | None = None
    ) -> TrackedRun:
        """Sets an interrupted run RUNNING again, its failure reason dropped (the interruption
        is over). ``lock`` is taken first: a run another process holds is refused untouched."""
        local_id = existing.data.tags.get("kerascnn.local_id") or uuid.uuid4().hex
        name, run_id, labels = existing.info.run_name, existing.info.run_id, labels_of(existing.data.tags)
        run = cls(RunRef(uri, experiment, name, local_id=local_id, run_id=run_id, labels=labels))
        run._earlier_s = _active_seconds(existing)
        if lock is not None:
            run.lock(lock)
        stale = ["kerascnn.failure"] + ([ACTIVE_TAG] if run._earlier_s is None else [])  # the interruption is over
        run._submit("reopen", drop_tags=[tag for tag in stale if tag in existing.data.tags])
        run.set_tags(tags)
        return run

    def lock(self, folder: Path, argument: str = "resume") -> None:
        """Holds ``folder`` (flock) while this process writes the run: a second process is refused."""
        from kerascnn.tracking.store import lock_folder

        self._lock, self.locked = lock_folder(folder, wait=False), folder
        if self._lock is None:
            raise ArgumentError(
                f"This run is being trained by another process. Received: {argument}={self.ref.run_id or folder.name!r}"
            )

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    # -- write --------------------------------------------------------------------------------
    def _submit(self, kind: str, **data: Any) -> None:
        op = Op(kind, self.ref, data)
        if self._offline:
            spool(op)
        else:
            recorder(self.ref.uri).submit(op)

    def log_params(self, params: dict[str, Any]) -> None:
        self._submit("params", params=flatten_params(params))

    def set_tags(self, tags: dict[str, str]) -> None:
        self._submit("tags", tags={k: str(v)[:MAX_PARAM_LENGTH] for k, v in tags.items()})

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        """Queues the finite numbers of ``metrics`` at ``step``, timestamped now."""
        now = _now_ms()
        values = [(k, float(v), now, int(step)) for k, v in metrics.items() if _finite(v)]
        if values:
            self._submit("metrics", metrics=values)

    def log_artifacts(self, path: Path, artifact_path: str = "", draw: dict[str, Any] | None = None) -> None:
        """Uploads a file or folder; ``draw`` (see ``plots.draw_reports``) has the writer draw the
        run's report plots into it first."""
        self._submit("artifacts", path=str(path), artifact_path=artifact_path, draw=draw)

    def log_model(
        self,
        *,
        saved: Path,
        name: str,
        example: Any,
        outputs: Any,
        adaptation: Any = None,
        metadata: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Logs an MLflow Keras model from its ``.keras`` file ``saved``, already written (the writer
        loads it; the spool keeps it). With ``adaptation``, the logged model takes raw ``uint8``
        images (the preprocessing in front) and ``example`` is such images; ``outputs`` has the
        shape and type of its predictions (for the signature). The logged model is tagged with
        ``tags`` and a key of its own (``kerascnn.model_key``: a replay finds it by that)."""
        import uuid

        from kerascnn.loading import pip_requirements

        front = adaptation.to_dict() if adaptation is not None else None
        self._submit(
            "model",
            path=str(saved),
            name=name,
            example=example.tolist(),
            example_dtype=str(example.dtype),
            outputs=outputs.tolist(),
            requirements=pip_requirements(),
            adaptation=front,
            metadata=metadata,
            tags={**(tags or {}), MODEL_KEY: uuid.uuid4().hex},
        )

    def register_model(self, name: str, alias: str | None, tags: dict[str, Any], model: str | None = None) -> None:
        """Registers ``model`` (``models:/...``; by default the model logged last) as a new version of
        ``name`` (tagged), ``alias`` moved to it; a model ``name`` already has a version of keeps that
        version (``alias`` moved to it)."""
        self._submit("register", name=name, alias=alias, tags={k: str(v) for k, v in tags.items()}, model=model)

    def log_inputs(self, datasets: list[dict[str, Any]]) -> None:
        """Logs datasets as MLflow dataset inputs (see ``data.describe_splits``)."""
        self._submit("inputs", datasets=datasets)

    def monitor_system(self, interval_s: float = 10.0) -> None:
        """Samples CPU, memory (and GPU, with nvidia-ml-py) into ``system/...`` metrics until the run ends."""
        self._submit("monitor", interval_s=interval_s)

    # -- end ----------------------------------------------------------------------------------
    def finish(self) -> RunOutcome:
        return self.end("FINISHED")

    def fail(self, error: BaseException) -> RunOutcome:
        return self.end(failure_status(error), describe_failure(error))

    def end(self, status: str, reason: str | None = None, *, wait: bool = True) -> RunOutcome:
        """Ends the run once with ``status`` (``reason`` in the ``kerascnn.failure`` tag);
        with ``wait``, until its writes reached the store or the spool (bounded)."""
        if self.status is None:
            self.status = status
            now = _now_ms()
            active = (
                {}
                if self._earlier_s is None
                else {ACTIVE_TAG: f"{self._earlier_s + (now - self._opened_ms) / 1000:.1f}"}
            )
            self._submit("end", status=status, reason=reason, end_time=now, tags=active)
        if wait:
            self.wait()
        spool = self.ref.spool_dir if self.ref.spooled else None
        outcome = RunOutcome(self.ref.run_id, self.ref.local_id, self.status, reason, spool, self.resumable)
        _last.append(outcome)
        return outcome

    def wait(self, timeout: float | None = None) -> bool:
        """Waits (bounded) until every write so far reached the store or the spool."""
        return self._offline or recorder(self.ref.uri).flush(timeout)

    @property
    def run_id(self) -> str | None:
        return self.ref.run_id


def _active_seconds(run: Any) -> float | None:
    """The time a run spent in its sessions so far: its tag, else (ended before the tag existed)
    its end minus its start; ``None`` after a session that never ended (killed: its length is
    unknown, so the run's time is MLflow's end minus start from then on)."""
    if run.info.status == "RUNNING":
        return None
    if ACTIVE_TAG in run.data.tags:
        return float(run.data.tags[ACTIVE_TAG])
    if run.info.end_time and run.info.start_time:
        return (run.info.end_time - run.info.start_time) / 1000
    return None


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def lifecycle(open_run: Callable[[], TrackedRun | None]) -> Iterator[TrackedRun | None]:
    """Opens a run with ``open_run`` and ends it whatever happens in the block.

    SIGTERM/SIGHUP raise :class:`~kerascnn.signals.Terminated` inside (the run ends
    KILLED); Ctrl-C ends it FAILED; signals are held back while the run is ended; the lock
    taken with ``TrackedRun.lock`` is released.

    Example:
        >>> with lifecycle(lambda: None) as run:
        ...     pass
    """
    from kerascnn.signals import deferred, terminate_as_exception

    run: TrackedRun | None = None
    try:
        with terminate_as_exception():
            run = open_run()
            yield run
        with deferred():
            if run is not None:
                run.finish()
    except BaseException as error:
        with deferred():
            if run is not None:
                run.fail(error)
        raise
    finally:
        if run is not None:
            run.unlock()
