"""``train()``: build, fit and evaluate a registered model on a dataset, tracked in MLflow.

Order of work, so that bad input never leaves a run behind: check the settings
(:class:`~kerascnn.config.TrainConfig`), make the distribution strategy, load the data,
plan how images feed the model and how fast it can train here, build and compile it, and
only then open the run. From there on the run always ends FINISHED, FAILED or KILLED.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerascnn import checks, console, device, hardware
from kerascnn.config import TrainConfig, encode, signature_of
from kerascnn.errors import ArgumentError, TrainingFailed
from kerascnn.recipes import schedule_warnings
from kerascnn.signals import Terminated
from kerascnn.tracking import store
from kerascnn.tracking.run import TrackedRun, lifecycle
from kerascnn.tracking.writer import recorder

__all__ = ["TrainResult", "TrainingFailed", "evaluate", "train"]

UNTRACKED = "mlruns/untracked"  # where an untracked run's model is saved (in the working directory)
REGISTRATION = ("register_model", "alias")  # settings a run records as tags (not params), for its resume


@dataclass
class TrainResult:
    """What ``train()`` returns; ``to_json()`` is the CLI's ``--json`` document.

    ``model_path`` is the saved ``.keras`` file: the run's artifact, or for a run in the ``spool``
    (offline, or the store failed) the spool's copy, which ``sync`` moves into the store: the path is
    then gone, and the run's id names the model (``kerascnn.predict(run_id, images)``, ``evaluate``)."""

    run_id: str | None
    experiment: str | None
    test_accuracy: float
    test_loss: float
    epochs: int
    tracking_uri: str | None
    model_path: str | None
    history: dict[str, list[float]] = field(default_factory=dict, repr=False)  # (the repr: a notebook's line)
    params: dict[str, Any] = field(default_factory=dict, repr=False)  # what the run logged, as Python values
    spool: str | None = None
    registered_model: str | None = None  # models:/NAME/VERSION with register_model (None until the store has it)
    model: Any = field(default=None, repr=False)

    @property
    def best_val_accuracy(self) -> float | None:
        """The best epoch's validation accuracy (``None`` without a validation split)."""
        values = self.history.get("val_accuracy")
        return max(values) if values else None

    def to_json(self) -> dict[str, Any]:
        keys = (
            *("run_id", "experiment", "test_accuracy", "best_val_accuracy", "test_loss", "epochs"),
            *("tracking_uri", "model_path", "registered_model"),  # (registered_model null: not asked, or spooled)
        )
        optional = {"spool": self.spool} if self.spool else {}
        return {k: getattr(self, k) for k in keys} | optional


@dataclass
class _Plan:
    """What follows from the settings, the data and the machine."""

    config: TrainConfig
    entry: Any
    data: Any
    adaptation: Any
    num_classes: int
    speed: hardware.SpeedPlan
    strategy: Any
    chief: bool
    weights: dict[str, Any] = field(default_factory=dict)  # what pretrained weights loaded, for the params
    warnings: list[str] = field(default_factory=list)  # said once the model is built (no warning before a refusal)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.x_train) / self.config.recipe.batch_size)

    def settings(self, net: Any) -> dict[str, Any]:
        """What a run logs as params, as Python values: the resolved settings, then what they led to."""
        data = self.data
        return {
            **self.config.settings(),
            "family": self.entry.family,
            "input_shape": list(self.adaptation.target_shape),
            "num_classes": self.num_classes,
            "dataset_source": data.source,
            "image_shape": list(data.image_shape),
            "adaptation": self.adaptation.describe(),
            "train_size": len(data.x_train),
            "val_size": len(data.x_val),
            "test_size": len(data.x_test),
            **self.speed.params(),
            "strategy_class": type(self.strategy).__name__,
            "replicas": self.strategy.num_replicas_in_sync,
            "params_count": net.count_params(),
            **self.weights,
        }


def train(
    model: str | None = None,
    dataset: str | None = None,
    *,
    verbose: int | str = "auto",
    callbacks: list[Any] | None = None,
    **settings: Any,
) -> TrainResult:
    """Trains a registered model on a dataset with ``model.fit`` and tracks the run in MLflow.

    Every setting is a field of :class:`~kerascnn.config.TrainConfig` (``epochs``, ``batch_size``,
    ``precision``, ``tracking_uri``, ``resume``...): recipe settings left unset come from the
    model's recipe, ``precision="auto"`` from the machine (:mod:`kerascnn.hardware`).

    Args:
        model: A name from ``list_models()`` (default ``mnist_cnn``).
        dataset: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` or an image folder.
        verbose: Keras' verbosity; ``"auto"``: a progress bar on a terminal, else a line per epoch.
        callbacks: Extra Keras callbacks (a list, or a ``keras.callbacks.CallbackList``).
        **settings: The other fields of ``TrainConfig``.

    Returns:
        A :class:`TrainResult` with the test metrics, run id and model path.

    Raises:
        ArgumentError: Bad settings or data (a ``ValueError``), before any run exists.
        TrainingFailed: The loss became NaN, or a training step did not fit in memory; the run is
            marked FAILED.

    Example:
        >>> result = train("mnist_cnn", "mnist")  # doctest: +SKIP
        >>> round(result.test_accuracy, 2)  # doctest: +SKIP
        0.99
    """
    with device.callers_random_state():  # from the start: Keras' first import draws from Python's generator (rich)
        return _checked_train(model, dataset, verbose, callbacks, settings)


