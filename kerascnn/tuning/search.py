"""``tune()``: a KerasTuner search with one parent MLflow run and one nested run per trial.

KerasTuner does the searching, resuming (``overwrite=False``), retries and chief/worker
distribution; the kit adds the tracking around it (:mod:`~kerascnn.tuning.runs`), refuses
to resume a search with other settings, and prunes checkpoints that can no longer be
needed (:mod:`~kerascnn.tuning.tuner`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerascnn import checks, console, device, hardware
from kerascnn.config import TuneConfig, signature_of
from kerascnn.errors import ArgumentError, SearchFailed
from kerascnn.signals import Terminated
from kerascnn.tracking import store
from kerascnn.tracking.run import lifecycle
from kerascnn.tracking.writer import STORE, WARM, recorder
from kerascnn.tuning import distributed
from kerascnn.tuning.display import last_error
from kerascnn.tuning.runs import TRIAL_TAG
from kerascnn.tuning.spaces import (
    HyperModel,
    SearchSpace,
    describe_space,
    grid_size,
    outside,
    probe,
    space_for,
    variant_fixed,
)

SETTINGS_FILE = "kerascnn_search.json"  # the settings a search was started with, in its folder


@dataclass
class TuneResult:
    """What ``tune()`` returns; ``to_json()`` is the CLI's ``--json`` document."""

    parent_run_id: str | None
    search_name: str
    trials: list[dict[str, Any]] = field(default_factory=list, repr=False)  # (the repr: a notebook's lines)
    best: dict[str, Any] | None = None
    registered_model: str | None = None  # models:/NAME/VERSION of the best model with register_model
    best_model: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "parent_run_id": self.parent_run_id,
            "search_name": self.search_name,
            "trials": self.trials,
            "best": self.best,
            "registered_model": self.registered_model,  # (null: not asked for, or waiting in the spool)
        }


@dataclass
class _Search:
    """A search ready to run: its settings, space, data and KerasTuner tuner."""

    config: TuneConfig
    space: SearchSpace
    data: Any
    adaptation: Any
    recipe: Any
    speed: hardware.SpeedPlan
    folder: Path
    role: str
    hypermodel: HyperModel
    space_hyperparameters: Any  # the whole space, as KerasTuner's defaults build it
    tuner: Any = None  # KerasTuner's, once the lock is held
    lock: int | None = None  # the search's lock, held from before KerasTuner may delete the folder
    done_before: int = 0  # trials an earlier session of the search ended
    unwatch: Callable[[], None] | None = None  # the chief's: ends its lines about the workers


def tune(
    family: str | None = None,
    dataset: str | None = None,
    *,
    build: Callable[..., Any] | None = None,
    progress: bool = True,
    **settings: Any,
) -> TuneResult:
    """Runs (or resumes) a KerasTuner search; every trial is a nested MLflow run.

    Every setting is a field of :class:`~kerascnn.config.TuneConfig` (``tuner``,
    ``max_trials``, ``epochs``, ``fixed``, ``objective``, ``search_name``...).

    Args:
        family: A family, or a model name (its family's space with what the model sets fixed:
            ``vgg16``, depth 16), whose search space to use (default ``mnist_cnn``).
        dataset: A dataset name or image folder, as in ``train`` (default ``mnist``).
        build: Your own space instead of ``family``'s: KerasTuner's ``build(hp)``, or
            ``build(hp, *, input_shape, num_classes)`` to be given the data's shapes; its models
            train with ``family``'s recipe (``mnist_cnn``'s if ``family`` is not given).
        progress: Print what the search will run, each trial's start, epochs (a progress bar on a
            terminal) and end.
        **settings: The other fields of ``TuneConfig``.

    Returns:
        A :class:`TuneResult`: the parent run, every trial and the best one.

    Raises:
        ArgumentError: Bad settings, an empty space, a rerun with other settings; before
            any run exists.
        SearchFailed: KerasTuner stopped the search (too many failed trials), or every trial failed.

    Example:
        >>> result = tune("mnist_cnn", "mnist", tuner="hyperband", max_trials=6, epochs=3)  # doctest: +SKIP
        >>> result.best["hyperparameters"]  # doctest: +SKIP
        {'learning_rate': 0.003, 'filters': 32, 'dense_units': 128, 'dropout': 0.0}
    """
    with device.callers_random_state():  # from the start: Keras' first import draws from Python's generator (rich)
        return _checked_tune(family, dataset, build, progress, settings)


