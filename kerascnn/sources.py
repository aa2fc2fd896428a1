"""What a MODEL argument names, and the model it loads: the one that takes raw ``uint8`` images.

``predict``, ``evaluate``, ``export`` and ``serve`` accept the same MODEL:

* a ``.keras`` file saved by the kit (its ``kerascnn.json`` gives the class names and how
  images were adapted in training) or from elsewhere (assumed to take [0, 1] floats of its
  input shape);
* ``runs:/RUN_ID`` (a full id or a unique prefix; the run's logged MLflow model),
  ``runs:/RUN_ID/NAME`` (the logged model ``NAME``, e.g. ``mlflow_model`` or ``best_model``),
  ``runs:/RUN_ID/model.keras`` (the run's ``.keras`` artifact), or a bare run id;
* ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (the Model Registry) or ``models:/m-...``.

Whatever the source, :func:`load` returns the model as the run logged it for MLflow
(:func:`kerascnn.serving.served_model`): ``uint8`` images as the dataset has them go in,
probabilities come out, with the training preprocessing done by layers in front.
Everything MLflow is read from the store given (``--tracking-uri``, else
``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``), never from a global setting.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerascnn.errors import ArgumentError
from kerascnn.tracking.store import RUN_ID

KERAS_ARTIFACTS = {"mlflow_model": "model.keras", "best_model": "best_model.keras"}  # logged model -> its run's file
FORMS = "a .keras file, runs:/RUN_ID[/NAME], models:/NAME@ALIAS, models:/NAME/VERSION or a run id"


@dataclass
class ModelSource:
    """A resolved MODEL argument.

    Attributes:
        text: What the user gave.
        path: The ``.keras`` file to load.
        artifact: The run's ``.keras`` artifact to load (``runs:/ID/model.keras``).
        model_id: The MLflow logged model (``m-...``) to load, for runs and registered models.
        run_id: The run the model comes from, when MODEL names a run (``export`` logs to it).
        tracking_uri: The store, for runs and registered models.
    """

    text: str
    path: Path | None = None
    artifact: str | None = None
    model_id: str | None = None
    run_id: str | None = None
    tracking_uri: str | None = None
    version: str | None = field(default=None, repr=False)

    @property
    def model_uri(self) -> str | None:
        """The MLflow model URI (``models:/m-...``; the registry URI as given for registered models)."""
        if self.text.startswith("models:/") and self.version is not None:
            return self.text
        return f"models:/{self.model_id}" if self.model_id else None


@dataclass
class LoadedModel:
    """A model that takes raw ``uint8`` images, with what is known about its classes and data."""

    model: Any
    class_names: list[str]
    dataset: str | None
    source: ModelSource

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the images the model takes."""
        return tuple(int(d) for d in self.model.input_shape[1:])  # type: ignore[return-value]


def resolve(model: str | os.PathLike, tracking_uri: str | None = None) -> ModelSource:
    """Checks a MODEL argument and finds what it names (runs and registered models in the store).

    Raises:
        ArgumentError: A missing file, a malformed URI, an unknown run, registered model, alias or version.

    Example:
        >>> resolve("models:/digits@champion").model_id  # doctest: +SKIP
        'm-23d0358dfc764177bba24155d164aeb6'
    """
    text = check_form(model)
    if text.startswith("runs:/"):
        run_part, _, name = text[len("runs:/") :].partition("/")
        return _from_run(text, run_part, name.strip("/"), tracking_uri)
    if text.startswith("models:/"):
        return _from_registry(text, tracking_uri)
    if Path(text).is_file():
        if tracking_uri is not None:  # (a file needs no store; the argument given is checked still)
            from kerascnn.tracking.store import resolve_tracking_uri

            resolve_tracking_uri(tracking_uri, write=False)
        return ModelSource(text, path=Path(text))
    return _from_run(text, text, "", tracking_uri)


