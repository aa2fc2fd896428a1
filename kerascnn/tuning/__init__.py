"""Tuning with KerasTuner: each trial a nested MLflow run, resumable, distributable.

* :mod:`~kerascnn.tuning.search` -- ``tune()``: settings, data, the search, its summary;
* :mod:`~kerascnn.tuning.spaces` -- the families' search spaces and the hypermodel;
* :mod:`~kerascnn.tuning.tuner` -- ``TrackedTuner`` (KerasTuner's ``Tuner``, trials tracked);
* :mod:`~kerascnn.tuning.runs` -- the parent and trial runs; ``display`` -- progress lines;
* :mod:`~kerascnn.tuning.distributed` -- KerasTuner's chief/worker roles.
"""

from kerascnn.tuning.search import TuneResult, tune

__all__ = ["TuneResult", "tune"]