tune.__signature__ = signature_of(TuneConfig, tune, ("family", "dataset"))  # type: ignore[attr-defined]


def _checked_tune(
    family: str | None, dataset: str | None, build: Callable[..., Any] | None, progress: bool, settings: dict[str, Any]
) -> TuneResult:
    """``tune``'s arguments checked, the store probed and its writer warmed, then :func:`_search`."""
    checks.boolean("progress", progress)
    given = {k: v for k, v in (("family", family), ("dataset", dataset)) if v is not None}
    if build is not None:
        given.setdefault("family", "custom")
    config = TuneConfig.create(**given, **settings)
    if build is None and (pinned := variant_fixed(config.family, config.fixed)) != config.fixed:
        config = TuneConfig.create(**given, **dict(settings, fixed=pinned))  # (`tune vgg19`: depth 19)
    store.probe(config.store_uri, experiment=config.experiment)
    space = space_for(config.family, build)
    role = distributed.role()
    # the chief logs the best model at the end: MLflow's Keras flavor loads now, beside the trials; a
    # worker's writer needs only the store, ready before its first trial ends (its run's id is on the line)
    recorder(config.store_uri).warm(WARM if role != "worker" else STORE)
    return _search(config, space, role, progress)


def _search(config: TuneConfig, space: SearchSpace, role: str, progress: bool) -> TuneResult:
    """The search under its lock and parent run, then its summary (``tune`` checked the settings)."""
    search = _prepare(config, space, role, progress)
    try:
        with (
            _search_lock(search),
            _kerastuner_quiet(),
            lifecycle(lambda: _open_parent(search) if role != "worker" else None) as parent,
        ):
            search.tuner.runs.parent = parent
            if role == "worker":
                _check_worker_settings(search)
            _run(search)
            if role == "worker":
                return TuneResult(parent_run_id=search.tuner.runs.parent_id, search_name=config.name)
            result = _summarize(search)
            if result.best is None:  # (its leaderboard is logged; the parent ends FAILED)
                raise SearchFailed(_none_completed(search))
    except (KeyboardInterrupt, Terminated) as error:  # (the CLI says it in its own words: cli._fail)
        if role != "worker" and hasattr(error, "add_note"):  # (Python 3.11 and later)
            again = "with overwrite=True walks it again (KerasTuner cannot resume a grid search)"
            error.add_note(
                f"kerascnn: search {config.name!r} stopped; the same kerascnn.tune(...) call "
                + (again if config.tuner == "grid" else "resumes it, its finished trials kept")
            )
        raise
    finally:
        if search.unwatch is not None:  # (the chief's lines about its workers end with the search)
            search.unwatch()
    result.parent_run_id = parent.run_id if parent else None
    result.registered_model = parent.ref.registered if parent else None
    search.tuner.display.best(result.best, result.parent_run_id, console.option("tracking-uri", config.tracking_uri))
    return result


def _prepare(config: TuneConfig, space: SearchSpace, role: str, progress: bool) -> _Search:
    """Data and settings (checked before TensorFlow loads), the trials' model (:func:`_plan`),
    then, every check passed, the search's lock and KerasTuner's tuner (:func:`_attach_tuner`)."""
    from kerascnn import data as data_module

    data = data_module.load_dataset(
        config.dataset, validation_split=config.validation_split, train_samples=config.train_samples, seed=config.seed
    )
    adaptation = data_module.plan_adaptation(data.image_shape, space.min_input_size)
    folder = Path(config.directory).resolve() / config.name
    if role != "worker":
        _check_same_settings(config, folder, _search_settings(config), {"batch_size": str(space.recipe.batch_size)})
    search = _plan(config, space, data, adaptation, folder, role)
    if role != "worker":  # (two build= functions share a default name: custom-DATASET-TUNER)
        _check_same_settings(config, folder, {"space": describe_space(search.space_hyperparameters)})
    search.lock = _lock_search(folder, role)  # before KerasTuner may delete the folder (overwrite)
    try:
        _attach_tuner(search, progress)
    except BaseException:
        if search.lock is not None:
            os.close(search.lock)
        raise
    return search


