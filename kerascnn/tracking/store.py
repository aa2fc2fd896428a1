"""Where runs go: the tracking URI, the MLflow client, experiments, locks and bounded retries.

Reads (finding a run to resume, the leaderboard) call the store directly; writes go
through the :mod:`~kerascnn.tracking.recorder`, off the training thread. A server is asked
``GET /health`` (a few seconds at most) before its first use in a process. In the processes
the kit owns (the CLI, the tracking writer) every call is bounded in time: MLflow's own HTTP
retries are capped by ``KERASCNN_TRACKING_TIMEOUT`` (seconds, default 10) unless
``MLFLOW_HTTP_REQUEST_*`` are set; a notebook's process keeps MLflow's settings. The kit
retries only SQLite's "database is locked".
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import math
import os
import random
import re
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from kerascnn import checks, console
from kerascnn.config import DEFAULT_EXPERIMENT
from kerascnn.errors import ArgumentError

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
TIMEOUT_ENV = "KERASCNN_TRACKING_TIMEOUT"
CACHE_ENV = "KERASCNN_CACHE_DIR"
DEFAULT_TIMEOUT_S = 10.0
RUN_ID = re.compile(r"[0-9a-fA-F]{4,32}")  # a run id, or a unique prefix of one (the tables print 12)
_REMOTE_SCHEMES = {"http", "https", "databricks", "postgresql", "mysql", "mssql"}
T = TypeVar("T")

__all__ = ["DEFAULT_EXPERIMENT", "DEFAULT_TRACKING_URI", "client", "ensure_experiment", "resolve_tracking_uri"]


def resolve_tracking_uri(uri: str | None = None, *, write: bool = True) -> str:
    """The store to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``.

    SQLite paths are made absolute (relative ones are taken from the working directory)
    and checked for writability, or, with ``write=False`` (a command that only reads), for
    readability only (a file that does not exist is not checked); nothing is created here. File stores (``./mlruns``,
    ``file:``) are refused: MLflow >= 3.13 no longer accepts them.

    Example:
        >>> resolve_tracking_uri("sqlite:////tmp/x/mlflow.db")
        'sqlite:////tmp/x/mlflow.db'
    """
    source = "tracking_uri"
    if uri is None:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
        source = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else source
    if not isinstance(uri, str) or not uri.strip():
        raise ArgumentError(f"`{source}` must be an MLflow tracking URI. Received: {source}={uri!r}")
    scheme = urlparse(uri).scheme.split("+")[0]
    if uri.split(":")[0] in ("databricks", "databricks-uc"):  # ("databricks" alone: no "://")
        scheme = uri.split(":")[0]
    if scheme == "sqlite":
        return _resolve_sqlite(uri, source, write)
    if scheme in _REMOTE_SCHEMES:
        return uri.rstrip("/")
    if scheme in ("", "file"):
        raise ArgumentError(
            "MLflow >= 3.13 refuses file stores; use a database such as sqlite:///mlruns/mlflow.db "
            f"or a server URL. Received: {source}={uri!r}"
        )
    raise ArgumentError(
        f"`{source}` has an unsupported scheme {scheme!r} (use sqlite:///..., http(s)://..., "
        f"postgresql://..., mysql://...). Received: {source}={uri!r}"
    )


SQLITE_MAX_PATHNAME = 512  # bytes in a file's path that SQLite's unix VFS opens (MAX_PATHNAME)


def _resolve_sqlite(uri: str, source: str, write: bool) -> str:
    if not uri.startswith("sqlite:///") or uri == "sqlite:///":
        raise ArgumentError(f"`{source}` must look like sqlite:///path/to/mlflow.db. Received: {source}={uri!r}")
    if uri.partition("?")[0] in ("sqlite:///:memory:", "sqlite:///file::memory:"):
        raise ArgumentError(
            f"`{source}` must name a database file: an in-memory store loses every run when the command ends "
            f"(and its writer is another process). Received: {source}={uri!r}"
        )
    try:
        path = Path(uri[len("sqlite:///") :]).expanduser()
    except RuntimeError as e:  # ~nobody/..., or no home to expand ~ to
        raise ArgumentError(
            f"`{source}` names a path that cannot be expanded ({e}). Received: {source}={uri!r}"
        ) from None
    path = _without_dots(path if path.is_absolute() else Path.cwd() / path)
    if path.is_dir():
        raise ArgumentError(f"`{source}` names a folder, not a database file. Received: {source}={uri!r}")
    # (the path as given and as resolved, each with its journal's suffix; MLflow would retry it for ~100 s)
    longest = max(len(os.fsencode(p)) for p in (str(path), os.path.realpath(path))) + len("-journal")
    if longest > SQLITE_MAX_PATHNAME:
        raise ArgumentError(
            f"The store file's path is too long for SQLite ({longest - len('-journal')} bytes; with its journal's "
            f"suffix, -journal, it must fit in {SQLITE_MAX_PATHNAME}). Received: {source}={uri!r}"
        )
    if path.is_symlink() and not path.exists():  # (MLflow would retry opening it for ~100 s)
        raise ArgumentError(
            f"The store file is a link to {os.readlink(path)}, which does not exist (a share not mounted?). "
            f"Received: {source}={uri!r}"
        )
    if not write and path.is_file():  # a store someone else writes (read-only here) can still be read
        if not os.access(path, os.R_OK):
            raise ArgumentError(f"The store file is not readable. Received: {source}={uri!r}")
        return f"sqlite:///{path}"
    if not write and not path.exists():  # nothing to read, and reading creates nothing
        return f"sqlite:///{path}"
    existing = checks.nearest_existing(path.parent)
    if not checks.can_create_in(existing):
        raise ArgumentError(f"The store's folder cannot be created or written ({existing}). Received: {source}={uri!r}")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ArgumentError(f"The store file is not readable and writable. Received: {source}={uri!r}")
    return f"sqlite:///{path}"


def same_store(uri: str) -> str:
    """``uri`` as :func:`resolve_tracking_uri` gives it now, for one recorded by an older kit
    (a SQLite path with ``..`` in it); any other URI as it is.

    Example:
        >>> same_store("sqlite:////work/notebooks/../mlruns/mlflow.db")
        'sqlite:////work/mlruns/mlflow.db'
    """
    path = sqlite_path(uri)
    return f"sqlite:///{_without_dots(path)}" if path is not None and path.is_absolute() else uri


def _without_dots(path: Path) -> Path:
    """An absolute ``path`` with its ``..`` taken as the file system does (through symlinks):
    the folder resolved, the file name kept. Paths without ``..`` are left as they are."""
    return path.parent.resolve() / path.name if ".." in path.parts else path


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else ``None``."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def not_made(uri: str) -> bool:
    """Whether ``uri`` is a SQLite store whose file does not exist yet (reading one never makes it);
    ``False`` for a server.

    Example:
        >>> not_made("sqlite:////tmp/kerascnn-doc-nowhere/mlflow.db"), not_made("http://127.0.0.1:5000")
        (True, False)
    """
    db = sqlite_path(uri)
    return db is not None and not db.exists()


def home(uri: str) -> Path:
    """The local folder of a store's side files (backups, spool): beside a SQLite file,
    ``./mlruns`` for a server.

    Example:
        >>> home("sqlite:////tmp/x/mlflow.db")
        PosixPath('/tmp/x')
    """
    db = sqlite_path(uri)
    return db.parent if db else Path("mlruns").resolve()


def timeout_s() -> float:
    """How long one tracking call may take before it gives up (``KERASCNN_TRACKING_TIMEOUT``)."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:  # (nan too)
        raise ArgumentError(f"`{TIMEOUT_ENV}` must be a number of seconds > 0. Received: {TIMEOUT_ENV}={raw!r}")
    return value


