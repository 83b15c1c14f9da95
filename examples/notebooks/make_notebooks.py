"""Writes each example script here as a notebook beside it.

The scripts are the source: cells start at ``# %%`` lines (``# %% [markdown]``
for text, its lines written as comments). Run after changing a script::

    .venv/bin/python examples/notebooks/make_notebooks.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SCRIPTS = ("data_owner.py", "data_scientist.py")


def notebook_from_script(script: Path) -> nbformat.NotebookNode:
    cells: list[tuple[str, list[str]]] = []
    for line in script.read_text().splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for kind, lines in cells:
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(line.removeprefix("#").removeprefix(" ") for line in text.split("\n"))
            notebook.cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            notebook.cells.append(nbformat.v4.new_code_cell(text))
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index}"
    return notebook


def main() -> int:
    for name in SCRIPTS:
        script = HERE / name
        nbformat.write(notebook_from_script(script), script.with_suffix(".ipynb"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
