"""Keras callbacks that keep ``fit``'s asynchronous step dispatch.

Keras 3 waits for every batch when a callback implements a per-batch hook; none of these
does, so the kit's small models keep their throughput on CPU (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from kerascnn import console


def say(message: str) -> None:
    """One ``kerascnn:`` line on stderr (stdout is kept for results), never glued to a progress bar."""
    console.say(f"kerascnn: {message}")


class EpochBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` once per epoch, keeping the previous epoch's files too
    (``double_checkpoint``). A backup torn by a kill (Keras raises ``ValueError`` for a
    half-written file, and falls back only on ``OSError``) falls back to the previous
    epoch; with no readable backup at all, training starts over in the same run. Says
    which epoch it resumes from.

    Example:
        >>> cb = EpochBackup("mlruns/backups/run123")  # doctest: +SKIP
    """

    async_safe = True

    def __init__(self, backup_dir: str) -> None:
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=True)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        folder = Path(self.backup_dir)
        if not (folder / "training_metadata.json").exists() and not (folder / "latest.weights.h5").exists():
            return
        for source in ("latest", "previous"):
            try:
                self._load_model()
                say(
                    f"resuming from the backup of epoch {self.model._initial_epoch} "
                    f"({self.params.get('epochs', '?')} epochs in all)"
                )
                return
            except (OSError, ValueError) as e:
                error = e
                if source == "latest" and Path(self._prev_weights_path).exists():
                    shutil.copy(self._prev_weights_path, self._weights_path)
                    if Path(self._prev_training_metadata_path).exists():
                        shutil.copy(self._prev_training_metadata_path, self._training_metadata_path)
        say(
            f"the run's backup is unreadable ({type(error).__name__}; torn by a kill?); training starts over from "
            "epoch 1 in the same run"
        )
        shutil.rmtree(folder, ignore_errors=True)
        self.model._initial_epoch = 0


class Progress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, which counts ``steps_per_execution`` steps at a time and so
    overshoots the epoch ("24/22"); this one never shows more steps than the epoch has, and
    has no colour where ``NO_COLOR`` is set.

    Example:
        >>> cb = Progress()
    """

    def _update_progbar(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.target is not None:
            batch = min(batch, self.target - 1)
        with console.uncoloured():
            super()._update_progbar(batch, logs)

    def _finalize_progbar(self, logs: dict[str, Any] | None) -> None:
        with console.uncoloured():
            super()._finalize_progbar(logs)


class EpochLines(keras.callbacks.Callback):
    """One line per epoch through ``say``: ``LABEL epoch 2/4 accuracy=0.9812 ... (3.1s)``.

    Example:
        >>> cb = EpochLines(print, "trial 3 [tuner0]", epochs=4)
    """

    def __init__(self, say: Callable[[str], None], label: str, epochs: int) -> None:
        super().__init__()
        self.say, self.label, self.epochs = say, label, epochs
        self._started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = " ".join(f"{k}={float(v):.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
        seconds = time.monotonic() - self._started
        self.say(f"{self.label} epoch {epoch + 1}/{self.epochs} {metrics} ({seconds:.1f}s)")


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the end of an epoch whose loss is not finite.

    Example:
        >>> cb = StopOnNaN()
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


class Interruptible(keras.callbacks.Callback):
    """Raises a signal's exception (Ctrl-C's, SIGTERM's) again at the end of the epoch it came in,
    when something swallowed it on the way (see :func:`kerascnn.signals.raise_again`).

    Example:
        >>> cb = Interruptible()
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        from kerascnn.signals import raise_again

        raise_again()


class EpochMetrics(keras.callbacks.Callback):
    """Queues each epoch's logs and learning rate to a tracked run at step = epoch
    (never waiting for the store).

    Example:
        >>> cb = EpochMetrics(run)  # doctest: +SKIP
    """

    def __init__(self, run: Any) -> None:
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = dict(logs or {})
        with contextlib.suppress(Exception):  # an optimizer without a readable rate
            metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.run.log_metrics(metrics, step=epoch)

    def __deepcopy__(self, memo: dict[int, Any]) -> EpochMetrics:  # KerasTuner copies trial callbacks
        return EpochMetrics(self.run)


class TimeEstimate(keras.callbacks.Callback):
    """Says, once, how long the whole run will take: after ``after_s`` seconds of training or at
    the end of the first epoch, whichever comes first, as soon as steps after the first have
    been timed. The rate leaves the first step out (its tracing and compiling happen once); it
    is read from the optimizer's step counter by a thread that polls it (no per-batch hook,
    which would sync every step).

    Example:
        >>> cb = TimeEstimate(steps_per_epoch=422, epochs=2)
    """

    def __init__(self, steps_per_epoch: int, epochs: int, after_s: float = 15.0) -> None:
        super().__init__()
        self.total = steps_per_epoch * epochs
        self.after_s = after_s
        self._said = threading.Event()
        self._ended = threading.Event()
        self._lock = threading.Lock()  # (the epoch's end and the watching thread may both estimate)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._started, self._first = time.monotonic(), self._steps()
        self._mark = (self._started, self._first)  # moved to the end of the first step once seen
        self._ended.clear()
        threading.Thread(target=self._watch, name="kerascnn-time-estimate", daemon=True).start()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._estimate((time.monotonic(), self._steps()))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._ended.set()

    def _steps(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def _watch(self) -> None:
        """Notes when the first step ended and when the count last moved (step ends, to 0.1 s); from
        ``after_s`` after the start, estimates as soon as a second of steps after the first is timed."""
        last = self._mark
        while not self._said.is_set() and not self._ended.wait(0.1):
            now, steps = time.monotonic(), self._steps()
            if steps != last[1]:
                last = (now, steps)
                if self._mark[1] == self._first:
                    self._mark = last
            timed = last[0] - self._mark[0]  # (a second at least: step ends are seen to 0.1 s)
            if self._mark[1] != self._first and now >= self._started + self.after_s and timed >= 1.0:
                self._estimate(last)

    def _estimate(self, until: tuple[float, int]) -> None:
        """Says the estimate from the steps timed between the first step's end and ``until``
        (a time and the step count then), once; nothing while there are none."""
        with self._lock:
            (since, at), (now, steps) = self._mark, until
            left = self.total - steps
            if self._said.is_set() or steps <= at or left <= 0:
                return
            self._said.set()
        per_step = (now - since) / (steps - at)
        shown = f"{left} more step{'s' if left != 1 else ''}"
        eta = "under a second" if per_step * left < 0.5 else f"about {_duration(per_step * left)}"
        say(f"{per_step * 1000:.0f} ms/step: {eta} left for {shown}")


def _duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 20 s"``, ``"2 h 05 min"``.

    Example:
        >>> _duration(200), _duration(7500)
        ('3 min 20 s', '2 h 05 min')
    """
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
