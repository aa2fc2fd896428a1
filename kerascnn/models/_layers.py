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
