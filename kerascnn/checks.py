"""Argument checks shared by the Python API and the CLI.

Every check raises a one-line :class:`~kerascnn.errors.ArgumentError` (a ``ValueError``) that
names the argument and echoes the value received, in the style of Keras: ``"... Received: epochs=0"``.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kerascnn.errors import ArgumentError


def _received(name: str, value: Any) -> str:
    return f"Received: {name}={value!r}"


INT_MAX = 2**31 - 1  # the largest count the kit takes (epochs, sizes, trials): TensorFlow's counters are int32/int64
SEED_MAX = 2**32 - 1  # what NumPy and Keras take as a seed
MAX_BLOCKS = 1000  # a network's repeated blocks in all (ResNet-1202 has 600): more is a typo that builds for hours


def integer(value: Any) -> bool:
    """Whether ``value`` is an integer (``np.int64`` too), not a bool.

    Example:
        >>> integer(3), integer(True), integer(3.0)
        (True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value: Any, *, maximum: int = INT_MAX) -> int:
    """Returns ``value`` as an int if it is an integer from 1 to ``maximum``.

    Example:
        >>> positive_int("epochs", 3)
        3
    """
    if not integer(value) or value < 1:
        raise ArgumentError(f"`{name}` must be a positive integer. {_received(name, value)}")
    return _at_most(name, int(value), maximum)


def non_negative_int(name: str, value: Any, *, maximum: int = INT_MAX) -> int:
    """Returns ``value`` as an int if it is an integer from 0 to ``maximum``.

    Example:
        >>> non_negative_int("seed", 0, maximum=2**32 - 1)
        0
    """
    if not integer(value) or value < 0:
        raise ArgumentError(f"`{name}` must be an integer >= 0. {_received(name, value)}")
    return _at_most(name, int(value), maximum)


def seed(value: Any) -> int:
    """Returns ``value`` if it is a seed NumPy and Keras take: an integer in [0, 2**32 - 1].

    Example:
        >>> seed(7)
        7
    """
    return non_negative_int("seed", value, maximum=SEED_MAX)


def plain(value: Any) -> Any:
    """``value`` with its NumPy scalars (``np.int64(16)``) as the Python numbers they hold, in lists,
    tuples and dicts too; anything else as it is.

    Example:
        >>> import numpy as np
        >>> plain({"units": [np.int64(16), 32], "rate": np.float32(0.5)})
        {'units': [16, 32], 'rate': 0.5}
    """
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def _at_most(name: str, value: int, maximum: int) -> int:
    if value > maximum:
        raise ArgumentError(f"`{name}` must be at most {maximum}. {_received(name, value)}")
    return value


MAX_EXPERIMENT_NAME = 500  # MLflow refuses a longer one (mlflow.utils.validation.MAX_EXPERIMENT_NAME_LENGTH)
MAX_RUN_NAME = 250  # the width of the run name in MLflow's SQL stores (a server on PostgreSQL enforces it)


def non_empty(argument: str, value: Any, *, maximum: int | None = None) -> str:
    """Returns ``value`` if it is a non-empty, non-blank string (an experiment or run name), of
    at most ``maximum`` characters if given.

    Example:
        >>> non_empty("experiment", "kerascnn", maximum=MAX_EXPERIMENT_NAME)
        'kerascnn'
    """
    if not isinstance(value, str) or not value.strip():
        raise ArgumentError(f"`{argument}` must be a non-empty name. {_received(argument, value)}")
    if maximum is not None and len(value) > maximum:
        shown = f"{value[:20]!r}... ({len(value)} characters)"
        raise ArgumentError(f"`{argument}` must be at most {maximum} characters long. Received: {argument}={shown}")
    return value


def positive_float(name: str, value: Any) -> float:
    """Returns ``value`` as a float if it is a finite number > 0.

    Example:
        >>> positive_float("learning_rate", 1e-3)
        0.001
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ArgumentError(f"`{name}` must be a finite number > 0. {_received(name, value)}")
    return float(value)


def fraction(name: str, value: Any, *, upper_inclusive: bool = False) -> float:
    """Returns ``value`` if it lies in [0, 1) (or [0, 1] with ``upper_inclusive``).

    Example:
        >>> fraction("dropout", 0.5)
        0.5
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = 0 <= value <= 1 if upper_inclusive else 0 <= value < 1
    if not ok:
        bound = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ArgumentError(f"`{name}` must be a number in {bound}. {_received(name, value)}")
    return float(value)


