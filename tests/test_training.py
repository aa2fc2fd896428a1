"""Tracked training end to end: a real Keras fit on MNIST subsets into a real MLflow store."""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import kerascnn
from kerascnn.models import create_model
from kerascnn.tracking.run import last_outcome
from kerascnn.training import TrainingFailed, _check_callbacks
from tests.helpers import (
    assert_usage_error,
    module_for_children,
    run_cli,
    run_cli_in_terminal,
    shown_lines,
)

TINY = dict(train_samples=600, test_samples=300)


pytestmark = pytest.mark.usefixtures("in_a_scratch_folder")


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_train_logs_params_metrics_artifacts_and_model(tracking_uri, monkeypatch):
    result = kerascnn.train(
        "mnist_cnn",
        "mnist",
        epochs=2,
        tracking_uri=tracking_uri,
        experiment="exp1",
        run_name="tiny",
        seed=1,
        verbose=0,
        **TINY,
    )
    assert 0.1 < result.test_accuracy <= 1 and result.test_loss > 0 and result.epochs == 2
    shown = repr(result)  # what a notebook shows: the outcome, not every epoch's metrics nor every param
    assert shown.startswith(f"TrainResult(run_id={result.run_id!r}") and "history" not in shown and len(shown) < 600
    client = MlflowClient(tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.end_time
    assert run.info.run_name == "tiny"
    assert client.get_experiment(run.info.experiment_id).name == "exp1"
    params = run.data.params
    assert params["model"] == "mnist_cnn" and params["dataset"] == "mnist"
    assert (params["train_size"], params["val_size"], params["test_size"]) == ("540", "60", "300")
    assert params["input_shape"] == "[28, 28, 1]" and params["adaptation"] == "none"
    for key in ("optimizer", "learning_rate", "schedule", "batch_size", "epochs", "seed", "precision", "jit_compile"):
        assert key in params, key
    assert params["epochs"] == "2" and params["seed"] == "1"
    native = kerascnn.device.machine().native_bfloat16  # "auto": bf16 only where the CPU does it natively
    assert params["precision"] == "auto" and params["dtype_policy"] == ("mixed_bfloat16" if native else "float32")
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        history = client.get_metric_history(result.run_id, metric)
        assert [m.step for m in history] == [0, 1], metric
    lrs = [m.value for m in client.get_metric_history(result.run_id, "learning_rate")]
    assert lrs[1] < lrs[0]  # the cosine schedule decays
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
    assert "best_val_accuracy" in run.data.metrics
    tags = run.data.tags
    assert tags["kerascnn.family"] == "mnist_cnn" and tags["kerascnn.device"] == "CPU"
    assert tags["kerascnn.cpu_flags"] == " ".join(sorted(kerascnn.device.machine().cpu_flags))
    assert tags.get("kerascnn.onednn") == {True: "on", False: "off", None: None}[kerascnn.device.machine().onednn]
    assert tags["kerascnn.why.onednn"] == kerascnn.device.machine().onednn_why
    assert tags["kerascnn.why.precision"] == kerascnn.hardware.plan(kerascnn.device.machine()).reasons["precision"]
    assert ("natively" in tags["kerascnn.why.precision"]) is native and tags["kerascnn.why.jit"].startswith("auto")
    assert tags["kerascnn.why.strategy"] == kerascnn.hardware.auto_strategy(kerascnn.device.machine())[1]
    assert tags["keras.version"].startswith("3.") and tags["tensorflow.version"] and tags["kerascnn.version"]
    assert _artifacts(client, result.run_id) >= {
        "model.keras",
        "describe.txt",
        "describe.json",
        "confusion_matrix.csv",
        "plots/training_curves.png",
        "plots/confusion_matrix.png",
    }
    assert Path(result.model_path).is_file() and Path(tracking_uri[10:]).parent in Path(result.model_path).parents
    rows = Path(result.model_path).with_name("confusion_matrix.csv").read_text().splitlines()
    assert rows[0] == "true \\ predicted," + ",".join(map(str, range(10)))  # labelled with the class names
    cm = np.array([[int(v) for v in row.split(",")[1:]] for row in rows[1:]])
    assert cm.shape == (10, 10) and cm.sum() == 300 and [row.split(",")[0] for row in rows[1:]] == list("0123456789")
    assert np.trace(cm) / cm.sum() == pytest.approx(result.test_accuracy)
    # the model also as an MLflow Keras model with a signature
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # (MLflow's fluent API; undone after the test)
    logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert len(logged) == 1 and logged[0].source_run_id == result.run_id
    info = mlflow.models.get_model_info(logged[0].model_uri)
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 28, 28, 1]
    reloaded = mlflow.keras.load_model(logged[0].model_uri)  # takes raw uint8 images, as the dataset has them
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    expected = result.model.predict(x.astype(np.float32) / 255, verbose=0)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("classes, cells_written, axes", [(10, 100, 1), (40, 0, 2)])
def test_the_confusion_matrix_writes_its_cells_or_has_a_colour_bar(classes, cells_written, axes):
    from kerascnn.tracking.plots import confusion_matrix

    labels = np.arange(400) % classes
    cm, figure = confusion_matrix(labels, (labels + (labels == 0)) % classes, [f"class {i}" for i in range(classes)])
    assert cm.sum() == 400 and cm[0, 1] == 400 // classes and np.trace(cm) == 400 - 400 // classes
    assert len(figure.axes) == axes  # the image, and a colour bar where the cells carry no numbers
    assert len(figure.axes[0].texts) == cells_written