train.__signature__ = signature_of(TrainConfig, train, ("model", "dataset"))  # type: ignore[attr-defined]


def _checked_train(
    model: str | None, dataset: str | None, verbose: int | str, callbacks: list[Any] | None, settings: dict[str, Any]
) -> TrainResult:
    """``train``'s arguments checked, the store probed and its writer warmed, then :func:`_train`."""
    if isinstance(verbose, (bool, float)) or verbose not in ("auto", 0, 1, 2):
        raise ArgumentError(f"`verbose` must be 'auto', 0, 1 or 2 (Keras'). Received: verbose={verbose!r}")
    callbacks = _check_callbacks(callbacks)
    given = {k: v for k, v in (("model", model), ("dataset", dataset)) if v is not None}
    config = TrainConfig.create(**given, **settings)
    previous = _find_resumable(config) if config.resume else None  # before any data is loaded
    if previous:
        _check_unchanged(config, previous)
    config = (config.merged_with(previous.data.params, _registration(previous)) if previous else config).resolved()
    if not config.tracking and not checks.can_create_in(checks.nearest_existing(Path(UNTRACKED).resolve())):
        raise ArgumentError(  # checked before the model is trained
            f"An untracked run saves its model in {UNTRACKED}, which cannot be made or written here. "
            "Received: tracking=False"
        )
    if config.tracking and not config.offline:
        store.probe(config.store_uri, offline_hint=True, experiment=config.experiment)
        if config.strategy != "multiworker":  # (only a multi-worker chief tracks: it starts its writer later)
            recorder(config.store_uri).warm(yielding=True)  # MLflow loads in the writer while TensorFlow loads here
    return _train(config, previous, verbose, callbacks)


def _train(config: TrainConfig, previous: Any, verbose: int | str, callbacks: list[Any]) -> TrainResult:
    """The data, the model, ``fit`` in its tracked run, and the test pass (``train`` checked the rest)."""
    checked = _data(config) if _data_first(config) else None
    plan = _plan(config, checked)
    if previous:
        _warn_if_precision_changed(plan, previous)
    net = _build(plan)
    for warning in plan.warnings:
        print(f"kerascnn: warning: {warning}", file=sys.stderr, flush=True)
    pipes = _pipelines(plan)
    batch = plan.config.recipe.batch_size
    run: TrackedRun | None = None
    try:
        with lifecycle(lambda: _open_run(plan, net, previous)) as run:
            with device.batch_fits(batch, "a training step", TrainingFailed):
                history, timing = _fit(plan, net, pipes, run, verbose, callbacks)
            if run is not None:
                run.resumable = False  # trained (Keras removed the epoch backup): only the evaluation is left
            saved = _save_model(plan, run, net, history) if plan.chief else None  # logged during the test pass
            with device.batch_fits(batch, "a test batch", TrainingFailed):
                probabilities = net.predict(pipes["test"], verbose=0)
            result = _result(plan, run, net, history, probabilities)
            result.model_path = str(saved) if saved else None
            if run is not None:
                _log_results(plan, run, net, result, probabilities, timing)
    except (KeyboardInterrupt, Terminated) as error:  # (the CLI says it in its own words: cli._fail)
        _note_resume(error, run, config)
        raise
    finally:  # the run ended, its writes in the store or the spool (with copies of its files), stopped or not
        if run is not None:
            shutil.rmtree(_staging(run), ignore_errors=True)
    if run is not None:
        result.run_id, result.spool = run.run_id, str(run.ref.spool_dir) if run.ref.spooled else None
        result.registered_model = run.ref.registered
        result.model_path = _model_location(run, result.model_path)
    return result