def _plan(config: TuneConfig, space: SearchSpace, data: Any, adaptation: Any, folder: Path, role: str) -> _Search:
    """The speed plan and the trials' hypermodel, its space probed (a bad ``fixed`` refused): the
    search without its tuner yet."""
    recipe = space.recipe.replace(batch_size=config.batch_size, epochs=config.epochs)
    device.import_tensorflow()
    import keras

    keras.utils.set_random_seed(config.seed)
    speed = hardware.plan(
        device.machine(), precision=config.precision, steps_per_execution=recipe.steps_per_execution, strategy=None
    )  # trials train on one device each
    for warning in [*data.notes, *speed.warnings]:
        print(f"kerascnn: warning: {warning}", file=sys.stderr, flush=True)
    steps_per_epoch = math.ceil(len(data.x_train) / recipe.batch_size)
    hypermodel = HyperModel(space, adaptation.target_shape, data.num_classes, recipe, steps_per_epoch, speed)
    whole = probe(hypermodel, config.fixed)  # before KerasTuner reads (or deletes) the folder
    pins = variant_fixed(config.family, {})  # (`tune vgg19`: depth 19, the kit's own, outside vgg's space)
    for warning in outside(whole, {k: v for k, v in config.fixed.items() if k not in pins}):  # (no clash: refused)
        print(f"kerascnn: warning: {warning}", file=sys.stderr, flush=True)
    return _Search(config, space, data, adaptation, recipe, speed, folder, role, hypermodel, whole)


def _attach_tuner(search: _Search, progress: bool) -> None:
    """KerasTuner's tuner on the search's folder (what an earlier session left resumed), and the plan shown."""
    config = search.config
    if search.role == "worker" and progress:
        print(distributed.joining_line(), file=sys.stderr, flush=True)
    held = distributed.held_trials(search.folder) if search.role == "chief" else {}  # (before KerasTuner reloads)
    search.tuner = tuner = _make_tuner(config, search.hypermodel, search.folder, search.speed, progress)
    if search.role == "worker":
        distributed.watch_chief(tuner.oracle)
    tuner.batch_size = search.recipe.batch_size
    if search.role != "worker":  # a worker's oracle is the chief's, behind a client
        done = sum(1 for t in tuner.oracle.trials.values() if t.status in ("COMPLETED", "FAILED"))
        grid = config.tuner == "grid"
        counted = config.tuner in ("grid", "random")  # (random stops once it has tried every combination)
        planned = grid_size(search.space_hyperparameters, config.fixed) if counted else _hyperband_trials(tuner)
        if grid and tuner.oracle.trials:
            _check_grid_resumable(config, done, planned)
        tuner.display.plan(config.tuner, config.max_trials, planned, config.epochs, done)
        search.done_before = done
    if search.role == "chief":
        search.unwatch = distributed.watch_workers(tuner.oracle, held)
        if progress:
            print(distributed.serving_line(), file=sys.stderr, flush=True)


def _check_grid_resumable(config: TuneConfig, done: int, combinations: int | None) -> None:
    """KerasTuner's grid search cannot go on from a saved state (it does not save where it is in the
    grid, keras-team/keras-tuner#1055): a rerun would crash or end early. One that has run its
    trials has nothing left to run."""
    left = min(config.max_trials, combinations or config.max_trials) - done
    if left > 0:
        raise ArgumentError(
            f"Search {config.name!r} is a grid search with {done} of {done + left} trials done, and KerasTuner "
            "cannot resume a grid search (keras-team/keras-tuner#1055); rerun with overwrite=True (--overwrite) to "
            "walk the grid again, or give search_name= (--search-name) to start another. Received: tuner='grid'"
        )


def _hyperband_trials(tuner: Any) -> int | None:
    from kerascnn.tuning.tuner import hyperband_trials

    return hyperband_trials(tuner.oracle)


