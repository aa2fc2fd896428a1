"""The notebooks run top to bottom (KERASCNN_SMOKE=1: tiny data, 1 epoch) without an error."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import ROOT, data_dir

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 600  # a hung cell fails the test; how fast the notebooks run is benchmarks' business, not a test's


def test_the_three_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart_mnist.ipynb",
        "02_architectures.ipynb",
        "03_tuning_and_comparison.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    data_dir()
    work = tmp_path / "repo" / "notebooks"  # a scratch copy: committed outputs stay untouched
    work.mkdir(parents=True)
    shutil.copy(path, work / path.name)
    monkeypatch.setenv("KERASCNN_SMOKE", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    book = nbformat.read(work / path.name, as_version=4)
    NotebookClient(
        book, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    ).execute()  # raises on any cell error
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was drawn"


def test_committed_notebooks_hold_the_outputs_of_a_full_run():
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(c.get("execution_count") for c in code), f"{path.name} has unexecuted cells"
        text = "".join(
            str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
            for c in code
            for o in c.get("outputs", [])
        )
        assert "smoke=False" in text, f"{path.name} was not committed from a full run"
        assert any("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
