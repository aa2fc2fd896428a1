"""``tune()``: KerasTuner searches with one parent MLflow run per search and one nested run per trial.

KerasTuner does the searching, resuming (``overwrite=False``), retries and
chief/worker distribution; this module adds the tracking around it:

* the parent run is found again on resume (tags ``kerascnn.search_name`` and
  ``kerascnn.search_dir``), so a rerun continues under the same parent;
* each trial runs inside a nested run that ends FINISHED or FAILED (with the
  reason); a trial whose process died is re-run by KerasTuner, and its old run
  is marked KILLED;
* a NaN loss fails the trial (``FailedTrialError``) and the search goes on;
* only the best trial's checkpoint stays on disk (Hyperband keeps those of
  open brackets until they close, since promoted trials start from them).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerascnn import checks
from kerascnn import tracking as tracking_lib
from kerascnn.data import check_dataset_name
from kerascnn.recipes import recipe_for

TUNERS = ("random", "hyperband", "bayesian", "grid")


class SearchFailed(RuntimeError):
    """The search ran but could not go on (KerasTuner's consecutive-failure limit, a worker
    without a chief); the parent run is marked FAILED."""
FACTOR = 3  # Hyperband's halving factor
PARENT_WAIT_S = 120.0  # how long a worker waits for the chief's parent run


@dataclass
class TuneResult:
    """What ``tune()`` returns; ``to_json()`` is the CLI's ``--json`` line."""

    parent_run_id: str | None
    search_name: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    best_model: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"parent_run_id": self.parent_run_id, "search_name": self.search_name,
                "trials": self.trials, "best": self.best}  # fmt: skip


def _check(family: Any, build: Any, dataset: Any, tuner: Any, max_trials: Any, epochs: Any, search_name: Any,
           fixed: Any, objective: str) -> tuple[str, str]:
    from kerascnn.spaces import SPACES

    if build is None:
        checks.one_of("family", family, SPACES)
    elif not callable(build):
        raise ValueError(f"`build` must be a callable build(hp, *, input_shape, num_classes). Received: build={build!r}")
    checks.one_of("tuner", tuner, TUNERS)
    checks.positive_int("max_trials", max_trials)
    checks.positive_int("epochs", epochs)
    checks.one_of("objective", objective, ("val_accuracy", "val_loss"))
    if not isinstance(fixed, dict) or not all(isinstance(k, str) and k.isidentifier() for k in fixed):
        raise ValueError(f"`fixed` must map hyperparameter names to values. Received: fixed={fixed!r}")
    name = search_name or f"{family if build is None else getattr(build, '__name__', 'custom')}-{Path(str(dataset)).name}-{tuner}"
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\'\"`") or name.startswith("."):
        raise ValueError(f"`search_name` must be a plain name (no slashes). Received: search_name={search_name!r}")
    return check_dataset_name(dataset), name


def check_arguments(**kwargs: Any) -> None:
    """Checks ``tune()``'s arguments without loading TensorFlow; raises ``ValueError``."""
    import inspect

    params = inspect.signature(tune).parameters
    unknown = set(kwargs) - set(params)
    if unknown:
        raise ValueError(f"Unknown argument(s) {sorted(unknown)}. Received: {kwargs}")
    a = {k: p.default for k, p in params.items()}
    a.update(kwargs)
    _check(a["family"], a["build"], a["dataset"], a["tuner"], a["max_trials"], a["epochs"], a["search_name"],
           dict(a["fixed"] or {}), a["objective"])  # fmt: skip
    _check_rest(a)


def _check_rest(a: dict[str, Any]) -> tuple[Any, str]:
    """The checks after the family/tuner ones; returns (recipe, tracking URI)."""
    family, build = a["family"], a["build"]
    from kerascnn.spaces import RECIPE_MODEL

    recipe = recipe_for(RECIPE_MODEL[family] if build is None else "mnist_cnn")
    recipe = recipe.replace(batch_size=a["batch_size"], epochs=a["epochs"])
    checks.one_of("precision", a["precision"], ("float32", "mixed"))
    if a["train_samples"] is not None:
        checks.positive_int("train_samples", a["train_samples"])
    checks.non_negative_int("seed", a["seed"])
    checks.fraction("validation_split", a["validation_split"])
    if not a["validation_split"] > 0:
        raise ValueError(
            f"`validation_split` must be > 0: the objective is measured on it. "
            f"Received: validation_split={a['validation_split']!r}"
        )
    checks.non_negative_int("max_retries_per_trial", a["max_retries_per_trial"])
    checks.positive_int("max_consecutive_failed_trials", a["max_consecutive_failed_trials"])
    checks.non_empty("experiment", a["experiment"])
    return recipe, tracking_lib.resolve_tracking_uri(a["tracking_uri"])