def flush_timeout(uri: str) -> float:
    """How long the end of a run waits for its queued writes before spooling the rest: a local
    SQLite file is slow only when busy (waited for), a server may be gone (bounded)."""
    return LOCK_PATIENCE_S if sqlite_path(uri) is not None else 3 * timeout_s()


def bound_http_retries() -> None:
    """Caps MLflow's HTTP retries (7 retries with exponential back-off, 120-s timeouts by
    default: ~10 minutes against a dead server) to about ``timeout_s()`` per call, unless
    the user set ``MLFLOW_HTTP_REQUEST_*`` themselves. MLflow reads them per request from the
    environment, so only processes the kit owns (the CLI, the tracking writer) call this."""
    try:
        budget = timeout_s()  # retries wait 0 s, then 2 s; each attempt may take a third of the budget
    except ArgumentError:
        return  # (a bad KERASCNN_TRACKING_TIMEOUT is one line where a store is used, not at every start)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2" if budget >= 6 else "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # MLflow wants an integer here
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(budget / 3))))  # and here


class StoreUnavailable(ArgumentError):
    """The store cannot be opened or read now (a server that does not answer, a file that is no
    database); what waits in its spool can still be listed."""


def probe(uri: str, *, offline_hint: bool = False, experiment: str | None = None) -> None:
    """Refuses a store that cannot work, cheaply (no MLflow import): a server that does not
    answer ``GET /health``, a SQLite path holding something else than a database, and with
    ``experiment``, an experiment of that name that is deleted (its runs could not be written).
    With ``offline_hint`` (training, which can spool), the error suggests ``offline=True`` (``--offline``).

    Raises:
        ArgumentError: The store is unreachable or not a store, or the experiment is deleted.
    """
    db = sqlite_path(uri)
    if db is not None and db.is_file() and db.stat().st_size and not _is_sqlite(db):
        raise StoreUnavailable(
            f"Cannot open the MLflow store (not an SQLite database file). Received: tracking_uri={uri!r}"
        )
    scheme = urlparse(uri).scheme
    if scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        _check_sql_driver(uri)
    if scheme not in ("http", "https"):
        if db is not None and experiment is not None and _stage_in_sqlite(db, experiment) == "deleted":
            raise _deleted(experiment)
        return
    from urllib.request import urlopen  # (here: ~15 ms that every CLI start, which imports this module, need not pay)

    try:
        with urlopen(f"{uri}/health", timeout=min(5.0, timeout_s())) as response:
            response.read(64)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        hint = ", or train with offline=True (--offline) to spool the run and `kerascnn sync` it later"
        hint = hint if offline_hint else ""
        raise StoreUnavailable(
            f"The tracking server does not answer ({reason}); start it{hint}. Received: tracking_uri={uri!r}"
        ) from None
    if experiment is not None and _stage_on_server(uri, experiment) == "deleted":
        raise _deleted(experiment)


