"""Training recipes: how a model trains when no flag says otherwise.

A recipe is the optimizer, learning-rate schedule, batch size, epochs and steps per
execution; each model family declares its own (``kerascnn/models/<family>.py``).
Precision and XLA are not part of a recipe: they follow the hardware
(:mod:`kerascnn.hardware`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from kerascnn import checks

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")
# A sound peak learning rate per optimizer, used when a flag swaps the recipe's optimizer
# without giving a rate: Adam's 6e-3 makes SGD crawl, SGD's 0.1 makes Adam diverge.
OPTIMIZER_LEARNING_RATES = {"adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "sgd": 0.05}


@dataclass(frozen=True)
class Recipe:
    """How a model trains by default.

    Attributes:
        optimizer: ``adam``, ``adamw``, ``sgd`` (Nesterov momentum 0.9) or ``rmsprop``.
        learning_rate: Peak learning rate.
        schedule: ``constant``, or ``cosine`` (linear warm-up, then cosine decay to 0).
        warmup_epochs: Warm-up length for ``cosine``, in epochs (fractions allowed).
        batch_size: Global batch size.
        epochs: Epochs.
        steps_per_execution: Batches run per ``tf.function`` call.
    """

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    batch_size: int = 128
    epochs: int = 5
    steps_per_execution: int = 1

    def replace(self, **overrides: Any) -> Recipe:
        """A copy with the non-``None`` ``overrides`` applied and checked. A new optimizer
        without a learning rate gets that optimizer's usual rate, not this recipe's.

        Example:
            >>> Recipe().replace(epochs=2, batch_size=None).epochs
            2
            >>> Recipe(optimizer="adam", learning_rate=6e-3).replace(optimizer="sgd").learning_rate
            0.05
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        optimizer = checks.one_of("optimizer", given.get("optimizer", self.optimizer), OPTIMIZERS)
        if optimizer != self.optimizer and "learning_rate" not in given and optimizer in OPTIMIZER_LEARNING_RATES:
            given["learning_rate"] = OPTIMIZER_LEARNING_RATES[optimizer]
        recipe = dataclasses.replace(self, **given)
        checks.one_of("schedule", recipe.schedule, SCHEDULES)
        checks.positive_float("learning_rate", recipe.learning_rate)
        checks.non_negative_float("warmup_epochs", recipe.warmup_epochs)
        checks.positive_int("batch_size", recipe.batch_size)
        checks.positive_int("epochs", recipe.epochs)
        checks.positive_int("steps_per_execution", recipe.steps_per_execution)
        numbers = ("learning_rate", "warmup_epochs", "batch_size", "epochs", "steps_per_execution")
        return dataclasses.replace(recipe, **{k: checks.plain(getattr(recipe, k)) for k in numbers})  # np.int64(2) -> 2


def schedule_warnings(recipe: Recipe, warmup_given: bool) -> list[str]:
    """What the learning-rate schedule will not do as its settings read (``warmup_given``: the
    user set ``warmup_epochs``, not the recipe).

    Example:
        >>> schedule_warnings(Recipe(schedule="cosine", warmup_epochs=1.0, epochs=1), warmup_given=False)
        ['the warm-up (1 epoch) lasts the whole run (1 epoch): the learning rate rises to 0.001 and never decays']
    """
    if recipe.schedule != "cosine":
        ignored = warmup_given and recipe.warmup_epochs > 0
        return [f"warmup_epochs applies to the cosine schedule; this run's is {recipe.schedule}"] if ignored else []
    if recipe.warmup_epochs >= recipe.epochs:
        warmup, run = (f"{n:g} epoch{'' if n == 1 else 's'}" for n in (recipe.warmup_epochs, recipe.epochs))
        return [
            f"the warm-up ({warmup}) lasts the whole run ({run}): the learning rate rises to "
            f"{recipe.learning_rate:g} and never decays"
        ]
    return []


def make_optimizer(recipe: Recipe, steps_per_epoch: int) -> Any:
    """The Keras optimizer (with its learning-rate schedule) for ``recipe``.

    Example:
        >>> opt = make_optimizer(Recipe(schedule="cosine", warmup_epochs=1), steps_per_epoch=100)  # doctest: +SKIP
    """
    import keras

    total = max(1, recipe.epochs * steps_per_epoch)
    rate: Any = recipe.learning_rate
    if recipe.schedule == "cosine":
        warmup = min(round(recipe.warmup_epochs * steps_per_epoch), total - 1)
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=recipe.learning_rate / 10 if warmup else recipe.learning_rate,
            decay_steps=total - warmup,
            warmup_target=recipe.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True)
    if recipe.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=1e-4)
    if recipe.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(rate)
    return keras.optimizers.Adam(rate)
