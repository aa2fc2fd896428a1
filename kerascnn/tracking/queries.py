"""Reading runs back over ``mlflow.search_runs``: the leaderboard and comparisons use it.

Both default to every experiment of the store; run ids may be given in full or by a
unique prefix (the 12-character ids the tables print).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

from kerascnn import checks
from kerascnn.console import first, table
from kerascnn.errors import ArgumentError
from kerascnn.tracking import store
from kerascnn.tracking.run import ACTIVE_TAG

PRECISION_SHORT = {"float32": "fp32", "mixed_bfloat16": "bf16", "mixed_float16": "fp16"}


@dataclass
class RunRow:
    """One run as the leaderboard shows it."""

    run_id: str
    run_name: str
    experiment: str
    kind: str
    model: str
    dataset: str
    params: dict[str, str]
    best_val_accuracy: float | None
    test_accuracy: float | None
    duration_s: float | None
    status: str
    start_time: str
    parent_run_id: str | None = None  # a trial's search (its parent run)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


KEY_PARAMS = ("epochs", "batch_size", "learning_rate", "optimizer", "dtype_policy", "tuner", "max_trials")


def search_runs(
    experiment: str | None = None,
    *,
    run_ids: list[str] | None = None,
    tracking_uri: str | None = None,
    include_trials: bool = False,
) -> Any:
    """Runs of the kit as a pandas DataFrame (``mlflow.search_runs`` columns).

    Args:
        experiment: Experiment name; every experiment when ``None``.
        run_ids: Only these runs (any experiment; full ids or unique prefixes).
        tracking_uri: The store (default as in ``train``).
        include_trials: Also return tuning trials (nested runs).

    Raises:
        ArgumentError: Unknown experiment; :class:`store.NoSuchRun` (an ArgumentError) for a run id.

    Example:
        >>> df = search_runs("kerascnn")  # doctest: +SKIP
    """
    from kerascnn.device import collector_paused

    run_ids = checks.strings("run_ids", run_ids)
    checks.boolean("include_trials", include_trials)
    if experiment is not None:
        checks.non_empty("experiment", experiment, maximum=checks.MAX_EXPERIMENT_NAME)
    with collector_paused():
        import mlflow
        import pandas as pd

    uri = store.resolve_tracking_uri(tracking_uri, write=False)
    if run_ids == []:  # (only these runs: none)
        return pd.DataFrame()
    if store.not_made(uri):  # reading never creates a store
        if run_ids:
            raise store.NoSuchRun(
                f"No run with this id in {uri} (the store does not exist). Received: run_id={run_ids[0]!r}"
            )
        if experiment is not None:
            raise ArgumentError(
                f"Unknown experiment; the store {uri} does not exist yet. Received: experiment={experiment!r}"
            )
        return pd.DataFrame()
    client = store.client(uri)
    if run_ids:
        runs = [store.find_run(uri, r) for r in run_ids]
        quoted = ", ".join(f"'{r.info.run_id}'" for r in runs)
        with store.global_tracking_uri(uri):  # mlflow.search_runs reads MLflow's global store
            return store.retrying(
                mlflow.search_runs,
                experiment_ids=sorted({r.info.experiment_id for r in runs}),
                filter_string=f"attributes.run_id IN ({quoted})",
            )
    experiment_ids = _experiment_ids(client, experiment)
    with store.global_tracking_uri(uri):
        frame = store.retrying(mlflow.search_runs, experiment_ids=experiment_ids)
    if frame.empty or include_trials or "tags.mlflow.parentRunId" not in frame:
        return frame
    return frame[frame["tags.mlflow.parentRunId"].isna()]


def _experiment_ids(client: Any, experiment: str | None) -> list[str]:
    if experiment is None:
        return [e.experiment_id for e in store.experiments(client)]
    found = store.retrying(client.get_experiment_by_name, experiment)
    if found is None:
        names = first([e.name for e in store.experiments(client)], 10)
        raise ArgumentError(f"Unknown experiment; the store has {names}. Received: experiment={experiment!r}")
    if found.lifecycle_stage == "deleted":
        raise ArgumentError(
            "Experiment is deleted (its runs are kept until `mlflow gc`); restore it (mlflow experiments restore) "
            f"to see them. Received: experiment={experiment!r}"
        )
    return [found.experiment_id]


def _value(row: Any, column: str) -> Any:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _row(row: Any, experiments: dict[str, str]) -> RunRow:
    import pandas as pd  # (loaded: the rows come from MLflow's DataFrame)

    start, end = row.get("start_time"), row.get("end_time")
    ended = not pd.isna(start) and not pd.isna(end)  # a run still going has no end (NaT)
    duration = round((end - start).total_seconds(), 3) if ended else None  # (MLflow keeps milliseconds)
    active = _value(row, f"tags.{ACTIVE_TAG}")  # (a resumed run's sessions, without the pauses)
    duration = float(active) if ended and active is not None else duration
    best_val = _value(row, "metrics.best_val_accuracy")
    if best_val is None and _value(row, "params.objective") == "val_accuracy":  # a search's best trial
        best_val = _value(row, "metrics.best_score")
    params = {k: _value(row, f"params.{k}") for k in KEY_PARAMS if _value(row, f"params.{k}") is not None}
    for key, *fallbacks in _TRIAL_PARAMS:  # a trial's settings are tags (its params are its hyperparameters)
        found = next((v for c in fallbacks if (v := _value(row, c)) is not None), None)
        if key not in params and found is not None:
            params[key] = found
    return RunRow(
        run_id=row["run_id"],
        run_name=_value(row, "tags.mlflow.runName") or "",
        experiment=experiments.get(row["experiment_id"], row["experiment_id"]),
        kind=_value(row, "tags.kerascnn.kind") or "run",
        model=_value(row, "tags.kerascnn.model") or _value(row, "params.family") or "",
        dataset=_value(row, "tags.kerascnn.dataset") or "",
        params=params,
        best_val_accuracy=best_val,
        test_accuracy=_value(row, "metrics.test_accuracy"),
        duration_s=duration,
        status=row["status"],
        start_time=str(start)[:19] if start is not None else "",
        parent_run_id=_value(row, "tags.mlflow.parentRunId"),
    )


# a trial's epochs (Hyperband's round, else the search's) and precision, where its tags and params keep them
_TRIAL_PARAMS = (
    ("epochs", "params.tuner/epochs", "tags.kerascnn.epochs"),
    ("dtype_policy", "tags.kerascnn.dtype_policy"),
)


class Leaderboard(list[RunRow]):
    """The rows :func:`leaderboard` returns: a list, shown as ``kerascnn runs``' table in a notebook.

    Example:
        >>> print(Leaderboard().to_table().split()[:2])
        ['#', 'run_id']
    """

    def to_table(self, width: int | None = None) -> str:
        """The table ``kerascnn runs`` prints (see :func:`format_table`)."""
        return format_table(self, width)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.to_table() if self else "Leaderboard([])")


def leaderboard(
    experiment: str | None = None,
    *,
    tracking_uri: str | None = None,
    run_ids: list[str] | None = None,
    include_trials: bool = False,
) -> Leaderboard:
    """Runs sorted by test accuracy, best first; then the runs without one (searches, runs
    that did not finish) by their best validation accuracy; then the rest, newest first.

    Args:
        experiment: Experiment name; every experiment when ``None``.
        tracking_uri: The store (default as in ``train``).
        run_ids: Only these runs (full ids or unique prefixes).
        include_trials: Also list tuning trials (nested runs).

    Returns:
        A :class:`Leaderboard`: a list of :class:`RunRow`, shown as a table in a notebook.

    Example:
        >>> for row in leaderboard("kerascnn"):  # doctest: +SKIP
        ...     print(row.model, row.test_accuracy)
    """
    frame = search_runs(experiment, tracking_uri=tracking_uri, run_ids=run_ids, include_trials=include_trials)
    if frame.empty:
        return Leaderboard()
    uri = store.resolve_tracking_uri(tracking_uri, write=False)
    names = {e.experiment_id: e.name for e in store.experiments(store.client(uri))}
    rows = []
    for _, row in frame.iterrows():
        r = _row(row, names)
        if r.best_val_accuracy is None and _value(row, "metrics.val_accuracy") is not None:  # it did not finish
            r.best_val_accuracy = max(metric_steps(r.run_id, "val_accuracy", tracking_uri=uri).values(), default=None)
        rows.append(r)
    rows.sort(key=lambda r: r.start_time, reverse=True)
    rows.sort(key=lambda r: (r.best_val_accuracy is None, -(r.best_val_accuracy or 0.0)))
    rows.sort(key=lambda r: (r.test_accuracy is None, -(r.test_accuracy or 0.0)))
    return Leaderboard(rows)


def spooled_rows(tracking_uri: str | None = None) -> list[RunRow]:
    """The runs still waiting in the store's spool (``kerascnn sync`` sends them), status SPOOLED."""
    from kerascnn.tracking.sync import pending

    rows = []
    for s in pending(tracking_uri):
        info, metrics = s.info, s.metrics()
        params: dict[str, str] = next((op["data"]["params"] for op in s.ops if op["kind"] == "params"), {})
        created: dict[str, str] = next((op["data"]["tags"] for op in s.ops if op["kind"] == "create"), {})
        tags: dict[str, str] = {**info.get("labels", {}), **created}  # (its create op may be in the store)
        best_val = metrics.get("best_val_accuracy")  # logged at a run's end; one stopped before: its epochs'
        if best_val is None:
            best_val = s.best("val_accuracy")
        rows.append(
            RunRow(
                run_id=info.get("run_id") or f"local:{info['local_id']}",
                run_name=info.get("name", ""),
                experiment=info.get("experiment", ""),
                kind=tags.get("kerascnn.kind", "run"),
                model=tags.get("kerascnn.model", ""),
                dataset=tags.get("kerascnn.dataset", ""),
                params={k: params[k] for k in KEY_PARAMS if k in params},
                best_val_accuracy=best_val,
                test_accuracy=metrics.get("test_accuracy"),
                duration_s=None,
                status=f"SPOOLED ({s.status})",
                start_time="",
            )
        )
    return rows


