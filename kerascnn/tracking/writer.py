"""The tracking writer: a child process that owns a store's MLflow client while a run trains.

Importing MLflow and opening a SQLite store cost seconds of Python that hold the GIL; in the
training process they would slow the steps around them. The writer does that work, and
every write of the runs, in its own process (GPU-less, in a session of its own, out of the
terminal's signals), on a core the training leaves idle or while the training process imports
TensorFlow. For ``train`` it warms up yielding (:class:`_Yielding`): at nice 19 while it has no
write to do, until it is warm, the run's end work is sent, or the training process waits for it.

The training process sends each op as a JSON line on the writer's stdin and returns at once;
the writer answers on its stdout, in order: ``{"ack": seq, "run_id": ...}`` once an op is
written (or spooled), ``{"say": text}`` for what it prints (shown on this process's
stderr). ``flush()`` waits for the acks. If the writer dies, or does not finish within the
store's flush timeout, the ops it did not acknowledge are spooled here, in order, and
``kerascnn sync`` sends them: nothing is lost. After a SIGKILL of the training process the
writer still writes what it was sent, then exits (the run stays RUNNING until resumed).

Run ``python -m kerascnn.tracking.writer URI`` is how it starts; it is not a user command.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from kerascnn import console
from kerascnn.tracking import store
from kerascnn.tracking.recorder import Op, Recorder, RunRef, plain, spool

# What a training run needs, imported by the writer while the training process imports TensorFlow and
# trains: MLflow's client and SQLite store first (the run's first writes: STORE), then what its end needs.
STORE = ("mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store", "alembic", "mlflow")
WARM = (
    *STORE,
    "tensorflow",
    "mlflow.keras",
    "mlflow.models",
    "mlflow.pyfunc",  # (MLflow imports it lazily, on the model's first log: ~0.03 s the test pass would share)
    "kerascnn.loading",
    "kerascnn.serving",
    "kerascnn.tracking.plots",
    "matplotlib.backends.backend_agg",  # (imported on the first savefig otherwise)
)
END_WORK = ("artifacts", "model", "register", "end")  # a run's end: what the training process waits for
MAX_IDLE = 2  # writers kept alive per process with no open run (a notebook going through stores)


class WriterProcess:
    """This process's end of one store's writer process: ``submit`` queues, ``flush`` waits.

    Example:
        >>> w = recorder("sqlite:////tmp/doc/mlflow.db")  # doctest: +SKIP
        >>> w.submit(Op("tags", run, {"tags": {"a": "1"}})); w.flush()  # doctest: +SKIP
        True
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.pid = os.getpid()  # a forked copy of this process needs its own writer
        self._cond = threading.Condition()
        self._pending: dict[int, Op] = {}  # sent, not acknowledged yet
        self._seq = 0
        self._open: set[str] = set()  # runs created or reopened and not ended
        self.lost: str | None = None  # why the writer is gone (ops are spooled here from then on)
        self._closing = False
        self._yielding = False
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        try:
            self._process: subprocess.Popen[bytes] | None = _spawn(uri)
        except OSError as e:  # no Python to start: every write goes to the spool, for `kerascnn sync`
            self._process, self.lost = None, f"could not start ({e})"
            return
        for target, name in ((self._send_loop, "send"), (self._read_loop, "read")):
            threading.Thread(target=target, name=f"kerascnn-writer-{name}", daemon=True).start()

    @property
    def idle(self) -> bool:
        """No write waiting and no run open."""
        with self._cond:
            return not self._pending and not self._open

    def submit(self, op: Op) -> None:
        """Sends ``op`` to the writer (spools it if the writer is gone); returns at once."""
        with self._cond:
            if op.kind in ("create", "reopen"):
                self._open.add(op.run.local_id)
            elif op.kind == "end":
                self._open.discard(op.run.local_id)
            if self.lost is not None:
                spool(op)
                return
            if op.kind in END_WORK:
                self._stop_yielding()
            self._seq += 1
            op.seq = self._seq
            self._pending[op.seq] = op
            message = {"seq": op.seq, "kind": op.kind, "run": op.run.to_wire(), "data": op.data}
            self._outbox.put(json.dumps(message, default=plain).encode() + b"\n")

    def warm(self, modules: tuple[str, ...] = WARM, yielding: bool = False) -> None:
        """Has the writer import ``modules`` now, in the background (what a run's end needs).
        ``yielding``: on the CPU time training leaves idle (see :class:`_Yielding`) until the
        imports are done, this process waits for the writer, or a run's end work is sent."""
        self._yielding = yielding
        self._outbox.put(json.dumps({"warm": list(modules), "yielding": yielding}).encode() + b"\n")

    def _stop_yielding(self) -> None:
        if self._yielding:
            self._yielding = False
            self._outbox.put(b'{"stop_yielding": true}\n')

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until the writer acknowledged every op sent so far; after ``timeout`` (the
        store's flush timeout by default) the rest is spooled here and ``False`` returned."""
        self._stop_yielding()
        wait = store.flush_timeout(self.uri) if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._cond:
            while self._pending and self.lost is None and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(min(left, 0.5))
            if not self._pending:
                return self.lost is None
        self._lose(f"did not finish its writes within {wait:.0f} s")
        return False

    def close(self) -> None:
        """Flushes, then lets the writer exit (it reads the end of its input)."""
        self.flush()
        self._closing = True
        self._outbox.put(None)

    def _lose(self, why: str) -> None:
        """The writer is gone or stuck: stop it, spool what it did not acknowledge, in order."""
        with self._cond:
            if self.lost is None:
                self.lost = why
                if self._process is not None:
                    with contextlib.suppress(OSError):
                        self._process.kill()
                console.say(
                    f"kerascnn: warning: the tracking writer {why}; the runs' writes go to the spool "
                    f"{store.home(self.uri) / 'spool'} from now on (`kerascnn sync` sends them)"
                )
            left = [self._pending.pop(seq) for seq in sorted(self._pending)]
            self._cond.notify_all()
            for op in left:
                spool(op)

    def _send_loop(self) -> None:
        assert self._process is not None
        stdin = self._process.stdin
        assert stdin is not None
        while (line := self._outbox.get()) is not None:
            try:
                stdin.write(line)
                stdin.flush()
            except (BrokenPipeError, OSError):
                return  # the read loop sees the writer's end and spools what is left
        with contextlib.suppress(OSError):
            stdin.close()

    @staticmethod
    def _forward(line: str) -> None:
        """A line the writer printed (``_Say`` sends whole lines), on this process's stderr and
        not glued onto a progress bar."""
        with contextlib.suppress(Exception):
            sys.stderr.write(console.line_start() + line)
            sys.stderr.flush()

    def _read_loop(self) -> None:
        assert self._process is not None
        stdout = self._process.stdout
        assert stdout is not None
        for raw in stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if "say" in message:
                self._forward(str(message["say"]))
            elif "ack" in message:
                self._acknowledged(message)
        if not self._closing:
            code = self._process.wait()
            self._lose(f"process ended unexpectedly (exit code {code})")

    def _acknowledged(self, message: dict[str, Any]) -> None:
        with self._cond:
            op = self._pending.pop(message["ack"], None)
            if op is not None:
                run = op.run
                run.run_id = message.get("run_id") or run.run_id
                run.artifact_uri = message.get("artifact_uri") or run.artifact_uri
                run.spooled = run.spooled or bool(message.get("spooled"))
                run.registered = message.get("registered") or run.registered
            self._cond.notify_all()


def _spawn(uri: str) -> subprocess.Popen[bytes]:
    """Starts ``python -m kerascnn.tracking.writer URI`` with this kit on its path and no GPU."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(
        os.environ,
        CUDA_VISIBLE_DEVICES="",  # it loads a model to log it: no GPU memory taken from training
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A session of its own: Ctrl-C and a closed terminal reach the training process only (which ends
    # its runs). With Linux's scheduler autogroups (one per session) that also gives the writer a fair
    # share of the CPU next to a busy training process, so the store keeps up with the epochs (a niced
    # writer in the training process's group lagged by whole trials under load; BENCHMARKS.md).
    return subprocess.Popen(
        [sys.executable, "-m", "kerascnn.tracking.writer", uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )


_writers: dict[str, WriterProcess] = {}
_registry = threading.Lock()


def recorder(uri: str) -> WriterProcess:
    """The writer of store ``uri`` for this process (started on first use; flushed at exit).

    Example:
        >>> recorder("sqlite:////tmp/doc/mlflow.db").flush()  # doctest: +SKIP
        True
    """
    with _registry:
        writer = _writers.get(uri)
        if writer is None or writer.pid != os.getpid() or (writer.lost is not None and writer.idle):
            writer = _writers[uri] = WriterProcess(uri)
            idle = [w for w in _writers.values() if w is not writer and w.idle]
            for old in idle[: max(0, len(idle) - MAX_IDLE + 1)]:  # the oldest first
                if old.pid == os.getpid():
                    old.close()
                del _writers[old.uri]
        return writer


@atexit.register
def _close_all() -> None:
    for writer in list(_writers.values()):
        if writer.pid == os.getpid():
            writer.close()


# -- the writer process ------------------------------------------------------------------------


class _Say:
    """``sys.stdout``/``sys.stderr`` of the writer: whole lines sent to the training process."""

    def __init__(self, send: Any) -> None:
        self._send, self._buffer = send, ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._send({"say": line + "\n"})
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _channel() -> Any:
    """A function that sends one message on the real stdout; fd 1 then points at stderr, so
    that nothing else can write into the channel."""
    out: IO[bytes] = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock, contextlib.suppress(OSError):  # the training process is gone: the writes go on
            out.write(json.dumps(message).encode() + b"\n")
            out.flush()

    return send


class _Yielding:
    """The writer's warm-up on the CPU time training leaves idle: from ``start()`` to ``stop()``,
    its scheduler autogroup (Linux; the writer leads a session of its own, so the group is the
    writer alone) runs at nice 19 whenever no write is waiting.

    A busy training process keeps every core; the warm-up (TensorFlow, to log the model at the
    run's end) then runs in the gaps between its steps instead of taking a core from them. A write
    sent meanwhile (the run's creation, an epoch's metrics) puts the group back at nice 0 until it
    is done: on a loaded machine, where nice 19 gets almost nothing, the store still follows the
    run (a writer niced for its whole warm-up did not), and no starved writer holds the SQLite lock
    that other runs' writers wait for (one niced for a 2-s grace did; BENCHMARKS.md). Linux lets
    a process put its own autogroup back to nice 0 (``sched(7)``), without privileges one change
    per 0.1 s system-wide, hence the retries. Without autogroups (another OS, or a writer not
    leading its session) nothing changes.
    """

    NICE = 19
    FILE = Path("/proc/self/autogroup")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._on = False
        self._writes = 0  # writes received and not done
        self._nice = 0
        self._retry: threading.Timer | None = None

    def start(self) -> None:
        with self._lock:
            self._on = self.FILE.exists() and os.getsid(0) == os.getpid()
            self._settle()

    def stop(self) -> None:
        with self._lock:
            self._on = False
            self._settle()

    def busy(self) -> None:
        """A write came in: the writer's full share until it is done."""
        with self._lock:
            self._writes += 1
            self._settle()

    def done(self) -> None:
        with self._lock:
            self._writes -= 1
            self._settle()

    def _settle(self) -> None:
        """Sets the nice value that the state asks for; nice 0 with retries, 19 once (then again
        in 0.15 s: another autogroup may have changed in the last 0.1 s)."""
        want = self.NICE if self._on and not self._writes else 0
        if want == self._nice:
            return
        for _ in range(40 if want == 0 else 1):
            try:
                self.FILE.write_text(str(want))
                self._nice = want
                return
            except BlockingIOError:
                time.sleep(0.05)
            except OSError:  # no autogroups here
                self._on = False
                return
        if want and self._retry is None:
            self._retry = threading.Timer(0.15, self._again)
            self._retry.daemon = True
            self._retry.start()

    def _again(self) -> None:
        with self._lock:
            self._retry = None
            self._settle()


def _warm(modules: list[str], then: Callable[[], None] | None = None) -> None:
    """Imports ``modules`` (TensorFlow quietly and on one thread), then calls ``then()``."""
    import importlib

    from kerascnn.device import collector_paused, import_tensorflow
    from kerascnn.tracking.writes import IMPORT_LOCK

    for name in modules:
        with IMPORT_LOCK, collector_paused(), contextlib.suppress(Exception):  # a failed import is retried where used
            if name == "tensorflow":
                tf = import_tensorflow()
                tf.config.threading.set_inter_op_parallelism_threads(1)
                tf.config.threading.set_intra_op_parallelism_threads(1)
            else:
                importlib.import_module(name)
    if then is not None:
        then()


def quiet_mlflow_logs() -> None:
    """MLflow's database errors in one line each: its store logs them with SQLAlchemy's traceback
    (~90 lines; the recorder says it in one line and spools), its system-metrics sampler with
    the SQL statement (a lock it gave up on). Filters, not levels: MLflow's logging set-up, on its
    import, resets its loggers' levels; its warnings stay, but one: the "Any type hint" note
    (in colour) that ``mlflow.pyfunc``'s import raises on its own agent schema and mutes by
    swapping ``warnings.showwarning``. In this threaded process a ``catch_warnings`` on another
    thread (the plots' save) can swap it back mid-import, and the note reached the command's
    stderr. A filter set before any thread starts is in every copy ``catch_warnings`` restores.

    Example:
        >>> quiet_mlflow_logs()  # doctest: +SKIP
    """
    logging.getLogger("mlflow.store.db.utils").addFilter(lambda record: not record.exc_info)
    logging.getLogger("mlflow.system_metrics.system_metrics_monitor").addFilter(_first_line)
    warnings.filterwarnings("ignore", message=r".*Any type hint is inferred as AnyType", category=UserWarning)


def _first_line(record: logging.LogRecord) -> bool:
    text = record.getMessage()
    if "\n" in text:
        record.msg, record.args = text.splitlines()[0], ()
    return True


def main(argv: list[str] | None = None) -> None:
    """The writer process: ops from stdin to the store, acks to stdout, until stdin ends."""
    uri = (argv or sys.argv[1:])[0]
    send = _channel()
    sys.stdout = sys.stderr = _Say(send)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from kerascnn.device import freeze_after_imports, import_without_keras_extras

    store.bound_http_retries()  # its writes give up on a dead server in seconds (then spool)
    quiet_mlflow_logs()
    import_without_keras_extras()  # it only loads and saves models: ~1.4 s less CPU beside training
    freeze_after_imports()  # the warm-up's ~500k objects are never scanned again

    yielding = _Yielding()

    def done(op: Op) -> None:
        run = op.run
        ack = {"ack": op.seq, "run_id": run.run_id, "artifact_uri": run.artifact_uri, "spooled": run.spooled}
        send(ack | ({"registered": run.registered} if run.registered else {}))
        yielding.done()

    writes = Recorder(uri, on_done=done)  # the store is opened by the first op: nothing is created before
    known: dict[str, RunRef] = {}
    for line in sys.stdin.buffer:
        message = json.loads(line)
        if "warm" in message:
            if message.get("yielding"):
                yielding.start()
            threading.Thread(target=_warm, args=(message["warm"], yielding.stop), daemon=True).start()
        elif "stop_yielding" in message:
            yielding.stop()
        else:
            run = RunRef.from_wire(uri, message["run"], known)
            yielding.busy()
            writes.submit(Op(message["kind"], run, message["data"], seq=message["seq"]))
    yielding.stop()
    writes.flush()  # every op sent, a new store's schema included, is done (or spooled)
    _release_standard_files()
    os._exit(0)  # no interpreter teardown (seconds with TensorFlow loaded); every write is done


def _release_standard_files() -> None:
    """Points fds 0-2 (the command's stderr, see ``_channel``) at ``/dev/null``: a reader of the
    command's stderr (``2>&1 | tee``, ``capture_output``) sees its end now, not once the kernel has
    freed this process's ~0.75 GB on exit (~45 ms later)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)


if __name__ == "__main__":
    main()
