"""TensorFlow's view of the devices: its quiet import (with oneDNN as the kit decides), the GPUs it
sees, dtype policies and tf.distribute strategies (the only TensorFlow-facing module besides the
data pipeline). Whether oneDNN is on, and which precision and XLA setting a run uses, is decided in
:mod:`kerascnn.hardware`."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import os
import platform
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any

from kerascnn import checks, hardware
from kerascnn.config import STRATEGIES
from kerascnn.errors import ArgumentError

# Installed libraries that TensorFlow's import of Keras loads only to offer extras: DataFrame
# inputs (pandas), the scikit-learn wrappers, image-gallery plots (matplotlib). MLflow
# installs all three; together they are ~2.4 s of a ~6.4 s import on an AVX2 VM (BENCHMARKS.md).
KERAS_EXTRAS = ("pandas", "sklearn", "matplotlib")
_skipped_extras: list[str] = []  # what this process's TensorFlow import leaves out
_onednn_at_import: list[tuple[str | None, str]] = []  # hardware.onednn_setting's answer, when the kit imported TF
_freezing: list[bool] = []  # [True] in a process the kit owns: what big imports create is frozen


def freeze_after_imports() -> None:
    """Makes :func:`collector_paused` also freeze (``gc.freeze``) what exists after each big import,
    so that no later collection of this process scans it again.

    For processes the kit owns (the CLI, the tracking writer); not for a notebook, where freezing
    would also keep for good whatever garbage the session holds at that moment.

    Example:
        >>> freeze_after_imports()  # doctest: +SKIP
    """
    _freezing[:] = [True]


@contextlib.contextmanager
def callers_random_state() -> Iterator[None]:
    """Puts back, after the block, what seeding a run changes for the caller (a notebook): Python's
    and NumPy's global random generators, and TensorFlow's op determinism. The run is seeded inside
    (``keras.utils.set_random_seed``); the caller's next ``np.random.rand()`` draws as if no run had.

    Example:
        >>> import numpy as np
        >>> np.random.seed(1)
        >>> with callers_random_state():
        ...     np.random.seed(0)
        >>> float(np.random.rand()) == float(np.random.RandomState(1).rand())
        True
    """
    import random

    import numpy as np

    states = random.getstate(), np.random.get_state()
    deterministic = _op_determinism()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        if deterministic is False and _op_determinism():
            from tensorflow.python.framework import config as tf_config  # (TF has no public switch-off)

            tf_config.disable_op_determinism()


def _op_determinism() -> bool | None:
    """Whether TensorFlow runs ops deterministically: ``False`` before it is imported (turning it
    on needs TensorFlow), ``None`` where this TensorFlow cannot say."""
    if "tensorflow" not in sys.modules:
        return False
    try:
        from tensorflow.python.framework import config as tf_config
    except ImportError:
        return None
    return bool(tf_config.is_op_determinism_enabled())


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off in the block (a big import), on again after.

    Importing TensorFlow or MLflow creates ~500k objects that live as long as the process, and
    every full collection during the import scans them all again: 8 of them, ~1 CPU-s, on the
    benchmark VM (BENCHMARKS.md). After :func:`freeze_after_imports` they are also frozen.

    Example:
        >>> with collector_paused():
        ...     import json
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _freezing:
            gc.freeze()
        if enabled:
            gc.enable()


def import_without_keras_extras() -> None:
    """Makes this process's TensorFlow import skip Keras' optional extras (``KERAS_EXTRAS``).

    For processes that use none of them, like the CLI's: Keras then treats the libraries as
    absent (no DataFrame input to ``fit``, no scikit-learn wrappers), while ``import pandas``
    and the others still work afterwards. No effect once TensorFlow is imported.

    Example:
        >>> import_without_keras_extras()  # doctest: +SKIP
    """
    _skipped_extras[:] = KERAS_EXTRAS


def import_tensorflow() -> Any:
    """Imports TensorFlow with its C++ start-up lines on fd 2 hidden, and returns it.

    TensorFlow >= 2.20 prints absl and CUDA-probe lines before its logging is
    configured, whatever ``TF_CPP_MIN_LOG_LEVEL`` says; they break the CLI's
    one-line errors and clutter notebooks. The lines are replayed if the
    import fails. After ``import_without_keras_extras()`` (the CLI, the tracking writer), Keras' optional extras
    are hidden during the import.

    Example:
        >>> tf = import_tensorflow()
    """
    import sys

    if "tensorflow" in sys.modules:  # imported before the kit (``import keras`` first)
        imported = sys.modules["tensorflow"]
        if not _probed:  # (its lines from the import were the user's to see; the CUDA probe's come now)
            with cpp_lines_hidden():
                imported.config.list_physical_devices()
            _probed.append(True)
        _quiet_retracing()
        return imported
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    hidden = [name for name in _skipped_extras if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    with cpp_lines_hidden(), _onednn_for_import(), collector_paused():
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here, once
        finally:
            for name in hidden:
                del sys.modules[name]
    _quiet_retracing()
    return tf


_probed: list[bool] = []  # TensorFlow's devices were listed once, the CUDA probe's log line hidden


@contextlib.contextmanager
def cpp_lines_hidden() -> Iterator[None]:
    """Hides what is written to fd 2 in the block (TensorFlow's C++ log lines, which Python's
    ``sys.stderr`` does not see), replaying it if the block raises an error (not when Ctrl-C or a
    signal stops it: the lines would only bury the one-line "interrupted"). One block at a time in
    a process (fd 2 is the process's: another thread's block would save this one's capture).

    Example:
        >>> with cpp_lines_hidden():
        ...     pass
    """
    import sys
    import tempfile

    with _FD2:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            except Exception:
                os.dup2(saved, 2)
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)


_FD2 = threading.RLock()


@contextlib.contextmanager
def fits_in_memory(
    what: str, hint: str = "", error: type[Exception] = ArgumentError, **received: Any
) -> Iterator[None]:
    """Turns running out of memory in the block (a weight or a batch bigger than the machine)
    into one ``error`` line (``ArgumentError`` by default) that says ``what`` did not fit, gives
    ``hint`` and echoes ``received``, instead of TensorFlow's traceback.

    Example:
        >>> with fits_in_memory("`mnist_cnn`", num_classes=10):
        ...     pass
    """
    tensor: str | None = None
    try:
        yield
    except MemoryError:
        tensor = "the memory it needs"
    except Exception as e:
        tensor = _not_allocated(e)
        if tensor is None:
            raise
    if tensor is None:
        return
    values = ", ".join(f"{key}={value!r}" for key, value in received.items())
    raise error(f"{what} does not fit in memory: TensorFlow could not allocate {tensor}{hint}. Received: {values}")


def batch_fits(batch_size: int, what: str = "A batch", error: type[Exception] = ArgumentError) -> Any:
    """:func:`fits_in_memory` for work on batches of ``batch_size`` images (the hint: lower it).

    Example:
        >>> with batch_fits(32):
        ...     pass
    """
    return fits_in_memory(what, "; lower batch_size (--batch-size)", error, batch_size=batch_size)


def _not_allocated(error: Exception) -> str | None:
    """The tensor TensorFlow could not allocate, when ``error`` says it ran out of memory."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.ResourceExhaustedError):
        return None
    shape = re.search(r"shape\[([\d,]*)\]", str(error))
    return f"a tensor of shape [{shape.group(1).replace(',', ', ')}]" if shape else "the memory it needs"


@contextlib.contextmanager
def _onednn_for_import() -> Iterator[None]:
    """``TF_ENABLE_ONEDNN_OPTS`` as ``hardware.onednn_setting`` decides, only while TensorFlow imports
    (it reads the variable once, then), so that processes this one starts decide for themselves."""
    value, why = hardware.onednn_setting(hardware.detect(), os.environ, platform.system())
    _onednn_at_import[:] = [(value, why)]
    if value is None:
        yield
        return
    os.environ[hardware.ONEDNN_ENV] = value
    try:
        yield
    finally:
        os.environ.pop(hardware.ONEDNN_ENV, None)


def _quiet_retracing() -> None:
    import logging

    tf_logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _NoRetracingNotes) for f in tf_logger.filters):
        tf_logger.addFilter(_NoRetracingNotes())


