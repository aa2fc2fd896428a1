"""Everyday use without surprises: settings that never mix, quiet fast commands, clean JSON,
class names that travel with models, honest defaults."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import psutil
import pytest
from IPython.lib.pretty import pretty
from PIL import Image

import kerascnn
from kerascnn.config import TrainConfig, TuneConfig
from kerascnn.models import recipe_for
from kerascnn.tracking import store
from tests.helpers import PY, all_runs, assert_usage_error, data_dir, free_port, run_cli, run_cli_in_terminal, wait_for

pytestmark = pytest.mark.usefixtures("in_a_scratch_folder")


# 1. a search never mixes settings -----------------------------------------------------------------
def test_a_search_is_resumed_only_with_its_own_settings(tracking_uri, tmp_path):
    common = dict(max_trials=1, train_samples=300, tracking_uri=tracking_uri, directory=tmp_path / "s", progress=False)
    kerascnn.tune("lenet5", "mnist", epochs=1, **common)
    with pytest.raises(ValueError, match=r"other settings \(epochs: 1 -> 2\).*--search-name.*Received: search_name="):
        kerascnn.tune("lenet5", "mnist", epochs=2, **common)
    other = kerascnn.tune("lenet5", "mnist", epochs=2, search_name="lenet-e2", **common)
    assert other.search_name == "lenet-e2" and len(other.trials) == 1
    more = kerascnn.tune("lenet5", "mnist", epochs=1, **dict(common, max_trials=2))  # a bigger budget is fine
    assert len(more.trials) == 2
    batch = recipe_for("lenet5").batch_size  # given now as the recipe gave it then: the same search
    assert len(kerascnn.tune("lenet5", "mnist", epochs=1, batch_size=batch, **dict(common, max_trials=2)).trials) == 2
    with pytest.raises(ValueError, match=rf"other settings \(batch_size: {batch} -> {batch // 2}\)"):
        kerascnn.tune("lenet5", "mnist", epochs=1, batch_size=batch // 2, **dict(common, max_trials=2))
    with pytest.raises(ValueError, match=r"per-epoch `val_accuracy`; a search's per-epoch curves are on its trials"):
        kerascnn.compare(tracking_uri=tracking_uri)  # the store holds searches only
    with pytest.raises(ValueError, match=r"other settings \(experiment: kerascnn -> digits\)"):
        kerascnn.tune("lenet5", "mnist", epochs=1, experiment="digits", **common)  # its parent run is elsewhere
    with pytest.raises(ValueError, match=r"other settings \(tracking_uri: sqlite:.* -> sqlite:.*other.db\)"):
        kerascnn.tune("lenet5", "mnist", epochs=1, **dict(common, tracking_uri=f"sqlite:///{tmp_path / 'other.db'}"))
    search = tmp_path / "s" / "lenet5-mnist-random"
    shutil.rmtree(search / "trial_0")  # (its id would be given to the next trial, over trial_1's files)
    with pytest.raises(ValueError, match=r"cannot be read \(KerasTuner's files: missing trial_0/trial\.json\)"):
        kerascnn.tune("lenet5", "mnist", epochs=1, **dict(common, max_trials=3))
    assert (search / "trial_1" / "trial.json").exists()
    (search / "oracle.json").write_text("{cut short")
    with pytest.raises(ValueError, match=r"saved state that cannot be read \(KerasTuner's files: .*--overwrite"):
        kerascnn.tune("lenet5", "mnist", epochs=1, **dict(common, max_trials=2))
    (search / "oracle.json").write_text("{}")  # JSON, but not KerasTuner's
    with pytest.raises(ValueError, match=r"cannot be read \(KerasTuner's files: missing 'ongoing_trials'\)"):
        kerascnn.tune("lenet5", "mnist", epochs=1, **dict(common, max_trials=2))
    (search / "oracle.json").unlink()  # (KerasTuner reads it through TensorFlow's file API: NotFoundError)
    with pytest.raises(ValueError, match=r"cannot be read \(KerasTuner's files: missing .*oracle\.json"):
        kerascnn.tune("lenet5", "mnist", epochs=1, **dict(common, max_trials=2))
    (search / "kerascnn_search.json").write_text("{cut short")
    with pytest.raises(ValueError, match=r"cannot be read \(kerascnn_search.json: .*Received: search_name='lenet5"):
        kerascnn.tune("lenet5", "mnist", epochs=1, **dict(common, max_trials=2))


def few_filters(hp, *, input_shape, num_classes):
    """A custom space over the classic net's filters."""
    return kerascnn.create_model(
        "mnist_cnn", input_shape=input_shape, num_classes=num_classes, filters=hp.Choice("filters", [4, 8])
    )