def _check_sql_driver(uri: str) -> None:
    """Refuses a database URI whose SQLAlchemy driver is not installed: MLflow would fail on every
    write, which training takes for an outage (it spools, and ``sync`` fails as well)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError as SQLAlchemyArgumentError
    from sqlalchemy.exc import NoSuchModuleError

    try:
        url = make_url(uri)
    except (SQLAlchemyArgumentError, ValueError):  # (a port that is not a number: ValueError)
        shown = re.sub(r"(://[^:/@]*:)[^/]*@", r"\1***@", uri)  # (its password hidden, an @ in it too)
        raise StoreUnavailable(f"Not a database URL. Received: tracking_uri={shown!r}") from None
    try:
        url.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError) as e:
        raise StoreUnavailable(
            f"MLflow cannot open this database: its driver is missing ({e}); install it. "
            f"Received: tracking_uri={url.render_as_string(hide_password=True)!r}"
        ) from None


def _deleted(experiment: str) -> ArgumentError:
    return ArgumentError(
        "Experiment is deleted; restore it (mlflow experiments restore) or pick another "
        f"name. Received: experiment={experiment!r}"
    )


def _stage_in_sqlite(db: Path, experiment: str) -> str | None:
    """The experiment's lifecycle stage read from the database file (``None``: no such experiment
    or no answer; the writer then finds out)."""
    import sqlite3

    if not db.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=1.0)) as con:
            row = con.execute("SELECT lifecycle_stage FROM experiments WHERE name = ?", (experiment,)).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _stage_on_server(uri: str, experiment: str) -> str | None:
    """The experiment's lifecycle stage from MLflow's REST API (``None``: no such experiment or no answer)."""
    from urllib.request import urlopen

    query = urllib.parse.urlencode({"experiment_name": experiment})
    try:
        with urlopen(
            f"{uri}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=min(5.0, timeout_s())
        ) as response:
            return json.loads(response.read()).get("experiment", {}).get("lifecycle_stage")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def is_transient(error: BaseException) -> bool:
    """SQLite lock contention, and two writers logging the same dataset at once (MLflow checks,
    then inserts): worth retrying. (Dead servers are not: MLflow retried already.)"""
    text = str(error).lower()
    return any(
        s in text
        for s in (
            "database is locked",
            "database table is locked",
            "disk i/o error",
            "unique constraint failed: datasets",
        )
    )


LOCK_PATIENCE_S = 120.0  # many processes writing one SQLite file take turns; none gives up early


def retrying(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Calls ``fn``, retrying SQLite lock contention with jittered exponential backoff for up
    to ``LOCK_PATIENCE_S`` (writes run off the training thread, so waiting costs nothing).

    Example:
        >>> retrying(lambda: 42)
        42
    """
    deadline = time.monotonic() + LOCK_PATIENCE_S
    attempt = 0
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not is_transient(e) or time.monotonic() > deadline:
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
            attempt += 1


