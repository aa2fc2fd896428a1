"""Models that take raw images: the training pipeline's preprocessing as Keras layers in front.

The MLflow model a run logs is ``served_model(net, adaptation)``: ``uint8`` images as the
dataset has them go in (MNIST: ``(N, 28, 28, 1)``), probabilities come out. The front does
what the tf.data pipeline did -- scale to [0, 1], zero-pad or resize to the model's input,
grey to RGB -- with plain Keras layers (no ``Lambda``), so ``mlflow.pyfunc``, ``mlflow
models serve`` and safe-mode Keras load it without the kit installed.

The training process writes that model's files with MLflow's Keras flavor
(:func:`save_mlflow_model`); the tracking writer only uploads them, so it never loads
TensorFlow beside the training steps.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import threading
from pathlib import Path
from typing import Any

from kerascnn.data import Adaptation


def front_layers(adaptation: Adaptation) -> list[Any]:
    """The layers that turn ``uint8`` images of ``adaptation.source_shape`` into the model's input."""
    from keras import layers

    (h, w, _), (th, tw, _) = adaptation.source_shape, adaptation.target_shape
    # float32 whatever the global policy (a mixed-precision training process builds it too)
    stack: list[Any] = [layers.Rescaling(1 / 255.0, name="serve_rescale", dtype="float32")]
    if adaptation.resize == "pad":  # centred, as the pipeline pads
        top, left = (th - h) // 2, (tw - w) // 2
        padding = ((top, th - h - top), (left, tw - w - left))
        stack.append(layers.ZeroPadding2D(padding, name="serve_pad", dtype="float32"))
    elif adaptation.resize == "resize":
        stack.append(layers.Resizing(th, tw, name="serve_resize", dtype="float32"))
    return stack


def served_model(net: Any, adaptation: Adaptation) -> Any:
    """``net`` behind a front that takes raw ``uint8`` images (see the module docstring).

    Example:
        >>> served = served_model(net, plan_adaptation((28, 28, 1), 32))  # doctest: +SKIP
        >>> served.input.dtype  # doctest: +SKIP
        'uint8'
    """
    import keras
    from keras import layers

    images = keras.Input(shape=adaptation.source_shape, dtype="uint8", name="images")
    x = images
    for layer in front_layers(adaptation):
        x = layer(x)
    if adaptation.to_rgb:
        x = layers.Concatenate(name="serve_grey_to_rgb", dtype="float32")([x, x, x])
    return keras.Model(images, net(x), name=f"{net.name}_serving")


def preload_mlflow() -> None:
    """Starts importing what :func:`save_mlflow_model` needs (MLflow's Keras flavor and its scan
    of the installed packages, ~1.3 s of Python) in a background thread; a tracked ``fit`` calls
    it after its first step, so the run's end does not wait for it.

    Example:
        >>> preload_mlflow()  # doctest: +SKIP
    """
    _preloading()


@functools.cache
def _preloading() -> threading.Thread:
    thread = threading.Thread(target=_import_mlflow, name="kerascnn-mlflow-import", daemon=True)
    thread.start()
    return thread


def _import_mlflow() -> None:
    from kerascnn.loading import pip_requirements

    with contextlib.suppress(Exception):  # imported again where used, which says what failed
        import mlflow.keras  # noqa: F401
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

        warn_dependency_requirement_mismatches(pip_requirements())


def save_mlflow_model(
    net: Any,
    path: Path,
    *,
    example: Any,
    outputs: Any,
    adaptation: Adaptation | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Writes ``net`` as an MLflow Keras model folder at ``path`` (replaced): behind its serving
    front with ``adaptation``, with the signature of ``example`` -> ``outputs`` (arrays with the
    shapes and types of inputs and predictions) and the kit's pinned requirements.

    Example:
        >>> save_mlflow_model(net, Path("m"), example=x[:2], outputs=p[:2], adaptation=a)  # doctest: +SKIP
        PosixPath('m')
    """
    _preloading().join()  # (started now if not before: two threads importing MLflow can deadlock)
    import mlflow.keras
    from mlflow.models import infer_signature

    from kerascnn.loading import pip_requirements

    model = served_model(net, adaptation) if adaptation is not None else net
    shutil.rmtree(path, ignore_errors=True)  # MLflow refuses an existing folder
    mlflow.keras.save_model(
        model,
        str(path),
        signature=infer_signature(example, outputs),
        pip_requirements=pip_requirements(),
        metadata=metadata,
    )
    return path