def few_units(hp, *, input_shape, num_classes):
    """Another custom space, which gets the same default search name (custom-mnist-random)."""
    units = hp.Choice("dense_units", [8, 16])
    return kerascnn.create_model("mnist_cnn", input_shape=input_shape, num_classes=num_classes, dense_units=units)


def test_another_build_function_does_not_resume_a_custom_search(tracking_uri, tmp_path):
    common = dict(max_trials=1, epochs=1, train_samples=300, tracking_uri=tracking_uri, directory=tmp_path / "s")
    first = kerascnn.tune(build=few_filters, dataset="mnist", progress=False, **common)
    assert first.search_name == "custom-mnist-random"
    runs = len(all_runs(tracking_uri))
    with pytest.raises(ValueError, match=r"other settings \(space: filters \[4, 8\] -> dense_units \[8, 16\]\)"):
        kerascnn.tune(build=few_units, dataset="mnist", progress=False, **common)
    assert len(all_runs(tracking_uri)) == runs  # refused before any run
    again = kerascnn.tune(build=few_units, dataset="mnist", progress=False, search_name="units", **common)
    assert [t["status"] for t in again.trials] == ["COMPLETED"]


# 2. settings: one source, the CLI derived from it --------------------------------------------------
@pytest.mark.parametrize("config,command", [(TrainConfig, "train"), (TuneConfig, "tune")])
def test_the_cli_has_exactly_the_config_settings(config, command):
    from kerascnn.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    dests = {a.dest for a in sub._actions} - {"help", "json", "run"}
    assert dests == set(config.fields())
    assert sub.parse_args([]).__dict__.keys() == {"json", "run"}  # only what the user typed is forwarded
    for name, f in config.fields().items():
        assert f.metadata["option"].help, name
        assert f"\n        {name}: " in config.__doc__, name  # help(TrainConfig) says what --help says


def test_a_new_optimizer_gets_its_own_learning_rate():
    assert TrainConfig.create(optimizer="sgd").resolved().learning_rate == 0.05
    assert TrainConfig.create(optimizer="sgd", learning_rate=0.01).resolved().learning_rate == 0.01
    assert TrainConfig.create().resolved().learning_rate == 6e-3  # the recipe's, for its own optimizer
    assert TrainConfig.create(train_samples=3000).resolved().test_samples == 3000  # a subset tests on a subset


def test_numpy_numbers_are_taken_as_the_python_numbers_they_hold():
    """A notebook's np.int64 epochs or np.float32 rate: checked, kept as plain numbers, so that what is
    logged and what a result's ``to_json()`` gives is JSON."""
    numbers = dict(epochs=np.int64(2), batch_size=np.int32(64), learning_rate=np.float32(0.01))
    config = TrainConfig.create(**numbers, model_kwargs={"dropout": np.float64(0.1)}).resolved()
    assert [type(v) for v in (config.epochs, config.batch_size, config.learning_rate)] == [int, int, float]
    assert type(config.model_kwargs["dropout"]) is float and config.recipe.epochs == 2
    nested = TrainConfig.create(model="vgg11", model_kwargs={"dense_units": [np.int64(16), np.int64(8)]})
    assert nested.model_kwargs == {"dense_units": [16, 8]} and type(nested.model_kwargs["dense_units"][0]) is int
    search = TuneConfig.create(max_trials=np.int64(2), fixed={"filters": np.int64(16), "batch_norm": np.bool_(True)})
    assert search.fixed == {"filters": 16, "batch_norm": True} and type(search.fixed["filters"]) is int
    flags = TrainConfig.create(augment=np.bool_(False), jit=np.bool_(True), input_shape=np.array([32, 32, 1]))
    assert (flags.augment, flags.jit, flags.input_shape) == (False, True, (32, 32, 1)) and type(flags.jit) is bool


# 6. class names travel with the model ---------------------------------------------------------------
def _image_folder(root: Path, classes: dict[str, int], per_class: int = 40, offset: int = 0) -> Path:
    mnist = np.load(data_dir() / "mnist.npz")
    for name, digit in classes.items():
        (root / name).mkdir(parents=True)
        images = mnist["x_train"][mnist["y_train"] == digit][offset : offset + per_class]
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / name / f"{i}.png")
    return root


