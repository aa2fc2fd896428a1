"""The model registry: families, their variants, ``create_model`` and ``list_models``.

A family is one module under ``kerascnn/models/`` that declares everything the kit needs
to know about it: its general builder, the small variant functions registered timm-style
over it, its training recipe, its KerasTuner search space and the smallest input its
down-sampling accepts::

    @register_model(fixes={"depth": 16})
    def vgg16(**kwargs):
        return vgg(**kwargs, depth=16)

    register_family("vgg", builder=vgg, recipe=Recipe(...), space=search_space,
                    min_input_size=min_input_size)

Family modules import Keras lazily (see ``_layers.py``), so the registry is filled --
every module under ``kerascnn/models/`` imported -- without loading TensorFlow:
``kerascnn models`` answers in about a second. See CONTRIBUTING.md for a worked example.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kerascnn import checks
from kerascnn.errors import ArgumentError
from kerascnn.recipes import Recipe

Builder = Callable[..., Any]
Space = Callable[..., Any]  # build(hp, *, input_shape, num_classes) -> keras.Model


@dataclass(frozen=True)
class Family:
    """What a family module declares."""

    name: str
    builder: Builder
    recipe: Recipe
    space: Space | None
    min_input_size: Callable[..., int]

    def options(self) -> list[str]:
        """The builder's keyword options besides ``input_shape``/``num_classes``."""
        params = inspect.signature(self.builder).parameters
        return [n for n in params if n not in ("input_shape", "num_classes")]


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one model name."""

    name: str
    fn: Builder
    family: str
    default_input_shape: tuple[int, int, int]
    default_num_classes: int
    fixes: dict[str, Any] = field(default_factory=dict)  # the family options the variant sets (``vgg16``: depth 16)

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.fn) or ""
        return doc.splitlines()[0] if doc else ""

    def options(self) -> list[str]:
        """Keyword options the builder accepts besides ``input_shape``/``num_classes``."""
        if self.family in _FAMILIES:
            return [n for n in _FAMILIES[self.family].options() if n not in self.fixes]
        params = inspect.signature(self.fn).parameters
        return [
            n for n in params if n not in ("input_shape", "num_classes") and params[n].kind != params[n].VAR_KEYWORD
        ]

    def check_options(
        self, overrides: dict[str, Any], input_shape: tuple[int, int, int] | None = None, num_classes: int | None = None
    ) -> None:
        """Raises an ``ArgumentError`` for an option the builder does not have, or (for the kit's
        families, before Keras is loaded) one whose value the builder refuses with ``input_shape``
        and ``num_classes`` (the model's defaults where not given)."""
        options = self.options()
        for key, value in overrides.items():
            if key in self.fixes:
                variants = [m for m in list_models(self.family) if m != self.name]
                raise ArgumentError(
                    f"`{self.name}` sets `{key}` itself; build another variant ({', '.join(variants)}) instead. "
                    f"Received: {key}={value!r}"
                )
            if key not in options:
                raise ArgumentError(
                    f"`{self.name}` has no option `{key}`; its options are {', '.join(options)}. "
                    f"Received: {key}={value!r}"
                )
        self._check_values(overrides, input_shape, num_classes)

    def _check_values(self, overrides: dict[str, Any], shape: tuple[int, int, int] | None, classes: int | None) -> None:
        """The builder's own checks of ``overrides``, seconds before TensorFlow would load: a kit
        family's builder runs up to its first use of Keras (``_layers.checks_only``); an error
        naming one of ``overrides`` is raised. Once Keras is loaded, or for a builder from
        elsewhere (its checks may need the real input), the build checks them."""
        from kerascnn.models import _layers

        module = sys.modules.get(self.fn.__module__)
        kit = self.fn.__module__.startswith("kerascnn.models.") and getattr(module, "keras", None) is _layers.keras
        if not overrides or "keras" in sys.modules or not kit:
            return
        if shape is None:  # (an input the model takes: its default, at least as large as its down-sampling needs)
            side = max(self.default_input_shape[0] or 1, self.min_input_size(**overrides))
            shape = (side, side, self.default_input_shape[2] or 3)
        try:
            with _layers.checks_only():
                self.fn(input_shape=shape, num_classes=classes or self.default_num_classes, **overrides)
        except ArgumentError as e:
            if any(f"Received: {key}=" in str(e) for key in overrides):
                raise
        except Exception:  # KerasNeeded (every check passed), or anything the real build will say
            return

    def min_input_size(self, **overrides: Any) -> int:
        """The smallest height/width this model accepts with ``overrides`` (checked)."""
        family = _FAMILIES.get(self.family)
        return int(family.min_input_size(**overrides)) if family else 1


_MODELS: dict[str, ModelEntry] = {}
_FAMILIES: dict[str, Family] = {}


def register_model(
    fn: Builder | None = None,
    *,
    family: str | None = None,
    fixes: dict[str, Any] | None = None,
    default_input_shape: tuple[int, int, int] = (224, 224, 3),
    default_num_classes: int = 1000,
) -> Any:
    """Registers a builder (a variant function) under its function name; defining the same
    function again (a notebook cell run twice) replaces it, another function of that name is refused.

    Args:
        fn: The variant; it takes ``input_shape``, ``num_classes`` and builder keyword
            overrides and returns a ``keras.Model``.
        family: Family name; defaults to the defining module's last part.
        fixes: The family builder's options the variant sets itself, with their values
            (``vgg16``: ``{"depth": 16}``); ``create_model`` refuses them, naming the other
            variants, and ``tune vgg16`` searches the family's space with them fixed.
        default_input_shape: Shape used when ``create_model`` gets none.
        default_num_classes: Classes used when ``create_model`` gets none.

    Example:
        >>> @register_model(default_input_shape=(28, 28, 1), default_num_classes=10)
        ... def tiny_doc_cnn(**kwargs): ...
        >>> "tiny_doc_cnn" in list_models()
        True
        >>> del _MODELS["tiny_doc_cnn"]  # (the example cleans up after itself)
    """
    owner = None if family is None else checks.non_empty("family", family)
    shape = _default_shape(default_input_shape)
    classes = checks.num_classes(default_num_classes, "default_num_classes")
    if fixes is not None and (not isinstance(fixes, dict) or not all(isinstance(k, str) for k in fixes)):
        raise ArgumentError(f"`fixes` must be a dict of builder options and values. Received: fixes={fixes!r}")
    fixed = dict(fixes or {})

    def wrap(f: Builder) -> Builder:
        name = getattr(f, "__name__", "")
        if not callable(f) or not name.isidentifier():
            raise ArgumentError(f"`fn` must be a named function (its name is the model's). Received: fn={f!r}")
        if name in _MODELS and not _redefined(_MODELS[name].fn, f):
            raise ArgumentError(f"Model `{name}` is already registered. Received: name={name!r}")
        _MODELS[name] = ModelEntry(name, f, owner or f.__module__.rsplit(".", 1)[-1], shape, classes, fixed)
        return f

    return wrap(fn) if fn is not None else wrap


def _default_shape(value: Any) -> tuple[Any, Any, Any]:
    """``default_input_shape``, checked: 3 positive integers, or ``None`` for a size the model leaves open."""
    dims = list(value) if isinstance(value, (tuple, list)) and len(value) == 3 else None
    if dims is None or not all(d is None or (checks.integer(d) and 1 <= int(d) <= checks.INT_MAX) for d in dims):
        raise ArgumentError(
            "`default_input_shape` must be (height, width, channels), 3 positive integers or None (a size left "
            f"open). Received: default_input_shape={value!r}"
        )
    return dims[0], dims[1], dims[2]


def register_family(
    name: str,
    *,
    builder: Builder,
    recipe: Recipe | None = None,
    space: Space | None = None,
    min_input_size: Callable[..., int] | None = None,
) -> Family:
    """Declares a model family: its general builder, training recipe, search space and the
    smallest input size its down-sampling accepts (``min_input_size(**builder_options)``).

    Example:
        >>> def tiny_doc(*, input_shape, num_classes, width=8): ...
        >>> register_family("tiny_doc", builder=tiny_doc).options()
        ['width']
        >>> del _FAMILIES["tiny_doc"]  # (the example cleans up after itself)
    """
    checks.non_empty("name", name)
    for argument, value in (("builder", builder), ("space", space), ("min_input_size", min_input_size)):
        if not callable(value) and not (value is None and argument != "builder"):
            raise ArgumentError(f"`{argument}` must be a function. Received: {argument}={value!r}")
    if recipe is not None and not isinstance(recipe, Recipe):
        raise ArgumentError(f"`recipe` must be a kerascnn Recipe. Received: recipe={recipe!r}")
    if name in _FAMILIES and not _redefined(_FAMILIES[name].builder, builder):
        raise ArgumentError(f"Family `{name}` is already registered. Received: name={name!r}")
    family = Family(name, builder, recipe or Recipe(), space, min_input_size or (lambda **options: 1))
    _FAMILIES[name] = family
    return family


def _redefined(old: Builder, new: Builder) -> bool:
    """``new`` is ``old`` or the same function defined again (a notebook cell run twice)."""
    name = ("__module__", "__qualname__")
    return new is old or [getattr(new, a, None) for a in name] == [getattr(old, a, None) for a in name]


@functools.cache
def discover() -> None:
    """Imports every family module under ``kerascnn/models/`` once (cheap: no Keras import)."""
    import kerascnn.models as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_") and module.name != "registry":
            importlib.import_module(f"kerascnn.models.{module.name}")


def list_models(family: str | None = None) -> list[str]:
    """Returns the registered model names, sorted; with ``family``, that family's only (none for
    a family registered without models yet).

    Example:
        >>> list_models("vgg")
        ['vgg11', 'vgg13', 'vgg16', 'vgg19']
    """
    discover()
    known = set(_FAMILIES) | {e.family for e in _MODELS.values()}  # (a model may name a family never declared)
    if family is not None and (not isinstance(family, str) or family not in known):
        available = ", ".join(sorted(known))
        raise ArgumentError(f"Unknown family. Available families: {available}. Received: family={family!r}")
    return sorted(n for n, e in _MODELS.items() if family is None or e.family == family)


def list_families() -> list[str]:
    """Returns the registered family names, sorted.

    Example:
        >>> list_families()[:3]
        ['alexnet', 'lenet', 'mnist_cnn']
    """
    discover()
    return sorted(_FAMILIES)


def check_known(name: Any, argument: str = "name") -> str:
    """Raises an ``ArgumentError`` listing the models if ``name`` is unknown (no Keras import).

    Example:
        >>> check_known("lenet5")
        'lenet5'
    """
    discover()
    if not isinstance(name, str) or name not in _MODELS:
        raise ArgumentError(
            f"Unknown model. Available models: {', '.join(sorted(_MODELS))}. Received: {argument}={name!r}"
        )
    return name


def get_entry(name: str) -> ModelEntry:
    """Returns the registry entry of ``name`` or raises an ``ArgumentError``.

    Example:
        >>> get_entry("lenet5").family
        'lenet'
    """
    return _MODELS[check_known(name)]


def get_family(name: str, argument: str = "family") -> Family:
    """The family called ``name``, or the family of the model ``name``.

    Example:
        >>> get_family("vgg16").name
        'vgg'
    """
    discover()
    family = _MODELS[name].family if isinstance(name, str) and name in _MODELS and name not in _FAMILIES else name
    if isinstance(family, str) and family in _FAMILIES:
        return _FAMILIES[family]
    if family != name:  # a model registered without a family declaration
        raise ArgumentError(
            f"Model `{name}` belongs to family `{family}`, which no register_family() declares (no recipe, no "
            f"search space); declared families: {', '.join(sorted(_FAMILIES))}. Received: {argument}={name!r}"
        )
    raise ArgumentError(
        f"Unknown family. Available families: {', '.join(sorted(_FAMILIES))} (or a model name). "
        f"Received: {argument}={name!r}"
    )


def recipe_for(model: str) -> Recipe:
    """The default recipe of a model (its family's).

    Example:
        >>> recipe_for("vgg16").optimizer
        'adam'
    """
    family = _FAMILIES.get(get_entry(model).family)
    return family.recipe if family else Recipe()


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
        input_shape: ``(height, width, channels)``; the model's standard shape when
            ``None`` (28x28x1 for ``mnist_cnn``, 224x224x3 for the ImageNet families).
        num_classes: Number of output classes (>= 2); the standard count when ``None``.
        weights: ``None`` (fresh initialisation), ``"imagenet"`` (``vgg16``/``vgg19``), a
            ``.keras``, ``.h5``, ``.pth``/``.pt``/``.npz`` path or a torchvision state dict: see
            :mod:`kerascnn.pretrained` (input conventions, which layers load).
        **overrides: Keyword arguments of the family's builder (``width``,
            ``batch_norm``, ``dropout``, ...).

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
    entry.check_options(overrides, shape, classes)
    if weights is not None:
        from kerascnn.pretrained import create_pretrained

        return create_pretrained(name, weights, input_shape=shape, num_classes=classes, **overrides).model
    from kerascnn.device import fits_in_memory

    with fits_in_memory(f"`{name}`", input_shape=shape, num_classes=classes):
        return entry.fn(input_shape=shape, num_classes=classes, **overrides)
