"""The ``kerascnn`` command line.

Exit codes: 0 done; 1 training or a search failed (a NaN loss, KerasTuner's failure limit),
an export was refused (it disagreed with Keras), a server could not start or the disk is full; 2 a bad argument
(one line on stderr, no traceback, nothing created); 130 Ctrl-C; 143 SIGTERM (129 SIGHUP); 141 its output closed
(``| head``: a run stops as after SIGTERM). Any other error
is a bug and keeps its traceback.
With ``--json``, stdout holds exactly one JSON document; everything else goes to stderr.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Sequence
from typing import Any

from kerascnn import console
from kerascnn.cli import serving as _serving  # noqa: F401  (predict, export, serve register)
from kerascnn.cli.commands import COMMANDS, Said, print_said
from kerascnn.cli.options import Parser, UsageError
from kerascnn.errors import ArgumentError, SearchFailed, TrainingFailed
from kerascnn.signals import output_closed_as_exception, terminate_as_exception

EXIT_USAGE = 2


def build_parser() -> Parser:
    """The argument parser of the ``kerascnn`` command (one sub-command per verb)."""
    from kerascnn import __version__

    parser = Parser(
        prog="kerascnn", description="Build, describe, train, tune and compare Keras CNNs, tracked in MLflow."
    )
    parser.add_argument("--version", action="version", version=f"kerascnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def _usable_streams() -> None:
    """A closed standard stream (``>&-``) is /dev/null for this process: the command runs quietly,
    and no file it opens takes that descriptor (TensorFlow's C++ lines would land in it). Text that
    the output's encoding cannot hold (a name in ``é`` or ``数`` on an ASCII terminal) is written
    escaped (``\\xe9``), as Python writes it on stderr, not a traceback after the work is done."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # (the lowest free descriptor: this one)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115  (for the process's life)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # (a replaced stream without reconfigure)
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the process exit code.

    Example:
        >>> main(["models"])  # doctest: +SKIP
        0
    """
    from kerascnn.device import freeze_after_imports, import_without_keras_extras
    from kerascnn.tracking.store import bound_http_retries

    _usable_streams()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    bound_http_retries()  # (this process is the kit's: a dead server fails a command in seconds)
    import_without_keras_extras()  # no command feeds Keras DataFrames or uses its scikit-learn wrappers
    freeze_after_imports()
    stdout, args = sys.stdout, None
    try:
        args = build_parser().parse_args(argv)
        as_json = getattr(args, "json", False)
        with (
            terminate_as_exception(),  # (from the start: a SIGTERM while TensorFlow loads gets its line too)
            output_closed_as_exception(),
            contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext(),
        ):
            said = args.run(args)
        if isinstance(said, Said):
            print_said(said, as_json, stdout)
            return said.code
        return said if isinstance(said, int) else 0
    except (UsageError, ArgumentError) as e:
        return _fail(e, EXIT_USAGE)
    except KeyboardInterrupt as e:
        return _fail(e, 130, "interrupted", args)
    except BrokenPipeError:
        return 0
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        return _fail(e, 1, f"no space left on the device ({e})", args)
    except (TrainingFailed, SearchFailed) as e:
        what = "training failed" if isinstance(e, TrainingFailed) else "search stopped"
        return _fail(e, 1, f"{what}: {e}")
    except BaseException as e:
        from kerascnn.signals import OutputClosed, Terminated
        from kerascnn.tracking.run import last_outcome

        if isinstance(e, OutputClosed) and getattr(last_outcome(), "status", "FINISHED") == "FINISHED":
            return 0  # nothing was stopped (`kerascnn describe vgg16 | head`)
        if isinstance(e, Terminated):
            return _fail(e, e.exit_code, str(e), args)
        raise


def _fail(error: BaseException, code: int, message: str | None = None, args: Any = None) -> int:
    """One ``kerascnn: error:`` line; the run that ended with it, and how to go on with it (a
    command to copy: with the ``--tracking-uri`` that ``args``, the command's arguments, gave)."""
    from kerascnn.tracking.run import last_outcome

    lines = (message or str(error)).splitlines()  # one line; the spaces in an echoed value stay
    text = " ".join(line.strip() for line in lines if line.strip()) or type(error).__name__
    outcome = last_outcome() if code != EXIT_USAGE else None
    stopped = code in (129, 130, 141, 143)  # SIGHUP, Ctrl-C, a closed output (SIGPIPE), SIGTERM
    command = getattr(args, "command", None)
    uri = getattr(args, "tracking_uri", None)
    store = console.option("tracking-uri", uri)
    if outcome is not None and outcome.status != "FINISHED":
        text += f" (run {outcome.label} ended {outcome.status}"
        if stopped and command == "train" and not outcome.run_id and outcome.spool and outcome.resumable:
            experiment = getattr(args, "experiment", None)  # (--resume with no id looks in one experiment)
            latest = f"--resume{store}" + console.option("experiment", experiment)
            text += f"; `kerascnn sync{store}` sends it to the store, then `kerascnn train {latest}` continues it"
        elif stopped and command == "train" and outcome.run_id and outcome.resumable:
            text += f"; `kerascnn train --resume {outcome.run_id[:12]}{store}` continues it"
        elif stopped and command == "train" and outcome.run_id:
            text += f"; it had trained every epoch: `kerascnn evaluate {outcome.run_id[:12]}{store}` scores its model"
        elif stopped and command == "tune" and getattr(args, "tuner", None) == "grid":  # (keras-team/keras-tuner#1055)
            text += "; KerasTuner cannot resume a grid search: the same command with --overwrite walks it again"
        elif stopped and command == "tune":
            text += "; the same command resumes the search"
        text += ")"
    with contextlib.suppress(OSError):  # (stderr's reader may be gone too: `2>&1 | head`)
        print(f"{console.line_start()}kerascnn: error: {text}", file=sys.stderr, flush=True)  # (not on a bar)
    return code


def run() -> None:
    """The ``kerascnn`` console script: ``main()``, then a quick exit.

    With TensorFlow loaded, the interpreter's own teardown takes 2-3 s after everything is
    done (measured: 2.2 s of an MNIST run); the exit handlers run and the output is flushed
    first, then the process ends.
    """
    code = main()
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    import atexit
    import logging

    atexit._run_exitfuncs()  # the tracking recorder's flush among them
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
