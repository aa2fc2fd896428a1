"""Matplotlib figures for runs: training curves, confusion matrix, run comparison.

Functions return ``matplotlib.figure.Figure`` objects (no pyplot state), which notebooks
display (without ``%matplotlib inline`` too: :class:`ShownFigure`) and the CLI saves as PNG.
Epoch axes have integer ticks; summary metrics (test accuracy...) are drawn as dots on a labelled,
zoomed axis rather than as bars (a bar cut off above zero would exaggerate a 0.9898 vs 0.9900 difference).
"""

from __future__ import annotations

import csv
import io
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rcParams
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kerascnn.console import shorten


class ShownFigure(Figure):
    """A figure that IPython and Jupyter show inline as a PNG (a bare ``Figure`` shows as
    ``<Figure size ...>`` until ``%matplotlib inline`` runs; then its own formatter is used).

    Example:
        >>> ShownFigure()._repr_png_()[:4]
        b'\\x89PNG'
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")  # (as matplotlib's inline backend draws it)
        return buffer.getvalue()


def _fixed_margins(fig: Figure, left: float, bottom: float, right: float, top: float, wspace: float = 0.2) -> None:
    """Margins in inches for a figure whose labels have a known size: drawing it then takes no
    layout pass (a constrained layout measures every label twice, ~40% of a small figure's time)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / width, bottom=bottom / height, right=1 - right / width, top=1 - top / height, wspace=wspace
    )


def _epoch_axis(ax: Any) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # (one epoch: the tick 1, not 0.945...)
    ax.grid(alpha=0.3)


def _y_labels_fit(ax: Any, characters: int) -> bool:
    """Whether the y tick labels that ``ax`` will draw have at most ``characters`` characters."""
    low, high = sorted(ax.get_ylim())
    ticks = [t for t in ax.get_yticks() if low <= t <= high]
    return all(len(label) <= characters for label in ax.yaxis.get_major_formatter().format_ticks(ticks))