def test_untracked_training_creates_no_run_and_calls_the_users_callbacks(tracking_uri, tmp_path, capsys):
    epochs: list[int] = []
    counting = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: epochs.append(e))
    mine = keras.callbacks.CallbackList([counting], add_history=True, add_progbar=True)
    assert _check_callbacks(mine) == [counting]  # the list's own History and bar: fit adds the kit's
    result = kerascnn.train(
        "lenet5", "mnist", epochs=1, tracking=False, verbose=0, callbacks=mine, run_name="../a/b c",
        schedule="constant", warmup_epochs=0.5, **TINY,
    )  # fmt: skip
    assert epochs == [0]
    warned = "kerascnn: warning: warmup_epochs applies to the cosine schedule; this run's is constant\n"
    assert warned in capsys.readouterr().err
    assert result.run_id is None and result.tracking_uri is None
    np.random.seed(7), random.seed(7)
    kerascnn.train("lenet5", "mnist", epochs=1, tracking=False, verbose=0, deterministic=True, **TINY)
    assert "warm" not in capsys.readouterr().err  # the recipe's 0.3-epoch warm-up, within the run
    from tensorflow.python.framework import config  # (TF's only way to ask)

    assert np.random.rand() == np.random.RandomState(7).rand() and random.random() == random.Random(7).random()
    assert not config.is_op_determinism_enabled()  # a notebook's generators and determinism as they were
    saved = Path(result.model_path)
    assert saved.is_file() and saved.suffix == ".keras" and saved.name.startswith("a_b_c-")
    assert saved.parent == (tmp_path / "mlruns" / "untracked").resolve()  # the name cannot leave the folder
    assert not Path(tracking_uri[10:]).exists()


@pytest.mark.parametrize(
    "settings,given,said",
    [
        (dict(schedule="cosine", warmup_epochs=1.0, epochs=1), False, "the warm-up (1 epoch) lasts the whole run (1 e"),
        (dict(schedule="cosine", warmup_epochs=3.0, epochs=2), True, "the warm-up (3 epochs) lasts the whole run (2"),
        (dict(schedule="cosine", warmup_epochs=0.3, epochs=1), True, None),
        (dict(schedule="constant", warmup_epochs=1.0, epochs=3), False, None),  # the recipe's, for its cosine
        (dict(schedule="constant", warmup_epochs=0.0, epochs=3), True, None),
    ],
)
def test_a_schedule_that_will_not_do_what_its_settings_read_is_warned_about(settings, given, said):
    from kerascnn.recipes import Recipe, schedule_warnings

    warnings = schedule_warnings(Recipe().replace(**settings), warmup_given=given)
    assert warnings == [] if said is None else len(warnings) == 1 and warnings[0].startswith(said), warnings


