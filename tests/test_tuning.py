"""KerasTuner searches: nested MLflow runs, resume, failures, SIGKILL, chief/worker distribution."""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import kerascnn
from kerascnn.models import create_model
from kerascnn.tuning.spaces import variant_fixed
from tests.helpers import (
    all_runs,
    assert_usage_error,
    child_runs,
    free_port,
    make_image_folder,
    run_cli,
    wait_for,
)

TINY = dict(train_samples=300, epochs=1, precision="float32")  # float32 on every CPU: tests do not depend on its flags


pytestmark = pytest.mark.usefixtures("in_a_scratch_folder")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_random_search_logs_a_parent_and_one_nested_run_per_trial(tracking_uri, tmp_path):
    result = kerascnn.tune(
        "mnist_cnn",
        "mnist",
        tuner="random",
        max_trials=3,
        tracking_uri=tracking_uri,
        directory=tmp_path / "searches",
        search_name="s1",
        progress=False,
        **TINY,
    )
    client = MlflowClient(tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    p = parent.data.params
    assert (p["search_name"], p["tuner"], p["objective"], p["family"], p["epochs"]) == (
        "s1",
        "random",
        "val_accuracy",
        "mnist_cnn",
        "1",
    )
    assert {h["name"] for h in json.loads(p["space"])} == {"learning_rate", "filters", "dense_units", "dropout"}
    assert parent.data.tags["kerascnn.max_trials"] == "3"
    # the speed settings follow train's one rule, logged with their reasons
    assert (p["precision"], p["dtype_policy"], p["jit_compile"], p["steps_per_execution"]) == (
        "float32",
        "float32",
        "False",
        "8",
    )
    assert parent.data.tags["kerascnn.why.precision"] == "asked for float32"
    assert "kerascnn.why.strategy" not in parent.data.tags  # trials train on one device each
    assert parent.data.tags["kerascnn.cpu_flags"] == " ".join(sorted(kerascnn.device.machine().cpu_flags))
    children = child_runs(tracking_uri, result.parent_run_id)
    assert len(children) == 3 == len(result.trials)
    for run, trial in zip(children, result.trials):
        assert run.info.status == "FINISHED"
        tags = run.data.tags
        assert tags["kerascnn.trial_id"] == trial["trial_id"] and tags["kerascnn.worker"] == "tuner0"
        assert tags["kerascnn.trial_status"] == "COMPLETED" and trial["run_id"] == run.info.run_id
        assert (tags["kerascnn.dtype_policy"], tags["kerascnn.jit_compile"]) == ("float32", "False")
        assert tags["kerascnn.cpu_flags"] == parent.data.tags["kerascnn.cpu_flags"]
        assert dict(run.data.params) == {k: str(v) for k, v in trial["hyperparameters"].items()}
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [0]
        assert run.data.metrics["final_val_accuracy"] == pytest.approx(trial["score"])
    listed = run_cli("runs", "--trials", "--tracking-uri", tracking_uri, check=True).stdout.splitlines()
    trial_lines = [line for line in listed if "s1-trial-" in line]  # each with its precision and epochs
    assert len(trial_lines) == 3 and all(line.split()[5:7] == ["fp32", "1"] for line in trial_lines)
    best = result.best
    assert best["score"] == max(t["score"] for t in result.trials)
    assert "trials=" not in repr(result) and f"best={best!r}" in repr(result)  # a notebook's few lines, not every trial
    compared = kerascnn.compare([result.parent_run_id[:8]], limit=2, tracking_uri=tracking_uri)  # a search: its trials
    best_two = sorted(result.trials, key=lambda t: -t["score"])[:2]
    assert [r.run_id for r in compared.rows] == [t["run_id"] for t in best_two]
    assert {r.parent_run_id for r in compared.rows} == {result.parent_run_id}
    assert parent.data.tags["kerascnn.best_trial_id"] == best["trial_id"]
    assert parent.data.tags["kerascnn.best_run_id"] == best["run_id"]
    assert all(parent.data.tags[f"best.{k}"] == str(v) for k, v in best["hyperparameters"].items())
    assert parent.data.metrics["best_score"] == pytest.approx(best["score"])
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"leaderboard.csv", "best_hyperparameters.json", "best_model.keras"} <= artifacts
    board = Path(client.download_artifacts(result.parent_run_id, "leaderboard.csv")).read_text().splitlines()
    assert board[0].startswith("rank,trial_id,run_id,status,score") and board[1].split(",")[1] == best["trial_id"]
    # only the best trial's checkpoint stays on disk
    checkpoints = [f for f in _tree(tmp_path / "searches" / "s1") if "checkpoint" in f]
    assert checkpoints == [f"trial_{best['trial_id']}/checkpoint.weights.h5"]
    assert isinstance(result.best_model, keras.Model)


def test_rerun_resumes_under_the_same_parent_and_runs_only_new_trials(tracking_uri, tmp_path, capsys):
    common = dict(tuner="random", tracking_uri=tracking_uri, directory=tmp_path / "s", progress=False, **TINY)
    first = kerascnn.tune("mnist_cnn", "mnist", max_trials=2, **common)
    again = kerascnn.tune("mnist_cnn", "mnist", max_trials=2, register_model="tuned", **common)  # it had finished
    for result in (first, again):  # the best model in memory is a kit model, as its file is (the rerun's too)
        assert kerascnn.loading.known_info(result.best_model)["class_names"] == [str(d) for d in range(10)]
    kerascnn.tune("mnist_cnn", "mnist", max_trials=2, register_model="tuned", alias="best", **common)
    client = MlflowClient(tracking_uri)
    experiment = client.get_run(first.parent_run_id).info.experiment_id
    (logged,) = client.search_logged_models([experiment], f"source_run_id = '{first.parent_run_id}'")  # logged once
    assert logged.name == "best_model" and logged.tags["kerascnn.trial_id"] == first.best["trial_id"]
    versions = client.search_model_versions("name = 'tuned'")
    assert [(int(v.version), v.source) for v in versions] == [(1, f"models:/{logged.model_id}")]  # registered once
    assert {k: int(v) for k, v in client.get_registered_model("tuned").aliases.items()} == {"best": 1}
    time.sleep(3)  # a pause between sessions is not the search's time
    more = kerascnn.tune("mnist_cnn", "mnist", max_trials=4, **common)
    assert first.parent_run_id == again.parent_run_id == more.parent_run_id
    assert "Reloading Tuner" not in capsys.readouterr().out  # KerasTuner's own line: the kit says what was done
    scores = client.get_metric_history(first.parent_run_id, "best_score")
    assert sorted(m.step for m in scores) == [2, 4]  # a point per session that ran trials
    parent = MlflowClient(tracking_uri).get_run(first.parent_run_id)
    active = float(parent.data.tags["kerascnn.active_seconds"])
    assert 0 < active < (parent.info.end_time - parent.info.start_time) / 1000 - 2.5
    (row,) = [r for r in kerascnn.leaderboard(tracking_uri=tracking_uri) if r.run_id == first.parent_run_id]
    assert row.duration_s == active
    children = child_runs(tracking_uri, first.parent_run_id)
    assert sorted(r.data.tags["kerascnn.trial_id"] for r in children) == ["0", "1", "2", "3"]
    assert all(r.info.status == "FINISHED" for r in children)
    assert [t["run_id"] for t in more.trials[:2]] == [t["run_id"] for t in first.trials]
    assert MlflowClient(tracking_uri).get_run(first.parent_run_id).data.tags["kerascnn.max_trials"] == "4"
    kerascnn.tune("mnist_cnn", "mnist", max_trials=2, **common)  # a smaller budget runs nothing, undoes nothing
    assert MlflowClient(tracking_uri).get_run(first.parent_run_id).data.tags["kerascnn.max_trials"] == "4"
    fresh = kerascnn.tune("mnist_cnn", "mnist", max_trials=1, overwrite=True, **common)
    assert fresh.parent_run_id != first.parent_run_id and len(fresh.trials) == 1


