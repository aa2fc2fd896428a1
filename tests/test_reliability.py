"""Reliability with real processes, real signals and a real MLflow store.

The search-side guarantees (SIGKILL mid-trial, failing trials) are in test_tuning.py,
the dashboard's loopback binding in test_dashboard.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import kerascnn
from tests.helpers import (
    PY,
    all_runs,
    assert_usage_error,
    data_dir,
    first_epoch_logged,
    metric_steps,
    run_cli,
    wait_for,
    writer_of,
)

pytestmark = pytest.mark.usefixtures("in_a_scratch_folder")


def _train_cmd(uri: str, *extra: str) -> list[str]:
    return [*PY, "train", "mnist_cnn", "--dataset", "mnist", "--tracking-uri", uri, *extra]


# 2. SIGKILL during training, then --resume ------------------------------------------------------


def _backed_up(uri: str) -> int:
    """The last epoch the run's backup holds, read from its folder: the training process writes it
    there itself, while the store hears of the run from the tracking writer (later under load)."""
    from kerascnn.tracking import store

    epochs = [0]
    for meta in (store.home(uri) / "backups").glob("*/training_metadata.json"):
        with contextlib.suppress(OSError, ValueError):  # being written (or replaced) right now
            epochs.append(json.loads(meta.read_text()).get("epoch", 0))
    return max(epochs)


def test_sigkill_during_training_then_resume_continues_the_same_run(tracking_uri, spawn):
    cmd = _train_cmd(tracking_uri, "--epochs", "4", "--train-samples", "12000", "--precision", "float32", "--json")
    process = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    writer = writer_of(process)

    wait_for(lambda: _backed_up(tracking_uri) >= 2, 300, process, "the backup of epoch 2")
    process.send_signal(signal.SIGKILL)
    process.wait()
    writer.wait(timeout=300)  # the tracking writer wrote what it had been sent, then exited (slow under load)
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "RUNNING"  # a SIGKILL cannot end it; --resume will
    backup = Path(run.data.tags["kerascnn.backup_dir"])
    (backup / "latest.weights.h5").write_bytes(b"torn by the kill")  # as if killed in the middle of a save
    resumed = subprocess.run(
        [*PY, "train", "--resume", "--tracking-uri", tracking_uri, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )  # the run's logged settings, not retyped
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    out = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert out["run_id"] == run.info.run_id
    # continued from the previous epoch's backup (double checkpoint), not restarted
    assert "Epoch 1/4" not in resumed.stderr and "Epoch 4/4" in resumed.stderr
    assert "kerascnn: resuming from the backup of epoch 1 (4 epochs in all)" in resumed.stderr
    (final,) = all_runs(tracking_uri)
    assert final.info.status == "FINISHED" and final.data.tags["kerascnn.resumed"] == "1"
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate"):
        assert sorted(set(metric_steps(tracking_uri, run.info.run_id, key))) == [0, 1, 2, 3], key
    assert final.data.metrics["test_accuracy"] == pytest.approx(out["test_accuracy"])
    assert not Path(final.data.tags["kerascnn.backup_dir"]).exists()  # removed once finished
    again = run_cli("train", "mnist_cnn", "--dataset", "mnist", "--tracking-uri", tracking_uri, "--resume")
    assert_usage_error(again, "Nothing to resume")


def test_a_torn_first_backup_restarts_the_run_in_place(tracking_uri, spawn):
    cmd = _train_cmd(tracking_uri, "--epochs", "6", "--train-samples", "8000", "--json")
    process = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    writer = writer_of(process)
    wait_for(lambda: _backed_up(tracking_uri) >= 1, 300, process, "the backup of epoch 1")
    process.send_signal(signal.SIGKILL)
    process.wait()
    writer.wait(timeout=300)
    (run,) = all_runs(tracking_uri)
    backup = Path(run.data.tags["kerascnn.backup_dir"])
    for name in ("latest.weights.h5.bkp", "training_metadata.json.bkp"):
        (backup / name).unlink(missing_ok=True)  # killed in the middle of the first save: nothing older to use
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n torn")
    other = run_cli("train", "--resume", run.info.run_id[:12], "--epochs", "9", "--tracking-uri", tracking_uri)
    assert_usage_error(other, "(epochs=6); drop the differing flags, or start a new run. Received: epochs=9")
    renamed = run_cli("train", "--resume", run.info.run_id[:12], "--run-name", "new", "--tracking-uri", tracking_uri)
    assert_usage_error(
        renamed,
        f"(run_name={run.info.run_name!r}); drop the differing flags, or start a new run. Received: run_name='new'",
    )
    elsewhere = run_cli("train", "--resume", run.info.run_id[:12], "--experiment", "b", "--tracking-uri", tracking_uri)
    assert_usage_error(
        elsewhere, "(experiment='kerascnn'); drop the differing flags, or start a new run. Received: experiment='b'"
    )
    resumed = run_cli(
        "train",
        "--resume",
        run.info.run_id[:12],
        "--epochs",
        "6",
        "--tracking-uri",
        tracking_uri,
        "--json",
        env={"TF_ENABLE_ONEDNN_OPTS": "0"},  # as on another machine: no native bfloat16 without oneDNN
    )  # a flag equal to the logged setting is fine
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "training starts over from epoch 1 in the same run" in resumed.stderr and "Epoch 1/6" in resumed.stderr
    (final,) = all_runs(tracking_uri)
    assert final.info.run_id == run.info.run_id and final.info.status == "FINISHED"
    changed = run.data.params["dtype_policy"] == "mixed_bfloat16"  # where native; float32 without oneDNN
    assert ("trained in mixed_bfloat16 so far; here precision='auto' resolves to float32" in resumed.stderr) is changed
    assert final.data.tags.get("kerascnn.resumed_dtype_policy") == ("float32" if changed else None)
    assert sorted(set(metric_steps(tracking_uri, run.info.run_id, "val_loss"))) == [0, 1, 2, 3, 4, 5]


def test_a_run_stopped_in_its_evaluation_is_not_offered_for_resume(tracking_uri, tmp_path, capsys):
    """Stopped after its last epoch (Keras removed the epoch backup, the model is logged): resuming
    would train it all again, so it is refused, and the stop message points at ``evaluate``."""
    from mlflow.tracking import MlflowClient

    from kerascnn.cli import _fail
    from kerascnn.signals import Terminated
    from kerascnn.tracking import run as run_module
    from kerascnn.tracking.store import ensure_experiment

    c = MlflowClient(tracking_uri)
    run_id = c.create_run(ensure_experiment(tracking_uri, "kerascnn")).info.run_id
    (tmp_path / "model.keras").write_bytes(b"x")
    c.log_artifact(run_id, str(tmp_path / "model.keras"))
    c.set_terminated(run_id, "KILLED")
    with pytest.raises(
        ValueError,
        match=rf"trained every epoch .*`kerascnn evaluate {run_id[:12]} --tracking-uri {re.escape(tracking_uri)}`"
        rf".*resume='{run_id}'",
    ):
        kerascnn.train("mnist_cnn", "mnist", resume=run_id, tracking_uri=tracking_uri)
    store = f" --tracking-uri '{tracking_uri}/my store'"  # the hints are commands to copy: the store's flag in them
    resume, evaluate = f"--resume {run_id[:12]}{store}` continues it", f"evaluate {run_id[:12]}{store}` scores"
    args = argparse.Namespace(command="train", tracking_uri=f"{tracking_uri}/my store")
    for resumable, signum, code, hint in ((True, 15, 143, resume), (True, 1, 129, resume), (False, 15, 143, evaluate)):
        run_module._last.append(run_module.RunOutcome(run_id, "local", "KILLED", "signal", None, resumable))
        assert _fail(Terminated(signum), code, "terminated", args) == code  # SIGTERM, SIGHUP
        assert hint in capsys.readouterr().err
    run_module._last.append(run_module.RunOutcome(None, "local", "FAILED", "interrupted", tmp_path, True))  # --offline
    assert _fail(KeyboardInterrupt(), 130, "interrupted", args) == 130
    assert f"`kerascnn sync{store}` sends it to the store, then `kerascnn train --resume{store}` continues it)" in (
        capsys.readouterr().err
    )
    args.experiment = "my runs"  # a bare --resume looks in one experiment: the run's
    run_module._last.append(run_module.RunOutcome(None, "local", "FAILED", "interrupted", tmp_path, True))
    assert _fail(KeyboardInterrupt(), 130, "interrupted", args) == 130
    assert f"`kerascnn train --resume{store} --experiment 'my runs'` continues it)" in capsys.readouterr().err


def test_signals_while_a_run_ends_act_after_it_whichever_thread_the_kernel_gives_them_to():
    """Held by handlers, not a signal mask: a mask holds a signal back from one thread only, and a
    training process has others (the writer's, TensorFlow's); a SIGTERM there killed the CLI mid-end."""
    from kerascnn.signals import Terminated, deferred

    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
    default_term = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in the CLI after its run's block
    ended = []
    try:
        with pytest.raises(KeyboardInterrupt), deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)
            ended.append(1)
        with pytest.raises(Terminated) as raised, deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)  # (a second signal: the first one acts)
            time.sleep(0.3)
            ended.append(2)
        assert ended == [1, 2] and raised.value.exit_code == 143
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handlers are put back
    finally:
        signal.signal(signal.SIGTERM, default_term)
        stop.set()


def test_a_run_in_training_cannot_be_resumed_twice(tracking_uri, spawn):
    process = spawn(
        _train_cmd(tracking_uri, "--epochs", "20", "--train-samples", "20000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: first_epoch_logged(tracking_uri),
            300,
            process,
            "epoch 1",
        )
        run_id = all_runs(tracking_uri)[0].info.run_id
        second = run_cli(
            "train",
            "mnist_cnn",
            "--dataset",
            "mnist",
            "--epochs",
            "20",
            "--train-samples",
            "20000",
            "--tracking-uri",
            tracking_uri,
            "--resume",
            run_id,
        )
        assert_usage_error(second, "Received: resume=")
        assert "still running" in second.stderr or "another process" in second.stderr
    finally:
        process.kill()
        process.wait()


# 3. SIGINT and SIGTERM ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signum,code,status",
    [(signal.SIGINT, 130, "FAILED"), (signal.SIGTERM, 143, "KILLED"), (signal.SIGHUP, 129, "KILLED")],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_signals_end_the_run_and_exit_promptly(signum, code, status, tracking_uri, spawn):
    process = spawn(
        _train_cmd(tracking_uri, "--epochs", "20", "--train-samples", "20000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job
    )
    wait_for(
        lambda: first_epoch_logged(tracking_uri),
        300,
        process,
        "the first epoch",
    )
    sent = time.monotonic()
    if signum == signal.SIGINT:  # Ctrl-C: the terminal signals the whole foreground group
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - sent < 20, "did not exit promptly"
    assert process.returncode == code, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("kerascnn: error:")
    (run,) = all_runs(tracking_uri)
    hint = f"`kerascnn train --resume {run.info.run_id[:12]} --tracking-uri {tracking_uri}` continues it"
    assert hint in err.strip().splitlines()[-1]  # a command to copy: this store's, not the default one
    assert run.info.status == status and run.info.end_time
    reason = run.data.tags["kerascnn.failure"]
    assert ("KeyboardInterrupt" in reason) if signum == signal.SIGINT else (signal.Signals(signum).name in reason)


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its ``SigCgt`` mask in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return bool(caught >> (signum - 1) & 1)


def test_a_sigterm_while_tensorflow_loads_ends_the_command_with_its_line(tracking_uri, spawn):
    """Before its run exists, a command stopped by SIGTERM still says so (it died silently)."""
    process = spawn(_train_cmd(tracking_uri), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: _catches(process.pid, signal.SIGTERM), 60, process, "its SIGTERM handler")
    process.send_signal(signal.SIGTERM)  # (within 0.2 s of the handler: TensorFlow takes seconds to load)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err[-2000:]
    assert err.strip().splitlines() == ["kerascnn: error: terminated by SIGTERM"]


# 4. NaN ----------------------------------------------------------------------------------------


def test_nan_loss_fails_the_run_and_the_command(tracking_uri):
    result = run_cli(
        "train",
        "mnist_cnn",
        "--dataset",
        "mnist",
        "--epochs",
        "3",
        "--train-samples",
        "300",
        "--optimizer",
        "sgd",
        "--learning-rate",
        "1e12",
        "--schedule",
        "constant",
        "--tracking-uri",
        tracking_uri,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert re.match(r"kerascnn: error: training failed: the training loss became (nan|inf)", line)
    assert "ended FAILED" in line
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FAILED" and re.search("loss became (nan|inf)", run.data.tags["kerascnn.failure"])
    assert len(metric_steps(tracking_uri, run.info.run_id, "val_accuracy")) == 1  # stopped after the bad epoch


def _past_any_memory(input_shape, num_classes, units=8):
    """Each image becomes 28,000 x 1,400,000,000 pixels (~157 TB): past any machine's memory, and past
    the 128 TiB a process can even address (so no overcommit lets it through). Each side stays below
    2**31 (TensorFlow reshapes with int32 dims) and the first, smaller repeat takes ~100 MB."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.UpSampling2D((1000, 50_000_000)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(units),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def test_a_batch_past_the_memory_fails_the_run_the_trial_and_evaluate_in_one_line(tracking_uri, tmp_path):
    from kerascnn.models import register_model
    from kerascnn.models.registry import _MODELS

    @register_model(default_input_shape=(28, 28, 1), default_num_classes=10)
    def wide_test_net(*, input_shape, num_classes):
        return _past_any_memory(input_shape, num_classes)

    tiny = dict(epochs=1, train_samples=64, batch_size=32, tracking_uri=tracking_uri)
    try:  # (TensorFlow's allocator retries for 10 s before it gives up, each time)
        with pytest.raises(kerascnn.TrainingFailed) as failed:
            kerascnn.train("wide_test_net", "mnist", **tiny)
        assert str(failed.value) == (
            "a training step does not fit in memory: TensorFlow could not allocate a tensor of shape "
            "[32, 28000, 28, 50000000, 1]; lower batch_size (--batch-size). Received: batch_size=32"
        )
        (run,) = all_runs(tracking_uri)
        assert run.info.status == "FAILED" and "does not fit in memory" in run.data.tags["kerascnn.failure"]
        with pytest.raises(ValueError, match=r"^A batch does not fit in memory: .*Received: batch_size=32$"):
            kerascnn.evaluate(kerascnn.create_model("wide_test_net"), "mnist", test_samples=32, batch_size=32)
    finally:
        _MODELS.pop("wide_test_net")
    with pytest.raises(kerascnn.SearchFailed, match=r"last trial: FailedTrialError: a training step does not fit"):
        kerascnn.tune(
            build=lambda hp, input_shape, num_classes: _past_any_memory(
                input_shape, num_classes, hp.Int("units", 4, 8)
            ),
            dataset="mnist",
            max_trials=1,
            max_consecutive_failed_trials=1,
            directory=tmp_path / "s",
            progress=False,
            **tiny,
        )


