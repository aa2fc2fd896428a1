"""The ``kerascnn`` commands: each registers its parser and returns what it has to say.

A command returns a :class:`Said`: the JSON document printed for ``--json`` and the text
printed otherwise. Heavy libraries are imported only after the arguments are checked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kerascnn import console
from kerascnn.cli.options import UsageError, add_config_options, pair, pairs, typed_settings
from kerascnn.config import DATASET_HELP, TrainConfig, TuneConfig

URI_HELP = "MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)"
UNSAFE_HELP = "allow loading files that can run code (.keras files with Lambda layers, legacy .h5)"
MODEL_HELP = "a .keras file, runs:/RUN_ID[/NAME], a run id, models:/NAME@ALIAS or models:/NAME/VERSION"


@dataclass
class Said:
    """What a command prints: ``text`` on a terminal, ``document`` for ``--json``."""

    document: Any
    text: str | None = None
    code: int = 0  # the exit status


Command = Callable[[argparse.Namespace], Said | int | None]
COMMANDS: list[Callable[[Any], None]] = []


def command(register: Callable[[Any], None]) -> Callable[[Any], None]:
    """Adds a parser-registering function to the CLI, in definition order."""
    COMMANDS.append(register)
    return register


def _json_flag(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as one JSON document (all else goes to stderr)")


def _tensorflow() -> None:
    """Imports TensorFlow without its C++ start-up chatter (see ``device.import_tensorflow``)."""
    from kerascnn.device import import_tensorflow

    import_tensorflow()


def tracking_uri_option(p: argparse.ArgumentParser) -> None:
    """``--tracking-uri URI``, as every command that reads or writes a store takes it."""
    p.add_argument("--tracking-uri", metavar="URI", help=URI_HELP)


# -- models, describe -------------------------------------------------------------------------------
@command
def _models_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="list the registered models (no TensorFlow needed)")
    _json_flag(p, "the models, their families and options")
    p.set_defaults(run=cmd_models)


def cmd_models(args: argparse.Namespace) -> Said:
    from kerascnn.models import get_entry, list_models

    entries = [get_entry(n) for n in list_models()]
    document = [
        {
            "name": e.name,
            "family": e.family,
            "default_input_shape": list(e.default_input_shape),
            "default_num_classes": e.default_num_classes,
            "options": e.options(),
            "summary": e.summary,
        }
        for e in entries
    ]
    width = max(len(e.name) for e in entries)
    return Said(document, "\n".join(f"{e.name.ljust(width)}  {e.family.ljust(9)}  {e.summary}" for e in entries))


@command
def _describe_parser(sub: Any) -> None:
    p = sub.add_parser("describe", help="per-layer output size, parameters, MACs, receptive field")
    p.add_argument("name", metavar="NAME", help="model name (see `kerascnn models`) or a saved .keras file")
    p.add_argument(
        "--input-shape",
        nargs=3,
        type=int,
        metavar=("H", "W", "C"),
        help="input height, width, channels (default: the model's standard input)",
    )
    p.add_argument("--num-classes", type=int, metavar="N", help="output classes (default: the model's standard count)")
    p.add_argument(
        "-o",
        "--option",
        action="append",
        type=pair,
        default=[],
        metavar="KEY=VALUE",
        help="builder option, repeatable (-o width=32 -o batch_norm=true)",
    )
    p.add_argument("--unsafe", action="store_true", help=UNSAFE_HELP)
    _json_flag(p, "the report")
    p.set_defaults(run=cmd_describe)


def cmd_describe(args: argparse.Namespace) -> Said:
    from kerascnn.models import create_model

    if args.name.lower().endswith((".keras", ".h5", ".hdf5")) or os.sep in args.name:
        if args.input_shape or args.num_classes or args.option:
            raise UsageError(
                "--input-shape, --num-classes and -o apply to model names, not saved files. "
                f"Received: name={args.name!r}"
            )
        from kerascnn.loading import check_file, load_model

        check_file(args.name, unsafe=args.unsafe, argument="name")  # before TensorFlow loads
        _tensorflow()
        model = load_model(args.name, unsafe=args.unsafe, compile=False, argument="name")
    else:
        shape, options = _checked_build(args)  # bad names and options fail before Keras loads
        _tensorflow()
        model = create_model(args.name, input_shape=shape, num_classes=args.num_classes, **options)
    from kerascnn.report import describe

    report = describe(model)
    return Said(report.to_dict(), report.to_table())


@command
def _convert_parser(sub: Any) -> None:
    p = sub.add_parser("convert", help="a torchvision ResNet/VGG state dict as a kit .keras model")
    p.add_argument("name", metavar="NAME", help="resnet18, resnet34, resnet50, vgg11...vgg19 or vgg11_bn...vgg19_bn")
    p.add_argument("state_dict", metavar="STATE_DICT", help="a .pth/.pt file (needs torch) or an .npz of its arrays")
    p.add_argument(
        "--output", required=True, metavar="PATH", help="the .keras file to write (missing folders are created)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--input-shape", nargs=3, type=int, metavar=("H", "W", "C"), help="default: 224 224 3")
    p.add_argument("--num-classes", type=int, metavar="N", help="default: the state dict's classifier size")
    p.add_argument(
        "--preprocessing", default="torch", metavar="{torch,none}", help="torch (takes [0, 1] RGB, the default) or none"
    )
    _json_flag(p)
    p.set_defaults(run=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> Said:
    from pathlib import Path

    from kerascnn import checks
    from kerascnn.errors import ArgumentError
    from kerascnn.pretrained import TORCHVISION_MODELS, read_state_dict

    checks.one_of("name", args.name, TORCHVISION_MODELS)
    checks.one_of("preprocessing", args.preprocessing, ("torch", "none"))
    output = Path(args.output)
    if output.suffix != ".keras" or output.is_dir():
        raise ArgumentError(f"`output` must be a .keras file. Received: output={args.output!r}")
    if output.exists() and not args.overwrite:
        raise ArgumentError(f"Output exists; pass --overwrite to replace it. Received: output={args.output!r}")
    checks.writable("output", args.output)
    if args.input_shape is not None:
        checks.input_shape(tuple(args.input_shape))
    if args.num_classes is not None:
        checks.num_classes(args.num_classes)
    read_state_dict(args.state_dict)  # checked before TensorFlow loads (read again below: errors echo the path)
    _tensorflow()
    from kerascnn.pretrained import convert_torchvision

    model = convert_torchvision(
        args.name,
        args.state_dict,
        input_shape=tuple(args.input_shape or (224, 224, 3)),
        num_classes=args.num_classes,
        preprocessing=None if args.preprocessing == "none" else "torch",
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save(output)
    document = {
        "name": args.name,
        "output": str(Path(args.output).resolve()),
        "params": model.count_params(),
        "preprocessing": args.preprocessing,
    }
    return Said(
        document,
        f"kerascnn: {args.name} -> {document['output']} ({document['params']:,} parameters, "
        f"preprocessing {args.preprocessing})",
    )


def _checked_build(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """``describe NAME``'s input shape and builder options, checked without Keras."""
    from kerascnn import checks
    from kerascnn.models import get_entry

    entry = get_entry(args.name)
    options = pairs("-o", args.option)
    entry.check_options(options)
    shape = checks.input_shape(tuple(args.input_shape)) if args.input_shape else entry.default_input_shape
    if args.num_classes is not None:
        checks.num_classes(args.num_classes)
    checks.min_spatial_size(args.name, shape, entry.min_input_size(**options))
    return shape, options