def test_a_search_stopped_before_its_first_trial_goes_on_under_the_same_parent(tracking_uri, tmp_path, monkeypatch):
    from kerascnn.tuning import search as search_module

    def ctrl_c(search):  # a Ctrl-C after the parent run is opened, before KerasTuner creates a trial
        raise KeyboardInterrupt

    common = dict(tuner="random", max_trials=1, tracking_uri=tracking_uri, directory=tmp_path / "s", progress=False)
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(search_module, "_run", ctrl_c)
        kerascnn.tune("mnist_cnn", "mnist", **common, **TINY)
    (stopped,) = all_runs(tracking_uri)
    assert stopped.info.status == "FAILED"
    result = kerascnn.tune("mnist_cnn", "mnist", **common, **TINY)  # the same call: it goes on
    assert result.parent_run_id == stopped.info.run_id and len(result.trials) == 1
    assert [r.info.status for r in all_runs(tracking_uri)] == ["FINISHED", "FINISHED"]  # the parent, its trial
    fresh = kerascnn.tune("mnist_cnn", "mnist", overwrite=True, **common, **TINY)  # asked: a new parent
    assert fresh.parent_run_id != result.parent_run_id


def test_a_folder_search_resumes_whether_the_folder_is_given_relative_or_absolute(tracking_uri, tmp_path, monkeypatch):
    make_image_folder(tmp_path / "animals", classes=("cat", "dog"), per_class=8)
    common = dict(tracking_uri=tracking_uri, directory=tmp_path / "s", progress=False, **TINY)
    first = kerascnn.tune("lenet5", "animals", max_trials=1, **common)
    more = kerascnn.tune("lenet5", str(tmp_path / "animals"), max_trials=2, **common)
    assert first.parent_run_id == more.parent_run_id and len(more.trials) == 2
    monkeypatch.chdir(tmp_path / "animals")
    here = kerascnn.tune("lenet5", ".", max_trials=2, **common)  # the same search, named after the folder
    assert here.search_name == "lenet5-animals-random" and here.parent_run_id == first.parent_run_id
    logged = MlflowClient(tracking_uri).get_run(first.parent_run_id).data.params["dataset"]
    assert logged == str((tmp_path / "animals").resolve())  # what was run, wherever the next command runs from


def test_a_hyperband_search_extended_after_it_ended_promotes_from_its_open_brackets(tracking_uri, tmp_path):
    """The first session ends with a bracket open (cut short by max_trials); the next one promotes
    trials of it that were not the best, so their checkpoints must have stayed."""
    common = dict(TINY, tuner="hyperband", tracking_uri=tracking_uri, directory=tmp_path / "s", progress=False)
    common.update(epochs=4)
    kerascnn.tune("lenet5", "mnist", max_trials=4, **common)
    more = kerascnn.tune("lenet5", "mnist", max_trials=20, **common)  # the plan's 10
    assert len(more.trials) == 10 and {t["status"] for t in more.trials} == {"COMPLETED"}
    kept = [f for f in _tree(tmp_path / "s") if "checkpoint" in f]
    assert kept == [f"{more.search_name}/trial_{more.best['trial_id']}/checkpoint.weights.h5"]  # all brackets closed


def test_a_grid_search_that_has_not_walked_its_grid_is_not_resumed(tracking_uri, tmp_path):
    """KerasTuner cannot resume a grid search (keras-team/keras-tuner#1055): refused in one line, no run made."""
    fixed = {"learning_rate": 0.003, "filters": 16, "dense_units": 32}  # the grid: dropout's 3 values
    common = dict(TINY, tuner="grid", fixed=fixed, tracking_uri=tracking_uri, directory=tmp_path / "s", progress=False)
    first = kerascnn.tune("mnist_cnn", "mnist", max_trials=2, **common)
    assert kerascnn.tune("mnist_cnn", "mnist", max_trials=2, **common).parent_run_id == first.parent_run_id  # done
    with pytest.raises(ValueError, match=r"grid search with 2 of 3 trials done.*#1055.*Received: tuner='grid'"):
        kerascnn.tune("mnist_cnn", "mnist", max_trials=5, **common)
    assert len(all_runs(tracking_uri)) == 3  # the parent and its 2 trials
    walked = kerascnn.tune("mnist_cnn", "mnist", max_trials=5, overwrite=True, **common)
    assert len(walked.trials) == 3


@pytest.mark.parametrize("tuner", ["hyperband", "bayesian", "grid"])
def test_every_tuner_runs_tracked_trials(tuner, tracking_uri, tmp_path):
    epochs = 3 if tuner == "hyperband" else 1
    result = kerascnn.tune(
        "lenet5",
        "mnist",
        tuner=tuner,
        max_trials=3,
        epochs=epochs,
        train_samples=300,
        tracking_uri=tracking_uri,
        directory=tmp_path / "s",
        progress=False,
    )
    children = child_runs(tracking_uri, result.parent_run_id)
    assert len(children) == len(result.trials) == 3
    assert all(r.info.status == "FINISHED" for r in children)
    if tuner == "grid":  # the grid walks the space in order
        assert len({json.dumps(t["hyperparameters"], sort_keys=True) for t in result.trials}) == 3
    if tuner == "hyperband":
        params = [r.data.params for r in children]
        assert all("tuner/epochs" in p for p in params)
    checkpoints = [f for f in _tree(tmp_path / "s") if "checkpoint" in f]
    best = f"{result.search_name}/trial_{result.best['trial_id']}/checkpoint.weights.h5"
    if tuner == "hyperband":  # with those of the brackets max_trials cut short (a rerun goes on with them)
        assert best in checkpoints and len(checkpoints) == 3
    else:
        assert checkpoints == [best]