def _make_tuner(
    config: TuneConfig, hypermodel: HyperModel, folder: Path, speed: hardware.SpeedPlan, progress: bool
) -> Any:
    from kerascnn.tuning.display import Display
    from kerascnn.tuning.runs import SearchRuns

    tuner = _open_tuner(config, hypermodel, folder, speed)
    lost = [t for t in getattr(tuner.oracle, "start_order", ()) if t not in tuner.oracle.trials]
    if lost:  # (KerasTuner would number the next trial as one of them, over a kept trial's files)
        raise _unreadable_state(config, f"KerasTuner's files: missing trial_{lost[0]}/trial.json")
    if hasattr(tuner.oracle, "max_trials"):  # Hyperband's oracle takes no max_trials; cap it here
        tuner.oracle.max_trials = config.max_trials
    labels = _trial_labels(config, hypermodel, speed)
    tuner.runs = SearchRuns(config.store_uri, config.experiment, config.name, folder, labels)
    tuner.display = Display(config.objective, tuner.runs.worker, enabled=progress)
    return tuner


def _open_tuner(config: TuneConfig, hypermodel: HyperModel, folder: Path, speed: hardware.SpeedPlan) -> Any:
    """KerasTuner's tuner on ``folder``: a new search, or the saved one reloaded (its bad files one line)."""
    import keras_tuner as kt

    from kerascnn.tuning.tuner import TrackedTuner, make_oracle

    hp = kt.HyperParameters()
    for key, value in config.fixed.items():
        hp.Fixed(key, value)
    oracle = make_oracle(
        config.tuner,
        config.objective,
        config.max_trials,
        config.epochs,
        config.seed,
        hp,
        config.max_retries_per_trial,
        config.max_consecutive_failed_trials,
    )
    missing = device.import_tensorflow().errors.NotFoundError  # (a file KerasTuner reloads was deleted)
    # (quiet: KerasTuner prints "Reloading Tuner from ..." on a rerun; the plan line says what was done before)
    with device.dtype_policy(speed.policy), contextlib.redirect_stdout(io.StringIO()):
        try:
            return TrackedTuner(
                oracle=oracle,
                hypermodel=hypermodel,
                directory=str(folder.parent),
                project_name=folder.name,
                overwrite=config.overwrite,
            )
        except (json.JSONDecodeError, KeyError, RuntimeError, missing) as e:  # KerasTuner reloads its state
            cause = e.__cause__ if isinstance(e, RuntimeError) else e  # (its RuntimeError wraps a missing key)
            if not isinstance(cause, (json.JSONDecodeError, KeyError, missing)):
                raise
            what = f"missing {cause}" if isinstance(cause, (KeyError, missing)) else str(cause)
            raise _unreadable_state(config, f"KerasTuner's files: {what}") from None


def _trial_labels(config: TuneConfig, hypermodel: HyperModel, speed: hardware.SpeedPlan) -> dict[str, str]:
    """The tags of every trial's run: what each trial ran with, on this process's machine (a worker's
    may differ from the chief's)."""
    return {
        "kerascnn.model": hypermodel.space.name,
        "kerascnn.family": hypermodel.space.name,
        "kerascnn.dataset": config.recorded_dataset,
        "kerascnn.dtype_policy": speed.policy,
        "kerascnn.jit_compile": str(speed.jit),
        "kerascnn.epochs": str(config.epochs),  # (a Hyperband trial's own are its tuner/epochs param)
        **speed.tags(),
        **device.machine().tags(),
    }


