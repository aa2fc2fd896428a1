"""kerascnn: build, describe, train, tune and compare Keras CNNs, tracked in MLflow.

Example:
    >>> import kerascnn
    >>> model = kerascnn.create_model("mnist_cnn", input_shape=(28, 28, 1), num_classes=10)
    >>> print(kerascnn.describe(model))  # doctest: +SKIP

Heavy modules (Keras, TensorFlow, MLflow) load on first use of the names that need
them, so ``import kerascnn`` and the CLI's argument checks are fast.
"""

from __future__ import annotations

import importlib
import random
import warnings
from typing import Any

from kerascnn.models import create_model, list_families, list_models, register_family, register_model

__version__ = "0.2.0"

# MLflow imports tqdm.auto, which warns in Jupyter when ipywidgets is missing; the kit draws no bars there.
warnings.filterwarnings("ignore", message="IProgress not found")

# public name -> the module that defines it (imported on first use)
_LAZY = {
    "describe": "kerascnn.report",
    "load_dataset": "kerascnn.data",
    "train": "kerascnn.training",
    "evaluate": "kerascnn.training",
    "TrainConfig": "kerascnn.config",
    "TuneConfig": "kerascnn.config",
    "tune": "kerascnn.tuning",
    "search_runs": "kerascnn.tracking.queries",
    "leaderboard": "kerascnn.tracking.queries",
    "compare": "kerascnn.tracking.comparison",
    "sync": "kerascnn.tracking.sync",
    "load_model": "kerascnn.loading",
    "convert_torchvision": "kerascnn.pretrained",
    "predict": "kerascnn.prediction",
    "export": "kerascnn.exporting",
    "ArgumentError": "kerascnn.errors",
    "TrainingFailed": "kerascnn.errors",
    "SearchFailed": "kerascnn.errors",
    "ExportMismatch": "kerascnn.errors",
}
# submodules reachable as attributes (kerascnn.plots ...), with their home
_SUBMODULES = {
    "arithmetic": "kerascnn.arithmetic",
    "config": "kerascnn.config",
    "data": "kerascnn.data",
    "device": "kerascnn.device",
    "hardware": "kerascnn.hardware",
    "models": "kerascnn.models",
    "plots": "kerascnn.tracking.plots",
    "recipes": "kerascnn.recipes",
    "spaces": "kerascnn.tuning.spaces",
    "tracking": "kerascnn.tracking",
    "tuning": "kerascnn.tuning",
}

_QUIET_TF = {
    "describe",
    "train",
    "evaluate",
    "tune",
    "load_model",
    "load_dataset",
    "plots",
    "convert_torchvision",
    "predict",
    "export",
}

__all__ = [  # noqa: RUF022 (in the order of the docs)
    "__version__",
    "create_model",
    "list_models",
    "list_families",
    "register_model",
    "register_family",
    "describe",
    "convert_torchvision",
    "load_dataset",
    "train",
    "evaluate",
    "TrainConfig",
    "tune",
    "TuneConfig",
    "search_runs",
    "leaderboard",
    "compare",
    "sync",
    "load_model",
    "predict",
    "export",
    "ArgumentError",
    "TrainingFailed",
    "SearchFailed",
    "ExportMismatch",
]


def __getattr__(name: str) -> Any:
    state = random.getstate()  # Keras' first import draws from Python's generator (rich): the caller's is put back
    try:
        if name in _QUIET_TF:
            from kerascnn.device import import_tensorflow

            import_tensorflow()  # TensorFlow's C++ start-up lines hidden, as the CLI does
        if name in _SUBMODULES:
            value = importlib.import_module(_SUBMODULES[name])
        elif name in _LAZY:
            value = getattr(importlib.import_module(_LAZY[name]), name)
        else:
            raise AttributeError(f"module 'kerascnn' has no attribute {name!r}")
    finally:
        random.setstate(state)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The API, its submodules and the module's dunders (not the names this file imports for itself)."""
    own = {n for n, v in globals().items() if getattr(v, "__name__", "").startswith("kerascnn.")}  # submodules
    dunders = {n for n in globals() if n.startswith("__")}
    return sorted({*__all__, *_LAZY, *_SUBMODULES, *own, *dunders})