class _NoRetracingNotes:
    """Drops TensorFlow's "triggered tf.function retracing" notes: every trial of a search and every
    model of a notebook compiles its own functions, which is expected, not a performance bug."""

    def filter(self, record: Any) -> bool:
        return "tf.function retracing" not in record.getMessage()


def gpus() -> list[Any]:
    """The GPUs TensorFlow sees."""
    tf = import_tensorflow()
    return list(tf.config.list_physical_devices("GPU"))


@functools.lru_cache(maxsize=1)
def machine() -> hardware.Machine:
    """This machine: its CPU (read without TensorFlow), the GPUs TensorFlow sees, with their
    compute capability, and whether TensorFlow uses oneDNN on the CPU.

    Example:
        >>> machine().cores >= 1
        True
    """
    tf = import_tensorflow()
    found = []
    for gpu in gpus():
        details = tf.config.experimental.get_device_details(gpu)
        cc = details.get("compute_capability")
        found.append(hardware.Gpu(details.get("device_name", gpu.name), tuple(cc) if cc else None))
    cpu = hardware.detect(tuple(found), onednn=_onednn_enabled())
    why, warnings = _onednn_why(cpu)
    return dataclasses.replace(cpu, onednn_why=why, warnings=warnings)


def _onednn_why(cpu: hardware.Machine) -> tuple[str, tuple[str, ...]]:
    """Why TensorFlow's oneDNN is on or off here, and a warning where kerascnn came too late to turn it on."""
    late = not _onednn_at_import  # TensorFlow was imported before the kit
    value, why = _onednn_at_import[0] if not late else hardware.onednn_setting(cpu, os.environ, platform.system())
    if value != "1" or cpu.onednn is not False:
        return why, ()
    if not late:
        return "off: asked for, but this TensorFlow build runs without oneDNN", ()
    return "off: TensorFlow was imported before kerascnn", (
        "TensorFlow's oneDNN is off: TensorFlow (or Keras) was imported before kerascnn, which turns it on for "
        f"this CPU (float32 training steps {hardware.ONEDNN_SPEEDUP} faster); "
        f"set {hardware.ONEDNN_ENV}=1 before importing them",
    )