def check_form(model: Any, *, unsafe: bool | None = None) -> str:
    """What :func:`resolve` checks without a store (nor MLflow, nor TensorFlow): the MODEL
    argument's form, and that a file it names is a model file (see :func:`loading.check_file`;
    a legacy ``.h5`` one is refused here when ``unsafe`` is given and false); returns it as text.

    Example:
        >>> check_form("runs:/2975731803f1")
        'runs:/2975731803f1'
    """
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise ArgumentError(f"`model` must be {FORMS}. Received: model={model!r}")
    text = str(model)
    if text.startswith("models:/"):
        _registry_parts(text)
        return text
    if text.startswith("runs:/"):
        if not text[len("runs:/") :].partition("/")[0]:
            raise ArgumentError(f"`model` must be {FORMS}. Received: model={text!r}")
        return text
    if Path(text).exists():
        from kerascnn.loading import check_file

        check_file(text, unsafe=True if unsafe is None else unsafe, argument="model")
        return text
    if RUN_ID.fullmatch(text):
        return text
    if "://" in text or text.startswith(("runs:", "models:")):
        raise ArgumentError(f"`model` must be {FORMS}. Received: model={text!r}")
    short = " (and a run id prefix needs at least 4 characters)" if re.fullmatch(r"[0-9a-fA-F]{1,3}", text) else ""
    raise ArgumentError(f"Model file not found{short}. Received: model={text!r}")


def _client(text: str, tracking_uri: str | None) -> tuple[Any, str]:
    """The store's client; a SQLite store that does not exist is refused, not created."""
    from kerascnn.tracking import store

    uri = store.resolve_tracking_uri(tracking_uri, write=False)
    db = store.sqlite_path(uri)
    if db is not None and not db.is_file():
        given = "" if tracking_uri is None else f", tracking_uri={tracking_uri!r}"
        raise ArgumentError(
            f"No MLflow store at {db}, so no run or registered model to find in it (--tracking-uri, tracking_uri=, "
            f"chooses the store). Received: model={text!r}{given}"
        )
    store.probe(uri)
    return store.client(uri), uri


