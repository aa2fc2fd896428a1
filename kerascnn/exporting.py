"""``export()``: a trained model as a TensorFlow SavedModel, a TFLite flatbuffer or ONNX, checked on the spot.

What is exported is the model a run logs for MLflow (:mod:`kerascnn.sources`): it takes raw
``uint8`` images of the dataset's shape ``(N, H, W, C)`` and returns float32 probabilities,
with the training preprocessing (scaling, padding or resizing, grey to RGB) inside. So an
exported file takes images as ``kerascnn predict`` and ``kerascnn serve`` do. Mixed-precision
models are exported in float32 (the same weights; the difference is reported).

Each export is run at once on a sample of the model's test images (random images when its
dataset cannot be loaded) and compared with Keras: a float export that differs by more than
``FLOAT_TOLERANCE`` is deleted and refused (:class:`ExportMismatch`); an int8 TFLite model
reports its top-1 agreement with Keras and is flagged below ``INT8_MIN_AGREEMENT``. When MODEL
names a run, the exported file is also logged to the run under ``exports/``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerascnn import checks, console, device
from kerascnn.errors import ArgumentError, ExportMismatch

FORMATS = {"savedmodel": None, "tflite": ".tflite", "onnx": ".onnx"}  # format: required suffix
SAVEDMODEL_ENTRIES = {
    "saved_model.pb",
    "fingerprint.pb",
    "variables",
    "assets",
    "assets.extra",
    ".DS_Store",
}  # what --overwrite replaces
QUANTIZE = ("int8",)
FLOAT_TOLERANCE = 1e-4
INT8_MIN_AGREEMENT = 0.9
SAMPLE_SIZE = 1000  # test images the export is checked on
REPRESENTATIVE_SIZE = 200
ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")

__all__ = ["ExportMismatch", "ExportResult", "export"]


@dataclass
class ExportResult:
    """What ``export()`` did; ``to_json()`` is the CLI's ``--json`` document.

    Attributes:
        path: The exported file (a folder for SavedModel).
        format, quantize: As asked.
        input_dtype, input_shape: What the exported model takes (``uint8``, ``[None, H, W, C]``).
        sample: What the check ran on (``"1000 mnist test images"``).
        max_abs_diff: Largest difference of a probability from Keras on the sample.
        top1_agreement: Fraction of the sample with the same most probable class as Keras.
        flagged: An int8 model whose agreement is below ``INT8_MIN_AGREEMENT``.
        logged_to: ``runs:/ID/exports/NAME`` when it was logged to the run MODEL names.
        precision: A note when a mixed-precision model was exported in float32.
    """

    path: str
    format: str
    quantize: str | None
    input_dtype: str
    input_shape: list[int | None]
    sample: str
    max_abs_diff: float
    top1_agreement: float
    flagged: bool
    seconds: float
    logged_to: str | None = None
    precision: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        what = f"{self.format}{' ' + self.quantize if self.quantize else ''}"
        text = (
            f"kerascnn: exported {what} to {self.path} in {self.seconds:.1f} s; input {self.input_dtype} "
            f"{self.input_shape}; on {self.sample}: max |diff| vs Keras {self.max_abs_diff:.3g}, "
            f"top-1 agreement {self.top1_agreement:.4f}"
        )
        if self.precision:
            text += f"\nkerascnn: {self.precision}"
        if self.logged_to:
            text += f"\nkerascnn: logged to {self.logged_to}"
        return text


def check_request(format: str, output: str | os.PathLike, quantize: str | None = None, overwrite: bool = False) -> Path:
    """Checks the format, quantization and output path (no TensorFlow needed); returns the path.

    Example:
        >>> check_request("tflite", "model.tflite")
        PosixPath('model.tflite')
    """
    checks.one_of("format", format, FORMATS)
    checks.boolean("overwrite", overwrite)
    if quantize is not None:
        checks.one_of("quantize", quantize, QUANTIZE)
        if format != "tflite":
            raise ArgumentError(f"`quantize` applies to the tflite format only. Received: quantize={quantize!r}")
    if not isinstance(output, (str, os.PathLike)) or not str(output).strip():
        raise ArgumentError(f"`output` must be a path. Received: output={output!r}")
    path = _output_path(format, output, overwrite)
    checks.writable("output", output if path == Path(output) else path)
    if format == "onnx":
        missing = [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            raise ArgumentError(
                f"ONNX export needs {', '.join(ONNX_PACKAGES)} (missing: {', '.join(missing)}; "
                f"pip install -e '.[export]' in kerascnn's folder). Received: format='onnx'"
            )
    return path


def _output_path(format: str, output: str | os.PathLike, overwrite: bool) -> Path:
    """Where the export goes: ``output``, or the file or folder it links to; a previous export is
    replaced only with ``overwrite``, and nothing else ever is."""
    received = f"Received: output={str(output)!r}"
    path = Path(output)  # (its name is the export's, and the run's copy's; a link may point at any name)
    suffix = FORMATS[format]
    if suffix and path.suffix.lower() != suffix:
        raise ArgumentError(f"A {format} export is a {suffix} file. {received}")
    if not suffix and path.suffix.lower() in (*filter(None, FORMATS.values()), ".keras", ".h5"):
        raise ArgumentError(f"A {format} export is a folder; its name may not end in {path.suffix}. {received}")
    if path.is_symlink():  # written through the link, as cp does (the link stays)
        path = Path(os.path.realpath(path))
    if path.is_dir() and suffix:
        raise ArgumentError(f"Output is a folder. {received}")
    if path.exists() and not path.is_dir() and not suffix:  # (overwrite replaces an export, not any file)
        raise ArgumentError(f"Output is a file; a {format} export is a folder. {received}")
    filled = path.is_dir() and any(path.iterdir())  # (an empty folder takes a SavedModel as a new one does)
    if filled:
        if Path.cwd().resolve().is_relative_to(path.resolve()):
            raise ArgumentError(f"Output holds the current folder; not replaced. {received}")
        others = sorted(f.name for f in path.iterdir() if f.name not in SAVEDMODEL_ENTRIES)
        if others or not (path / "saved_model.pb").is_file():
            shown = f" ({console.first(others, 3)})" if others else ""
            raise ArgumentError(
                f"Output is a folder that holds other files than a SavedModel's{shown}; a savedmodel export "
                f"goes to a new or empty folder, or replaces a previous export (--overwrite). {received}"
            )
    if path.exists() and not overwrite and (filled or not path.is_dir()):
        raise ArgumentError(f"Output exists; pass overwrite=True (--overwrite) to replace it. {received}")
    return path


def export(
    model: Any,
    format: str,
    output: str | os.PathLike,
    *,
    quantize: str | None = None,
    overwrite: bool = False,
    tracking_uri: str | None = None,
    unsafe: bool = False,
) -> ExportResult:
    """Exports a trained model for serving without Keras, and checks the export against Keras.

    Args:
        model: A ``.keras`` file, ``runs:/RUN_ID[/NAME]``, a run id, ``models:/NAME@ALIAS`` or
            ``models:/NAME/VERSION`` (see :mod:`kerascnn.sources`), or a Keras model.
        format: ``savedmodel`` (a folder; endpoint ``serve``), ``tflite`` or ``onnx``.
        output: Where to write it (``.tflite`` / ``.onnx`` files, a new folder for SavedModel).
        quantize: ``"int8"``: full-integer TFLite, calibrated on the model's training images.
        overwrite: Replace an existing output (an export file, or a folder holding a previous
            SavedModel) once the new export is checked, and the export of that name already logged
            to the run (its files the new one has not are deleted after the upload).
        tracking_uri: The MLflow store of runs and registered models (default as in ``train``).
        unsafe: Allow ``.keras`` files that can run code when loaded (``Lambda`` layers).

    Returns:
        An :class:`ExportResult` with the check's figures.

    Raises:
        ArgumentError: Bad arguments, an unknown model, or int8 without the model's training data.
        ExportMismatch: A float export that differs from Keras by more than ``FLOAT_TOLERANCE``.

    Example:
        >>> kerascnn.export("models:/digits@champion", "onnx", "digits.onnx").max_abs_diff  # doctest: +SKIP
        1.2e-07
    """
    from kerascnn import sources
    from kerascnn.tracking import store

    path = check_request(format, output, quantize, overwrite)
    started = time.perf_counter()
    loaded = sources.open_model(model, tracking_uri, unsafe=unsafe)
    if loaded.source.run_id is not None:  # the export is logged to the run: a store that can only be read is refused
        store.resolve_tracking_uri(loaded.source.tracking_uri)
        _check_not_logged(loaded.source, Path(output), overwrite, output)
    net, precision = float32_model(loaded.model)
    sample, described, train_images = _sample(loaded, need_training_images=quantize == "int8")
    reference = np.asarray(net.predict(sample, verbose=0), dtype=np.float32)
    if precision:
        precision += _precision_note(loaded.model, sample, reference, precision)
    kind = f"{format} ({quantize})" if quantize else format
    print(
        f"kerascnn: exporting {loaded.source.text} as {kind}, then checking it against Keras on {described}",
        file=sys.stderr,
        flush=True,
    )  # (a large model takes minutes)
    with _new_folders(path.parent), _staged(path) as staging:
        outputs = _WRITERS[format](net, staging, sample, quantize, train_images)
        result = _checked(path, format, quantize, loaded.image_shape, described, outputs, reference)
    result.precision = precision
    if loaded.source.run_id is not None:
        result.logged_to = _log_to_run(loaded.source, Path(output), overwrite)  # (its name, through a link)
    result.seconds = time.perf_counter() - started
    return result


def _precision_note(mixed_model: Any, sample: np.ndarray, reference: np.ndarray, precision: str) -> str:
    """How far the float32 copy that was exported is from the mixed-precision model."""
    mixed = np.asarray(mixed_model.predict(sample, verbose=0), dtype=np.float32)
    return (
        f" (vs the {precision.split(maxsplit=1)[0]} model: max |diff| {np.abs(mixed - reference).max():.3g}, "
        f"top-1 agreement {_agreement(mixed, reference):.4f})"
    )


def _checked(
    path: Path,
    format: str,
    quantize: str | None,
    image_shape: Any,
    described: str,
    outputs: np.ndarray,
    reference: np.ndarray,
) -> ExportResult:
    """The export's figures against Keras: a float export that disagrees is refused (raises), an int8
    one that agrees too rarely is flagged."""
    diff, agreement = float(np.abs(outputs - reference).max()), _agreement(outputs, reference)
    if quantize is None and not diff <= FLOAT_TOLERANCE:
        raise ExportMismatch(
            f"the {format} export differs from Keras by {diff:.3g} (> {FLOAT_TOLERANCE}) on {described}; not written"
        )
    flagged = quantize is not None and agreement < INT8_MIN_AGREEMENT
    if flagged:
        print(
            f"kerascnn: warning: the int8 model agrees with Keras on only {agreement:.1%} of {described} "
            f"(flagged; below {INT8_MIN_AGREEMENT:.0%})",
            file=sys.stderr,
            flush=True,
        )
    return ExportResult(
        str(path.resolve()), format, quantize, "uint8", [None, *image_shape], described, diff, agreement, flagged, 0.0
    )


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))


@contextlib.contextmanager
def _new_folders(folder: Path) -> Iterator[None]:
    """``folder``, made with its missing parents for the block; those made are removed again if
    the block fails (a refused export leaves no empty folders behind)."""
    made = [f for f in (folder, *folder.parents) if not f.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for f in made:  # (deepest first; one that holds something now stays)
            with contextlib.suppress(OSError):
                f.rmdir()
        raise


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """A path beside ``path`` to write the export to; once the block has passed (the export was
    checked) it takes ``path``'s place. A refused, failed or interrupted export leaves ``path`` as
    it was: a previous export stays until its replacement is checked."""
    staging = path.with_name(f".{path.stem}.kerascnn-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield staging
        if path.is_dir():  # a previous SavedModel, or an empty folder (check_request allowed only those)
            old = staging.with_name(staging.name + "-old")
            path.rename(old)
            staging.rename(path)
            shutil.rmtree(old)
        else:
            os.replace(staging, path)
    finally:
        _clear(staging)


def _clear(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def float32_model(model: Any) -> tuple[Any, str | None]:
    """``model`` with every layer computing in float32 (the same weights), and a note when it was not.

    Exporters cannot all take bfloat16/float16 layers (onnxruntime refuses bfloat16 convolutions).

    Example:
        >>> net, note = float32_model(served)  # doctest: +SKIP
        >>> note  # doctest: +SKIP
        'mixed_bfloat16 model exported in float32'
    """
    import keras

    policies = {layer.dtype_policy.name for layer in _all_layers(model)} - {"float32"}
    if not policies:
        return model, None
    copy = keras.saving.deserialize_keras_object(_float32_config(keras.saving.serialize_keras_object(model)))
    copy.set_weights(model.get_weights())
    return copy, f"{'/'.join(sorted(policies))} model exported in float32"


def _all_layers(model: Any) -> list[Any]:
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found += _all_layers(layer)
    return found


def _float32_config(config: Any) -> Any:
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    if not isinstance(config, dict):
        return config
    policy = config.get("dtype")
    out = {k: _float32_config(v) for k, v in config.items()}
    if isinstance(policy, dict) and "DTypePolicy" in str(policy.get("class_name", "")):
        out["dtype"] = "float32"
    return out


def _sample(loaded: Any, need_training_images: bool) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Test images of the model's dataset (random ones if it cannot be loaded), and its first training images."""
    from kerascnn.data import load_dataset

    shape = loaded.image_shape
    try:
        if not loaded.dataset:
            raise ArgumentError("the model does not name its dataset")
        data = load_dataset(
            loaded.dataset, validation_split=0.0, train_samples=REPRESENTATIVE_SIZE, test_samples=SAMPLE_SIZE
        )
        if data.image_shape != shape:
            raise ArgumentError(f"its images are {data.image_shape}, the model takes {shape}")
    except ArgumentError as e:
        if need_training_images:
            raise ArgumentError(
                f"int8 quantization calibrates on the model's training images, which cannot be "
                f"loaded ({e}). Received: quantize='int8'"
            ) from None
        print(f"kerascnn: warning: checking the export on random images ({e})", file=sys.stderr, flush=True)
        images = np.random.default_rng(0).integers(0, 256, (SAMPLE_SIZE, *shape), dtype=np.uint8)
        return images, f"{SAMPLE_SIZE} random images", None
    return data.x_test, f"{len(data.x_test)} {Path(str(loaded.dataset)).name} test images", data.x_train


