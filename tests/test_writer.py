"""The tracking writer process: MLflow stays out of the training process, and a writer that dies
loses nothing (its unacknowledged writes go to the spool; `kerascnn sync` sends them).

Real parts: the CLI as a subprocess, its real writer child, a real SIGKILL, a real SQLite store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kerascnn.tracking.recorder import Op, RunRef
from kerascnn.tracking.writer import WARM, WriterProcess, _spawn
from tests.helpers import (
    PY,
    all_runs,
    first_epoch_logged,
    metric_steps,
    module_for_children,
    run_cli,
    wait_for,
    writer_of,
)

EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


pytestmark = pytest.mark.usefixtures("in_a_scratch_folder")


def test_a_killed_writer_loses_nothing_after_sync(tracking_uri, spawn):
    cmd = [
        *PY,
        "train",
        "lenet5",
        "--dataset",
        "mnist",
        "--epochs",
        "3",
        "--train-samples",
        "6000",
        "--test-samples",
        "500",
        "--precision",
        "float32",
        "--tracking-uri",
        tracking_uri,
        "--json",
    ]
    process = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = writer_of(process)
    wait_for(
        lambda: first_epoch_logged(tracking_uri),
        300,
        process,
        "the first epoch in the store",
    )
    # A session of its own: Ctrl-C at a terminal spares it, and (with Linux's per-session scheduler
    # groups) it keeps a fair share of the CPU, so the store keeps up with training.
    assert os.getsid(writer.pid) == writer.pid != os.getsid(process.pid)
    writer.send_signal(signal.SIGKILL)  # the writer dies mid-run; training must not notice
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    assert "the tracking writer process ended unexpectedly" in err and "Traceback" not in err
    result = json.loads(out)
    assert result["spool"] and result["model_path"].startswith(result["spool"])  # the model is kept locally
    assert result["registered_model"] is None  # (the key is there, null, as in every --json document)
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "RUNNING"  # its end is in the spool
    synced = run_cli("sync", "--tracking-uri", tracking_uri, "--json", check=True)
    assert list(json.loads(synced.stdout)["synced"].values()) == [result["run_id"]]
    run = MlflowClient(tracking_uri).get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    for key in EPOCH_KEYS:
        assert metric_steps(tracking_uri, result["run_id"], key) == [0, 1, 2], key  # each epoch exactly once
    assert run.data.metrics["test_accuracy"] == pytest.approx(result["test_accuracy"])
    logged = {a.path for a in MlflowClient(tracking_uri).list_artifacts(result["run_id"])}
    assert {"model.keras", "describe.txt", "confusion_matrix.csv", "plots"} <= logged  # drawn by sync


def test_the_writer_writes_what_it_was_sent_when_nobody_reads_its_acks(tracking_uri):
    """A training process killed with writes in flight (the writer lags it on a loaded machine):
    the writer's acks meet a closed pipe, and every write it was sent still reaches the store,
    at once, not after the store's flush timeout."""
    run = RunRef(tracking_uri, "kerascnn", "killed")
    ops = [
        ("create", {"tags": {}, "start_time": int(time.time() * 1000)}),
        ("tags", {"tags": {"after": "create"}}),
        ("params", {"params": {"epochs": "2"}}),
    ]
    process = _spawn(tracking_uri)
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdout.close()  # the training process is gone: nobody reads the acks
        for seq, (kind, data) in enumerate(ops, 1):
            message = {"seq": seq, "kind": kind, "run": run.to_wire(), "data": data}
            process.stdin.write(json.dumps(message).encode() + b"\n")
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    (logged,) = all_runs(tracking_uri)
    assert logged.data.tags["after"] == "create" and logged.data.params == {"epochs": "2"}