def _note_resume(error: BaseException, run: TrackedRun | None, config: TrainConfig) -> None:
    """Adds to a Ctrl-C's or a signal's exception how to continue its run, as the CLI prints it
    (the Python API's traceback shows the note; Python 3.11 and later)."""
    if run is None or not run.resumable or not run.run_id or not hasattr(error, "add_note"):
        return  # (not begun, trained already, or spooled: `kerascnn sync` first)
    store_arg = "" if config.tracking_uri is None else f", tracking_uri={config.tracking_uri!r}"
    error.add_note(
        f"kerascnn: run {run.run_id} ended {run.status}; "
        f"kerascnn.train(resume={run.run_id[:12]!r}{store_arg}) continues it"
    )


def _registration(previous: Any) -> dict[str, str]:
    """The registration (``register_model``, ``alias``) an interrupted run was started with: its
    resume registers the model as asked then, unless told otherwise."""
    tags = previous.data.tags
    return {k: tags[f"kerascnn.{k}"] for k in REGISTRATION if f"kerascnn.{k}" in tags}


def _check_callbacks(callbacks: Any) -> list[Any]:
    """``callbacks`` as a list of Keras callbacks (anything with ``set_model``, as Keras calls it).

    A ``keras.callbacks.CallbackList``, which ``model.fit`` takes too, gives its callbacks.
    """
    items: Any = [] if callbacks is None else callbacks
    if any(k.__name__ == "CallbackList" for k in type(items).__mro__) and isinstance(items.callbacks, list):
        own = (getattr(items, "_history", None), getattr(items, "_progbar", None))  # the list's: fit adds its own
        items = [c for c in items.callbacks if all(c is not o for o in own)]
    listed = isinstance(items, (list, tuple))
    if not listed or not all(not isinstance(c, type) and callable(getattr(c, "set_model", None)) for c in items):
        raise ArgumentError(f"`callbacks` must be a list of Keras callbacks. Received: callbacks={callbacks!r}")
    return list(items)


def _result(
    plan: _Plan, run: TrackedRun | None, net: Any, history: dict[str, list[float]], probabilities: np.ndarray
) -> TrainResult:
    config = plan.config
    test_loss, test_accuracy = _test_metrics(net, plan.data.y_test, probabilities)
    tracked = run is not None
    return TrainResult(
        run_id=None,
        experiment=config.experiment if tracked else None,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        epochs=config.recipe.epochs,
        tracking_uri=config.tracking_uri if tracked else None,
        model_path=None,
        history=history,
        params=plan.settings(net),
        model=net,
    )


def _data_first(config: TrainConfig) -> bool:
    """Whether the data is loaded (and checked) before TensorFlow: always, except an image folder
    under the multi-worker strategy (read with TensorFlow, which the strategy must precede)."""
    from kerascnn import data as data_module

    return config.dataset in data_module.NAMED or config.strategy != "multiworker"


def _plan(config: TrainConfig, checked: tuple[Any, Any, Any, int] | None) -> _Plan:
    """Strategy, seed, the data (``checked`` already, or now) and the speed settings."""
    tf = device.import_tensorflow()
    import keras

    strategy = device.make_strategy(config.strategy)  # before other TF work: multi-worker needs it first
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    entry, data, adaptation, classes = checked or _data(config)
    recipe = config.recipe  # (resolved and checked on each access)
    speed = hardware.plan(
        device.machine(),
        precision=config.precision,
        jit=config.jit,
        steps_per_execution=recipe.steps_per_execution,
        strategy=config.strategy,
        deterministic=config.deterministic,
    )
    warnings = [*data.notes, *speed.warnings, *schedule_warnings(recipe, "warmup_epochs" in config.given)]
    chief = device.is_chief(strategy)
    return _Plan(config, entry, data, adaptation, classes, speed, strategy, chief, warnings=warnings)


def _data(config: TrainConfig) -> tuple[Any, Any, Any, int]:
    """The model's entry, the data, how images feed the model, and the classes (checked)."""
    from kerascnn import data as data_module
    from kerascnn.models import get_entry

    data = data_module.load_dataset(
        config.dataset,
        validation_split=config.validation_split,
        train_samples=config.train_samples,
        test_samples=config.test_samples,
        seed=config.seed,
    )
    if "test_samples" not in config.given:  # (--train-samples N alone tests on N images, or on all there are)
        data.notes[:] = [note for note in data.notes if not note.startswith("test_samples=")]
    entry = get_entry(config.model)
    adaptation = data_module.plan_adaptation(
        data.image_shape, entry.min_input_size(**config.model_kwargs), config.input_shape
    )
    classes = config.num_classes or data.num_classes
    if classes < data.num_classes:
        raise ArgumentError(
            f"`num_classes` is smaller than the {data.num_classes} classes of {config.dataset}. "
            f"Received: num_classes={classes}"
        )
    return entry, data, adaptation, classes