def test_evaluate_matches_classes_by_name_and_refuses_unknown_ones(tracking_uri, tmp_path):
    train_folder = _image_folder(tmp_path / "train", {"zero": 0, "one": 1, "two": 2})  # sorted: one, two, zero
    result = kerascnn.train("mnist_cnn", str(train_folder), epochs=3, tracking=False, verbose=0)
    assert kerascnn.loading.model_info(result.model_path)["class_names"] == ["one", "two", "zero"]
    _image_folder(tmp_path / "eval" / "train", {"zero": 0, "one": 1}, per_class=2)
    subset = _image_folder(tmp_path / "eval" / "test", {"zero": 0, "one": 1}, offset=40)  # sorted: one, zero
    metrics = kerascnn.evaluate(result.model_path, str(tmp_path / "eval"))
    expected = []
    model = kerascnn.load_model(result.model_path, compile=False)
    for name, index in (("one", 0), ("zero", 2)):  # the model's own class order
        images = np.stack([np.asarray(Image.open(p))[..., None] for p in sorted((subset / name).glob("*.png"))])
        expected += list(model.predict(images.astype("float32") / 255, verbose=0).argmax(axis=1) == index)
    assert metrics["test_size"] == len(expected) == 80
    assert metrics["test_accuracy"] == pytest.approx(np.mean(expected)) and metrics["test_accuracy"] > 0.6
    assert kerascnn.evaluate(model, str(tmp_path / "eval")) == pytest.approx(metrics)  # as its file: by name
    assert kerascnn.evaluate(result.model, str(tmp_path / "eval")) == pytest.approx(metrics)
    assert kerascnn.predict(result.model, str(subset / "zero")).class_names == ["one", "two", "zero"]
    unknown = _image_folder(tmp_path / "unknown", {"zero": 0, "three": 3})
    for given in (result.model_path, result.model, model):
        with pytest.raises(ValueError, match=r"classes the model was not trained on \(three\)"):
            kerascnn.evaluate(given, str(unknown))
    plain = keras.models.clone_model(model)  # a model no kit file describes: classes are the labels' numbers
    assert kerascnn.predict(plain, str(subset / "zero")).class_names == ["0", "1", "2"]


def test_a_text_file_named_npz_is_reported_as_such(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "mnist.npz").write_text("x_train,y_train\n1,2\n")
    result = run_cli("train", "lenet5", "--epochs", "1", env={"KERASCNN_DATA_DIR": str(folder)})
    assert_usage_error(result, "not an .npz archive", "mnist.npz")


