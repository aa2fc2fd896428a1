"""The kit's exceptions: what the user got wrong, and what went wrong after the run started.

The CLI maps them to exit codes: :class:`ArgumentError` is exit 2 with one line and
no traceback; :class:`TrainingFailed`, :class:`SearchFailed` and :class:`ExportMismatch`
are exit 1 with one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ArgumentError(ValueError):
    """A bad argument, data file or environment variable, found before any run exists.

    The message is one line that names the argument and echoes the value, in the
    style of Keras: ``"`epochs` must be a positive integer. Received: epochs=0"``.

    Example:
        >>> raise ArgumentError("`epochs` must be a positive integer. Received: epochs=0")
        Traceback (most recent call last):
        kerascnn.errors.ArgumentError: `epochs` must be a positive integer. Received: epochs=0
    """

    def echoing(self, received: str) -> ArgumentError:
        """The same message ending in ``Received: {received}``: what the caller's user gave, where
        the check saw a value derived from it.

        Example:
            >>> str(ArgumentError("Bad. Received: run_id='x'").echoing("model='runs:/x'"))
            "Bad. Received: model='runs:/x'"
        """
        return ArgumentError(f"{str(self).rpartition(' Received:')[0]} Received: {received}")


class TrainingFailed(RuntimeError):
    """Training ran but did not finish (a NaN loss, for instance); the run is marked FAILED."""


class SearchFailed(RuntimeError):
    """The search ran but could not go on (KerasTuner's consecutive-failure limit, every trial failed, a worker
    without a chief); the parent run is marked FAILED."""


class ExportMismatch(RuntimeError):
    """The exported model disagrees with Keras beyond the tolerance; the file was deleted."""