def test_untracked_models_of_one_name_in_one_second_keep_their_own_files(tmp_path):
    from kerascnn.training import _untracked_file

    files = [_untracked_file("same") for _ in range(3)]
    assert len(set(files)) == 3 and all(f.is_file() and f.parent == Path("mlruns/untracked") for f in files)
    assert _untracked_file("x" * 300).name.startswith("x" * 100 + "-")  # (a file name has at most 255 bytes)


def test_an_untracked_run_whose_model_could_not_be_saved_is_refused_before_training(tmp_path):
    (tmp_path / "mlruns").write_text("")  # a file where the folder must be
    with pytest.raises(
        ValueError, match=r"saves its model in mlruns/untracked, which cannot be made .*tracking=False$"
    ):
        kerascnn.train("lenet5", "mnist", tracking=False, verbose=0, **TINY)


def test_a_system_metrics_sampler_that_cannot_start_costs_only_the_system_metrics(
    tracking_uri, tmp_path, monkeypatch, capfd
):
    """Without psutil (MLflow's sampler needs it and does not install it) the run is still written
    to the store, not spooled; one warning says why it has no ``system/...`` metrics."""
    module_for_children(
        monkeypatch, tmp_path / "no_psutil", "psutil", "raise ImportError(\"No module named 'psutil'\")\n"
    )
    result = kerascnn.train("mnist_cnn", "mnist", epochs=1, tracking_uri=tracking_uri, verbose=0, **TINY)
    run = MlflowClient(tracking_uri).get_run(result.run_id)
    assert result.spool is None and run.info.status == "FINISHED"
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("kerascnn: warning")]
    assert len(warnings) == 1 and "no system metrics" in warnings[0] and "psutil" in warnings[0], warnings


def test_a_resumed_run_reports_every_epoch_and_registers_as_first_asked(tracking_uri):
    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:  # epochs 1 and 2 are logged and backed up
                raise KeyboardInterrupt

    common = dict(epochs=3, train_samples=300, test_samples=100, precision="float32", tracking_uri=tracking_uri)
    with pytest.raises(KeyboardInterrupt) as stopped:
        kerascnn.train("lenet5", "mnist", register_model="digits", alias="champion", callbacks=[Stop()], **common)
    call = "kerascnn.train(resume=True, tracking_uri=tracking_uri, verbose=0)"  # no other flag
    if sys.version_info >= (3, 11):  # the traceback's note says how to continue, as the CLI's line does
        (note,) = stopped.value.__notes__
        assert re.fullmatch(r"kerascnn: run [0-9a-f]{32} ended FAILED; kerascnn\.train\(.*\) continues it", note)
        call = note.split("; ")[1].removesuffix(" continues it")
    resumed = eval(call, {"kerascnn": kerascnn, "tracking_uri": tracking_uri})
    assert [len(v) for v in resumed.history.values()] == [3] * len(resumed.history)  # from the first epoch
    c = MlflowClient(tracking_uri)
    run = c.get_run(resumed.run_id)
    assert [m.value for m in c.get_metric_history(run.info.run_id, "loss")] == resumed.history["loss"]
    assert run.data.metrics["best_val_accuracy"] == max(resumed.history["val_accuracy"])
    one_epoch = 270 / run.data.metrics["fit_seconds"]  # this session trained one epoch of 270 images
    assert run.data.metrics["train_images_per_second"] == pytest.approx(one_epoch)
    assert c.get_model_version_by_alias("digits", "champion").run_id == run.info.run_id


def test_a_ctrl_c_that_something_swallowed_still_stops_training_at_the_epochs_end(tracking_uri):
    """Python ignores an exception raised inside a weakref callback or ``__del__`` ("Exception
    ignored in ..."): a Ctrl-C landing there must not be lost."""
    import signal
    import time

    class Swallow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if not getattr(self, "sent", False):
                self.sent = True
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(1)  # the handler runs here
                except KeyboardInterrupt:
                    pass  # as in a weakref callback

    with pytest.raises(KeyboardInterrupt):
        kerascnn.train("lenet5", "mnist", epochs=3, callbacks=[Swallow()], tracking_uri=tracking_uri, verbose=0, **TINY)
    (run,) = MlflowClient(tracking_uri).search_runs(
        [MlflowClient(tracking_uri).get_experiment_by_name("kerascnn").experiment_id]
    )
    assert run.info.status == "FAILED" and run.data.tags["kerascnn.failure"].startswith("KeyboardInterrupt")
    assert [m.step for m in MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "loss")] == [
        0
    ]  # epoch 1 kept


