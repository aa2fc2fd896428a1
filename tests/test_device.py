"""Precision, XLA, steps per execution and strategies: logged, and multi-worker training for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mlflow.tracking import MlflowClient

import kerascnn
from kerascnn import device
from tests.conftest import data_dir
from tests.test_dashboard import free_port


def test_device_options_are_applied_and_logged(tracking_uri, tmp_path, monkeypatch):
    data_dir()
    monkeypatch.chdir(tmp_path)
    result = kerascnn.train("lenet5", "mnist", epochs=1, train_samples=300, test_samples=100, precision="mixed",
                            jit=False, steps_per_execution=4, tracking_uri=tracking_uri, verbose=0)  # fmt: skip
    params = MlflowClient(tracking_uri).get_run(result.run_id).data.params
    assert params["precision"] == "mixed" and params["dtype_policy"] == "mixed_bfloat16"
    assert params["jit_compile"] == "False" and params["steps_per_execution"] == "4"
    assert params["strategy"] == "auto" and params["replicas"] == "1"
    model = result.model
    assert model.get_layer("block1_conv").compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32"  # the output stays float32
    assert model.jit_compile is False
    float32 = kerascnn.train("lenet5", "mnist", epochs=1, train_samples=300, test_samples=100, precision="float32",
                             tracking=False, verbose=0)  # fmt: skip
    assert float32.model.get_layer("block1_conv").compute_dtype == "float32"


def test_auto_choices_follow_the_device():
    # "auto": XLA only on GPUs (measured slower on CPU); mixed = float16 on GPU, bfloat16 on CPU
    on_gpu = bool(device.gpus())
    assert device.resolve_jit("auto") is on_gpu and device.resolve_jit(True) is True
    assert device.policy_name("mixed") == ("mixed_float16" if on_gpu else "mixed_bfloat16")
    assert device.describe_devices().startswith("GPU x" if on_gpu else "CPU")


def test_two_workers_train_together_and_only_the_chief_tracks(tracking_uri, tmp_path):
    data_dir()
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    cmd = [sys.executable, "-m", "kerascnn", "train", "mnist_cnn", "--dataset", "mnist", "--strategy", "multiworker",
           "--epochs", "1", "--train-samples", "1024", "--test-samples", "256", "--tracking-uri", tracking_uri,
           "--json"]  # fmt: skip
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster,
                                                                          "task": {"type": "worker", "index": i}})))
             for i in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    chief, other = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    assert chief["run_id"] and other["run_id"] is None
    assert chief["test_accuracy"] == other["test_accuracy"]  # one model, trained together
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs] == [chief["run_id"]]
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.data.params["strategy"] == "multiworker" and run.data.params["replicas"] == "2"
    assert run.data.params["train_size"] == "922"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [0]
