"""A tracking store that goes away loses nothing: bounded waits, the local spool, `kerascnn sync`.

With a real `mlflow server` subprocess on 127.0.0.1 (killed as a crash would, then started
again on the same port and store), and `--offline` runs for the sync-twice cases.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from kerascnn.tracking import store
from kerascnn.tracking.queries import spooled_rows
from kerascnn.tracking.sync import pending, sync
from tests.helpers import PY, all_runs, child_runs, data_dir, metric_steps, mlflow_server, run_cli, wait_for

EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


pytestmark = pytest.mark.usefixtures("in_a_scratch_folder")


def _epochs_logged(uri: str) -> int:
    """The most epochs any run of the server logged so far (0 while it cannot tell)."""
    try:
        return max((len(metric_steps(uri, r.info.run_id, "val_loss")) for r in all_runs(uri)), default=0)
    except Exception:
        return 0


def test_server_killed_mid_training_loses_nothing_after_sync(tmp_path, spawn):
    with mlflow_server(tmp_path / "server") as server:
        cmd = [
            *PY,
            "train",
            "mnist_cnn",
            "--epochs",
            "4",
            "--train-samples",
            "6000",
            "--test-samples",
            "500",
            "--tracking-uri",
            server.uri,
            "--json",
        ]
        started = time.monotonic()
        process = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: _epochs_logged(server.uri) >= 2, 300, process, "two epochs on the server")
        two_epochs = time.monotonic() - started
        server.stop()  # down until the command has ended
        killed = time.monotonic()
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        assert time.monotonic() - killed < two_epochs + 40, "training waited on the dead store"
        result = json.loads(out)
        assert "goes on into the spool" in err and "Traceback" not in err
        spool = Path(result["spool"])
        assert Path(result["model_path"]).is_file() and spool in Path(result["model_path"]).parents  # kept locally
        (row,) = spooled_rows(server.uri)  # its create op reached the server, its labels are in the spool
        assert (row.run_id, row.kind, row.model, row.dataset) == (result["run_id"], "train", "mnist_cnn", "mnist")
        server.start()
        synced = run_cli("sync", "--tracking-uri", server.uri, "--json", check=True)
        assert list(json.loads(synced.stdout)["synced"].values()) == [result["run_id"]]
        assert not spool.exists()
        run = MlflowClient(server.uri).get_run(result["run_id"])
        assert run.info.status == "FINISHED" and run.info.end_time
        for key in EPOCH_KEYS:
            assert metric_steps(server.uri, result["run_id"], key) == [0, 1, 2, 3], key  # each step exactly once
        assert run.data.metrics["test_accuracy"] == pytest.approx(result["test_accuracy"])
        assert run.data.metrics["fit_seconds"] < time.monotonic() - started  # training time only
        client = MlflowClient(server.uri)
        local = client.download_artifacts(result["run_id"], "model.keras", str(tmp_path))
        with store.global_tracking_uri(server.uri):
            (logged,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
            served = mlflow.pyfunc.load_model(logged.model_uri)
        images = np.load(data_dir() / "mnist.npz")["x_test"][:500, ..., None]
        labels = np.load(data_dir() / "mnist.npz")["y_test"][:500]
        accuracy = float(np.mean(np.asarray(served.predict(images)).argmax(axis=1) == labels))
        assert accuracy == pytest.approx(result["test_accuracy"], abs=1e-6) and Path(local).stat().st_size > 10_000


def test_server_down_during_a_search_keeps_trials_and_their_nesting(tmp_path, spawn):
    with mlflow_server(tmp_path / "server") as server:
        cmd = [
            *PY,
            "tune",
            "lenet5",
            "--max-trials",
            "3",
            "--epochs",
            "2",
            "--train-samples",
            "2000",
            "--tracking-uri",
            server.uri,
            "--directory",
            str(tmp_path / "s"),
            "--json",
        ]
        process = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Down once the search says its first trial is done (the search's own word, not the store's:
        # under load its writer may not have sent anything yet); two trials are still to come.
        lines = iter(process.stderr.readline, "")
        seen = next((line for line in lines if "trial 0 [tuner0] COMPLETED" in line), None)
        server.stop()
        out, err = process.communicate(timeout=600)
        assert seen, err[-3000:]
        assert process.returncode == 0, err[-3000:]
        assert len(json.loads(out)["trials"]) == 3
        assert pending(server.uri)  # the later trials waited in the spool
        server.start()
        run_cli("sync", "--tracking-uri", server.uri, check=True)
        runs = all_runs(server.uri)
        (parent,) = [r for r in runs if r.data.tags.get("kerascnn.kind") == "search"]
        trials = child_runs(server.uri, parent.info.run_id)
        assert sorted(r.data.tags["kerascnn.trial_id"] for r in trials) == ["0", "1", "2"]
        assert all(r.info.status == "FINISHED" for r in [parent, *trials])
        for trial in trials:
            assert metric_steps(server.uri, trial.info.run_id, "val_accuracy") == [0, 1]
        assert not pending(server.uri)


def test_sync_twice_and_two_syncs_at_once_write_every_step_once(tracking_uri):
    for seed in (1, 2):
        trained = run_cli(
            "train",
            "lenet5",
            "--epochs",
            "2",
            "--train-samples",
            "400",
            "--test-samples",
            "100",
            "--seed",
            str(seed),
            "--offline",
            "--tracking-uri",
            tracking_uri,
            check=True,
        )
        assert ", --offline; `kerascnn sync` sends it)" in trained.stdout  # asked for, not a failure
    assert len(pending(tracking_uri)) == 2 and not all_runs(tracking_uri)
    table = run_cli("runs", "--tracking-uri", tracking_uri, check=True).stdout
    assert "waiting in the spool (2" in table and "SPOOLED (FINISHED)" in table
    assert "no runs in the store yet" in table and "train one" not in table  # (two wait)
    reports: list = []
    threads = [threading.Thread(target=lambda: reports.append(sync(tracking_uri))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r.synced) for r in reports) == 2 and not [r.failed for r in reports if r.failed]
    again = run_cli("sync", "--tracking-uri", tracking_uri, "--json", check=True)
    assert json.loads(again.stdout) == {"synced": {}, "busy": [], "failed": {}}
    runs = all_runs(tracking_uri)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        for key in EPOCH_KEYS:
            assert metric_steps(tracking_uri, run.info.run_id, key) == [0, 1], key
        assert len(run.inputs.dataset_inputs) == 3
    assert not list((Path(tracking_uri[10:]).parent / "spool").iterdir())


def test_a_dead_server_at_the_start_is_refused_in_one_line(tmp_path):
    from tests.helpers import assert_usage_error, free_port

    result = run_cli("train", "mnist_cnn", "--tracking-uri", f"http://127.0.0.1:{free_port()}", "--epochs", "1")
    assert_usage_error(result, "does not answer", "--offline")
    np.save(tmp_path / "images.npy", np.zeros((2, 28, 28), np.uint8))
    uri = f"http://127.0.0.1:{free_port()}"
    result = run_cli("predict", "models:/digits@champion", str(tmp_path / "images.npy"), "--tracking-uri", uri)
    assert_usage_error(result, "does not answer (", f"); start it. Received: tracking_uri='{uri}'")
    assert "--offline" not in result.stderr  # predicting reads a model: there is nothing to spool


def test_a_failed_sync_keeps_the_spool_and_says_so_on_stderr_with_the_report_on_stdout(tracking_uri):
    import shutil

    import kerascnn

    kerascnn.train("lenet5", "mnist", epochs=1, train_samples=200, offline=True, tracking_uri=tracking_uri, verbose=0)
    (spooled,) = pending(tracking_uri)
    for files in Path(tracking_uri[10:]).parent.glob("spool/*/files"):
        shutil.rmtree(files)  # the model file is gone: the replay cannot log it
    plain = run_cli("sync", "--tracking-uri", tracking_uri)
    assert plain.returncode == 1 and plain.stdout == ""
    assert (
        plain.stderr.startswith(f"kerascnn: could not sync {spooled.folder.name[:12]}: ")
        and "Model file not found" in plain.stderr
    )
    as_json = run_cli("sync", "--tracking-uri", tracking_uri, "--json")
    assert as_json.returncode == 1 and list(json.loads(as_json.stdout)["failed"]) == [spooled.folder.name]
    assert len(pending(tracking_uri)) == 1  # kept for another try


def test_a_model_whose_upload_was_cut_off_is_logged_again_by_sync(tracking_uri, monkeypatch):
    """A writer (or a sync) killed while uploading the MLflow model leaves it PENDING, and maybe a
    registered version of it: sync logs the model again and registers the complete one."""
    from mlflow.entities import LoggedModelStatus

    import kerascnn
    from kerascnn.tracking import writes

    offline = kerascnn.train(
        "lenet5", "mnist", epochs=1, train_samples=200, offline=True, register_model="cut", alias="champion",
        tracking_uri=tracking_uri, verbose=0,
    )  # fmt: skip
    assert offline.spool and offline.registered_model is None  # registered by the sync, not yet
    with monkeypatch.context() as m:
        # (the kit's step just before MLflow's Model.log: the logged model exists, its files do not)
        m.setattr(writes, "_requirements_known", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):  # the upload is cut off, as by a kill
            sync(tracking_uri)
    c = MlflowClient(tracking_uri)
    (run,) = all_runs(tracking_uri)
    (cut,) = c.search_logged_models([run.info.experiment_id])
    assert cut.status == LoggedModelStatus.PENDING
    c.create_registered_model("cut")
    with store.global_tracking_uri(tracking_uri):  # (MLflow's registry reads the logged model from its global store)
        c.create_model_version("cut", f"models:/{cut.model_id}", run.info.run_id, model_id=cut.model_id)  # got that far
    report = sync(tracking_uri)
    assert list(report.synced) and not report.failed and not pending(tracking_uri)
    models = {m.model_id: m.status for m in c.search_logged_models([run.info.experiment_id])}
    assert models.pop(cut.model_id) == LoggedModelStatus.FAILED and list(models.values()) == [LoggedModelStatus.READY]
    champion = c.get_model_version_by_alias("cut", "champion")
    assert champion.source.removeprefix("models:/") in models and int(champion.version) == 2
    with store.global_tracking_uri(tracking_uri):
        loaded = mlflow.pyfunc.load_model("models:/cut@champion")
    assert loaded.predict(np.zeros((1, 28, 28, 1), np.uint8)).shape == (1, 10)


def test_sync_keeps_the_later_end_of_a_run_resumed_meanwhile(tracking_uri, monkeypatch):
    """A spooled session's end (KILLED by a signal, say) replayed after the run was resumed and
    finished must not turn it back: its metrics are filled in, its later end stands."""
    import kerascnn
    from kerascnn.tracking import writes

    kerascnn.train("lenet5", "mnist", epochs=1, train_samples=200, offline=True, tracking_uri=tracking_uri, verbose=0)
    with monkeypatch.context() as m:
        m.setitem(writes._HANDLERS, "end", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):  # everything but the end reached the store
            sync(tracking_uri)
    c = MlflowClient(tracking_uri)
    (run,) = all_runs(tracking_uri)
    later = int(time.time() * 1000) + 60_000
    c.set_terminated(run.info.run_id, "FINISHED", end_time=later)  # as a resumed session would end it
    report = sync(tracking_uri)
    assert list(report.synced) and not pending(tracking_uri)
    info = c.get_run(run.info.run_id).info
    assert (info.status, info.end_time) == ("FINISHED", later)
    assert metric_steps(tracking_uri, run.info.run_id, "val_loss") == [0]


def test_sync_logs_a_spooled_model_though_the_run_has_another_of_that_name(tracking_uri, monkeypatch):
    """A run can log two models under one name (a search's best model, in two sessions): sync
    tells the one a spooled op logs by its key, not by the name."""
    from mlflow.entities import LoggedModelStatus

    import kerascnn
    from kerascnn.tracking import writes

    kerascnn.train("lenet5", "mnist", epochs=1, train_samples=200, offline=True, tracking_uri=tracking_uri, verbose=0)
    with monkeypatch.context() as m:
        m.setitem(writes._HANDLERS, "end", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):  # everything but the end reached the store, the model included
            sync(tracking_uri)
    (spooled,) = pending(tracking_uri)
    ops = [json.loads(line) for line in (spooled.folder / "ops.jsonl").read_text().splitlines()]
    for op in ops:
        if op["kind"] == "model":
            op["data"]["tags"]["kerascnn.model_key"] = "second"  # another model of the same name
    (spooled.folder / "ops.jsonl").write_text("".join(json.dumps(op) + "\n" for op in ops))
    mlflow.set_tracking_uri("sqlite:////nonexistent/users-own.db")  # a notebook's own setting
    try:
        assert list(sync(tracking_uri).synced) and not pending(tracking_uri)
        assert mlflow.get_tracking_uri() == "sqlite:////nonexistent/users-own.db"  # left as it was
    finally:
        mlflow.set_tracking_uri(None)
    (run,) = all_runs(tracking_uri)
    models = MlflowClient(tracking_uri).search_logged_models([run.info.experiment_id])
    assert sorted(m.tags["kerascnn.model_key"] == "second" for m in models) == [False, True]
    assert {m.name for m in models} == {"mlflow_model"} and all(m.status == LoggedModelStatus.READY for m in models)


def test_resume_points_at_sync_while_the_interrupted_run_waits_in_the_spool(tracking_uri):
    import keras

    import kerascnn

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:  # epoch 1's backup is on disk
                raise KeyboardInterrupt

    common = dict(epochs=2, train_samples=200, test_samples=100, tracking_uri=tracking_uri, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        kerascnn.train("lenet5", "mnist", offline=True, callbacks=[Stop()], **common)
    (row,) = spooled_rows(tracking_uri)  # `kerascnn runs` shows its epoch's val_accuracy while it waits
    assert row.status == "SPOOLED (FAILED)" and row.best_val_accuracy == max(
        v
        for op in pending(tracking_uri)[0].ops
        if op["kind"] == "metrics"
        for k, v, *_ in op["data"]["metrics"]
        if k == "val_accuracy"
    )
    with pytest.raises(ValueError, match=r"'kerascnn' \(1 interrupted run waits in this store's spool: `kerascnn"):
        kerascnn.train(resume=True, tracking_uri=tracking_uri, verbose=0)
    with pytest.raises(ValueError, match="Nothing to resume") as elsewhere:  # not a run this could resume
        kerascnn.train(resume=True, experiment="other", tracking_uri=tracking_uri, verbose=0)
    assert "spool" not in str(elsewhere.value)
    assert list(sync(tracking_uri).synced)
    resumed = kerascnn.train(resume=True, tracking_uri=tracking_uri, verbose=0)  # now in the store
    (run,) = all_runs(tracking_uri)
    assert resumed.run_id == run.info.run_id and run.info.status == "FINISHED"
    assert metric_steps(tracking_uri, run.info.run_id, "val_loss") == [0, 1]


def test_runs_lists_the_spool_of_a_server_that_is_away(tmp_path):
    import kerascnn
    from tests.helpers import assert_usage_error, free_port

    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert_usage_error(run_cli("runs", "--tracking-uri", uri), "Received: tracking_uri=")  # nothing to show
    kerascnn.train("lenet5", "mnist", epochs=1, train_samples=200, offline=True, tracking_uri=uri, verbose=0)
    listed = run_cli("runs", "--tracking-uri", uri, "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    (row,) = json.loads(listed.stdout)
    assert row["status"] == "SPOOLED (FINISHED)" and row["model"] == "lenet5"
    assert listed.stderr.startswith("kerascnn: warning: ") and "only the runs waiting in its spool" in listed.stderr


def test_a_spool_recorded_with_dots_in_its_store_path_is_still_listed_and_synced(tracking_uri):
    """An older kit recorded a notebook's ``sqlite:///../mlruns/mlflow.db`` with its ``..``; the store is the same."""
    import json

    import kerascnn
    from kerascnn.tracking import store

    kerascnn.train("lenet5", "mnist", epochs=1, train_samples=200, offline=True, tracking_uri=tracking_uri, verbose=0)
    db = store.sqlite_path(tracking_uri)
    (db.parent / "notebooks").mkdir()
    (info,) = (store.home(tracking_uri) / "spool").glob("*/run.json")
    recorded = json.loads(info.read_text())
    info.write_text(json.dumps(dict(recorded, uri=f"sqlite:///{db.parent}/notebooks/../{db.name}")))
    assert len(pending(tracking_uri)) == 1
    assert list(sync(tracking_uri).synced) and not pending(tracking_uri) and len(all_runs(tracking_uri)) == 1
