"""New SQLite stores: copied from MLflow's cached empty schema, the same as MLflow makes them."""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from kerascnn import checks
from kerascnn.tracking import store


def _tables(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: con.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names}


def _revision(db: Path) -> str:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_a_new_store_is_the_one_mlflow_makes_and_an_old_one_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    ref_db, kit_db = tmp_path / "ref" / "mlflow.db", tmp_path / "kit" / "mlflow.db"
    ref_db.parent.mkdir()
    reference = MlflowClient(tracking_uri=f"sqlite:///{ref_db}")  # MLflow alone
    kit = store.client(f"sqlite:///{kit_db}")

    template = tmp_path / "cache" / f"mlflow-{mlflow.__version__}-empty.db"
    assert _tables(template)["experiments"] == 0  # MLflow adds its Default experiment on opening a copy
    assert _tables(kit_db).keys() == _tables(ref_db).keys()
    assert _revision(kit_db) == _revision(ref_db)
    assert kit.get_experiment("0").artifact_location == reference.get_experiment("0").artifact_location

    uri = f"sqlite:///{kit_db}"
    run = kit.create_run(store.ensure_experiment(uri, "kept"))
    kit.log_metric(run.info.run_id, "accuracy", 0.99)
    built = template.stat().st_mtime_ns
    store.client.cache_clear()
    assert store.client(uri).get_run(run.info.run_id).data.metrics == {"accuracy": 0.99}
    assert _tables(kit_db)["runs"] == 1  # the file itself, not MLflow's cached engine: never replaced
    other = store.client(f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}")
    assert other.get_experiment_by_name("kept") is None and other.get_experiment("0").name == "Default"
    assert template.stat().st_mtime_ns == built  # made once, copied since


def test_an_unwritable_cache_leaves_the_store_to_mlflow(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "a-file" / "cache"))
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    experiment = store.ensure_experiment(uri, "fine")
    assert store.client(uri).get_experiment(experiment).name == "fine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "runs"]


def test_a_damaged_cached_store_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    template = store.empty_store_path()
    template.parent.mkdir()
    template.write_bytes(b"half a download")
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert store.client(uri).get_experiment("0").name == "Default"
    assert _tables(template)["experiments"] == 0


def test_a_store_whose_making_failed_halfway_is_removed_and_made_again(tmp_path, monkeypatch):
    """A migration that stops halfway (a full disk, here a template with one table too many) left a
    file that every later command failed on ("table secrets already exists")."""
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    template = store.empty_store_path()
    template.parent.mkdir()
    with sqlite3.connect(template) as con:
        con.execute("CREATE TABLE secrets (id INTEGER)")  # what a store cut short by the disk holds
    db = tmp_path / "runs" / "mlflow.db"
    with pytest.raises(store.StoreUnavailable, match="already exists"):
        store.client(f"sqlite:///{db}")
    assert not db.exists()
    template.unlink()  # (the space is back)
    assert store.client(f"sqlite:///{db}").get_experiment("0").name == "Default"
    assert _tables(db)["experiments"] == 1  # the file on disk, not a connection to the removed one
    linked = tmp_path / "linked" / "mlflow.db"  # a link to a share that is not mounted: one line, and kept
    linked.parent.mkdir()
    linked.symlink_to(tmp_path / "share" / "not-mounted" / "mlflow.db")
    for write in (True, False):  # (MLflow retried opening it for ~100 s, then the store's cleanup deleted the link)
        with pytest.raises(ValueError, match=r"^The store file is a link to .*not-mounted/mlflow.db, which does not"):
            store.resolve_tracking_uri(f"sqlite:///{linked}", write=write)
    assert linked.is_symlink()


