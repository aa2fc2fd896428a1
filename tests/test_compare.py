"""`kerascnn compare`: curves and final metrics of real runs, through the shared query layer."""

from __future__ import annotations

import json
from pathlib import Path

import IPython.lib.pretty
import matplotlib
import pytest
from cycler import cycler

import kerascnn
from kerascnn.tracking.comparison import compare
from tests.helpers import assert_usage_error, data_dir, run_cli


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two real runs of different lengths in one experiment."""
    data_dir()
    root = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    common = dict(train_samples=400, test_samples=200, tracking_uri=uri, experiment="cmp", verbose=0)
    a = kerascnn.train("mnist_cnn", "mnist", epochs=3, run_name="cnn-3", **common)
    b = kerascnn.train("lenet5", "mnist", epochs=2, run_name="lenet-2", **common)
    return uri, a, b, root


def test_compare_runs_by_id(store):
    uri, a, b, root = store
    result = compare([b.run_id, a.run_id], metric="val_accuracy", output=root / "figures" / "c.png", tracking_uri=uri)
    assert [r.run_id for r in result.rows] == [b.run_id, a.run_id]
    assert len(result.curves[a.run_id]) == 3 and len(result.curves[b.run_id]) == 2
    assert result.curves[a.run_id] == pytest.approx(a.history["val_accuracy"])
    png = Path(result.output).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    axes = result.figure.axes
    assert len(axes[0].lines) == 2 and axes[0].get_ylabel() == "val_accuracy"
    dots = axes[1]  # summary metrics as dots on a zoomed axis, not bars cut off above zero
    assert len(dots.lines) == 2 and len(dots.texts) == 4  # (test_accuracy, best_val_accuracy) x 2 runs, labelled
    assert [t.get_text() for t in dots.get_yticklabels()] == [f"lenet-2 ({b.run_id[:8]})", f"cnn-3 ({a.run_id[:8]})"]
    assert all(tick == int(tick) for tick in axes[0].get_xticks())  # epochs are whole numbers
    assert max(dots.get_xticks()) <= 1.0  # no accuracy tick past 1 in the value labels' room
    assert dots.get_legend().get_bbox_to_anchor().y0 < dots.get_window_extent().y0  # the legend hides no dot
    table = result.to_table()
    assert "final val_accuracy" in table.splitlines()[0] and a.run_id[:12] in table
    assert repr(result) == f"Comparison(metric='val_accuracy', runs=2, output={result.output!r})"
    assert IPython.lib.pretty.pretty(result) == table  # a notebook cell ending in compare(...) shows the table
    assert axes[0].get_legend().get_bbox_to_anchor().y1 < axes[0].get_window_extent().y0  # below the curves
    with pytest.raises(ValueError, match=r"Give run ids or an experiment, not both. Received: experiment='nope'"):
        compare([a.run_id], experiment="nope", tracking_uri=uri)  # (the experiment was ignored)


def test_compare_cli_by_experiment_with_json_and_png(store):
    uri, a, b, root = store
    out = root / "exp.png"
    result = run_cli(
        "compare",
        "--experiment",
        "cmp",
        "--metric",
        "loss",
        "--output",
        str(out),
        "--tracking-uri",
        uri,
        "--json",
        check=True,
    )
    data = json.loads(result.stdout)
    assert data["metric"] == "loss" and data["output"] == str(out) and out.is_file()
    assert {r["run_id"] for r in data["runs"]} == {a.run_id, b.run_id}
    assert all(len(r["curve"]) in (2, 3) for r in data["runs"])
    text = run_cli("compare", a.run_id[:12], b.run_id[:12], "--tracking-uri", uri, check=True).stdout  # short ids
    assert "final val_accuracy" in text and "mnist_cnn" in text and "lenet5" in text
    everything = json.loads(run_cli("compare", "--tracking-uri", uri, "--json", check=True).stdout)  # as `runs`
    runs = json.loads(run_cli("runs", "--tracking-uri", uri, "--json", check=True).stdout)
    assert [r["run_id"] for r in everything["runs"]] == [r["run_id"] for r in runs]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["compare", "0123"], "Received: run_id='0123'"),
        (["compare", "--experiment", "nope"], "Received: experiment='nope'"),
        (["compare", "0123456789abcdef"], "Received: run_id='0123456789abcdef'"),
        (["compare", "--experiment", "cmp", "--metric", "f1"], "Received: metric='f1'"),
        (
            ["compare", "--experiment", "cmp", "--metric", "val_f1"],  # (the runs of validation_split=0 have no val_)
            "log no val_ metrics: --metric f1 compares theirs). Received: metric='val_f1'",
        ),
        (["compare", "--experiment", "cmp", "--output", "plot.jpg"], "Received: output='plot.jpg'"),
        (["compare", "--experiment", "cmp", "--output", "{db}/p.png"], "`output` goes through a file"),
        (["compare", "--experiment", "cmp", "--limit", "0"], "Received: limit=0"),
    ],
)
def test_compare_bad_input(store, args, fragment):
    uri = store[0]
    args = [a.replace("{db}", uri[10:]) for a in args]  # (a path under the store's file)
    assert_usage_error(run_cli(*args, "--tracking-uri", uri), fragment)


def test_a_continued_hyperband_trial_is_drawn_at_its_own_epochs(tracking_uri):
    from mlflow.entities import Metric

    from kerascnn.tracking import store

    client = store.client(tracking_uri)
    run = client.create_run(store.ensure_experiment(tracking_uri, "hb"), run_name="trial-06").info.run_id
    client.log_batch(run, metrics=[Metric("val_accuracy", v, 0, step) for step, v in ((2, 0.97), (3, 0.98))])
    client.set_terminated(run)
    result = compare([run], tracking_uri=tracking_uri)
    assert result.curves[run] == [0.97, 0.98] and result.epochs[run] == [3, 4]  # epochs 3 and 4, not 1 and 2
    assert list(result.figure.axes[0].lines[0].get_xdata()) == [3, 4]
    assert result.to_json()["runs"][0]["epochs"] == [3, 4]


def test_compare_and_leaderboard_refuse_bad_types_with_one_line(tracking_uri):
    with pytest.raises(ValueError, match=r"^`output` must be a file path. Received: output=123$"):
        kerascnn.compare(output=123, tracking_uri=tracking_uri)
    with pytest.raises(ValueError, match=r"Received: include_trials='yes'$"):
        kerascnn.leaderboard(tracking_uri=tracking_uri, include_trials="yes")
    with pytest.raises(
        ValueError, match=r"^`experiment` must be a non-empty name. Received: experiment=\['kerascnn'\]$"
    ):
        kerascnn.leaderboard(["kerascnn"], tracking_uri=tracking_uri)  # (not MLflow's SQL error)
    with pytest.raises(ValueError, match=r"^`run_ids` must name at least one run, or be None. Received: run_ids=\[\]$"):
        kerascnn.compare([], tracking_uri=tracking_uri)  # (not every run of every experiment)


def test_compare_on_a_missing_or_empty_store_names_the_store(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    missing = run_cli("compare", "--tracking-uri", uri)
    assert_usage_error(missing, f"store (it does not exist yet); train one first. Received: tracking_uri='{uri}'")
    assert not (tmp_path / "mlruns").exists()  # (reading created nothing)
    (tmp_path / "mlruns").mkdir()
    mlflow.MlflowClient(uri).create_experiment("empty")  # a store with no runs
    empty = run_cli("compare", "--tracking-uri", uri)
    assert_usage_error(empty, f"in the store; train one first. Received: tracking_uri='{uri}'")


def test_many_runs_and_wide_names_stay_readable(tmp_path, capsys):
    """Found with a store of 2,200 runs: curves 11 and up took the colours of 1 and up, a CJK
    name pushed the table's later columns right, matplotlib warned once per missing glyph, and
    `compare` took the best 10 runs without saying so."""
    from mlflow.tracking import MlflowClient

    from kerascnn.console import columns

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(uri)
    experiment = client.create_experiment("many")
    for i in range(12):
        run = client.create_run(experiment, run_name="重みテスト" if i == 0 else f"plain-{i}").info.run_id
        for step, value in enumerate((0.5, 0.6 + i / 100)):
            client.log_metric(run, "val_accuracy", value, step=step)
        client.log_metric(run, "test_accuracy", 0.9 - i / 100)
        client.set_terminated(run)
    result = compare(experiment="many", limit=11, output=tmp_path / "many.png", tracking_uri=uri)
    err = capsys.readouterr().err.splitlines()
    assert "kerascnn: comparing the best 11 of 12 runs (--limit, limit=, takes more)" in err
    lacking = sorted(c for c in set("重みテスト") if _font_lacks(c))  # (as this machine's font implies)
    shown = f"kerascnn: warning: {tmp_path / 'many.png'}: the plot's font has no {' '.join(lacking)} (drawn as boxes)"
    assert [line for line in err if "font has no" in line] == ([shown] if lacking else [])  # one line, not one a glyph
    styles = [line.get_linestyle() for line in result.figure.axes[0].lines]
    assert styles == ["-"] * 10 + ["--"]
    with matplotlib.rc_context({"axes.prop_cycle": cycler(color=list("rgbcmyk"))}):  # a style of 7 colours
        seven = compare(experiment="many", limit=11, tracking_uri=uri)
    assert [line.get_linestyle() for line in seven.figure.axes[0].lines] == ["-"] * 7 + ["--"] * 4
    table = result.to_table().splitlines()
    starts = {columns(line[: line.index("FINISHED")]) for line in table[1:]}
    assert len(starts) == 1 and len({columns(line) for line in table}) == 1  # every column lines up


def _font_lacks(character: str) -> bool:
    """Whether matplotlib's default font has no glyph for ``character`` (as on most machines, for CJK)."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    return FT2Font(font_manager.findfont(font_manager.FontProperties())).get_char_index(ord(character)) == 0
