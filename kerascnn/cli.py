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
    """Imports TensorFlow without its C++ start-up chatter (see ``device.import_tensorflow``)."""
    from kerascnn.device import import_tensorflow

    import_tensorflow()


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
    p.add_argument("name", help="model name (see `kerascnn models`) or a saved .keras file")
    _add_model_args(p)
    p.add_argument("--unsafe", action="store_true", help="allow loading files that can run code (Lambda layers, .h5)")
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

    if _is_model_file(args.name):
        if args.input_shape or args.num_classes or args.option:
            raise UsageError("--input-shape, --num-classes and -o apply to model names, not saved files")
        load_tensorflow()
        from kerascnn.loading import load_model

        model = load_model(args.name, unsafe=args.unsafe, compile=False)
    else:
        check_known(args.name)  # unknown names fail before Keras loads
        load_tensorflow()
        model = create_model(
            args.name,
            input_shape=tuple(args.input_shape) if args.input_shape else None,
            num_classes=args.num_classes,
            **_model_kwargs(args),
        )
    from kerascnn.report import describe

    report = describe(model)
    print(json.dumps(report.to_dict()) if args.json else report.to_table())


def _is_model_file(name: str) -> bool:
    return name.lower().endswith((".keras", ".h5", ".hdf5")) or os.sep in name


def _add_evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="test accuracy of a saved .keras model on a dataset")
    p.add_argument("model", help="a .keras file (e.g. a run's model.keras artifact)")
    p.add_argument("--dataset", required=True, help="mnist, fashion_mnist, cifar10, cifar100 or an image folder")
    p.add_argument("--test-samples", type=int, help="evaluate on the first N test images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--unsafe", action="store_true", help="allow loading files that can run code (Lambda layers, .h5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from kerascnn import checks
    from kerascnn.data import check_dataset_name

    check_dataset_name(args.dataset)
    if args.test_samples is not None:
        checks.positive_int("test_samples", args.test_samples)
    checks.positive_int("batch_size", args.batch_size)
    load_tensorflow()
    from kerascnn.training import evaluate

    result = evaluate(args.model, args.dataset, test_samples=args.test_samples, batch_size=args.batch_size,
                      unsafe=args.unsafe)  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        print(f"test accuracy {result['test_accuracy']:.4f}, test loss {result['test_loss']:.4f} "
              f"on {result['test_size']} images (adaptation: {result['adaptation']})")  # fmt: skip


def _add_tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", default="kerascnn", help="MLflow experiment (default: kerascnn)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)")


def _add_train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model on a dataset, tracked in MLflow")
    p.add_argument("name", help="model name (see `kerascnn models`)")
    p.add_argument("--dataset", required=True, help="mnist, fashion_mnist, cifar10, cifar100 or an image folder")
    recipe = p.add_argument_group("recipe (defaults: the model's recipe, see kerascnn.recipes)")
    recipe.add_argument("--epochs", type=int)
    recipe.add_argument("--batch-size", type=int)
    recipe.add_argument("--learning-rate", type=float)
    recipe.add_argument("--optimizer", help="adam, adamw, sgd or rmsprop")
    recipe.add_argument("--schedule", help="constant or cosine (warm-up + cosine decay)")
    recipe.add_argument("--warmup-epochs", type=float)
    data = p.add_argument_group("data")
    data.add_argument("--train-samples", type=int, help="use the first N training images")
    data.add_argument("--test-samples", type=int, help="evaluate on the first N test images")
    data.add_argument("--validation-split", type=float, default=0.1, help="held out of train (default 0.1)")
    data.add_argument("--augment", action="store_true", help="random shifts/rotations (flips for photos)")
    _add_model_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true", help="deterministic TensorFlow ops (slower)")
    _add_device_args(p)
    _add_tracking_args(p)
    p.add_argument("--run-name", help="MLflow run name (default MODEL-DATASET)")
    p.add_argument("--no-tracking", action="store_true", help="train without MLflow")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_ID",
                   help="continue the latest interrupted run of this model and dataset (or RUN_ID)")
    p.add_argument("--json", action="store_true", help="last stdout line: the result as JSON")
    p.set_defaults(run=cmd_train)


