"""`kerascnn models` and `kerascnn describe` as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import PY, assert_usage_error, free_port, run_cli, run_cli_in_terminal


def test_models_lists_every_model():
    result = run_cli("models", check=True)
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert "mnist_cnn" in names and "resnet50" in names
    assert result.stderr == ""
    data = json.loads(run_cli("models", "--json", check=True).stdout)
    resnet = next(m for m in data if m["name"] == "resnet18")
    assert resnet["family"] == "resnet" and "width" in resnet["options"]


def test_describe_table_and_json():
    result = run_cli("describe", "mnist_cnn", "--input-shape", "28", "28", "1", "--num-classes", "10", check=True)
    assert "block1_conv (Conv2D)" in result.stdout and "Total params: 93,322" in result.stdout
    data = json.loads(
        run_cli(
            "describe",
            "alexnet",
            "--input-shape",
            "227",
            "227",
            "3",
            "--num-classes",
            "1000",
            "-o",
            "conv1_padding=0",
            "--json",
            check=True,
        ).stdout
    )
    assert set(data) == {"model", "params", "trainable_params", "macs", "macs_complete", "layers"}
    conv1 = next(l for l in data["layers"] if l["name"] == "block1_conv")
    assert conv1["output_shape"] == [55, 55, 96] and conv1["params"] == 34_944


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["describe", "resnet19"], "Received: name='resnet19'"),
        (["describe", "vgg11", "--input-shape", "16", "16", "3"], "at least 32"),
        (["describe", "mnist_cnn", "--num-classes", "1"], "Received: num_classes=1"),
        (["describe", "mnist_cnn", "--input-shape", "28", "28", "0"], "Received: input_shape=(28, 28, 0)"),
        (["describe", "mnist_cnn", "--input-shape", "28", "28"], "--input-shape"),
        (["describe", "mnist_cnn", "--input-shape", "a", "28", "1"], "invalid int value: 'a'"),
        (["describe", "mnist_cnn", "-o", "widht=2"], "Received: widht=2"),
        (["describe", "mnist_cnn", "-o", "dropout"], "expected KEY=VALUE"),
        (["describe"], "arguments are required: NAME"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, fragment):
    assert_usage_error(run_cli(*args), fragment)


def test_on_a_terminal_the_error_line_clears_a_half_drawn_progress_bar_first():
    code, raw = run_cli_in_terminal("train", "--epochs", "0")  # (after a Ctrl-C the bar is half drawn)
    assert code == 2 and "\r\x1b[Kkerascnn: error: `epochs` must be a positive integer" in raw, raw


@pytest.mark.parametrize("value", ["abc", "inf", "nan", "-5"])
@pytest.mark.parametrize("optimize", [False, True], ids=["", "python -O"])
def test_a_bad_tracking_timeout_fails_only_the_commands_that_ask_a_server_in_one_line(value, optimize):
    """(``inf`` made every command a traceback; under ``python -O`` the check was an assert, gone.)"""
    python = [*PY[:1], "-O", *PY[1:]] if optimize else PY
    env = dict(os.environ, KERASCNN_TRACKING_TIMEOUT=value)
    models = subprocess.run([*python, "models"], env=env, capture_output=True, text=True, timeout=120)
    assert models.returncode == 0, models.stderr[-2000:]  # no server: the setting is not read
    args = ["runs", "--tracking-uri", f"http://127.0.0.1:{free_port()}"]
    result = subprocess.run([*python, *args], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].endswith(f"Received: KERASCNN_TRACKING_TIMEOUT={value!r}")


def test_closed_streams_and_an_ascii_terminal_are_no_tracebacks(tracking_uri, tmp_path):
    """``>&-`` left sys.stdout None (a traceback, or exit 1 with nothing said); text an ASCII
    output cannot hold was a UnicodeEncodeError after the work was done."""
    from mlflow.tracking import MlflowClient

    closed = subprocess.run(
        ["bash", "-c", 'exec "$@" <&- >&- 2>&-', "-", *PY, "describe", "lenet5"], cwd=tmp_path, timeout=120
    )
    assert closed.returncode == 0
    client = MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment("théorie"), run_name="数字-é")
    client.set_terminated(run.info.run_id)
    env = {"PYTHONIOENCODING": "ascii"}
    listed = run_cli("runs", "--tracking-uri", tracking_uri, "--experiment", "théorie", env=env)
    assert listed.returncode == 0 and "\\u6570\\u5b57-\\xe9" in listed.stdout, listed.stderr[-2000:]


def test_a_full_disk_is_one_line_and_exit_1():
    """/dev/full: every write fails with ENOSPC, as on a full disk (it was a traceback)."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([*PY, "models"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "kerascnn: error: no space left on the device ([Errno 28] No space left on device)"
    ]
