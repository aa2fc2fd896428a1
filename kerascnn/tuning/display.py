"""What a search prints, as KerasTuner's ``Display`` does for its own output: one line when
it starts (what it will run), one when a trial starts, its epochs (Keras' progress bar on a
terminal, else a line per epoch), one line per finished trial, one at the end."""

from __future__ import annotations

import sys
import time
from typing import Any


class Display:
    """The search's progress lines (``kerascnn: ...`` on stdout).

    Example:
        >>> Display("val_accuracy", worker="tuner0", enabled=False).trial_started("0", {"filters": 32})
    """

    def __init__(self, objective: str, worker: str, enabled: bool = True) -> None:
        self.objective, self.worker, self.enabled = objective, worker, enabled
        self._started: dict[str, float] = {}

    def say(self, message: str) -> None:
        if self.enabled:
            print(f"kerascnn: {message}", flush=True)

    def plan(self, tuner: str, max_trials: int, planned: int | None, epochs: int, done: int) -> None:
        """What the search will run, and why fewer trials than ``max_trials`` when so."""
        if tuner == "hyperband" and planned is not None and planned < max_trials:
            why = (
                f"hyperband with {epochs} epoch{'s' * (epochs != 1)} plans {_trials(planned)}; "
                "more epochs give more brackets"
            )
        elif tuner == "random" and planned is not None and planned < max_trials:
            why = f"the space has {planned} combinations"
        elif tuner == "grid" and planned is not None:
            why = f"the grid has {planned} combinations" + (
                f", of which the first {max_trials} run" if planned > max_trials else ""
            )
        else:
            why = None
        total = min(max_trials, planned) if planned is not None else max_trials
        resumed = f", {done} done before" if done else ""
        if done >= total and done:
            resumed += "; nothing left to run" if done == total else f"; a limit of {max_trials} runs no more"
        self.say(f"{tuner} search of up to {_trials(total)}" + (f" ({why})" if why else "") + resumed)

    def trial_started(self, trial_id: str, values: dict[str, Any]) -> None:
        self._started[trial_id] = time.monotonic()
        parent = values.get("tuner/trial_id")  # a Hyperband trial that trains another one on
        self.say(
            f"trial {trial_id} [{self.worker}] {_shown(values)}" + (f" (continues trial {parent})" if parent else "")
        )

    def fit_progress(self, trial_id: str, epochs: int) -> tuple[int, list[Any]]:
        """``fit``'s ``verbose`` and callbacks for a trial's epochs: Keras' progress bar on a
        terminal, else one line per epoch (nothing when disabled)."""
        from kerascnn.callbacks import EpochLines, Progress

        if not self.enabled:
            return 0, []
        if sys.stdout.isatty():
            return 1, [Progress()]
        return 0, [EpochLines(self.say, f"trial {trial_id} [{self.worker}]", epochs)]

    def trial_ended(self, trial: Any, run_id: str | None, best: list[Any] | None = None) -> None:
        """The one line per trial: status, score, time, hyperparameters, run, why it failed, and
        the ``best`` trial so far (KerasTuner's ``get_best_trials(1)``)."""
        shown = _shown(trial.hyperparameters.values)
        score = f" {self.objective}={trial.score:.4f}" if trial.score is not None else ""
        seconds = time.monotonic() - self._started.get(trial.trial_id, time.monotonic())
        failed = trial.status != "COMPLETED" and trial.message
        why = f" ({last_error(trial.message)[:160]})" if failed else ""
        status = "FAILED, to be retried" if trial.status == "INVALID" else trial.status  # (KerasTuner retries it)
        top = best[0] if best else None
        so_far = f"; best so far {top.score:.4f} (trial {top.trial_id})" if top and top.score is not None else ""
        self.say(
            f"trial {trial.trial_id} [{self.worker}] {status}{score} {seconds:.1f}s {shown} run {run_id or '-'}{why}"
            + so_far
        )

    def best(self, best: dict[str, Any] | None, parent_id: str | None, store: str = "") -> None:
        """The search's last line: its best trial, and (``parent_id`` known) the commands that go on
        from it, with ``store``, the ``--tracking-uri`` option they need."""
        if best is None or best["score"] is None:
            return
        line = f"best trial {best['trial_id']} {self.objective}={best['score']:.4f} {best['hyperparameters']}"
        if parent_id is None:  # (in the spool: `kerascnn sync` first)
            self.say(line)
            return
        run = parent_id[:12]
        self.say(
            f"{line} (parent run {parent_id}); `kerascnn compare {run}{store}` draws its trials, "
            f"`kerascnn evaluate {run}{store}` scores its best model"
        )


def last_error(message: str | None) -> str:
    """The last line of a KerasTuner trial's message (its exception, after the traceback),
    without KerasTuner's module path.

    Example:
        >>> last_error("Traceback ...\\nkeras_tuner.src.errors.FailedTrialError: the loss became nan")
        'FailedTrialError: the loss became nan'
    """
    lines = (message or "").strip().splitlines()
    return lines[-1].replace("keras_tuner.src.errors.", "") if lines else ""


def _shown(values: dict[str, Any]) -> dict[str, Any]:
    """A trial's hyperparameters without KerasTuner's own (``tuner/epochs``...)."""
    return {k: v for k, v in values.items() if not k.startswith("tuner/")}


def _trials(n: int) -> str:
    return f"{n} trial{'s' if n != 1 else ''}"
