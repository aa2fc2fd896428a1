"""``TrackedTuner``: a ``keras_tuner.Tuner`` whose trials are nested MLflow runs.

KerasTuner does the searching, resuming, retries and chief/worker distribution; this
subclass runs each trial inside its MLflow run, fails a trial whose loss became NaN (the
search goes on), lets Hyperband's promoted trials start from their parent's weights, and
keeps only the checkpoints that can still be needed. Imported only when a search runs
(it loads KerasTuner and TensorFlow).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
from keras_tuner.errors import FailedTrialError

from kerascnn import device
from kerascnn.callbacks import EpochMetrics, Interruptible
from kerascnn.tuning.display import Display
from kerascnn.tuning.runs import TRIAL_TAG, SearchRuns

FACTOR = 3  # Hyperband's halving factor
FINAL = ("COMPLETED", "FAILED", "INVALID")


@contextlib.contextmanager
def quiet_optimizer_slots() -> Iterator[None]:
    """Silences Keras' note that a checkpoint's optimizer slots were not loaded: trial
    checkpoints hold them, and a fresh (or inference) model does not need them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        yield


def make_oracle(
    tuner: str, objective: str, max_trials: int, epochs: int, seed: int, hp: Any, retries: int, failures: int
) -> Any:
    """KerasTuner's oracle for ``tuner`` (Hyperband's is capped at ``max_trials`` afterwards)."""
    direction = "max" if objective == "val_accuracy" else "min"
    common = dict(
        objective=kt.Objective(objective, direction),
        seed=seed,
        hyperparameters=hp,
        max_retries_per_trial=retries,
        max_consecutive_failed_trials=failures,
    )
    if tuner == "hyperband":
        return kt.oracles.HyperbandOracle(max_epochs=epochs, factor=FACTOR, hyperband_iterations=1, **common)
    cls = {
        "random": kt.oracles.RandomSearchOracle,
        "bayesian": kt.oracles.BayesianOptimizationOracle,
        "grid": kt.oracles.GridSearchOracle,
    }[tuner]
    return cls(max_trials=max_trials, **common)


def local_oracle(oracle: Any) -> Any:
    """The oracle in this process: ``oracle`` itself, or the local copy a worker's OracleClient wraps."""
    return getattr(oracle, "_oracle", oracle)


def hyperband_trials(oracle: Any) -> int | None:
    """How many trials a Hyperband oracle plans (its brackets and rounds), else ``None``."""
    local = local_oracle(oracle)
    if not isinstance(local, kt.oracles.HyperbandOracle):
        return None
    brackets = local._get_num_brackets()
    return local.hyperband_iterations * sum(local._get_size(b, r) for b in range(brackets) for r in range(b + 1))