def tune(
    family: str = "mnist_cnn",
    dataset: str = "mnist",
    *,
    tuner: str = "random",
    max_trials: int = 10,
    epochs: int = 2,
    build: Callable[..., Any] | None = None,
    fixed: dict[str, Any] | None = None,
    objective: str = "val_accuracy",
    batch_size: int | None = None,
    train_samples: int | None = None,
    validation_split: float = 0.1,
    seed: int = 0,
    search_name: str | None = None,
    directory: str | os.PathLike = "mlruns/searches",
    overwrite: bool = False,
    experiment: str = tracking_lib.DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    max_retries_per_trial: int = 0,
    max_consecutive_failed_trials: int = 3,
    precision: str = "float32",
    progress: bool = True,
) -> TuneResult:
    """Runs (or resumes) a KerasTuner search; every trial is a nested MLflow run.

    Args:
        family: A search space from :mod:`kerascnn.spaces` (``mnist_cnn``,
            ``lenet5``, ``alexnet``, ``vgg``, ``resnet``).
        dataset: A dataset name or image folder, as in ``train``.
        tuner: ``random``, ``hyperband``, ``bayesian`` or ``grid``.
        max_trials: Trials in the search; rerun with more to extend it.
        epochs: Epochs per trial (Hyperband's ``max_epochs``).
        build: Your own ``build(hp, *, input_shape, num_classes)`` instead of ``family``'s.
        fixed: Hyperparameters pinned to a value (``{"filters": 32}``).
        objective: ``val_accuracy`` (maximised) or ``val_loss`` (minimised).
        batch_size: Batch size (default: the family's recipe).
        train_samples: Use the first N training images.
        validation_split: Fraction of training images for the objective.
        seed: Seed of the split, the tuner and the weights.
        search_name: Name of the search (default ``FAMILY-DATASET-TUNER``);
            the same name resumes it.
        directory: Where KerasTuner keeps its state (one folder per search).
        overwrite: Start the search afresh (the old MLflow runs stay).
        experiment: MLflow experiment.
        tracking_uri: MLflow store (default as in ``train``).
        max_retries_per_trial: KerasTuner's retries of a crashed trial.
        max_consecutive_failed_trials: KerasTuner stops after this many failures in a row.
        precision: ``float32`` or ``mixed``.
        progress: Print one line per finished trial.

    Returns:
        A :class:`TuneResult`: the parent run, every trial and the best one.

    Raises:
        ValueError: Bad arguments, unknown family or tuner, an empty space;
            before any run is created.

    Example:
        >>> result = tune("mnist_cnn", "mnist", tuner="hyperband", max_trials=6, epochs=3)  # doctest: +SKIP
        >>> result.best["hyperparameters"]  # doctest: +SKIP
        {'learning_rate': 0.003, 'filters': 32, 'dense_units': 128, 'dropout': 0.0}
    """
    fixed = dict(fixed or {})
    dataset, name = _check(family, build, dataset, tuner, max_trials, epochs, search_name, fixed, objective)
    recipe, uri = _check_rest(dict(locals()))

    import keras
    import keras_tuner as kt

    from kerascnn import data as data_module
    from kerascnn import device, spaces

    keras.utils.set_random_seed(seed)
    data = data_module.load_dataset(dataset, validation_split=validation_split, train_samples=train_samples, seed=seed)
    min_size = spaces.min_input_size(family) if build is None else 1
    adaptation = data_module.plan_adaptation(data.image_shape, min_size)
    space = build or spaces.SPACES[family]
    search_dir = Path(directory).resolve() / name
    policy = device.policy_name(precision)
    steps_per_epoch = math.ceil(len(data.x_train) / recipe.batch_size)

    hypermodel = _HyperModel(space, adaptation.target_shape, data.num_classes, recipe, steps_per_epoch, policy)
    _probe_space(hypermodel, fixed, family)  # before KerasTuner reads (or, with overwrite, deletes) the folder
    hp = kt.HyperParameters()
    for key, value in fixed.items():
        hp.Fixed(key, value)
    oracle = _make_oracle(kt, tuner, objective, max_trials, epochs, seed, hp, max_retries_per_trial,
                          max_consecutive_failed_trials)  # fmt: skip
    with device.dtype_policy(policy):
        search = tracked_tuner_class()(oracle=oracle, hypermodel=hypermodel, directory=str(search_dir.parent),
                                       project_name=search_dir.name, overwrite=overwrite)  # fmt: skip
    if hasattr(search.oracle, "max_trials"):  # Hyperband's oracle takes no max_trials; cap it here
        search.oracle.max_trials = max_trials
    from kerascnn import distributed

    role = distributed.role()
    lock = _lock_search(search_dir) if role != "worker" else None  # workers share the chief's folder
    label = family if build is None else getattr(build, "__name__", "custom")
    search.tracker = _SearchTracker(uri, experiment, name, search_dir, role, progress, max_trials, objective,
                                    label, dataset)  # fmt: skip
    if role != "worker":
        search.tracker.open_parent(
            params={"search_name": name, "tuner": tuner, "objective": objective, "family": family if build is None
                    else getattr(build, "__name__", "custom"), "dataset": dataset, "epochs": epochs,
                    "batch_size": recipe.batch_size, "train_size": len(data.x_train), "val_size": len(data.x_val),
                    "seed": seed, "precision": precision, "adaptation": adaptation.describe(),
                    "space": json.dumps([p.get_config() for p in search.oracle.get_space().space], default=str)},
        )  # fmt: skip
    pipes = {
        "train": data_module.make_pipeline(data.x_train, data.y_train, batch_size=recipe.batch_size,
                                           adaptation=adaptation, training=True, seed=seed),
        "val": data_module.make_pipeline(data.x_val, data.y_val, batch_size=recipe.batch_size, adaptation=adaptation),
    }  # fmt: skip
    from kerascnn.signals import deferred, terminate_as_exception

    try:  # KerasTuner prints every failed trial's traceback when DEBUG (its default); the reason goes to
        from keras_tuner.src import config as kt_config  # the trial's run and progress line instead
    except ImportError:
        kt_config = type("NoConfig", (), {"DEBUG": False})
    debug, kt_config.DEBUG = kt_config.DEBUG, False
    try:
        with terminate_as_exception(), device.dtype_policy(policy):
            try:
                search.search(pipes["train"], validation_data=pipes["val"], epochs=epochs, verbose=0, shuffle=False)
            except RuntimeError as e:  # KerasTuner's consecutive-failure limit, a worker without a parent run
                raise SearchFailed(_first_and_last_line(str(e))) from e
            if role == "worker":
                return TuneResult(parent_run_id=search.tracker.parent_id, search_name=name)
            return search.tracker.finish(search)
    except BaseException as error:
        with deferred():
            search.tracker.fail(error)
        raise
    finally:
        kt_config.DEBUG = debug
        if lock is not None:
            os.close(lock)


