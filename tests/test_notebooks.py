"""The notebooks execute top to bottom against a warehouse built here from real tiny measurements (two runs, so
there is history), and against one whose tables are still empty; in git they carry no outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from measured_warehouse import FAMILIES, TARGET, write_catalog
from nbclient import NotebookClient

from hwbench_pipeline.warehouse.store import Warehouse

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


@pytest.fixture(scope="module")
def empty_warehouse(tmp_path_factory) -> Path:
    """What a data directory holds after only the catalog has been materialized: no results at all."""
    data_dir = tmp_path_factory.mktemp("notebook_empty")
    write_catalog(Warehouse(data_dir))
    return data_dir


def execute(notebook: Path, data_dir: Path) -> str:
    """Run every cell in the venv's own kernel from the notebooks folder; returns all text output."""
    nb = nbformat.read(notebook, as_version=4)
    previous = os.environ.get("HWBENCH_DATA_DIR")
    os.environ["HWBENCH_DATA_DIR"] = str(data_dir)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, kernel_name="python3", timeout=300,
                       resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    finally:
        if previous is None:
            os.environ.pop("HWBENCH_DATA_DIR", None)
        else:
            os.environ["HWBENCH_DATA_DIR"] = previous
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_the_three_notebooks_are_there_and_stored_without_outputs():
    assert [p.name for p in NOTEBOOKS] == ["explore_results.ipynb", "predictor.ipynb", "regressions.ipynb"]
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), f"{path.name} has outputs"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_measured_results(notebook, measured_warehouse):
    text = execute(notebook, measured_warehouse)
    assert f"warehouse: {measured_warehouse}" in text
    assert "Traceback" not in text
    if notebook.stem == "explore_results":
        assert f"{len(FAMILIES) * 2} configurations" in text
        assert all(f in text for f in FAMILIES) and TARGET in text
    elif notebook.stem == "predictor":
        assert "trained" in text and f"{len(FAMILIES) * 2} configurations; median |error|" in text
    else:
        assert f"{len(FAMILIES)} configurations have a history of two runs or more" in text


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_says_so_when_nothing_was_measured(notebook, empty_warehouse):
    text = execute(notebook, empty_warehouse)
    expected = {
        "explore_results": "inference_results is empty",
        "predictor": "no predictor trained yet",
        "regressions": "inference_results is empty",
    }[notebook.stem]
    assert expected in text
