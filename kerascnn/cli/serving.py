"""The ``predict``, ``export`` and ``serve`` commands: using a trained model outside training.

MODEL is the same for the three (see :mod:`kerascnn.sources`): a ``.keras`` file (not for
``serve``), ``runs:/RUN_ID[/NAME]``, a run id, ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kerascnn.cli.commands import MODEL_HELP, UNSAFE_HELP, Said, _json_flag, _tensorflow, command, tracking_uri_option


@command
def _predict_parser(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="class names and probabilities of images, from a model file, run or registry",
        description="Predict the classes of images; they are taken raw (uint8, the dataset's size) "
        "and preprocessed as in training.",
    )
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files (png, jpg, bmp, gif), folders of them, or .npz/.npy arrays of images",
    )
    p.add_argument("--top-k", type=int, default=1, metavar="K", help="classes reported per image (default: 1)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per forward pass (default: 256)")
    tracking_uri_option(p)
    p.add_argument("--unsafe", action="store_true", help=UNSAFE_HELP)
    _json_flag(p, "the predictions")
    p.set_defaults(run=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> Said:
    from kerascnn import checks, sources
    from kerascnn.prediction import check_inputs

    checks.positive_int("top_k", args.top_k)
    checks.positive_int("batch_size", args.batch_size)
    sources.check_form(args.model, unsafe=args.unsafe)  # (these three before TensorFlow loads)
    check_inputs(args.inputs)
    _tensorflow()
    from kerascnn.prediction import predict

    result = predict(
        args.model,
        args.inputs,
        args.top_k,
        tracking_uri=args.tracking_uri,
        unsafe=args.unsafe,
        batch_size=args.batch_size,
    )
    return Said(result.to_json(), result.to_table())


@command
def _export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="SavedModel, TFLite or ONNX of a model (raw uint8 images in), checked vs Keras",
        description="Export the model a run logs (uint8 images in, probabilities out) and check the "
        "export against Keras on test images; a run's export is logged to it.",
    )
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--format", required=True, choices=("savedmodel", "tflite", "onnx"), help="what to write")
    p.add_argument("--output", required=True, metavar="PATH", help="a new folder (savedmodel), .tflite or .onnx file")
    p.add_argument("--quantize", choices=("int8",), help="tflite only: full-integer, calibrated on training images")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing file or SavedModel export, and write over the export of that name the run logged",
    )
    tracking_uri_option(p)
    p.add_argument("--unsafe", action="store_true", help=UNSAFE_HELP)
    _json_flag(p, "the export and its check")
    p.set_defaults(run=cmd_export)


def cmd_export(args: argparse.Namespace) -> Said | int:
    from kerascnn import exporting, sources

    exporting.check_request(args.format, args.output, args.quantize, args.overwrite)  # before TensorFlow loads
    sources.check_form(args.model, unsafe=args.unsafe)
    _tensorflow()
    try:
        result = exporting.export(
            args.model,
            args.format,
            args.output,
            quantize=args.quantize,
            overwrite=args.overwrite,
            tracking_uri=args.tracking_uri,
            unsafe=args.unsafe,
        )
    except exporting.ExportMismatch as e:
        print(f"kerascnn: error: export refused: {e}", file=sys.stderr, flush=True)
        return 1
    return Said(result.to_json(), result.to_text())


@command
def _serve_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a run's or registered model over HTTP (mlflow models serve)",
        description="MLflow's scoring server for MODEL in this environment; POST raw uint8 images "
        'as {"inputs": [...]} to /invocations.',
    )
    p.add_argument(
        "model", metavar="MODEL", help="runs:/RUN_ID[/NAME], a run id, models:/NAME@ALIAS or models:/NAME/VERSION"
    )
    p.add_argument(
        "--host", default="127.0.0.1", metavar="HOST", help="bind address (default: 127.0.0.1, this machine only)"
    )
    p.add_argument(
        "--port", type=int, default=5001, metavar="PORT", help="TCP port (default: 5001; `kerascnn ui` takes 5000)"
    )
    tracking_uri_option(p)
    p.set_defaults(run=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from kerascnn import server

    return server.serve(args.model, host=args.host, port=args.port, tracking_uri=args.tracking_uri)