@pytest.mark.parametrize(
    "plan,line",
    [
        (("random", 4, None, 1, 0), "random search of up to 4 trials\n"),
        (("random", 4, 36, 1, 0), "random search of up to 4 trials\n"),
        (("random", 5, 2, 1, 0), "random search of up to 2 trials (the space has 2 combinations)\n"),
        (("random", 6, None, 1, 2), "random search of up to 6 trials, 2 done before"),
        (("random", 2, None, 1, 6), "random search of up to 2 trials, 6 done before; a limit of 2 runs no more"),
        (("random", 6, None, 1, 6), "random search of up to 6 trials, 6 done before; nothing left to run\n"),
        (("grid", 5, 3, 1, 0), "grid search of up to 3 trials (the grid has 3 combinations)"),
        (("grid", 2, 3, 1, 0), "grid search of up to 2 trials (the grid has 3 combinations, of which the first 2 run)"),
        (("hyperband", 12, 2, 2, 0), "hyperband search of up to 2 trials (hyperband with 2 epochs plans 2 trials;"),
        (
            ("hyperband", 3, 1, 1, 1),
            "hyperband search of up to 1 trial (hyperband with 1 epoch plans 1 trial; more epochs give more "
            "brackets), 1 done before; nothing left to run\n",
        ),
    ],
)
def test_a_search_says_what_it_will_run(plan, line, capsys):
    from kerascnn.tuning.display import Display

    Display("val_accuracy", "tuner0").plan(*plan)
    assert capsys.readouterr().out.startswith(f"kerascnn: {line}")


def test_trial_lines_say_which_trial_goes_on_and_show_no_score_for_a_failed_one(capsys):
    import keras_tuner as kt

    from kerascnn.tuning.display import Display

    hp = kt.HyperParameters()
    hp.values = {"filters": 8, "tuner/epochs": 4, "tuner/trial_id": "0003"}
    display = Display("val_accuracy", "tuner0")
    display.trial_started("0007", hp.values)
    display.trial_ended(kt.engine.trial.Trial(hp, trial_id="0007", status="FAILED", message="boom"), None)
    started, ended = capsys.readouterr().out.splitlines()
    assert started == "kerascnn: trial 0007 [tuner0] {'filters': 8} (continues trial 0003)"
    assert ended.startswith("kerascnn: trial 0007 [tuner0] FAILED 0.0s {'filters': 8} run - (boom)"), ended


def nan_or_fine(hp, *, input_shape, num_classes):
    """A custom space: one learning rate diverges (NaN loss), the other trains."""
    model = create_model("mnist_cnn", input_shape=input_shape, num_classes=num_classes, filters=8)
    rate = hp.Choice("learning_rate", [1e12, 1e-3])
    model.compile(keras.optimizers.SGD(rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_a_build_that_declares_no_hyperparameter_is_refused_as_such(tracking_uri, tmp_path):
    def fixed(hp, *, input_shape, num_classes):
        return create_model("lenet5", input_shape=input_shape, num_classes=num_classes)

    with pytest.raises(ValueError, match=r"declares no hyperparameter to tune\. Received: build=<function fixed>$"):
        kerascnn.tune(build=fixed, dataset="mnist", tracking_uri=tracking_uri, directory=tmp_path / "s", **TINY)
    assert not all_runs(tracking_uri)


def raises_in_fit(hp, *, input_shape, num_classes):
    """A custom space whose training raises an ordinary error: KerasTuner retries such a trial."""
    model = create_model("mnist_cnn", input_shape=input_shape, num_classes=num_classes, filters=8)
    hp.Choice("learning_rate", [1e-3])

    def loss(y_true, y_pred):
        raise RuntimeError("boom")

    model.compile("adam", loss=loss)
    return model


def unlucky_start(hp, *, input_shape, num_classes):
    """A custom space whose training fails from the search's seed (0), not from the next: NumPy's first draw is 0.549
    after seed 0, 0.417 after seed 1."""
    hp.Choice("learning_rate", [1e-3])
    unlucky = np.random.rand() > 0.5
    model = create_model("mnist_cnn", input_shape=input_shape, num_classes=num_classes, filters=8)

    def loss(y_true, y_pred):
        if unlucky:
            raise RuntimeError("an unlucky start")
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

    model.compile("adam", loss=loss, metrics=["accuracy"])
    return model


def test_a_retry_starts_from_the_next_seed(tracking_uri, tmp_path, capsys):
    """The same seed would fail the same way: a retry that repeated the first run could never help.
    (And the caller's random generators are left as they were, though the trials drew from them.)"""
    np.random.seed(7), random.seed(7)
    result = kerascnn.tune(
        build=unlucky_start, dataset="mnist", max_trials=1, max_retries_per_trial=1, tracking_uri=tracking_uri,
        directory=tmp_path / "s", seed=0, **TINY,
    )  # fmt: skip
    assert re.search(r"trial 0 \[tuner0\] FAILED, to be retried .*an unlucky start", capsys.readouterr().out)
    assert [t["status"] for t in result.trials] == ["COMPLETED"]
    assert np.random.rand() == np.random.RandomState(7).rand() and random.random() == random.Random(7).random()


def test_a_retried_trial_says_so_in_its_own_line(tracking_uri, tmp_path, capsys):
    with pytest.raises(kerascnn.SearchFailed, match=r"no trial completed: 1 of 1 failed; last trial: .*boom"):
        kerascnn.tune(
            build=raises_in_fit, dataset="mnist", max_trials=1, max_retries_per_trial=1,
            tracking_uri=tracking_uri, directory=tmp_path / "s", **TINY,
        )  # fmt: skip
    out = capsys.readouterr().out
    assert "retries left" not in out  # (KerasTuner's own line)
    assert re.search(r"trial 0 \[tuner0\] FAILED, to be retried .*boom", out) and "INVALID" not in out
    assert len(re.findall(r"trial 0 \[tuner0\] FAILED \d", out)) == 1  # the second attempt, the last


def test_a_nan_trial_fails_with_its_reason_and_the_search_goes_on(tracking_uri, tmp_path):
    result = kerascnn.tune(
        build=nan_or_fine,
        dataset="mnist",
        tuner="grid",
        max_trials=2,
        epochs=2,
        train_samples=300,
        tracking_uri=tracking_uri,
        directory=tmp_path / "s",
        progress=False,
    )
    by_lr = {t["hyperparameters"]["learning_rate"]: t for t in result.trials}
    assert by_lr[1e12]["status"] == "FAILED" and by_lr[1e-3]["status"] == "COMPLETED"
    failed = MlflowClient(tracking_uri).get_run(by_lr[1e12]["run_id"])
    assert failed.info.status == "FAILED" and re.search("loss became (nan|inf)", failed.data.tags["kerascnn.failure"])
    assert result.best["trial_id"] == by_lr[1e-3]["trial_id"]
    assert MlflowClient(tracking_uri).get_run(result.parent_run_id).info.status == "FINISHED"


def test_a_val_loss_search_picks_the_lowest_loss_and_lists_its_trials_val_accuracy(tracking_uri, tmp_path):
    result = kerascnn.tune(
        "lenet5", "mnist", objective="val_loss", max_trials=2, tracking_uri=tracking_uri,
        directory=tmp_path / "s", progress=False, **TINY,
    )  # fmt: skip
    client = MlflowClient(tracking_uri)
    scores = {t["trial_id"]: t["score"] for t in result.trials}
    assert result.best["score"] == min(scores.values())  # lower is better
    trial_run = client.get_run(result.best["run_id"])
    parent = client.get_run(result.parent_run_id).data.metrics
    assert parent["best_val_loss"] == pytest.approx(min(scores.values()))
    accuracies = [m.value for m in client.get_metric_history(trial_run.info.run_id, "val_accuracy")]
    assert parent["best_val_accuracy"] == pytest.approx(max(accuracies))
    (row,) = kerascnn.leaderboard(tracking_uri=tracking_uri)
    assert row.best_val_accuracy == pytest.approx(parent["best_val_accuracy"])  # `kerascnn runs` showed "-"


def test_a_model_name_searches_that_model_in_its_familys_space(tracking_uri, tmp_path):
    """`tune vgg11` pins what vgg11 sets (depth 11) in the VGG space; it searched every depth under vgg11's name."""
    result = kerascnn.tune(
        "vgg11", "mnist", max_trials=1, fixed={"width": 16}, tracking_uri=tracking_uri,
        directory=tmp_path / "s", progress=False, **TINY,
    )  # fmt: skip
    assert result.search_name == "vgg11-mnist-random"
    assert result.trials[0]["hyperparameters"]["depth"] == 11
    assert variant_fixed("resnet50", {}) == {"depth": 50} and variant_fixed("vgg", {"depth": 13}) == {"depth": 13}


def test_a_fixed_value_outside_the_space_is_warned_about_but_not_a_models_own(
    tracking_uri, tmp_path, monkeypatch, capsys
):
    from kerascnn.tuning import search as search_module

    def ctrl_c(search):  # (the warning comes before any trial: none needs to run)
        raise KeyboardInterrupt

    monkeypatch.setattr(search_module, "_run", ctrl_c)
    with pytest.raises(KeyboardInterrupt):  # resnet50 pins depth=50, outside resnet's space (18, 34)
        kerascnn.tune(
            "resnet50", "mnist", fixed={"width": 8}, tracking_uri=tracking_uri, directory=tmp_path / "s",
            progress=False, **TINY,
        )  # fmt: skip
    warnings = [line for line in capsys.readouterr().err.splitlines() if "outside the space" in line]
    assert warnings == ["kerascnn: warning: fixed width=8 is outside the space (16, 32, 64); it is used as given"]


def plain_space(hp):
    """KerasTuner's own style: build(hp), the input shape written in."""
    return keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(hp.Choice("units", [8, 16])),
         keras.layers.Dense(10, activation="softmax")]
    )  # fmt: skip


