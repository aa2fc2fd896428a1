"""The run query layer over ``mlflow.search_runs``: the leaderboard and comparisons use it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from kerascnn import tracking

KEY_PARAMS = ("epochs", "batch_size", "learning_rate", "optimizer")


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search_runs(
    experiment: str | None = None,
    *,
    run_ids: list[str] | None = None,
    tracking_uri: str | None = None,
    include_trials: bool = False,
) -> Any:
    """Runs of the kit as a pandas DataFrame (``mlflow.search_runs`` columns).

    Args:
        experiment: Experiment name; all experiments when ``None``.
        run_ids: Only these runs (any experiment).
        tracking_uri: The store (default as in ``train``).
        include_trials: Also return tuning trials (nested runs).

    Raises:
        ValueError: Unknown experiment or run id.

    Example:
        >>> df = search_runs("kerascnn")  # doctest: +SKIP
    """
    import mlflow
    import pandas as pd

    uri = tracking.resolve_tracking_uri(tracking_uri)
    db = tracking.sqlite_path(uri)
    if db is not None and not db.exists():  # reading never creates a store
        if run_ids:
            raise ValueError(f"No run with this id in {uri} (the store does not exist). Received: run_id={run_ids[0]!r}")
        if experiment is not None:
            raise ValueError(f"Unknown experiment; the store {uri} does not exist yet. Received: experiment={experiment!r}")
        return pd.DataFrame()
    client = tracking.client(uri)
    mlflow.set_tracking_uri(uri)
    if run_ids:
        ids = []
        for run_id in run_ids:
            try:
                ids.append(tracking.retrying(client.get_run, run_id).info.experiment_id)
            except Exception:
                raise ValueError(f"No run with this id in {uri}. Received: run_id={run_id!r}") from None
        quoted = ", ".join(f"'{r}'" for r in run_ids)
        frame = tracking.retrying(mlflow.search_runs, experiment_ids=sorted(set(ids)),
                                  filter_string=f"attributes.run_id IN ({quoted})")  # fmt: skip
        return frame
    if experiment is not None:
        found = tracking.retrying(client.get_experiment_by_name, experiment)
        if found is None:
            names = [e.name for e in tracking.retrying(client.search_experiments)]
            raise ValueError(f"Unknown experiment; the store has {', '.join(names)}. Received: experiment={experiment!r}")
        ids = [found.experiment_id]
    else:
        ids = [e.experiment_id for e in tracking.retrying(client.search_experiments)]
    frame = tracking.retrying(mlflow.search_runs, experiment_ids=ids)
    if frame.empty or include_trials:
        return frame
    if "tags.mlflow.parentRunId" in frame:
        frame = frame[frame["tags.mlflow.parentRunId"].isna()]
    return frame


def _value(row: Any, column: str) -> Any:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def leaderboard(experiment: str | None = None, *, tracking_uri: str | None = None,
                run_ids: list[str] | None = None) -> list[RunRow]:
    """Runs sorted by test accuracy (best first; runs without one last).

    Example:
        >>> for row in leaderboard("kerascnn"):  # doctest: +SKIP
        ...     print(row.model, row.test_accuracy)
    """
    frame = search_runs(experiment, tracking_uri=tracking_uri, run_ids=run_ids)
    if frame.empty:
        return []
    uri = tracking.resolve_tracking_uri(tracking_uri)
    names = {e.experiment_id: e.name for e in tracking.retrying(tracking.client(uri).search_experiments)}
    rows = []
    for _, row in frame.iterrows():
        start, end = row.get("start_time"), row.get("end_time")
        duration = (end - start).total_seconds() if start is not None and end is not None and end == end else None
        kind = _value(row, "tags.kerascnn.kind") or "run"
        best_val = _value(row, "metrics.best_val_accuracy")
        if best_val is None and _value(row, "params.objective") == "val_accuracy":  # a search's best trial
            best_val = _value(row, "metrics.best_score")
        rows.append(RunRow(
            run_id=row["run_id"],
            run_name=_value(row, "tags.mlflow.runName") or "",
            experiment=names.get(row["experiment_id"], row["experiment_id"]),
            kind=kind,
            model=_value(row, "tags.kerascnn.model") or _value(row, "params.family") or "",
            dataset=_value(row, "tags.kerascnn.dataset") or "",
            params={k: _value(row, f"params.{k}") for k in KEY_PARAMS if _value(row, f"params.{k}") is not None},
            best_val_accuracy=best_val,
            test_accuracy=_value(row, "metrics.test_accuracy"),
            duration_s=duration,
            status=row["status"],
            start_time=str(start)[:19] if start is not None else "",
        ))  # fmt: skip
    rows.sort(key=lambda r: (r.test_accuracy is None, -(r.test_accuracy or 0.0), r.start_time))
    return rows


def format_table(rows: list[RunRow]) -> str:
    """An aligned text table of leaderboard rows."""
    header = ("#", "run_id", "model", "dataset", "params", "best_val_acc", "test_acc", "duration", "status")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    body = [
        (str(i), r.run_id[:12], r.model, r.dataset,
         " ".join(f"{k}={v}" for k, v in r.params.items()) or "-",
         pct(r.best_val_accuracy), pct(r.test_accuracy),
         "-" if r.duration_s is None else f"{r.duration_s:.1f}s", r.status)
        for i, r in enumerate(rows, start=1)
    ]  # fmt: skip
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    right = {0, 5, 6, 7}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
             for line in [header, *body]]  # fmt: skip
    return "\n".join(lines)


def metric_history(run_id: str, metric: str, *, tracking_uri: str | None = None) -> list[float]:
    """The per-epoch values of ``metric`` for one run, ordered by step (last value per step).

    Example:
        >>> metric_history("0123abcd", "val_accuracy")  # doctest: +SKIP
        [0.97, 0.98]
    """
    uri = tracking.resolve_tracking_uri(tracking_uri)
    history = tracking.retrying(tracking.client(uri).get_metric_history, run_id, metric)
    by_step: dict[int, Any] = {}
    for m in sorted(history, key=lambda m: (m.step, m.timestamp)):
        by_step[m.step] = m.value
    return [by_step[k] for k in sorted(by_step)]