def _first_and_last_line(text: str) -> str:
    """KerasTuner's failure message: its first line and the last trial's exception, not the traceback."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "KerasTuner stopped the search"
    last = lines[-1].replace("keras_tuner.src.errors.", "")
    return lines[0] if len(lines) == 1 else f"{lines[0].rstrip('.')}; last trial: {last}"


def _probe_space(hypermodel: Any, fixed: dict[str, Any], family: str) -> None:
    """Builds the space with KerasTuner's defaults, first as it is (its names), then with
    ``fixed`` applied: a broken space, a ``fixed`` name it does not have, a fixed value it
    cannot build, or nothing left to tune is refused before anything is written."""
    import keras_tuner as kt

    def build(hp: Any) -> None:
        try:
            hypermodel(hp)
        except (ValueError, TypeError) as e:  # bad builder options and the like
            raise ValueError(f"The search space cannot build a model ({' '.join(str(e).split())[:300]}). "
                             f"Received: family={family!r}, fixed={fixed!r}") from None  # fmt: skip

    plain = kt.HyperParameters()
    build(plain)
    names = {p.name for p in plain.space}
    unknown = sorted(set(fixed) - names)
    if unknown:
        raise ValueError(f"The search space has no hyperparameter {', '.join(unknown)}; it has "
                         f"{', '.join(sorted(names))}. Received: fixed={fixed!r}")  # fmt: skip
    if not names - set(fixed):
        raise ValueError(f"The search space is empty: every hyperparameter is fixed. Received: fixed={fixed!r}")
    pinned = kt.HyperParameters()
    for key, value in fixed.items():
        pinned.Fixed(key, value)
    build(pinned)


def _lock_search(search_dir: Path) -> int:
    """An exclusive lock on the search folder for this process (a second process running the
    same search would re-run its trials)."""
    fd = tracking_lib.lock_folder(search_dir, wait=False)
    if fd is None:
        raise ValueError(f"This search is running in another process. Received: search_name={search_dir.name!r}")
    return fd


def _make_oracle(kt: Any, tuner: str, objective: str, max_trials: int, epochs: int, seed: int, hp: Any,
                 retries: int, failures: int) -> Any:
    direction = "max" if objective == "val_accuracy" else "min"
    common = dict(objective=kt.Objective(objective, direction), seed=seed, hyperparameters=hp,
                  max_retries_per_trial=retries, max_consecutive_failed_trials=failures)  # fmt: skip
    if tuner == "hyperband":
        return kt.oracles.HyperbandOracle(max_epochs=epochs, factor=FACTOR, hyperband_iterations=1, **common)
    cls = {"random": kt.oracles.RandomSearchOracle, "bayesian": kt.oracles.BayesianOptimizationOracle,
           "grid": kt.oracles.GridSearchOracle}[tuner]  # fmt: skip
    return cls(max_trials=max_trials, **common)


class _HyperModel:
    """Wraps a space: builds the model, compiles it with the trial's learning rate."""

    def __init__(self, space: Callable[..., Any], input_shape: tuple[int, int, int], num_classes: int,
                 recipe: Any, steps_per_epoch: int, policy: str) -> None:
        self.space, self.input_shape, self.num_classes = space, input_shape, num_classes
        self.recipe, self.steps_per_epoch, self.policy = recipe, steps_per_epoch, policy

    def __call__(self, hp: Any) -> Any:
        from kerascnn import device
        from kerascnn.recipes import make_optimizer

        with device.dtype_policy(self.policy):
            model = self.space(hp, input_shape=self.input_shape, num_classes=self.num_classes)
        if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
            rate = hp.values.get("learning_rate", self.recipe.learning_rate)
            recipe = self.recipe.replace(learning_rate=rate, schedule="constant")
            model.compile(optimizer=make_optimizer(recipe, self.steps_per_epoch),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                          steps_per_execution=recipe.steps_per_execution)  # fmt: skip
        return model