def format_table(rows: list[RunRow], width: int | None = None) -> str:
    """An aligned text table of leaderboard rows (an experiment column when the rows come from
    more than one); names in full, or cut in the middle (``~``) to fit in ``width`` columns.

    Example:
        >>> print(format_table([]).split()[:3])
        ['#', 'run_id', 'name']
    """
    several = len({r.experiment for r in rows}) > 1
    header = ("#", "run_id", "name", *(("experiment",) if several else ()), "model", "data", "prec", "ep")
    header += ("best_val", "test_acc", "time", "status")

    def score(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    body = [
        (
            str(i),
            r.run_id[:12],
            r.run_name,
            *((r.experiment,) if several else ()),
            r.model,
            os.path.basename(r.dataset),  # (a folder by its name)
            PRECISION_SHORT.get(r.params.get("dtype_policy", ""), "-"),
            r.params.get("epochs", "-"),
            score(r.best_val_accuracy),
            score(r.test_accuracy),
            "-" if r.duration_s is None else f"{r.duration_s:.0f}s",
            r.status,
        )
        for i, r in enumerate(rows, start=1)
    ]
    at = {name: i for i, name in enumerate(header)}
    right = {0, *(at[name] for name in ("ep", "best_val", "test_acc", "time"))}
    shrink = {**({at["experiment"]: 12} if several else {}), at["data"]: 10, at["model"]: 10, at["name"]: 20}
    return "\n".join(table([header, *body], right=right, shrink=shrink, width=width))


def metric_steps(run_id: str, metric: str, *, tracking_uri: str | None = None) -> dict[int, float]:
    """Step (epoch index) -> value of ``metric`` for one run, in step order (last value per step).
    A Hyperband trial that continues another starts at that trial's last epoch, not at 0.

    Example:
        >>> metric_steps("0123abcd", "val_accuracy")  # doctest: +SKIP
        {2: 0.97, 3: 0.98}
    """
    uri = store.resolve_tracking_uri(tracking_uri, write=False)
    history = store.retrying(store.client(uri).get_metric_history, run_id, metric)
    by_step: dict[int, float] = {}
    for m in sorted(history, key=lambda m: (m.step, m.timestamp)):
        by_step[int(m.step)] = float(m.value)
    return dict(sorted(by_step.items()))


def check_limit(limit: Any) -> int:
    """``limit`` as a positive int (``kerascnn runs --limit``, ``compare --limit``)."""
    return checks.positive_int("limit", limit)