def test_nan_loss_fails_the_run_with_the_reason(tracking_uri):
    with pytest.raises(TrainingFailed, match=r"loss became (nan|inf)"):  # (the CPU's arithmetic picks)
        kerascnn.train(
            "mnist_cnn",
            "mnist",
            epochs=2,
            optimizer="sgd",
            learning_rate=1e12,
            schedule="constant",
            tracking_uri=tracking_uri,
            verbose=0,
            **TINY,
        )
    run = MlflowClient(tracking_uri).get_run(last_outcome().run_id)
    assert run.info.status == "FAILED" and run.info.end_time
    assert re.search("loss became (nan|inf)", run.data.tags["kerascnn.failure"])


def test_bad_arguments_raise_before_any_run(tracking_uri, monkeypatch):
    for kwargs, match in [
        (dict(epochs=0), "Received: epochs=0"),
        (dict(batch_size=-8), "Received: batch_size=-8"),
        (dict(learning_rate=0.0), "Received: learning_rate=0.0"),
        (dict(optimizer="adagrad"), "Received: optimizer='adagrad'"),
        (dict(optimizer=["adam"]), r"must be one of 'adam', .*Received: optimizer=\['adam'\]"),  # (not unhashable)
        (dict(input_shape=(2**31, 2**31, 1)), r"`input_shape` must hold integers up to 2147483647"),
        (dict(num_classes=2**70), r"`num_classes` must be an integer from 2 to 2147483647"),
        (
            dict(jit=True, deterministic=True),
            r"`jit` cannot go with `deterministic`.*Received: jit=True, deterministic",
        ),
        (dict(train_samples=0), "Received: train_samples=0"),
        (dict(num_classes=5), "smaller than the 10 classes"),
        (dict(input_shape=(28, 28, 3), model_kwargs={"filters": 0}), "Received: filters=0"),
        (dict(resume=True, tracking=False), "Received: tracking=False"),
    ]:
        with pytest.raises(kerascnn.ArgumentError, match=match):  # (a ValueError: the public type to catch)
            kerascnn.train("mnist_cnn", "mnist", tracking_uri=tracking_uri, verbose=0, **dict(TINY, **kwargs))
    assert issubclass(kerascnn.ArgumentError, ValueError)
    logged_so = kerascnn.TrainConfig.create(jit=True, deterministic=True, resume="0123abcd", tracking_uri=tracking_uri)
    assert logged_so.jit is True  # (a run logged with both, before they were refused together, still resumes)
    with (
        monkeypatch.context() as m,
        pytest.raises(ValueError, match=r"store's folder cannot be created or written \(/"),
    ):
        m.setattr(os, "access", lambda *args, **kwargs: True)  # as it answers root, even for /proc
        kerascnn.train("mnist_cnn", "mnist", tracking_uri="sqlite:////proc/nope/mlflow.db", verbose=0, **TINY)
    db = Path(tracking_uri[10:])
    assert not db.exists() or not MlflowClient(tracking_uri).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri).search_experiments()]
    )