def test_a_store_that_fails_under_the_writer_is_one_warning_naming_the_database_error(tracking_uri):
    """MLflow logs a database error with SQLAlchemy's traceback (~90 lines); the writer says it in one
    line, with the database's own message, and spools the run."""
    run = RunRef(tracking_uri, "kerascnn", "moved")
    ops = [
        ("create", {"tags": {}, "start_time": int(time.time() * 1000)}),
        ("metrics", {"metrics": [["loss", 1.0, 0, 0]]}),
    ]
    process = _spawn(tracking_uri)
    assert process.stdin is not None and process.stdout is not None
    said = []
    try:
        for seq, (kind, data) in enumerate(ops, 1):
            message = {"seq": seq, "kind": kind, "run": run.to_wire(), "data": data}
            process.stdin.write(json.dumps(message).encode() + b"\n")
            process.stdin.flush()
            while "ack" not in (answer := json.loads(process.stdout.readline())):
                said.append(answer["say"])
            if kind == "create":  # the store's file goes away under the open store
                db = Path(tracking_uri.removeprefix("sqlite:///"))
                db.rename(db.with_name("moved.db"))
        process.stdin.close()
        said += [json.loads(line)["say"] for line in process.stdout]
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    (warning,) = said  # (what the writer prints reaches the command's stderr through these)
    assert "the tracking store failed (MlflowException: (sqlite3.OperationalError) attempt to write" in warning


def test_mlflows_database_warnings_in_the_writer_are_one_line_each():
    """MLflow's system-metrics sampler warns with the SQL statement it gave up on (a lock)."""
    import logging

    from kerascnn.tracking.writer import quiet_mlflow_logs

    loggers = [logging.getLogger(f"mlflow.{n}") for n in ("store.db.utils", "system_metrics.system_metrics_monitor")]
    before = [list(g.filters) for g in loggers]
    quiet_mlflow_logs()
    logger = loggers[1]
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        error = "(sqlite3.OperationalError) database is locked\n[SQL: SELECT runs.run_uuid FROM runs]\n(Background: x)"
        logger.warning(f"Failed to get mlflow run: {error}.")
        logger.warning("Started monitoring system metrics for run %s.", "abc")
    finally:
        logger.removeHandler(handler)
        for g, kept in zip(loggers, before):  # (this process's MLflow logging, as it was)
            g.filters[:] = kept
    assert seen == [
        "Failed to get mlflow run: (sqlite3.OperationalError) database is locked",
        "Started monitoring system metrics for run abc.",
    ]


def test_a_run_travels_to_the_writer_and_back_as_json():
    parent = RunRef("sqlite:////tmp/x/mlflow.db", "exp", "search", run_id="p1")
    child = RunRef("sqlite:////tmp/x/mlflow.db", "exp", "trial", parent=parent)
    known: dict[str, RunRef] = {}
    there = RunRef.from_wire(child.uri, json.loads(json.dumps(child.to_wire())), known)
    assert (there.local_id, there.name, there.parent.local_id, there.parent.run_id) == (
        child.local_id,
        "trial",
        parent.local_id,
        "p1",
    )
    child.run_id, child.spooled = "c1", True
    again = RunRef.from_wire(child.uri, child.to_wire(), known)
    assert again is there and (again.run_id, again.spooled) == ("c1", True)


def test_the_writer_imports_tensorflow_without_keras_extras(tracking_uri, tmp_path, monkeypatch, capfd):
    """What the writer process imports for a run's end (TensorFlow, MLflow's Keras flavor, the
    plots) leaves out scikit-learn and pyplot, which Keras loads only for extras it never uses."""
    names = ("mlflow.keras", "kerascnn.tracking.plots", "sklearn", "matplotlib.pyplot")
    probe = f"import sys\nprint('probe', [n in sys.modules for n in {names}])\n"
    module_for_children(monkeypatch, tmp_path / "probe", "kerascnn_probe", probe)
    writer = WriterProcess(tracking_uri)
    try:
        said = _warmed(writer, capfd, (*WARM, "kerascnn_probe"), "probe", timeout=300)
    finally:
        _closed(writer)
    assert said == ["probe [True, True, False, False]"]


def _warmed(writer: WriterProcess, capfd, modules, prefix: str, timeout: float, yielding: bool = False) -> list[str]:
    """Has ``writer`` warm ``modules``, one of them a probe that prints a line starting with
    ``prefix`` on the writer's stdout (forwarded to our stderr); returns the probe's lines."""
    said: list[str] = []

    def reported() -> bool:
        said.extend(capfd.readouterr().err.splitlines())
        assert writer.lost is None, (writer.lost, said)
        return any(line.startswith(prefix) for line in said)

    writer.warm(modules, yielding=yielding)
    wait_for(reported, timeout, what="the probe's line")
    return [line for line in said if line.startswith(prefix)]


