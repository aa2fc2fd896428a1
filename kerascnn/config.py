"""Every setting of ``train`` and ``tune`` in one place: defaults, allowed values, checks.

A config is a frozen dataclass whose fields carry their help text and CLI spelling
(:class:`Option`); the Python signatures of ``train``/``tune``, the CLI flags (only what
the user typed is forwarded) and the params logged to MLflow all derive from it, nanoGPT
style: defaults here, overrides replace them, the resolved config is what gets logged.
This module does not import TensorFlow or MLflow.

Example:
    >>> config = TrainConfig(model="lenet5", epochs=3)
    >>> config.resolved().batch_size  # from LeNet's recipe
    128
    >>> TrainConfig(epochs=0)
    Traceback (most recent call last):
    kerascnn.errors.ArgumentError: `epochs` must be a positive integer. Received: epochs=0
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from kerascnn import checks
from kerascnn.errors import ArgumentError
from kerascnn.hardware import PRECISIONS
from kerascnn.recipes import OPTIMIZERS, Recipe

DEFAULT_EXPERIMENT = "kerascnn"
TUNERS = ("random", "hyperband", "bayesian", "grid")
OBJECTIVES = ("val_accuracy", "val_loss")
STRATEGIES = ("auto", "mirrored", "multiworker")
DATASET_HELP = "mnist, fashion_mnist, cifar10, cifar100 or a folder of class sub-folders"
SEARCH_NAME_MAX = 128  # bytes: the search's folder, its lock file and its trials' run names are made from it
C = TypeVar("C", bound="_Config")


@dataclass(frozen=True)
class Option:
    """How a setting shows up outside Python.

    Attributes:
        help: One line for ``--help``.
        group: The ``--help`` section.
        kind: ``value`` (``--flag VALUE``), ``positional``, ``flag`` (``--flag`` sets True),
            ``off`` (``--no-NAME`` sets False), ``switch`` (``--NAME/--no-NAME``), ``shape``
            (three ints), ``pairs`` (repeatable ``KEY=VALUE``), ``optional`` (``--flag [VALUE]``).
        type: Converts the CLI text (``int``, ``float``, ``str``).
        log: Part of the run's params, and compared by ``--resume``.
        flag: The CLI spelling, when not ``--field-name``.
        metavar: The placeholder in ``--help``.
    """

    help: str
    group: str = "options"
    kind: str = "value"
    type: Callable[[str], Any] = str
    log: bool = True
    flag: str | None = None
    metavar: str | None = None


def setting(default: Any, help: str, **option: Any) -> Any:
    """A config field with its :class:`Option` (mutable defaults are copied per instance)."""
    meta = {"option": Option(help, **option)}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def documented(cls: type[C]) -> type[C]:
    """Appends an ``Attributes:`` section, one line per field from its :class:`Option`, to the
    docstring of the config dataclass ``cls`` (so ``help(TrainConfig)`` says what the CLI's
    ``--help`` says).

    Example:
        >>> "epochs: epochs (default: the recipe's)" in TrainConfig.__doc__
        True
    """
    lines = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        option: Option | None = f.metadata.get("option")
        if option is None:
            continue
        allowed = isinstance(option.metavar, str) and option.metavar.startswith("{")
        flag = option.flag or f"--{f.name.replace('_', '-')}"
        spelling = {"off": f"False ({flag}): ", "pairs": f"a dict ({flag} KEY=VALUE): "}
        help = f"{spelling.get(option.kind, '')}{option.help}{f' {option.metavar}' if allowed else ''}"
        lines.append(f"        {f.name}: {help}")
    header = "Attributes (as the command's ``--help`` says them):"
    cls.__doc__ = f"{(cls.__doc__ or '').rstrip()}\n\n    {header}\n" + "\n".join(lines) + "\n    "
    return cls


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, value: None if value is None else check(name, value)


def _pairs(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise ArgumentError(f"`{name}` must map option names to values. Received: {name}={value!r}")
    return checks.plain(dict(value))


def _registration(config: Any) -> None:
    """``register_model`` is a non-empty name; ``alias`` needs it and is a valid MLflow alias."""
    _optional(checks.non_empty)("register_model", config.register_model)
    name = config.register_model
    if name is not None and (any(c in name for c in "/:") or name.strip() in (".", "..")):
        raise ArgumentError(
            f"`register_model` must be a name without '/' or ':' (MLflow's rule). Received: register_model={name!r}"
        )
    if config.alias is None:
        return
    if config.register_model is None:
        raise ArgumentError(
            f"`alias` needs `register_model` (the model to point it at). Received: alias={config.alias!r}"
        )
    if (
        not isinstance(config.alias, str)
        or not re.fullmatch(r"[A-Za-z_][\w-]{0,254}", config.alias)
        or config.alias.lower() == "latest"
        or re.fullmatch(r"[vV]\d+", config.alias)
    ):
        raise ArgumentError(
            "`alias` must be a name of letters, digits, _ and -, not 'latest' or v<N>. "
            f"Received: alias={config.alias!r}"
        )


def _check_search_name(name: Any) -> None:
    """``search_name`` is None or a plain folder name."""
    if name is not None and (
        not isinstance(name, str)
        or not name.strip()
        or name.startswith(".")
        or any(c in name for c in "/\\'\"`")
        or not name.isprintable()
    ):
        raise ArgumentError(
            "`search_name` must be a plain folder name (not empty, not starting with '.', no slashes, quotes or "
            f"control characters). Received: search_name={name!r}"
        )


def encode(value: Any) -> str:
    """A setting as an MLflow param: text as is, dicts as JSON, the rest as Python literals.

    Example:
        >>> encode((28, 28, 1)), encode({"width": 4}), encode(None)
        ('[28, 28, 1]', '{"width": 4}', 'None')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, tuple):
        value = list(value)
    return str(value)