# 5. Eight writers on one SQLite store --------------------------------------------------------------


def test_eight_concurrent_trainings_on_one_fresh_sqlite_store(tracking_uri, spawn):
    procs = [
        spawn(
            _train_cmd(
                tracking_uri,
                "--epochs",
                "2",
                "--train-samples",
                "200",
                "--test-samples",
                "100",
                "--run-name",
                f"writer-{i}",
                "--seed",
                str(i),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    for p, err in zip(procs, errors):
        assert p.returncode == 0, err[-2000:]
        assert "database is locked" not in err
    runs = all_runs(tracking_uri)
    assert sorted(r.info.run_name for r in runs) == [f"writer-{i}" for i in range(8)]
    for run in runs:
        assert run.info.status == "FINISHED"
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
            assert metric_steps(tracking_uri, run.info.run_id, key) == [0, 1], (run.info.run_name, key)
        assert {"test_accuracy", "test_loss", "best_val_accuracy"} <= set(run.data.metrics)


# 6. The bad-input catalogue -------------------------------------------------------------------------


def _write_npz(folder: Path, name: str, **arrays) -> None:
    folder.mkdir(exist_ok=True)
    np.savez(folder / f"{name}.npz", **arrays)


@pytest.fixture
def bad_data(tmp_path) -> Path:
    """A data folder with a real MNIST link, a corrupt, a wrong-layout and an RGB dataset."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "mnist.npz").symlink_to(data_dir() / "mnist.npz")
    (folder / "fashion_mnist.npz").write_bytes(b"\x00garbage, not a zip file")
    _write_npz(folder, "cifar100", x_train=np.zeros((4, 32, 32, 3), np.uint8), y_train=np.zeros(4))
    rng = np.random.default_rng(0)
    _write_npz(
        folder,
        "cifar10",
        x_train=rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8),
        y_train=np.arange(40) % 10,
        x_test=rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8),
        y_test=np.arange(10),
    )
    return folder


def _lambda_model(path: Path) -> Path:
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Lambda(lambda x: x * 2.0, name="double"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.save(path)
    return path


T = ["train", "mnist_cnn", "--dataset", "mnist", "--train-samples", "200", "--epochs", "1"]
CLI_CASES = {
    "unknown model": (["train", "lenet6", "--dataset", "mnist"], {}, "Received: model='lenet6'"),
    "unknown dataset": (["train", "lenet5", "--dataset", "imagenet"], {}, "Received: dataset='imagenet'"),
    "missing image folder": (["train", "lenet5", "--dataset", "./no/such/folder"], {}, "Image folder not found"),
    "unreadable image in a folder": (
        ["train", "mnist_cnn", "--dataset", "photos"],
        {"photos": True, "corrupt": True},
        "Cannot read the image 'photos/b/3.png'",
    ),
    "zero epochs": ([*T, "--epochs", "0"], {}, "Received: epochs=0"),
    "registered model name": ([*T, "--register-model", "digits/v2"], {}, "Received: register_model='digits/v2'"),
    "epochs past any counter": ([*T, "--epochs", "99999999999999999999"], {}, "Received: epochs=99999999999999999999"),
    "seed past NumPy's": ([*T, "--seed", "4294967296"], {}, "must be at most 4294967295. Received: seed=4294967296"),
    "negative batch": ([*T, "--batch-size", "-8"], {}, "Received: batch_size=-8"),
    "zero learning rate": ([*T, "--learning-rate", "0"], {}, "Received: learning_rate=0.0"),
    "nan learning rate": ([*T, "--learning-rate", "nan"], {}, "Received: learning_rate=nan"),
    "zero train samples": ([*T, "--train-samples", "0"], {}, "Received: train_samples=0"),
    "unknown optimizer": ([*T, "--optimizer", "adagrad"], {}, "Received: optimizer='adagrad'"),
    "validation split": ([*T, "--validation-split", "1.5"], {}, "Received: validation_split=1.5"),
    "precision": ([*T, "--precision", "half"], {}, "Received: precision='half'"),
    "builder option value": ([*T, "-o", "filters=0"], {}, "Received: filters=0"),
    "builder option name": ([*T, "-o", "widht=2"], {}, "Received: widht=2"),
    "builder option twice": ([*T, "-o", "width=2", "-o", "width=3"], {}, "-o sets width twice (2, then 3)"),
    "too few classes": ([*T, "--num-classes", "1"], {}, "Received: num_classes=1"),
    "classes below the data's": ([*T, "--num-classes", "5"], {}, "smaller than the 10 classes"),
    "weights past the memory": (  # TensorFlow's allocator retries for 10 s before it gives up
        ["train", "lenet5", "--dataset", "mnist", "--num-classes", "2000000000"],
        {},
        "a tensor of shape [84, 2000000000]. Received: input_shape=(28, 28, 1), num_classes=2000000000",
    ),
    "input too small": (["train", "vgg11", "--dataset", "mnist", "--input-shape", "16", "16", "1"], {}, "at least 32"),
    "corrupt npz": (["train", "lenet5", "--dataset", "fashion_mnist"], {"data": True}, "fashion_mnist.npz"),
    "wrong-layout npz": (["train", "lenet5", "--dataset", "cifar100"], {"data": True}, "lacks x_test, y_test"),
    "images cannot feed model": (
        ["train", "lenet5", "--dataset", "cifar10", "--input-shape", "32", "32", "1"],
        {"data": True},
        "cannot feed a model with 1 input channel",
    ),
    "tracking uri scheme": ([*T, "--tracking-uri", "ftp://host/store"], {}, "unsupported scheme 'ftp'"),
    "tracking uri is a folder": ([*T, "--tracking-uri", "sqlite:///data"], {"data": True}, "names a folder"),
    "tracking store corrupt": (
        [*T, "--tracking-uri", "sqlite:///notes.txt"],
        {"notes": True},
        "Cannot open the MLflow store",
    ),
    "file store in env": (T, {"env": {"MLFLOW_TRACKING_URI": "./mlruns"}}, "Received: MLFLOW_TRACKING_URI='./mlruns'"),
    "data dir env": (T, {"env": {"KERASCNN_DATA_DIR": "/no/such/dir"}}, "Received: KERASCNN_DATA_DIR='/no/such/dir'"),
    "strategy without TF_CONFIG": ([*T, "--strategy", "multiworker"], {}, "needs TF_CONFIG"),
    "bad TF_CONFIG": (
        [*T, "--strategy", "multiworker"],
        {"env": {"TF_CONFIG": "{not json"}},
        "Received: TF_CONFIG='{not json'",
    ),
    "bad tuner port env": (
        ["tune", "mnist_cnn", "--dataset", "mnist", "--train-samples", "100"],
        {"env": {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "http"}},
        "Received: KERASTUNER_ORACLE_PORT='http'",
    ),
    "tuner port without its address": (
        ["tune", "mnist_cnn", "--dataset", "mnist", "--train-samples", "100"],
        {"env": {"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_PORT": "8000"}},
        "Received: KERASTUNER_ORACLE_IP=None",
    ),
    "nothing to resume": ([*T, "--resume"], {}, "Nothing to resume"),
    "resume without tracking": ([*T, "--resume", "--no-tracking"], {}, "Received: tracking=False"),
    "resume id not hex": ([*T, "--resume", "abc"], {}, "(4-32 hex digits). Received: resume='abc'"),
    "experiment without tracking": (
        [*T, "--experiment", "digits", "--no-tracking"],
        {},
        "Received: experiment='digits', tracking=False",
    ),
    "missing model file": (["evaluate", "nope.keras", "--dataset", "mnist"], {}, "Model file not found"),
    "lambda model refused": (
        ["evaluate", "lambda.keras", "--dataset", "mnist"],
        {"lambda": True},
        "contains a Lambda layer",
    ),
    "h5 model refused": (["evaluate", "model.h5", "--dataset", "mnist"], {"h5": True}, "Legacy HDF5"),
    "model without one fixed-size image input": (  # (it was a traceback: int(None))
        ["export", "dynamic.keras", "--format", "tflite", "--output", "d.tflite"],
        {"dynamic": True},
        "The model takes input of shape (None, None, None, 3); kerascnn feeds one input of images of a fixed",
    ),
    "runs limit": (["runs", "--limit", "0"], {}, "Received: limit=0"),
    "builder options for a saved file": (
        ["describe", "model.h5", "--num-classes", "5"],
        {},
        "apply to model names, not saved files. Received: name='model.h5'",
    ),
    "dashboard host not here": (["ui", "--host", "999.1.1.1"], {}, "not an address of this machine"),
    "search folder is a file": (
        ["tune", "lenet5", "--dataset", "mnist", "--directory", "notes.txt"],
        {"notes": True},
        "`directory` is a file, not a folder. Received: directory='notes.txt'",
    ),
    "export through a file": (  # refused before the conversion, not after it
        ["export", "nope.keras", "--format", "tflite", "--output", "notes.txt/m.tflite"],
        {"notes": True},
        "`output` goes through a file (notes.txt). Received: output='notes.txt/m.tflite'",
    ),
    "rgb image folder for a grey model": (  # found after TensorFlow read the images: its start-up lines stay hidden
        ["train", "mnist_cnn", "--dataset", "photos", "--input-shape", "28", "28", "1"],
        {"photos": True},
        "Received: input_shape=(28, 28, 1)",
    ),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_bad_input_catalogue_cli(case, tmp_path, bad_data):
    args, setup, fragment = CLI_CASES[case]
    env = dict(setup.get("env", {}))
    if setup.get("data"):
        env.setdefault("KERASCNN_DATA_DIR", str(bad_data))
    if setup.get("notes"):
        (tmp_path / "notes.txt").write_text("not a database\n")
    if setup.get("lambda"):
        _lambda_model(tmp_path / "lambda.keras")
    if setup.get("h5"):
        (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n")
    if setup.get("dynamic"):
        images = keras.Input((None, None, 3))
        keras.Model(images, keras.layers.GlobalAveragePooling2D()(images)).save(tmp_path / "dynamic.keras")
    if setup.get("photos"):
        for i in range(10):
            (tmp_path / "photos" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
            image = np.random.default_rng(i).integers(0, 255, (20, 24, 3), dtype=np.uint8)
            keras.utils.save_img(tmp_path / "photos" / "ab"[i % 2] / f"{i}.png", image, scale=False)
        if setup.get("corrupt"):
            (tmp_path / "photos" / "b" / "3.png").write_bytes(b"GIF89a, cut short")
    before = set(tmp_path.rglob("*"))
    result = run_cli(*args, cwd=tmp_path, env=env)
    assert_usage_error(result, fragment)
    left = set(tmp_path.rglob("*")) - before
    assert not left, f"files left behind: {sorted(map(str, left))}"
    assert not all_runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


API_CASES = [
    (lambda: kerascnn.create_model("vgg16", input_shape=(224, 224)), "Received: input_shape=(224, 224)"),
    (lambda: kerascnn.create_model("resnet50", num_classes=0), "Received: num_classes=0"),
    (lambda: kerascnn.train("mnist_cnn", "mnist", epochs=-1), "Received: epochs=-1"),
    (lambda: kerascnn.train("mnist_cnn", "mnist", seed=-3), "Received: seed=-3"),
    (lambda: kerascnn.train(resume="abcd1234"), "No run with this id in sqlite:"),  # (no store yet)
    (lambda: kerascnn.train("mnist_cnn", "mnist", experiment=""), "Received: experiment=''"),
    (lambda: kerascnn.train("mnist_cnn", "mnist", jit="yes"), "Received: jit='yes'"),
    (lambda: kerascnn.train("mnist_cnn", "mnist", verbose="loud"), "Received: verbose='loud'"),
    (lambda: kerascnn.train("mnist_cnn", "mnist", callbacks=3), "Received: callbacks=3"),
    (lambda: kerascnn.train("mnist_cnn", "mnist", callbacks=["x"]), "Received: callbacks=['x']"),
    (lambda: kerascnn.train("mnist_cnn", "mnist", callbacks=[keras.callbacks.History]), "Received: callbacks=[<class"),
    (lambda: kerascnn.train("mnist_cnn", "mnist", verbose=True), "Received: verbose=True"),
    (lambda: kerascnn.tune("mnist_cnn", "mnist", progress="no"), "Received: progress='no'"),
    (lambda: kerascnn.tune("resnet", "mnist", tuner="grid", max_trials=0), "Received: max_trials=0"),
    (lambda: kerascnn.tune(build=42, dataset="mnist"), "Received: build=42"),
    (lambda: kerascnn.tune("vgg19", "mnist", fixed={"depth": 11}), "`vgg19` sets `depth` itself (depth=19)"),
    (lambda: kerascnn.tune("vgg", "mnist", objective="accuracy"), "Received: objective='accuracy'"),
    (lambda: kerascnn.tune("vgg", "mnist", validation_split=0), "in (0, 1): the objective is measured on it. Received"),
    (lambda: kerascnn.tune("vgg", "mnist", validation_split=1), "in (0, 1): the objective is measured on it. Received"),
    (lambda: kerascnn.load_dataset("mnist", test_samples=-1), "Received: test_samples=-1"),
    (lambda: kerascnn.load_dataset("mnist", seed=-1), "Received: seed=-1"),
    (lambda: kerascnn.load_dataset("mnist", seed=1.5), "Received: seed=1.5"),
    (lambda: kerascnn.load_model("missing.keras"), "Received: path='missing.keras'"),
    (lambda: kerascnn.load_model(None), "`path` must be the path of a .keras file. Received: path=None"),
    (lambda: kerascnn.load_model("m.keras", compile="no"), "Received: compile='no'"),
    (
        lambda: kerascnn.search_runs(run_ids="f36af4ca"),
        "`run_ids` must be a list of strings. Received: run_ids='f36af4ca'",
    ),
    (lambda: kerascnn.leaderboard(run_ids="f36af4ca"), "Received: run_ids='f36af4ca'"),
    (lambda: kerascnn.compare(run_ids="f36af4ca"), "Received: run_ids='f36af4ca'"),
    (lambda: kerascnn.search_runs(include_trials="x"), "Received: include_trials='x'"),
    (lambda: kerascnn.export("m.keras", "tflite", "m.tflite", overwrite="no"), "Received: overwrite='no'"),
    (lambda: kerascnn.evaluate("c666", "mnist", test_samples=0), "Received: test_samples=0"),  # before the model
    (lambda: kerascnn.convert_torchvision("resnet18", None), "Received: state_dict=None"),
    (lambda: kerascnn.leaderboard("no-such-experiment"), "Received: experiment='no-such-experiment'"),
]


@pytest.mark.parametrize("index", range(len(API_CASES)))
def test_bad_input_catalogue_api(index, tmp_path):
    call, fragment = API_CASES[index]
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert not list(tmp_path.rglob("*.keras")) and not all_runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


# 7. Safe model loading --------------------------------------------------------------------------------


def test_lambda_models_load_only_when_asked_to_be_unsafe(tmp_path):
    path = _lambda_model(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match=r"Lambda layer.*unsafe=True"):
        kerascnn.load_model(path)
    model = kerascnn.load_model(path, unsafe=True)
    assert model.get_layer("double") is not None
    for call in (kerascnn.predict, kerascnn.evaluate):  # a safety switch is not turned on by any true value
        with pytest.raises(ValueError, match=r"^`unsafe` must be True or False\. Received: unsafe='no'$"):
            call(path, np.zeros((1, 28, 28), np.uint8) if call is kerascnn.predict else "mnist", unsafe="no")
    result = run_cli(
        "evaluate", str(path), "--dataset", "mnist", "--test-samples", "50", "--unsafe", "--json", check=True
    )
    assert json.loads(result.stdout)["test_size"] == 50
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(ValueError, match="Legacy HDF5"):
        kerascnn.load_model(tmp_path / "weights.h5")
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(ValueError, match=r"corrupt|Cannot load"):
        kerascnn.load_model(tmp_path / "broken.keras")


def test_evaluating_colour_images_with_a_grey_model_names_the_dataset(tmp_path):
    grey = keras.Sequential([keras.Input((20, 20, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    for i in range(4):
        (tmp_path / "photos" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        image = np.random.default_rng(i).integers(0, 255, (20, 20, 3), dtype=np.uint8)
        keras.utils.save_img(tmp_path / "photos" / "ab"[i % 2] / f"{i}.png", image, scale=False)
    folder = str(tmp_path / "photos")
    with pytest.raises(ValueError, match=rf"3 channel\(s\) cannot feed a model with 1 .*Received: dataset='{folder}'$"):
        kerascnn.evaluate(grey, folder)


def test_a_model_with_an_unregistered_custom_layer_is_refused_in_one_line(tmp_path):
    class Doubler(keras.layers.Layer):  # not registered with keras.saving.register_keras_serializable
        def call(self, x):
            return x * 2.0

    keras.Sequential([keras.Input((28, 28, 1)), Doubler(), keras.layers.Flatten(), keras.layers.Dense(10)]).save(
        tmp_path / "custom.keras"
    )
    with pytest.raises(ValueError, match=r"custom class \('Doubler'\) that is not registered.*Received: path=.*'$"):
        kerascnn.load_model(tmp_path / "custom.keras")


def test_a_trained_model_reloads_safely_and_evaluates(tracking_uri):
    result = kerascnn.train(
        "lenet5", "mnist", epochs=1, train_samples=500, test_samples=200, tracking_uri=tracking_uri, verbose=0
    )
    metrics = kerascnn.evaluate(result.model_path, "mnist", test_samples=200)
    assert metrics["test_accuracy"] == pytest.approx(result.test_accuracy, abs=1e-6)
    assert metrics["adaptation"] == "none"  # LeNet-5 accepts 28x28 as is (its minimum is 16)
    assert kerascnn.evaluate(result.model_path, test_samples=200) == metrics  # on the dataset it was trained on
    assert metrics["dataset"] == "mnist"
    with pytest.raises(ValueError, match=r"^`dataset` is needed: the model does not record .*Received: dataset=None$"):
        kerascnn.evaluate(kerascnn.create_model("lenet5"))