def _check_same_settings(
    config: TuneConfig, folder: Path, now: dict[str, str], defaults: dict[str, str] | None = None
) -> None:
    """A search continues only with the settings it was started with (``now``: those to compare,
    a value not given the same as its ``defaults`` one; ``--overwrite`` or another
    ``--search-name`` starts a new one)."""
    from kerascnn.data import as_run

    saved = folder / SETTINGS_FILE
    if config.overwrite or not saved.is_file():
        return
    try:
        before = json.loads(saved.read_text())
    except (ValueError, OSError) as e:
        raise _unreadable_state(config, f"{SETTINGS_FILE}: {e}") from None
    if "dataset" in before:  # (saved as given, maybe relative, before kerascnn recorded folders absolute)
        before["dataset"] = as_run(before["dataset"])
    if "tracking_uri" in before:  # (saved with "..", before kerascnn normalised SQLite paths)
        before["tracking_uri"] = store.same_store(before["tracking_uri"])
    before, now = ({k: (defaults or {}).get(k, v) if v == "None" else v for k, v in d.items()} for d in (before, now))
    changed = [f"{k}: {before[k]} -> {now[k]}" for k in sorted(now) if k in before and before[k] != now[k]]
    if changed:
        raise ArgumentError(
            f"Search {config.name!r} was started with other settings ({'; '.join(changed)}); rerun "
            "with its settings to resume it, or give search_name= (--search-name) to start another, or overwrite=True "
            "(--overwrite). "
            f"Received: search_name={config.name!r}"
        )


def _check_worker_settings(search: _Search) -> None:
    """A worker runs the chief's search: one started with other settings (``--epochs``...) is
    refused before its first trial, once the chief's parent run says what they are."""
    config = search.config
    parent = search.tuner.runs.resolve_parent()
    chief = store.retrying(store.client(config.store_uri).get_run, parent.run_id).data.params
    mine = {k: str(v) for k, v in _logged_settings(search).items()}
    changed = sorted(k for k in mine if k in chief and k != "max_trials" and chief[k] != mine[k])
    if changed:
        raise ArgumentError(
            f"This worker's settings differ from the chief's search {config.name!r} "
            f"({'; '.join(f'{k}: {chief[k]} there' for k in changed)}); run the chief's command. "
            f"Received: {', '.join(f'{k}={mine[k]}' for k in changed)}"
        )


def _logged_settings(search: _Search) -> dict[str, Any]:
    """The search's settings as its parent run logs them (the family and batch size resolved)."""
    return {**search.config.params(), "family": search.space.name, "batch_size": search.recipe.batch_size}


def _search_settings(config: TuneConfig) -> dict[str, str]:
    """What a search is started with and must be resumed with: its logged settings and its store."""
    return {**config.params(), "experiment": config.experiment, "tracking_uri": config.store_uri}


def _unreadable_state(config: TuneConfig, problem: str) -> ArgumentError:
    return ArgumentError(
        f"Search {config.name!r} has a saved state that cannot be read ({problem}); rerun with overwrite=True "
        "(--overwrite) to start it again, or give search_name= (--search-name) to start another. "
        f"Received: search_name={config.name!r}"
    )


def _open_parent(search: _Search) -> Any:
    config, data = search.config, search.data
    fresh = not any(search.folder.glob("trial_*/trial.json"))  # no trial started in this folder yet
    search.folder.mkdir(parents=True, exist_ok=True)  # KerasTuner's overwrite removed it
    started = {**_search_settings(config), "space": describe_space(search.space_hyperparameters)}
    (search.folder / SETTINGS_FILE).write_text(json.dumps(started, indent=1))
    params = {
        **_logged_settings(search),
        "search_name": config.name,
        "train_size": len(data.x_train),
        "val_size": len(data.x_val),
        "adaptation": search.adaptation.describe(),
        **search.speed.params(),
        "space": json.dumps([p.get_config() for p in search.tuner.oracle.get_space().space], default=str),
    }
    oracle = search.tuner.oracle
    ended = {t.trial_id: str(t.status) for t in oracle.trials.values()}  # as KerasTuner saved them
    # a chief's workers may train on through its restart: the trials they hold (given back to them)
    held = frozenset(t.trial_id for t in oracle.ongoing_trials.values()) if search.role == "chief" else frozenset()
    parent = search.tuner.runs.open_parent(params, config.max_trials, fresh, ended, held, config.overwrite)
    if config.system_metrics:
        parent.monitor_system()
    return parent