def _add_device_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("device")
    g.add_argument("--precision", help="float32 or mixed (float16 on GPU, bfloat16 on CPU); default: the recipe's")
    g.add_argument("--jit", dest="jit", action="store_true", default="auto", help="XLA-compile (default: GPU only)")
    g.add_argument("--no-jit", dest="jit", action="store_false")
    g.add_argument("--steps-per-execution", type=int, help="batches per compiled call (default: the recipe's)")
    g.add_argument("--strategy", default="auto", help="auto, mirrored or multiworker (TF_CONFIG)")


def _train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        model=args.name, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, optimizer=args.optimizer, schedule=args.schedule,
        warmup_epochs=args.warmup_epochs, steps_per_execution=args.steps_per_execution,
        train_samples=args.train_samples, test_samples=args.test_samples,
        validation_split=args.validation_split, seed=args.seed, deterministic=args.deterministic,
        augment=args.augment, input_shape=tuple(args.input_shape) if args.input_shape else None,
        num_classes=args.num_classes, model_kwargs=_model_kwargs(args), experiment=args.experiment,
        run_name=args.run_name, tracking_uri=args.tracking_uri, tracking=not args.no_tracking,
        resume=args.resume, precision=args.precision, jit=args.jit, strategy=args.strategy,
    )  # fmt: skip


def cmd_train(args: argparse.Namespace) -> None:
    from kerascnn import training

    kwargs = _train_kwargs(args)
    training.check_arguments(**kwargs)  # fast, before TensorFlow loads
    load_tensorflow()
    result = training.train(**kwargs)
    summary = f"test accuracy {result.test_accuracy:.4f}, test loss {result.test_loss:.4f}"
    where = f"run {result.run_id} in experiment {result.experiment!r}" if result.run_id else "untracked"
    print(f"kerascnn: {summary} ({where}); model: {result.model_path}", flush=True)
    if args.json:
        print(json.dumps(result.to_json()), flush=True)


def _add_runs_parser(sub: Any) -> None:
    p = sub.add_parser("runs", help="leaderboard of tracked runs, best test accuracy first")
    p.add_argument("--experiment", help="only this experiment (default: all)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)")
    p.add_argument("--limit", type=int, help="show the best N runs")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> None:
    from kerascnn import checks, runs

    if args.limit is not None:
        checks.positive_int("limit", args.limit)
    rows = runs.leaderboard(args.experiment, tracking_uri=args.tracking_uri)[: args.limit]
    if args.json:
        print(json.dumps([r.to_dict() for r in rows]))
    elif rows:
        print(runs.format_table(rows))
    else:
        print("kerascnn: no runs yet (train one with `kerascnn train mnist_cnn --dataset mnist`)")


def _add_compare_parser(sub: Any) -> None:
    p = sub.add_parser("compare", help="overlaid learning curves and final metrics of runs")
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to compare")
    p.add_argument("--experiment", help="or: the best runs of this experiment")
    p.add_argument("--metric", default="val_accuracy", help="per-epoch metric to overlay (default val_accuracy)")
    p.add_argument("--output", help="save the figure (.png, .svg or .pdf)")
    p.add_argument("--limit", type=int, default=10, help="most runs taken from --experiment (default 10)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> None:
    from kerascnn.comparison import compare

    result = compare(args.run_ids or None, experiment=args.experiment, metric=args.metric, output=args.output,
                     limit=args.limit, tracking_uri=args.tracking_uri)  # fmt: skip
    if args.json:
        print(json.dumps(result.to_json()))
        return
    print(result.to_table())
    if result.output:
        print(f"kerascnn: figure saved to {result.output}")


def _add_ui_parser(sub: Any) -> None:
    p = sub.add_parser("ui", help="serve the MLflow dashboard on the kit's store")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)")
    p.set_defaults(run=cmd_ui)


def cmd_ui(args: argparse.Namespace) -> None:
    from kerascnn import dashboard

    raise SystemExit(dashboard.serve(host=args.host, port=args.port, tracking_uri=args.tracking_uri))