class _Config:
    """What ``TrainConfig`` and ``TuneConfig`` share: construction from keyword arguments,
    the settings that were given, params, and the round trip through logged params."""

    _given: frozenset[str] = frozenset()
    API_ONLY: ClassVar[frozenset[str]] = frozenset()
    dataset: str  # (a field of each subclass)

    def _fix(self, name: str, value: Any) -> None:
        """Replaces a setting of this frozen dataclass by its checked value."""
        object.__setattr__(self, name, value)

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # a dataclass subclass

    @classmethod
    def option(cls, name: str) -> Option:
        return cls.fields()[name].metadata["option"]

    @classmethod
    def create(cls: type[C], **settings: Any) -> C:
        """Builds a checked config from keyword arguments; remembers which were given.

        Raises:
            ArgumentError: An unknown name or a bad value.
        """
        unknown = sorted(set(settings) - set(cls.fields()))
        if unknown:
            raise ArgumentError(
                f"Unknown setting(s) {', '.join(unknown)}; see help({cls.__name__}). "
                f"Received: {', '.join(f'{k}={settings[k]!r}' for k in unknown)}"
            )
        config = cls(**settings)
        object.__setattr__(config, "_given", frozenset(settings))
        return config

    @property
    def given(self) -> frozenset[str]:
        """The settings the caller gave (the rest are defaults)."""
        return self._given

    def settings(self) -> dict[str, Any]:
        """The logged settings (``Option.log``) as Python values (the dataset as :attr:`recorded_dataset`)."""
        return {
            name: self.recorded_dataset if name == "dataset" else getattr(self, name)
            for name in self.fields()
            if self.option(name).log
        }

    def params(self) -> dict[str, str]:
        """:meth:`settings` as MLflow params (text, see :func:`encode`)."""
        return {name: encode(value) for name, value in self.settings().items()}

    @property
    def recorded_dataset(self) -> str:
        """The dataset as runs record it: a name as is, a folder as its absolute path (so that a
        resumed run or search finds it from any folder); errors echo it as the user gave it."""
        from kerascnn.data import as_run

        return as_run(str(self.dataset))

    @classmethod
    def decode(cls, name: str, text: str) -> Any:
        """A logged param back to its setting's value (the inverse of :func:`encode`)."""
        option = cls.option(name)
        if option.kind == "pairs":
            return json.loads(text)
        if option.type is str and option.kind in ("value", "positional"):
            return None if text == "None" else text
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):  # "auto" and other plain words
            return text
        return tuple(value) if isinstance(value, list) else value

    def changed_from(self, params: dict[str, str]) -> dict[str, tuple[str, str]]:
        """The given, logged settings whose value differs from ``params``: name -> (logged, given)."""
        from kerascnn.data import as_run

        mine = self.params()
        if "dataset" in params:  # (logged as given, maybe relative, before kerascnn recorded folders absolute)
            params = {**params, "dataset": as_run(params["dataset"])}
        return {
            k: (params[k], mine[k]) for k in sorted(self.given) if k in mine and k in params and params[k] != mine[k]
        }

    def merged_with(self: C, params: dict[str, str], unlogged: dict[str, Any] | None = None) -> C:
        """A config with the logged ``params`` (and ``unlogged`` settings) as defaults and this
        config's given settings on top."""
        logged = {k: self.decode(k, v) for k, v in params.items() if k in self.fields() and self.option(k).log}
        merged = {**logged, **(unlogged or {}), **{k: getattr(self, k) for k in self.given}}
        return type(self).create(**merged)


