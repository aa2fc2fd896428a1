"""Models that take raw images: the training pipeline's preprocessing as Keras layers in front.

The MLflow model a run logs is ``served_model(net, adaptation)``: ``uint8`` images as the
dataset has them go in (MNIST: ``(N, 28, 28, 1)``), probabilities come out. The front does
what the tf.data pipeline did -- scale to [0, 1], zero-pad or resize to the model's input,
grey to RGB -- with plain Keras layers (no ``Lambda``), so ``mlflow.pyfunc``, ``mlflow
models serve`` and safe-mode Keras load it without the kit installed.
"""

from __future__ import annotations

from typing import Any

from kerascnn.data import Adaptation


def front_layers(adaptation: Adaptation) -> list[Any]:
    """The layers that turn ``uint8`` images of ``adaptation.source_shape`` into the model's input."""
    from keras import layers

    (h, w, _), (th, tw, _) = adaptation.source_shape, adaptation.target_shape
    stack: list[Any] = [layers.Rescaling(1 / 255.0, name="serve_rescale")]
    if adaptation.resize == "pad":  # centred, as the pipeline pads
        top, left = (th - h) // 2, (tw - w) // 2
        stack.append(layers.ZeroPadding2D(((top, th - h - top), (left, tw - w - left)), name="serve_pad"))
    elif adaptation.resize == "resize":
        stack.append(layers.Resizing(th, tw, name="serve_resize"))
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
        x = layers.Concatenate(name="serve_grey_to_rgb")([x, x, x])
    return keras.Model(images, net(x), name=f"{net.name}_serving")
