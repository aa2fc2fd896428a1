"""The ``kerascnn`` command line.

Bad arguments exit with code 2 and one line on stderr, never a traceback;
the heavy libraries are imported only after the arguments are checked.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad argument: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise UsageError(message)


def _option(text: str) -> tuple[str, Any]:
    """Parses ``KEY=VALUE`` with a Python-literal value (``width=32``, ``layout=(1,1,2)``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    lowered = {"true": True, "false": False, "none": None}
    if raw.lower() in lowered:
        return key, lowered[raw.lower()]
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key, raw


def load_tensorflow() -> None:
    """Imports TensorFlow with its C++ start-up chatter on fd 2 hidden.

    TensorFlow >= 2.20 prints absl and CUDA-probe lines before its logging is
    configured, whatever ``TF_CPP_MIN_LOG_LEVEL`` says; they would break the
    CLI's one-line errors. The text is replayed if the import fails.
    """
    if "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here, once
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-shape", nargs=3, type=int, metavar=("H", "W", "C"),
                   help="input height, width, channels (default: the model's standard shape)")
    p.add_argument("--num-classes", type=int, help="number of classes (default: the model's standard)")
    p.add_argument("-o", "--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                   help="builder option, repeatable (e.g. -o width=32 -o batch_norm=true)")


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(args.option)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kerascnn`` command (one sub-command per verb)."""
    parser = _Parser(prog="kerascnn", description="Build, describe, train, tune and compare Keras CNNs.")
    from kerascnn import __version__

    parser.add_argument("--version", action="version", version=f"kerascnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("describe", help="per-layer output size, parameters, MACs, receptive field")
    p.add_argument("name", help="model name (see `kerascnn models`)")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=cmd_describe)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


def cmd_models(args: argparse.Namespace) -> None:
    from kerascnn.registry import get_entry, list_models

    load_tensorflow()
    entries = [get_entry(n) for n in list_models()]
    if args.json:
        print(json.dumps([
            {"name": e.name, "family": e.family, "default_input_shape": list(e.default_input_shape),
             "default_num_classes": e.default_num_classes, "options": e.options(), "summary": e.summary}
            for e in entries
        ]))  # fmt: skip
        return
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(f"{e.name.ljust(width)}  {e.summary}")


def cmd_describe(args: argparse.Namespace) -> None:
    from kerascnn.registry import check_known, create_model

    check_known(args.name)  # unknown names fail before Keras loads
    load_tensorflow()
    model = create_model(
        args.name,
        input_shape=tuple(args.input_shape) if args.input_shape else None,
        num_classes=args.num_classes,
        **_model_kwargs(args),
    )
    from kerascnn.describe import describe

    report = describe(model)
    print(json.dumps(report.to_dict()) if args.json else report.to_table())


_EXTRA_COMMANDS: list[Any] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the process exit code.

    Example:
        >>> main(["models"])  # doctest: +SKIP
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except (UsageError, ValueError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"kerascnn: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
