"""``train()``: build, fit and evaluate a registered model on a dataset, tracked in MLflow.

Order of work, so that bad input never leaves a run behind: check every
argument, make the distribution strategy, load the data, plan how images feed
the model, build and compile it, and only then create (or re-open) the MLflow
run. From there on the run always ends FINISHED, FAILED or KILLED.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerascnn import checks, device
from kerascnn import tracking as tracking_lib
from kerascnn.data import check_dataset_name
from kerascnn.recipes import Recipe, recipe_for
from kerascnn.registry import check_known


class TrainingFailed(RuntimeError):
    """Training ran but did not finish (a NaN loss, for instance); the run is marked FAILED."""


@dataclass
class TrainResult:
    """What ``train()`` returns; ``to_json()`` is the CLI's ``--json`` line."""

    run_id: str | None
    experiment: str | None
    test_accuracy: float
    test_loss: float
    epochs: int
    tracking_uri: str | None
    model_path: str | None
    history: dict[str, list[float]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        keys = ("run_id", "experiment", "test_accuracy", "test_loss", "epochs", "tracking_uri", "model_path")
        return {k: getattr(self, k) for k in keys}


@dataclass
class _Settings:
    """Every argument of ``train()``, checked."""

    model: str
    dataset: str
    recipe: Recipe
    model_kwargs: dict[str, Any]
    input_shape: tuple[int, int, int] | None
    num_classes: int | None
    validation_split: float
    train_samples: int | None
    test_samples: int | None
    seed: int
    deterministic: bool
    augment: bool
    experiment: str
    run_name: str | None
    tracking: bool
    tracking_uri: str | None
    resume: bool | str
    jit: bool | str
    strategy: str


def check_arguments(**kw: Any) -> None:
    """Checks ``train()``'s arguments without loading TensorFlow; raises ``ValueError``.

    Example:
        >>> check_arguments(model="mnist_cnn", dataset="mnist", epochs=0)  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: `epochs` must be a positive integer. Received: epochs=0
    """
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(train).parameters.items()
                if p.default is not inspect.Parameter.empty}  # fmt: skip
    unknown = set(kw) - set(defaults) - {"model", "dataset"}
    if unknown:
        raise ValueError(f"Unknown argument(s) {sorted(unknown)}. Received: {kw}")
    merged = dict(defaults, **kw)
    merged.pop("verbose"), merged.pop("callbacks")
    _check(**merged)


def _check(**kw: Any) -> _Settings:
    check_known(kw["model"], "model")
    dataset = check_dataset_name(kw["dataset"])
    recipe = recipe_for(kw["model"]).replace(
        optimizer=kw["optimizer"], learning_rate=kw["learning_rate"], schedule=kw["schedule"],
        warmup_epochs=kw["warmup_epochs"], batch_size=kw["batch_size"], epochs=kw["epochs"],
        steps_per_execution=kw["steps_per_execution"], precision=kw["precision"],
    )  # fmt: skip
    model_kwargs = dict(kw["model_kwargs"] or {})
    resume = kw["resume"]
    if not isinstance(resume, (bool, str)) or resume == "":
        raise ValueError(f"`resume` must be True, False or a run id. Received: resume={resume!r}")
    if resume and not kw["tracking"]:
        raise ValueError("`resume` continues a tracked run; it cannot be used without tracking. Received: tracking=False")
    if kw["jit"] != "auto" and not isinstance(kw["jit"], bool):
        raise ValueError(f"`jit` must be True, False or 'auto'. Received: jit={kw['jit']!r}")
    return _Settings(
        model=kw["model"], dataset=dataset, recipe=recipe, model_kwargs=model_kwargs,
        input_shape=checks.input_shape(kw["input_shape"]) if kw["input_shape"] is not None else None,
        num_classes=checks.num_classes(kw["num_classes"]) if kw["num_classes"] is not None else None,
        validation_split=checks.fraction("validation_split", kw["validation_split"]),
        train_samples=None if kw["train_samples"] is None else checks.positive_int("train_samples", kw["train_samples"]),
        test_samples=None if kw["test_samples"] is None else checks.positive_int("test_samples", kw["test_samples"]),
        seed=checks.non_negative_int("seed", kw["seed"]), deterministic=bool(kw["deterministic"]),
        augment=bool(kw["augment"]), experiment=checks.non_empty("experiment", kw["experiment"]),
        run_name=None if kw["run_name"] is None else checks.non_empty("run_name", kw["run_name"]),
        tracking=bool(kw["tracking"]),
        tracking_uri=tracking_lib.resolve_tracking_uri(kw["tracking_uri"]) if kw["tracking"] else None,
        resume=resume, jit=kw["jit"], strategy=device.check_strategy(kw["strategy"]),
    )  # fmt: skip


