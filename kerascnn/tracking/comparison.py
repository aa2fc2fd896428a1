"""``compare()``: learning curves and summary metrics of several runs, side by side.

Runs are chosen by id (or unique id prefix) or by experiment through the same query layer
as the leaderboard (:mod:`kerascnn.tracking.queries`); with neither, the best runs of every
experiment, as ``kerascnn runs`` lists them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerascnn import checks
from kerascnn.console import columns, pad
from kerascnn.errors import ArgumentError
from kerascnn.tracking import queries as runs

FINAL_METRICS = ("test_accuracy", "best_val_accuracy")
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


@dataclass
class Comparison:
    """The compared runs, their curves, and the figure (saved to ``output`` if given)."""

    rows: list[runs.RunRow]
    metric: str
    curves: dict[str, list[float]] = field(default_factory=dict)
    epochs: dict[str, list[int]] = field(default_factory=dict)  # run id -> the curve's epochs (1-based)
    figure: Any = field(default=None, repr=False)
    output: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "output": self.output,
            "runs": [
                dict(r.to_dict(), curve=self.curves.get(r.run_id, []), epochs=self.epochs.get(r.run_id, []))
                for r in self.rows
            ],
        }

    def __repr__(self) -> str:  # (``.to_table()``, ``.figure``; a notebook's display gives the table)
        return f"Comparison(metric={self.metric!r}, runs={len(self.rows)}, output={self.output!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.to_table())

    def to_table(self, width: int | None = None) -> str:
        """The runs' leaderboard table and their curves' last values; names in full, or cut to fit
        in ``width`` columns."""
        finals = [f"final {self.metric}"] + [
            f"{self.curves[r.run_id][-1]:.4f}" if self.curves.get(r.run_id) else "-" for r in self.rows
        ]
        last = max(map(len, finals))
        table = runs.format_table(self.rows, None if width is None else width - last - 2).splitlines()
        wide = max(map(columns, table))  # (the table's lines end where their status does)
        return "\n".join(f"{pad(line, wide)}  {final.rjust(last)}" for line, final in zip(table, finals))


def _label(row: runs.RunRow) -> str:
    return f"{row.run_name or row.model} ({row.run_id[:8]})"


def compare(
    run_ids: list[str] | None = None,
    *,
    experiment: str | None = None,
    metric: str = "val_accuracy",
    output: str | Path | None = None,
    limit: int = 10,
    tracking_uri: str | None = None,
) -> Comparison:
    """Compares runs: overlaid per-epoch ``metric`` curves, and their test and best
    validation accuracy.

    Args:
        run_ids: Runs to compare (any experiments; full ids or unique prefixes); a search's run
            stands for its best ``limit`` trials.
        experiment: Or: the best ``limit`` runs of this experiment (of every experiment
            when neither is given).
        metric: Per-epoch metric to overlay (``val_accuracy``, ``loss``, ...).
        output: Save the figure here (``.png``, ``.svg`` or ``.pdf``; missing folders are created; a file
            there is replaced, as by ``savefig``: the figure is drawn again from the store at any time).
        limit: Most runs taken from ``experiment``, or trials from a search.
        tracking_uri: The store (default as in ``train``).

    Returns:
        A :class:`Comparison` (``.figure`` is a matplotlib figure).

    Raises:
        ArgumentError: No runs, unknown runs, a metric no run logged, a bad output path.

    Example:
        >>> c = compare(experiment="kerascnn", output="compare.png")  # doctest: +SKIP
        >>> print(c.to_table())  # doctest: +SKIP
    """
    limit = _checked(run_ids, metric, limit, output)
    if run_ids and experiment is not None:  # (run ids name their runs in any experiment)
        raise ArgumentError(f"Give run ids or an experiment, not both. Received: experiment={experiment!r}")
    rows: list[runs.RunRow] = runs.leaderboard(
        experiment, tracking_uri=tracking_uri, run_ids=list(run_ids) if run_ids else None
    )
    if run_ids:
        order = {r: i for i, r in enumerate(run_ids)}
        rows = sorted(rows, key=lambda r: next((i for p, i in order.items() if r.run_id.startswith(p)), len(order)))
        rows = _trials_for_searches(rows, limit, tracking_uri)
    elif len(rows) > limit:
        print(
            f"kerascnn: comparing the best {limit} of {len(rows)} runs (--limit, limit=, takes more)",
            file=sys.stderr,
            flush=True,
        )
        rows = rows[:limit]
    if not rows:
        raise ArgumentError(_no_runs(experiment, tracking_uri))
    comparison = _curves(rows, metric, tracking_uri)
    from kerascnn.tracking import plots

    labelled = {_label(r): r.run_id for r in rows}
    comparison.figure = plots.compare_runs(
        {label: {metric: comparison.curves[i]} for label, i in labelled.items()},
        {_label(r): {k: getattr(r, k) for k in FINAL_METRICS if getattr(r, k) is not None} for r in rows},
        metric,
        {label: comparison.epochs[i] for label, i in labelled.items()},
    )
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        comparison.output = plots.save(comparison.figure, str(output))
    return comparison


def _trials_for_searches(rows: list[runs.RunRow], limit: int, tracking_uri: str | None) -> list[runs.RunRow]:
    """``rows`` with each search replaced by its best ``limit`` trials (its curves are theirs)."""
    if not any(r.kind == "search" for r in rows):
        return rows
    trials = [r for r in runs.leaderboard(tracking_uri=tracking_uri, include_trials=True) if r.parent_run_id]
    expanded: list[runs.RunRow] = []
    for row in rows:
        if row.kind != "search":
            expanded.append(row)
            continue
        mine = [t for t in trials if t.parent_run_id == row.run_id]
        if not mine:  # (none yet: the search's own row, and the hint that its curves are its trials')
            expanded.append(row)
            continue
        taken = f"the best {limit} of its {len(mine)}" if len(mine) > limit else f"its {len(mine)}"
        print(f"kerascnn: search {row.run_name}: comparing {taken} trials", file=sys.stderr, flush=True)
        expanded += mine[:limit]
    return expanded


def _checked(run_ids: Any, metric: Any, limit: Any, output: str | Path | None) -> int:
    """``compare``'s arguments, checked; returns ``limit``."""
    if checks.strings("run_ids", run_ids) == []:  # (None, not [], takes the experiment's best runs)
        raise ArgumentError("`run_ids` must name at least one run, or be None. Received: run_ids=[]")
    if not isinstance(metric, str) or not metric:
        raise ArgumentError(f"`metric` must be a metric name. Received: metric={metric!r}")
    if output is not None:
        if not isinstance(output, (str, os.PathLike)) or not str(output):
            raise ArgumentError(f"`output` must be a file path. Received: output={output!r}")
        path = Path(output)
        if path.suffix.lower() not in FIGURE_SUFFIXES:
            raise ArgumentError(f"`output` must end in {', '.join(FIGURE_SUFFIXES)}. Received: output={str(output)!r}")
        checks.writable("output", output)
    return runs.check_limit(limit)


