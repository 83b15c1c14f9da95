"""The example notebooks and their scripts run from start to end, so they cannot rot:
the notebooks headless in a real Jupyter kernel, the scripts with the app's python."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PATIENCE

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "notebooks"
SCRIPTS = ("data_owner.py", "data_scientist.py")


def _maker():
    spec = importlib.util.spec_from_file_location("make_notebooks", EXAMPLES / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sources(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_notebook_is_its_script(script):
    written = nbformat.read(EXAMPLES / script.replace(".py", ".ipynb"), as_version=4)
    made = _maker().notebook_from_script(EXAMPLES / script)
    assert _sources(written) == _sources(made), "run examples/notebooks/make_notebooks.py"


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_example_notebook_runs_headless_in_a_kernel(script, tmp_path, monkeypatch):
    monkeypatch.setenv("SYFT_BG_EXAMPLE_DIR", str(tmp_path))
    notebook = nbformat.read(EXAMPLES / script.replace(".py", ".ipynb"), as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=int(PATIENCE),
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the cell that failed

    outputs = [out for cell in notebook.cells for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "mean age computed over 5 records" in text
    if script == "data_owner.py":
        # The card is a live widget in a kernel with ipywidgets.
        shown = [out for out in outputs if out.output_type == "display_data"]
        assert any("application/vnd.jupyter.widget-view+json" in out.data for out in shown)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_example_script_runs_with_the_apps_python(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env={**os.environ, "SYFT_BG_EXAMPLE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "mean age computed over 5 records" in result.stdout