_FINAL = ("COMPLETED", "FAILED", "INVALID")


@contextlib.contextmanager
def _quiet_optimizer_slots() -> Iterator[None]:
    """Silences Keras' note that a checkpoint's optimizer slots were not loaded: trial
    checkpoints hold them, and a fresh (or inference) model does not need them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        yield


@functools.lru_cache(maxsize=1)
def tracked_tuner_class() -> type:
    """``TrackedTuner``: a ``keras_tuner.Tuner`` whose trials are nested MLflow runs.

    Built on first use so that importing this module (and the CLI's argument
    checks) does not load KerasTuner and TensorFlow.
    """
    import keras_tuner as kt
    from keras_tuner.errors import FailedTrialError

    class TrackedTuner(kt.Tuner):
        tracker: _SearchTracker
        _warm_start = False

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            hp = trial.hyperparameters
            if "tuner/epochs" in hp.values:  # Hyperband: train from the parent's epoch to this round's
                kwargs["epochs"] = hp.values["tuner/epochs"]
                kwargs["initial_epoch"] = hp.values["tuner/initial_epoch"]
            with self.tracker.trial_run(trial) as logger:
                kwargs["callbacks"] = [*kwargs.get("callbacks", []), tracking_lib.epoch_callback(logger)]
                self._warm_start = True
                try:
                    histories = super().run_trial(trial, *args, **kwargs)
                finally:
                    self._warm_start = False
                for history in histories:
                    losses = history.history.get("loss", [])
                    bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
                    if bad:
                        raise FailedTrialError(f"the training loss became {losses[bad[0]]} in epoch {bad[0] + 1}")
                self.tracker.trial_done(trial, histories, self.oracle.objective.name)
            return histories

        def _build_hypermodel(self, hp: Any) -> Any:
            model = super()._build_hypermodel(hp)
            if self._warm_start and "tuner/trial_id" in hp.values:  # Hyperband: start from the promoted trial
                with _quiet_optimizer_slots():
                    model.load_weights(self._get_checkpoint_fname(hp.values["tuner/trial_id"]))
            return model

        def on_trial_end(self, trial: Any) -> None:
            super().on_trial_end(trial)
            self.tracker.report(self.oracle.get_trial(trial.trial_id))
            self.prune_checkpoints(final=False)

        def prune_checkpoints(self, final: bool) -> None:
            """Deletes the checkpoints of finished trials except the best one. During a Hyperband
            search those of open brackets stay too (promoted trials start from them); a
            Hyperband worker leaves pruning to the chief, which sees the brackets."""
            oracle = self.oracle
            local = getattr(oracle, "_oracle", oracle)  # a worker's OracleClient wraps its local copy
            hyperband = isinstance(local, kt.oracles.HyperbandOracle)
            if hyperband and not final and local is not oracle:
                return
            keep = {t.trial_id for t in oracle.get_best_trials(1) if t.status == "COMPLETED"}
            if hyperband and not final:
                keep |= {info["id"] for b in oracle._brackets for r in b["rounds"] for info in r}
            for folder in Path(self.project_dir).glob("trial_*"):
                trial_id = folder.name[len("trial_"):]
                if trial_id in keep:
                    continue
                try:
                    if oracle.get_trial(trial_id).status not in _FINAL:
                        continue  # running somewhere, or waiting for a retry
                except Exception:
                    continue
                for name in ("checkpoint.weights.h5", "build_config.json", "checkpoint", "checkpoint.index"):
                    (folder / name).unlink(missing_ok=True)
                for data_file in folder.glob("checkpoint.data-*"):
                    data_file.unlink(missing_ok=True)

    return TrackedTuner


class _SearchTracker:
    """The MLflow side of a search: the parent run and a nested run per trial."""

    def __init__(self, uri: str, experiment: str, name: str, search_dir: Path, role: str, progress: bool,
                 max_trials: int, objective: str, family: str, dataset: str) -> None:
        self.uri, self.experiment, self.name, self.search_dir = uri, experiment, name, search_dir
        self.labels = {"kerascnn.model": family, "kerascnn.family": family, "kerascnn.dataset": dataset}
        self.role, self.progress, self.max_trials, self.objective = role, progress, max_trials, objective
        self.client = tracking_lib.client(uri)
        self.experiment_id = tracking_lib.ensure_experiment(uri, experiment)
        self.parent_id: str | None = None
        self.worker = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
        self._trial_runs: dict[str, str] = {}
        self._started: dict[str, float] = {}

    # -- parent -----------------------------------------------------------------------------
    def _find_parent(self) -> Any:
        query = f"tags.`kerascnn.kind` = 'search' AND tags.`kerascnn.search_name` = '{self.name}'"
        found = tracking_lib.retrying(self.client.search_runs, [self.experiment_id], query,
                                      order_by=["attributes.start_time DESC"])  # fmt: skip
        mine = [r for r in found if r.data.tags.get("kerascnn.search_dir") == str(self.search_dir)]
        return mine[0] if mine else None

    def open_parent(self, params: dict[str, Any]) -> None:
        """Creates the parent run, or re-opens the one of an earlier session of this search."""
        previous = self._find_parent()
        fresh_state = not any(self.search_dir.glob("trial_*/trial.json"))  # no trial started in this folder yet
        tags = {"kerascnn.kind": "search", "kerascnn.search_name": self.name, "kerascnn.search_dir": str(self.search_dir),
                "kerascnn.max_trials": str(self.max_trials), **self.labels, **tracking_lib.environment_tags()}  # fmt: skip
        if previous is not None and fresh_state and previous.info.status == "RUNNING":
            tracking_lib.end_run(self.uri, previous.info.run_id, "KILLED",
                                 "its process ended; the search was started afresh under a new parent run")
        if previous is not None and not fresh_state:
            self.parent_id = previous.info.run_id
            tracking_lib.reopen_run(self.client, previous)
            for key, value in tags.items():
                tracking_lib.retrying(self.client.set_tag, self.parent_id, key, value)
            self._kill_stale_trials(reason="the search process ended without closing it; the trial is re-run")
        else:
            run = tracking_lib.retrying(self.client.create_run, self.experiment_id, run_name=self.name, tags=tags)
            self.parent_id = run.info.run_id
            tracking_lib.log_params(self.client, self.parent_id, params)

    def _resolve_parent(self) -> str:
        """Workers find the parent the chief created (it exists before the chief serves trials)."""
        deadline = time.monotonic() + PARENT_WAIT_S
        while self.parent_id is None:
            found = self._find_parent()
            if found is not None and found.info.status == "RUNNING":
                self.parent_id = found.info.run_id
            elif time.monotonic() > deadline:
                raise SearchFailed(f"no RUNNING parent run for search {self.name!r} after {PARENT_WAIT_S:.0f} s; "
                                   "is the chief running with the same tracking URI and experiment?")  # fmt: skip
            else:
                time.sleep(1.0)
        return self.parent_id

    def _children(self, status: str | None = None) -> list[Any]:
        query = f"tags.`mlflow.parentRunId` = '{self.parent_id}'"
        if status:
            query += f" AND attributes.status = '{status}'"
        return tracking_lib.retrying(self.client.search_runs, [self.experiment_id], query, max_results=10000)

    def _kill_stale_trials(self, reason: str, trial_id: str | None = None) -> None:
        for run in self._children("RUNNING"):
            if trial_id is not None and run.data.tags.get("kerascnn.trial_id") != trial_id:
                continue
            tracking_lib.end_run(self.uri, run.info.run_id, "KILLED", reason)

    # -- trials -----------------------------------------------------------------------------
    def trial_run(self, trial: Any) -> Any:
        tracker = self

        class _Context:
            def __enter__(self) -> tracking_lib.MetricsLogger:
                parent = tracker._resolve_parent()
                # an earlier run of this trial whose process died: KerasTuner re-runs the trial now
                tracker._kill_stale_trials("its process died; KerasTuner re-ran the trial", trial.trial_id)
                tags = {"mlflow.parentRunId": parent, "kerascnn.kind": "trial", "kerascnn.trial_id": trial.trial_id,
                        "kerascnn.worker": tracker.worker, "kerascnn.search_name": tracker.name,
                        "kerascnn.host": tracking_lib.socket.gethostname(), "kerascnn.pid": str(os.getpid()),
                        **tracker.labels}  # fmt: skip
                run = tracking_lib.retrying(tracker.client.create_run, tracker.experiment_id,
                                            run_name=f"{tracker.name}-trial-{trial.trial_id}", tags=tags)  # fmt: skip
                self.run_id = run.info.run_id
                tracker._trial_runs[trial.trial_id] = self.run_id
                tracker._started[trial.trial_id] = time.monotonic()
                tracking_lib.log_params(tracker.client, self.run_id, trial.hyperparameters.values)
                return tracking_lib.MetricsLogger(tracker.uri, self.run_id)

            def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
                if error is None:
                    tracking_lib.retrying(tracker.client.set_tag, self.run_id, "kerascnn.trial_status", "COMPLETED")
                    tracking_lib.end_run(tracker.uri, self.run_id, "FINISHED")
                else:
                    status = tracking_lib.failure_status(error)
                    tracking_lib.retrying(tracker.client.set_tag, self.run_id, "kerascnn.trial_status", "FAILED")
                    tracking_lib.end_run(tracker.uri, self.run_id, status, tracking_lib.describe_failure(error))

        return _Context()

    def trial_done(self, trial: Any, histories: list[Any], objective: str) -> None:
        run_id = self._trial_runs[trial.trial_id]
        values = [v for h in histories for v in h.history.get(objective, [])]
        if values:
            best = max(values) if self.objective == "val_accuracy" else min(values)
            tracking_lib.MetricsLogger(self.uri, run_id).log({f"final_{objective}": values[-1],
                                                              f"best_{objective}": best}, step=len(values))  # fmt: skip

    def report(self, trial: Any) -> None:
        """The one progress line per trial."""
        if not self.progress:
            return
        shown = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        score = trial.score if trial.score is not None else float("nan")
        seconds = time.monotonic() - self._started.get(trial.trial_id, time.monotonic())
        run_id = self._trial_runs.get(trial.trial_id, "-")
        status = trial.status
        reason = (trial.message or "").strip().splitlines()[-1:] or [""]
        message = f" ({reason[0].replace('keras_tuner.src.errors.', '')[:160]})" if status != "COMPLETED" and trial.message else ""
        print(f"kerascnn: trial {trial.trial_id} [{self.worker}] {status} {self.objective}={score:.4f} "
              f"{seconds:.1f}s {shown} run {run_id}{message}", flush=True)  # fmt: skip

    # -- end ----------------------------------------------------------------------------------
    def finish(self, search: Any) -> TuneResult:
        """Tags the best trial, logs its model and a leaderboard; ends the parent FINISHED."""
        oracle = search.oracle
        ended = [r for r in self._children() if r.info.status in ("FINISHED", "FAILED")]
        runs = {r.data.tags.get("kerascnn.trial_id"): r for r in sorted(ended, key=lambda r: r.info.start_time)}
        trials = []
        for trial_id in sorted(oracle.trials, key=lambda t: (len(t), t)):
            t = oracle.trials[trial_id]
            run = runs.get(trial_id)
            trials.append({
                "trial_id": trial_id, "run_id": run.info.run_id if run else None, "status": t.status,
                "score": None if t.score is None or not math.isfinite(t.score) else float(t.score),
                "hyperparameters": {k: v for k, v in t.hyperparameters.values.items() if not k.startswith("tuner/")},
            })  # fmt: skip
        best_trials = [t for t in oracle.get_best_trials(1) if t.status == "COMPLETED"]
        best = next((t for t in trials if best_trials and t["trial_id"] == best_trials[0].trial_id), None)
        best_model = None
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            _write_leaderboard(folder / "leaderboard.csv", trials, maximize=self.objective == "val_accuracy")
            if best is not None:
                (folder / "best_hyperparameters.json").write_text(json.dumps(best["hyperparameters"], indent=1))
                with _quiet_optimizer_slots():
                    best_model = search.load_model(best_trials[0])
                best_model.save(folder / "best_model.keras")
                for key, value in best["hyperparameters"].items():
                    tracking_lib.retrying(self.client.set_tag, self.parent_id, f"best.{key}", str(value))
                tracking_lib.retrying(self.client.set_tag, self.parent_id, "kerascnn.best_trial_id", best["trial_id"])
                tracking_lib.retrying(self.client.set_tag, self.parent_id, "kerascnn.best_run_id", str(best["run_id"]))
                done = sum(1 for t in trials if t["status"] in ("COMPLETED", "FAILED"))
                tracking_lib.MetricsLogger(self.uri, self.parent_id).log(
                    {"best_score": best["score"], f"best_{self.objective}": best["score"]}, step=done)
            tracking_lib.retrying(self.client.log_artifacts, self.parent_id, str(folder))
        if best_model is not None:
            example = np.zeros((1, *best_model.input_shape[1:]), np.float32)
            tracking_lib.log_keras_model(self.uri, self.parent_id, best_model, "best_model", example)
        search.prune_checkpoints(final=True)
        tracking_lib.end_run(self.uri, self.parent_id, "FINISHED")
        return TuneResult(parent_run_id=self.parent_id, search_name=self.name, trials=trials, best=best,
                          best_model=best_model)  # fmt: skip

    def fail(self, error: BaseException) -> None:
        """Ends the parent (never left RUNNING): KILLED for signals, FAILED otherwise."""
        if self.parent_id is not None and self.role != "worker":
            tracking_lib.end_failed(self.uri, self.parent_id, error)


def _write_leaderboard(path: Path, trials: list[dict[str, Any]], maximize: bool) -> None:
    names = sorted({k for t in trials for k in t["hyperparameters"]})
    sign = -1 if maximize else 1
    ranked = sorted(trials, key=lambda t: (t["score"] is None, sign * (t["score"] or 0)))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "trial_id", "run_id", "status", "score", *names])
    for rank, t in enumerate(ranked, start=1):
        writer.writerow([rank, t["trial_id"], t["run_id"], t["status"], t["score"],
                         *[t["hyperparameters"].get(n, "") for n in names]])  # fmt: skip
    path.write_text(buffer.getvalue())
