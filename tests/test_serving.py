"""Using trained models: the Model Registry, predict, the logged model in pyfunc, export and serve.

Real parts only: models trained here on MNIST subsets, real SQLite stores, a real ``mlflow
server`` and a real ``mlflow models serve`` on 127.0.0.1, ONNX Runtime and the TFLite
interpreter. One module-scoped pair of trained runs feeds every test that needs a model.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import keras
import mlflow
import numpy as np
import psutil
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

import kerascnn
from kerascnn import exporting, server, servers
from kerascnn.cli import main
from tests.helpers import assert_usage_error, data_dir, free_port, mlflow_server, read_only, run_cli
from tests.test_dashboard import _group_listens

TINY = ("--train-samples", "600", "--test-samples", "100", "--epochs", "1", "--precision", "float32")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two runs registered as versions 1 and 2 of ``digits`` (alias ``champion`` on the last), and input files."""
    data_dir()
    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    first = run_cli(
        "train",
        "mnist_cnn",
        "--dataset",
        "mnist",
        *TINY,
        "--tracking-uri",
        uri,
        "--register-model",
        "digits",
        "--alias",
        "champion",
        "--json",
        cwd=root,
        check=True,
    )
    assert "registered digits version 1 (alias champion)" in first.stderr
    assert json.loads(first.stdout)["registered_model"] == "models:/digits/1"
    second = kerascnn.train(
        "mnist_cnn",
        "mnist",
        train_samples=600,
        test_samples=100,
        epochs=1,
        seed=1,
        precision="float32",  # exports are compared with Keras at float32 tolerances, on every CPU
        tracking_uri=uri,
        register_model="digits",
        alias="champion",
        verbose=0,
    )
    assert second.registered_model == "models:/digits/2"
    with np.load(data_dir() / "mnist.npz") as mnist:
        x, y = mnist["x_test"][:16], mnist["y_test"][:16]
    np.savez(root / "digits.npz", x=x)  # (N, H, W): no channel axis, as keras.datasets has it
    folder = root / "images"
    folder.mkdir()
    for i, suffix in enumerate((".png", ".bmp", ".gif")):
        Image.fromarray(x[i]).save(folder / f"{i}{suffix}")
    Image.fromarray(np.repeat(x[3][..., None], 3, axis=-1)).save(folder / "3_rgb.png")  # a grey image saved as RGB
    return SimpleNamespace(
        root=root,
        uri=uri,
        first=json.loads(first.stdout),
        second=second,
        x=x,
        y=y,
        npz=root / "digits.npz",
        folder=folder,
    )


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (the model loads in about a second instead of a new process' ten)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(capsys, fragment: str, *args: str) -> None:
    code, _out, err = _cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("kerascnn: error: "), (code, err)
    assert fragment in lines[0], (fragment, lines[0])


def test_registering_makes_versions_with_tags_and_moves_the_alias(trained):
    client = MlflowClient(trained.uri)
    versions = {int(v.version): v for v in client.search_model_versions("name = 'digits'")}
    assert sorted(versions) == [1, 2]
    run_ids = {1: trained.first["run_id"], 2: trained.second.run_id}
    for number, version in versions.items():
        tags = client.get_model_version("digits", number).tags
        assert tags["run_id"] == run_ids[number] and version.run_id == run_ids[number]
        assert tags["dataset"] == "mnist" and tags["model"] == "mnist_cnn" and tags["kerascnn_version"]
        assert 0 <= float(tags["test_accuracy"]) <= 1 and 0 <= float(tags["val_accuracy"]) <= 1
        assert version.source.startswith("models:/m-")
    assert {k: int(v) for k, v in client.get_registered_model("digits").aliases.items()} == {"champion": 2}
    assert client.get_model_version("digits", 1).aliases == []  # moved off version 1


def test_a_replayed_registration_finds_the_runs_logged_model(trained):
    """``kerascnn sync`` replays a spooled ``register`` with a new RunRef: the writer that logged the
    model, and knew its id, is gone. The model is found in the store."""
    from kerascnn.tracking.recorder import Op, RunRef
    from kerascnn.tracking.writes import apply

    run = RunRef(trained.uri, "kerascnn", "replayed", run_id=trained.second.run_id)
    apply(trained.uri, Op("register", run, {"name": "digits-replayed", "alias": None, "tags": {}}))
    (version,) = MlflowClient(trained.uri).search_model_versions("name = 'digits-replayed'")
    registered = MlflowClient(trained.uri).get_model_version("digits", 2)  # the same run's model
    assert version.run_id == trained.second.run_id and version.source == registered.source


def test_predict_cli_by_alias_agrees_with_every_other_way_to_name_the_model(trained, capsys):
    done = run_cli(
        "predict",
        "models:/digits@champion",
        str(trained.npz),
        str(trained.folder),
        "--top-k",
        "3",
        "--tracking-uri",
        trained.uri,
        "--json",
        check=True,
    )
    document = json.loads(done.stdout)
    rows = document["predictions"]
    assert [r["input"] for r in rows[:16]] == [f"{trained.npz}[{i}]" for i in range(16)]
    assert [Path(r["input"]).name for r in rows[16:]] == ["0.png", "1.bmp", "2.gif", "3_rgb.png"]
    for row in rows:
        probabilities = [t["probability"] for t in row["top"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert all(t["class"] in list("0123456789") for t in row["top"])
    top1 = [r["top"][0]["class"] for r in rows]
    assert top1[16:] == top1[:4]  # lossless image files predict as the same arrays
    run_id = trained.second.run_id
    for model in (
        "models:/digits/2",
        f"runs:/{run_id[:8]}",
        run_id,
        run_id[:6].upper(),  # (as a terminal may have copied it)
        f"runs:/{run_id}/model.keras",
        trained.second.model_path,
    ):
        result = kerascnn.predict(model, trained.npz, top_k=3, tracking_uri=trained.uri)
        assert result.labels == top1[:16], model
        np.testing.assert_allclose(
            [p for _, p in result.top(0)], [t["probability"] for t in rows[0]["top"]], atol=1e-5, err_msg=model
        )
    binary = trained.x > 127  # a mask: True is white, as 255 is
    as_bytes = kerascnn.predict(trained.second.model_path, binary.astype(np.uint8) * 255)
    assert kerascnn.predict(trained.second.model_path, binary).labels == as_bytes.labels
    grey_alpha = np.stack([trained.x[0], np.full_like(trained.x[0], 255)], axis=-1)  # one (28, 28, 2) image
    assert kerascnn.predict(trained.second.model_path, grey_alpha).labels == top1[:1]  # (not 28 images of 28x2)
    in_memory = kerascnn.predict(trained.second.model, trained.x)  # the Keras model train() returned
    assert in_memory.labels == top1[:16] and in_memory.model.startswith("<Keras model")
    older = kerascnn.predict("models:/digits/1", trained.x, tracking_uri=trained.uri)
    assert older.probabilities.shape == (16, 10)
    assert not np.allclose(
        older.probabilities, kerascnn.predict(run_id, trained.x, tracking_uri=trained.uri).probabilities
    )  # version 1 is another model
    code, out, _ = _cli(capsys, "predict", run_id[:8], str(trained.folder / "0.png"), "--tracking-uri", trained.uri)
    assert code == 0 and out.split()[0].endswith("0.png") and out.split()[1] == top1[0]


def test_evaluate_takes_a_model_as_predict_does_and_scores_the_run_it_names(trained, capsys):
    run_id = trained.second.run_id
    expected = kerascnn.evaluate(trained.second.model_path, "mnist", test_samples=100)
    assert expected["test_accuracy"] == pytest.approx(trained.second.test_accuracy, abs=1e-6)
    for model in ("models:/digits@champion", f"runs:/{run_id[:8]}", run_id, f"runs:/{run_id}/model.keras"):
        got = kerascnn.evaluate(model, "mnist", test_samples=100, tracking_uri=trained.uri)
        assert got == pytest.approx(expected), model
    args = ("models:/digits/1", "--dataset", "mnist", "--test-samples", "100", "--tracking-uri", trained.uri)
    code, out, _ = _cli(capsys, "evaluate", *args, "--json")
    score = json.loads(out)["test_accuracy"]
    assert code == 0 and score == pytest.approx(trained.first["test_accuracy"], abs=1e-6)
    code, out, _ = _cli(capsys, "evaluate", *args)
    assert code == 0 and out.startswith(f"models:/digits/1: test accuracy {score:.4f}, "), out  # what it scored
    client = MlflowClient(trained.uri)
    first = client.get_run(trained.first["run_id"])
    newer = client.create_logged_model(first.info.experiment_id, "mlflow_model", first.info.run_id)
    try:  # as a resumed search logs best_model again: version 1's .keras would now be another model's
        with pytest.raises(ValueError, match=r"older mlflow_model of run .*model.keras is now a newer one"):
            kerascnn.evaluate("models:/digits/1", "mnist", test_samples=10, tracking_uri=trained.uri)
    finally:
        client.delete_logged_model(newer.model_id)
    _one_line_error(
        capsys,
        f"No logged model nope in run {trained.first['run_id']}",
        *("evaluate", f"runs:/{trained.first['run_id']}/nope", "--dataset", "mnist", "--tracking-uri", trained.uri),
    )


@pytest.mark.parametrize("input_shape", [(32, 32, 3), (48, 48, 1)], ids=["pad+rgb", "resize"])
def test_predict_prepares_raw_images_as_the_training_pipeline_does(input_shape, tmp_path):
    from kerascnn.data import make_pipeline, plan_adaptation
    from kerascnn.loading import save_model

    with np.load(data_dir() / "mnist.npz") as mnist:
        x, y = mnist["x_test"][:32], mnist["y_test"][:32]
    adaptation = plan_adaptation((28, 28, 1), 1, input_shape)
    net = kerascnn.create_model("mnist_cnn", input_shape=input_shape, num_classes=10)
    save_model(
        net,
        tmp_path / "net.keras",
        {
            "dataset": "mnist",
            "class_names": list("0123456789"),
            "adaptation": {"source_shape": [28, 28, 1], "target_shape": list(input_shape)},
        },
    )
    pipeline = make_pipeline(x[..., None], y, batch_size=16, adaptation=adaptation)  # what training feeds the net
    np.testing.assert_allclose(
        kerascnn.predict(tmp_path / "net.keras", x).probabilities, net.predict(pipeline, verbose=0), atol=1e-5
    )


def test_the_logged_model_takes_raw_uint8_in_pyfunc_and_agrees_with_predict(trained, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)  # restored after the test
    mlflow.set_tracking_uri(trained.uri)
    try:
        _check_pyfunc(trained, "models:/digits@champion")
    finally:
        mlflow.set_tracking_uri(None)


def _check_pyfunc(trained, uri: str) -> None:
    info = mlflow.models.get_model_info(uri)
    spec = info.signature.inputs.to_dict()[0]["tensor-spec"]
    assert spec["dtype"] == "uint8" and list(spec["shape"]) == [-1, 28, 28, 1]
    assert info.metadata == {"class_names": list("0123456789"), "dataset": "mnist"}
    requirements = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().split()
    assert {f"keras=={metadata.version('keras')}", f"mlflow=={mlflow.__version__}"} <= set(requirements)
    pyfunc = mlflow.pyfunc.load_model(uri)
    probabilities = np.asarray(pyfunc.predict(trained.x[..., None]))
    assert probabilities.shape == (16, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    ours = kerascnn.predict(uri, trained.npz, tracking_uri=trained.uri)
    np.testing.assert_allclose(probabilities, ours.probabilities, atol=1e-5)
    assert [str(i) for i in probabilities.argmax(axis=1)] == ours.labels
    with pytest.raises(mlflow.exceptions.MlflowException, match="uint8"):  # the signature is enforced
        pyfunc.predict(trained.x[..., None].astype(np.float32) / 255)


def test_predict_refuses_bad_models_and_inputs_in_one_line(trained, capsys, tmp_path):
    npz, uri = str(trained.npz), trained.uri
    Path(tmp_path / "bad.png").write_bytes(b"not an image")
    Image.fromarray(np.full((28, 28, 3), (200, 30, 30), np.uint8)).save(tmp_path / "red.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "two.npz", a=trained.x, b=trained.y)
    np.save(tmp_path / "hot.npy", np.full((2, 28, 28), 300.0))
    missing_store = tmp_path / "nowhere" / "mlflow.db"
    cases = [
        ("no such alias", "models:/digits@nope", npz),
        ("No registered model with this name", "models:/nodigits@champion", npz),
        ("no such version", "models:/digits/9", npz),
        ("must be models:/NAME@ALIAS", "models:/digits", npz),
        ("No run with an id starting with it", "runs:/ffffffff", npz),
        ("its logged models: mlflow_model", f"runs:/{trained.first['run_id'][:8]}/nothing", npz),
        ("has no artifact 'nothing.keras'", f"runs:/{trained.first['run_id'][:8]}/nothing.keras", npz),
        ("Model file not found", str(tmp_path / "missing.keras"), npz),
        ("a run id prefix needs at least 4 characters). Received: model='abc'", "abc", npz),
        ("`model` must be", "s3://bucket/model", npz),
        ("Input not found", "models:/digits@champion", str(tmp_path / "missing.png")),
        ("must name files or folders. Received: inputs=''", "models:/digits@champion", ""),
        ("Inputs must be images", "models:/digits@champion", str(tmp_path / "notes.txt")),
        ("Cannot read the image", "models:/digits@champion", str(tmp_path / "bad.png")),
        (
            "Colour images cannot feed a model trained on grey images",
            "models:/digits@champion",
            str(tmp_path / "red.png"),
        ),
        ("Images are 32x32x1; the model takes 28x28x1 images", "models:/digits@champion", str(tmp_path / "big.png")),
        ("Folder holds no images", "models:/digits@champion", str(tmp_path / "empty")),
        ("name the images x, images or x_test", "models:/digits@champion", str(tmp_path / "two.npz")),
        ("Float images must lie in [0, 1]", "models:/digits@champion", str(tmp_path / "hot.npy")),
    ]
    for fragment, model, inputs in cases:
        _one_line_error(capsys, fragment, "predict", model, inputs, "--tracking-uri", uri)
    listed = r"^`inputs` must be image files.*Received: inputs=\[array\(\[\[ *0, +0,[^\n]*\.\.\.$"  # one line, cut
    with pytest.raises(ValueError, match=listed):
        kerascnn.predict(trained.second.model_path, [trained.x[0], trained.x[1]])  # (a list of arrays, not paths)
    hot = r"^Float images must lie in \[0, 1\] \(or 0..255\). Received: inputs=<float64 array of shape \(2, 28, 28\)>$"
    with pytest.raises(ValueError, match=hot):  # (the array described, not 'array')
        kerascnn.predict(trained.second.model_path, np.full((2, 28, 28), 300.0))
    _one_line_error(
        capsys,
        "at most the model's 10 classes. Received: top_k=11",
        "predict",
        "models:/digits@champion",
        npz,
        "--top-k",
        "11",
        "--tracking-uri",
        uri,
    )
    _one_line_error(capsys, "Received: top_k=0", "predict", "models:/digits@champion", npz, "--top-k", "0")
    _one_line_error(
        capsys,
        f"No MLflow store at {missing_store}, so no run or registered model to find in it (--tracking-uri, "
        f"tracking_uri=, chooses the store). Received: model='models:/digits@champion', "
        f"tracking_uri='sqlite:///{missing_store}'",
        "predict",
        "models:/digits@champion",
        npz,
        "--tracking-uri",
        f"sqlite:///{missing_store}",
    )
    assert not missing_store.parent.exists()  # nothing created
    assert_usage_error(run_cli("predict", "models:/digits@nope", npz, "--tracking-uri", uri), "no such alias")


def test_a_read_only_copy_of_the_store_predicts_and_refuses_to_log_an_export(trained, tmp_path, monkeypatch):
    copy = tmp_path / "theirs" / "mlflow.db"
    copy.parent.mkdir()
    shutil.copy(trained.root / "mlruns" / "mlflow.db", copy)  # (its artifacts stay where the runs logged them)
    uri, run_id = f"sqlite:///{copy}", trained.second.run_id
    with read_only(monkeypatch, copy):
        assert kerascnn.predict(f"runs:/{run_id}", trained.x[:2], tracking_uri=uri).probabilities.shape == (2, 10)
        with pytest.raises(ValueError, match=r"store's folder cannot be created or written.*Received: tracking_uri="):
            kerascnn.export(f"runs:/{run_id}", "tflite", tmp_path / "m.tflite", tracking_uri=uri)
    assert not (tmp_path / "m.tflite").exists()  # refused before the conversion


def test_exports_take_raw_images_and_agree_with_keras(trained, tmp_path, capfd):
    import tensorflow as tf

    expected = kerascnn.predict(trained.second.run_id, trained.x, tracking_uri=trained.uri)
    shown = f"Predictions(model={trained.second.run_id!r}, inputs={len(trained.x)}, classes=10, top_k=1)"
    assert repr(expected) == shown  # (not the probabilities)
    run_id = trained.second.run_id
    saved = kerascnn.export(f"runs:/{run_id[:8]}", "savedmodel", tmp_path / "saved", tracking_uri=trained.uri)
    assert saved.max_abs_diff <= exporting.FLOAT_TOLERANCE and saved.top1_agreement == 1.0
    assert saved.sample == f"{exporting.SAMPLE_SIZE} mnist test images" and saved.input_dtype == "uint8"
    assert saved.logged_to == f"runs:/{run_id}/exports/saved"
    logged = {a.path for a in MlflowClient(trained.uri).list_artifacts(run_id, "exports/saved")}
    assert "exports/saved/saved_model.pb" in logged
    again = tmp_path / "again" / "saved"
    with pytest.raises(ValueError, match=r"run already has exports/saved; pass overwrite=True \(--overwrite\)"):
        kerascnn.export(run_id, "savedmodel", again, tracking_uri=trained.uri)
    assert not again.exists()  # refused before any work
    stray = tmp_path / "stray.txt"  # a file an earlier export had and this one has not
    stray.write_text("old")
    MlflowClient(trained.uri).log_artifact(run_id, str(stray), "exports/saved")
    kerascnn.export(run_id, "savedmodel", again, tracking_uri=trained.uri, overwrite=True)
    replaced = {a.path for a in MlflowClient(trained.uri).list_artifacts(run_id, "exports/saved")}
    assert "exports/saved/saved_model.pb" in replaced and "exports/saved/stray.txt" not in replaced
    endpoint = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(
        endpoint.serve(tf.constant(trained.x[..., None])).numpy(), expected.probabilities, atol=1e-5
    )
    flat = kerascnn.export("models:/digits@champion", "tflite", tmp_path / "digits.tflite", tracking_uri=trained.uri)
    assert flat.max_abs_diff <= 1e-4 and flat.logged_to is None  # a registered model: no run named, nothing logged
    np.testing.assert_allclose(exporting.run_tflite(flat.path, trained.x[..., None]), expected.probabilities, atol=1e-5)
    (tmp_path / "latest.tflite").symlink_to(tmp_path / "blob-int8")  # written through, as cp does (any name there)
    int8 = kerascnn.export(trained.second.model_path, "tflite", tmp_path / "latest.tflite", quantize="int8")
    assert (tmp_path / "latest.tflite").is_symlink() and int8.path == str((tmp_path / "blob-int8").resolve())
    assert int8.top1_agreement >= exporting.INT8_MIN_AGREEMENT and not int8.flagged and int8.max_abs_diff < 0.2
    assert Path(int8.path).stat().st_size < Path(flat.path).stat().st_size / 2.5  # int8 weights
    quantized = exporting.run_tflite(int8.path, trained.x[..., None])  # raw pixels in, probabilities out
    assert np.mean(quantized.argmax(axis=1) == expected.probabilities.argmax(axis=1)) >= 0.9
    shown = capfd.readouterr().err  # (fd 2: the converter's and the interpreter's C++ lines)
    assert "XNNPACK" not in shown and "fully_quantize" not in shown, shown[-500:]


def _need_onnx() -> None:
    missing = [p for p in exporting.ONNX_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        pytest.fail(f"ONNX tests need {', '.join(missing)}: pip install -e '.[dev]' -c .ci/constraints.txt")


def test_onnx_export_from_the_cli_is_logged_to_the_run_and_runs_in_onnxruntime(trained, capsys, tmp_path):
    _need_onnx()
    import onnxruntime

    run_id = trained.second.run_id
    code, out, _ = _cli(
        capsys,
        "export",
        run_id,
        "--format",
        "onnx",
        "--output",
        str(tmp_path / "digits.onnx"),
        "--tracking-uri",
        trained.uri,
        "--json",
    )
    document = json.loads(out)
    assert code == 0 and document["max_abs_diff"] <= 1e-4 and document["top1_agreement"] == 1.0
    assert document["logged_to"] == f"runs:/{run_id}/exports/digits.onnx"
    assert "exports/digits.onnx" in {a.path for a in MlflowClient(trained.uri).list_artifacts(run_id, "exports")}
    session = onnxruntime.InferenceSession(str(tmp_path / "digits.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    probabilities = session.run(None, {session.get_inputs()[0].name: trained.x[..., None]})[0]
    expected = kerascnn.predict(run_id, trained.x, tracking_uri=trained.uri)
    np.testing.assert_allclose(probabilities, expected.probabilities, atol=1e-5)


def test_export_refuses_bad_requests_and_mismatches(trained, capsys, tmp_path, monkeypatch):
    model = trained.second.model_path
    (tmp_path / "taken.tflite").write_bytes(b"x")
    (tmp_path / "notes.csv").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    kept = tmp_path / "previous"  # a previous export, and the user's notes beside it: not replaced
    kept.mkdir()
    (kept / "saved_model.pb").write_bytes(b"x")
    (kept / "NOTES.md").write_text("mine")
    cases = [
        ("applies to the tflite format only", "--format", "onnx", "--output", "a.onnx", "--quantize", "int8"),
        ("A tflite export is a .tflite file", "--format", "tflite", "--output", "a.onnx"),
        (
            "its name may not end in .tflite. Received: output='m.tflite'",
            "--format",
            "savedmodel",
            "--output",
            "m.tflite",
        ),
        ("Output exists", "--format", "tflite", "--output", str(tmp_path / "taken.tflite")),
        ("holds other files than a SavedModel's (file)", "--format", "savedmodel", "--output", str(tmp_path / "full")),
        (
            "holds other files than a SavedModel's (NOTES.md)",
            "--format",
            "savedmodel",
            "--output",
            str(kept),
            "--overwrite",
        ),
        (
            "Output is a file; a savedmodel export is a folder",
            "--format",
            "savedmodel",
            "--output",
            str(tmp_path / "notes.csv"),
            "--overwrite",
        ),
    ]
    for fragment, *args in cases:
        _one_line_error(capsys, fragment, "export", model, *args)
    full = ("--format", "savedmodel", "--output", str(tmp_path / "full"), "--overwrite")  # a user's folder
    _one_line_error(
        capsys, "holds other files than a SavedModel's (file); a savedmodel export goes", "export", model, *full
    )
    monkeypatch.chdir(tmp_path / "full")
    _one_line_error(
        capsys, "holds the current folder", "export", model, "--format", "savedmodel", "--output", ".", "--overwrite"
    )
    _one_line_error(capsys, "holds the current folder", "export", model, *full[:3], str(tmp_path), "--overwrite")
    monkeypatch.chdir(tmp_path)
    assert (tmp_path / "full" / "file").read_text() == "x" and (tmp_path / "taken.tflite").exists()
    _one_line_error(
        capsys,
        "Model file not found",
        "export",
        "nothing.keras",
        "--format",
        "tflite",
        "--output",
        str(tmp_path / "b.tflite"),
    )
    monkeypatch.setattr(exporting, "FLOAT_TOLERANCE", -1.0)  # no export can pass: the refusal path
    code, _, err = _cli(capsys, "export", model, "--format", "tflite", "--output", str(tmp_path / "c.tflite"))
    assert code == 1 and "export refused: the tflite export differs from Keras" in err
    assert not (tmp_path / "c.tflite").exists()
    with pytest.raises(kerascnn.ExportMismatch, match="the tflite export differs from Keras"):  # a public error
        kerascnn.export(model, "tflite", tmp_path / "new" / "folders" / "d.tflite")
    assert not (tmp_path / "new").exists()  # the folders it made are gone with it
    with pytest.raises(kerascnn.ExportMismatch):  # a previous export stays until its replacement is checked
        kerascnn.export(model, "tflite", tmp_path / "taken.tflite", overwrite=True)
    assert (tmp_path / "taken.tflite").read_bytes() == b"x" and (tmp_path / "notes.csv").read_text() == "x"
    assert (kept / "NOTES.md").read_text() == "mine"
    assert not list(tmp_path.glob(".*kerascnn-*"))  # nor is anything half-written left beside it


def test_mixed_precision_models_export_in_float32(tmp_path):
    _need_onnx()  # onnxruntime refuses bfloat16 convolutions: the float32 copy is what makes this work
    from kerascnn.loading import save_model

    with kerascnn.device.dtype_policy("mixed_bfloat16"):
        net = kerascnn.create_model("mnist_cnn", input_shape=(28, 28, 1), num_classes=10)
    assert net.layers[0].dtype_policy.name == "mixed_bfloat16"
    save_model(
        net,
        tmp_path / "mixed.keras",
        {
            "dataset": "mnist",
            "class_names": list("0123456789"),
            "adaptation": {"source_shape": [28, 28, 1], "target_shape": [28, 28, 1]},
        },
    )
    result = kerascnn.export(tmp_path / "mixed.keras", "onnx", tmp_path / "mixed.onnx")
    assert result.max_abs_diff <= 1e-4 and result.precision.startswith("mixed_bfloat16 model exported in float32")


def test_serve_answers_like_predict_on_loopback_and_stops_cleanly(trained, spawn):
    port = free_port()
    process = spawn(
        [
            sys.executable,
            "-m",
            "kerascnn",
            "serve",
            "models:/digits@champion",
            "--port",
            str(port),
            "--tracking-uri",
            trained.uri,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,  # (bytes: text mode would turn a progress bar's "\r" into "\n")
    )
    base = f"http://127.0.0.1:{port}"
    try:
        started, deadline = time.monotonic(), time.monotonic() + 120
        while not servers.answers(f"{base}/ping"):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the model server did not answer within 120 s"
            time.sleep(0.5)
        print(f"model server ready after {time.monotonic() - started:.1f} s")
        served = np.asarray(server.predictions(base, trained.x[..., None]))
        listening = _group_listens(process.pid)
        children = psutil.Process(process.pid).children(recursive=True)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = (b.decode() for b in process.communicate(timeout=30))
    assert process.returncode == 0, err
    _gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"server processes left running: {alive}"
    assert listening and all(ip == "127.0.0.1" for ip, _ in listening) and ("127.0.0.1", port) in listening
    expected = kerascnn.predict("models:/digits@champion", trained.x, tracking_uri=trained.uri)
    assert [str(i) for i in served.argmax(axis=1)] == expected.labels
    np.testing.assert_allclose(served, expected.probabilities, atol=1e-5)
    assert f"{base}/invocations" in out and "curl" in out and "ready after" in out
    assert "kerascnn: warning" not in err and "uvicorn: not found" not in err
    assert "InitializeLog" not in err and " 00:00:" not in err  # TensorFlow's C++ start-up lines (the kit hides them)
    assert "Uvicorn running on" in err  # the server's own lines pass
    assert "\r" not in out + err and "/step" not in out  # no progress bars in a pipe (Keras' per request)
    assert '"POST /invocations HTTP/1.1" 200 OK' in out  # the server's own lines pass
    assert "from=kerascnn" not in out + err  # but not those of the kit's own readiness probes
    assert server.server_env(trained.uri)["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"  # stderr is no tty here


def test_serve_refuses_model_files_and_busy_ports(trained, capsys):
    _one_line_error(capsys, "not a model file", "serve", trained.second.model_path)
    _one_line_error(capsys, "not a model file. Received: model='nope'", "serve", "nope")  # (not "file not found")
    _one_line_error(capsys, "Received: port=0", "serve", "models:/digits@champion", "--port", "0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = _cli(
            capsys,
            "serve",
            "models:/digits@champion",
            "--port",
            str(taken.getsockname()[1]),
            "--tracking-uri",
            trained.uri,
        )
    assert code == 1 and "cannot listen on 127.0.0.1" in err


def test_a_port_whose_last_server_just_stopped_is_free_again():
    """A stopped server leaves its connections in TIME-WAIT for a minute; servers (uvicorn's among them) bind
    with SO_REUSEADDR over them, so the port check must too (`serve`/`ui` refused a restart on the same port)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _ = server.accept()
            served.close()  # the server's side closes first: its socket waits in TIME-WAIT
            client.recv(1)
        assert servers.port_busy("127.0.0.1", port) == "Address already in use"  # still listening
    assert servers.port_busy("127.0.0.1", port) is None


def test_tune_registers_its_best_model_through_a_tracking_server(tmp_path):
    data_dir()
    with mlflow_server(tmp_path / "server") as srv:
        uri = srv.uri
        done = run_cli(
            "tune",
            "mnist_cnn",
            "--dataset",
            "mnist",
            "--max-trials",
            "2",
            "--epochs",
            "1",
            "--train-samples",
            "300",
            "--tracking-uri",
            uri,
            "--register-model",
            "tuned",
            "--alias",
            "best",
            "--json",
            cwd=tmp_path,
            env={"KERASCNN_TRACKING_TIMEOUT": "30"},  # not the tests' 5 s: a live server, slow under the suite's load
            check=True,
        )
        search = json.loads(done.stdout)
        assert "spool" not in done.stderr and "registered tuned version 1 (alias best)" in done.stderr, done.stderr
        client = MlflowClient(uri)
        client.delete_experiment(client.create_experiment("gone"))  # the server says so before any training
        refused = run_cli("train", "lenet5", "--dataset", "mnist", "--tracking-uri", uri, "--experiment", "gone")
        assert_usage_error(refused, "Experiment is deleted; restore it", "Received: experiment='gone'")
        version = client.get_model_version_by_alias("tuned", "best")
        assert version.version in ("1", 1) and version.run_id == search["parent_run_id"]
        assert search["registered_model"] == "models:/tuned/1"
        assert version.tags["dataset"] == "mnist" and version.tags["family"] == "mnist_cnn"
        assert version.tags["trial_id"] == search["best"]["trial_id"]
        assert {k: int(v) for k, v in client.get_registered_model("tuned").aliases.items()} == {"best": 1}
        result = kerascnn.predict("models:/tuned@best", np.zeros((2, 28, 28), np.uint8), tracking_uri=uri)
        assert result.probabilities.shape == (2, 10)
        trial, parent = search["trials"][0]["run_id"], search["parent_run_id"]  # a trial keeps no model
        with pytest.raises(ValueError, match=rf"Run {trial} has no logged model; its search's run {parent} holds"):
            kerascnn.predict(trial, np.zeros((2, 28, 28), np.uint8), tracking_uri=uri)


def test_predict_says_when_a_models_outputs_are_not_probabilities(capsys):
    images = np.full((2, 28, 28), 128, np.uint8)
    logits = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    kerascnn.predict(logits, images)
    assert "the model's outputs are not probabilities (they do not sum to 1; logits?)" in capsys.readouterr().err
    kerascnn.predict(kerascnn.create_model("lenet5", input_shape=(28, 28, 1)), images)  # softmax: nothing to say
    assert "not probabilities" not in capsys.readouterr().err


def test_a_folder_predicts_its_visible_images_and_grey_with_alpha_feeds_an_rgb_model(tmp_path):
    """A Jupyter checkpoint folder and macOS's ``._*`` copies are not images to predict; a grey
    image with an alpha channel feeds an RGB model as its grey does (README, *Predict*)."""
    net = kerascnn.create_model("lenet5", input_shape=(28, 28, 3), num_classes=10)
    grey = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    folder = tmp_path / "photos"
    (folder / ".ipynb_checkpoints").mkdir(parents=True)
    Image.fromarray(np.stack([grey, np.full_like(grey, 255)], axis=-1), "LA").save(folder / "a.png")
    Image.fromarray(np.repeat(grey[..., None], 3, axis=-1), "RGB").save(folder / "b.png")
    for hidden in (folder / "._a.png", folder / ".ipynb_checkpoints" / "a-checkpoint.png"):
        hidden.write_bytes(b"\x00\x05\x16\x07 AppleDouble, not a PNG")
    result = kerascnn.predict(net, folder)
    assert result.inputs == [str(folder / "a.png"), str(folder / "b.png")]
    np.testing.assert_allclose(result.probabilities[0], result.probabilities[1], atol=1e-6)


def test_predict_evaluate_and_export_refuse_a_model_without_one_output_of_class_scores(tmp_path):
    """Two outputs, a per-pixel output, one sigmoid unit: one line naming the model, before any work."""
    inputs = keras.Input((28, 28, 1))
    flat = keras.layers.Flatten()(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(10)(flat), keras.layers.Dense(10)(flat)])
    per_pixel = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(10, 3, activation="softmax")])
    sigmoid = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    two.save(tmp_path / "two.keras")
    images = np.zeros((2, 28, 28), np.uint8)
    for model, shape in [
        (two, r"\[\(None, 10\), \(None, 10\)\]"),
        (str(tmp_path / "two.keras"), r"\[\(None, 10\), \(None, 10\)\]"),
        (per_pixel, r"\(None, 26, 26, 10\)"),
        (sigmoid, r"\(None, 1\)"),
    ]:
        received = f"'{model}'" if isinstance(model, str) else "<Keras model .*>"
        message = (
            rf"^The model outputs shape {shape}; kerascnn reads one output of class .* Received: model={received}$"
        )
        for call, args in [
            (kerascnn.predict, (images,)),
            (kerascnn.evaluate, ("mnist",)),
            (kerascnn.export, ("tflite", tmp_path / "m.tflite")),
        ]:
            with pytest.raises(ValueError, match=message):
                call(model, *args)
    assert not (tmp_path / "m.tflite").exists()
    with pytest.raises(ValueError, match=r"^`tracking_uri` must be an MLflow tracking URI. Received: tracking_uri=3$"):
        kerascnn.evaluate(str(tmp_path / "two.keras"), "mnist", tracking_uri=3)  # (a file needs no store: checked)
