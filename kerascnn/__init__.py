"""kerascnn: build, describe, train, tune and compare Keras CNNs, tracked in MLflow.

Example:
    >>> import kerascnn
    >>> model = kerascnn.create_model("mnist_cnn", input_shape=(28, 28, 1), num_classes=10)
    >>> print(kerascnn.describe(model))  # doctest: +SKIP

Heavy modules (Keras, TensorFlow, MLflow) load on first use of the names
that need them, so ``import kerascnn`` and the CLI's argument checks are fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from kerascnn.registry import create_model, list_models, register_model

__version__ = "0.1.0"

_LAZY = {
    "describe": "kerascnn.report",
    "load_dataset": "kerascnn.data",
    "train": "kerascnn.training",
    "tune": "kerascnn.tuning",
    "search_runs": "kerascnn.runs",
    "leaderboard": "kerascnn.runs",
    "compare": "kerascnn.comparison",
    "load_model": "kerascnn.loading",
    "evaluate": "kerascnn.training",
    "convert_torchvision": "kerascnn.pretrained",
}

_SUBMODULES = {"device", "plots", "data", "tracking", "spaces", "recipes", "arithmetic"}

__all__ = ["create_model", "list_models", "register_model", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"kerascnn.{name}")
        globals()[name] = value
        return value
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kerascnn' has no attribute {name!r}")