def _from_run(text: str, run_part: str, name: str, tracking_uri: str | None) -> ModelSource:
    from kerascnn.tracking import store

    c, uri = _client(text, tracking_uri)
    try:
        run = store.find_run(uri, run_part, "model")
    except ArgumentError as e:
        raise e.echoing(f"model={text!r}") from None
    run_id = run.info.run_id
    if name.endswith(".keras"):
        folder = os.path.dirname(name)
        listed = {f.path for f in store.retrying(c.list_artifacts, run_id, folder or None)}
        if name not in listed:
            raise ArgumentError(f"Run {run_id} has no artifact {name!r}. Received: model={text!r}")
        return ModelSource(text, artifact=name, run_id=run_id, tracking_uri=uri)
    logged = store.retrying(
        c.search_logged_models, experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    logged = sorted(logged, key=lambda m: m.creation_timestamp or 0)
    names = sorted({m.name for m in logged})
    chosen = [m for m in logged if not name or m.name == name]
    if not chosen:
        received = f"Received: model={text!r}"
        if names:
            has = ", ".join(names)
            raise ArgumentError(f"No logged model {name} in run {run_id} (its logged models: {has}). {received}")
        parent = run.data.tags.get("mlflow.parentRunId")
        hint = f"; its search's run {parent} holds the best trial's model" if parent else ""
        raise ArgumentError(f"Run {run_id} has no logged model{hint}. {received}")
    return ModelSource(text, model_id=chosen[-1].model_id, run_id=run_id, tracking_uri=uri)


def _from_registry(text: str, tracking_uri: str | None) -> ModelSource:
    name, alias, version = _registry_parts(text)
    c, uri = _client(text, tracking_uri)
    if alias is None and version is None:  # models:/m-<id>, a logged model
        logged = _registry_call(c.get_logged_model, text, "No logged model with this id", name)
        return ModelSource(text, model_id=logged.model_id, run_id=None, tracking_uri=uri)
    _registry_call(c.get_registered_model, text, "No registered model with this name", name)
    if alias is not None:
        found = _registry_call(
            c.get_model_version_by_alias, text, f"Registered model {name!r} has no such alias", name, alias
        )
    else:
        found = _registry_call(
            c.get_model_version, text, f"Registered model {name!r} has no such version", name, version
        )
    model_id = getattr(found, "model_id", None) or str(found.source).removeprefix("models:/")
    if not model_id.startswith("m-"):
        raise ArgumentError(
            f"Version {found.version} of {name!r} is not an MLflow 3 logged model (source "
            f"{found.source}). Received: model={text!r}"
        )
    return ModelSource(text, model_id=model_id, tracking_uri=uri, version=str(found.version))


def _registry_parts(text: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/m-<id>`` as (name or id, alias, version)."""
    rest = text[len("models:/") :]
    name, alias, version = rest, None, None
    if "@" in rest:
        name, _, alias = rest.rpartition("@")
    elif re.fullmatch(r".+/\d+", rest):
        name, _, version = rest.rpartition("/")
    elif not rest.startswith("m-"):
        raise ArgumentError(
            f"`model` must be models:/NAME@ALIAS, models:/NAME/VERSION or models:/m-<id>. Received: model={text!r}"
        )
    if not name or (alias is not None and not alias):
        raise ArgumentError(f"`model` must be models:/NAME@ALIAS or models:/NAME/VERSION. Received: model={text!r}")
    return name, alias, version


def _registry_call(fn: Any, text: str, missing: str, *args: Any) -> Any:
    """Calls the registry; "not found" answers become one-line argument errors."""
    from kerascnn.tracking import store

    try:
        return store.retrying(fn, *args)
    except Exception as e:
        code = str(getattr(e, "error_code", ""))
        if "NOT_FOUND" in code or "not found" in str(e).lower() or "INVALID_PARAMETER" in code:
            raise ArgumentError(f"{missing}. Received: model={text!r}") from None
        raise


def is_keras_model(model: Any) -> bool:
    """Whether ``model`` is a Keras model object (rather than a MODEL argument)."""
    return hasattr(model, "predict") and hasattr(model, "input_shape") and hasattr(model, "layers")


def from_keras(model: Any) -> LoadedModel:
    """A Keras model in memory: a kit model this process trained, saved or loaded as its file would be
    (class names, adaptation); any other used as it is if it takes ``uint8`` images, else behind a front
    that scales ``uint8`` images of its input shape to [0, 1] (no padding or resizing: images must have
    that shape).

    Example:
        >>> from_keras(kerascnn.train("mnist_cnn", "mnist").model).image_shape  # doctest: +SKIP
        (28, 28, 1)
    """
    from kerascnn.data import Adaptation
    from kerascnn.loading import known_info
    from kerascnn.serving import served_model

    received = f"<Keras model {model.name}>"
    if info := known_info(model):  # a kit model this process trained, saved or loaded: as its file
        return _with_info(model, info, ModelSource(received))
    try:
        takes_uint8 = str(model.input.dtype) == "uint8"
    except AttributeError:  # a Sequential model never called on a symbolic input has no front either
        takes_uint8 = False
    shape = image_input(model, f"model={received}")
    classes = class_output(model, f"model={received}")
    served = model if takes_uint8 else served_model(model, Adaptation(shape, shape))
    return LoadedModel(served, [str(i) for i in range(classes)], None, ModelSource(received))


def open_model(model: Any, tracking_uri: str | None = None, *, unsafe: bool = False) -> LoadedModel:
    """:func:`load` of :func:`resolve`, or :func:`from_keras` for a Keras model object.

    Example:
        >>> open_model("models:/digits@champion").class_names[:2]  # doctest: +SKIP
        ['0', '1']
    """
    if is_keras_model(model):
        return from_keras(model)
    return load(resolve(model, tracking_uri), unsafe=unsafe)


def load(source: ModelSource, *, unsafe: bool = False) -> LoadedModel:
    """The model ``source`` names, taking raw ``uint8`` images (see the module docstring).

    Example:
        >>> loaded = load(resolve("runs:/2975731803f1"))  # doctest: +SKIP
        >>> loaded.image_shape, loaded.class_names[:3]  # doctest: +SKIP
        ((28, 28, 1), ['0', '1', '2'])
    """
    if source.path is None and source.artifact is None:
        return _load_logged(source)
    with keras_file(source) as path:
        return _load_file(source, path, unsafe)


@contextlib.contextmanager
def keras_file(source: ModelSource) -> Iterator[Path]:
    """The ``.keras`` file ``source`` names, local while the block runs: the file itself, the
    artifact named, or the ``.keras`` artifact of the run a logged or registered model comes from
    (the model as trained, without the raw-image front of the logged one).

    Example:
        >>> with keras_file(resolve("runs:/2975731803f1")) as path:  # doctest: +SKIP
        ...     path.name
        'model.keras'
    """
    if source.path is not None:
        yield source.path
        return
    run_id, name = (source.run_id, source.artifact) if source.artifact else _run_keras_artifact(source)
    with tempfile.TemporaryDirectory(prefix="kerascnn-model-") as folder:
        yield Path(download(run_id=run_id, artifact_path=name, tracking_uri=source.tracking_uri, dst_path=folder))


def _run_keras_artifact(source: ModelSource) -> tuple[str, str]:
    """The run and ``.keras`` artifact a logged model was made from: the run's newest model of its
    name only (a resumed search logs ``best_model`` again, over the same ``best_model.keras``)."""
    from kerascnn.tracking import store

    c = store.client(str(source.tracking_uri))
    logged = store.retrying(c.get_logged_model, source.model_id)
    run_id, artifact = logged.source_run_id, KERAS_ARTIFACTS.get(logged.name)
    if run_id is None or artifact is None:
        raise ArgumentError(
            f"The logged model {logged.name!r} was not made by a kit run, which keeps its .keras file. "
            f"Received: model={source.text!r}"
        )
    made = store.retrying(
        c.search_logged_models, experiment_ids=[logged.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    if any(m.name == logged.name and (m.creation_timestamp or 0) > (logged.creation_timestamp or 0) for m in made):
        raise ArgumentError(
            f"This is an older {logged.name} of run {run_id}, whose {artifact} is now a newer one "
            f"(runs:/{run_id[:12]}). Received: model={source.text!r}"
        )
    return run_id, artifact


def load_keras(source: ModelSource, path: Path, *, unsafe: bool = False) -> Any:
    """The Keras model in ``path`` (:func:`keras_file` of ``source``), uncompiled; its errors echo
    the MODEL the user gave.

    Example:
        >>> load_keras(resolve("model.keras"), Path("model.keras")).name  # doctest: +SKIP
        'mnist_cnn'
    """
    from kerascnn import checks
    from kerascnn.loading import load_model

    checks.boolean("unsafe", unsafe)
    try:
        return load_model(path, unsafe=unsafe, compile=False)
    except ArgumentError as e:
        raise e.echoing(f"model={source.text!r}") from None


def keras_and_info(
    model: Any, tracking_uri: str | None = None, *, unsafe: bool = False
) -> tuple[Any, dict[str, Any], str]:
    """The Keras model ``model`` is or names, as saved (no front for raw images), the kit's info it
    carries (:func:`kerascnn.loading.model_info`; empty for a model that is not the kit's), and how
    errors echo it (``model=...``).

    Example:
        >>> net, info, received = keras_and_info("model.keras")  # doctest: +SKIP
        >>> info["dataset"], received  # doctest: +SKIP
        ('mnist', "model='model.keras'")
    """
    from kerascnn.loading import known_info, model_info

    if is_keras_model(model):
        return model, known_info(model), f"model=<Keras model {model.name}>"
    source = resolve(model, tracking_uri)
    with keras_file(source) as path:
        return load_keras(source, path, unsafe=unsafe), model_info(path), f"model={source.text!r}"


def image_input(net: Any, received: str) -> tuple[int, int, int]:
    """The ``(height, width, channels)`` of the images ``net`` takes; a one-line error (ending in
    ``Received: {received}``) for a model without one such input of a fixed size.

    Example:
        >>> image_input(kerascnn.create_model("lenet5"), "model='lenet5'")  # doctest: +SKIP
        (28, 28, 1)
    """
    shape = net.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[1:])):
        raise ArgumentError(
            f"The model takes input of shape {shape}; kerascnn feeds one input of images of a fixed (height, "
            f"width, channels). Received: {received}"
        )
    return shape[1:]


def class_output(net: Any, received: str) -> int:
    """The number of classes ``net`` scores; a one-line error (ending in ``Received: {received}``)
    for a model without one output of shape ``(batch, classes)``, two classes or more.

    Example:
        >>> class_output(kerascnn.create_model("lenet5"), "model='lenet5'")  # doctest: +SKIP
        10
    """
    shape = net.output_shape
    if not (isinstance(shape, tuple) and len(shape) == 2 and isinstance(shape[1], int) and shape[1] >= 2):
        raise ArgumentError(
            f"The model outputs shape {shape}; kerascnn reads one output of class scores, (batch, classes) with "
            f"2 classes or more. Received: {received}"
        )
    return shape[1]


def _load_file(source: ModelSource, path: Path, unsafe: bool) -> LoadedModel:
    from kerascnn.loading import model_info

    return _with_info(load_keras(source, path, unsafe=unsafe), model_info(path), source)


def _with_info(net: Any, info: dict[str, Any], source: ModelSource) -> LoadedModel:
    """``net`` taking raw images, as the ``info`` it was saved with says (class names, adaptation)."""
    from kerascnn.data import Adaptation
    from kerascnn.serving import served_model

    shape = image_input(net, f"model={source.text!r}")
    classes = class_output(net, f"model={source.text!r}")
    adaptation = info.get("adaptation") or {"source_shape": shape, "target_shape": shape}
    served = served_model(net, Adaptation(tuple(adaptation["source_shape"]), tuple(adaptation["target_shape"])))
    names = [str(n) for n in info.get("class_names", [])]
    return LoadedModel(
        served, names if len(names) == classes else [str(i) for i in range(classes)], info.get("dataset"), source
    )


def _load_logged(source: ModelSource) -> LoadedModel:
    """Downloads the logged model's files from the store given, then loads them with MLflow's Keras flavor."""
    import mlflow.keras
    from mlflow.models import Model

    from kerascnn.tracking import store

    c = store.client(str(source.tracking_uri))
    location = store.retrying(c.get_logged_model, source.model_id).artifact_location
    with tempfile.TemporaryDirectory(prefix="kerascnn-model-") as folder:
        local = download(artifact_uri=location, tracking_uri=source.tracking_uri, dst_path=folder)
        metadata = Model.load(os.path.join(local, "MLmodel")).metadata or {}
        model = mlflow.keras.load_model(local)
    classes = class_output(model, f"model={source.text!r}")
    names = [str(n) for n in metadata.get("class_names", [])]
    if str(model.input.dtype) != "uint8":
        raise ArgumentError(
            f"The logged model takes {model.input.dtype} tensors, not raw uint8 images (logged by an "
            f"older kit?). Received: model={source.text!r}"
        )
    return LoadedModel(
        model, names if len(names) == classes else [str(i) for i in range(classes)], metadata.get("dataset"), source
    )


def download(**kwargs: Any) -> str:
    """``mlflow.artifacts.download_artifacts`` without its progress bar (it would break one-line errors and
    ``--json`` logs); returns the local path.

    Example:
        >>> download(artifact_uri="file:///tmp/store/artifacts/MLmodel", dst_path=".")  # doctest: +SKIP
    """
    import mlflow.artifacts

    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        return mlflow.artifacts.download_artifacts(**kwargs)
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous
