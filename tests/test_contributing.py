"""CONTRIBUTING.md's worked example: a family added in one file is listed, built, described,
trained and tuned with nothing else edited."""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest
from mlflow.tracking import MlflowClient

import kerascnn
from kerascnn.models import registry
from tests.helpers import ROOT, data_dir


@pytest.fixture
def tinynet(tmp_path):
    """Loads the module of CONTRIBUTING.md as ``kerascnn.models.tinynet``; unregisters it afterwards."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    (source,) = re.findall(r"kerascnn/models/tinynet\.py`.*?```python\n(.*?)```", text, flags=re.S)
    path = tmp_path / "tinynet.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("kerascnn.models.tinynet", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        registry._MODELS.pop("tinynet8", None)
        registry._FAMILIES.pop("tinynet", None)
        sys.modules.pop(spec.name, None)


def test_a_family_in_one_file_is_listed_built_trained_and_tuned(tinynet, tracking_uri, tmp_path, monkeypatch):
    data_dir()
    monkeypatch.chdir(tmp_path)
    assert "tinynet8" in kerascnn.list_models() and "tinynet" in kerascnn.list_families()
    assert registry.get_entry("tinynet8").options() == ["width"]
    model = kerascnn.create_model("tinynet8")
    assert kerascnn.describe(model).params == model.count_params()
    with pytest.raises(ValueError, match="Received: width=0"):
        kerascnn.create_model("tinynet8", width=0)
    result = kerascnn.train(
        "tinynet8", "mnist", train_samples=300, test_samples=100, tracking_uri=tracking_uri, verbose=0
    )
    assert result.epochs == 2 and result.params["learning_rate"] == 0.003  # its own recipe
    logged = MlflowClient(tracking_uri).get_run(result.run_id).data.params
    assert result.params.keys() == logged.keys() and result.params["input_shape"] == [28, 28, 1]
    assert [type(result.params[k]) for k in ("epochs", "num_classes", "params_count")] == [int, int, int]
    search = kerascnn.tune(
        "tinynet",
        "mnist",
        max_trials=2,
        epochs=1,
        train_samples=300,
        tracking_uri=tracking_uri,
        directory=tmp_path / "s",
        progress=False,
    )
    assert {tuple(sorted(t["hyperparameters"])) for t in search.trials} == {("learning_rate", "width")}