def _build(plan: _Plan) -> Any:
    """The model, compiled with the recipe's optimizer, under the plan's dtype policy and strategy."""
    from kerascnn.models import create_model
    from kerascnn.recipes import make_optimizer

    config = plan.config
    with device.dtype_policy(plan.speed.policy), plan.strategy.scope():
        if config.weights is None:
            net = create_model(
                config.model,
                input_shape=plan.adaptation.target_shape,
                num_classes=plan.num_classes,
                **config.model_kwargs,
            )
        else:  # fine-tuning: every layer trains; the source's input convention is built in
            from kerascnn.pretrained import create_pretrained

            pre = create_pretrained(
                config.model,
                config.weights,
                input_shape=plan.adaptation.target_shape,
                num_classes=plan.num_classes,
                **config.model_kwargs,
            )
            net = pre.model
            plan.weights = {
                "weights_source": pre.source,
                "weights_preprocessing": pre.preprocessing,
                "weights_loaded": len(pre.loaded),
                "weights_skipped": ",".join(pre.skipped) or "none",
            }
        net.compile(
            optimizer=make_optimizer(config.recipe, plan.steps_per_epoch),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=plan.speed.jit,
            steps_per_execution=plan.speed.steps_per_execution,
        )
    return net


def _pipelines(plan: _Plan) -> dict[str, Any]:
    from kerascnn import data as data_module

    config, data, adaptation = plan.config, plan.data, plan.adaptation
    if adaptation.describe() != "none":
        print(
            f"kerascnn: adapting {config.dataset} images for {config.model}: {adaptation.describe()}",
            file=sys.stderr,
            flush=True,
        )
    augment = data_module.augmentation_layers(config.dataset, config.seed) if config.augment else None
    batch = config.recipe.batch_size

    def pipe(x: Any, y: Any, **options: Any) -> Any:
        return data_module.make_pipeline(x, y, batch_size=batch, adaptation=adaptation, **options)

    train = {"training": True, "seed": config.seed, "augment": augment, "deterministic": config.deterministic}
    return {
        "train": pipe(data.x_train, data.y_train, **train),
        "val": pipe(data.x_val, data.y_val) if len(data.x_val) else None,
        "test": pipe(data.x_test, data.y_test),
    }


def _open_run(plan: _Plan, net: Any, previous: Any) -> TrackedRun | None:
    """Creates the run, or re-opens the interrupted one; its backup folder is locked for this process."""
    from kerascnn import data as data_module

    config = plan.config
    if not config.tracking or not plan.chief:
        return None
    uri = config.store_uri
    tags = {
        "kerascnn.model": config.model,
        "kerascnn.family": plan.entry.family,
        "kerascnn.dataset": config.recorded_dataset,
        "kerascnn.kind": "train",
        "kerascnn.device": device.describe_devices(),
        **store.environment_tags(),
        **device.machine().tags(),
        **plan.speed.tags(),
    }
    tags.update({f"kerascnn.{k}": str(v) for k in REGISTRATION if (v := getattr(config, k)) is not None})
    if previous is not None:
        tags["kerascnn.resumed"] = str(int(previous.data.tags.get("kerascnn.resumed", "0")) + 1)
        if _logged_policy_if_changed(plan, previous):
            tags["kerascnn.resumed_dtype_policy"] = plan.speed.policy
        backup = Path(previous.data.tags["kerascnn.backup_dir"])  # held: a second --resume of it is refused
        reopened = TrackedRun.reopen(uri, config.experiment, previous, tags=tags, lock=backup)
        if config.system_metrics:
            reopened.monitor_system()
        return reopened
    name = config.run_name or f"{config.model}-{Path(config.recorded_dataset).name}"
    backups = store.home(uri) / "backups"
    run = TrackedRun.start(
        uri,
        config.experiment,
        name,
        tags=tags,
        params={key: encode(value) for key, value in plan.settings(net).items()},
        lock=lambda local_id: backups / local_id,
        offline=config.offline,
    )
    run.set_tags({"kerascnn.backup_dir": str(run.locked)})
    run.log_inputs(data_module.describe_splits(plan.data))
    if config.system_metrics:
        run.monitor_system()
    return run