def _recipe_overrides(config: Any) -> dict[str, Any]:
    return {
        k: getattr(config, k)
        for k in (
            "optimizer",
            "learning_rate",
            "schedule",
            "warmup_epochs",
            "batch_size",
            "epochs",
            "steps_per_execution",
        )
    }


def _experiment() -> Any:
    return setting(DEFAULT_EXPERIMENT, "MLflow experiment", group="tracking", log=False)


def _tracking_uri() -> Any:
    return setting(
        None, "MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)", group="tracking", log=False
    )


def _system_metrics() -> Any:
    return setting(
        True,
        "do not sample CPU/memory/GPU use into system/... metrics",
        group="tracking",
        kind="off",
        flag="--no-system-metrics",
        log=False,
    )


def _register_model() -> Any:
    return setting(
        None,
        "register the model in MLflow's Model Registry under this name (a new version)",
        group="tracking",
        metavar="NAME",
        log=False,
    )


def _alias() -> Any:
    return setting(
        None, "with --register-model: point this alias (e.g. champion) at the new version", group="tracking", log=False
    )


@documented
@dataclass(frozen=True)
class TrainConfig(_Config):
    """The settings of one training run (``kerascnn train``).

    Recipe settings left ``None`` come from the model's recipe (``resolved()``).

    Example:
        >>> config = TrainConfig.create(model="lenet5", epochs=3)
        >>> config.resolved().epochs, config.resolved().batch_size
        (3, 128)
    """

    model: str = setting("mnist_cnn", "model name, as `kerascnn models` lists them", kind="positional", metavar="MODEL")
    dataset: str = setting("mnist", DATASET_HELP)
    epochs: int | None = setting(None, "epochs (default: the recipe's)", group="recipe", type=int)
    batch_size: int | None = setting(None, "batch size (default: the recipe's)", group="recipe", type=int)
    learning_rate: float | None = setting(
        None,
        "peak learning rate (default: the recipe's, or the optimizer's usual one when --optimizer changes it)",
        group="recipe",
        type=float,
    )
    optimizer: str | None = setting(
        None, "optimizer (default: the recipe's)", group="recipe", metavar="{" + ",".join(OPTIMIZERS) + "}"
    )
    schedule: str | None = setting(
        None,
        "constant, or cosine: warm-up + cosine decay (default: the recipe's)",
        group="recipe",
        metavar="{constant,cosine}",
    )
    warmup_epochs: float | None = setting(
        None, "warm-up epochs of the cosine schedule (default: the recipe's)", group="recipe", type=float
    )
    train_samples: int | None = setting(None, "use the first N training images", group="data", type=int)
    test_samples: int | None = setting(
        None,
        "evaluate on the first N test images (default: all; as many as --train-samples when that is given)",
        group="data",
        type=int,
    )
    validation_split: float = setting(
        0.1, "fraction of training images held out at random, by --seed", group="data", type=float
    )
    augment: bool = setting(False, "random shifts/rotations (flips for photos)", group="data", kind="flag")
    input_shape: tuple[int, int, int] | None = setting(
        None,
        "model input (default: the images' shape, enlarged to the model's minimum)",
        group="model",
        kind="shape",
        metavar=("H", "W", "C"),
    )
    num_classes: int | None = setting(None, "output classes (default: the dataset's)", group="model", type=int)
    model_kwargs: dict[str, Any] = setting(
        {},
        "builder option, repeatable (-o width=32 -o batch_norm=true)",
        group="model",
        kind="pairs",
        flag="-o",
        metavar="KEY=VALUE",
    )
    weights: str | None = setting(
        None,
        "start from pretrained weights: imagenet (vgg16, vgg19) or a .keras, .h5, "
        ".pth/.pt or .npz file (see kerascnn.pretrained)",
        group="model",
        metavar="SOURCE",
    )
    seed: int = setting(0, "seed of the split, shuffling and weights", group="run", type=int)
    deterministic: bool = setting(False, "deterministic TensorFlow ops (slower)", group="run", kind="flag")
    precision: str = setting(
        "auto",
        "auto: what this machine does fast (see `kerascnn doctor`)",
        group="device",
        metavar="{auto,float32,mixed}",
    )
    jit: bool | str = setting("auto", "XLA-compile (default: auto, on CUDA GPUs only)", group="device", kind="switch")
    steps_per_execution: int | None = setting(
        None, "batches per compiled call (default: the recipe's)", group="device", type=int
    )
    strategy: str = setting(
        "auto",
        "tf.distribute strategy (multiworker: from TF_CONFIG)",
        group="device",
        metavar="{auto,mirrored,multiworker}",
    )
    experiment: str = _experiment()
    run_name: str | None = setting(None, "MLflow run name (default: MODEL-DATASET)", group="tracking", log=False)
    tracking_uri: str | None = _tracking_uri()
    tracking: bool = setting(
        True, "train without MLflow", group="tracking", kind="off", flag="--no-tracking", log=False
    )
    resume: bool | str = setting(
        False,
        "continue the latest interrupted run (of MODEL, when given) or RUN_ID, with its logged settings",
        group="tracking",
        kind="optional",
        metavar="RUN_ID",
        log=False,
    )
    system_metrics: bool = _system_metrics()
    register_model: str | None = _register_model()
    alias: str | None = _alias()
    offline: bool = setting(
        False,
        "track into the local spool only; `kerascnn sync` sends the run later",
        group="tracking",
        kind="flag",
        log=False,
    )

    def __post_init__(self) -> None:
        self._check_values()
        self._check_combinations()

    def _check_values(self) -> None:
        """Each setting alone, replaced by its checked value."""
        from kerascnn import device
        from kerascnn.data import check_dataset_name
        from kerascnn.models import check_known, get_entry

        check_known(self.model, "model")
        fix = self._fix
        fix("dataset", check_dataset_name(self.dataset))
        recipe = self.recipe  # checks the recipe settings
        for name, given in _recipe_overrides(self).items():
            if given is not None:
                fix(name, getattr(recipe, name))  # as checked: plain Python numbers (np.int64(2) -> 2)
        for name in ("train_samples", "test_samples"):
            fix(name, _optional(checks.positive_int)(name, getattr(self, name)))
        fix("num_classes", None if self.num_classes is None else checks.num_classes(self.num_classes))
        fix("validation_split", checks.fraction("validation_split", self.validation_split))
        fix("input_shape", None if self.input_shape is None else checks.input_shape(self.input_shape))
        fix("model_kwargs", _pairs("model_kwargs", self.model_kwargs))
        get_entry(self.model).check_options(self.model_kwargs, self.input_shape, self.num_classes)
        if self.weights is not None:
            from kerascnn.pretrained import check_weights

            check_weights(self.model, self.weights)
        fix("seed", checks.seed(self.seed))
        for name in ("augment", "deterministic", "tracking", "system_metrics", "offline"):
            fix(name, checks.boolean(name, getattr(self, name)))
        checks.one_of("precision", self.precision, PRECISIONS)
        if not (isinstance(self.jit, str) and self.jit == "auto"):
            if not isinstance(checks.plain(self.jit), bool):  # (np.bool_ too)
                raise ArgumentError(f"`jit` must be True, False or 'auto'. Received: jit={self.jit!r}")
            fix("jit", bool(self.jit))
        device.check_strategy(self.strategy)
        checks.non_empty("experiment", self.experiment, maximum=checks.MAX_EXPERIMENT_NAME)
        if self.run_name is not None:
            checks.non_empty("run_name", self.run_name, maximum=checks.MAX_RUN_NAME)
        if not isinstance(self.resume, (bool, str)) or self.resume == "":
            raise ArgumentError(f"`resume` must be True, False or a run id. Received: resume={self.resume!r}")
        if isinstance(self.resume, str):
            from kerascnn.tracking.store import check_run_id

            check_run_id(self.resume, "resume")  # (here, before the store is opened: seconds)

    def _check_combinations(self) -> None:
        """Settings that exclude each other; then the store, with tracking on."""
        if self.resume and not self.tracking:
            raise ArgumentError(
                "`resume` continues a tracked run; it cannot be used without tracking. Received: tracking=False"
            )
        if self.jit is True and self.deterministic and not self.resume:  # (a run logged so, before this check, resumes)
            raise ArgumentError(
                "`jit` cannot go with `deterministic`: Keras runs no XLA under TensorFlow's op determinism. "
                "Received: jit=True, deterministic=True"
            )
        _registration(self)
        if self.offline and (self.resume or not self.tracking):
            what = f"resume={self.resume!r}" if self.resume else "tracking=False"
            raise ArgumentError(
                f"`offline` spools a new tracked run; it cannot resume or go untracked. Received: {what}"
            )
        if self.register_model and not self.tracking:
            raise ArgumentError(
                "`register_model` registers a tracked run's model; it cannot be used without "
                "tracking. Received: tracking=False"
            )
        where = {"experiment": self.experiment != DEFAULT_EXPERIMENT, "tracking_uri": self.tracking_uri is not None}
        if not self.tracking and any(where.values()):
            given = ", ".join(f"{name}={getattr(self, name)!r}" for name, set_ in where.items() if set_)
            raise ArgumentError(
                "`experiment` and `tracking_uri` say where a tracked run goes; they cannot be used without "
                f"tracking. Received: {given}, tracking=False"
            )
        if self.tracking:
            from kerascnn.tracking.store import resolve_tracking_uri

            self._fix("tracking_uri", resolve_tracking_uri(self.tracking_uri))

    @property
    def store_uri(self) -> str:
        """The resolved tracking URI (with tracking on)."""
        if self.tracking_uri is None:
            raise ArgumentError("This run is not tracked. Received: tracking=False")
        return self.tracking_uri

    @property
    def title(self) -> str:
        """What the run's plots are titled: ``"mnist_cnn on mnist"``."""
        return f"{self.model} on {self.dataset}"

    @property
    def recipe(self) -> Recipe:
        """The model's recipe with this config's recipe settings applied (checked)."""
        from kerascnn.models import recipe_for

        return recipe_for(self.model).replace(**_recipe_overrides(self))

    def resolved(self) -> TrainConfig:
        """A copy with every recipe setting filled in from the model's recipe.

        Example:
            >>> TrainConfig(model="mnist_cnn").resolved().epochs
            2
        """
        filled = dataclasses.asdict(self.recipe)
        if self.test_samples is None and self.train_samples is not None:  # a subset trains, a subset tests
            filled["test_samples"] = self.train_samples
        resolved = dataclasses.replace(self, **filled)
        object.__setattr__(resolved, "_given", self.given)
        return resolved