def test_on_a_terminal_the_time_estimate_has_its_own_line_beside_the_progress_bar(tmp_path):
    code, raw = run_cli_in_terminal(
        "train", "mnist_cnn", "--dataset", "mnist", "--epochs", "2", "--no-tracking", "--precision", "float32",
        "--train-samples", "1200", "--test-samples", "200", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert code == 0, raw[-2000:]
    shown = shown_lines(raw)
    notes = [line for line in shown if re.search(r"ms/step: (about \d+ s|under a second) left for", line)]
    assert len(notes) == 1 and notes[0].startswith("kerascnn: "), notes  # not glued to a half-drawn bar
    assert sum(line.startswith("Epoch ") for line in shown) == 2 and any("val_accuracy" in line for line in shown)


@pytest.mark.parametrize("no_color", ["", "1"])
def test_the_progress_bar_has_colour_unless_no_color_is_set(capsys, monkeypatch, no_color):
    from kerascnn.callbacks import Progress

    monkeypatch.setenv("NO_COLOR", no_color)  # (https://no-color.org: set and not empty)
    net = create_model("lenet5", input_shape=(28, 28, 1), num_classes=10)
    net.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.zeros((16, 28, 28, 1), np.float32), np.zeros(16, np.int64)
    net.fit(x, y, batch_size=8, epochs=1, verbose=1, callbacks=[Progress()])
    out = capsys.readouterr().out
    assert "2/2" in out and "accuracy:" in out
    assert ("\x1b[" in out) == (not no_color), out  # (Keras' own bar: bold, green and grey)
    assert ("1/2 " + "━" * 10 + "─" * 10 + " " in out) == bool(no_color), out  # the steps to go: thin


@pytest.mark.parametrize("first_s,then_s,after_s,bound_ms", [(1.0, 0.03, 15.0, 100), (1.5, 0.3, 0.5, 500)])
def test_the_time_estimate_leaves_out_the_first_steps_one_time_cost(capsys, first_s, then_s, after_s, bound_ms):
    """A first step that takes seconds (as tracing and compiling can), even past ``after_s``, is not
    spread over the rest."""
    from kerascnn.callbacks import TimeEstimate

    class SlowFirstStep(keras.callbacks.Callback):  # then a few tens of ms a step: the watcher sees them go by
        def on_train_batch_begin(self, batch, logs=None):
            time.sleep(first_s if batch == 0 and self.model.optimizer.iterations.numpy() == 0 else then_s)

    net = create_model("lenet5", input_shape=(28, 28, 1), num_classes=10)
    net.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.zeros((64, 28, 28, 1), np.float32), np.zeros(64, np.int64)
    net.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[SlowFirstStep(), TimeEstimate(8, 2, after_s)])
    (said,) = [line for line in capsys.readouterr().err.splitlines() if "ms/step" in line]
    per_step = float(said.split("kerascnn: ")[1].split(" ms/step")[0])
    assert per_step < bound_ms and said.endswith(" more steps"), said  # the first step spread: 150+, 1500+


def test_cli_adapts_mnist_for_vgg11_and_prints_json(tracking_uri, tmp_path, monkeypatch):
    result = run_cli(
        "train",
        "vgg11",
        "--dataset",
        "mnist",
        "--epochs",
        "1",
        "--train-samples",
        "256",
        "--test-samples",
        "128",
        "-o",
        "width=4",
        "-o",
        "dense_units=(16,)",
        "--tracking-uri",
        tracking_uri,
        "--json",
        check=True,
    )
    assert "pad 28x28 -> 32x32" in result.stderr
    out = json.loads(result.stdout)  # stdout is exactly one JSON document; all else went to stderr
    assert set(out) == {
        *("run_id", "experiment", "test_accuracy", "best_val_accuracy", "test_loss", "epochs", "tracking_uri"),
        *("model_path", "registered_model"),
    }
    assert out["registered_model"] is None  # (no --register-model: null, the key kept for readers of the JSON)
    assert out["tracking_uri"] == tracking_uri and out["epochs"] == 1
    logged = MlflowClient(tracking_uri).get_run(out["run_id"]).data.metrics["best_val_accuracy"]
    assert out["best_val_accuracy"] == pytest.approx(logged)
    params = MlflowClient(tracking_uri).get_run(out["run_id"]).data.params
    assert params["adaptation"] == "pad 28x28 -> 32x32" and params["input_shape"] == "[32, 32, 1]"
    assert json.loads(params["model_kwargs"]) == {"dense_units": [16], "width": 4}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # (MLflow's fluent API; undone after the test)
    (logged,) = mlflow.search_logged_models(
        output_format="list", experiment_ids=[MlflowClient(tracking_uri).get_run(out["run_id"]).info.experiment_id]
    )
    signature = mlflow.models.get_model_info(logged.model_uri).signature
    spec = signature.inputs.to_dict()[0]["tensor-spec"]  # raw images: the served model pads them itself
    assert list(spec["shape"]) == [-1, 28, 28, 1] and spec["dtype"] == "uint8"
    assert "/step - accuracy:" in result.stderr and "\x1b[" not in result.stderr  # Keras' per-epoch line, no ANSI