def train(
    model: str = "mnist_cnn",
    dataset: str = "mnist",
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    optimizer: str | None = None,
    schedule: str | None = None,
    warmup_epochs: float | None = None,
    steps_per_execution: int | None = None,
    train_samples: int | None = None,
    test_samples: int | None = None,
    validation_split: float = 0.1,
    seed: int = 0,
    deterministic: bool = False,
    augment: bool = False,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    experiment: str = tracking_lib.DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    tracking_uri: str | None = None,
    tracking: bool = True,
    resume: bool | str = False,
    precision: str | None = None,
    jit: bool | str = "auto",
    strategy: str = "auto",
    verbose: int | str = "auto",
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Trains a registered model on a dataset with ``model.fit`` and tracks the run in MLflow.

    Unset recipe arguments (optimizer, learning rate, schedule, batch size,
    epochs, steps per execution) come from the model's default recipe
    (:mod:`kerascnn.recipes`).

    Args:
        model: A name from ``list_models()``.
        dataset: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` or an
            image folder (one sub-folder per class).
        epochs, batch_size, learning_rate, optimizer, schedule, warmup_epochs,
            steps_per_execution: Override the recipe.
        train_samples: Use the first N training images (before the validation split).
        test_samples: Evaluate on the first N test images.
        validation_split: Fraction of training images held out (seeded).
        seed: Seed for the split, shuffling and weights.
        deterministic: Also make TensorFlow's ops deterministic (slower).
        augment: Random shifts/rotations (and flips for photos) while training.
        input_shape: Model input; default: the images' shape, enlarged to the
            model's minimum size. Grey images are converted when it asks for 3 channels.
        num_classes: Output classes; default: the dataset's.
        model_kwargs: Builder options (``width``, ``batch_norm``, ...).
        experiment: MLflow experiment name.
        run_name: MLflow run name (default ``<model>-<dataset>``).
        tracking_uri: MLflow store; default ``$MLFLOW_TRACKING_URI`` or
            ``sqlite:///mlruns/mlflow.db``.
        tracking: ``False`` trains without MLflow.
        resume: ``True`` continues the latest interrupted run of this model and
            dataset in ``experiment``; a run id continues that run.
        precision: ``float32`` or ``mixed`` (float16 on GPU, bfloat16 on CPU); default: the recipe's.
        jit: XLA compilation: ``True``, ``False`` or ``"auto"`` (GPU only).
        strategy: ``auto``, ``mirrored`` or ``multiworker`` (``TF_CONFIG``).
        verbose: Keras' ``fit`` verbosity; ``"auto"``: the progress bar on a
            terminal, one line per epoch otherwise.
        callbacks: Extra Keras callbacks.

    Returns:
        A :class:`TrainResult` with the test metrics, run id and model path.

    Raises:
        ValueError: Bad arguments or data, before any run is created.
        TrainingFailed: The loss became NaN; the run is marked FAILED.

    Example:
        >>> result = train("mnist_cnn", "mnist", epochs=1, train_samples=2000)  # doctest: +SKIP
        >>> result.test_accuracy  # doctest: +SKIP
        0.93
    """
    s = _check(
        model=model, dataset=dataset, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        optimizer=optimizer, schedule=schedule, warmup_epochs=warmup_epochs,
        steps_per_execution=steps_per_execution, train_samples=train_samples, test_samples=test_samples,
        validation_split=validation_split, seed=seed, deterministic=deterministic, augment=augment,
        input_shape=input_shape, num_classes=num_classes, model_kwargs=model_kwargs, experiment=experiment,
        run_name=run_name, tracking=tracking, tracking_uri=tracking_uri, resume=resume,
        precision=precision, jit=jit, strategy=strategy,
    )  # fmt: skip
    resume_run = _find_resumable(s) if s.resume else None  # fails before any data is loaded
    import keras
    import tensorflow as tf

    from kerascnn import data as data_module
    from kerascnn.registry import create_model, get_entry

    strategy_obj = device.make_strategy(s.strategy)  # first: multi-worker needs it before other TF work
    chief = device.is_chief(strategy_obj)
    keras.utils.set_random_seed(s.seed)
    if s.deterministic:
        tf.config.experimental.enable_op_determinism()

    data = data_module.load_dataset(
        s.dataset, validation_split=s.validation_split, train_samples=s.train_samples,
        test_samples=s.test_samples, seed=s.seed,
    )  # fmt: skip
    entry = get_entry(s.model)
    entry.check_options(s.model_kwargs)
    adaptation = data_module.plan_adaptation(
        data.image_shape, entry.min_input_size(**s.model_kwargs), s.input_shape
    )
    classes = s.num_classes or data.num_classes
    if classes < data.num_classes:
        raise ValueError(
            f"`num_classes` is smaller than the {data.num_classes} classes of {s.dataset}. "
            f"Received: num_classes={classes}"
        )
    policy = device.policy_name(s.recipe.precision)
    use_jit = device.resolve_jit(s.jit)
    recipe = s.recipe
    if s.strategy == "multiworker" and recipe.steps_per_execution > 1:
        # Keras' multi-step loop fails across workers ("You must feed a value for placeholder
        # tensor", keras-team/keras#19246); one step per call works.
        print(f"kerascnn: steps_per_execution {recipe.steps_per_execution} -> 1 under the multiworker strategy",
              flush=True)  # fmt: skip
        recipe = recipe.replace(steps_per_execution=1)
    steps_per_epoch = math.ceil(len(data.x_train) / recipe.batch_size)
    with device.dtype_policy(policy), strategy_obj.scope():
        net = create_model(s.model, input_shape=adaptation.target_shape, num_classes=classes, **s.model_kwargs)
        from kerascnn.recipes import make_optimizer

        net.compile(
            optimizer=make_optimizer(recipe, steps_per_epoch),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=use_jit,
            steps_per_execution=recipe.steps_per_execution,
        )
    augment_layers = data_module.augmentation_layers(s.dataset, s.seed) if s.augment else None
    pipes = {
        "train": data_module.make_pipeline(data.x_train, data.y_train, batch_size=recipe.batch_size,
                                           adaptation=adaptation, training=True, seed=s.seed,
                                           augment=augment_layers),
        "val": data_module.make_pipeline(data.x_val, data.y_val, batch_size=recipe.batch_size,
                                         adaptation=adaptation) if len(data.x_val) else None,
        "test": data_module.make_pipeline(data.x_test, data.y_test, batch_size=recipe.batch_size,
                                          adaptation=adaptation),
    }  # fmt: skip
    params = {
        "model": s.model,
        "model_kwargs": json.dumps(s.model_kwargs, sort_keys=True, default=str),
        "family": entry.family,
        "input_shape": list(adaptation.target_shape),
        "num_classes": classes,
        "dataset": s.dataset,
        "dataset_source": data.source,
        "image_shape": list(data.image_shape),
        "adaptation": adaptation.describe(),
        "train_size": len(data.x_train),
        "val_size": len(data.x_val),
        "test_size": len(data.x_test),
        "train_samples": s.train_samples,
        "validation_split": s.validation_split,
        "augment": s.augment,
        "optimizer": recipe.optimizer,
        "learning_rate": recipe.learning_rate,
        "schedule": recipe.schedule,
        "warmup_epochs": recipe.warmup_epochs,
        "batch_size": recipe.batch_size,
        "epochs": recipe.epochs,
        "steps_per_execution": recipe.steps_per_execution,
        "seed": s.seed,
        "deterministic": s.deterministic,
        "precision": recipe.precision,
        "dtype_policy": policy,
        "jit_compile": use_jit,
        "strategy": s.strategy,
        "strategy_class": type(strategy_obj).__name__,
        "replicas": strategy_obj.num_replicas_in_sync,
        "params_count": net.count_params(),
    }
    if adaptation.describe() != "none" and verbose:
        print(f"kerascnn: adapting {s.dataset} images for {s.model}: {adaptation.describe()}", flush=True)

    from kerascnn.callbacks import EpochBackup, StopOnNaN
    from kerascnn.signals import deferred, terminate_as_exception

    if verbose == "auto":  # Keras' bar on a terminal; one line per epoch in logs and pipes
        verbose = 1 if sys.stdout.isatty() else 2
    run: _Run | None = None
    backup_dir = Path(tempfile.mkdtemp(prefix="kerascnn-backup-"))
    try:
        with terminate_as_exception():
            if s.tracking and chief:  # a signal from here on ends the run, never leaves it RUNNING
                shutil.rmtree(backup_dir, ignore_errors=True)
                run = _Run.open(s, params, entry.family, resume_run)
                backup_dir = run.backup_dir
                tracking_lib.warm_up()
            fit_callbacks = [StopOnNaN()]
            if run:  # metrics before the backup: a kill in between repeats an epoch's point, never loses it
                fit_callbacks.append(tracking_lib.epoch_callback(run.metrics))
            if run or s.strategy == "multiworker":
                fit_callbacks.append(EpochBackup(str(backup_dir)))
            fit_callbacks += list(callbacks or [])
            started = time.perf_counter()
            history = net.fit(pipes["train"], validation_data=pipes["val"], epochs=recipe.epochs,
                              callbacks=fit_callbacks, verbose=verbose, shuffle=False)  # fmt: skip
            fit_seconds = time.perf_counter() - started
            hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
            _raise_if_diverged(hist)
            probabilities = net.predict(pipes["test"], verbose=0)
            test_loss, test_accuracy = _test_metrics(net, data.y_test, probabilities)
            result = TrainResult(
                run_id=run.run_id if run else None, experiment=s.experiment if run else None,
                test_accuracy=test_accuracy, test_loss=test_loss, epochs=recipe.epochs,
                tracking_uri=s.tracking_uri if run else None, model_path=None, history=hist, params=params,
                model=net,
            )  # fmt: skip
            if chief:
                example = next(iter(pipes["test"]))[0][:2].numpy()
                result.model_path = _save_outputs(run, net, result, data, probabilities, example, fit_seconds, s)
        with deferred():
            if run:
                run.finish()
        return result
    except BaseException as error:
        with deferred():
            if run:
                run.fail(error)
        raise
    finally:
        if run:
            run.release()
        else:
            shutil.rmtree(backup_dir, ignore_errors=True)


def evaluate(
    model: Any,
    dataset: str = "mnist",
    *,
    test_samples: int | None = None,
    batch_size: int = 256,
    unsafe: bool = False,
) -> dict[str, Any]:
    """Test loss and accuracy of a model (or a ``.keras`` file, loaded safely) on a dataset.

    Images are adapted to the model's input (pad/resize, grey to RGB) as in ``train``.

    Example:
        >>> evaluate("model.keras", "mnist")  # doctest: +SKIP
        {'test_accuracy': 0.9921, 'test_loss': 0.0243, 'test_size': 10000, 'adaptation': 'none'}
    """
    from kerascnn import data as data_module
    from kerascnn.loading import load_model

    check_dataset_name(dataset)
    batch_size = checks.positive_int("batch_size", batch_size)
    net = load_model(model, unsafe=unsafe, compile=False) if isinstance(model, (str, os.PathLike)) else model
    data = data_module.load_dataset(dataset, validation_split=0.0, train_samples=1, test_samples=test_samples)
    input_shape = tuple(int(d) for d in net.input_shape[1:])
    adaptation = data_module.plan_adaptation(data.image_shape, 1, input_shape)
    out_classes = int(net.output_shape[-1])
    if out_classes < data.num_classes:
        raise ValueError(f"The model predicts {out_classes} classes; {dataset} has {data.num_classes}. "
                         f"Received: dataset={dataset!r}")  # fmt: skip
    pipe = data_module.make_pipeline(data.x_test, data.y_test, batch_size=batch_size, adaptation=adaptation)
    probabilities = net.predict(pipe, verbose=0)
    loss, accuracy = _test_metrics(net, data.y_test, probabilities)
    return {"test_accuracy": accuracy, "test_loss": loss, "test_size": len(data.x_test),
            "adaptation": adaptation.describe()}  # fmt: skip


def _test_metrics(net: Any, labels: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
    """Test loss and accuracy from one ``predict`` pass (the confusion matrix reuses it).

    The loss is the compiled one, Keras' sparse categorical cross-entropy plus
    the model's regularisation losses, as ``evaluate`` would report it.
    """
    import keras

    loss = float(np.mean(keras.ops.convert_to_numpy(
        keras.losses.sparse_categorical_crossentropy(labels, probabilities.astype(np.float32)))))
    loss += float(sum(keras.ops.convert_to_numpy(l) for l in net.losses)) if net.losses else 0.0
    return loss, float(np.mean(probabilities.argmax(axis=1) == labels))


def _raise_if_diverged(history: dict[str, list[float]]) -> None:
    losses = history.get("loss", [])
    for epoch, value in enumerate(losses):
        if not math.isfinite(value):
            raise TrainingFailed(
                f"the training loss became {value} in epoch {epoch + 1}; lower the learning rate"
            )


def _save_outputs(run: _Run | None, net: Any, result: TrainResult, data: Any, probabilities: np.ndarray,
                  example: np.ndarray, fit_seconds: float, s: _Settings) -> str:
    """Saves the model; for a tracked run also logs metrics, plots, describe and the model
    (its signature from ``example``, the first test images as the model sees them, and their
    already computed ``probabilities``)."""
    from kerascnn import plots
    from kerascnn.report import describe

    if run is None:
        folder = Path("mlruns") / "untracked"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{s.run_name or f'{s.model}-{Path(s.dataset).name}'}-{time.strftime('%Y%m%d-%H%M%S')}.keras"
        net.save(path)
        return str(path.resolve())

    best_val = max(result.history.get("val_accuracy", [float("nan")]))
    run.metrics.log({
        "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
        "best_val_accuracy": best_val, "fit_seconds": fit_seconds,
        "train_images_per_second": len(data.x_train) * s.recipe.epochs / max(fit_seconds, 1e-9),
    }, step=s.recipe.epochs)  # fmt: skip
    predicted = probabilities.argmax(axis=1)
    report = describe(net)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        net.save(folder / "model.keras")
        (folder / "describe.txt").write_text(report.to_table() + "\n")
        (folder / "describe.json").write_text(json.dumps(report.to_dict(), indent=1))
        (folder / "plots").mkdir()
        plots.save(plots.training_curves(result.history, title=f"{s.model} on {s.dataset}"),
                   str(folder / "plots" / "training_curves.png"))  # fmt: skip
        cm, fig = plots.confusion_matrix(data.y_test, predicted, data.class_names)
        plots.save(fig, str(folder / "plots" / "confusion_matrix.png"))
        np.savetxt(folder / "confusion_matrix.csv", cm, fmt="%d", delimiter=",")
        run.log_artifacts(folder)
    tracking_lib.log_keras_model(run.uri, run.run_id, net, "mlflow_model", example, probabilities[: len(example)])
    return run.artifact_path("model.keras")


class _Run:
    """One tracked training run: created (or re-opened for ``resume``) after all checks pass."""

    def __init__(self, uri: str, run_id: str, backup_dir: Path) -> None:
        self.uri, self.run_id, self.backup_dir = uri, run_id, backup_dir
        self.metrics = tracking_lib.MetricsLogger(uri, run_id)
        self._lock: int | None = None

    def hold(self) -> None:
        """Takes the run's lock (its backup folder): one process trains a run at a time."""
        self._lock = tracking_lib.lock_folder(self.backup_dir, wait=False)
        if self._lock is None:
            raise ValueError(f"Run is being trained by another process. Received: resume={self.run_id!r}")

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the lock
            self._lock = None

    @classmethod
    def open(cls, s: _Settings, params: dict[str, Any], family: str, resume_run: Any = None) -> _Run:
        import mlflow

        uri = s.tracking_uri
        experiment_id = tracking_lib.ensure_experiment(uri, s.experiment)
        client = tracking_lib.client(uri)
        flat = tracking_lib.flatten_params(params)
        tags = {
            "kerascnn.model": s.model, "kerascnn.family": family, "kerascnn.dataset": s.dataset,
            "kerascnn.kind": "train", **tracking_lib.environment_tags(),
        }  # fmt: skip
        if resume_run is not None:
            run_id = resume_run.info.run_id
            _check_same_settings(resume_run, flat, s)
            opened = cls(uri, run_id, _backup_root(uri) / run_id)
            opened.hold()  # refuses a second --resume of the same run
            tracking_lib.reopen_run(client, resume_run)
            tags["kerascnn.resumed"] = str(int(resume_run.data.tags.get("kerascnn.resumed", "0")) + 1)
        else:
            name = s.run_name or f"{s.model}-{Path(s.dataset).name}"
            created = tracking_lib.retrying(client.create_run, experiment_id, run_name=name, tags=tags)
            run_id = created.info.run_id
            opened = cls(uri, run_id, _backup_root(uri) / run_id)
        try:  # the run exists now: whatever happens next, it must end
            if resume_run is None:
                opened.hold()
                tracking_lib.log_params(client, run_id, params)
            for key, value in {**tags, "kerascnn.backup_dir": str(opened.backup_dir)}.items():
                tracking_lib.retrying(client.set_tag, run_id, key, value)
            mlflow.set_tracking_uri(uri)
        except BaseException as error:
            opened.fail(error)
            opened.release()
            raise
        return opened

    def log_artifacts(self, folder: Path) -> None:
        tracking_lib.retrying(tracking_lib.client(self.uri).log_artifacts, self.run_id, str(folder))

    def artifact_path(self, name: str) -> str:
        uri = tracking_lib.client(self.uri).get_run(self.run_id).info.artifact_uri
        return (uri[len("file://"):] if uri.startswith("file://") else uri) + "/" + name

    def finish(self) -> None:
        tracking_lib.end_run(self.uri, self.run_id, "FINISHED")

    def fail(self, error: BaseException) -> None:
        tracking_lib.end_failed(self.uri, self.run_id, error)


def _backup_root(uri: str) -> Path:
    db = tracking_lib.sqlite_path(uri)
    return (db.parent if db else Path("mlruns").resolve()) / "backups"


def _find_resumable(s: _Settings) -> Any:
    """The run ``s.resume`` names, or the latest unfinished one of this model and dataset
    that saved an epoch; checked without creating a store or an experiment."""
    db = tracking_lib.sqlite_path(s.tracking_uri)
    nothing = ValueError(
        f"Nothing to resume: no interrupted {s.model} run on {s.dataset} with a saved epoch in "
        f"experiment {s.experiment!r}. Received: resume={s.resume!r}"
    )
    if db is not None and not db.exists():
        raise nothing
    client = tracking_lib.client(s.tracking_uri)
    if isinstance(s.resume, str):
        try:
            run = client.get_run(s.resume)
        except Exception:
            raise ValueError(f"No run with this id in the store. Received: resume={s.resume!r}") from None
    else:
        experiment = tracking_lib.retrying(client.get_experiment_by_name, s.experiment)
        if experiment is None:
            raise nothing
        query = (f"tags.`kerascnn.kind` = 'train' AND tags.`kerascnn.model` = '{s.model}' "
                 "AND attributes.status != 'FINISHED'")  # fmt: skip
        candidates = tracking_lib.retrying(client.search_runs, [experiment.experiment_id], query,
                                           order_by=["attributes.start_time DESC"])  # fmt: skip
        candidates = [r for r in candidates if r.data.tags.get("kerascnn.dataset") == s.dataset
                      and (_backup_root(s.tracking_uri) / r.info.run_id).is_dir()]  # fmt: skip
        if not candidates:
            raise nothing
        run = candidates[0]
    run_id = run.info.run_id
    if run.info.status == "FINISHED":
        raise ValueError(f"Run already FINISHED; nothing to resume. Received: resume={run_id!r}")
    tags = run.data.tags
    pid = int(tags.get("kerascnn.pid", "0") or 0)
    if (run.info.status == "RUNNING" and tags.get("kerascnn.host") == socket.gethostname()
            and pid and pid != os.getpid() and tracking_lib.process_alive(pid)):  # fmt: skip
        raise ValueError(f"Run is still running in process {pid}. Received: resume={run_id!r}")
    return run


def _check_same_settings(run: Any, flat: dict[str, str], s: _Settings) -> None:
    logged = run.data.params
    ignore = {"dataset_source"}
    changed = [f"{k}: {logged[k]} -> {v}" for k, v in flat.items() if k in logged and logged[k] != v and k not in ignore]
    if changed:
        raise ValueError(
            f"--resume must repeat the interrupted run's settings; changed: {'; '.join(changed)}. "
            f"Received: resume={s.resume!r}"
        )
