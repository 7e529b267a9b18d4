"""Write each experiment notebook's ``parameters`` cell from its schema (lfakit/schemas/).

Run by ``make notebooks`` before the notebooks are re-executed; ``tests/test_params.py`` fails
when a committed cell differs from what this writes. Notebooks are otherwise edited as
``.ipynb`` files (in JupyterLab or any editor): there are no builder scripts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from lfakit import params, runner


def sync(path: Path, experiment: str) -> bool:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        sys.exit(f"{path}: expected one cell tagged 'parameters', found {len(cells)}")
    want = params.parameters_cell(experiment)
    if cells[0].source == want:
        return False
    cells[0].source = want
    nbformat.write(nb, path)
    return True


if __name__ == "__main__":
    for exp in runner.experiments():
        path = runner.notebooks_dir() / f"{exp}.ipynb"
        print(f"{path.name}: {'updated' if sync(path, exp) else 'up to date'}")