def test_leaderboard_sorts_by_test_accuracy(tracking_uri):
    good = kerascnn.train("mnist_cnn", "mnist", epochs=2, tracking_uri=tracking_uri, verbose=0, **TINY)
    poor = kerascnn.train(
        "mnist_cnn",
        "mnist",
        epochs=1,
        learning_rate=1e-5,
        schedule="constant",
        tracking_uri=tracking_uri,
        verbose=0,
        **TINY,
    )
    assert good.test_accuracy > poor.test_accuracy
    result = run_cli("runs", "--tracking-uri", tracking_uri, "--json", check=True)
    rows = json.loads(result.stdout)
    assert [r["run_id"] for r in rows] == [good.run_id, poor.run_id]
    first = rows[0]
    assert first["model"] == "mnist_cnn" and first["dataset"] == "mnist" and first["status"] == "FINISHED"
    assert first["params"]["epochs"] == "2" and first["best_val_accuracy"] > 0 and first["duration_s"] > 0
    table = run_cli("runs", "--tracking-uri", tracking_uri, "--experiment", "kerascnn", check=True).stdout
    assert good.run_id[:12] in table.splitlines()[1] and "test_acc" in table.splitlines()[0]
    assert_usage_error(
        run_cli("runs", "--tracking-uri", tracking_uri, "--experiment", "nope"), "Received: experiment='nope'"
    )


def test_deterministic_runs_repeat_exactly(tmp_path):
    def run(seed: int) -> dict:
        result = run_cli(
            "train",
            "mnist_cnn",
            "--dataset",
            "mnist",
            "--epochs",
            "1",
            "--train-samples",
            "400",
            "--test-samples",
            "200",
            "--seed",
            str(seed),
            "--deterministic",
            "--augment",
            "--no-tracking",
            "--json",
            cwd=tmp_path,
            check=True,
        )
        assert "E0000" not in result.stderr, result.stderr  # (TensorFlow's line on a parallel map made serial)
        return json.loads(result.stdout.strip().splitlines()[-1])

    first, second, other = run(7), run(7), run(8)
    assert (first["test_loss"], first["test_accuracy"]) == (second["test_loss"], second["test_accuracy"])
    assert other["test_loss"] != first["test_loss"]


def test_a_run_samples_system_metrics_unless_told_not_to(tracking_uri):
    """MLflow's sampler logs ``system/...`` metrics beside the training (its own interval variable
    honoured); ``--no-system-metrics`` turns it off."""
    env = {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.2"}  # (10 s by default: longer than this run)
    tiny = ("train", "lenet5", "--dataset", "mnist", "--epochs", "1", "--train-samples", "200", "--test-samples", "100")
    sampled = json.loads(run_cli(*tiny, "--tracking-uri", tracking_uri, "--json", env=env, check=True).stdout)
    quiet = run_cli(*tiny, "--no-system-metrics", "--tracking-uri", tracking_uri, "--json", env=env, check=True)
    client = MlflowClient(tracking_uri)
    metrics = {
        run_id: {key for key in client.get_run(run_id).data.metrics if key.startswith("system/")}
        for run_id in (sampled["run_id"], json.loads(quiet.stdout)["run_id"])
    }
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= metrics[sampled["run_id"]]
    assert metrics[json.loads(quiet.stdout)["run_id"]] == set()


def test_a_run_compiled_with_xla_trains_and_says_so(tracking_uri):
    """``jit=True`` (``--jit``) on any device: XLA compiles the steps; the run logs it."""
    result = kerascnn.train("lenet5", "mnist", epochs=1, jit=True, tracking_uri=tracking_uri, verbose=0, **TINY)
    assert result.model.jit_compile is True and np.isfinite(result.test_loss)
    params = MlflowClient(tracking_uri).get_run(result.run_id).data.params
    assert params["jit_compile"] == "True" and params["jit"] == "True"
