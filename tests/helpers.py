"""Helpers shared by the test files: the CLI as a subprocess, stores, waiting, a real MLflow server."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m", "kerascnn"]


def data_dir() -> Path:
    """The offline dataset folder the suite reads MNIST from."""
    path = os.environ.get("KERASCNN_DATA_DIR")
    if not path or not (Path(path) / "mnist.npz").is_file():
        pytest.fail("tests need KERASCNN_DATA_DIR with mnist.npz (../shared/data on this machine)")
    return Path(path)


def run_cli(
    *args: str, cwd: Path | str | None = None, env: dict | None = None, timeout: float = 600, check: bool = False
) -> subprocess.CompletedProcess:
    """Runs ``python -m kerascnn ARGS`` as a real subprocess and returns the result."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    result = subprocess.run([*PY, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"kerascnn {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def run_cli_in_terminal(
    *args: str, cwd: Path | str | None = None, timeout: float = 600, columns: int = 120
) -> tuple[int, str]:
    """Runs ``python -m kerascnn ARGS`` with stdout and stderr on a pseudo-terminal ``columns``
    wide, as at a user's terminal; returns the exit code and everything written, raw (``\\r``, escapes)."""
    import pty
    import select

    main, side = pty.openpty()
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS=str(columns), TERM="xterm")
    process = subprocess.Popen([*PY, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=side, stderr=side)
    os.close(side)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([main], [], [], left)[0]:
                break  # timed out: the wait below fails
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed its side: everything is read
                break
            if not chunk:
                break
            chunks.append(chunk)
        return process.wait(timeout=max(1.0, deadline - time.monotonic())), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(main)
        if process.poll() is None:
            process.kill()
            process.wait()


def shown_lines(raw: str) -> list[str]:
    """What a terminal shows of ``raw``: each line from its last carriage return (the terminal's own
    ``\\r\\n`` aside), escapes and backspaces removed."""
    shown = (line.rstrip("\r").rsplit("\r", 1)[-1] for line in raw.split("\n"))
    return [re.sub(r"\x1b\[[0-9;]*[A-Za-z]|\x08", "", line) for line in shown]


def assert_usage_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, exactly one line on stderr, no traceback, and the fragments in it."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("kerascnn: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def all_runs(uri: str) -> list[Any]:
    """Every run of a store, oldest first (none when a SQLite store does not exist yet)."""
    from kerascnn.tracking import store

    db = store.sqlite_path(uri)
    if db is not None and not db.exists():
        return []
    client = store.client(uri)  # takes the store lock: a subprocess may be creating the schema right now
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, order_by=["attributes.start_time ASC"], max_results=1000) if ids else []


def child_runs(uri: str, parent: str) -> list[Any]:
    return [r for r in all_runs(uri) if r.data.tags.get("mlflow.parentRunId") == parent]


def first_epoch_logged(uri: str) -> bool:
    """Whether the first run of the store has logged an epoch's loss."""
    runs = all_runs(uri)
    return bool(runs) and bool(metric_steps(uri, runs[0].info.run_id, "loss"))


def metric_steps(uri: str, run_id: str, key: str) -> list[int]:
    from kerascnn.tracking import store

    return [m.step for m in store.client(uri).get_metric_history(run_id, key)]


def wait_for(
    condition: Callable[[], Any], timeout: float, process: subprocess.Popen | None = None, what: str = ""
) -> None:
    """Polls ``condition`` until it holds; fails if ``process`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process ended ({process.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def module_for_children(monkeypatch: pytest.MonkeyPatch, folder: Path, name: str, source: str) -> None:
    """Puts module ``name`` (``source``) first on the path of every process started from now on
    (the tracking writer among them), for the rest of the test."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))


def writer_of(process: subprocess.Popen) -> Any:
    """The tracking writer the CLI process started (its one ``kerascnn.tracking.writer`` child)."""
    import psutil

    found: list[psutil.Process] = []

    def started() -> bool:
        found[:] = [
            c for c in psutil.Process(process.pid).children() if "kerascnn.tracking.writer" in " ".join(c.cmdline())
        ]
        return bool(found)

    wait_for(started, 120, process, "the tracking writer")
    assert len(found) == 1, found
    return found[0]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, proxied artifacts) that can be
    stopped and started again on the same port and store."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        command = [
            str(mlflow_cli),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'server.db'}",
            "--artifacts-destination",
            (self.root / "server-artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_for(lambda: _answers(f"{self.uri}/health"), timeout, self.process, "the MLflow server")

    def stop(self) -> None:
        """Kills the server (and its workers) as a crash would: no goodbye."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[MlflowServer]:
    """An :class:`MlflowServer`, started, and stopped in a ``finally``."""
    server = MlflowServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def make_image_folder(root: Path, classes=("cat", "dog", "fox"), per_class=6, size=(20, 24), channels=3) -> Path:
    """Writes small random PNGs, one sub-folder per class."""
    import keras

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
            keras.utils.save_img(root / c / f"{i}.png", img, scale=False)
    return root


@contextlib.contextmanager
def read_only(monkeypatch: pytest.MonkeyPatch, db: Path) -> Iterator[None]:
    """A SQLite store file (if it exists) and its folder made read-only for the block (restored
    after). Root may write anyway: as root they are made immutable (``chattr +i``, which binds
    root too) where the file system allows it, and elsewhere ``os.access`` answers for these two
    from their permission bits."""
    existed = db.exists()
    paths = [db, db.parent] if existed else [db.parent]
    if existed:
        db.chmod(0o444)
    db.parent.chmod(0o555)
    if os.geteuid() == 0 and not _immutable(paths, True):  # (after chmod: an immutable file's bits are fixed)
        access_by_bits(monkeypatch, {db.resolve(), db.parent.resolve()})
    try:
        yield
    finally:
        if os.geteuid() == 0:
            _immutable(paths, False)
        db.parent.chmod(0o755)
        if existed:
            db.chmod(0o644)


def _immutable(paths: list[Path], on: bool) -> bool:
    """``chattr +i`` (or ``-i``) on ``paths``; whether it took (not on every file system)."""
    try:
        flag = "+i" if on else "-i"
        return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True).returncode == 0
    except OSError:  # no chattr here
        return False


def access_by_bits(monkeypatch: pytest.MonkeyPatch, guarded: set[Path]) -> None:
    """``os.access`` for ``guarded`` as their permission bits say, also for root."""
    import stat

    access = os.access
    bits = {os.R_OK: stat.S_IRUSR, os.W_OK: stat.S_IWUSR, os.X_OK: stat.S_IXUSR}

    def as_the_bits_say(path: Any, mode: int, **kwargs: Any) -> bool:
        if Path(path).resolve() not in guarded or not os.path.exists(path):
            return access(path, mode, **kwargs)
        kept = os.stat(path).st_mode
        return access(path, mode, **kwargs) and all(kept & b for m, b in bits.items() if mode & m)

    monkeypatch.setattr(os, "access", as_the_bits_say)