AUTOGROUP = Path("/proc/self/autogroup")  # Linux's scheduler autogroups; absent elsewhere
PROBE_NICE = (  # a module the writer imports: it prints the nice value of the writer's autogroup
    "import pathlib\n"
    "f = pathlib.Path('/proc/self/autogroup')\n"
    "print('nice', f.read_text().split()[-1] if f.exists() else 'none')\n"
)


def _autogroup_nice(pid: int) -> str:
    return Path(f"/proc/{pid}/autogroup").read_text().split()[-1]


def _yielding_writer(tracking_uri, tmp_path, monkeypatch, capfd, modules):
    """A writer told to warm ``modules`` yielding, and what its probe module said of its nice value."""
    module_for_children(monkeypatch, tmp_path / "probe", "kerascnn_probe", PROBE_NICE)
    module_for_children(monkeypatch, tmp_path / "sleeper", "kerascnn_sleeper", "import time\ntime.sleep(60)\n")
    writer = WriterProcess(tracking_uri)
    return writer, _warmed(writer, capfd, modules, "nice", timeout=120, yielding=True)


def _closed(writer: WriterProcess) -> None:
    writer.close()
    if writer._process is not None:
        writer._process.wait(timeout=60)


def test_a_yielding_writer_warms_up_at_nice_19_then_takes_its_share_back(tracking_uri, tmp_path, monkeypatch, capfd):
    """While the training process trains, the writer's warm-up (TensorFlow for the run's end) runs at
    its autogroup's nice 19, on the CPU time training leaves idle; once it is warm, nice 0 again."""
    writer, said = _yielding_writer(tracking_uri, tmp_path, monkeypatch, capfd, ("kerascnn_probe",))
    try:
        assert said == (["nice 19"] if AUTOGROUP.exists() else ["nice none"])
        if AUTOGROUP.exists():
            assert writer._process is not None
            wait_for(lambda: _autogroup_nice(writer._process.pid) == "0", 30, what="nice 0 after the warm-up")
    finally:
        _closed(writer)


def test_waiting_for_the_writer_ends_its_yielding_before_its_warm_up_does(tracking_uri, tmp_path, monkeypatch, capfd):
    """A process that waits for its writes (the run's end) gets them at the writer's full share: a
    flush puts the writer back at nice 0 while its warm-up (here a module that sleeps) still runs."""
    writer, said = _yielding_writer(tracking_uri, tmp_path, monkeypatch, capfd, ("kerascnn_probe", "kerascnn_sleeper"))
    try:
        assert said == (["nice 19"] if AUTOGROUP.exists() else ["nice none"])
        assert writer.flush(timeout=30)
        if AUTOGROUP.exists():
            assert writer._process is not None
            wait_for(lambda: _autogroup_nice(writer._process.pid) == "0", 10, what="nice 0 after a flush")
    finally:
        _closed(writer)


def test_a_write_gets_the_writers_full_share_while_it_yields(tracking_uri, tmp_path, monkeypatch, capfd):
    """A write sent while the writer warms up yielding (the run's creation, an epoch's metrics) runs
    at nice 0 until it is done, then the warm-up yields again: on a loaded machine, where nice 19
    gets almost nothing, the store still follows the run. Here the write waits for the store's
    lock, which the test holds."""
    from kerascnn.tracking import store

    writer, said = _yielding_writer(tracking_uri, tmp_path, monkeypatch, capfd, ("kerascnn_probe", "kerascnn_sleeper"))
    db = store.sqlite_path(tracking_uri)
    assert writer._process is not None and db is not None
    held: int | None = store.lock_folder(db.parent, wait=True)
    try:
        create = {"tags": {}, "start_time": int(time.time() * 1000)}
        writer.submit(Op("create", RunRef(tracking_uri, "kerascnn", "queued"), create))
        if AUTOGROUP.exists():
            assert said == ["nice 19"]
            wait_for(lambda: _autogroup_nice(writer._process.pid) == "0", 30, what="nice 0 for the write")
        os.close(held)
        held = None
        wait_for(lambda: [r.info.run_name for r in all_runs(tracking_uri)] == ["queued"], 60, what="the run")
        if AUTOGROUP.exists():  # written; the warm-up (a module that sleeps) goes on, yielding again
            wait_for(lambda: _autogroup_nice(writer._process.pid) == "19", 30, what="nice 19 after the write")
    finally:
        if held is not None:
            os.close(held)
        _closed(writer)