def _run(search: _Search) -> None:
    from kerascnn import data as data_module

    config, data, adaptation = search.config, search.data, search.adaptation
    batch = search.recipe.batch_size

    def training_data() -> Any:
        return data_module.make_pipeline(
            data.x_train, data.y_train, batch_size=batch, adaptation=adaptation, training=True, seed=config.seed
        )

    val = data_module.make_pipeline(data.x_val, data.y_val, batch_size=batch, adaptation=adaptation)
    search.tuner.seed, search.tuner.training_data = config.seed, training_data
    with device.dtype_policy(search.speed.policy):
        try:
            search.tuner.search(validation_data=val, epochs=config.epochs, verbose=0, shuffle=False)
        except RuntimeError as e:  # KerasTuner's consecutive-failure limit (the trial's end is saved)
            raise SearchFailed(_first_and_last_line(str(e))) from e


def _summarize(search: _Search) -> TuneResult:
    """The search's trials and best one; its leaderboard, tags and best model on the parent run."""
    from kerascnn.data import model_info
    from kerascnn.loading import remember
    from kerascnn.tuning.tuner import quiet_optimizer_slots

    tuner, runs, config = search.tuner, search.tuner.runs, search.config
    parent = runs.parent
    assert parent is not None, "only the chief (or a lone process) summarizes a search"
    outputs = store.home(parent.ref.uri) / "outputs" / parent.ref.local_id
    outputs.mkdir(parents=True, exist_ok=True)
    run_ids = runs.trial_run_ids()
    order = sorted(tuner.oracle.trials, key=lambda t: (len(t), t))
    trials = [_trial_row(tuner.oracle.trials[t], run_ids.get(t)) for t in order]
    best_trials = [t for t in tuner.oracle.get_best_trials(1) if t.status == "COMPLETED"]
    best = next((t for t in trials if best_trials and t["trial_id"] == best_trials[0].trial_id), None)
    _write_leaderboard(outputs / "leaderboard.csv", trials, maximize=config.objective == "val_accuracy")
    best_model = None
    if best is not None:
        with quiet_optimizer_slots():
            best_model = tuner.load_model(best_trials[0])
        remember(best_model, model_info(search.space.name, search.data, search.adaptation))  # (as its file: rerun too)
        done = sum(1 for t in trials if t["status"] in ("COMPLETED", "FAILED"))
        _log_best(search, parent, best, best_model, outputs, done)
    else:
        parent.log_artifacts(outputs)
    tuner.prune_checkpoints()
    return TuneResult(parent_run_id=None, search_name=config.name, trials=trials, best=best, best_model=best_model)


def _log_best(search: _Search, parent: Any, best: dict[str, Any], model: Any, outputs: Path, done: int) -> None:
    """The best trial on the parent run: tags, score, its model (``.keras`` and MLflow), registered if asked.
    A search run again logs the model of a best trial it logged before (and registers it) once only."""
    config = search.config
    logged = _logged_before(search, parent, best)
    if logged is None or done != search.done_before:  # a point per session that ran trials
        tags = {f"best.{k}": str(v) for k, v in best["hyperparameters"].items()}
        parent.set_tags(
            {**tags, "kerascnn.best_trial_id": best["trial_id"], "kerascnn.best_run_id": str(best["run_id"])}
        )
        scores = {"best_score": best["score"], f"best_{config.objective}": best["score"]}
        tracked = search.tuner.oracle.get_trial(best["trial_id"]).metrics
        if config.objective != "val_accuracy" and tracked.exists("val_accuracy"):  # (the leaderboard's val_acc)
            scores["best_val_accuracy"] = float(tracked.get_best_value("val_accuracy"))
        parent.log_metrics(scores, step=done)
    if logged is None:
        _log_best_model(search, parent, best, model, outputs)
    else:
        parent.log_artifacts(outputs)  # the leaderboard
    if config.register_model:  # (a version the model already has is kept, the alias moved to it)
        tags = {
            "dataset": config.recorded_dataset,
            "family": search.space.name,
            "trial_id": best["trial_id"],
            f"best_{config.objective}": f"{best['score']:.4f}",
        }
        parent.register_model(config.register_model, config.alias, tags, model=logged)


