"""Layers shared by the families."""

from __future__ import annotations

from typing import Any

from keras import layers


def predictions(num_classes: int, kernel_regularizer: Any = None) -> layers.Dense:
    """The softmax classifier, kept in float32 under mixed precision."""
    return layers.Dense(
        num_classes,
        activation="softmax",
        dtype="float32",
        kernel_regularizer=kernel_regularizer,
        name="predictions",
    )


def dense_head(dense_units: tuple[int, ...], dropout: float, num_classes: int) -> list[layers.Layer]:
    """Flatten, ReLU dense layers ``fc1, fc2, ...`` each followed by dropout, then the classifier."""
    head: list[layers.Layer] = [layers.Flatten(name="flatten")]
    for i, units in enumerate(dense_units, start=1):
        head.append(layers.Dense(units, activation="relu", name=f"fc{i}"))
        if dropout:
            head.append(layers.Dropout(dropout, name=f"fc{i}_dropout"))
    return [*head, predictions(num_classes)]
