"""The report figures keep every label inside the image and apart from the others, with fixed
margins (short class names, training curves) as with the layout engine (long names)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from kerascnn.tracking.plots import LABEL_WIDTH, compare_runs, confusion_matrix, training_curves


def _shown_ticks(ax: Any, axis: str) -> list[Any]:
    """The tick labels drawn on one axis (those in its view)."""
    labels, (low, high), at = (
        (ax.get_xticklabels(), sorted(ax.get_xlim()), 0)
        if axis == "x"
        else (ax.get_yticklabels(), sorted(ax.get_ylim()), 1)
    )
    return [t for t in labels if t.get_text() and low <= t.get_position()[at] <= high]


def _assert_readable(fig: Any) -> None:
    """Every label inside the image; no axis label on its tick labels; upright x tick labels
    apart; the right plot's y labels clear of the left plot."""
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    box = lambda artist: artist.get_window_extent(renderer)  # noqa: E731
    texts = [t for t in fig.texts if t.get_text()] + [ax.title for ax in fig.axes if ax.get_title()]
    texts += [legend for ax in fig.axes if (legend := ax.get_legend())]
    for n, ax in enumerate(fig.axes):
        for axis, label in (("x", ax.xaxis.label), ("y", ax.yaxis.label)):
            ticks = _shown_ticks(ax, axis)
            texts += [*ticks, label]
            assert not any(box(t).overlaps(box(label)) for t in ticks), f"axes {n}: the {axis} label on its ticks"
            if axis == "x" and not any(t.get_rotation() for t in ticks):  # (turned ones' boxes overlap, not their text)
                assert not any(box(a).overlaps(box(b)) for a, b in itertools.pairwise(ticks)), f"axes {n}: x ticks"
    for text in texts:
        b = box(text)
        assert b.x0 >= -1 and b.y0 >= -1 and b.x1 <= width + 1 and b.y1 <= height + 1, (text, b)
    if len(fig.axes) == 2 and fig.get_layout_engine() is None:  # side by side
        right = [*_shown_ticks(fig.axes[1], "y"), fig.axes[1].yaxis.label]
        assert all(box(t).x0 > fig.axes[0].get_window_extent().x1 for t in right)


@pytest.mark.parametrize(
    "names",
    [
        [str(i) for i in range(10)],  # MNIST: fixed margins
        ["WWW"] * 10,  # the widest names that get fixed margins
        ["WWW", "W"],
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        ["WWWW", "a"],  # one letter too many: the layout engine
        ["a"],  # one class: the title needs the layout engine's room
    ],
)
@pytest.mark.parametrize("title", ["", "mnist_cnn on mnist", "resnet50 on /home/someone/data/a_long_image_folder_name"])
def test_confusion_matrix_labels_are_inside_and_apart(names, title):
    labels = np.arange(10000) % len(names)
    _, fig = confusion_matrix(labels, labels[::-1], names, "test images", title)
    assert fig.axes[0].get_xlabel() == "predicted (10,000 test images)"
    assert fig.axes[0].get_title().startswith(title[:12])
    assert (fig.get_layout_engine() is None) == (2 <= len(names) <= 10 and max(map(len, names)) <= 3)
    _assert_readable(fig)


@pytest.mark.parametrize(
    "history, title, fixed",
    [
        (
            {"loss": [0.22, 0.03], "val_loss": [0.05, 0.034], "accuracy": [0.93, 0.99], "val_accuracy": [0.98, 0.99]},
            "",
            True,
        ),
        ({"loss": [1234567.0, 2.5], "accuracy": [0.990401, 0.990405, 0.990402]}, "mnist_cnn on mnist", True),
        ({"loss": [0.5]}, "resnet50 on a_long_image_folder_name_for_a_dataset", True),
        ({"loss": [0.5]}, "resnet50 on /home/someone/" + "data/" * 20, True),  # cut in the middle
        ({"loss": [0.0301, 0.0299, 0.0302]}, "", False),  # a plateau: ticks like 0.02995
        ({"loss": [0.0265], "val_loss": [0.026526]}, "one epoch", False),
        ({"loss": [250000.0, 50000.0]}, "", False),
        ({"loss": [-0.0012, -0.011]}, "", False),  # "−0.012"
    ],
)
def test_training_curves_labels_are_inside_and_apart(history, title, fixed):
    fig = training_curves(history, title)
    assert (fig.get_layout_engine() is None) == fixed  # fixed margins: the run's end waits for no layout pass
    _assert_readable(fig)
    assert all(float(t.get_text().replace("−", "-")).is_integer() for t in _shown_ticks(fig.axes[0], "x"))


def test_compare_keeps_long_run_names_readable():
    labels = [f"a-rather-long-experiment-run-name-number-{i:02d} (abcdef{i:02d})" for i in range(8)]
    curves = {label: {"val_accuracy": [0.9 + 0.01 * i, 0.95 + 0.004 * i]} for i, label in enumerate(labels)}
    finals = {
        label: {"test_accuracy": 0.885 + 0.002 * i, "best_val_accuracy": 0.89 + 0.0015 * i}
        for i, label in enumerate(labels)
    }
    fig = compare_runs(curves, finals)
    _assert_readable(fig)  # the names whole pushed the legend and the title out, and the ticks together
    shown = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert all(len(t) <= LABEL_WIDTH and "~" in t for t in shown) and shown[0].endswith("-00 (abcdef00)")


def test_a_notebook_shows_each_figure_inline_without_matplotlib_inline():
    """IPython's own formatters, as a fresh kernel has them (no ``%matplotlib inline``): a PNG, not
    ``<Figure size ...>``."""
    from IPython.core.formatters import DisplayFormatter

    labels = np.array([0, 1, 1])
    figures = [
        training_curves({"loss": [0.5, 0.2], "val_loss": [0.4, 0.3]}),
        confusion_matrix(labels, labels, ["a", "b"])[1],
        compare_runs({"run (12345678)": {"val_accuracy": [0.9, 0.95]}}, {"run (12345678)": {"test_accuracy": 0.96}}),
    ]
    for fig in figures:
        shown, _ = DisplayFormatter().format(fig)
        assert shown["image/png"][:4] == b"\x89PNG", sorted(shown)
