"""Helpers shared by the notebook builders (``tools/build_*_notebook.py``).

The builders are run as ``python tools/build_X_notebook.py`` from the repository root, so this
directory is on ``sys.path`` and they import these as ``from _nb import ...``; the notebook path
they pass to ``write_notebook`` is relative to the current directory.
"""
import nbformat as nbf

md = nbf.v4.new_markdown_cell
code = nbf.v4.new_code_cell


def tagged(src, *tags):
    """A code cell carrying the given cell tags (e.g. ``parameters``, ``nbval-ignore-output``)."""
    c = code(src)
    c.metadata["tags"] = list(tags)
    return c


def write_notebook(cells, path):
    """Write ``cells`` as a new notebook at ``path`` with the Python 3 (ipykernel) kernelspec."""
    nb = nbf.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbf.write(nb, path)