# -- train, evaluate, tune ---------------------------------------------------------------------------
@command
def _train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on a dataset, tracked in MLflow",
        description="Train a model with its recipe; every option overrides one setting of kerascnn.TrainConfig.",
    )
    add_config_options(p, TrainConfig)
    _json_flag(p)
    p.set_defaults(run=cmd_train)


def cmd_train(args: argparse.Namespace) -> Said:
    from kerascnn import training

    settings = typed_settings(args, TrainConfig)
    result = training.train(**settings)  # settings and data are checked before TensorFlow loads
    where = f"run {result.run_id} in experiment {result.experiment!r}" if result.run_id else "untracked"
    if result.spool:
        why = "--offline" if settings.get("offline") else "the store failed"
        where = f"run spooled to {result.spool}, {why}; `kerascnn sync` sends it"
    text = (
        f"kerascnn: test accuracy {result.test_accuracy:.4f}, test loss {result.test_loss:.4f} ({where}); "
        f"model: {result.model_path}"
    )
    return Said(result.to_json(), text)


@command
def _evaluate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="test accuracy of a saved or tracked model on a dataset",
        description="Score a model (a .keras file, a run's or a registered model) on a dataset's test images; "
        "nothing is logged.",
    )
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument(
        "--dataset", help=DATASET_HELP + " (default: the one the model was trained on, which a kit model records)"
    )
    p.add_argument("--test-samples", type=int, metavar="N", help="evaluate on the first N test images")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="batch size (default: 256)")
    tracking_uri_option(p)
    p.add_argument("--unsafe", action="store_true", help=UNSAFE_HELP)
    _json_flag(p)
    p.set_defaults(run=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> Said:
    from kerascnn import checks, sources
    from kerascnn.data import check_dataset_name

    if args.dataset is not None:
        check_dataset_name(args.dataset)
    if args.test_samples is not None:
        checks.positive_int("test_samples", args.test_samples)
    checks.positive_int("batch_size", args.batch_size)
    sources.check_form(args.model, unsafe=args.unsafe)
    _tensorflow()
    from kerascnn.training import evaluate

    result = evaluate(
        args.model,
        args.dataset,
        test_samples=args.test_samples,
        batch_size=args.batch_size,
        tracking_uri=args.tracking_uri,
        unsafe=args.unsafe,
    )
    return Said(
        result,
        f"{args.model}: test accuracy {result['test_accuracy']:.4f}, test loss {result['test_loss']:.4f} on "
        f"{result['test_size']:,} test images of {result['dataset']} (adaptation: {result['adaptation']})",
    )


@command
def _tune_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="KerasTuner search, one nested MLflow run per trial (rerun to resume)",
        description="Search a family's space with KerasTuner; every option overrides one setting "
        "of kerascnn.TuneConfig.",
    )
    add_config_options(p, TuneConfig)
    _json_flag(p, "the search")
    p.set_defaults(run=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> Said:
    from kerascnn import tuning
    from kerascnn.tuning import distributed

    settings = typed_settings(args, TuneConfig)
    distributed.role()
    result = tuning.tune(**settings)  # settings and data are checked before TensorFlow loads
    return Said(result.to_json(), None)


# -- runs, compare, ui -------------------------------------------------------------------------------
def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", help="only this experiment (default: every experiment)")
    tracking_uri_option(p)


@command
def _runs_parser(sub: Any) -> None:
    p = sub.add_parser(
        "runs",
        help="leaderboard of tracked runs, best test accuracy first",
        description="List the store's runs, best test accuracy first, then runs without one by their best "
        "validation accuracy; runs waiting in the spool follow.",
    )
    _store_options(p)
    p.add_argument("--limit", type=int, metavar="N", help="show the best N runs")
    p.add_argument("--trials", action="store_true", help="list the trials of searches too (their nested runs)")
    _json_flag(p, "the runs")
    p.set_defaults(run=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> Said:
    from kerascnn.tracking import queries, store

    if args.limit is not None:
        queries.check_limit(args.limit)
    waiting = [r for r in queries.spooled_rows(args.tracking_uri) if args.experiment in (None, r.experiment)]
    width = console.table_width()
    try:
        rows: list[queries.RunRow] = queries.leaderboard(
            args.experiment, tracking_uri=args.tracking_uri, include_trials=args.trials
        )
        rows = rows[: args.limit]
        text = queries.format_table(rows, width) if rows else f"kerascnn: {_no_runs(args.tracking_uri, bool(waiting))}"
    except store.StoreUnavailable as e:  # what waits in its spool can still be listed
        if not waiting:
            raise
        print(f"kerascnn: warning: {e}; only the runs waiting in its spool follow", file=sys.stderr, flush=True)
        rows, text = [], "kerascnn: the store cannot be read now"
    if waiting:
        text += f"\n\nwaiting in the spool ({len(waiting)}; `kerascnn sync` sends them):\n"
        text += queries.format_table(waiting, width)
    return Said([r.to_dict() for r in rows + waiting], text)


def _no_runs(tracking_uri: str | None, waiting: bool = False) -> str:
    """What ``runs`` says of a store with no runs (one that does not exist is named; with runs
    ``waiting`` in its spool, those follow)."""
    from kerascnn.tracking import store

    uri = store.resolve_tracking_uri(tracking_uri, write=False)
    where = f" (there is no store at {uri})" if store.not_made(uri) else ""
    train = f"kerascnn train mnist_cnn{console.option('tracking-uri', tracking_uri)}"
    return f"no runs in the store yet{where}" if waiting else f"no runs yet{where}; train one: {train}"


@command
def _compare_parser(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="overlaid learning curves and test/best-val accuracy of runs",
        description="Compare runs (the given ones, else the best --limit of the store or of --experiment): a "
        "table, and with --output a figure of their learning curves and accuracies.",
    )
    p.add_argument(
        "run_ids",
        nargs="*",
        metavar="RUN_ID",
        help="runs to compare (ids or unique id prefixes; a search's: its best --limit trials)",
    )
    _store_options(p)
    p.add_argument(
        "--metric", default="val_accuracy", metavar="NAME", help="per-epoch metric to overlay (default: val_accuracy)"
    )
    p.add_argument("--output", metavar="PATH", help="save the figure (.png, .svg or .pdf; a file there is replaced)")
    p.add_argument(
        "--limit", type=int, default=10, metavar="N", help="most runs taken when no RUN_ID is given (default: 10)"
    )
    _json_flag(p, "the comparison")
    p.set_defaults(run=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> Said:
    from kerascnn.tracking.comparison import compare

    result = compare(
        args.run_ids or None,
        experiment=args.experiment,
        metric=args.metric,
        output=args.output,
        limit=args.limit,
        tracking_uri=args.tracking_uri,
    )
    text = result.to_table(console.table_width()) + (
        f"\nkerascnn: figure saved to {result.output}" if result.output else ""
    )
    return Said(result.to_json(), text)


@command
def _sync_parser(sub: Any) -> None:
    p = sub.add_parser("sync", help="send runs spooled while the store was unreachable (or --offline) to it")
    tracking_uri_option(p)
    _json_flag(p, "what was sent")
    p.set_defaults(run=cmd_sync)


def cmd_sync(args: argparse.Namespace) -> Said | int:
    from kerascnn.tracking.sync import sync

    report = sync(args.tracking_uri)
    lines = [f"kerascnn: synced {local[:12]} as run {run_id}" for local, run_id in report.synced.items()]
    lines += [f"kerascnn: {local[:12]} is being written or synced by another process; skipped" for local in report.busy]
    failed = [f"kerascnn: could not sync {local[:12]}: {why}" for local, why in report.failed.items()]
    if failed and not getattr(args, "json", False):
        print("\n".join(failed), file=sys.stderr, flush=True)  # the report on stdout, what failed on stderr
    return Said(
        report.to_json(), "\n".join(lines) or ("" if failed else "kerascnn: nothing to sync"), 1 if failed else 0
    )


@command
def _ui_parser(sub: Any) -> None:
    p = sub.add_parser("ui", help="serve the MLflow dashboard on the kit's store")
    p.add_argument(
        "--host", default="127.0.0.1", metavar="HOST", help="bind address (default: 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=int, default=5000, metavar="PORT", help="TCP port (default: 5000)")
    p.add_argument("--experiment", default="kerascnn", help="the experiment whose page is printed (default: kerascnn)")
    tracking_uri_option(p)
    p.set_defaults(run=cmd_ui)


def cmd_ui(args: argparse.Namespace) -> int:
    from kerascnn.tracking import dashboard

    return dashboard.serve(host=args.host, port=args.port, tracking_uri=args.tracking_uri, experiment=args.experiment)


# -- doctor ------------------------------------------------------------------------------------------
@command
def _doctor_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="this machine, the versions, the stores, and what each `auto` picks here")
    p.add_argument("--probe", action="store_true", help="also time a few training steps in float32 and mixed precision")
    _json_flag(p, "the report")
    p.set_defaults(run=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> Said:
    from kerascnn import doctor

    report = doctor.report(probe=args.probe)
    return Said(report, doctor.format_report(report))


def print_said(said: Said, as_json: bool, stdout: Any = None) -> None:
    out = stdout or sys.stdout
    if as_json:
        out.write(json.dumps(said.document) + "\n")
    elif said.text:
        out.write(said.text + "\n")
    out.flush()
