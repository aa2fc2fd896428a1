"""KerasTuner's chief/worker mode, read from its environment variables.

``KERASTUNER_TUNER_ID`` (``chief``, ``tuner0``, ``tuner1``, ...),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` as KerasTuner defines
them; this module only checks them and says which role this process has.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerascnn import console
from kerascnn.errors import ArgumentError

ENV_ID, ENV_IP, ENV_PORT = "KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"
PATIENCE = 10.0  # seconds a worker waits for an answer of the chief before it says so
STATUS_EVERY = 60.0  # seconds between the chief's lines while no trial ends


def role() -> str:
    """``"local"``, ``"chief"`` or ``"worker"``; bad values raise ``ValueError``.

    Example:
        >>> role()  # with none of the variables set
        'local'
    """
    ip = os.environ.get(ENV_IP)
    if ip is None and os.environ.get(ENV_PORT) is not None:  # (it ran a local search, its trials named by the id)
        raise ArgumentError(f"`{ENV_IP}` is needed beside {ENV_PORT}: the chief's address. Received: {ENV_IP}=None")
    if ip is None:
        return "local"
    if not ip.strip():
        raise ArgumentError(f"`{ENV_IP}` must be the chief's address. Received: {ENV_IP}={ip!r}")
    port = os.environ.get(ENV_PORT, "")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ArgumentError(f"`{ENV_PORT}` must be a port number (1-65535). Received: {ENV_PORT}={port!r}")
    tuner_id = os.environ.get(ENV_ID, "")
    if not tuner_id.strip() or any(c.isspace() or c in "/\\" for c in tuner_id):
        raise ArgumentError(f"`{ENV_ID}` must be 'chief' or a worker id like 'tuner0'. Received: {ENV_ID}={tuner_id!r}")
    return "chief" if "chief" in tuner_id else "worker"


def joining_line() -> str:
    """What a worker says before it waits for the chief's oracle (KerasTuner's client blocks until
    the chief answers).

    Example:
        >>> joining_line()  # doctest: +SKIP
        "kerascnn: worker tuner0 joins the chief's search at 10.0.0.5:8000 (waiting until the chief answers)"
    """
    return (
        f"kerascnn: worker {os.environ.get(ENV_ID)} joins the chief's search at {_chief()} (waiting until the chief "
        "answers)"
    )


def serving_line() -> str:
    """What the chief says before it serves the search's oracle (KerasTuner's chief runs no trial
    itself and blocks until the workers have run them all).

    Example:
        >>> serving_line()  # doctest: +SKIP
        "kerascnn: chief serves the search at 10.0.0.5:8000; workers (KERASTUNER_TUNER_ID=tuner0, tuner1, ...) ..."
    """
    return (
        f"kerascnn: chief serves the search at {_chief()}; workers "
        f"(the same command with {ENV_ID}=tuner0, tuner1, ...) run its trials, and it waits until they are done"
    )


def _nobody_listens() -> str:
    """``" (nothing listens at that address: ...)"`` when the chief's port refuses a connection (its
    process is gone, or the address is not its), else nothing (busy: gRPC waits for it either way)."""
    try:
        with socket.create_connection((os.environ.get(ENV_IP, ""), int(os.environ.get(ENV_PORT, "0"))), timeout=2):
            return ""
    except (OSError, ValueError) as e:
        return f" (nothing listens at that address: {getattr(e, 'strerror', None) or e}; is the chief running, there?)"


def _chief() -> str:
    """The chief's ``IP:PORT``, from KerasTuner's variables."""
    return f"{os.environ.get(ENV_IP)}:{os.environ.get(ENV_PORT)}"


def watch_chief(oracle: Any) -> None:
    """Makes a worker say when the chief leaves a request unanswered for :data:`PATIENCE` s (not
    started yet, busy, or gone: KerasTuner's client waits up to an hour, silently), and when it
    answers after that. ``oracle``: a worker tuner's ``OracleClient``."""
    oracle.stub = _WatchedStub(oracle.stub)


class _WatchedStub:
    """KerasTuner's gRPC stub to the chief, its calls timed by one watcher thread (a worker waiting
    for a Hyperband round asks the chief in a tight loop: no thread per call)."""

    def __init__(self, stub: Any) -> None:
        self._stub = stub
        self._sent: float | None = None  # when the call waiting for its answer was sent
        self._said = False  # that call's wait was said
        self._where = f"kerascnn: worker {os.environ.get(ENV_ID)}: the chief at {_chief()}"
        threading.Thread(target=self._watch, name="kerascnn-chief-watch", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            sent = self._sent
            if sent is not None and not self._said and time.monotonic() - sent > PATIENCE:
                self._said = True
                console.say(
                    f"{self._where} has not answered for {PATIENCE:.0f} s{_nobody_listens()}; waiting for it "
                    "(up to an hour, KerasTuner's limit; Ctrl-C stops this worker)"
                )

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._stub, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            self._said, self._sent = False, time.monotonic()
            try:
                answer = call(*args, **kwargs)
            finally:
                self._sent = None
            if self._said:
                console.say(f"{self._where} answered")
            return answer

        return watched


def held_trials(folder: Path) -> dict[str, str]:
    """The trials the workers held (worker id -> trial id) when the chief of the search in
    ``folder`` last saved its oracle; read before KerasTuner reloads it (and forgets who held them)."""
    try:
        held = json.loads((folder / "oracle.json").read_text()).get("ongoing_trials", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in held.items()} if isinstance(held, dict) else {}


def watch_workers(oracle: Any, held: dict[str, str]) -> Callable[[], None]:
    """The chief's side (``oracle``: its KerasTuner oracle, served to the workers):

    * the trials its workers ``held`` when it stopped go back to them: KerasTuner's reload queues
      them for any worker, as for a lone search that ran them itself, and a second worker would
      run a trial the first still trains (or has finished);
    * every :data:`STATUS_EVERY` s in which no trial ended (then twice as long, and so on), one line
      on stderr with the trials it waits for, their workers and since when (KerasTuner's chief waits
      silently, and forever, for a worker that died: it holds its trial until that worker asks again).

    Returns what stops the lines (once the search is over).
    """
    for tuner_id, trial_id in held.items():
        if trial_id in oracle._retry_queue and trial_id in oracle.trials:  # (KerasTuner's own, private)
            oracle._retry_queue.remove(trial_id)
            oracle.ongoing_trials[tuner_id] = oracle.trials[trial_id]
    started: dict[str, float] = {}  # trial id -> when a worker took it in this session
    last = [time.monotonic()]  # when a trial last ended (or the chief started)
    create, end = oracle.create_trial, oracle.end_trial

    def create_trial(tuner_id: str) -> Any:
        trial = create(tuner_id)
        if trial.status == "RUNNING":
            started.setdefault(trial.trial_id, time.monotonic())
        return trial

    def end_trial(trial: Any) -> None:
        end(trial)
        started.pop(trial.trial_id, None)
        last[0] = time.monotonic()

    stopped = threading.Event()

    def status() -> None:
        quiet = STATUS_EVERY  # (said after this long without a trial's end; doubled after each line)
        while not stopped.wait(STATUS_EVERY):
            now = time.monotonic()
            if now - last[0] < STATUS_EVERY:
                quiet = STATUS_EVERY
            ongoing = dict(oracle.ongoing_trials)
            if ongoing and now - last[0] >= quiet:
                quiet *= 2
                console.say(
                    f"kerascnn: chief: waiting for workers: {_held(ongoing, started, now)}; no trial "
                    f"ended for {_duration(now - last[0])} (a worker that died keeps its trial: start it again "
                    f"with the same {ENV_ID})"
                )

    oracle.create_trial, oracle.end_trial = create_trial, end_trial
    threading.Thread(target=status, name="kerascnn-workers-watch", daemon=True).start()
    return stopped.set


def _held(ongoing: dict[str, Any], started: dict[str, float], now: float) -> str:
    """``trial 3 on tuner0 for 1m05s, ...`` (or since before the chief started)."""
    return ", ".join(
        f"trial {trial.trial_id} on {tuner_id} "
        + (
            f"for {_duration(now - since)}"
            if (since := started.get(trial.trial_id))
            else "(since before the chief started)"
        )
        for tuner_id, trial in ongoing.items()
    )


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