def non_negative_float(name: str, value: Any) -> float:
    """Returns ``value`` as a float if it is a finite number >= 0.

    Example:
        >>> non_negative_float("weight_decay", 0.0)
        0.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ArgumentError(f"`{name}` must be a finite number >= 0. {_received(name, value)}")
    return float(value)


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Returns ``value`` if it is one of ``choices``.

    Example:
        >>> one_of("optimizer", "adam", ["adam", "sgd"])
        'adam'
    """
    choices = list(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ArgumentError(f"`{name}` must be one of {listed}. {_received(name, value)}")
    return value


def int_tuple(
    name: str,
    value: Any,
    *,
    length: int | None = None,
    allow_empty: bool = False,
    what: str | None = None,
    total: tuple[int, str] | None = None,
) -> tuple[int, ...]:
    """Returns ``value`` as a tuple of positive ints (of ``length`` if given; ``()`` if ``allow_empty``);
    ``what`` says what it must be, in the error, where the default words do not; ``total``, as
    ``(most, "blocks")``, caps the sum of the ints.

    Example:
        >>> int_tuple("filters", [32, 64])
        (32, 64)
    """
    given = value
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 1:  # (np.array([28, 28, 1]))
        value = list(value)
    ok = isinstance(value, Sequence) and not isinstance(value, str) and (allow_empty or len(value) > 0)
    if ok:
        ok = all(integer(v) and int(v) >= 1 for v in value)
        if ok and max((int(v) for v in value), default=0) > INT_MAX:
            raise ArgumentError(f"`{name}` must hold integers up to {INT_MAX}. {_received(name, given)}")
    if ok and length is not None:
        ok = len(value) == length
    if not ok:
        what = what or (f"{length} positive integers" if length else "a non-empty sequence of positive integers")
        what = "a sequence of positive integers (or empty)" if allow_empty else what
        raise ArgumentError(f"`{name}` must be {what}. {_received(name, given)}")
    ints = tuple(int(v) for v in value)
    if total is not None and sum(ints) > total[0]:
        raise ArgumentError(
            f"`{name}` adds up to {sum(ints)} {total[1]}; the kit builds at most {total[0]}. {_received(name, given)}"
        )
    return ints


def boolean(name: str, value: Any) -> bool:
    """Returns ``value`` if it is ``True`` or ``False``.

    Example:
        >>> boolean("batch_norm", True)
        True
    """
    if not isinstance(plain(value), bool):  # (np.bool_ too)
        raise ArgumentError(f"`{name}` must be True or False. {_received(name, value)}")
    return bool(value)


def strings(name: str, value: Any) -> list[str] | None:
    """Returns ``value`` as a list if it is ``None`` or a list/tuple of strings (run ids, names).

    Example:
        >>> strings("run_ids", ("4f2a",))
        ['4f2a']
    """
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ArgumentError(f"`{name}` must be a list of strings. {_received(name, value)}")
    return list(value)


def input_shape(value: Any, name: str = "input_shape") -> tuple[int, int, int]:
    """Returns ``value`` as ``(height, width, channels)`` of positive ints (its error names ``name``).

    Example:
        >>> input_shape([28, 28, 1])
        (28, 28, 1)
    """
    what = "(height, width, channels), 3 positive integers"
    return int_tuple(name, value, length=3, what=what)  # type: ignore[return-value]


def num_classes(value: Any, name: str = "num_classes") -> int:
    """Returns ``value`` if it is an integer from 2 to ``INT_MAX`` (its error names ``name``).

    Example:
        >>> num_classes(10)
        10
    """
    if not integer(value) or not 2 <= int(value) <= INT_MAX:
        raise ArgumentError(f"`{name}` must be an integer from 2 to {INT_MAX}. {_received(name, value)}")
    return int(value)


def min_spatial_size(model: str, shape: tuple[int, int, int], minimum: int) -> None:
    """Refuses an input whose height or width is below ``minimum``.

    Example:
        >>> min_spatial_size("vgg16", (32, 32, 3), 32)
    """
    if min(shape[0], shape[1]) < minimum:
        raise ArgumentError(
            f"`input_shape` is too small for {model}: height and width must be at least "
            f"{minimum} (its down-sampling would leave no pixels). Received: input_shape={shape}"
        )


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (where missing folders would be created).

    Example:
        >>> nearest_existing(Path("/tmp/kerascnn-doc/a/b"))
        PosixPath('/tmp')
    """
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def can_create_in(folder: Path) -> bool:
    """Whether this process can make files in ``folder``: a real one is made and removed,
    since ``os.access`` says yes to root even where nothing can be made (``/proc``).

    Example:
        >>> can_create_in(Path("/tmp")), can_create_in(Path("/proc"))
        (True, False)
    """
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def writable(name: str, value: Any, *, folder: bool = False) -> Path:
    """``value`` is a place this process can write (a file or folder in it, or with ``folder=True``
    that folder), creating missing folders on the way: no file stands where a folder must be, and
    the nearest existing folder is writable. Checked before any work, so that the work is not lost.

    Example:
        >>> writable("output", "/tmp/kerascnn-doc/figure.png").name
        'figure.png'
    """
    path, received = Path(value), _received(name, str(value))
    if folder and path.exists() and not path.is_dir():
        raise ArgumentError(f"`{name}` is a file, not a folder. {received}")
    existing = nearest_existing(path if folder and path.is_dir() else path.parent)
    if not existing.is_dir():
        raise ArgumentError(f"`{name}` goes through a file ({existing}). {received}")
    if not can_create_in(existing):
        raise ArgumentError(f"`{name}` is in a folder this user cannot write ({existing}). {received}")
    return path