def lock_folder(folder: Path, *, wait: bool) -> int | None:
    """Takes an exclusive ``flock`` on ``folder`` itself (created if missing; no lock file is
    left behind) and returns the descriptor holding it: closing it releases the lock. With
    ``wait=False``, returns ``None`` when another process holds the lock.

    Example:
        >>> fd = lock_folder(Path("/tmp/kerascnn-lock-demo"), wait=True); os.close(fd)
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialises first-time set-up of a SQLite store across processes (a no-op for servers)."""
    db = sqlite_path(uri)
    fd = lock_folder(db.parent, wait=True) if db else None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


_GLOBAL_URI = threading.RLock()


@contextlib.contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI (what its fluent API, model logging and registry use) set to
    ``uri`` for the block, then put back as it was: a notebook's own MLflow setting stays.

    Example:
        >>> with global_tracking_uri("sqlite:////tmp/doc/mlflow.db"):  # doctest: +SKIP
        ...     mlflow.search_runs()
    """
    import mlflow

    with _GLOBAL_URI:  # one block at a time: another thread's could put the URI back under this one
        before = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(before)  # type: ignore[arg-type]  # None: unset again, as it was


@functools.lru_cache(maxsize=8)
def client(uri: str) -> Any:
    """The ``MlflowClient`` of ``uri`` (one per process and store).

    A new SQLite store is created under a file lock (MLflow migrates the schema without
    one, and processes creating the same store at once can leave it broken for good), as a
    copy of :func:`empty_store` where the cache allows.

    Raises:
        ArgumentError: The store cannot be opened (a corrupt file, a server that is down...).
    """
    if urlparse(uri).scheme in ("http", "https"):
        probe(uri)  # a server that does not answer fails in seconds, not after MLflow's retries
    for noisy in ("mlflow.store.db.utils", "alembic", "mlflow.system_metrics"):  # INFO chatter of every run
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from kerascnn.device import collector_paused

    with collector_paused():  # (MLflow's ~250k objects)
        from mlflow.tracking import MlflowClient

    try:
        with store_lock(uri):
            db = sqlite_path(uri)
            new = db if db is not None and not os.path.lexists(db) else None  # (a dangling link is not new)
            try:
                if new is not None:
                    _seed(new)
                c = retrying(MlflowClient, tracking_uri=uri)  # (MLflow reads the schema here: it may be locked)
                retrying(c.search_experiments, max_results=1)
            except BaseException:  # (an error, a full disk, Ctrl-C or SIGTERM during the migrations)
                if new is not None:  # half made: removed, or every later command would fail on it
                    _remove_store_file(new, uri)
                raise
    except Exception as e:
        first = console.shorten((str(e).strip().splitlines() or [type(e).__name__])[0], 300)
        raise StoreUnavailable(
            f"Cannot open the MLflow store ({type(e).__name__}: {first}). Received: tracking_uri={uri!r}"
        ) from None
    return c


def cache_dir() -> Path:
    """Where the kit keeps what it can rebuild: ``$KERASCNN_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/kerascnn``, else ``~/.cache/kerascnn``.

    Example:
        >>> cache_dir().name  # doctest: +SKIP
        'kerascnn'
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kerascnn"


