"""`kerascnn models` and `kerascnn describe` as real subprocesses."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import PY, assert_usage_error, free_port, run_cli


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
        (["describe"], "name"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, fragment):
    assert_usage_error(run_cli(*args), fragment)


def test_a_bad_tracking_timeout_fails_only_the_commands_that_ask_a_server_in_one_line():
    bad = {"KERASCNN_TRACKING_TIMEOUT": "abc"}
    assert run_cli("models", env=bad).returncode == 0  # no server: the setting is not read
    result = run_cli("runs", "--tracking-uri", f"http://127.0.0.1:{free_port()}", env=bad)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].endswith("Received: KERASCNN_TRACKING_TIMEOUT='abc'")


def test_a_full_disk_is_one_line_and_exit_1():
    """/dev/full: every write fails with ENOSPC, as on a full disk (it was a traceback)."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([*PY, "models"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "kerascnn: error: no space left on the device ([Errno 28] No space left on device)"
    ]