def test_yielding_changes_nothing_for_a_process_that_shares_its_session():
    """The autogroup is the session's: a writer that does not lead its own session (so would
    slow its parent too) leaves the nice value alone."""
    code = (
        "from pathlib import Path\n"
        "from kerascnn.tracking.writer import _Yielding\n"
        "f = Path('/proc/self/autogroup')\n"
        "before = f.read_text() if f.exists() else None\n"
        "y = _Yielding(); y.start()\n"
        "print(before == (f.read_text() if f.exists() else None))\n"
    )
    out = subprocess.run([*PY[:1], "-c", code], capture_output=True, text=True, timeout=60)  # not a session leader
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_a_runs_time_is_its_sessions_and_unknown_after_a_killed_one(tracking_uri):
    """Sessions add up (a pause between them does not count); after a session that never ended
    (a SIGKILL), the run's time is unknown and the table falls back to MLflow's end minus start."""
    from kerascnn.tracking.queries import leaderboard
    from kerascnn.tracking.run import ACTIVE_TAG, TrackedRun

    client = MlflowClient(tracking_uri)

    def session(wait_s: float, end: bool = True) -> None:
        run = TrackedRun.reopen(tracking_uri, "t", client.get_run(run_id), tags={})
        time.sleep(wait_s)
        if end:
            run.end("FINISHED")
        else:  # as a killed process leaves it
            run.wait()

    first = TrackedRun.start(tracking_uri, "t", "sessions", tags={"kerascnn.kind": "train"})
    time.sleep(0.5)
    first.end("FINISHED")
    run_id = first.run_id
    time.sleep(2)  # a pause
    session(0.5)
    run = client.get_run(run_id)
    active = float(run.data.tags[ACTIVE_TAG])
    assert 1.0 <= active < (run.info.end_time - run.info.start_time) / 1000 - 1.5
    assert leaderboard(tracking_uri=tracking_uri)[0].duration_s == active
    session(0.2, end=False)  # killed
    session(0.2)
    run = client.get_run(run_id)
    assert ACTIVE_TAG not in run.data.tags
    assert leaderboard(tracking_uri=tracking_uri)[0].duration_s == (run.info.end_time - run.info.start_time) / 1000


def test_a_reopened_runs_system_metrics_go_on_after_its_last_step(tracking_uri):
    """A resumed run (or a search's parent run again) samples on from the step its earlier session reached."""
    from kerascnn.tracking import writes

    c = MlflowClient(tracking_uri)
    run_id = c.create_run(c.create_experiment("sampled")).info.run_id
    c.log_metric(run_id, "system/cpu_utilization_percentage", 1.0, step=3)  # the earlier session's last sample
    run = RunRef(tracking_uri, "sampled", "r", run_id=run_id)
    writes.apply(tracking_uri, Op("monitor", run, {"interval_s": 0.2}))
    time.sleep(1.5)
    run.monitor.finish()
    steps = [m.step for m in c.get_metric_history(run_id, "system/cpu_utilization_percentage")]
    assert steps[0] == 3 and len(steps) > 1 and sorted(steps[1:]) == list(range(4, 3 + len(steps)))


def test_mlflows_any_type_hint_note_stays_out_of_the_writers_stderr_whatever_another_thread_does():
    """``mlflow.pyfunc``'s import mutes its own note by swapping ``warnings.showwarning``; a
    ``catch_warnings`` on another thread (the plots' save) could swap it back mid-import (CI saw
    the note, in colour, on a ``train`` command's stderr). Here nothing mutes it but the writer's filter."""
    import typing
    import warnings

    from mlflow.types.type_hints import _infer_colspec_type_from_type_hint

    from kerascnn.tracking.writer import quiet_mlflow_logs

    with warnings.catch_warnings(record=True) as caught:  # (the filters, as they were, come back after)
        warnings.simplefilter("always")
        _infer_colspec_type_from_type_hint(typing.Any)
        assert [str(w.message) for w in caught] == [
            "\x1b[1;33mAny type hint is inferred as AnyType, and MLflow doesn't validate the data for this type. "
            "Please use a more specific type hint to enable data validation.\x1b[0m"
        ]  # (what the writer's filter has to match)
        caught.clear()
        quiet_mlflow_logs()
        _infer_colspec_type_from_type_hint(typing.Any)
        warnings.warn("another warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["another warning"]