def _onednn_enabled() -> bool | None:
    """Whether this process's TensorFlow runs its CPU kernels through oneDNN (``None``: unknown).

    TensorFlow's Linux default: on only for CPUs with neural-network features (AVX512_VNNI,
    AVX512_BF16, AVX_VNNI, AMX; Neoverse V1), so off on AVX2-only CPUs unless the kit imported it
    (``_onednn_for_import``); ``TF_ENABLE_ONEDNN_OPTS`` overrides both. TensorFlow answers it only
    through an internal module, hence the guard.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def describe_devices() -> str:
    """``"CPU"`` or ``"GPU x2 (NVIDIA H100 80GB HBM3)"``."""
    found = machine().gpus
    return f"GPU x{len(found)} ({found[0].name})" if found else "CPU"


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Sets the global Keras dtype policy inside the block (layers built there use it)."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def tf_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG`` (empty when unset); a bad value is a ``ValueError``."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except ValueError:
        config = None
    if not isinstance(config, dict) or not isinstance(config.get("cluster", {}), dict):
        raise ArgumentError(f"`TF_CONFIG` must be a JSON object with a cluster. Received: TF_CONFIG={raw!r}")
    return config


def check_strategy(strategy: str) -> str:
    """Validates ``strategy`` (and ``TF_CONFIG`` for ``multiworker``) without touching TensorFlow."""
    checks.one_of("strategy", strategy, STRATEGIES)
    if strategy == "multiworker":
        config = tf_config()
        task = config.get("task", {})
        if not config.get("cluster") or "type" not in task or "index" not in task:
            raise ArgumentError(
                "`strategy='multiworker'` needs TF_CONFIG with a cluster and this process's task. "
                f"Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}"
            )
    return strategy


def make_strategy(strategy: str = "auto") -> Any:
    """A ``tf.distribute`` strategy: ``auto`` (Mirrored over >1 local GPU, else default),
    ``mirrored`` (all local GPUs, or the CPU), ``multiworker`` (from ``TF_CONFIG``).

    Create it before any other TensorFlow work: multi-worker collectives must be
    configured at start-up.

    Example:
        >>> make_strategy("auto")  # doctest: +SKIP
    """
    import tensorflow as tf

    check_strategy(strategy)
    if strategy == "multiworker":
        return _multi_worker_strategy_class()()
    if strategy == "mirrored" or (strategy == "auto" and hardware.auto_strategy(machine())[0] == "mirrored"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _multi_worker_strategy_class() -> type:
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` accepts a nest of values.

    Two Keras 3 / TensorFlow mismatches break ``fit`` with more than one
    worker (keras-team/keras#20585, tensorflow/tensorflow#72388):

    * ``fit`` reduces its first (x, y) batch with ``strategy.reduce`` to build
      the model, but the collective reduce takes one value, not a nest
      ("Attempt to convert a value (PerReplica...)");
    * the per-step logs, scalars, are reduced with ``axis=0`` ("Invalid
      reduction dimension 0 for input with 0 dimensions").

    Reducing leaf by leaf, and scalars across replicas only, is what both
    calls mean.
    """
    import tensorflow as tf

    base: Any = tf.distribute.MultiWorkerMirroredStrategy

    class NestedReduceMultiWorkerStrategy(base):
        def reduce(self, reduce_op: Any, value: Any, axis: Any) -> Any:
            def leaf(v: Any) -> Any:
                local = self.experimental_local_results(v)[0]
                scalar = getattr(local, "shape", None) is not None and local.shape.rank == 0
                return base.reduce(self, reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(leaf, value)

    return NestedReduceMultiWorkerStrategy


def is_chief(strategy: Any = None) -> bool:
    """Whether this process should write results: always, except non-chief multi-workers."""
    import tensorflow as tf

    config = tf_config()
    task = config.get("task") or {}
    cluster = config.get("cluster") or {}
    if not task or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0
