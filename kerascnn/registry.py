"""The model registry: ``register_model``, ``create_model``, ``list_models``.

A model is registered by decorating a small variant function that forwards to
its family's general builder, timm style::

    @register_model
    def vgg16(**kwargs):
        return vgg(**dict(depth=16, **kwargs))

One family lives in one module (``kerascnn.models.vgg``); that module may
define ``min_input_size(**overrides) -> int``, the smallest height/width its
down-sampling accepts, which the data pipeline uses to adapt small images.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kerascnn import checks

_REGISTRY: dict[str, ModelEntry] = {}


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one model name."""

    name: str
    fn: Callable[..., Any]
    family: str
    default_input_shape: tuple[int, int, int]
    default_num_classes: int

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.fn) or ""
        return doc.splitlines()[0] if doc else ""

    @property
    def builder(self) -> Callable[..., Any]:
        """The family's general builder (module attribute named like the family)."""
        return getattr(sys.modules[self.fn.__module__], self.family, self.fn)

    def options(self) -> list[str]:
        """Keyword options the builder accepts besides input_shape/num_classes."""
        params = inspect.signature(self.builder).parameters
        return [n for n in params if n not in ("input_shape", "num_classes")]

    def check_options(self, overrides: dict[str, Any]) -> None:
        """Raises a ``ValueError`` for an option the builder does not have."""
        options = self.options()
        for key, value in overrides.items():
            if key not in options:
                raise ValueError(
                    f"`{self.name}` has no option `{key}`; its options are {', '.join(options)}. "
                    f"Received: {key}={value!r}"
                )

    def min_input_size(self, **overrides: Any) -> int:
        """The smallest height/width this model accepts with ``overrides`` (checked)."""
        fn = getattr(sys.modules[self.fn.__module__], "min_input_size", None)
        return int(fn(**overrides)) if fn else 1


def register_model(
    fn: Callable[..., Any] | None = None,
    *,
    family: str | None = None,
    default_input_shape: tuple[int, int, int] = (224, 224, 3),
    default_num_classes: int = 1000,
) -> Any:
    """Registers a builder under its function name.

    Args:
        fn: The variant function; it takes ``input_shape``, ``num_classes`` and
            builder keyword overrides and returns a ``keras.Model``.
        family: Family name; defaults to the defining module's last part.
        default_input_shape: Shape used when ``create_model`` gets none.
        default_num_classes: Classes used when ``create_model`` gets none.

    Example:
        >>> @register_model(default_input_shape=(28, 28, 1), default_num_classes=10)
        ... def tiny_cnn(**kwargs): ...
    """

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        name = f.__name__
        if name in _REGISTRY:
            raise ValueError(f"Model `{name}` is already registered. Received: name={name!r}")
        _REGISTRY[name] = ModelEntry(
            name=name,
            fn=f,
            family=family or f.__module__.rsplit(".", 1)[-1],
            default_input_shape=tuple(default_input_shape),  # type: ignore[arg-type]
            default_num_classes=default_num_classes,
        )
        return f

    return wrap(fn) if fn is not None else wrap


def list_models(family: str | None = None) -> list[str]:
    """Returns the registered model names, sorted.

    Example:
        >>> "resnet50" in list_models()
        True
    """
    _load_builtin_models()
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)


def known_model(name: str) -> bool:
    """Whether ``name`` is registered or built in, without importing Keras.

    Example:
        >>> known_model("vgg16"), known_model("vgg17")
        (True, False)
    """
    from kerascnn.models import BUILTIN

    return isinstance(name, str) and (name in _REGISTRY or name in BUILTIN)


def check_known(name: str, argument: str = "name") -> str:
    """Raises a ``ValueError`` listing the models if ``name`` is unknown (no Keras import).

    Example:
        >>> check_known("lenet5")
        'lenet5'
    """
    if not known_model(name):
        from kerascnn.models import BUILTIN

        available = ", ".join(sorted(set(_REGISTRY) | set(BUILTIN)))
        raise ValueError(f"Unknown model. Available models: {available}. Received: {argument}={name!r}")
    return name


def get_entry(name: str) -> ModelEntry:
    """Returns the registry entry of ``name`` or raises a ``ValueError``.

    Example:
        >>> get_entry("lenet5").family
        'lenet'
    """
    check_known(name)
    if name not in _REGISTRY:
        _load_builtin_models(name)
    return _REGISTRY[name]


def create_model(
    name: str,
    *,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    weights: Any = None,
    **overrides: Any,
) -> Any:
    """Builds a registered model.

    Args:
        name: A name from ``list_models()``.
        input_shape: ``(height, width, channels)``; the model's standard
            shape when ``None`` (28x28x1 for ``mnist_cnn``, 224x224x3 for the
            ImageNet families).
        num_classes: Number of output classes (>= 2); the standard count when
            ``None``.
        weights: ``None`` (fresh initialisation), ``"imagenet"`` (``vgg16``/``vgg19``), a ``.keras``,
            ``.h5``, ``.pth``/``.pt``/``.npz`` path or a torchvision state dict: see
            :mod:`kerascnn.pretrained` (input conventions, which layers load).
        **overrides: Keyword arguments of the family's builder
            (``width``, ``batch_norm``, ``dropout``, ...).

    Returns:
        An uncompiled ``keras.Model``.

    Example:
        >>> model = create_model("mnist_cnn", input_shape=(28, 28, 1), num_classes=10)
        >>> model.count_params()
        93322
    """
    entry = get_entry(name)
    shape = checks.input_shape(entry.default_input_shape if input_shape is None else input_shape)
    classes = checks.num_classes(entry.default_num_classes if num_classes is None else num_classes)
    entry.check_options(overrides)
    if weights is not None:  # pretrained weights (issue #13)
        from kerascnn.pretrained import create_pretrained

        return create_pretrained(name, weights, input_shape=shape, num_classes=classes, **overrides).model
    return entry.fn(input_shape=shape, num_classes=classes, **overrides)


def _load_builtin_models(name: str | None = None) -> None:
    """Imports the built-in families (or only ``name``'s); importing registers them.

    Deferred so that ``import kerascnn`` is fast and Keras loads only when a
    model is needed.
    """
    import importlib

    from kerascnn.models import BUILTIN

    modules = {BUILTIN[name]} if name is not None else set(BUILTIN.values())
    for module in sorted(modules):
        importlib.import_module(f"kerascnn.models.{module}")