def _no_runs(experiment: str | None, tracking_uri: str | None) -> str:
    """Why there is nothing to compare: the experiment, or the store (named; it may not exist yet)."""
    if experiment:
        return f"No runs to compare in experiment {experiment!r}; train one first. Received: experiment={experiment!r}"
    from kerascnn.tracking import store

    uri = store.resolve_tracking_uri(tracking_uri, write=False)
    missing = " (it does not exist yet)" if store.not_made(uri) else ""
    return f"No runs to compare in the store{missing}; train one first. Received: tracking_uri={uri!r}"


def _curves(rows: list[runs.RunRow], metric: str, tracking_uri: str | None) -> Comparison:
    """Each run's ``metric`` per epoch, at the epochs it was logged at."""
    steps = {r.run_id: runs.metric_steps(r.run_id, metric, tracking_uri=tracking_uri) for r in rows}
    if not any(steps.values()):
        searches = any(r.kind == "search" for r in rows)
        hint = (
            "; a search's per-epoch curves are on its trials' runs (`kerascnn runs --trials` lists them, "
            "leaderboard(include_trials=True) in Python)"
        )
        hint = hint if searches else ""
        if metric.startswith("val_") and not searches:
            hint = f" (runs trained with validation_split=0 log no val_ metrics: --metric {metric[4:]} compares theirs)"
        raise ArgumentError(f"None of the runs logged a per-epoch `{metric}`{hint}. Received: metric={metric!r}")
    curves = {run_id: list(s.values()) for run_id, s in steps.items()}
    epochs = {run_id: [step + 1 for step in s] for run_id, s in steps.items()}
    return Comparison(rows=rows, metric=metric, curves=curves, epochs=epochs)
