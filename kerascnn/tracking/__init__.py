"""The thin MLflow layer: where runs go, how they are written and ended, how they are read back.

* :mod:`~kerascnn.tracking.store` -- the tracking URI, the client, experiments, locks;
* :mod:`~kerascnn.tracking.run` -- ``TrackedRun`` and its ``lifecycle`` (runs always end);
* :mod:`~kerascnn.tracking.writer` -- a child process that writes the runs, so MLflow never slows training;
* :mod:`~kerascnn.tracking.recorder` and ``writes`` -- its ordered writes, and a spool when the store fails;
* :mod:`~kerascnn.tracking.queries`, ``comparison``, ``plots``, ``dashboard`` -- reading runs back.

Tracking never owns model code and never crashes or stalls training.
"""

from kerascnn.tracking.store import (
    DEFAULT_EXPERIMENT,
    DEFAULT_TRACKING_URI,
    client,
    ensure_experiment,
    find_run,
    home,
    resolve_tracking_uri,
    sqlite_path,
)

__all__ = [
    "DEFAULT_EXPERIMENT",
    "DEFAULT_TRACKING_URI",
    "client",
    "ensure_experiment",
    "find_run",
    "home",
    "resolve_tracking_uri",
    "sqlite_path",
]
