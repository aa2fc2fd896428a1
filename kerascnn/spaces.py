"""KerasTuner search spaces, one ``build(hp)`` per model family.

Each space calls the registered builder through ``create_model``, and every
hyperparameter is named like the builder keyword it sets (``filters``,
``width``, ``batch_norm``, ...), or like ``train()``'s argument for the
optimizer (``learning_rate``). All values are discrete, so every tuner,
``grid`` included, can search every space.

A custom space is any ``build(hp, *, input_shape, num_classes) -> keras.Model``;
the tuner compiles the model unless ``build`` already did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kerascnn.registry import create_model

Space = Callable[..., Any]
LEARNING_RATES = [3e-4, 1e-3, 3e-3, 6e-3]


def mnist_cnn(hp: Any, *, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Filters, dense units, dropout and learning rate of the classic MNIST CNN."""
    hp.Choice("learning_rate", LEARNING_RATES)
    return create_model(
        "mnist_cnn", input_shape=input_shape, num_classes=num_classes,
        filters=hp.Choice("filters", [16, 32, 64]),
        dense_units=hp.Choice("dense_units", [32, 64, 128]),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.25),
    )  # fmt: skip


def lenet5(hp: Any, *, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Activation, pooling and learning rate of LeNet-5."""
    hp.Choice("learning_rate", LEARNING_RATES)
    return create_model(
        "lenet5", input_shape=input_shape, num_classes=num_classes,
        activation=hp.Choice("activation", ["tanh", "relu"]),
        pooling=hp.Choice("pooling", ["avg", "max"]),
    )  # fmt: skip


def alexnet(hp: Any, *, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Dropout, batch-norm and learning rate of AlexNet."""
    hp.Choice("learning_rate", [1e-4, 3e-4, 1e-3])
    return create_model(
        "alexnet", input_shape=input_shape, num_classes=num_classes,
        dropout=hp.Float("dropout", 0.25, 0.5, step=0.25),
        batch_norm=hp.Boolean("batch_norm"),
    )  # fmt: skip


def vgg(hp: Any, *, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Variant (depth), width, batch-norm, dropout and learning rate of VGG; 256-unit classifier."""
    hp.Choice("learning_rate", [1e-4, 3e-4, 1e-3])
    depth = hp.Choice("depth", [11, 13, 16])
    return create_model(
        f"vgg{depth}", input_shape=input_shape, num_classes=num_classes,
        width=hp.Choice("width", [16, 32, 64]),
        batch_norm=hp.Boolean("batch_norm"),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.25),
        dense_units=(256, 256),
    )  # fmt: skip


def resnet(hp: Any, *, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Depth (18/34), width, weight decay and learning rate of ResNet."""
    hp.Choice("learning_rate", [0.01, 0.03, 0.1])
    depth = hp.Choice("depth", [18, 34])
    return create_model(
        f"resnet{depth}", input_shape=input_shape, num_classes=num_classes,
        width=hp.Choice("width", [16, 32, 64]),
        weight_decay=hp.Choice("weight_decay", [0.0, 1e-4, 5e-4]),
    )  # fmt: skip


SPACES: dict[str, Space] = {"mnist_cnn": mnist_cnn, "lenet5": lenet5, "alexnet": alexnet, "vgg": vgg, "resnet": resnet}
RECIPE_MODEL = {"mnist_cnn": "mnist_cnn", "lenet5": "lenet5", "alexnet": "alexnet", "vgg": "vgg11", "resnet": "resnet18"}


def min_input_size(family: str) -> int:
    """The smallest image side every model of the space accepts (the data is adapted to it)."""
    from kerascnn.registry import get_entry

    return get_entry(RECIPE_MODEL[family]).min_input_size()
