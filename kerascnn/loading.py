"""Saving and loading models safely, with what they need to be used again.

``.keras`` files load with Keras' ``safe_mode=True``: a file whose config would run
arbitrary Python (a ``Lambda`` layer) is refused unless the caller says ``unsafe=True``.
Legacy ``.h5`` files cannot be checked that way and are refused unless ``unsafe=True``.
Arrays are read with ``allow_pickle=False`` (see :mod:`kerascnn.data`).

The kit's ``.keras`` files also carry ``kerascnn.json`` inside the archive (Keras ignores
it): the class names, the images the model was trained on and how they were adapted, so
``evaluate`` and ``predict`` can check and prepare new images the same way. A model object this
process saved or loaded that way keeps them too (:func:`known_info`): ``train(...).model`` is
evaluated and predicted with as its file would be.
"""

from __future__ import annotations

import json
import os
import re
import weakref
import zipfile
from pathlib import Path
from typing import Any

from kerascnn import checks
from kerascnn.errors import ArgumentError


def pip_requirements() -> list[str]:
    """The pins an MLflow Keras model needs (given explicitly: MLflow's inference takes seconds).

    Example:
        >>> any(r.startswith("keras==") for r in pip_requirements())
        True
    """
    from importlib import metadata

    pins = []
    for name, dist in (
        ("tensorflow", ("tensorflow", "tensorflow-cpu")),
        ("keras", ("keras",)),
        ("mlflow", ("mlflow",)),
    ):
        for candidate in dist:
            try:
                pins.append(f"{name}=={metadata.version(candidate)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return pins


INFO_FILE = "kerascnn.json"


def save_model(model: Any, path: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Saves ``model`` as ``.keras`` with ``info`` (class names, image shape, adaptation) inside.

    Example:
        >>> save_model(model, "model.keras", {"class_names": ["cat", "dog"]})  # doctest: +SKIP
    """
    file = Path(path)
    model.save(file)
    with zipfile.ZipFile(file, "a") as archive:
        archive.writestr(INFO_FILE, json.dumps(info, indent=1))
    remember(model, info)
    return file


_KNOWN: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def remember(model: Any, info: dict[str, Any]) -> None:
    """Keeps ``info`` for the model object ``model`` (see :func:`known_info`), as long as it lives.

    Example:
        >>> remember(model, {"class_names": ["cat", "dog"]})  # doctest: +SKIP
    """
    if info:
        _KNOWN[model] = dict(info)


def known_info(model: Any) -> dict[str, Any]:
    """The ``info`` of a model object that :func:`save_model` saved or :func:`load_model` loaded
    in this process (empty for any other model).

    Example:
        >>> known_info(kerascnn.train("mnist_cnn", "mnist").model)["dataset"]  # doctest: +SKIP
        'mnist'
    """
    try:
        return dict(_KNOWN.get(model, {}))
    except TypeError:  # (not a model: unhashable, or no weak reference to it)
        return {}


def model_info(path: str | os.PathLike) -> dict[str, Any]:
    """The ``info`` a ``.keras`` file was saved with (empty for files from elsewhere).

    Example:
        >>> model_info("model.keras")["class_names"]  # doctest: +SKIP
        ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return dict(json.loads(archive.read(INFO_FILE)))
    except (KeyError, OSError, zipfile.BadZipFile, ValueError):
        return {}


def load_model(path: str | os.PathLike, *, unsafe: bool = False, compile: bool = True, argument: str = "path") -> Any:
    """Loads a ``.keras`` model file safely.

    Args:
        path: A ``.keras`` file (``.h5`` only with ``unsafe=True``).
        unsafe: Allow files that can run code when loaded (``Lambda`` layers,
            legacy HDF5). Only for files you trust.
        compile: Restore the training configuration too.
        argument: The caller's name for ``path``, which errors end with (``Received: weights=...``).

    Returns:
        The ``keras.Model``.

    Raises:
        ValueError: Missing file, unknown format, or unsafe content without ``unsafe=True``.

    Example:
        >>> model = load_model("mlruns/artifacts/kerascnn/<run_id>/artifacts/model.keras")  # doctest: +SKIP
    """
    checks.boolean("compile", compile)
    file, received = check_file(path, unsafe=unsafe, argument=argument), f"Received: {argument}={str(path)!r}"
    import keras

    try:
        model = keras.saving.load_model(file, compile=compile, safe_mode=not unsafe)
    except (ValueError, TypeError) as e:
        raise _refused(e, received) from None
    except (OSError, KeyError) as e:
        raise ArgumentError(f"Model file is corrupt or not a Keras archive ({type(e).__name__}). {received}") from None
    remember(model, model_info(file))
    return model


def check_file(path: Any, *, unsafe: bool = False, argument: str = "path") -> Path:
    """What :func:`load_model` checks before Keras loads: a ``.keras`` file (``.h5`` with ``unsafe``)
    that exists and is a zip archive; returns it as a ``Path``.

    Example:
        >>> check_file("missing.keras")
        Traceback (most recent call last):
        kerascnn.errors.ArgumentError: Model file not found. Received: path='missing.keras'
    """
    checks.boolean("unsafe", unsafe)
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ArgumentError(f"`{argument}` must be the path of a .keras file. Received: {argument}={path!r}")
    file, received = Path(path), f"Received: {argument}={str(path)!r}"
    if file.is_dir():
        raise ArgumentError(f"`{argument}` names a folder, not a .keras file. {received}")
    if not file.is_file():
        raise ArgumentError(f"Model file not found. {received}")
    suffix = file.suffix.lower()
    if suffix in (".h5", ".hdf5") and not unsafe:
        raise ArgumentError(
            "Legacy HDF5 models can execute code when loaded and are not loaded from untrusted paths; re-save "
            f"as .keras, or pass unsafe=True (--unsafe) if you trust the file. {received}"
        )
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise ArgumentError(f"Model files must end in .keras. {received}")
    if suffix == ".keras" and not zipfile.is_zipfile(file):  # (Keras says "File not found" for these)
        raise ArgumentError(
            f"Model file is corrupt or not a Keras archive (empty, cut short or another format). {received}"
        )
    return file


def _refused(error: Exception, received: str) -> ArgumentError:
    """Keras' error for a model it would not or could not deserialize, as one line."""
    text = str(error)
    if isinstance(error, ValueError) and ("safe_mode" in text or "Lambda" in text):
        return ArgumentError(
            "The model contains a Lambda layer, which runs arbitrary code when loaded; refused in safe "
            f"mode. Pass unsafe=True (--unsafe) if you trust the file. {received}"
        )
    missing = re.search(r"Could not locate class '([^']+)'", text) if isinstance(error, TypeError) else None
    if missing:  # a custom class not registered in this process
        return ArgumentError(
            f"The model uses a custom class ({missing.group(1)!r}) that is not registered here: import its code "
            f"(with @keras.saving.register_keras_serializable()) before loading it. {received}"
        )
    return ArgumentError(f"Cannot load the model ({' '.join(text.split())[:300]}). {received}")