@documented
@dataclass(frozen=True)
class TuneConfig(_Config):
    """The settings of one KerasTuner search (``kerascnn tune``).

    Example:
        >>> TuneConfig.create(family="mnist_cnn", tuner="hyperband").max_trials
        10
    """

    family: str = setting(
        "mnist_cnn",
        "search space: a family, or a model name (its family's space, with what the model sets fixed)",
        kind="positional",
        metavar="FAMILY",
    )
    dataset: str = setting("mnist", DATASET_HELP)
    tuner: str = setting("random", "KerasTuner's tuner", group="search", metavar="{random,hyperband,bayesian,grid}")
    max_trials: int = setting(
        10,
        "trials in the search (raise it to extend one, but not a grid search; Hyperband plans its brackets within it)",
        group="search",
        type=int,
        log=False,
    )
    epochs: int = setting(2, "epochs per trial (Hyperband: the most a trial gets)", group="search", type=int)
    fixed: dict[str, Any] = setting(
        {}, "pin a hyperparameter, repeatable (--fixed filters=32)", group="search", kind="pairs", metavar="KEY=VALUE"
    )
    objective: str = setting(
        "val_accuracy",
        "maximised (val_accuracy) or minimised (val_loss)",
        group="search",
        metavar="{val_accuracy,val_loss}",
    )
    batch_size: int | None = setting(None, "batch size (default: the family's recipe)", group="data", type=int)
    train_samples: int | None = setting(None, "use the first N training images", group="data", type=int)
    validation_split: float = setting(
        0.1, "fraction of training images the objective is measured on", group="data", type=float
    )
    precision: str = setting("auto", "as for train", group="device", metavar="{auto,float32,mixed}")
    seed: int = setting(0, "seed of the split, the tuner, and each trial's weights and batches", group="run", type=int)
    search_name: str | None = setting(
        None, "name of the search (default: FAMILY-DATASET-TUNER); the same name resumes it", group="search", log=False
    )
    directory: str = setting("mlruns/searches", "where KerasTuner keeps its state", group="search", log=False)
    overwrite: bool = setting(
        False, "start the search afresh (old MLflow runs stay)", group="search", kind="flag", log=False
    )
    max_retries_per_trial: int = setting(
        0, "KerasTuner's retries of a crashed trial", group="search", type=int, log=False
    )
    max_consecutive_failed_trials: int = setting(
        3, "KerasTuner stops after this many failures in a row", group="search", type=int, log=False
    )
    experiment: str = _experiment()
    tracking_uri: str | None = _tracking_uri()
    system_metrics: bool = _system_metrics()
    register_model: str | None = _register_model()
    alias: str | None = _alias()

    def __post_init__(self) -> None:
        from kerascnn.data import check_dataset_name

        if self.family != "custom":
            from kerascnn.models import get_family

            get_family(self.family)
        fix = self._fix
        fix("dataset", check_dataset_name(self.dataset))
        checks.one_of("tuner", self.tuner, TUNERS)
        fix("max_trials", checks.positive_int("max_trials", self.max_trials))
        fix("epochs", checks.positive_int("epochs", self.epochs))
        fix("fixed", _pairs("fixed", self.fixed))
        unfit = {k: v for k, v in self.fixed.items() if not isinstance(v, (bool, int, float, str))}
        if unfit:
            raise ArgumentError(
                f"`fixed` values must be numbers, text or booleans (KerasTuner's Fixed). Received: fixed={unfit!r}"
            )
        checks.one_of("objective", self.objective, OBJECTIVES)
        fix("batch_size", _optional(checks.positive_int)("batch_size", self.batch_size))
        fix("train_samples", _optional(checks.positive_int)("train_samples", self.train_samples))
        try:
            split = checks.fraction("validation_split", self.validation_split)
        except ArgumentError:
            split = 0.0  # (one message for 0, 1 and nan)
        if not split > 0:
            raise ArgumentError(
                "`validation_split` must be a number in (0, 1): the objective is measured on it. "
                f"Received: validation_split={self.validation_split!r}"
            )
        fix("validation_split", split)
        checks.one_of("precision", self.precision, PRECISIONS)
        fix("seed", checks.seed(self.seed))
        _check_search_name(self.search_name)
        self._check_run_settings()

    def _check_run_settings(self) -> None:
        """Where the search lives and what its runs log; then the store and the name's length."""
        from kerascnn.tracking.store import resolve_tracking_uri

        fix = self._fix
        if not isinstance(self.directory, (str, os.PathLike)):
            raise ArgumentError(f"`directory` must be a folder path. Received: directory={self.directory!r}")
        checks.non_empty("directory", str(self.directory))
        fix("directory", str(checks.writable("directory", self.directory, folder=True)))
        fix("overwrite", checks.boolean("overwrite", self.overwrite))
        fix("system_metrics", checks.boolean("system_metrics", self.system_metrics))
        fix("max_retries_per_trial", checks.non_negative_int("max_retries_per_trial", self.max_retries_per_trial))
        fix(
            "max_consecutive_failed_trials",
            checks.positive_int("max_consecutive_failed_trials", self.max_consecutive_failed_trials),
        )
        checks.non_empty("experiment", self.experiment, maximum=checks.MAX_EXPERIMENT_NAME)
        _registration(self)
        fix("tracking_uri", resolve_tracking_uri(self.tracking_uri))
        if len(self.name.encode()) > SEARCH_NAME_MAX:
            name = self.search_name
            default = "" if name else f", and the default, FAMILY-DATASET-TUNER, is {self.name!r}: give a shorter one"
            raise ArgumentError(
                f"`search_name` must be at most {SEARCH_NAME_MAX} bytes (it names a folder){default}. "
                f"Received: search_name={name!r}"
            )

    @property
    def store_uri(self) -> str:
        """The resolved tracking URI."""
        assert self.tracking_uri is not None, "resolved in __post_init__"
        return self.tracking_uri

    @property
    def name(self) -> str:
        """The search's name: ``search_name``, or FAMILY-DATASET-TUNER."""
        from pathlib import Path

        return self.search_name or f"{self.family}-{Path(self.recorded_dataset).name}-{self.tuner}"


def signature_of(config: type[_Config], fn: Callable[..., Any], positional: tuple[str, ...]) -> inspect.Signature:
    """``fn``'s signature with the config's settings as its parameters (for ``help()`` and IDEs).

    Example:
        >>> def f(model=None, dataset=None, **settings): ...
        >>> "epochs" in signature_of(TrainConfig, f, ("model", "dataset")).parameters
        True
    """
    own = [p for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY]
    params = []
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if f.name in positional else inspect.Parameter.KEYWORD_ONLY
        factory: Any = f.default_factory
        default = f.default if f.default is not dataclasses.MISSING else factory()
        params.append(inspect.Parameter(f.name, kind, default=default, annotation=f.type))
    params.sort(key=lambda p: p.kind)
    return inspect.Signature([*params, *own], return_annotation=inspect.signature(fn).return_annotation)