def test_a_keras_tuner_style_build_of_hp_only_is_searched(tracking_uri, tmp_path):
    result = kerascnn.tune(
        build=plain_space, dataset="mnist", max_trials=1, tracking_uri=tracking_uri, directory=tmp_path / "s",
        progress=False, **TINY,
    )  # fmt: skip
    assert result.search_name == "custom-mnist-random"
    assert result.trials[0]["status"] == "COMPLETED" and "units" in result.trials[0]["hyperparameters"]


def tagged(hp, *, input_shape, num_classes):
    """A custom space whose one hyperparameter does not change the model: its trials train the same net."""
    hp.Choice("tag", ["a", "b"])
    return create_model("mnist_cnn", input_shape=input_shape, num_classes=num_classes, filters=8)


def test_trials_start_from_the_same_random_state_and_batches(tracking_uri, tmp_path):
    """Two trials of the same model score the same, whatever ran before them in the process: a trial
    re-run after a crash scores as it would have, and trials differ by their hyperparameters only."""
    result = kerascnn.tune(
        build=tagged, dataset="mnist", tuner="grid", max_trials=2, tracking_uri=tracking_uri,
        directory=tmp_path / "s", progress=False, **dict(TINY, train_samples=1000),
    )  # fmt: skip
    client = MlflowClient(tracking_uri)
    losses = [client.get_run(t["run_id"]).data.metrics["val_loss"] for t in result.trials]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5), losses