def test_a_store_locked_for_longer_than_sqlites_timeout_is_waited_for(tracking_uri, spawn):
    """SQLite gives up on a lock after 5 s; opening the store retried nothing, so `runs` failed
    and `train` sent its whole run to the spool. The lock is let go 8 s after `runs` opened the
    file, whatever its start-up took."""
    import psutil

    from tests.helpers import PY, wait_for

    store.client(tracking_uri)  # (made)
    db = store.sqlite_path(tracking_uri)
    hold = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    hold += "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.readline(); c.execute('COMMIT')"
    holder = spawn([sys.executable, "-c", hold, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    runs = spawn(
        [*PY, "runs", "--tracking-uri", tracking_uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    opened = lambda: any(f.path == str(db) for f in psutil.Process(runs.pid).open_files())  # noqa: E731
    wait_for(opened, 120, runs, "`runs` to open the store")
    time.sleep(8)
    assert runs.poll() is None, runs.communicate()[1]  # still waiting, past SQLite's own 5 s
    holder.communicate("\n", timeout=30)
    out, err = runs.communicate(timeout=120)
    assert runs.returncode == 0 and "no runs yet" in out, err
    assert f"train one: kerascnn train mnist_cnn --tracking-uri {shlex.quote(tracking_uri)}" in out  # (this store)


def test_reading_where_there_is_no_store_and_none_can_be_made_finds_no_runs(tmp_path, monkeypatch):
    import kerascnn
    from kerascnn.tracking import dashboard
    from tests.helpers import read_only

    db = tmp_path / "theirs" / "mlflow.db"
    db.parent.mkdir()
    with read_only(monkeypatch, db):
        assert kerascnn.leaderboard(tracking_uri=f"sqlite:///{db}") == []  # (it was "cannot be created")
        with pytest.raises(ValueError, match=r"store's folder cannot be created or written"):
            dashboard.serve(tracking_uri=f"sqlite:///{db}")  # (ui would make it: refused)
    assert not db.exists()


def test_a_deleted_experiment_is_refused_before_training(tracking_uri, tmp_path):
    import pytest

    import kerascnn
    from tests.helpers import all_runs, data_dir

    data_dir()
    client = MlflowClient(tracking_uri)
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(ValueError, match=r"Experiment is deleted; restore it .*Received: experiment='gone'$"):
        kerascnn.train("lenet5", "mnist", epochs=1, train_samples=200, tracking_uri=tracking_uri, experiment="gone")
    assert not all_runs(tracking_uri) and not list(tmp_path.glob("mlruns/spool/*"))  # (it trained, then spooled)


def test_the_runs_of_a_deleted_experiment_or_a_deleted_run_are_named_as_such(tracking_uri):
    import pytest

    import kerascnn

    client = MlflowClient(tracking_uri)
    gone = client.create_run(store.ensure_experiment(tracking_uri, "gone")).info.run_id
    deleted = client.create_run(store.ensure_experiment(tracking_uri, "kept")).info.run_id
    client.delete_experiment(client.get_experiment_by_name("gone").experiment_id)
    client.delete_run(deleted)
    with pytest.raises(ValueError, match=r"Experiment is deleted \(its runs are kept .*Received: experiment='gone'$"):
        kerascnn.leaderboard("gone", tracking_uri=tracking_uri)
    for given in (gone[:8], gone, deleted[:8], deleted):  # a prefix, or the whole id
        with pytest.raises(
            ValueError, match=rf"run with an id starting with it is deleted.*Received: run_id='{given}'"
        ):
            store.find_run(tracking_uri, given)
    with pytest.raises(ValueError, match=r"^No run with an id starting with it"):
        store.find_run(tracking_uri, "abcdef12" if not gone.startswith("abcdef12") else "12abcdef")


def test_a_store_of_more_than_a_thousand_experiments_is_read_whole(tracking_uri):
    """MLflow lists experiments 1,000 at a time, newest first: the runs of older ones were left out
    of `runs` and `compare`, and their ids were not found by prefix."""
    import kerascnn

    client = MlflowClient(tracking_uri)
    oldest = client.create_run(store.ensure_experiment(tracking_uri, "first"), run_name="oldest").info.run_id
    client.log_metric(oldest, "test_accuracy", 0.5)
    client.set_terminated(oldest)
    for i in range(1000):
        client.create_experiment(f"sweep-{i:04d}")
    assert [r.run_name for r in kerascnn.leaderboard(tracking_uri=tracking_uri)] == ["oldest"]
    assert store.find_run(tracking_uri, oldest[:8]).info.run_id == oldest


def test_a_store_that_can_only_be_read_is_listed_and_not_trained_into(tracking_uri, tmp_path, monkeypatch):
    """A colleague's store, read-only here: the read commands work, a run is refused up front."""
    import pytest

    import kerascnn
    from tests.helpers import access_by_bits, data_dir, read_only

    data_dir()
    client = MlflowClient(tracking_uri)
    run = client.create_run(store.ensure_experiment(tracking_uri, "theirs"), run_name="their-run")
    client.set_terminated(run.info.run_id)
    db = store.sqlite_path(tracking_uri)
    assert db is not None
    with read_only(monkeypatch, db):
        (row,) = kerascnn.leaderboard(tracking_uri=tracking_uri)
        assert row.run_name == "their-run"
        assert kerascnn.leaderboard(tracking_uri=tracking_uri, run_ids=[]) == []  # only these runs: none
        with pytest.raises(ValueError, match=r"store's folder cannot be created or written .*Received: tracking_uri="):
            kerascnn.train("lenet5", "mnist", epochs=1, train_samples=200, tracking_uri=tracking_uri)
    db.chmod(0o000)
    try:
        if os.geteuid() == 0:  # (root reads it anyway)
            access_by_bits(monkeypatch, {db.resolve()})
        with pytest.raises(ValueError, match=r"^The store file is not readable. Received: tracking_uri="):
            kerascnn.leaderboard(tracking_uri=tracking_uri)
    finally:
        db.chmod(0o644)
    assert len(client.search_runs([run.info.experiment_id])) == 1  # (the refused run made nothing)


def test_a_run_id_looked_up_in_a_store_that_does_not_exist_is_no_such_run(tmp_path):
    """Reading never creates a store; a run id asked of a missing one is the same typed error as an
    unknown id in an existing one (``train --resume`` turns it into its spool hint)."""
    import pytest

    from kerascnn.tracking.queries import search_runs

    uri = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    with pytest.raises(store.NoSuchRun, match=r"^No run with this id in .*Received: run_id='abc123'$"):
        search_runs(tracking_uri=uri, run_ids=["abc123"])
    assert not (tmp_path / "none").exists()


def test_reading_a_store_from_python_leaves_mlflows_http_settings_to_the_user(tracking_uri, monkeypatch):
    """Only the kit's own processes (the CLI, the writer) cap MLflow's HTTP retries: a notebook's later
    ``mlflow`` calls to a server keep MLflow's (or the user's) settings."""
    import os

    import kerascnn

    for name in [n for n in os.environ if n.startswith("MLFLOW_HTTP_REQUEST_")]:
        monkeypatch.delenv(name)
    MlflowClient(tracking_uri).create_run(store.ensure_experiment(tracking_uri, "kerascnn"))
    assert len(kerascnn.leaderboard(tracking_uri=tracking_uri)) == 1
    assert not [n for n in os.environ if n.startswith("MLFLOW_HTTP_REQUEST_")]


def test_a_relative_sqlite_path_is_made_absolute_without_dots(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    resolved = store.resolve_tracking_uri("sqlite:///../mlruns/mlflow.db")
    assert resolved == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"  # as a result or a log shows it
    assert store.same_store(f"sqlite:///{tmp_path}/notebooks/../mlruns/mlflow.db") == resolved  # a recorded one


def test_mlflows_bare_databricks_uri_is_a_remote_store_not_a_file_store():
    assert store.resolve_tracking_uri("databricks") == "databricks"  # (MLflow's URI for the default profile)


def test_dots_in_a_sqlite_path_are_taken_through_symlinks_as_the_file_system_does(tmp_path, monkeypatch):
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "sub")
    monkeypatch.chdir(tmp_path)
    assert store.resolve_tracking_uri("sqlite:///link/../mlflow.db") == f"sqlite:///{tmp_path / 'real' / 'mlflow.db'}"
    assert store.resolve_tracking_uri("sqlite:///link/mlflow.db") == f"sqlite:///{tmp_path / 'link' / 'mlflow.db'}"


def test_a_store_path_too_long_for_sqlite_is_refused_at_once(tmp_path):
    """SQLite opens no file whose journal's path passes 511 bytes: MLflow retried it for ~100 s,
    then the run went to a spool that no `kerascnn sync` could ever send."""
    deep = tmp_path.joinpath(*["y" * 60] * 8) / "mlflow.db"
    assert len(str(deep)) + len("-journal") >= store.SQLITE_MAX_PATHNAME
    for write in (True, False):
        with pytest.raises(ValueError, match=r"^The store file's path is too long for SQLite \(\d+ bytes"):
            store.resolve_tracking_uri(f"sqlite:///{deep}", write=write)
    fits = tmp_path.joinpath(*["y" * 60] * 2) / "mlflow.db"
    assert store.resolve_tracking_uri(f"sqlite:///{fits}") == f"sqlite:///{fits}"
    fits.parent.mkdir(parents=True)
    fits.touch()
    linked = tmp_path / ("a" * 240) / ("b" * 240) / "mlflow.db"  # a long name for a short path: SQLite opens the name
    linked.parent.mkdir(parents=True)
    linked.symlink_to(fits)
    with pytest.raises(ValueError, match=r"too long for SQLite"):
        store.resolve_tracking_uri(f"sqlite:///{linked}", write=False)
    with pytest.raises(ValueError, match=r"^`tracking_uri` names a path that cannot be expanded"):
        store.resolve_tracking_uri("sqlite:///~no-such-user-here/mlflow.db")


def test_stores_that_would_lose_every_run_are_refused_before_training(tmp_path, monkeypatch):
    """An in-memory SQLite store ends with its process; a database without its driver installed
    fails every write, which training took for an outage (the run spooled, and `sync` failed too)."""
    monkeypatch.chdir(tmp_path)
    for uri in ("sqlite:///:memory:", "sqlite:///file::memory:?cache=shared"):
        with pytest.raises(ValueError, match=r"^`tracking_uri` must name a database file: an in-memory store"):
            store.resolve_tracking_uri(uri)
    missing = "postgresql+nosuchdriver://user:secret@127.0.0.1:1/runs"
    with pytest.raises(
        ValueError, match=r"its driver is missing .*Received: tracking_uri='postgresql\+nosuchdriver://user:\*\*\*@"
    ):
        store.probe(store.resolve_tracking_uri(missing))  # (the password is not echoed)
    with pytest.raises(
        ValueError, match=r"^Not a database URL. Received: tracking_uri='mysql://user:\*\*\*@host:port/runs'$"
    ):
        store.probe("mysql://user:se@cret@host:port/runs")  # (an @ in the password: hidden too)
    with pytest.raises(ValueError, match=r"^`experiment` must be at most 500 characters long. .*\(501 characters\)$"):
        store.ensure_experiment(f"sqlite:///{tmp_path}/mlflow.db", "x" * 501)
    assert checks.MAX_EXPERIMENT_NAME == mlflow.utils.validation.MAX_EXPERIMENT_NAME_LENGTH
    assert list(tmp_path.iterdir()) == []  # (no file named ':memory:', no store)
