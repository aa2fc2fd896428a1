"""AlexNet (Krizhevsky et al., 2012), single-tower, without LRN."""

from __future__ import annotations

from typing import Any

from kerascnn import arithmetic, checks
from kerascnn.models._layers import conv_relu, dense_head, keras, layers
from kerascnn.models.registry import register_family, register_model
from kerascnn.recipes import Recipe


def _windows(conv1_padding: int = 2) -> list[arithmetic.Window]:
    return [
        (11, 4, conv1_padding),
        (3, 2, "valid"),
        (5, 1, "same"),
        (3, 2, "valid"),
        (3, 1, "same"),
        (3, 1, "same"),
        (3, 1, "same"),
        (3, 2, "valid"),
    ]


def _check_padding(conv1_padding: object) -> int:
    return checks.non_negative_int("conv1_padding", conv1_padding)


def min_input_size(conv1_padding: int = 2, **overrides) -> int:
    """Smallest height/width: 63 with the default 2-pixel padding of conv1."""
    return arithmetic.min_input_size(_windows(_check_padding(conv1_padding)))


def alexnet(
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    filters: tuple[int, ...] = (96, 256, 384, 384, 256),
    dense_units: tuple[int, ...] = (4096, 4096),
    dropout: float = 0.5,
    batch_norm: bool = False,
    conv1_padding: int = 2,
) -> keras.Sequential:
    """AlexNet: conv 11x11/4, conv 5x5, three conv 3x3, three max-pools, two FC.

    Args:
        input_shape: ``(height, width, channels)``; 224x224x3 (or 227 with
            ``conv1_padding=0``, the paper's arithmetic) on ImageNet.
        num_classes: Number of classes.
        filters: Filters of the five convolutions.
        dense_units: Units of the two hidden dense layers.
        dropout: Dropout rate after each hidden dense layer.
        batch_norm: Add batch normalisation after each convolution (epsilon 1e-5, momentum 0.9 in
            Keras' terms: PyTorch's defaults, as in the VGG-BN reference).
        conv1_padding: Zero pixels added around the input of the first
            convolution; 2 maps 224 to 55 like 0 maps 227 to 55.

    Example:
        >>> model = alexnet(input_shape=(224, 224, 3), num_classes=1000)
    """
    filters = checks.int_tuple("filters", filters, length=5)
    dense_units = checks.int_tuple("dense_units", dense_units, length=2)
    dropout = checks.fraction("dropout", dropout)
    batch_norm = checks.boolean("batch_norm", batch_norm)
    _check_padding(conv1_padding)
    checks.min_spatial_size("alexnet", input_shape, min_input_size(conv1_padding))
    kernels, strides = (11, 5, 3, 3, 3), (4, 1, 1, 1, 1)
    pooled_after = {1, 2, 5}

    model = keras.Sequential(name="alexnet")
    model.add(keras.Input(shape=input_shape, name="input"))
    if conv1_padding:
        model.add(layers.ZeroPadding2D(conv1_padding, name="block1_pad"))
    for i, (f, k, s) in enumerate(zip(filters, kernels, strides), start=1):
        for layer in conv_relu(
            f,
            k,
            name=f"block{i}_conv",
            bn_name=f"block{i}_bn",
            relu_name=f"block{i}_relu",
            batch_norm=batch_norm,
            strides=s,
            padding="valid" if i == 1 else "same",
        ):
            model.add(layer)
        if i in pooled_after:
            model.add(layers.MaxPooling2D(3, strides=2, name=f"block{i}_pool"))
    for layer in dense_head(dense_units, dropout, num_classes):
        model.add(layer)
    return model


register_model(alexnet)


def search_space(hp: Any, *, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Dropout, batch-norm and learning rate of AlexNet."""
    hp.Choice("learning_rate", [1e-4, 3e-4, 1e-3])
    return alexnet(
        input_shape=input_shape,
        num_classes=num_classes,
        dropout=hp.Float("dropout", 0.25, 0.5, step=0.25),
        batch_norm=hp.Boolean("batch_norm"),
    )


register_family(
    "alexnet",
    builder=alexnet,
    recipe=Recipe(
        optimizer="adam", learning_rate=3e-4, schedule="cosine", warmup_epochs=0.5, batch_size=128, epochs=10
    ),
    space=search_space,
    min_input_size=min_input_size,
)
