"""The MLflow side of a search: its parent run and one nested run per trial.

* The parent is found again on a rerun (tags ``kerascnn.search_name`` and
  ``kerascnn.search_dir``), so a resumed search continues under the same parent.
* A worker (KerasTuner's chief/worker mode) waits for the chief's parent and logs its
  trials under it, tagged with its ``KERASTUNER_TUNER_ID``.
* A trial whose process died is re-run by KerasTuner; its old run is marked KILLED.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from kerascnn import console
from kerascnn.errors import SearchFailed
from kerascnn.signals import Terminated
from kerascnn.tracking import store
from kerascnn.tracking.recorder import RunRef
from kerascnn.tracking.run import TrackedRun, describe_failure, failure_status
from kerascnn.tracking.writer import recorder

PARENT_WAIT_S = 3600.0  # how long a worker waits for the chief's parent run (KerasTuner's client: an hour)
PARENT_PATIENCE_S = 10.0  # when the worker says it waits for it
TRIAL_TAG = "kerascnn.trial_id"  # on a trial's run, and on the parent's logged best model


class SearchRuns:
    """The parent run of a search and its trial runs."""

    def __init__(self, uri: str, experiment: str, name: str, search_dir: Path, labels: dict[str, str]) -> None:
        self.uri, self.experiment, self.name, self.search_dir = uri, experiment, name, search_dir
        self.labels = labels
        self.worker = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
        self.parent: TrackedRun | None = None
        self.reopened: Any = None  # the parent as an earlier session of this search left it (MLflow's Run)
        self.trials: dict[str, TrackedRun] = {}
        self.experiment_id = store.ensure_experiment(uri, experiment)

    @property
    def client(self) -> Any:
        return store.client(self.uri)

    @property
    def parent_id(self) -> str | None:
        return self.parent.run_id if self.parent else None

    def _readable(self) -> bool:
        """Reads make sense once the recorder's writes are in (and the store answers)."""
        return recorder(self.uri).flush()

    def find_parent(self) -> Any:
        query = f"tags.`kerascnn.kind` = 'search' AND tags.`kerascnn.search_name` = '{self.name}'"
        found = store.retrying(
            self.client.search_runs, [self.experiment_id], query, order_by=["attributes.start_time DESC"]
        )
        mine = [r for r in found if r.data.tags.get("kerascnn.search_dir") == str(self.search_dir)]
        return mine[0] if mine else None

    def open_parent(
        self,
        params: dict[str, Any],
        max_trials: int,
        fresh: bool,
        ended: dict[str, str] | None = None,
        held: frozenset[str] = frozenset(),
        overwrite: bool = False,
    ) -> TrackedRun:
        """Creates the parent run, or re-opens the one of an earlier session of this search
        (``fresh``: KerasTuner starts this search over, so a new parent, unless the earlier session
        stopped before its first trial and ``overwrite`` was not asked). ``held``: trials a worker
        was running when the chief stopped, whose runs are left open (the worker may train on;
        a re-run of the trial ends a dead worker's run)."""
        from kerascnn import device

        previous = self.find_parent()
        if previous is not None and fresh and not overwrite and not self._has_trials(previous.info.run_id):
            fresh = False  # stopped before its first trial (Ctrl-C while it started): this session goes on with it
        if previous is not None and not fresh:  # a rerun with a smaller budget runs no more, and undoes nothing
            max_trials = max(max_trials, int(previous.data.tags.get("kerascnn.max_trials", "0") or 0))
        tags = {
            "kerascnn.kind": "search",
            "kerascnn.search_name": self.name,
            "kerascnn.search_dir": str(self.search_dir),
            "kerascnn.max_trials": str(max_trials),
            "kerascnn.device": device.describe_devices(),
            **self.labels,  # with the machine's tags (see search._make_tuner)
            **store.environment_tags(),
        }
        if previous is not None and fresh and previous.info.status == "RUNNING":
            TrackedRun.reopen(self.uri, self.experiment, previous, tags={}).end(
                "KILLED", "its process ended; the search was started afresh under a new parent run"
            )
        if previous is not None and not fresh:
            self.reopened = previous
            self.parent = TrackedRun.reopen(self.uri, self.experiment, previous, tags=tags)
            why = "the search process ended without closing it; the trial is re-run"
            self.kill_stale_trials(why, ended=ended, spare=held)
        else:
            self.parent = TrackedRun.start(self.uri, self.experiment, self.name, tags=tags, params=params)
        return self.parent

    def resolve_parent(self) -> TrackedRun:
        """The parent: this process's, or (a worker) the chief's, waited for."""
        started = time.monotonic()
        said = False
        while self.parent is None:
            try:
                found = self.find_parent()
            except Exception:  # the store is away for now: keep waiting
                found = None
            waited = time.monotonic() - started
            if found is not None and found.info.status == "RUNNING":
                ref = RunRef(self.uri, self.experiment, found.info.run_name, run_id=found.info.run_id)
                self.parent = TrackedRun(ref)
            elif waited > PARENT_PATIENCE_S and not said:
                said = True
                console.say(
                    f"kerascnn: worker {self.worker}: no RUNNING parent run of search {self.name!r} in experiment "
                    f"{self.experiment!r} of {self.uri} yet; waiting for the chief to start it "
                    "(up to an hour, as KerasTuner's client waits for its chief; Ctrl-C stops this worker)"
                )
            elif waited > PARENT_WAIT_S:
                raise SearchFailed(
                    f"no RUNNING parent run for search {self.name!r} after {PARENT_WAIT_S:.0f} s; is "
                    "the chief running with the same tracking URI and experiment?"
                )
            else:
                time.sleep(1.0)
        return self.parent

    def _has_trials(self, parent_id: str) -> bool:
        query = f"tags.`mlflow.parentRunId` = '{parent_id}'"
        return bool(store.retrying(self.client.search_runs, [self.experiment_id], query, max_results=1))

    def children(self, status: str | None = None) -> list[Any]:
        """The trial runs in the store (after this process's writes are in)."""
        if self.parent is None or not self._readable() or self.parent_id is None:  # its id comes with the writes
            return []
        query = f"tags.`mlflow.parentRunId` = '{self.parent_id}'"
        if status:
            query += f" AND attributes.status = '{status}'"
        try:
            return store.retrying(self.client.search_runs, [self.experiment_id], query, max_results=10000)
        except Exception:  # the store went away: the search goes on, its runs go to the spool
            return []

    def kill_stale_trials(
        self,
        reason: str,
        trial_id: str | None = None,
        ended: dict[str, str] | None = None,
        spare: frozenset[str] = frozenset(),
    ) -> None:
        """Ends KILLED the RUNNING trial runs of dead processes (of ``trial_id`` only, if given; not
        those of the trials in ``spare``). A trial KerasTuner saw end (``ended``: trial id -> its
        status) is not re-run: its run ends as the trial did (the run's own end may still wait in
        the spool, for ``kerascnn sync``)."""
        mine = {t.run_id for t in self.trials.values()}
        for run in self.children("RUNNING"):
            trial = run.data.tags.get(TRIAL_TAG)
            if run.info.run_id in mine or (trial_id is not None and trial != trial_id) or trial in spare:
                continue
            outcome = (ended or {}).get(str(trial))
            if outcome in ("COMPLETED", "FAILED", "INVALID"):  # ended as the trial did
                tags, status, why = (
                    {"kerascnn.trial_status": outcome},
                    "FINISHED" if outcome == "COMPLETED" else "FAILED",
                    None,
                )
            else:
                tags, status, why = {}, "KILLED", reason
            TrackedRun.reopen(self.uri, self.experiment, run, tags=tags).end(status, why)

    def start_trial(self, trial: Any) -> TrackedRun:
        """The nested run of ``trial`` (its hyperparameters as params)."""
        parent = self.resolve_parent()
        # an earlier run of this trial whose process died: KerasTuner re-runs the trial now
        self.kill_stale_trials("its process died; KerasTuner re-ran the trial", trial.trial_id)
        tags = {
            "kerascnn.kind": "trial",
            TRIAL_TAG: trial.trial_id,
            "kerascnn.worker": self.worker,
            "kerascnn.search_name": self.name,
            "kerascnn.host": socket.gethostname(),
            "kerascnn.pid": str(os.getpid()),
            **self.labels,
        }
        run = TrackedRun.start(
            self.uri,
            self.experiment,
            f"{self.name}-trial-{trial.trial_id}",
            tags=tags,
            params=trial.hyperparameters.values,
            parent=parent,
        )
        self.trials[trial.trial_id] = run
        return run

    def end_trial(self, trial: Any, error: BaseException | None) -> None:
        run = self.trials[trial.trial_id]
        status = "COMPLETED" if error is None else "FAILED"
        if isinstance(error, (KeyboardInterrupt, Terminated)):  # stopped, not failed: the search's rerun re-runs it
            status = "INTERRUPTED"
        run.set_tags({"kerascnn.trial_status": status})
        if error is None:
            run.end("FINISHED", wait=False)
        else:
            run.end(failure_status(error), describe_failure(error), wait=False)

    def trial_run_ids(self) -> dict[str, str | None]:
        """trial id -> run id, for every trial of the search (other processes' too)."""
        ids: dict[str, str | None] = {}
        for run in sorted(self.children(), key=lambda r: r.info.start_time):  # the latest run of a trial wins
            if run.info.status in ("FINISHED", "FAILED"):
                ids[run.data.tags.get(TRIAL_TAG, "")] = run.info.run_id
        return ids | {t: r.run_id for t, r in self.trials.items() if r.run_id}  # None: not written yet
