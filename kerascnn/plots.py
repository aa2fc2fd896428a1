"""Matplotlib figures for runs: training curves, confusion matrix, run comparison.

Functions return ``matplotlib.figure.Figure`` objects (no pyplot state), which
notebooks display and the CLI saves as PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def training_curves(history: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Loss and accuracy per epoch, train and validation side by side.

    Example:
        >>> fig = training_curves({"loss": [0.5, 0.2], "val_loss": [0.4, 0.3]})
    """
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=key, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray, Figure]:
    """The confusion matrix (rows: true class, columns: predicted) and its heat map.

    Example:
        >>> cm, fig = confusion_matrix(np.array([0, 1]), np.array([0, 0]), ["a", "b"])
        >>> cm.tolist()
        [[1, 0], [1, 0]]
    """
    k = len(class_names)
    cm = np.bincount(labels.astype(np.int64) * k + predictions.astype(np.int64), minlength=k * k).reshape(k, k)
    size = min(12, 2.5 + 0.45 * k)
    fig = Figure(figsize=(size, size * 0.85), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    if k <= 30:
        ticks = np.arange(k)
        ax.set_xticks(ticks, class_names, rotation=90 if k > 10 else 0)
        ax.set_yticks(ticks, class_names)
        threshold = cm.max() / 2 if cm.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > threshold else "black")  # fmt: skip
    accuracy = np.trace(cm) / max(1, cm.sum())
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (accuracy {accuracy:.2%})")
    return cm, fig


def compare_runs(curves: Mapping[str, Mapping[str, Sequence[float]]], finals: Mapping[str, Mapping[str, float]],
                 metric: str = "val_accuracy") -> Figure:
    """Overlaid learning curves of ``metric`` per run, and a bar chart of final metrics.

    Args:
        curves: run label -> {metric name -> values per epoch}.
        finals: run label -> {final metric name -> value}.
        metric: The metric to overlay.

    Example:
        >>> fig = compare_runs({"a": {"val_accuracy": [0.9, 0.95]}}, {"a": {"test_accuracy": 0.95}})
    """
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    for label, series in curves.items():
        values = series.get(metric) or []
        if values:
            left.plot(range(1, len(values) + 1), values, "-o", markersize=3, label=label)
    left.set_xlabel("epoch")
    left.set_ylabel(metric)
    left.set_title(f"{metric} per epoch")
    left.grid(alpha=0.3)
    if left.has_data():
        left.legend(fontsize=8)
    names = sorted({k for f in finals.values() for k in f})
    labels = list(finals)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        values = [finals[label].get(name, np.nan) for label in labels]
        bars = right.bar(np.arange(len(labels)) + i * width, values, width, label=name)
        right.bar_label(bars, fmt="%.4f", fontsize=7, rotation=90, padding=2)
    right.set_xticks(np.arange(len(labels)) + width * (len(names) - 1) / 2, labels, rotation=20, ha="right",
                     fontsize=8)  # fmt: skip
    right.set_title("final metrics")
    if names:
        right.legend(fontsize=8)
    _zoom_bars(right, [v for f in finals.values() for v in f.values()])
    return fig


def _zoom_bars(ax: Any, values: Sequence[float]) -> None:
    finite = [v for v in values if np.isfinite(v)]
    if finite and min(finite) > 0.5 and max(finite) <= 1.0:  # accuracies: zoom in on the top
        ax.set_ylim(max(0.0, min(finite) - (1 - min(finite)) * 0.5 - 0.01), 1.0)


def save(fig: Figure, path: str) -> str:
    """Saves ``fig`` as a PNG (100 dpi) and returns the path."""
    fig.savefig(path, dpi=100)
    return path
