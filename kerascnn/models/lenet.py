"""LeNet-5 (LeCun et al., 1998), in its common modern form."""

from __future__ import annotations

from typing import Any

from kerascnn import arithmetic, checks
from kerascnn.models._layers import keras, layers, predictions
from kerascnn.models.registry import register_family, register_model
from kerascnn.recipes import Recipe

_ACTIVATIONS = ("tanh", "relu", "sigmoid")
_POOLS = {"avg": "AveragePooling2D", "max": "MaxPooling2D"}


def min_input_size(**overrides) -> int:
    """Smallest height/width: two valid 5x5 convs and two 2x2 pools need 16."""
    return arithmetic.min_input_size([(5, 1, "valid"), (2, 2, "valid")] * 2)


def lenet(
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    filters: tuple[int, ...] = (6, 16),
    dense_units: tuple[int, ...] = (120, 84),
    activation: str = "tanh",
    pooling: str = "avg",
    dropout: float = 0.0,
) -> keras.Sequential:
    """LeNet: two 5x5 conv + pool stages, then two hidden dense layers.

    Args:
        input_shape: ``(height, width, channels)``; 32x32 in the paper.
        num_classes: Number of classes.
        filters: Filters of the two convolutions (C1, C3).
        dense_units: Units of the hidden dense layers (C5/F6).
        activation: ``"tanh"`` (paper), ``"relu"`` or ``"sigmoid"``.
        pooling: ``"avg"`` (paper's sub-sampling) or ``"max"``.
        dropout: Dropout rate before the classifier (0 adds no layer).

    Example:
        >>> model = lenet(input_shape=(32, 32, 1), num_classes=10)
    """
    filters = checks.int_tuple("filters", filters, length=2)
    dense_units = checks.int_tuple("dense_units", dense_units, length=2)
    checks.one_of("activation", activation, _ACTIVATIONS)
    pooling = checks.one_of("pooling", pooling, _POOLS)
    dropout = checks.fraction("dropout", dropout)
    pool = getattr(layers, _POOLS[pooling])
    checks.min_spatial_size("lenet5", input_shape, min_input_size())
    model = keras.Sequential(name="lenet5")
    model.add(keras.Input(shape=input_shape, name="input"))
    for i, f in enumerate(filters, start=1):
        model.add(layers.Conv2D(f, 5, activation=activation, name=f"block{i}_conv"))
        model.add(pool(2, name=f"block{i}_pool"))
    model.add(layers.Flatten(name="flatten"))
    for i, units in enumerate(dense_units, start=1):
        model.add(layers.Dense(units, activation=activation, name=f"fc{i}"))
    if dropout:
        model.add(layers.Dropout(dropout, name="fc_dropout"))
    model.add(predictions(num_classes))
    return model


@register_model(default_input_shape=(32, 32, 1), default_num_classes=10)
def lenet5(**kwargs) -> keras.Sequential:
    """LeNet-5: conv6-pool-conv16-pool-fc120-fc84, 61,706 parameters at 32x32x1."""
    return lenet(**kwargs)


def search_space(hp: Any, *, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Activation, pooling and learning rate of LeNet-5."""
    hp.Choice("learning_rate", [3e-4, 1e-3, 3e-3, 6e-3])
    return lenet(
        input_shape=input_shape,
        num_classes=num_classes,
        activation=hp.Choice("activation", ["tanh", "relu"]),
        pooling=hp.Choice("pooling", ["avg", "max"]),
    )


register_family(
    "lenet",
    builder=lenet,
    recipe=Recipe(
        optimizer="adam",
        learning_rate=2e-3,
        schedule="cosine",
        warmup_epochs=0.3,
        batch_size=128,
        epochs=5,
        steps_per_execution=8,
    ),
    space=search_space,
    min_input_size=min_input_size,
)
