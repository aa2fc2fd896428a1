"""Shared fixtures: offline data, quiet TensorFlow, temp MLflow stores, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "KERASCNN_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["KERASCNN_DATA_DIR"] = str(SHARED_DATA)


def data_dir() -> Path:
    """The offline dataset folder the suite reads MNIST from."""
    path = os.environ.get("KERASCNN_DATA_DIR")
    if not path or not (Path(path) / "mnist.npz").is_file():
        pytest.fail("tests need KERASCNN_DATA_DIR with mnist.npz (../shared/data on this machine)")
    return Path(path)


def run_cli(*args: str, cwd: Path | str | None = None, env: dict | None = None,
            timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
    """Runs ``python -m kerascnn ARGS`` as a real subprocess and returns the result."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    result = subprocess.run(
        [sys.executable, "-m", "kerascnn", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"kerascnn {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def assert_usage_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, exactly one line on stderr, no traceback, and the fragments in it."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("kerascnn: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh SQLite MLflow store in a temp dir (artifacts beside it)."""
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
