"""Shared fixtures: offline data, quiet TensorFlow, temp MLflow stores (helpers in tests/helpers.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kerascnn.device import import_tensorflow
from tests.helpers import ROOT, data_dir

SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERASCNN_TRACKING_TIMEOUT", "5")  # a dead store is given up on quickly in tests
if "KERASCNN_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["KERASCNN_DATA_DIR"] = str(SHARED_DATA)

# TensorFlow imported by the kit, before any test module imports Keras: quietly, and with the kit's
# oneDNN choice, as in the CLI and in a notebook that uses kerascnn before Keras.
import_tensorflow()


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh SQLite MLflow store in a temp dir (artifacts beside it)."""
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """``subprocess.Popen`` whose processes, and theirs, are killed when the test ends (a failed
    wait or assertion leaves no training running beside the rest of the suite)."""
    import psutil

    started: list[subprocess.Popen] = []

    def start(*args: Any, **kwargs: Any) -> subprocess.Popen:
        started.append(subprocess.Popen(*args, **kwargs))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            process.kill()
        process.wait()


@pytest.fixture
def in_a_scratch_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The test runs in its own temp folder (nothing lands in the repository's ``mlruns/``; a
    default store or spool is the test's own), with the offline data checked to be there."""
    data_dir()
    monkeypatch.chdir(tmp_path)