def _export_savedmodel(net: Any, path: Path, sample: np.ndarray, quantize: str | None, train: Any) -> np.ndarray:
    import tensorflow as tf

    net.export(str(path), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(path))  # held: its variables must outlive the call
    return loaded.serve(tf.constant(sample)).numpy()


def _export_onnx(net: Any, path: Path, sample: np.ndarray, quantize: str | None, train: Any) -> np.ndarray:
    import onnxruntime

    net(sample[:1])  # a freshly loaded model must be called once before Keras' ONNX export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf2onnx's NumPy deprecation chatter
        net.export(str(path), format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: sample})[0]


def _export_tflite(net: Any, path: Path, sample: np.ndarray, quantize: str | None, train: Any) -> np.ndarray:
    """TensorFlow's converter on a SavedModel of ``net``; int8: full-integer ops, raw ``uint8`` pixels in
    (the model's own input), float32 probabilities out, calibrated on ``train`` images."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="kerascnn-export-") as folder:
        net.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([train[i : i + 1]] for i in range(len(train)))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.float32
        with device.cpp_lines_hidden():  # the converter's C++ lines ("fully_quantize: 0, ..."), replayed if it fails
            path.write_bytes(converter.convert())
    return run_tflite(path, sample)


def run_tflite(path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Runs a TFLite model on a batch (LiteRT's interpreter when installed, else ``tf.lite``'s).

    Example:
        >>> run_tflite("digits.tflite", images).shape  # doctest: +SKIP
        (64, 10)
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings(), device.cpp_lines_hidden():  # ("INFO: Created TensorFlow Lite XNNPACK delegate")
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_path=str(path))
        given, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(given["index"], list(images.shape))  # the flatbuffer's batch is 1
        interpreter.allocate_tensors()
        interpreter.set_tensor(given["index"], images.astype(given["dtype"]))
        interpreter.invoke()
        return np.asarray(interpreter.get_tensor(out["index"]), dtype=np.float32)


_WRITERS = {"savedmodel": _export_savedmodel, "tflite": _export_tflite, "onnx": _export_onnx}


def _check_not_logged(source: Any, path: Path, overwrite: bool, output: Any) -> None:
    """An export the run already logged under this name is replaced only with ``overwrite``."""
    from kerascnn.tracking import store

    if overwrite:
        return
    logged = store.retrying(store.client(source.tracking_uri).list_artifacts, source.run_id, "exports")
    if any(Path(a.path).name == path.name for a in logged):
        raise ArgumentError(
            f"The run already has exports/{path.name}; pass overwrite=True (--overwrite) to replace it, or "
            f"name the output otherwise. Received: output={str(output)!r}"
        )


def _log_to_run(source: Any, path: Path, overwrite: bool) -> str:
    """Logs the export to the run MODEL names, under ``exports/``. With ``overwrite``, the files of
    the export logged there before that this one has not are deleted after the upload (the old
    export stays whole if the upload fails)."""
    from kerascnn.tracking import store

    c = store.client(source.tracking_uri)
    logged = f"exports/{path.name}"
    if path.is_dir():
        store.retrying(c.log_artifacts, source.run_id, str(path), logged)
        if overwrite:
            new = {f"{logged}/{f.relative_to(path).as_posix()}" for f in path.rglob("*")}
            _delete_logged(source, [p for p in _logged_files(c, source.run_id, logged) if p not in new])
    else:
        if overwrite and _logged_files(c, source.run_id, logged, folders=True):  # a folder of that name: not a file
            _delete_logged(source, [logged])
        store.retrying(c.log_artifact, source.run_id, str(path), "exports")
    return f"runs:/{source.run_id}/{logged}"


def _logged_files(client: Any, run_id: str, folder: str, folders: bool = False) -> list[str]:
    """The files logged under ``folder`` (and its sub-folders, themselves listed with ``folders``)."""
    from kerascnn.tracking import store

    found: list[str] = []
    for item in store.retrying(client.list_artifacts, run_id, folder):
        if item.is_dir:
            found += [item.path] if folders else []
            found += _logged_files(client, run_id, item.path, folders)
        else:
            found.append(item.path)
    return found


def _delete_logged(source: Any, artifact_paths: list[str]) -> None:
    """Deletes logged files or folders of a run, where its artifact store can delete."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from kerascnn.tracking import store

    if not artifact_paths:
        return
    uri = source.tracking_uri
    run = store.retrying(store.client(uri).get_run, source.run_id)
    try:
        repository = get_artifact_repository(run.info.artifact_uri, tracking_uri=uri)  # (mlflow-artifacts: needs it)
        for artifact_path in artifact_paths:
            repository.delete_artifacts(artifact_path)
    except Exception as e:  # (a server that refuses deletes): the new files are logged, the old stay beside them
        print(
            f"kerascnn: warning: {artifact_paths[0]} and the rest of the run's earlier export that this one has not "
            f"could not be deleted ({type(e).__name__}: {' '.join(str(e).split())[:200]}); they stay beside it",
            file=sys.stderr,
            flush=True,
        )