def fine_or_stopped(hp, *, input_shape, num_classes):
    """A custom space whose second learning rate stops the search as Ctrl-C would, while its trial builds."""
    rate = hp.Choice("learning_rate", [1e-3, 7e-3])
    if rate == 7e-3:
        raise KeyboardInterrupt
    model = create_model("mnist_cnn", input_shape=input_shape, num_classes=num_classes, filters=8)
    model.compile(keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_a_search_whose_trials_all_failed_exits_1_and_its_parent_fails(tracking_uri, tmp_path):
    args = ["--max-trials", "2", "--epochs", "1", "--fixed", "learning_rate=1e38", "--register-model", "never"]
    result = run_cli(*_tune_cmd(tracking_uri, tmp_path / "s", *args)[3:])  # (below the consecutive-failure limit)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("kerascnn: error: search stopped: no trial completed: 2 of 2 failed; last trial: ")
    (parent,) = [r for r in all_runs(tracking_uri) if r.data.tags.get("kerascnn.kind") == "search"]
    assert parent.info.status == "FAILED" and "no trial completed" in parent.data.tags["kerascnn.failure"]
    assert not MlflowClient(tracking_uri).search_registered_models()  # nothing registered


def test_a_trial_stopped_by_ctrl_c_is_tagged_interrupted_not_failed(tracking_uri, tmp_path):
    with pytest.raises(KeyboardInterrupt) as stopped:
        kerascnn.tune(
            build=fine_or_stopped, dataset="mnist", tuner="grid", max_trials=2, epochs=1, train_samples=300,
            tracking_uri=tracking_uri, directory=tmp_path / "s", progress=False,
        )  # fmt: skip
    trials = sorted(child_runs(tracking_uri, all_runs(tracking_uri)[0].info.run_id), key=lambda r: r.info.start_time)
    assert [r.data.tags["kerascnn.trial_status"] for r in trials] == ["COMPLETED", "INTERRUPTED"]
    assert trials[1].data.tags["kerascnn.failure"].startswith("KeyboardInterrupt")
    if sys.version_info >= (3, 11):  # the traceback's note: how to go on (a grid search is walked again)
        assert stopped.value.__notes__ == [
            "kerascnn: search 'custom-mnist-grid' stopped; the same kerascnn.tune(...) call with overwrite=True walks "
            "it again (KerasTuner cannot resume a grid search)"
        ]


def _tune_cmd(uri: str, directory: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kerascnn",
        "tune",
        "mnist_cnn",
        "--dataset",
        "mnist",
        "--train-samples",
        "2000",
        "--tracking-uri",
        uri,
        "--directory",
        str(directory),
        "--search-name",
        "killme",
        *extra,
    ]


def _running_trial(uri: str, with_epoch: bool = False) -> str | None:
    """The trial id of the newest RUNNING trial run (``all_runs`` waits out a schema being created);
    ``with_epoch``: only one that has logged an epoch's metrics."""
    running = [r for r in all_runs(uri) if r.info.status == "RUNNING" and "kerascnn.trial_id" in r.data.tags]
    running = [r for r in running if not with_epoch or "val_accuracy" in r.data.metrics]
    return running[-1].data.tags["kerascnn.trial_id"] if running else None


def test_a_search_whose_output_is_closed_stops_resumable_and_its_rerun_runs_the_trial_again(
    tracking_uri, tmp_path, spawn
):
    cmd = _tune_cmd(tracking_uri, tmp_path / "s", "--max-trials", "2", "--epochs", "2", "--train-samples", "600")
    process = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # `... | head -2`
    assert process.stdout is not None and "random search" in process.stdout.readline()
    assert "trial 0" in process.stdout.readline()  # the trial has begun; its epoch line finds the pipe closed
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 141 and "Traceback" not in err, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("kerascnn: error: its output was closed (SIGPIPE)") and "the same command resumes" in line
    (stopped,) = [r for r in all_runs(tracking_uri) if "kerascnn.trial_id" in r.data.tags]
    assert stopped.info.status == "KILLED" and stopped.data.tags["kerascnn.trial_status"] == "INTERRUPTED"
    rerun = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True).stdout)
    assert [t["status"] for t in rerun["trials"]] == ["COMPLETED", "COMPLETED"]  # the stopped trial ran again


