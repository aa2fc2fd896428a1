"""Keras for the family modules, imported on first use, and the layers the families share.

``keras`` and ``layers`` here stand in for ``import keras`` / ``from keras import layers``
until a builder first touches them: registering and listing the models never loads
TensorFlow (``kerascnn models`` answers in about a second instead of ten). Within
:func:`checks_only`, that first touch raises :class:`KerasNeeded` instead: a builder's own
checks of its options run without TensorFlow (see ``ModelEntry.check_options``).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import types
from collections.abc import Iterator
from typing import Any

_CHECKING = threading.local()


class KerasNeeded(Exception):
    """A builder run within :func:`checks_only` reached its first use of Keras: its checks passed."""


class _LazyModule(types.ModuleType):
    """Module ``name``, imported (TensorFlow's start-up lines hidden) on first attribute access."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        if getattr(_CHECKING, "on", False):
            raise KerasNeeded(f"{self.__name__}.{attr}")
        from kerascnn.device import import_tensorflow

        import_tensorflow()
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)


keras: Any = _LazyModule("keras")
layers: Any = _LazyModule("keras.layers")


@contextlib.contextmanager
def checks_only() -> Iterator[None]:
    """On this thread, a family builder stops with :class:`KerasNeeded` where it would load Keras.

    Example:
        >>> from kerascnn.models.mnist_cnn import mnist_cnn
        >>> with checks_only():  # (a good value: KerasNeeded, or a model if Keras is loaded already)
        ...     mnist_cnn(input_shape=(28, 28, 1), num_classes=10, dropout=2)
        Traceback (most recent call last):
        kerascnn.errors.ArgumentError: `dropout` must be a number in [0, 1). Received: dropout=2
    """
    before, _CHECKING.on = getattr(_CHECKING, "on", False), True
    try:
        yield
    finally:
        _CHECKING.on = before  # (a builder that creates another model runs its checks within this one)


def predictions(num_classes: int, kernel_regularizer: Any = None) -> Any:
    """The softmax classifier, kept in float32 under mixed precision."""
    return layers.Dense(
        num_classes,
        activation="softmax",
        dtype="float32",
        kernel_regularizer=kernel_regularizer,
        name="predictions",
    )


def conv_relu(
    filters: int,
    kernel: int,
    *,
    name: str,
    bn_name: str,
    relu_name: str,
    batch_norm: bool,
    strides: int = 1,
    padding: str = "same",
) -> list[Any]:
    """A convolution and its ReLU, with batch normalisation between them when ``batch_norm``
    (torchvision's epsilon 1e-5 and momentum 0.1, 0.9 in Keras' terms: VGG-BN's, AlexNet-BN's)."""
    if not batch_norm:
        return [layers.Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu", name=name)]
    return [
        layers.Conv2D(filters, kernel, strides=strides, padding=padding, name=name),
        layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=bn_name),
        layers.ReLU(name=relu_name),
    ]


def dense_head(dense_units: tuple[int, ...], dropout: float, num_classes: int) -> list[Any]:
    """Flatten, ReLU dense layers ``fc1, fc2, ...`` each followed by dropout, then the classifier."""
    head: list[Any] = [layers.Flatten(name="flatten")]
    for i, units in enumerate(dense_units, start=1):
        head.append(layers.Dense(units, activation="relu", name=f"fc{i}"))
        if dropout:
            head.append(layers.Dropout(dropout, name=f"fc{i}_dropout"))
    return [*head, predictions(num_classes)]
