"""Search spaces: each family's ``search_space(hp, *, input_shape, num_classes)``, KerasTuner's
HyperResNet style -- it calls the family's real builder, and every hyperparameter is named
like the builder keyword it sets (``filters``, ``width``, ``batch_norm``...) or like the
recipe setting (``learning_rate``). All values are discrete, so every tuner, ``grid``
included, can search every space.

A custom space is any ``build(hp, *, input_shape, num_classes) -> keras.Model``; the tuner
compiles the model with the recipe of the family named beside it (``mnist_cnn``'s when none
is) unless ``build`` already did. Trials train at a constant learning rate (the trial's
``learning_rate``, else the recipe's): a schedule's warm-up and decay are set for a whole
training, which a trial (and a Hyperband round) is not.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kerascnn.errors import ArgumentError
from kerascnn.models import get_entry, get_family, list_families, list_models
from kerascnn.recipes import Recipe

Space = Callable[..., Any]


@dataclass(frozen=True)
class SearchSpace:
    """A space to search: its ``build(hp, ...)``, the recipe trials train with, and the
    smallest image side its models accept."""

    name: str
    build: Space
    recipe: Recipe
    min_input_size: int
    received: str = ""  # how errors about the space echo what the user gave: family='vgg', or build=<function ...>


def space_for(family: str, build: Space | None = None) -> SearchSpace:
    """The space of ``family`` (a family or model name), or a custom ``build`` trained with
    ``family``'s recipe (``mnist_cnn``'s when ``family`` is ``"custom"``).

    Example:
        >>> space_for("vgg16").name
        'vgg'
    """
    if build is not None:
        if not callable(build):
            raise ArgumentError(
                "`build` must be a callable build(hp) (or build(hp, *, input_shape, num_classes)). "
                f"Received: build={build!r}"
            )
        recipe = get_family("mnist_cnn" if family == "custom" else family).recipe
        name = getattr(build, "__name__", "custom")
        return SearchSpace(name, _given_shapes(build), recipe, 1, f"build=<function {name}>")
    if family == "custom":
        raise ArgumentError(
            "Family 'custom' means a search space of your own: give build= (a build(hp) that returns a "
            "keras.Model). Received: family='custom', build=None"
        )
    found = get_family(family)
    if found.space is None:
        with_spaces = [f for f in list_families() if get_family(f).space is not None]
        raise ArgumentError(
            f"Family `{found.name}` declares no search space; these do: {', '.join(with_spaces)}. "
            f"Received: family={family!r}"
        )
    return SearchSpace(found.name, found.space, found.recipe, int(found.min_input_size()), f"family={family!r}")


def _given_shapes(build: Space) -> Space:
    """``build`` as the tuner calls it, ``build(hp, *, input_shape, num_classes)``; a KerasTuner-style
    ``build(hp)`` gets ``hp`` only (and one that takes either keyword, that one)."""
    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError):  # (no signature to read: called as documented)
        return build
    if any(p.kind == p.VAR_KEYWORD for p in params.values()) or {"input_shape", "num_classes"} <= set(params):
        return build
    taken = {"input_shape", "num_classes"} & set(params)

    @functools.wraps(build)
    def called(hp: Any, **shapes: Any) -> Any:
        return build(hp, **{k: v for k, v in shapes.items() if k in taken})

    return called


def variant_fixed(family: str, fixed: dict[str, Any]) -> dict[str, Any]:
    """``fixed`` with what the model ``family`` names sets itself (``vgg19``: depth 19), so that
    ``tune vgg19`` searches VGG-19; a ``fixed`` value that contradicts it is refused.

    Example:
        >>> variant_fixed("vgg19", {"width": 32})
        {'depth': 19, 'width': 32}
    """
    if family not in list_models():
        return fixed
    entry = get_entry(family)
    clash = {k: v for k, v in fixed.items() if k in entry.fixes and v != entry.fixes[k]}
    if clash:
        key = next(iter(clash))
        raise ArgumentError(
            f"`{family}` sets `{key}` itself ({key}={entry.fixes[key]!r}); tune the family `{entry.family}` to "
            f"search other values. Received: fixed={clash!r}"
        )
    return {**entry.fixes, **fixed}


class HyperModel:
    """Builds a trial's model from the space and compiles it with the trial's learning rate."""

    def __init__(
        self,
        space: SearchSpace,
        input_shape: tuple[int, int, int],
        num_classes: int,
        recipe: Recipe,
        steps_per_epoch: int,
        speed: Any,
    ) -> None:
        self.space, self.input_shape, self.num_classes = space, input_shape, num_classes
        self.recipe, self.steps_per_epoch, self.speed = recipe, steps_per_epoch, speed

    def __call__(self, hp: Any) -> Any:
        import keras

        from kerascnn import device
        from kerascnn.recipes import make_optimizer

        with device.dtype_policy(self.speed.policy):
            model = self.space.build(hp, input_shape=self.input_shape, num_classes=self.num_classes)
        if not isinstance(model, keras.Model):
            raise TypeError(f"build(hp, ...) must return a keras.Model; it returned {type(model).__name__}")
        if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
            rate = hp.values.get("learning_rate", self.recipe.learning_rate)
            recipe = self.recipe.replace(learning_rate=rate, schedule="constant")
            model.compile(
                optimizer=make_optimizer(recipe, self.steps_per_epoch),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                jit_compile=self.speed.jit,
                steps_per_execution=self.speed.steps_per_execution,
            )
        return model


def probe(hypermodel: HyperModel, fixed: dict[str, Any]) -> Any:
    """Builds the space with KerasTuner's defaults, first as it is (its names), then with
    ``fixed`` applied: a broken space, a ``fixed`` name it does not have, a value it cannot
    build, or nothing left to tune is refused before anything is written. Returns the
    hyperparameters of the plain build (the whole space).
    """
    import keras_tuner as kt

    received = hypermodel.space.received

    def build(hp: Any) -> None:
        try:
            hypermodel(hp)
        except (ValueError, TypeError) as e:  # bad builder options and the like
            why = " ".join(str(e).split())[:300]
            if "Received:" in why:  # the builder's error names the option and its value
                raise ArgumentError(
                    f"The search space of {received} with fixed={fixed!r} cannot build a model: {why}"
                ) from None
            raise ArgumentError(
                f"The search space cannot build a model ({why}). Received: {received}, fixed={fixed!r}"
            ) from None

    plain = kt.HyperParameters()
    build(plain)
    names = {p.name for p in plain.space}
    unknown = sorted(set(fixed) - names)
    if unknown:
        raise ArgumentError(
            f"The search space has no hyperparameter {', '.join(unknown)}; it has "
            f"{', '.join(sorted(names))}. Received: fixed={fixed!r}"
        )
    if not names:
        raise ArgumentError(f"The search space declares no hyperparameter to tune. Received: {received}")
    if not names - set(fixed):
        raise ArgumentError(f"The search space is empty: every hyperparameter is fixed. Received: fixed={fixed!r}")
    pinned = kt.HyperParameters()
    for key, value in fixed.items():
        pinned.Fixed(key, value)
    build(pinned)
    return plain


def outside(hyperparameters: Any, fixed: dict[str, Any]) -> list[str]:
    """What ``fixed`` sets outside the space (not one of a choice's values, past a range's
    ends): allowed, as KerasTuner's ``Fixed`` is, and worth a warning (``0.5`` for ``0.005``).

    Example:
        >>> import keras_tuner as kt
        >>> hp = kt.HyperParameters(); _ = hp.Choice("learning_rate", [1e-3, 3e-3])
        >>> outside(hp, {"learning_rate": 0.5})
        ['fixed learning_rate=0.5 is outside the space (0.001, 0.003); it is used as given']
    """
    said = []
    for p in hyperparameters.space:
        kind, value = type(p).__name__, fixed.get(p.name)
        if p.name not in fixed or kind not in ("Choice", "Int", "Float"):  # (a Boolean takes either)
            continue
        if kind == "Choice" and value not in p.values:
            shown = ", ".join(map(str, p.values))
        elif kind != "Choice" and not (isinstance(value, (int, float)) and p.min_value <= value <= p.max_value):
            shown = f"{p.min_value} to {p.max_value}"
        else:
            continue
        said.append(f"fixed {p.name}={value!r} is outside the space ({shown}); it is used as given")
    return said


def describe_space(hyperparameters: Any) -> str:
    """The space in one line: each hyperparameter's name and values (or range), sorted by name.

    Example:
        >>> import keras_tuner as kt
        >>> hp = kt.HyperParameters()
        >>> _ = hp.Choice("units", [8, 16]), hp.Int("depth", 1, 3), hp.Boolean("bn")
        >>> describe_space(hp)
        'bn {False, True}; depth 1..3; units [8, 16]'
    """
    shown = []
    for hp in sorted(hyperparameters.space, key=lambda hp: hp.name):
        config, kind = hp.get_config(), type(hp).__name__
        if kind == "Choice":
            values = str(list(config["values"]))
        elif kind == "Boolean":
            values = "{False, True}"
        elif kind in ("Int", "Float"):
            step, sampling = config.get("step"), config.get("sampling") or "linear"
            values = f"{config['min_value']}..{config['max_value']}"
            values += f" step {step}" if step is not None and not (kind == "Int" and step == 1) else ""
            values += f" {sampling}" if sampling != "linear" else ""
        else:
            values = repr(config.get("value"))
        shown.append(f"{hp.name} {values}")
    return "; ".join(shown)


def grid_size(hyperparameters: Any, fixed: dict[str, Any]) -> int | None:
    """How many combinations a grid search walks (``None`` for a continuous space).

    Example:
        >>> import keras_tuner as kt  # doctest: +SKIP
    """
    total = 1
    for hp in hyperparameters.space:
        if hp.name in fixed:
            continue
        config = hp.get_config()
        kind = type(hp).__name__
        if kind == "Choice":
            total *= len(config["values"])
        elif kind == "Boolean":
            total *= 2
        elif kind in ("Int", "Float") and config.get("step"):
            total *= math.floor((config["max_value"] - config["min_value"]) / config["step"] + 1e-9) + 1
        elif kind != "Fixed":
            return None
    return total