def empty_store_path() -> Path:
    """Where :func:`empty_store` keeps the empty store of the installed MLflow."""
    import mlflow

    return cache_dir() / f"mlflow-{mlflow.__version__}-empty.db"


def empty_store() -> Path | None:
    """An SQLite file with MLflow's schema and no experiment yet, made once per MLflow version
    by MLflow's own migrations (``cache_dir()/mlflow-VERSION-empty.db``); ``None`` where the
    cache cannot be written. A new store copied from it skips the migrations (1-2 CPU-s).

    Example:
        >>> empty_store()  # doctest: +SKIP
        PosixPath('/home/me/.cache/kerascnn/mlflow-3.17.2-empty.db')
    """
    tmp = None
    try:
        path = empty_store_path()  # (a cache folder that cannot be resolved, ~nobody/x, is no cache)
        if path.is_file() and _is_sqlite(path):  # else made again: a damaged cache never spreads
            return path
        import sqlalchemy
        from mlflow.store.db import utils

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".empty-", suffix=".db")
        os.close(fd)
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
        try:
            utils._initialize_tables(engine)
            utils._verify_schema(engine)
        finally:
            engine.dispose()
        os.replace(tmp, path)  # whole or absent, whoever else is making it
        return path
    except Exception:  # a read-only home, an MLflow without these helpers: MLflow creates stores itself
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        return None


def _remove_store_file(db: Path, uri: str) -> None:
    """Removes the SQLite file ``db`` of ``uri`` and its journals (a store this process began and
    could not finish), and closes MLflow's connections to it: a later try makes the file again."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = getattr(SqlAlchemyStore, "_engine_map", {}).get(uri)  # (one engine per URI, kept by MLflow)
    if engine is not None:
        engine.dispose()
    if db.is_symlink() or not db.is_file():  # (only a file: never a link someone made, or a folder)
        return
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            db.with_name(db.name + suffix).unlink(missing_ok=True)


def _seed(db: Path) -> None:
    """Starts the new store ``db`` as a copy of :func:`empty_store`; MLflow adds its Default
    experiment when it opens it (located from the working folder, as for a store it makes).
    Never replaces a file: whatever appeared at ``db`` in the meantime is kept."""
    template = empty_store()
    if template is None:
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(template, tmp)
        os.link(tmp, db)  # fails if db exists
    except OSError:
        pass  # MLflow creates the store as usual
    finally:
        tmp.unlink(missing_ok=True)


def slug(name: str, default: str = "experiment") -> str:
    """``name`` as one safe file name: letters, digits, ``.``, ``_`` and ``-`` only.

    Example:
        >>> slug("../my run/2")
        'my_run_2'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or default