def _fit(
    plan: _Plan, net: Any, pipes: dict[str, Any], run: TrackedRun | None, verbose: int | str, extra: list[Any] | None
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """``model.fit`` with the kit's callbacks; returns the history (from the first epoch, for a
    resumed run too) and this session's training time and speed."""
    import tempfile

    from kerascnn.callbacks import EpochBackup, EpochMetrics, Interruptible, Progress, StopOnNaN, TimeEstimate

    config = plan.config
    callbacks: list[Any] = [StopOnNaN()]
    if run is not None:  # metrics before the backup: a kill in between repeats an epoch's point, never loses it
        callbacks.append(EpochMetrics(run))
    backup = run.locked if run is not None else None
    if backup is None and config.strategy == "multiworker":
        backup = Path(tempfile.mkdtemp(prefix="kerascnn-backup-"))
    if backup is not None:
        callbacks.append(EpochBackup(str(backup)))
    callbacks.append(Interruptible())  # after the epoch's metrics and backup: an interrupted epoch is kept
    if verbose:
        callbacks.append(TimeEstimate(plan.steps_per_epoch, config.recipe.epochs))
    if verbose == "auto":  # Keras' bar on a terminal; one line per epoch in logs and pipes
        verbose = 1 if sys.stdout.isatty() else 2
    if verbose == 1:
        callbacks.append(Progress())
    started = time.perf_counter()
    history = net.fit(
        pipes["train"],
        validation_data=pipes["val"],
        epochs=config.recipe.epochs,
        callbacks=[*callbacks, *(extra or [])],
        verbose=verbose,
        shuffle=False,
    )
    fit_seconds = time.perf_counter() - started
    hist = {k: [float(v) for v in values] for k, values in history.history.items()}
    for epoch, value in zip(history.epoch, hist.get("loss", [])):
        if not math.isfinite(value):
            raise TrainingFailed(f"the training loss became {value} in epoch {epoch + 1}; lower the learning rate")
    timing = {
        "fit_seconds": fit_seconds,
        "train_images_per_second": len(plan.data.x_train) * len(history.epoch) / max(fit_seconds, 1e-9),
    }
    if history.epoch and history.epoch[0] > 0 and run is not None:  # resumed: the earlier epochs are in the run
        hist = _with_earlier_epochs(run, hist, history.epoch[0])
    return hist, timing


def _with_earlier_epochs(run: TrackedRun, history: dict[str, list[float]], first: int) -> dict[str, list[float]]:
    """``history`` of a session that resumed at epoch ``first``, with the epochs before it as the
    run logged them (as it is, when the store lacks some: they wait in a spool, say)."""
    earlier: dict[str, list[float]] = {}
    try:
        client = store.client(run.ref.uri)
        for key in history:
            logged = {m.step: m.value for m in store.retrying(client.get_metric_history, run.run_id, key)}
            earlier[key] = [logged[step] for step in range(first)]
    except Exception:  # (KeyError: a step the store lacks) the results still come; the curves start later
        return history
    return {key: earlier[key] + values for key, values in history.items()}


def _test_metrics(net: Any, labels: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
    """Test loss and accuracy from one ``predict`` pass (the confusion matrix reuses it).

    The loss is the compiled one, Keras' sparse categorical cross-entropy plus the model's
    regularisation losses, as ``evaluate`` would report it.
    """
    import keras

    loss = float(
        np.mean(
            keras.ops.convert_to_numpy(
                keras.losses.sparse_categorical_crossentropy(labels, probabilities.astype(np.float32))
            )
        )
    )
    loss += float(sum(keras.ops.convert_to_numpy(w) for w in net.losses)) if net.losses else 0.0
    return loss, float(np.mean(probabilities.argmax(axis=1) == labels))


def _staging(run: TrackedRun) -> Path:
    """The local folder of a tracked run's files until they are in the store."""
    return store.home(run.ref.uri) / "outputs" / run.ref.local_id


def _save_model(plan: _Plan, run: TrackedRun | None, net: Any, history: dict[str, list[float]]) -> Path:
    """Saves the trained model (``mlruns/untracked/`` without tracking). For a tracked run, the
    writer logs it (``model.keras`` and an MLflow model) and draws the training curves while
    this process evaluates the model."""
    from kerascnn.data import model_info
    from kerascnn.loading import save_model

    config, data = plan.config, plan.data
    info = model_info(config.model, data, plan.adaptation)
    if run is None:
        file = _untracked_file(config.run_name or f"{config.model}-{Path(config.recorded_dataset).name}")
        try:
            return save_model(net, file, info).resolve()
        except BaseException:
            file.unlink(missing_ok=True)  # no empty or half-written model left behind
            raise
    folder = _staging(run) / "trained"
    folder.mkdir(parents=True, exist_ok=True)
    saved = save_model(net, folder / "model.keras", info)  # on disk before any upload is tried
    run.log_artifacts(folder, draw={"history": history, "title": config.title})
    run.log_model(
        saved=saved,
        name="mlflow_model",
        example=data.x_test[:2],
        outputs=np.zeros((2, plan.num_classes), np.float32),  # the signature's shape and type
        adaptation=plan.adaptation,
        metadata={"class_names": data.class_names, "dataset": config.recorded_dataset},
    )
    return saved


def _untracked_file(name: str) -> Path:
    """A new file ``mlruns/untracked/NAME-TIME.keras`` (``-2``, ``-3``... after it when taken), the
    name made a safe file name of at most 100 characters."""
    folder = Path(UNTRACKED)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{store.slug(name, 'model')[:100]}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        file = folder / (f"{stem}.keras" if n == 1 else f"{stem}-{n}.keras")
        try:
            file.open("x").close()  # claimed, even against another process finishing this second
            return file
        except FileExistsError:
            continue
    raise FileExistsError(f"No free file name for {stem}.keras in {folder}")


def _log_results(
    plan: _Plan, run: TrackedRun, net: Any, result: TrainResult, probabilities: np.ndarray, timing: dict[str, float]
) -> None:
    """The final metrics, ``describe``, the report plots (drawn by the writer) and the registered
    version of a tracked run."""
    from kerascnn.report import describe

    config, data = plan.config, plan.data
    best_val = max(result.history.get("val_accuracy", [float("nan")]))
    run.log_metrics(
        {
            "test_accuracy": result.test_accuracy,
            "test_loss": result.test_loss,
            "best_val_accuracy": best_val,
            **timing,
        },
        step=config.recipe.epochs,
    )
    folder = _staging(run) / "results"
    folder.mkdir(parents=True, exist_ok=True)
    report = describe(net)
    (folder / "describe.txt").write_text(report.to_table() + "\n")
    (folder / "describe.json").write_text(json.dumps(report.to_dict(), indent=1))
    confusion = {
        "labels": data.y_test,
        "predicted": probabilities.argmax(axis=1),
        "class_names": data.class_names,
        "title": config.title,
    }
    run.log_artifacts(folder, draw=confusion)
    if config.register_model:
        tags = {
            "dataset": config.recorded_dataset,
            "model": config.model,
            "test_accuracy": f"{result.test_accuracy:.4f}",
            "val_accuracy": f"{best_val:.4f}",
        }
        run.register_model(config.register_model, config.alias, tags)


def _model_location(run: TrackedRun, staged: str | None) -> str | None:
    """Where the model lives once the run ended: the store's file, the spool's, or a URI."""
    if staged is None:
        return None
    if run.ref.spooled:
        kept = sorted(run.ref.spool_dir.glob("files/*/model.keras"))
        return str(kept[0]) if kept else None
    db = store.sqlite_path(run.ref.uri)
    if db is None:
        return f"runs:/{run.run_id}/model.keras"
    artifact_uri = run.ref.artifact_uri or store.client(run.ref.uri).get_run(run.run_id).info.artifact_uri
    if artifact_uri.startswith("file://"):  # a path, %-escapes (a space: %20) decoded
        from urllib.parse import unquote

        artifact_uri = unquote(artifact_uri.removeprefix("file://"))
    return artifact_uri + "/model.keras"


def _find_resumable(config: TrainConfig) -> Any:
    """The run ``resume`` names (a full id or a unique prefix), or the latest interrupted one
    of this model (and dataset, if given) with a saved epoch; checked without creating a store."""
    uri = config.store_uri
    what = config.model if "model" in config.given else "train"
    nothing = store.NoSuchRun(
        f"Nothing to resume: no interrupted {what} run with a saved epoch in experiment "
        f"{config.experiment!r}. Received: resume={config.resume!r}"
    )
    try:
        if store.not_made(uri):
            if isinstance(config.resume, str):
                raise store.NoSuchRun(
                    f"No run with this id in {uri} (the store does not exist). Received: resume={config.resume!r}"
                )
            raise nothing
        if isinstance(config.resume, str):
            run = store.find_run(uri, config.resume, "resume")
        else:
            run = _latest_interrupted(config, nothing)
    except store.NoSuchRun as e:
        raise _with_spool_hint(e, config) from None
    if run.info.status == "FINISHED":
        raise ArgumentError(f"Run already FINISHED; nothing to resume. Received: resume={run.info.run_id!r}")
    if _logged_its_model(uri, run.info.run_id):
        flag = console.option("tracking-uri", uri if "tracking_uri" in config.given else None)
        raise ArgumentError(
            f"Run trained every epoch before it was stopped (in its evaluation): nothing to resume; `kerascnn "
            f"evaluate {run.info.run_id[:12]}{flag}` scores its model. Received: resume={config.resume!r}"
        )
    tags = run.data.tags
    pid = int(tags.get("kerascnn.pid", "0") or 0)
    if (
        run.info.status == "RUNNING"
        and tags.get("kerascnn.host") == socket.gethostname()
        and pid
        and pid != os.getpid()
        and store.process_alive(pid)
    ):
        raise ArgumentError(f"Run is still running in process {pid}. Received: resume={run.info.run_id!r}")
    return run


def _with_spool_hint(error: ArgumentError, config: TrainConfig) -> ArgumentError:
    """``error`` (no such run) with a pointer to ``kerascnn sync`` when interrupted runs that
    ``resume`` could take wait in the store's spool: it can resume them once they are in the store."""
    waiting = _spooled_resumable(config)
    if not waiting:
        return error
    text, received, value = str(error).rpartition(" Received: ")
    runs = "1 interrupted run waits" if waiting == 1 else f"{waiting} interrupted runs wait"
    hint = f"({runs} in this store's spool: `kerascnn sync` sends {'it' if waiting == 1 else 'them'})"
    return ArgumentError(f"{text.removesuffix('.')} {hint}.{received}{value}")


def _spooled_resumable(config: TrainConfig) -> int:
    """How many interrupted training runs of the spool ``config.resume`` could name."""
    from kerascnn.tracking.sync import pending

    return sum(1 for spooled in pending(config.store_uri) if _could_resume(spooled, config))


def _could_resume(spooled: Any, config: TrainConfig) -> bool:
    tags: dict[str, str] = next((op["data"].get("tags", {}) for op in spooled.ops if op["kind"] == "create"), {})
    ids = [i for i in (spooled.info.get("run_id"), spooled.info.get("local_id")) if i]
    return (
        spooled.status != "FINISHED"
        and spooled.info.get("experiment") == config.experiment
        and not spooled.info.get("parent_local_id")  # (a search's trial)
        and tags.get("kerascnn.kind", "train") == "train"
        and ("model" not in config.given or tags.get("kerascnn.model", config.model) == config.model)
        and (not isinstance(config.resume, str) or any(i.startswith(config.resume) for i in ids))
    )


def _logged_its_model(uri: str, run_id: str) -> bool:
    """Whether the run logged its trained ``model.keras`` (which only a finished fit does)."""
    from kerascnn.sources import KERAS_ARTIFACTS

    keras_file = KERAS_ARTIFACTS["mlflow_model"]
    return any(a.path == keras_file for a in store.retrying(store.client(uri).list_artifacts, run_id))


def _logged_policy_if_changed(plan: _Plan, previous: Any) -> str | None:
    """The resumed run's logged dtype policy where this machine resolves another one, else ``None``."""
    logged = previous.data.params.get("dtype_policy")
    return logged if logged and logged != plan.speed.policy else None


def _warn_if_precision_changed(plan: _Plan, previous: Any) -> None:
    """A run resumed on another machine (or TensorFlow setup) may resolve ``auto`` otherwise: say so."""
    logged = _logged_policy_if_changed(plan, previous)
    if logged:
        print(
            f"kerascnn: warning: run {previous.info.run_id[:12]} trained in {logged} so far; here "
            f"precision={plan.config.precision!r} resolves to {plan.speed.policy}, which it continues in "
            f"(tag kerascnn.resumed_dtype_policy; the dtype_policy param keeps {logged})",
            file=sys.stderr,
            flush=True,
        )


def _check_unchanged(config: TrainConfig, previous: Any) -> None:
    """A resumed run goes on with the settings it logged: a given setting that differs is refused."""
    changed = config.changed_from(previous.data.params)
    if "run_name" in config.given and config.run_name != previous.info.run_name:  # (a name, not a param)
        changed["run_name"] = (repr(previous.info.run_name), repr(config.run_name))
    if "experiment" in config.given:  # (a run named by id may be in any experiment)
        experiment = store.retrying(store.client(config.store_uri).get_experiment, previous.info.experiment_id).name
        if experiment != config.experiment:
            changed["experiment"] = (repr(experiment), repr(config.experiment))
    if changed:
        logged = ", ".join(f"{k}={was}" for k, (was, _) in changed.items())
        given = ", ".join(f"{k}={now}" for k, (_, now) in changed.items())
        raise ArgumentError(
            f"`resume` continues run {previous.info.run_id[:12]} with the settings it logged ({logged}); drop "
            f"the differing flags, or start a new run. Received: {given}"
        )


def _latest_interrupted(config: TrainConfig, nothing: ArgumentError) -> Any:
    from kerascnn import data as data_module

    recorded = config.recorded_dataset
    client = store.client(config.store_uri)
    experiment = store.retrying(client.get_experiment_by_name, config.experiment)
    if experiment is None:
        raise nothing
    query = "tags.`kerascnn.kind` = 'train' AND attributes.status != 'FINISHED'"
    if "model" in config.given:
        query += f" AND tags.`kerascnn.model` = '{config.model}'"
    candidates = store.retrying(
        client.search_runs, [experiment.experiment_id], query, order_by=["attributes.start_time DESC"]
    )
    candidates = [
        r
        for r in candidates
        if ("dataset" not in config.given or data_module.as_run(r.data.tags.get("kerascnn.dataset", "")) == recorded)
        and Path(r.data.tags.get("kerascnn.backup_dir", "/-")).is_dir()
    ]
    if not candidates:
        raise nothing
    return candidates[0]


def evaluate(
    model: Any,
    dataset: str | None = None,
    *,
    test_samples: int | None = None,
    batch_size: int = 256,
    tracking_uri: str | None = None,
    unsafe: bool = False,
) -> dict[str, Any]:
    """Test loss and accuracy of a model on a dataset: a Keras model, or a MODEL as ``predict``
    takes it (a ``.keras`` file, ``runs:/RUN_ID``, ``models:/NAME@ALIAS``...; loaded safely, a
    run's or registered model's from its run's ``.keras`` artifact in ``tracking_uri``).

    Images are adapted to the model's input (pad/resize, grey to RGB) as in ``train``. A kit
    model (its file, or the object ``train``, ``tune`` or ``load_model`` gave in this process)
    knows its class names: the dataset's labels are matched to them by name (an image folder
    whose classes sort differently still scores right), and a dataset with classes the model
    never saw is refused.

    Args:
        model: A Keras model, a ``.keras`` file, a run id, ``runs:/RUN_ID[/NAME]``,
            ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.
        dataset: A dataset name or image folder, as in ``train`` (default: the one a kit
            model was trained on, which its ``.keras`` file records).
        test_samples: Score the first N test images only (default: all).
        batch_size: Images per prediction batch.
        tracking_uri: The store a run's or registered model is found in (default as in ``train``).
        unsafe: Load a ``.keras`` file that holds Python code (``Lambda`` layers); only for files you trust.

    Returns:
        ``test_accuracy``, ``test_loss``, ``test_size``, the ``dataset`` and the ``adaptation`` applied.

    Example:
        >>> evaluate("model.keras", "mnist")  # doctest: +SKIP
        {'test_accuracy': 0.9921, 'test_loss': 0.02430..., 'test_size': 10000, 'dataset': 'mnist', 'adaptation': 'none'}
    """
    from kerascnn import data as data_module
    from kerascnn import sources

    if dataset is not None:
        data_module.check_dataset_name(dataset)
    if test_samples is not None:
        checks.positive_int("test_samples", test_samples)
    batch_size = checks.positive_int("batch_size", batch_size)
    net, info, received = sources.keras_and_info(model, tracking_uri, unsafe=unsafe)
    shape = sources.image_input(net, received)
    out_classes = sources.class_output(net, received)
    trained = info.get("class_names")
    if dataset is None:
        dataset = info.get("dataset")
        if not dataset:
            raise ArgumentError(
                "`dataset` is needed: the model does not record the dataset it was trained on (a kit "
                "model's .keras file does). Received: dataset=None"
            )
    data = data_module.load_dataset(dataset, validation_split=0.0, train_samples=1, test_samples=test_samples)
    labels = _labels_by_name(data, trained, dataset)
    try:
        adaptation = data_module.plan_adaptation(data.image_shape, 1, shape)
    except ArgumentError as e:  # (the model's shape is not the user's argument here: the dataset is)
        raise e.echoing(f"dataset={dataset!r}") from None
    if out_classes < data.num_classes:
        raise ArgumentError(
            f"The model predicts {out_classes} classes; {dataset} has {data.num_classes}. Received: dataset={dataset!r}"
        )
    pipe = data_module.make_pipeline(data.x_test, labels, batch_size=batch_size, adaptation=adaptation)
    with device.batch_fits(batch_size):
        probabilities = net.predict(pipe, verbose=0)
    loss, accuracy = _test_metrics(net, labels, probabilities)
    return {
        "test_accuracy": accuracy,
        "test_loss": loss,
        "test_size": len(data.x_test),
        "dataset": dataset,
        "adaptation": adaptation.describe(),
    }


def _labels_by_name(data: Any, trained: list[str] | None, dataset: str) -> np.ndarray:
    """The test labels in the model's class order (the dataset's order when the model's is unknown)."""
    if not trained or list(data.class_names) == list(trained):
        return data.y_test
    unknown = sorted(set(data.class_names) - set(trained))
    if unknown:
        raise ArgumentError(
            f"The dataset has classes the model was not trained on ({console.first(unknown, 5)}); "
            f"the model knows {console.first(list(trained), 10)}. Received: dataset={dataset!r}"
        )
    order = np.array([trained.index(name) for name in data.class_names], dtype=np.int32)
    return order[data.y_test]