class TrackedTuner(kt.Tuner):
    """A ``keras_tuner.Tuner`` whose trials are nested MLflow runs (set ``runs``, ``display``, ``batch_size``,
    ``seed`` and ``training_data``)."""

    runs: SearchRuns
    display: Display
    batch_size: int  # of the trials' training (for the out-of-memory line)
    seed = 0  # every trial starts from this random state: trials differ by their hyperparameters only
    training_data: Callable[[], Any]  # each trial's own pipeline (the same batches in every trial; search() gets none)
    _warm_start = False

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        hp = trial.hyperparameters
        if "tuner/epochs" in hp.values:  # Hyperband: train from the parent's epoch to this round's
            kwargs["epochs"] = hp.values["tuner/epochs"]
            kwargs["initial_epoch"] = hp.values["tuner/initial_epoch"]
        self.display.trial_started(trial.trial_id, hp.values)
        keras.utils.set_random_seed(self.seed + self._failed_runs(trial.trial_id))
        args = (self.training_data(), *args)
        run = self.runs.start_trial(trial)
        try:
            kwargs["verbose"], shown = self.display.fit_progress(trial.trial_id, kwargs.get("epochs", 1))
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), EpochMetrics(run), Interruptible(), *shown]
            self._warm_start = True
            try:
                with device.batch_fits(self.batch_size, "a training step", FailedTrialError):
                    histories = super().run_trial(trial, *args, **kwargs)
            finally:
                self._warm_start = False
            self._check_finite(histories)
            self._log_scores(run, histories)
        except BaseException as error:
            self.runs.end_trial(trial, error)
            raise
        self.runs.end_trial(trial, None)
        return histories

    def _failed_runs(self, trial_id: str) -> int:
        """How often KerasTuner ended this trial for a retry: a retry starts from the next seed (the
        same one would fail the same way); a first run, or one re-run after a crash, from the search's.
        (KerasTuner's private count; a worker's client has none: it counts the trial's failed runs.)"""
        counts = getattr(self.oracle, "_run_times", None)
        if counts is not None:
            return int(counts.get(trial_id, 0))
        return sum(
            1
            for run in self.runs.children()
            if run.data.tags.get(TRIAL_TAG) == trial_id and run.data.tags.get("kerascnn.trial_status") == "FAILED"
        )

    @staticmethod
    def _check_finite(histories: list[Any]) -> None:
        for history in histories:
            losses = history.history.get("loss", [])
            bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
            if bad:
                raise FailedTrialError(f"the training loss became {losses[bad[0]]} in epoch {bad[0] + 1}")

    def _log_scores(self, run: Any, histories: list[Any]) -> None:
        name = self.oracle.objective.name
        values = [v for h in histories for v in h.history.get(name, [])]
        if values:
            best = max(values) if self.oracle.objective.direction == "max" else min(values)
            run.log_metrics({f"final_{name}": values[-1], f"best_{name}": best}, step=len(values))

    def _build_hypermodel(self, hp: Any) -> Any:
        model = super()._build_hypermodel(hp)
        if self._warm_start and "tuner/trial_id" in hp.values:  # Hyperband: start from the promoted trial
            with quiet_optimizer_slots():
                model.load_weights(self._get_checkpoint_fname(hp.values["tuner/trial_id"]))
        return model

    def on_trial_end(self, trial: Any) -> None:
        try:  # (quiet: KerasTuner prints "Trial 1 failed 1 times. 1 retries left."; the trial's line says it)
            with contextlib.redirect_stdout(io.StringIO()):
                super().on_trial_end(trial)  # raises when this trial is one failure too many
        except RuntimeError:  # (KerasTuner's consecutive-failure limit)
            self._save_ended(trial)
            raise
        finally:
            run = self.runs.trials.get(trial.trial_id)
            remote = local_oracle(self.oracle) is not self.oracle  # (a worker's: the chief's best is a call away)
            best = [] if remote else self.oracle.get_best_trials(1)  # (KerasTuner's, over every session)
            self.display.trial_ended(self.oracle.get_trial(trial.trial_id), run.run_id if run else None, best)
        self.prune_checkpoints()

    def _save_ended(self, trial: Any) -> None:
        """Saves the end of a trial that hit KerasTuner's consecutive-failure limit: KerasTuner
        raises before it saves the trial and the tuner, so a rerun ran that trial again (and
        failed it again), or started the search afresh when it was the first."""
        ongoing: dict[str, Any] | None = getattr(self.oracle, "ongoing_trials", None)  # (a worker's: remote)
        if ongoing is None:
            return
        for tuner_id, running in list(ongoing.items()):
            if running.trial_id == trial.trial_id:
                del ongoing[tuner_id]
        self.oracle._save_trial(self.oracle.get_trial(trial.trial_id))
        self.save()

    def prune_checkpoints(self) -> None:
        """Deletes the checkpoints of finished trials except the best ones (ties). Those of Hyperband's
        open brackets stay too, also when a session ends (promoted trials start from them, and a rerun
        with a larger ``max_trials`` goes on with the brackets); a Hyperband worker leaves pruning to
        the chief, which sees the brackets."""
        oracle, local = self.oracle, local_oracle(self.oracle)
        hyperband = isinstance(local, kt.oracles.HyperbandOracle)
        if hyperband and local is not oracle:
            return
        ranked = [t for t in oracle.get_best_trials(10**6) if t.status == "COMPLETED"]
        # every trial tied with the best: KerasTuner reloads trials in the folder's order, so a rerun's
        # "best" of a tie may be another one than this session's (and its checkpoint must be there)
        keep = {t.trial_id for t in ranked if t.score == ranked[0].score}
        if hyperband:
            keep |= {info["id"] for b in oracle._brackets for r in b["rounds"] for info in r}
        for folder in Path(self.project_dir).glob("trial_*"):
            trial_id = folder.name[len("trial_") :]
            if trial_id not in keep and self._finished(trial_id):
                for name in ("checkpoint.weights.h5", "build_config.json", "checkpoint", "checkpoint.index"):
                    (folder / name).unlink(missing_ok=True)
                for data_file in folder.glob("checkpoint.data-*"):
                    data_file.unlink(missing_ok=True)

    def _finished(self, trial_id: str) -> bool:
        try:
            return self.oracle.get_trial(trial_id).status in FINAL  # not running somewhere or awaiting a retry
        except Exception:
            return False
