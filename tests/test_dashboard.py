"""`kerascnn ui`: a real MLflow server on the kit's store, loopback only, stopped cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from mlflow.tracking import MlflowClient

from kerascnn import servers, tracking
from kerascnn.tracking import dashboard
from tests.helpers import assert_usage_error, free_port, run_cli


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _group_listens(pid: int) -> set[tuple[str, int]]:
    root = psutil.Process(pid)
    pids = {pid} | {p.pid for p in root.children(recursive=True)}
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    }


def test_ui_serves_the_store_on_loopback_and_stops_cleanly(tracking_uri, tmp_path, spawn):
    experiment = tracking.ensure_experiment(tracking.resolve_tracking_uri(tracking_uri), "dash")
    run_id = MlflowClient(tracking_uri).create_run(experiment).info.run_id
    port = free_port()
    process = spawn(
        [
            sys.executable,
            "-m",
            "kerascnn",
            "ui",
            "--port",
            str(port),
            "--tracking-uri",
            tracking_uri,
            "--experiment",
            "dash",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                found = _get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=50")
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "dashboard did not answer within 90 s"
                time.sleep(0.5)
        assert "dash" in {e["name"] for e in found["experiments"]}
        runs = _get(f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/get?run_id={run_id}")
        assert runs["run"]["info"]["run_id"] == run_id
        listening = _group_listens(process.pid)
        assert listening and all(ip == "127.0.0.1" for ip, _ in listening), listening
        assert (("127.0.0.1", port)) in listening
        children = psutil.Process(process.pid).children(recursive=True)
        said = [process.stdout.readline()]  # the address; MLflow's lines; when it answered
        while said[-1] and not said[-1].startswith("kerascnn: ready") and len(said) < 50:
            said.append(process.stdout.readline())
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert re.fullmatch(r"kerascnn: ready after \d+\.\d s\n", said[-1]), said
    out = "".join(said) + out
    _, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"server processes left running: {alive}"
    assert f"; experiment 'dash': http://127.0.0.1:{port}/#/experiments/{experiment} (Ctrl-C stops it)" in out
    assert "kerascnn: warning" not in err


def test_loopback_detection_and_the_server_command():
    assert servers.is_loopback("127.0.0.1") and servers.is_loopback("::1") and servers.is_loopback("localhost")
    assert not servers.is_loopback("0.0.0.0") and not servers.is_loopback("192.168.1.4")
    command = dashboard.server_command("sqlite:////tmp/x/mlflow.db", "0.0.0.0", 5000)
    assert command[command.index("--host") + 1] == "0.0.0.0"


def test_ui_warning_is_printed_for_a_public_bind(tracking_uri, spawn):
    port = free_port()
    process = spawn(
        [
            sys.executable,
            "-m",
            "kerascnn",
            "ui",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--tracking-uri",
            tracking_uri,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = ""
        for _ in range(50):  # MLflow logs its own lines (store creation) around ours
            line = process.stderr.readline()
            if line.startswith("kerascnn:") or not line:
                break
        page = process.stdout.readline()  # printed after the warning
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=30)
    assert "warning" in line and "0.0.0.0" in line and "no authentication" in line
    assert "; no experiment 'kerascnn' yet, every experiment: http://" in page, page  # (a fresh store)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["ui", "--port", "0"], "Received: port=0"),
        (["ui", "--port", "70000"], "Received: port=70000"),
        (["ui", "--host", ""], "Received: host=''"),
        (["ui", "--tracking-uri", "ftp://example.com/store"], "unsupported scheme 'ftp'"),
        (["ui", "--tracking-uri", "./mlruns"], "refuses file stores"),
    ],
)
def test_ui_bad_arguments(args, fragment):
    assert_usage_error(run_cli(*args), fragment)
