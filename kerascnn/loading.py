"""Loading saved models safely.

``.keras`` files load with Keras' ``safe_mode=True``: a file whose config would
run arbitrary Python (a ``Lambda`` layer) is refused unless the caller says
``unsafe=True``. Legacy ``.h5`` files cannot be checked that way and are
refused unless ``unsafe=True``. Arrays are read with ``allow_pickle=False``
(see :mod:`kerascnn.data`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kerascnn.errors import ArgumentError


def pip_requirements() -> list[str]:
    """The pins an MLflow Keras model needs (given explicitly: MLflow's inference takes seconds).

    Example:
        >>> any(r.startswith("keras==") for r in pip_requirements())
        True
    """
    from importlib import metadata

    pins = []
    for name, dist in (("tensorflow", ("tensorflow", "tensorflow-cpu")), ("keras", ("keras",)), ("mlflow", ("mlflow",))):
        for candidate in dist:
            try:
                pins.append(f"{name}=={metadata.version(candidate)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return pins


def load_model(path: str | os.PathLike, *, unsafe: bool = False, compile: bool = True) -> Any:
    """Loads a ``.keras`` model file safely.

    Args:
        path: A ``.keras`` file (``.h5`` only with ``unsafe=True``).
        unsafe: Allow files that can run code when loaded (``Lambda`` layers,
            legacy HDF5). Only for files you trust.
        compile: Restore the training configuration too.

    Returns:
        The ``keras.Model``.

    Raises:
        ValueError: Missing file, unknown format, or unsafe content without ``unsafe=True``.

    Example:
        >>> model = load_model("mlruns/artifacts/kerascnn/<run_id>/artifacts/model.keras")  # doctest: +SKIP
    """
    file = Path(path)
    if not file.is_file():
        raise ArgumentError(f"Model file not found. Received: path={str(path)!r}")
    suffix = file.suffix.lower()
    if suffix in (".h5", ".hdf5") and not unsafe:
        raise ArgumentError(
            "Legacy HDF5 models can execute code when loaded and are not loaded from untrusted paths; "
            f"re-save as .keras, or pass unsafe=True (CLI: --unsafe) if you trust the file. Received: path={str(path)!r}"
        )
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise ArgumentError(f"Model files must end in .keras. Received: path={str(path)!r}")
    import keras

    try:
        return keras.saving.load_model(file, compile=compile, safe_mode=not unsafe)
    except ValueError as e:
        if "safe_mode" in str(e) or "Lambda" in str(e):
            raise ArgumentError(
                "The model contains a Lambda layer, which runs arbitrary code when loaded; refused in safe "
                f"mode. Pass unsafe=True (CLI: --unsafe) if you trust the file. Received: path={str(path)!r}"
            ) from None
        raise ArgumentError(f"Cannot load the model ({' '.join(str(e).split())[:300]}). Received: path={str(path)!r}") from None
    except (OSError, KeyError) as e:
        raise ArgumentError(f"Model file is corrupt or not a Keras archive ({type(e).__name__}). Received: path={str(path)!r}") from None