def training_curves(history: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Loss and accuracy per epoch, train and validation side by side (fixed margins while the
    y tick labels are short, which saves a layout pass at every tracked run's end).

    Example:
        >>> fig = training_curves({"loss": [0.5, 0.2], "val_loss": [0.4, 0.3]})
    """
    fig = ShownFigure(figsize=(10, 3.8))
    _fixed_margins(fig, left=0.8, bottom=0.5, right=0.1, top=0.55 if title else 0.25, wspace=0.25)
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=key, markersize=4)
        _epoch_axis(ax)
        ax.set_ylabel(metric)
        if ax.has_data():
            ax.legend()
    if title:
        fig.suptitle(shorten(title, 80))  # (a dataset folder's path can be longer than the figure)
    if not all(_y_labels_fit(ax, 5) for ax in axes):  # ("0.02995", "250000": wider than the margin)
        fig.set_layout_engine("constrained")
    return fig


def confusion_matrix(
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: Sequence[str],
    images: str = "images",
    title: str = "",
) -> tuple[np.ndarray, Figure]:
    """The confusion matrix (rows: true class, columns: predicted) and its heat map: each cell
    written in it up to 30 classes, a colour bar above that. The x label counts the ``images``
    (``"test images"``, say: what the matrix was computed on); a ``title`` (the model and the
    dataset) goes above the accuracy, its middle cut out where the figure is too narrow for it.

    Example:
        >>> cm, fig = confusion_matrix(np.array([0, 1]), np.array([0, 0]), ["a", "b"])
        >>> cm.tolist()
        [[1, 0], [1, 0]]
    """
    k = len(class_names)
    cm = np.bincount(labels.astype(np.int64) * k + predictions.astype(np.int64), minlength=k * k).reshape(k, k)
    size = min(12.0, 3.0 + 0.45 * k)
    written = k <= 30
    longest = max((len(name) for name in class_names), default=0)
    crowded = k > 10 or longest > 6  # names wider than their column
    fig = ShownFigure(figsize=(size if written else size + 1.2, size))
    if 2 <= k <= 10 and longest <= 3:  # (digits, say) no wider than "WWW"; one class's title needs more room
        # no layout pass: ~65 ms a run waits for
        _fixed_margins(fig, left=0.85, bottom=0.65, right=0.15, top=0.65 if title else 0.4)
    else:
        fig.set_layout_engine("constrained")
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues")
    if written:
        ticks = np.arange(k)
        ax.set_xticks(ticks, class_names, rotation=45 if crowded else 0, ha="right" if crowded else "center")
        ax.set_yticks(ticks, class_names)
        threshold = cm.max() / 2 if cm.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if cm[i, j] > threshold else "black",
                    in_layout=False,  # inside the axes: the layout need not measure 100 texts (~2x faster)
                )
    else:  # (only here: a bar beside the numbers repeats them, and is a third of the drawing a run waits for)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="images")
    accuracy = np.trace(cm) / max(1, cm.sum())
    ax.set_xlabel(f"predicted ({cm.sum():,} {images})")
    ax.set_ylabel("true")
    heading = f"Confusion matrix (accuracy {accuracy:.2%})"
    ax.set_title(f"{shorten(title, int(size * 8))}\n{heading}" if title else heading)
    return cm, fig


def save_confusion_csv(cm: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    """The matrix as CSV with class labels: a header of predicted classes, a true class per row."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, cm):
            writer.writerow([name, *(int(v) for v in row)])


LABEL_WIDTH = 36  # columns of a run's label in the comparison figure (longer ones lose their middle)
CURVE_STYLES = ("-o", "--s", ":^", "-.D")  # the colour cycle (10 colours) with each in turn: 40 runs told apart


def compare_runs(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    finals: Mapping[str, Mapping[str, float]],
    metric: str = "val_accuracy",
    epochs: Mapping[str, Sequence[int]] | None = None,
) -> Figure:
    """Overlaid learning curves of ``metric`` per run, and summary metrics (test and best
    validation accuracy, say) as labelled dots.

    Args:
        curves: run label -> {metric name -> values per epoch} (a label is shown in at most
            ``LABEL_WIDTH`` columns, its middle cut out).
        finals: run label -> {summary metric name -> value}.
        metric: The metric to overlay.
        epochs: run label -> the epoch of each value (default 1, 2, ...; a continued Hyperband
            trial starts later).

    Example:
        >>> fig = compare_runs({"a": {"val_accuracy": [0.9, 0.95]}}, {"a": {"test_accuracy": 0.95}})
    """
    fig = ShownFigure(figsize=(12, 0.9 + max(3.3, 0.45 * len(finals))), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    colours = len(rcParams["axes.prop_cycle"].by_key().get("color", [])) or 1  # (10 unless a style says otherwise)
    for i, (label, series) in enumerate(curves.items()):
        values = series.get(metric) or []
        if values:
            xs = list((epochs or {}).get(label) or range(1, len(values) + 1))
            style = CURVE_STYLES[i // colours % len(CURVE_STYLES)]  # (every colour once, then the next style)
            left.plot(xs, values, style, markersize=3, label=shorten(label, LABEL_WIDTH))
    _epoch_axis(left)
    left.set_ylabel(metric)
    left.set_title(f"{metric} per epoch")
    if left.has_data():  # below the axes, where it hides no curve
        columns = 2 if len(curves) > 2 else 1
        left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=columns, frameon=False)
    _final_dots(right, finals)
    return fig


def _final_dots(ax: Any, finals: Mapping[str, Mapping[str, float]]) -> None:
    """One row per run, one marker per final metric, each value written beside its dot."""
    names = sorted({k for f in finals.values() for k in f})
    labels = list(finals)
    rows = np.arange(len(labels))[::-1]
    markers = "oDs^v"
    for i, name in enumerate(names):
        values = np.array([finals[label].get(name, np.nan) for label in labels], dtype=float)
        offset = (i - (len(names) - 1) / 2) * 0.22
        ax.plot(values, rows + offset, markers[i % len(markers)], label=name, markersize=6)
        for value, y in zip(values, rows + offset):
            if np.isfinite(value):
                ax.annotate(
                    f"{value:.4f}", (value, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=7
                )
    ax.set_yticks(rows, [shorten(label, LABEL_WIDTH) for label in labels], fontsize=8)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    finite = [v for f in finals.values() for v in f.values() if np.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        pad = max(high - low, 1e-3)
        ax.set_xlim(low - 0.3 * pad, high + 0.6 * pad)  # room for the value labels
        if low >= 0.0 and high <= 1.0:  # fractions (accuracies): no tick past 1 in the labels' room
            ax.set_xticks([t for t in ax.get_xticks() if low - 0.3 * pad <= t <= 1.0 + 1e-9])
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("summary metrics (zoomed axis)")
    if names:  # below the axes, where it hides no dot
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=len(names), frameon=False)


_SHOWN: dict[Any, Any] = {}  # (warnings.warn_explicit's registry of the warnings save() passed on)


def save(fig: Figure, path: str) -> str:
    """Saves ``fig`` (100 dpi; the format from the suffix) and returns the path; one line (not
    one warning per character) when the font lacks some of its characters.

    Example:
        >>> save(Figure(), "/tmp/kerascnn-doc-empty.png")
        '/tmp/kerascnn-doc-empty.png'
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", message="Glyph .* missing from font")
        fig.savefig(path, dpi=100)
    missing = [w for w in caught if "missing from font" in str(w.message)]
    for w in caught:  # the others, as they would have come (once per place, by the filters' default)
        if w not in missing:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, registry=_SHOWN)
    if missing:
        codes = sorted({int(m.group(1)) for w in missing if (m := re.search(r"Glyph (\d+)", str(w.message)))})
        shown = " ".join(chr(c) for c in codes[:10]) + (" ..." if len(codes) > 10 else "")
        print(
            f"kerascnn: warning: {path}: the plot's font has no {shown} (drawn as boxes)", file=sys.stderr, flush=True
        )
    return path


def draw_reports(folder: Path | str, spec: Mapping[str, Any]) -> None:
    """A training run's report plots, drawn into ``folder`` from numbers alone: with ``history``
    (and ``title``), the training curves (``plots/training_curves.png``); with ``labels``,
    ``predicted`` and ``class_names``, the confusion matrix (``plots/confusion_matrix.png``, with
    the same ``title``, and ``confusion_matrix.csv``).

    Example:
        >>> draw_reports("/tmp/kerascnn-doc-reports", {"history": {"loss": [0.5, 0.2]}, "title": "demo"})
    """
    folder = Path(folder)
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    if spec.get("history") is not None:
        figure = training_curves(spec["history"], title=spec.get("title", ""))
        save(figure, str(folder / "plots" / "training_curves.png"))
    if spec.get("labels") is not None:
        names = list(spec["class_names"])
        labels, predicted = np.asarray(spec["labels"]), np.asarray(spec["predicted"])
        cm, figure = confusion_matrix(labels, predicted, names, "test images", spec.get("title", ""))
        save(figure, str(folder / "plots" / "confusion_matrix.png"))
        save_confusion_csv(cm, names, folder / "confusion_matrix.csv")