def _add_tune_parser(sub: Any) -> None:
    p = sub.add_parser("tune", help="KerasTuner search, one nested MLflow run per trial (rerun to resume)")
    p.add_argument("family", help="search space: mnist_cnn, lenet5, alexnet, vgg or resnet")
    p.add_argument("--dataset", required=True, help="mnist, fashion_mnist, cifar10, cifar100 or an image folder")
    p.add_argument("--tuner", default="random", help="random, hyperband, bayesian or grid (default random)")
    p.add_argument("--max-trials", type=int, default=10, help="trials in the search (raise it to extend one)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial (Hyperband: the most a trial gets)")
    p.add_argument("--fixed", action="append", type=_option, default=[], metavar="KEY=VALUE",
                   help="pin a hyperparameter, repeatable (e.g. --fixed filters=32)")
    p.add_argument("--objective", default="val_accuracy", help="val_accuracy (max) or val_loss (min)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--train-samples", type=int, help="use the first N training images")
    p.add_argument("--validation-split", type=float, default=0.1)
    p.add_argument("--precision", default="float32", help="float32 or mixed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--search-name", help="name of the search (default FAMILY-DATASET-TUNER); same name resumes")
    p.add_argument("--directory", default="mlruns/searches", help="KerasTuner state (default mlruns/searches)")
    p.add_argument("--overwrite", action="store_true", help="start the search afresh (old MLflow runs stay)")
    p.add_argument("--max-retries-per-trial", type=int, default=0)
    p.add_argument("--max-consecutive-failed-trials", type=int, default=3)
    _add_tracking_args(p)
    p.add_argument("--json", action="store_true", help="last stdout line: the search as JSON")
    p.set_defaults(run=cmd_tune)


def _tune_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        family=args.family, dataset=args.dataset, tuner=args.tuner, max_trials=args.max_trials, epochs=args.epochs,
        fixed=dict(args.fixed), objective=args.objective, batch_size=args.batch_size,
        train_samples=args.train_samples, validation_split=args.validation_split, precision=args.precision,
        seed=args.seed, search_name=args.search_name, directory=args.directory, overwrite=args.overwrite,
        experiment=args.experiment, tracking_uri=args.tracking_uri, max_retries_per_trial=args.max_retries_per_trial,
        max_consecutive_failed_trials=args.max_consecutive_failed_trials,
    )  # fmt: skip


def cmd_tune(args: argparse.Namespace) -> None:
    from kerascnn import distributed, tuning

    kwargs = _tune_kwargs(args)
    tuning.check_arguments(**kwargs)  # fast, before TensorFlow loads
    distributed.role()
    load_tensorflow()
    result = tuning.tune(**kwargs)
    if result.best is not None and result.best["score"] is not None:
        best = result.best
        print(f"kerascnn: best trial {best['trial_id']} {args.objective}={best['score']:.4f} "
              f"{best['hyperparameters']} (parent run {result.parent_run_id})", flush=True)  # fmt: skip
    elif result.parent_run_id and distributed.role() != "worker":
        print(f"kerascnn: no trial completed (parent run {result.parent_run_id})", flush=True)
    if args.json:
        print(json.dumps(result.to_json()), flush=True)


_EXTRA_COMMANDS: list[Any] = [_add_train_parser, _add_evaluate_parser, _add_tune_parser, _add_runs_parser,
                               _add_compare_parser, _add_ui_parser]


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
        return _fail(e, EXIT_USAGE)
    except KeyboardInterrupt as e:
        return _fail(e, 130, "interrupted")
    except BrokenPipeError:
        return 0
    except BaseException as e:
        from kerascnn.signals import Terminated
        from kerascnn.training import TrainingFailed
        from kerascnn.tuning import SearchFailed

        if isinstance(e, Terminated):
            return _fail(e, e.exit_code, str(e))
        if isinstance(e, TrainingFailed):
            return _fail(e, 1, f"training failed: {e}")
        if isinstance(e, SearchFailed):
            return _fail(e, 1, f"search stopped: {e}")
        raise
    return 0


def _fail(error: BaseException, code: int, message: str | None = None) -> int:
    text = " ".join((message or str(error)).split()) or type(error).__name__
    run_id = getattr(error, "kerascnn_run_id", None)
    if run_id:
        text += f" (run {run_id} ended {getattr(error, 'kerascnn_status', 'FAILED')})"
    print(f"kerascnn: error: {text}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