def ensure_experiment(uri: str, name: str) -> str:
    """Returns the id of experiment ``name``, creating it (artifacts beside a SQLite store).

    Example:
        >>> ensure_experiment("sqlite:////tmp/x/mlflow.db", "demo")  # doctest: +SKIP
        '1'
    """
    checks.non_empty("experiment", name, maximum=checks.MAX_EXPERIMENT_NAME)
    c = client(uri)
    found = retrying(c.get_experiment_by_name, name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise _deleted(name)
        return str(found.experiment_id)
    db = sqlite_path(uri)
    location = (db.parent / "artifacts" / slug(name)).as_uri() if db else None
    with store_lock(uri):  # SQLite: one creator at a time
        found = retrying(c.get_experiment_by_name, name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(retrying(c.create_experiment, name, artifact_location=location))
        except Exception as e:  # a server: another process created it first
            if "RESOURCE_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
                raise
            return str(retrying(c.get_experiment_by_name, name).experiment_id)


class NoSuchRun(ArgumentError):
    """No run has the id given (or one starting with it)."""


def check_run_id(run_id: Any, argument: str = "run_id") -> str:
    """Returns ``run_id`` if it is a run id or a prefix of one (4-32 hex digits); checked without the store.

    Example:
        >>> check_run_id("4f2a9c")
        '4f2a9c'
    """
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise ArgumentError(f"`{argument}` must be a run id (4-32 hex digits). Received: {argument}={run_id!r}")
    return run_id


def find_run(uri: str, run_id: str, argument: str = "run_id") -> Any:
    """The run whose id is ``run_id`` or starts with it (the 12-character ids the CLI prints).

    Raises:
        NoSuchRun: No run matches.
        ArgumentError: More than one run matches, or the run is deleted.
    """
    check_run_id(run_id, argument)
    c = client(uri)
    run_id = run_id.lower()  # (MLflow writes them in lower case)
    deleted = ArgumentError(
        "The run with an id starting with it is deleted, or its experiment is; restore it (mlflow runs "
        f"restore, mlflow experiments restore) to use it. Received: {argument}={run_id!r}"
    )
    if len(run_id) == 32:
        try:
            run = retrying(c.get_run, run_id)
        except Exception:
            raise NoSuchRun(f"No run with this id in {uri}. Received: {argument}={run_id!r}") from None
        experiment = retrying(c.get_experiment, run.info.experiment_id)
        if "deleted" in (run.info.lifecycle_stage, experiment.lifecycle_stage):
            raise deleted
        return run
    ids = [e.experiment_id for e in experiments(c)]  # (a prefix is hex: nothing to escape in LIKE)
    found = retrying(c.search_runs, ids, f"attributes.run_id LIKE '{run_id}%'", max_results=1000)
    if not found and _deleted_runs(c, run_id):
        raise deleted
    if not found:
        raise NoSuchRun(f"No run with an id starting with it in {uri}. Received: {argument}={run_id!r}")
    if len(found) > 1:
        many = f"{len(found)}{'+' if len(found) == 1000 else ''}"  # (the most one search returns)
        raise ArgumentError(f"{many} runs with an id starting with it in {uri}. Received: {argument}={run_id!r}")
    return found[0]


def _deleted_runs(c: Any, prefix: str) -> list[Any]:
    """The deleted runs, and the runs of deleted experiments, whose id starts with ``prefix``."""
    from mlflow.entities import ViewType

    everything = [e.experiment_id for e in experiments(c, ViewType.ALL)]
    return list(retrying(c.search_runs, everything, f"attributes.run_id LIKE '{prefix}%'", ViewType.ALL))


def experiments(c: Any, view_type: Any = None) -> list[Any]:
    """Every experiment of the store of client ``c`` (active ones unless ``view_type`` says
    otherwise), page after page: MLflow answers 1,000 at a time.

    Example:
        >>> [e.name for e in experiments(client("sqlite:////tmp/x/mlflow.db"))]  # doctest: +SKIP
        ['kerascnn', 'Default']
    """
    from mlflow.entities import ViewType

    found: list[Any] = []
    token = None
    while True:
        page = retrying(c.search_experiments, view_type=view_type or ViewType.ACTIVE_ONLY, page_token=token)
        found += page
        token = page.token
        if not token:
            return found


def environment_tags() -> dict[str, str]:
    """Versions, host and process, as run tags (TensorFlow and Keras are imported by now)."""
    import sys

    import kerascnn

    tags = {
        "kerascnn.version": kerascnn.__version__,
        "kerascnn.host": socket.gethostname(),
        "kerascnn.pid": str(os.getpid()),
    }
    for name, module in (("tensorflow", "tensorflow"), ("keras", "keras")):
        if module in sys.modules:
            tags[f"{name}.version"] = sys.modules[module].__version__
    return tags


def process_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