# 7, 8. fast and quiet --------------------------------------------------------------------------------
def test_models_and_argument_checks_do_not_load_tensorflow():
    code = (
        "import sys; from kerascnn.cli import main; assert main(['models']) == 0; "
        "from kerascnn.config import TrainConfig; TrainConfig.create(model='vgg16', epochs=3); "
        "assert 'tensorflow' not in sys.modules and 'mlflow' not in sys.modules, 'heavy import'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "vgg16" in result.stdout


def test_predict_export_evaluate_describe_and_convert_refuse_bad_arguments_before_loading_tensorflow(tmp_path):
    code = (
        "import sys; from kerascnn.cli import main\n"
        "codes = [main(['predict', 'missing.keras', 'a.png']), main(['predict', 'm.keras', 'missing.png']),\n"
        "         main(['export', 'missing.keras', '--format', 'tflite', '--output', 'm.tflite']),\n"
        "         main(['describe', 'missing.keras']), main(['describe', 'folder.keras']),\n"
        "         main(['convert', 'resnet18', 'sd.npz', '--output', 'o.keras', '--input-shape', '0', '0', '0']),\n"
        "         main(['evaluate', 'junk.keras']), main(['predict', 'm.h5', 'a.png']),\n"
        "         main(['export', 'folder.keras', '--format', 'onnx', '--output', 'm.onnx'])]\n"
        "assert codes == [2] * 9, codes\n"
        "assert 'tensorflow' not in sys.modules and 'mlflow' not in sys.modules, 'heavy import'"
    )
    zipfile.ZipFile(tmp_path / "m.keras", "w").close()  # (a zip: the missing image is what predict refuses)
    (tmp_path / "junk.keras").write_bytes(b"")
    (tmp_path / "m.h5").write_bytes(b"")
    (tmp_path / "folder.keras").mkdir()
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert lines == [
        "kerascnn: error: Model file not found. Received: model='missing.keras'",
        "kerascnn: error: Input not found. Received: inputs='missing.png'",
        "kerascnn: error: Model file not found. Received: model='missing.keras'",
        "kerascnn: error: Model file not found. Received: name='missing.keras'",
        "kerascnn: error: `name` names a folder, not a .keras file. Received: name='folder.keras'",
        "kerascnn: error: `input_shape` must be (height, width, channels), 3 positive integers. "
        "Received: input_shape=(0, 0, 0)",
        "kerascnn: error: Model file is corrupt or not a Keras archive (empty, cut short or another format). "
        "Received: model='junk.keras'",
        "kerascnn: error: Legacy HDF5 models can execute code when loaded and are not loaded from untrusted paths; "
        "re-save as .keras, or pass unsafe=True (--unsafe) if you trust the file. Received: model='m.h5'",
        "kerascnn: error: `model` names a folder, not a .keras file. Received: model='folder.keras'",
    ], lines


def test_the_python_api_prints_no_tensorflow_or_mlflow_log_lines(tracking_uri):
    code = (
        "import random, sys, kerascnn; random.seed(5); state = random.getstate(); "  # (no Keras yet: train loads it)
        f"kerascnn.train('lenet5', 'mnist', epochs=1, train_samples=200, tracking_uri={tracking_uri!r}, verbose=0); "
        "print('random kept:', random.getstate() == state); "
        "print(kerascnn.describe(kerascnn.create_model('lenet5')).params); "
        "print('mlflow imported:', 'mlflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mlflow imported: False" in result.stdout  # the writer process tracked the run
    assert "random kept: True" in result.stdout  # (Keras' first import draws from Python's generator: rich)
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FINISHED" and "model.keras" in {
        a.path for a in store.client(tracking_uri).list_artifacts(run.info.run_id)
    }
    noise = [
        line
        for line in result.stderr.splitlines()
        if "absl" in line or "cuInit" in line or " INFO " in line or "cuda" in line.lower() or "retracing" in line
    ]
    assert not noise, noise


def test_after_the_users_own_import_of_keras_the_kit_adds_no_tensorflow_log_lines():
    code = (
        "import sys, keras\n"  # (TensorFlow's start-up lines here are the user's import's)
        "print('--- kit', file=sys.stderr, flush=True)\n"
        "import kerascnn\n"
        "print(kerascnn.describe(kerascnn.create_model('lenet5')).params, kerascnn.device.machine().cores > 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.split() == ["61706", "True"], result.stderr[-2000:]
    assert result.stderr.split("--- kit\n", 1)[1] == ""  # (the CUDA probe's "failed call to cuInit" was one)


def test_dir_lists_the_lazy_api():
    assert {
        "train",
        "tune",
        "evaluate",
        "describe",
        "load_dataset",
        "leaderboard",
        "compare",
        "sync",
        "TrainConfig",
        "plots",
        "tracking",
    } <= set(dir(kerascnn))
    assert not {"Any", "annotations", "importlib", "random", "warnings"} & set(dir(kerascnn))  # (its own imports)
    assert callable(kerascnn.sync) and kerascnn.sync.__module__ == "kerascnn.tracking.sync"  # the function


# 9. tables and progress -----------------------------------------------------------------------------
def test_the_progress_bar_never_overshoots_the_epoch():
    from kerascnn.callbacks import Progress

    bar = Progress()
    bar.set_params({"epochs": 1, "steps": 22, "verbose": 1})
    bar.on_train_begin()
    bar.on_epoch_begin(0)
    bar._update_progbar(23)  # steps_per_execution 8: Keras reports 8, 16, 24 steps
    assert bar.seen == 22


def test_runs_table_names_runs_and_precision_in_full_in_a_pipe_and_fits_a_terminal(tracking_uri):
    kerascnn.train(
        "lenet5", "mnist", epochs=1, train_samples=200, run_name="narrow-one", tracking_uri=tracking_uri, verbose=0
    )
    client = kerascnn.tracking.client(tracking_uri)
    going = client.create_run(  # a run still training: no end time yet, nor a best_val_accuracy
        kerascnn.tracking.ensure_experiment(tracking_uri, "kerascnn"), run_name="still-going-with-a-long-name-1"
    )
    for step, value in enumerate((0.5, 0.7, 0.6)):
        client.log_metric(going.info.run_id, "val_accuracy", value, step=step)
    table = run_cli("runs", "--tracking-uri", tracking_uri, check=True).stdout.splitlines()
    still = table[-1]  # ranked after the run with a test accuracy, by its best validation accuracy
    assert going.info.run_id[:12] in still and still.split()[-1] == "RUNNING" and " 0.7000 " in still
    assert "  still-going-with-a-long-name-1  " in still  # in a pipe: in full (grep finds it)
    code, raw = run_cli_in_terminal("runs", "--tracking-uri", tracking_uri, columns=100)
    fitted = [line for line in raw.replace("\r\n", "\n").splitlines() if line.strip()]  # (a pty ends lines \r\n)
    assert code == 0 and max(map(len, fitted)) == 100, raw  # on a terminal: its width
    assert any(re.search(r"  still-go\S*~\S*-name-1  ", line) for line in fitted), raw  # a cut name keeps its end
    table.remove(still)
    assert table[0].split() == [
        "#",
        "run_id",
        "name",
        "model",
        "data",
        "prec",
        "ep",
        "best_val",
        "test_acc",
        "time",
        "status",
    ]
    precision = " bf16 " if kerascnn.device.machine().native_bfloat16 else " fp32 "  # lenet5's "auto" here
    assert "narrow-one" in table[1] and precision in table[1]
    client.create_run(kerascnn.tracking.ensure_experiment(tracking_uri, "elsewhere"), run_name="there")
    rows = kerascnn.leaderboard(tracking_uri=tracking_uri)
    header, *lines = kerascnn.tracking.queries.format_table(rows).splitlines()
    assert pretty(rows) == rows.to_table() == "\n".join([header, *lines])  # a notebook shows the table, not RunRows
    assert header.split()[3] == "experiment"  # runs of two experiments: which is which
    assert {line.split()[3] for line in lines} == {"kerascnn", "elsewhere"}


def test_a_store_in_a_folder_with_a_space_gives_a_model_path_that_exists(tmp_path):
    uri = f"sqlite:///{tmp_path / 'my runs' / 'mlflow.db'}"
    result = kerascnn.train("lenet5", "mnist", epochs=1, train_samples=200, tracking_uri=uri, verbose=0)
    assert "my runs" in result.model_path and Path(result.model_path).is_file()  # not my%20runs
    shown = run_cli("compare", result.run_id[:12].upper(), "--tracking-uri", uri, check=True).stdout  # as printed
    assert result.run_id[:12] in shown


def test_help_tells_what_the_defaults_are():
    text = run_cli("train", "--help", check=True).stdout
    assert "the images' shape" in text and "(default: mnist)" in text and "(default: auto)" in text
    assert "--jit, --no-jit" in text and "only)\n" in text  # one default, not two
    assert "train without MLflow\n" in text  # no "(default: True)" beside --no-tracking
    assert " ".join(text.split()).count("(default: 0)") >= 1  # --seed's: a 0 is a default too (not False)
    assert "(default: False)" not in text


# 5. the dashboard on a busy port, and a SIGKILLed ui ------------------------------------------------
def test_ui_on_a_busy_port_fails_in_one_line(tracking_uri):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("ui", "--port", str(taken.getsockname()[1]), "--tracking-uri", tracking_uri)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("kerascnn: error: cannot listen on 127.0.0.1:")


def test_a_sigkilled_ui_leaves_no_server_behind(tracking_uri, spawn):
    port = free_port()
    ui = spawn(
        [*PY, "ui", "--port", str(port), "--tracking-uri", tracking_uri],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = ui.stdout.readline()
        assert "/#/experiments/" in first or f"127.0.0.1:{port}" in first
        wait_for(lambda: bool(psutil.Process(ui.pid).children(recursive=True)), 60, ui, "the server to start")
        time.sleep(3)
        server = psutil.Process(ui.pid).children(recursive=True)
        assert server, "the server process is gone before the kill"
    finally:
        ui.send_signal(signal.SIGKILL)
        ui.wait()
    _, alive = psutil.wait_procs(server, timeout=30)
    assert not alive, f"orphaned server processes: {alive}"


def test_a_trained_model_keeps_its_keras_layers_plain():
    """The served model's front is plain Keras layers: it loads in safe mode, without the kit."""
    from kerascnn.data import plan_adaptation
    from kerascnn.serving import served_model

    net = kerascnn.create_model("lenet5", input_shape=(32, 32, 3), num_classes=10)
    served = served_model(net, plan_adaptation((28, 28, 1), 32, (32, 32, 3)))
    images = np.random.default_rng(0).integers(0, 255, (2, 28, 28, 1), dtype=np.uint8)
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0))).astype("float32") / 255
    expected = net.predict(np.repeat(padded, 3, axis=-1), verbose=0)
    np.testing.assert_allclose(served.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    served.save("served.keras")
    reloaded = keras.saving.load_model("served.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert json.loads(json.dumps(served.get_config()))  # plain config