def _log_best_model(search: _Search, parent: Any, best: dict[str, Any], model: Any, outputs: Path) -> None:
    import numpy as np

    from kerascnn.data import model_info
    from kerascnn.loading import save_model

    config, data = search.config, search.data
    save_model(model, outputs / "best_model.keras", model_info(search.space.name, data, search.adaptation))
    (outputs / "best_hyperparameters.json").write_text(json.dumps(best["hyperparameters"], indent=1))
    parent.log_artifacts(outputs)
    parent.log_model(
        saved=outputs / "best_model.keras",
        name="best_model",
        example=data.x_val[:2],
        outputs=np.zeros((2, int(model.output_shape[-1])), np.float32),
        adaptation=search.adaptation,
        metadata={"class_names": data.class_names, "dataset": config.recorded_dataset},
        tags={TRIAL_TAG: best["trial_id"]},
    )


def _logged_before(search: _Search, parent: Any, best: dict[str, Any]) -> str | None:
    """``models:/...`` of the model of trial ``best`` that an earlier session of this search logged
    to the parent, if complete."""
    from kerascnn.tracking import writes

    if search.tuner.runs.reopened is None:
        return None
    try:
        return writes.ready_model(parent.ref.uri, parent.run_id, "best_model", {TRIAL_TAG: best["trial_id"]})
    except Exception:  # the store is away for now: logged again (``kerascnn sync`` skips a model it has)
        return None


def _trial_row(trial: Any, run_id: str | None) -> dict[str, Any]:
    score = None if trial.score is None or not math.isfinite(trial.score) else float(trial.score)
    shown = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
    return {
        "trial_id": trial.trial_id,
        "run_id": run_id,
        "status": trial.status,
        "score": score,
        "hyperparameters": shown,
    }


def _write_leaderboard(path: Path, trials: list[dict[str, Any]], maximize: bool) -> None:
    names = sorted({k for t in trials for k in t["hyperparameters"]})
    sign = -1 if maximize else 1
    ranked = sorted(trials, key=lambda t: (t["score"] is None, sign * (t["score"] or 0)))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "trial_id", "run_id", "status", "score", *names])
    for rank, t in enumerate(ranked, start=1):
        writer.writerow(
            [
                rank,
                t["trial_id"],
                t["run_id"],
                t["status"],
                t["score"],
                *[t["hyperparameters"].get(n, "") for n in names],
            ]
        )
    path.write_text(buffer.getvalue())


def _none_completed(search: _Search) -> str:
    """Why a search whose trials all failed has no best trial: how many, the last one's error."""
    trials = list(search.tuner.oracle.trials.values())
    failed = [t for t in trials if t.status == "FAILED"]
    last = last_error(failed[-1].message) if failed else ""
    why = f"; last trial: {last}" if last else ""
    return f"no trial completed: {len(failed)} of {len(trials)} failed{why}"


def _first_and_last_line(text: str) -> str:
    """KerasTuner's failure message: its first line and the last trial's exception, not the traceback."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "KerasTuner stopped the search"
    return lines[0] if len(lines) == 1 else f"{lines[0].rstrip('.')}; last trial: {last_error(lines[-1])}"


def _lock_search(folder: Path, role: str) -> int | None:
    """One process runs a search at a time (workers share the chief's folder). The lock is a
    sibling folder, ``.locks/NAME``: KerasTuner's ``overwrite`` deletes the search folder itself."""
    if role == "worker":
        return None
    fd = store.lock_folder(folder.parent / ".locks" / folder.name, wait=False)
    if fd is None:
        raise ArgumentError(f"This search is running in another process. Received: search_name={folder.name!r}")
    return fd


@contextlib.contextmanager
def _search_lock(search: _Search) -> Iterator[None]:
    """Holds the search's lock (taken by :func:`_prepare`) until the search ends."""
    try:
        yield
    finally:
        if search.lock is not None:
            os.close(search.lock)


@contextlib.contextmanager
def _kerastuner_quiet() -> Iterator[None]:
    """KerasTuner prints every failed trial's traceback when DEBUG (its default); the reason
    goes to the trial's run and progress line instead."""
    try:
        from keras_tuner.src import config as kt_config
    except ImportError:
        yield
        return
    debug, kt_config.DEBUG = kt_config.DEBUG, False
    try:
        yield
    finally:
        kt_config.DEBUG = debug
