"""Keras callbacks that keep ``fit``'s asynchronous step dispatch.

Keras 3 waits for every batch when a callback implements a per-batch hook;
the stock ``TerminateOnNaN`` and ``BackupAndRestore`` do, which cost this
kit's small models measurable throughput on CPU (BENCHMARKS.md).
"""

from __future__ import annotations

import math
from typing import Any

import keras


class EpochBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` saving once per epoch, keeping the previous epoch's files too
    (``double_checkpoint``: a save torn by a kill falls back to them). Its batch hook is
    then a no-op, so it is async-safe.

    Example:
        >>> cb = EpochBackup("mlruns/backups/run123")  # doctest: +SKIP
    """

    async_safe = True

    def __init__(self, backup_dir: str) -> None:
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=True)


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the end of an epoch whose loss is not finite.

    Example:
        >>> cb = StopOnNaN()
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