def test_sigkill_mid_trial_then_rerun_loses_nothing_and_a_second_search_is_refused(tracking_uri, tmp_path, spawn):
    cmd = _tune_cmd(tracking_uri, tmp_path / "s", "--max-trials", "3", "--epochs", "3", "--json")
    process = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    for trial in ("0", "1"):
        while _running_trial(tracking_uri) != trial:
            assert process.poll() is None, f"search ended before trial {trial} started"
            assert time.monotonic() < deadline
            time.sleep(0.3)
        if trial == "0":  # a second search of the same name, even with --overwrite, is refused untouched
            kept = _tree(tmp_path / "s" / "killme")
            second = subprocess.run([*cmd, "--overwrite"], capture_output=True, text=True, timeout=300)
            assert_usage_error(second, "This search is running in another process", "search_name='killme'")
            assert kept <= _tree(tmp_path / "s" / "killme"), "a refused --overwrite deleted the search's files"
    while _running_trial(tracking_uri, with_epoch=True) not in ("1", "2"):  # in trial 1's training: an epoch logged
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = [r for r in all_runs(tracking_uri) if r.info.status == "RUNNING"]
    killed_runs = {r.info.run_id for r in left}
    (killed,) = [r.data.tags["kerascnn.trial_id"] for r in left if "kerascnn.trial_id" in r.data.tags]
    assert len(killed_runs) == 2 and killed in ("1", "2")  # the parent and the trial in training, left RUNNING
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    runs = all_runs(tracking_uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    trials = [r for r in runs if r.data.tags.get("kerascnn.kind") == "trial"]
    by_trial: dict[str, list] = {}
    for r in trials:
        by_trial.setdefault(r.data.tags["kerascnn.trial_id"], []).append(r)
    for trial in ("0", "1", "2"):  # finished trials never re-run, the interrupted one re-run in a new run
        statuses = ["KILLED", "FINISHED"] if trial == killed else ["FINISHED"]
        assert [r.info.status for r in by_trial[trial]] == statuses, trial
    assert "re-run" in by_trial[killed][0].data.tags["kerascnn.failure"]
    assert out["parent_run_id"] in killed_runs and [t["status"] for t in out["trials"]] == ["COMPLETED"] * 3
    assert MlflowClient(tracking_uri).get_run(out["parent_run_id"]).info.status == "FINISHED"


def test_ctrl_c_in_a_grid_search_points_to_overwrite_which_walks_the_grid_again(tracking_uri, tmp_path, spawn):
    fixed = ["--fixed", "learning_rate=0.003", "--fixed", "filters=8", "--fixed", "dense_units=16"]  # dropout: 3 values
    cmd = _tune_cmd(tracking_uri, tmp_path / "s", "--tuner", "grid", "--max-trials", "3", "--epochs", "1", *fixed)
    process = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while _running_trial(tracking_uri) is None:
        assert process.poll() is None and time.monotonic() < deadline, "no trial started"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith("KerasTuner cannot resume a grid search: the same command with --overwrite walks it again)")
    ), err[-2000:]
    again = subprocess.run([*cmd, "--overwrite", "--json"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [t["status"] for t in json.loads(again.stdout)["trials"]] == ["COMPLETED"] * 3


def test_chief_and_two_workers_share_one_parent(tracking_uri, tmp_path, spawn):
    port = str(free_port())
    cmd = _tune_cmd(tracking_uri, tmp_path / "s", "--max-trials", "6", "--epochs", "1", "--train-samples", "300")
    env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=port)
    procs = {
        "chief": spawn(
            cmd, env=dict(env, KERASTUNER_TUNER_ID="chief"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    }
    time.sleep(2)
    for worker in ("tuner0", "tuner1", "tuner2"):
        args = [*cmd, "--epochs", "2"] if worker == "tuner2" else cmd  # not the chief's command: refused
        procs[worker] = spawn(
            args, env=dict(env, KERASTUNER_TUNER_ID=worker), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    outputs = {}
    try:
        for name, proc in procs.items():
            outputs[name] = proc.communicate(timeout=420)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    refused = procs.pop("tuner2")
    assert refused.returncode == 2 and "Traceback" not in outputs["tuner2"][1], outputs["tuner2"][1][-2000:]
    assert (
        "settings differ from the chief's search" in outputs["tuner2"][1]
        and "Received: epochs=2" in outputs["tuner2"][1]
    )
    for name, proc in procs.items():
        assert proc.returncode == 0, (name, outputs[name][1][-2000:])
    parents = [r for r in all_runs(tracking_uri) if r.data.tags.get("kerascnn.kind") == "search"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = child_runs(tracking_uri, parents[0].info.run_id)
    assert sorted(int(r.data.tags["kerascnn.trial_id"]) for r in children) == list(range(6))
    assert all(r.info.status == "FINISHED" for r in children)
    workers = {r.data.tags["kerascnn.worker"] for r in children}
    assert workers == {"tuner0", "tuner1"}, workers
    assert "kerascnn: best trial" in outputs["chief"][0]
    assert "kerascnn: chief serves the search at 127.0.0.1:" in outputs["chief"][1]
    assert "kerascnn: worker tuner1 joins the chief's search at 127.0.0.1:" in outputs["tuner1"][1]
    ended = [line for name in ("tuner0", "tuner1") for line in outputs[name][0].splitlines() if "COMPLETED" in line]
    assert ended and all(" run -" not in line for line in ended), ended  # each trial's line names its run


def test_a_worker_whose_chief_died_says_it_waits_and_stops_on_ctrl_c(tracking_uri, tmp_path, spawn):
    """KerasTuner's client waits up to an hour for a chief that does not answer, silently."""
    cmd = _tune_cmd(tracking_uri, tmp_path / "s", "--max-trials", "4", "--epochs", "1", "--train-samples", "300")
    env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()))
    chief = spawn(cmd, env=dict(env, KERASTUNER_TUNER_ID="chief"), stderr=subprocess.DEVNULL)
    worker = spawn(
        cmd, env=dict(env, KERASTUNER_TUNER_ID="tuner0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out: list[str] = []
    err: list[str] = []
    for stream, lines in ((worker.stdout, out), (worker.stderr, err)):
        threading.Thread(target=lambda s=stream, k=lines: k.extend(s), daemon=True).start()
    try:
        wait_for(lambda: any(line.startswith("kerascnn: trial 0 [tuner0] {") for line in out), 120, worker, "a trial")
        chief.kill()  # SIGKILL: the worker's trial ends with nobody to tell
        chief.wait(timeout=30)
        wait_for(lambda: any("has not answered" in line for line in err), 60, worker, "the worker's line")
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=30)
    finally:
        for proc in (chief, worker):
            if proc.poll() is None:
                proc.kill()
    (waiting,) = [line for line in err if "has not answered" in line]
    assert waiting.startswith("kerascnn: worker tuner0: the chief at 127.0.0.1:") and "Ctrl-C stops" in waiting
    assert "(nothing listens at that address: Connection refused; is the chief running, there?)" in waiting
    text = "".join(err)
    assert worker.returncode == 130 and "Traceback" not in text, text[-2000:]
    assert err[-1] == "kerascnn: error: interrupted\n"  # (not "... answered": no answer came)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["tune", "squeezenet", "--dataset", "mnist"], "Received: family='squeezenet'"),
        (["tune", "mnist_cnn", "--dataset", "mnist", "--tuner", "evolution"], "Received: tuner='evolution'"),
        (["tune", "mnist_cnn", "--dataset", "mnist", "--max-trials", "0"], "Received: max_trials=0"),
        (["tune", "mnist_cnn", "--dataset", "mnist", "--epochs", "0"], "Received: epochs=0"),
        (["tune", "mnist_cnn", "--dataset", "mnist", "--search-name", "a/b"], "Received: search_name='a/b'"),
        (["tune", "mnist_cnn", "--dataset", "mnist", "--search-name", "a\nb"], "control characters). Received"),
        (
            ["tune", "mnist_cnn", "--dataset", "mnist", "--search-name", "a" * 129],
            "at most 128 bytes (it names a folder)",
        ),
    ],
)
def test_bad_tune_arguments(args, fragment, tracking_uri):
    assert_usage_error(run_cli(*args, "--tracking-uri", tracking_uri), fragment)
    assert not Path(tracking_uri[10:]).exists()


@pytest.mark.parametrize(
    "settings,fragment",
    [
        (dict(directory=None), "`directory` must be a folder path. Received: directory=None"),
        (dict(fixed={"filters": [16, 32]}), "(KerasTuner's Fixed). Received: fixed={'filters': [16, 32]}"),
        (dict(search_name=".hidden"), "not starting with '.', no slashes"),
        (dict(search_name="é" * 65), f"at most 128 bytes (it names a folder). Received: search_name='{'é' * 65}'"),
    ],
)
def test_bad_tune_settings_from_python_are_one_line_value_errors(settings, fragment, tracking_uri):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        kerascnn.tune("mnist_cnn", "mnist", tracking_uri=tracking_uri, progress=False, **settings)
    assert not Path(tracking_uri[10:]).exists()


def test_an_empty_search_space_is_refused_before_any_run(tracking_uri, tmp_path):
    result = run_cli(
        "tune",
        "lenet5",
        "--dataset",
        "mnist",
        "--train-samples",
        "100",
        "--fixed",
        "learning_rate=0.001",
        "--fixed",
        "activation=relu",
        "--fixed",
        "pooling=max",
        "--tracking-uri",
        tracking_uri,
        "--directory",
        str(tmp_path / "s"),
    )
    assert_usage_error(result, "search space is empty")
    assert not Path(tracking_uri[10:]).exists() or not all_runs(tracking_uri)
    assert not (tmp_path / "s").exists()  # no search folder, no lock file: refused before either


def test_spaces_that_cannot_be_searched_are_refused_by_name(tracking_uri, tmp_path):
    from kerascnn.models import register_model
    from kerascnn.models.registry import _MODELS

    @register_model(default_input_shape=(28, 28, 1), default_num_classes=10)
    def unsearched_test_cnn(*, input_shape, num_classes):
        return create_model("lenet5", input_shape=input_shape, num_classes=num_classes)

    common = dict(tracking_uri=tracking_uri, directory=tmp_path / "s", progress=False, train_samples=100)
    try:
        unsearched = r"Model `unsearched_test_cnn` belongs to family `\w+`, which no register_family\(\) declares"
        with pytest.raises(ValueError, match=rf"{unsearched} .*Received: family='unsearched_test_cnn'$"):
            kerascnn.tune("unsearched_test_cnn", **common)
    finally:
        _MODELS.pop("unsearched_test_cnn")
    with pytest.raises(ValueError, match=r"give build=.*Received: family='custom', build=None$"):
        kerascnn.tune("custom", **common)
    with pytest.raises(
        ValueError,
        match=r"must return a keras\.Model; it returned int\)\. Received: build=<function <lambda>>, fixed=\{\}$",
    ):
        kerascnn.tune(build=lambda hp, **shape: 3, **common)
    assert not (tmp_path / "s").exists() and not Path(tracking_uri[10:]).exists()


@pytest.mark.parametrize("family", ["custom", *kerascnn.list_families()])
def test_a_custom_space_trains_with_the_recipe_of_the_family_named_beside_it(family):
    from kerascnn.models import get_family
    from kerascnn.tuning.spaces import space_for

    def my_build(hp, *, input_shape, num_classes):
        return create_model("lenet5", input_shape=input_shape, num_classes=num_classes)

    space = space_for(family, my_build)
    assert space.name == "my_build" and space.build is my_build
    assert space.recipe == get_family("mnist_cnn" if family == "custom" else family).recipe


@pytest.mark.parametrize("family", kerascnn.list_families())
def test_each_space_builds_through_the_registered_builder_with_builder_names(family):
    import keras_tuner as kt

    from kerascnn.models import get_family

    found = get_family(family)
    hp = kt.HyperParameters()
    side = max(32, found.min_input_size())
    model = found.space(hp, input_shape=(side, side, 3), num_classes=10)
    assert isinstance(model, keras.Model) and model.output_shape == (None, 10)
    options = set(found.options()) | {"learning_rate"}  # learning_rate: the recipe's setting
    names = {p.name for p in hp.space}
    assert "learning_rate" in names and len(names) >= 3
    assert names <= options, names - options
    for p in hp.space:  # discrete, so every tuner (grid too) can walk it
        assert type(p).__name__ in ("Choice", "Boolean", "Fixed") or getattr(p, "step", None), p.name


def test_overwrite_with_a_bad_space_keeps_the_previous_search(tracking_uri, tmp_path):
    kerascnn.tune(
        "lenet5",
        "mnist",
        max_trials=1,
        tracking_uri=tracking_uri,
        directory=tmp_path / "s",
        search_name="keep",
        progress=False,
        **TINY,
    )
    before = _tree(tmp_path / "s" / "keep")
    for fixed, fragment in [
        ({"learning_rate": 1e-3, "activation": "relu", "pooling": "max"}, "search space is empty"),
        ({"widht": 3}, "no hyperparameter widht"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            kerascnn.tune(
                "lenet5",
                "mnist",
                max_trials=1,
                fixed=fixed,
                overwrite=True,
                tracking_uri=tracking_uri,
                directory=tmp_path / "s",
                search_name="keep",
                **TINY,
            )
    assert _tree(tmp_path / "s" / "keep") == before


def test_a_search_whose_trials_all_fail_stops_with_one_line(tracking_uri, tmp_path):
    args = (
        "tune",
        "mnist_cnn",
        "--dataset",
        "mnist",
        "--max-trials",
        "4",
        "--epochs",
        "1",
        "--train-samples",
        "200",
        "--fixed",
        "learning_rate=1e38",
        "--max-consecutive-failed-trials",
        "2",
        "--tracking-uri",
        tracking_uri,
        "--directory",
        str(tmp_path / "s"),
    )
    result = run_cli(*args)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("kerascnn: error: search stopped:") and "consecutive failures" in line
    # (a learning rate of 1e38 ends in nan or inf, depending on the CPU's arithmetic; both stop a trial)
    assert re.search(r"last trial: FailedTrialError: the training loss became (nan|inf)", line) and "File " not in line
    assert "kerascnn: trial 1 [tuner0] FAILED" in result.stdout  # the trial that stopped the search too
    runs = all_runs(tracking_uri)
    (parent,) = [r for r in runs if r.data.tags.get("kerascnn.kind") == "search"]
    assert parent.info.status == "FAILED" and "ended FAILED" in line
    trials = [r for r in runs if r.data.tags.get("kerascnn.kind") == "trial"]
    assert len(trials) == 2 and all(r.info.status == "FAILED" for r in trials)
    assert all(re.search("loss became (nan|inf)", r.data.tags["kerascnn.failure"]) for r in trials)
    again = run_cli(*args)  # the trials that stopped it are saved as ended: the rerun goes on with the next one
    assert again.returncode == 1 and "random search of up to 4 trials, 2 done before" in again.stdout
    ids = sorted(r.data.tags["kerascnn.trial_id"] for r in all_runs(tracking_uri) if "kerascnn.trial_id" in r.data.tags)
    assert ids == ["0", "1", "2"]


def test_a_search_prints_no_retracing_notes_when_keras_came_first(tracking_uri, tmp_path):
    code = (
        "import keras, kerascnn; "  # TensorFlow imported before the kit: the kit's own import path never runs
        f"kerascnn.tune('mnist_cnn', 'mnist', max_trials=5, epochs=1, train_samples=300, "
        f"tracking_uri={tracking_uri!r}, directory={str(tmp_path / 's')!r})"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trial 4" in result.stdout and "retracing" not in result.stderr, result.stderr[-3000:]
    lines = result.stdout.splitlines()  # in a pipe: a line when each trial starts and one per epoch
    for trial in range(5):
        started = lines.index(next(line for line in lines if line.startswith(f"kerascnn: trial {trial} [tuner0] {{")))
        metrics = r"accuracy=\S+ loss=\S+ val_accuracy=\S+ val_loss=\S+"
        epoch = rf"kerascnn: trial {trial} \[tuner0\] epoch 1/1 {metrics} \(\S+s\)"
        assert re.fullmatch(epoch, lines[started + 1]), lines[started + 1]
        assert lines[started + 2].startswith(f"kerascnn: trial {trial} [tuner0] COMPLETED")
    so_far = [float(re.search(r"; best so far (\S+) \(trial \d+\)$", line)[1]) for line in lines if "COMPLETED" in line]
    scores = [float(re.search(r"COMPLETED val_accuracy=(\S+) ", line)[1]) for line in lines if "COMPLETED" in line]
    assert so_far == [max(scores[: i + 1]) for i in range(len(scores))]  # KerasTuner's best, trial by trial
    parent = next(r for r in all_runs(tracking_uri) if r.data.tags.get("kerascnn.kind") == "search").info.run_id
    go_on = f"`kerascnn compare {parent[:12]} --tracking-uri {shlex.quote(tracking_uri)}` draws its trials"
    assert lines[-1].startswith("kerascnn: best trial ") and go_on in lines[-1], lines[-1]  # (that store's)


def test_a_trial_rerun_not_yet_in_the_store_keeps_its_stored_run(tracking_uri, tmp_path):
    """A trial's run in this process without an id yet (the writer has not created it) does not
    hide the trial's finished run in the store."""
    import keras_tuner

    from kerascnn.tracking.recorder import RunRef
    from kerascnn.tracking.run import TrackedRun
    from kerascnn.tuning.runs import SearchRuns

    runs = SearchRuns(tracking_uri, "kerascnn", "lagging", tmp_path / "search", labels={})
    runs.open_parent({}, max_trials=1, fresh=True)
    trial = keras_tuner.engine.trial.Trial(keras_tuner.HyperParameters(), trial_id="t1")
    runs.start_trial(trial)
    runs.end_trial(trial, None)
    stored = runs.trial_run_ids()["t1"]
    assert stored is not None and MlflowClient(tracking_uri).get_run(stored).info.status == "FINISHED"
    runs.trials["t1"] = TrackedRun(RunRef(tracking_uri, "kerascnn", "lagging-trial-t1"))  # created, not written
    assert runs.trial_run_ids() == {"t1": stored}


def test_a_rerun_ends_the_run_of_a_trial_keras_tuner_saw_end_as_it_ended(tracking_uri, tmp_path):
    """A trial that completed before the search process died, its run's end still in the spool:
    the rerun does not call it KILLED and re-run (KerasTuner does not re-run it); a trial that was
    cut off is."""
    import keras_tuner

    from kerascnn.tuning.runs import SearchRuns

    first = SearchRuns(tracking_uri, "kerascnn", "died", tmp_path / "search", labels={})
    first.open_parent({}, max_trials=2, fresh=True)
    for trial_id in ("t1", "t2"):
        first.start_trial(keras_tuner.engine.trial.Trial(keras_tuner.HyperParameters(), trial_id=trial_id)).wait()
    rerun = SearchRuns(tracking_uri, "kerascnn", "died", tmp_path / "search", labels={})
    rerun.open_parent({}, max_trials=2, fresh=False, ended={"t1": "COMPLETED", "t2": "RUNNING"})
    rerun.parent.wait()
    runs = {r.data.tags["kerascnn.trial_id"]: r for r in rerun.children()}
    assert runs["t1"].info.status == "FINISHED" and "kerascnn.failure" not in runs["t1"].data.tags
    assert runs["t1"].data.tags["kerascnn.trial_status"] == "COMPLETED"
    assert runs["t2"].info.status == "KILLED" and "the trial is re-run" in runs["t2"].data.tags["kerascnn.failure"]


def test_a_chief_says_which_trials_it_waits_for_and_gives_them_back_to_their_workers_after_a_restart(
    tmp_path, monkeypatch, capsys
):
    """KerasTuner's chief waits silently for a worker that died; restarted, it queued the trials its
    workers held for any worker, so a second worker ran a trial the first still trained (and one
    already finished ran again). (KerasTuner's own oracle, as the chief serves it to the workers.)"""
    import keras_tuner as kt

    from kerascnn.tuning import distributed

    def chief() -> tuple[kt.Oracle, dict[str, str]]:
        held = distributed.held_trials(tmp_path / "search")  # (read before KerasTuner reloads)
        hp = kt.HyperParameters()
        hp.Choice("units", [1, 2, 3, 4])
        oracle = kt.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=4, hyperparameters=hp, seed=0)
        oracle._set_project_dir(str(tmp_path), "search")
        oracle.verbose = 0  # (as the kit's search runs it)
        if (tmp_path / "search" / "oracle.json").exists():
            oracle.reload()
        return oracle, held

    monkeypatch.setattr(distributed, "STATUS_EVERY", 0.2)
    first, held = chief()
    assert held == {}
    unwatch = distributed.watch_workers(first, held)
    trial = first.create_trial("tuner0")
    wait_for(lambda: f"waiting for workers: trial {trial.trial_id} on tuner0 for " in capsys.readouterr().err, 10)
    unwatch()
    time.sleep(0.5)
    capsys.readouterr()
    time.sleep(0.5)
    assert "waiting for workers" not in capsys.readouterr().err  # stopped with the search
    restarted, held = chief()  # the chief killed and rerun; its worker trains on
    assert held == {"tuner0": trial.trial_id} and restarted._retry_queue == [trial.trial_id]  # (KerasTuner's reload)
    unwatch = distributed.watch_workers(restarted, held)
    assert restarted.create_trial("tuner1").trial_id != trial.trial_id  # another worker: another trial
    wait_for(
        lambda: f"trial {trial.trial_id} on tuner0 (since before the chief started)" in capsys.readouterr().err, 10
    )
    unwatch()
    assert restarted.create_trial("tuner0").trial_id == trial.trial_id  # (its own, were it to ask again)
    restarted.update_trial(trial.trial_id, {"val_accuracy": 0.5})  # the worker's end of it reaches the restarted chief
    trial.status = "COMPLETED"
    restarted.end_trial(trial)
    assert restarted._retry_queue == [] and "tuner0" not in restarted.ongoing_trials


def test_a_workers_retry_starts_from_the_next_seed_as_a_lone_searchs_does(tracking_uri, tmp_path, spawn):
    """A worker's client to the chief's oracle has no count of a trial's runs: its retry repeated the
    seed that had failed (and a distributed search picked another best trial than a lone one)."""
    from tests.helpers import ROOT

    script = (
        "import kerascnn\nfrom tests.test_tuning import TINY, unlucky_start\n"
        f"kerascnn.tune(build=unlucky_start, dataset='mnist', max_trials=1, max_retries_per_trial=1, seed=0, "
        f"tracking_uri={tracking_uri!r}, directory={str(tmp_path / 's')!r}, **TINY)\n"
    )
    env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()))
    env["PYTHONPATH"] = str(ROOT)
    procs = {
        name: spawn(
            [sys.executable, "-c", script],
            env=dict(env, KERASTUNER_TUNER_ID=name),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("chief", "tuner0")
    }
    outputs = {name: proc.communicate(timeout=420) for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, (name, outputs[name][1][-2000:])
    assert re.search(r"trial 0 \[tuner0\] FAILED, to be retried", outputs["tuner0"][0])
    (parent,) = [r for r in all_runs(tracking_uri) if r.data.tags.get("kerascnn.kind") == "search"]
    ends = sorted(r.data.tags.get("kerascnn.trial_status") for r in child_runs(tracking_uri, parent.info.run_id))
    assert ends == ["COMPLETED", "FAILED"], ends


def test_a_worker_started_before_its_chief_says_it_waits_for_it(tracking_uri, tmp_path, spawn):
    """A worker waits for the chief's parent run as KerasTuner's client waits for the chief (it gave
    up after 2 minutes, silently), and says where it looks for it."""
    cmd = _tune_cmd(tracking_uri, tmp_path / "s", "--max-trials", "2", "--epochs", "1", "--train-samples", "300")
    env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()))
    worker = spawn(cmd, env=dict(env, KERASTUNER_TUNER_ID="tuner0"), stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(worker.stderr), daemon=True).start()
    wait_for(lambda: any("no RUNNING parent run" in line for line in err), 120, worker, "the worker's line")
    worker.send_signal(signal.SIGINT)
    worker.wait(timeout=30)
    (waiting,) = [line for line in err if "no RUNNING parent run" in line]
    assert waiting.startswith("kerascnn: worker tuner0: no RUNNING parent run of search 'killme' in")
    assert tracking_uri in waiting and "Ctrl-C stops this worker" in waiting
    assert worker.returncode == 130 and err[-1] == "kerascnn: error: interrupted\n", "".join(err)[-2000:]
