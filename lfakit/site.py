"""A static HTML report of a results folder: ``lfakit report`` (:func:`build_site`).

The site opens from ``file://`` without a server and loads nothing from the network: every link
is relative, every figure and table is copied into the site folder, and the notebooks are
rendered by nbconvert's HTML exporter with its require.js, MathJax, Mermaid and widget scripts
(all fetched from CDNs by default) left out. It reads the run folders and nothing else::

    <out>/                              (default <results>/site)
      index.html                        experiments, runs, sweeps and comparisons
      runs/<experiment>/<run-id>/
        index.html                      the run: status, parameters, environment, headline,
                                        figures, tables, then the executed notebook
        figures/*.png, tables/*.csv     copies of the run's own files
        notebook.attempt-<n>.html       an interrupted attempt kept by ``--resume``
      comparisons/<slug>/index.html     one page per ``comparison.json`` (``lfakit compare``)

A run's status comes from its folder alone (:func:`run_status`):

``complete``
    ``metrics.json`` and ``manifest.json`` (written last) are there and the executed notebook,
    if any, is not marked as failed.
``failed``
    papermill marked the notebook as failed (``metadata.papermill.exception``, a cell whose
    ``metadata.papermill.status`` is ``failed``), or, in a notebook papermill did not run, a
    cell holds an error output. The cell is numbered as ``lfakit run`` numbers it (papermill's
    own cell index: the cells papermill inserts to flag the error are not counted), with its
    error name and message.
``interrupted``
    a notebook is there, but neither a failure nor the complete record: a run stopped by
    Ctrl-C, killed, or still running.
``incomplete``
    no notebook and no complete record: a run whose kernel never started, or a notebook run
    interactively in JupyterLab (which keeps its notebook there) that has not saved its record.

The site module is the top layer: it reads :mod:`lfakit.record` and :mod:`lfakit.runner`, and
only :mod:`lfakit.cli` imports it.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from lfakit.errors import LfakitError
from lfakit.record import MANIFEST, METRICS, table_from_json
from lfakit.runner import KERNEL_LOG, NOTEBOOK_NAME, PARAMS_NAME

COMPARE_SCHEMA = "lfakit.compare/1"
SWEEP_SCHEMA = "lfakit.sweep/1"
COMPARISON_FILE = "comparison.json"
SWEEP_FILE = "sweep.json"
MARKER = ".lfakit-site"
STATES = ("complete", "failed", "interrupted", "incomplete")
MAX_TABLE_ROWS = 60  # rows of a CSV shown on a page; the whole file is linked
_INDEX_ROWS = 15  # rows of an experiment's newest headline shown on the index
_PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_RUN_ID = re.compile(r"^(\d{8})-(\d{6})(?:-(.*))?$")
_NUM = ' class="num"'
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".gif", ".webp")

CSS = """
.lfk{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;font-size:15px;
  line-height:1.45;color:#1f2328;max-width:1400px;margin:0 auto;padding:12px 24px 8px}
.lfk h1{font-size:1.7em;margin:.3em 0 .2em}
.lfk h2{font-size:1.3em;margin:1.5em 0 .5em;padding-bottom:.2em;border-bottom:1px solid #d0d7de}
.lfk h3{font-size:1.1em;margin:1.2em 0 .4em}
.lfk a{color:#0550ae}
.lfk p{margin:.4em 0}
.lfk table{border-collapse:collapse;margin:.4em 0 .8em;font-size:13.5px;background:#fff}
.lfk th,.lfk td{border:1px solid #c4cbd3;padding:3px 8px;text-align:left;vertical-align:top}
.lfk th{background:#eef1f4;font-weight:600}
.lfk td.num,.lfk th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.lfk .nowrap{white-space:nowrap}
.lfk table.runs>tbody>tr>td{padding:5px 8px}
.lfk tr.failed>td{background:#fde8e8}
.lfk tr.interrupted>td,.lfk tr.incomplete>td{background:#fff6db}
.lfk .badge{display:inline-block;padding:0 8px;border-radius:9px;font-size:12.5px;font-weight:600;white-space:nowrap}
.lfk .badge.complete,.lfk .badge.skipped{background:#d7f5dd;color:#14532d}
.lfk .badge.failed{background:#ffd6d1;color:#9b1c1c}
.lfk .badge.interrupted,.lfk .badge.incomplete,.lfk .badge.pending,.lfk .badge.running{background:#fff0bf;color:#6b4a00}
.lfk .why{font-size:12.5px;color:#6e2020;margin-top:2px;min-width:16em;max-width:34em;overflow-wrap:anywhere}
.lfk .muted{color:#59636e;font-size:13px}
.lfk .error{border-left:4px solid #cf222e;background:#fff1f1;padding:8px 12px;margin:.6em 0}
.lfk .note{border-left:4px solid #bf8700;background:#fff8e1;padding:8px 12px;margin:.6em 0}
.lfk pre{background:#f6f8fa;border:1px solid #d8dee4;padding:8px;overflow-x:auto;font-size:12.5px;white-space:pre-wrap}
.lfk code{font-size:90%}
.lfk .scroll{overflow-x:auto;max-width:100%}
.lfk img{max-width:100%;height:auto}
.lfk figure{margin:.8em 0 1.4em}
.lfk figcaption{color:#59636e;font-size:13px}
.lfk details{margin:.3em 0}
.lfk details>summary{cursor:pointer}
.lfk nav a{margin-right:1em}
.lfk dl.kv{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:.4em 0}
.lfk dl.kv dt{font-weight:600}
.lfk dl.kv dd{margin:0;overflow-wrap:anywhere}
.lfk-notebook-title{max-width:1400px;margin:1.5em auto .5em;padding:0 24px;font-family:system-ui,sans-serif;
  font-size:1.3em;border-bottom:1px solid #d0d7de}
.jp-OutputArea-output img{max-width:100%;height:auto}
.lfk-pm-error{color:#b42318;font:600 1.25em system-ui,sans-serif;margin:.6em 0 .6em 64px}
"""

# nbconvert's lab template, less the scripts it would fetch from CDNs (require.js, MathJax,
# Mermaid, the widget renderer); the run's summary goes above the notebook.
_NOTEBOOK_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style type="text/css">{{ resources.lfakit_css }}</style>{%- endblock extra_css -%}
{%- block body_header -%}{{ super() }}{{ resources.lfakit_header }}{%- endblock body_header -%}
"""


# --------------------------------------------------------------------------- status


@dataclass
class RunStatus:
    """A run's state (one of :data:`STATES`) as its folder records it."""

    state: str
    label: str  # "complete", "failed at cell 27", "interrupted", "incomplete"
    detail: str = ""  # one sentence: why
    cell: int | None = None  # the failed (or interrupted) cell, numbered as `lfakit run` numbers it
    execution_count: int | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: str | None = None

    @property
    def text(self) -> str:
        """The label with the error: ``failed at cell 27: FileExistsError: ...``."""
        if self.state == "failed" and self.ename:
            return f"{self.label}: {self.ename}: {self.evalue}" if self.evalue else f"{self.label}: {self.ename}"
        return self.label


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _counted_cells(nb: dict) -> list[dict]:
    """The notebook's cells without the markers papermill inserts for an error: the index of a
    cell in this list is papermill's (and ``lfakit run``'s) cell number."""
    return [c for c in nb.get("cells", []) if _PAPERMILL_ERROR_TAG not in (c.get("metadata", {}).get("tags") or [])]


def _error_output(cell: dict) -> dict | None:
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def notebook_status(nb: dict) -> RunStatus | None:
    """Failed or interrupted, from an executed notebook's own metadata; None when it ran through."""
    meta = nb.get("metadata", {}).get("papermill")
    cells = _counted_cells(nb)
    failed_at = None
    if isinstance(meta, dict):
        failed_at = next((i for i, c in enumerate(cells) if c.get("metadata", {}).get("papermill", {}).get("status") == "failed"), None)
        failed = bool(meta.get("exception")) or failed_at is not None
    else:  # not run by papermill (nbconvert, a notebook saved from JupyterLab): an error output is a failure
        failed_at = next((i for i, c in enumerate(cells) if c.get("cell_type") == "code" and _error_output(c)), None)
        failed = failed_at is not None
    if failed:
        if failed_at is None:  # flagged, but no cell says where (a timeout, a dead kernel)
            failed_at = next((i for i, c in enumerate(cells) if c.get("cell_type") == "code" and _error_output(c)), None)
        if failed_at is None:
            return RunStatus("failed", "failed", "papermill marked the notebook as failed without naming a cell")
        cell = cells[failed_at]
        err = _error_output(cell) or {}
        tb = _ANSI.sub("", "\n".join(err.get("traceback") or [])) or None
        st = RunStatus("failed", f"failed at cell {failed_at}", "", failed_at, cell.get("execution_count"),
                       err.get("ename") or "error", err.get("evalue") or "", tb)
        count = f" (execution count {st.execution_count})" if st.execution_count is not None else ""
        st.detail = f"cell {failed_at}{count} raised {st.ename}; the notebook stops there"
        return st
    if isinstance(meta, dict):
        states = [c.get("metadata", {}).get("papermill", {}).get("status") for c in cells]
        for want, how in (("running", "was running"), ("pending", "had not started")):
            if want in states:
                i = states.index(want)
                return RunStatus("interrupted", f"interrupted at cell {i}",
                                 f"the notebook stopped (or is still running): cell {i} {how}", i)
    return None


def run_status(run_dir: str | Path) -> RunStatus:
    """The run's state from its folder: see the module docstring."""
    run_dir = Path(run_dir)
    nb_path = run_dir / NOTEBOOK_NAME
    nb = _read_json(nb_path) if nb_path.exists() else None
    record = (run_dir / METRICS).exists() and (run_dir / MANIFEST).exists()
    if nb_path.exists() and not isinstance(nb, dict):
        if record:
            return RunStatus("complete", "complete", f"the record is complete, but {NOTEBOOK_NAME} cannot be read")
        return RunStatus("interrupted", "interrupted", f"{NOTEBOOK_NAME} cannot be read (cut off while it was written?)")
    nbs = notebook_status(nb) if nb is not None else None
    if nbs is not None and nbs.state == "failed":
        return nbs
    if record:
        how = "" if nb is not None else "; no executed notebook in the folder (run interactively, it stays in JupyterLab)"
        return RunStatus("complete", "complete", f"{METRICS} and {MANIFEST} are written{how}")
    if nbs is not None:
        return nbs
    missing = [f for f in (METRICS, MANIFEST) if not (run_dir / f).exists()]
    if nb is not None:
        return RunStatus("interrupted", "interrupted",
                         f"the notebook ran without an error but {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} missing (stopped or still running)")
    attempts = sorted(run_dir.glob("notebook.attempt-*.ipynb"))
    if attempts:
        return RunStatus("interrupted", "interrupted",
                         f"a resumed run without its new notebook yet ({len(attempts)} earlier attempt(s) kept)")
    return RunStatus("incomplete", "incomplete",
                     f"no {NOTEBOOK_NAME}, no {' or '.join(missing)}: never executed here, "
                     "or open in JupyterLab with its record not yet saved")


# --------------------------------------------------------------------------- what a results folder holds


@dataclass
class Run:
    """One run folder as the report shows it."""

    experiment: str
    run_id: str
    path: Path
    status: RunStatus
    params: dict[str, Any]
    profile: str
    date: str
    sort_key: str
    environment: dict[str, Any] | None
    headline_name: str | None = None
    headline_about: str = ""
    headline: Any = None  # a DataFrame
    notebook: Path | None = None
    attempts: list[Path] = field(default_factory=list)
    href: str = ""  # the run page, relative to the site root


@dataclass
class Comparison:
    path: Path  # the folder holding comparison.json
    doc: dict[str, Any]
    slug: str
    href: str = ""


@dataclass
class Sweep:
    path: Path
    doc: dict[str, Any]


def _site_dirs(results: Path, out: Path) -> set[Path]:
    found = {out}
    for marker in results.rglob(MARKER):
        found.add(marker.parent.resolve())
    return found


def _inside(path: Path, folders: set[Path]) -> bool:
    p = path.resolve()
    return any(p == f or f in p.parents for f in folders)


def _is_run_folder(d: Path) -> bool:
    if (d / COMPARISON_FILE).exists() or (d / SWEEP_FILE).exists() or (d / MARKER).exists():
        return False
    if any((d / f).exists() for f in (PARAMS_NAME, NOTEBOOK_NAME, METRICS, MANIFEST, "environment.json")):
        return True
    return bool(_RUN_ID.match(d.name)) or any(d.glob("notebook.attempt-*.ipynb"))


def _profile(run_id: str) -> str:
    m = _RUN_ID.match(run_id)
    if m and m.group(3):
        return re.sub(r"-\d+$", "", m.group(3))
    return "—"


def _date(run_id: str, env: dict | None, nb: dict | None, path: Path) -> tuple[str, str]:
    """(shown date, sort key) of a run: its environment record, papermill's start, its run id,
    else the folder's time."""
    stamp = None
    if isinstance(env, dict) and isinstance(env.get("time"), str):
        stamp = env["time"]
    elif isinstance(nb, dict) and isinstance(nb.get("metadata", {}).get("papermill", {}).get("start_time"), str):
        stamp = nb["metadata"]["papermill"]["start_time"]
    if stamp:
        try:
            t = _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            return t.strftime("%Y-%m-%d %H:%M:%S"), t.strftime("%Y%m%d%H%M%S")
        except ValueError:
            pass
    m = _RUN_ID.match(run_id)
    if m:
        t = _dt.datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")
        return t.strftime("%Y-%m-%d %H:%M:%S"), t.strftime("%Y%m%d%H%M%S")
    t = _dt.datetime.fromtimestamp(path.stat().st_mtime)
    return t.strftime("%Y-%m-%d %H:%M:%S"), t.strftime("%Y%m%d%H%M%S")


def _load_run(experiment: str, d: Path, notes: list[str]) -> Run:
    params: dict[str, Any] = {}
    if (d / PARAMS_NAME).exists():
        try:
            loaded = yaml.safe_load((d / PARAMS_NAME).read_text())
            params = loaded if isinstance(loaded, dict) else {}
        except (OSError, yaml.YAMLError) as e:
            notes.append(f"{d}: {PARAMS_NAME} cannot be read ({e.__class__.__name__})")
    metrics = _read_json(d / METRICS) if (d / METRICS).exists() else None
    nb = _read_json(d / NOTEBOOK_NAME) if (d / NOTEBOOK_NAME).exists() else None
    if not params and isinstance(metrics, dict) and isinstance(metrics.get("params"), dict):
        params = metrics["params"]
    if not params and isinstance(nb, dict) and isinstance(nb.get("metadata", {}).get("papermill", {}).get("parameters"), dict):
        params = nb["metadata"]["papermill"]["parameters"]
    env = _read_json(d / "environment.json") if (d / "environment.json").exists() else None
    shown, key = _date(d.name, env, nb, d)
    run = Run(experiment, d.name, d, run_status(d), params, _profile(d.name), shown, key,
              env if isinstance(env, dict) else None,
              notebook=d / NOTEBOOK_NAME if isinstance(nb, dict) else None,
              attempts=sorted(d.glob("notebook.attempt-*.ipynb"), key=lambda p: _attempt_number(p)))
    if isinstance(metrics, dict) and isinstance(metrics.get("headline"), dict):
        h = metrics["headline"]
        try:
            run.headline = table_from_json(h["table"])
            run.headline_name = str(h.get("name") or "headline")
            run.headline_about = str(h.get("about") or "")
        except (KeyError, TypeError, ValueError) as e:
            notes.append(f"{d}: the headline table in {METRICS} cannot be read ({e.__class__.__name__})")
    elif metrics is None and (d / METRICS).exists():
        notes.append(f"{d}: {METRICS} cannot be read")
    return run


def _attempt_number(p: Path) -> int:
    m = re.search(r"attempt-(\d+)", p.name)
    return int(m.group(1)) if m else 0


def scan(results: Path, out: Path | None = None) -> tuple[list[Run], list[Sweep], list[Comparison], list[str]]:
    """Every run folder ``<results>/<experiment>/<run-id>/`` (not ``sweeps/``), every sweep and
    every comparison under ``results``, and notes on what could not be read."""
    results = Path(results).resolve()
    out = (Path(out) if out else results / "site").resolve()
    skip = _site_dirs(results, out)
    runs: list[Run] = []
    notes: list[str] = []
    exp_dirs = [p for p in sorted(results.iterdir()) if p.is_dir() and not p.name.startswith(".")
                and not _inside(p, skip) and _is_experiment_folder(p)]
    if not exp_dirs and _is_experiment_folder(results):  # `lfakit report results/<experiment>`
        exp_dirs = [results]
    for exp_dir in exp_dirs:
        for d in sorted(p for p in exp_dir.iterdir() if p.is_dir()):
            if d.name == "sweeps" or d.name.startswith(".") or _inside(d, skip) or not _is_run_folder(d):
                continue
            runs.append(_load_run(exp_dir.name, d, notes))
    sweeps, comparisons = [], []
    for path in sorted(results.rglob(SWEEP_FILE)):
        if _inside(path, skip):
            continue
        doc = _read_json(path)
        if isinstance(doc, dict) and doc.get("schema") == SWEEP_SCHEMA:
            sweeps.append(Sweep(path.parent, doc))
        else:
            notes.append(f"{path}: not a readable {SWEEP_SCHEMA} file, left out")
    slugs: set[str] = set()
    for path in sorted(results.rglob(COMPARISON_FILE)):
        if _inside(path, skip):
            continue
        doc = _read_json(path)
        if not (isinstance(doc, dict) and doc.get("schema") == COMPARE_SCHEMA):
            notes.append(f"{path}: not a readable {COMPARE_SCHEMA} file, left out")
            continue
        rel = path.parent.relative_to(results).as_posix()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", rel.replace("/", "__")) or "comparison"
        while slug in slugs:
            slug += "_"
        slugs.add(slug)
        comparisons.append(Comparison(path.parent, doc, slug))
    return runs, sweeps, comparisons, notes


def _is_experiment_folder(d: Path) -> bool:
    """A folder of run folders (or of sweeps); not a run folder or a comparison itself."""
    if (d / COMPARISON_FILE).exists() or (d / MARKER).exists() or (d / PARAMS_NAME).exists() or (d / METRICS).exists():
        return False
    return any(p.is_dir() and (p.name == "sweeps" or _is_run_folder(p)) for p in d.iterdir())


# --------------------------------------------------------------------------- HTML pieces


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _href(rel: str) -> str:
    """A relative link, URL-escaped, as an attribute value."""
    return _e(quote(rel, safe="/#"))


def _rel(target: str, page_dir: str) -> str:
    """``target`` (relative to the site root) as seen from a page in ``page_dir`` (also relative)."""
    return Path(os.path.relpath(target, page_dir or ".")).as_posix()


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        import numpy as np

        if isinstance(v, np.number):
            return True
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, str):
        try:
            float(v.strip())
            return bool(v.strip())
        except ValueError:
            return False
    return False


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    try:
        import numpy as np

        if isinstance(v, np.integer):
            v = int(v)
        elif isinstance(v, np.floating):
            v = float(v)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v == int(v) and abs(v) < 1e15:
            return str(int(v)) if abs(v) >= 1e4 else f"{v:g}"
        return f"{v:.6g}"
    return str(v)


def table_html(df, max_rows: int | None = None, caption: str = "") -> str:
    """A DataFrame as a bordered HTML table: numbers right-aligned, the index shown unless it is
    a plain range, at most ``max_rows`` rows."""
    import pandas as pd

    show_index = not (isinstance(df.index, pd.RangeIndex) or
                      (df.index.name is None and list(df.index) == list(range(len(df)))))
    body = df if max_rows is None else df.head(max_rows)
    cols = [("" if str(c).startswith("Unnamed: ") else c) for c in df.columns]
    numeric = [len(body) > 0 and all(_is_number(v) or _is_missing(v) for v in body.iloc[:, j]) and
               any(_is_number(v) for v in body.iloc[:, j]) for j in range(len(cols))]
    parts = ['<div class="scroll"><table>']
    if caption:
        parts.append(f"<caption>{_e(caption)}</caption>")
    head = ([f"<th>{_e(df.index.name or '')}</th>"] if show_index else [])
    head += [f'<th{_NUM if numeric[j] else ""}>{_e(c)}</th>' for j, c in enumerate(cols)]
    parts.append("<thead><tr>" + "".join(head) + "</tr></thead><tbody>")
    for idx, row in zip(body.index, body.itertuples(index=False, name=None)):
        cells = [f"<th>{_e(_fmt(idx))}</th>"] if show_index else []
        cells += [f'<td{_NUM if _is_number(v) or (numeric[j] and _is_missing(v)) else ""}>{_e(_fmt(v))}</td>'
                  for j, v in enumerate(row)]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    return "".join(parts)


def _overrides(overrides: Any) -> str:
    if isinstance(overrides, dict):
        return " ".join(f"{k}={json.dumps(v, default=str) if not isinstance(v, str) else v}" for k, v in overrides.items()) \
            or "(the profile as it is)"
    return "" if overrides is None else str(overrides)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _kv(items: dict[str, Any]) -> str:
    rows = []
    for k, v in items.items():
        if isinstance(v, (dict, list)):
            text = json.dumps(v, default=str)
        else:
            text = _fmt(v)
        rows.append(f"<tr><th>{_e(k)}</th><td><code>{_e(text)}</code></td></tr>")
    return '<div class="scroll"><table>' + "".join(rows) + "</table></div>"


def _badge(state: str, text: str | None = None) -> str:
    return f'<span class="badge {_e(state)}">{_e(text or state)}</span>'


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n"
            f"<body><div class=\"lfk\">{body}</div></body></html>\n")


def _short(text: str, n: int = 220) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------- key parameters


def _list(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)) if v else "all"
    return "" if v is None else str(v)


def key_params(params: dict[str, Any]) -> dict[str, str]:
    """The parameters the index shows: losses, seed, epochs, data."""
    losses = params.get("losses")
    if losses is None and "trainers" in params:
        losses = params["trainers"]
    seed = _fmt(params.get("seed")) if "seed" in params else ""
    seeds = params.get("seeds")
    if isinstance(seeds, (list, tuple)) and seeds:
        seed = f"{seed} (seeds {', '.join(map(str, seeds))})" if seed else ", ".join(map(str, seeds))
    elif isinstance(seeds, int) and not isinstance(seeds, bool):
        seed = f"{seed} ({seeds} seeds)" if seed else f"{seeds} seeds"
    epochs = params.get("epochs", params.get("max_epochs"))
    data = []
    for k in ("dataset", "datasets"):
        if params.get(k) not in (None, "", []):
            data.append(_list(params[k]))
    if "data_dir" in params:
        data.append(str(params["data_dir"]) if params["data_dir"] else "embedded")
    return {"losses": _list(losses) if losses is not None else "—", "seed": seed or "—",
            "epochs": _fmt(epochs) if epochs is not None else "—", "data": " · ".join(data) or "—"}


# --------------------------------------------------------------------------- pages


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _csv_section(csv: Path, copied_rel: str, title: str | None = None) -> str:
    import pandas as pd

    name = title or csv.name
    try:
        df = pd.read_csv(csv)
    except Exception as e:  # noqa: BLE001 - an unreadable table is reported, not fatal
        return f'<h3>{_e(name)}</h3><p class="note">cannot read {_e(csv.name)}: {_e(e)}</p>'
    more = (f'<p class="muted">the first {MAX_TABLE_ROWS} of {len(df)} rows; the whole table: '
            f'<a href="{_href(copied_rel)}">{_e(csv.name)}</a></p>' if len(df) > MAX_TABLE_ROWS else
            f'<p class="muted">{len(df)} rows · <a href="{_href(copied_rel)}">{_e(csv.name)}</a></p>')
    return f"<h3>{_e(name)}</h3>{more}{table_html(df, MAX_TABLE_ROWS)}"


def _figure(rel: str, name: str) -> str:
    return f'<figure><img src="{_href(rel)}" alt="{_e(name)}" loading="lazy"><figcaption>{_e(name)}</figcaption></figure>'


def _status_block(run: Run, notebook_anchor: bool) -> str:
    st = run.status
    if st.state == "failed":
        jump = ' <a href="#papermill-error-cell">jump to the failed cell</a>' if notebook_anchor else ""
        tb = f"<details><summary>traceback</summary><pre>{_e(st.traceback)}</pre></details>" if st.traceback else ""
        return (f'<div class="error"><p>{_badge("failed", st.label)} <strong>{_e(st.ename or "")}</strong>'
                f'{": " + _e(st.evalue) if st.evalue else ""}</p><p class="muted">{_e(st.detail)}.{jump}</p>{tb}</div>')
    if st.state in ("interrupted", "incomplete"):
        hint = ""
        if (run.path / "checkpoints").exists() and run.profile != "—":
            hint = f' Continue it with <code>lfakit run {_e(run.experiment)} --resume {_e(run.run_id)}</code>.'
        return f'<div class="note"><p>{_badge(st.state, st.label)} {_e(st.detail)}.{hint}</p></div>'
    return f"<p>{_badge('complete')} <span class=\"muted\">{_e(st.detail)}</span></p>"


def _environment_html(env: dict[str, Any]) -> str:
    flat = {k: v for k, v in env.items() if k not in ("packages", "git")}
    git = env.get("git") if isinstance(env.get("git"), dict) else None
    if git:
        flat["git commit"] = (git.get("commit") or "unknown") + (" (uncommitted changes)" if git.get("dirty") else "")
    out = _kv(flat)
    if isinstance(env.get("packages"), dict):
        out += "<h3>packages</h3>" + _kv({k: v if v is not None else "not installed" for k, v in env["packages"].items()})
    return out


def _run_summary(run: Run, comparisons_here: list[Comparison], notebook_anchor: bool) -> str:
    """The top of a run page (figures and tables are copied beside the page first)."""
    page = run.href.rsplit("/", 1)[0]
    kp = key_params(run.params)
    sections = []
    sections.append(f'<p><a href="{_href(_rel("index.html", page))}">← all runs</a></p>')
    sections.append(f"<h1>{_e(run.experiment)} · {_e(run.run_id)}</h1>")
    nav = ['<a href="#summary">summary</a>', '<a href="#parameters">parameters</a>', '<a href="#environment">environment</a>']
    figs = _run_files(run.path / "figures", _IMAGE_SUFFIXES)
    tabs = _run_files(run.path / "tables", (".csv",))
    if run.headline is not None:
        nav.insert(1, '<a href="#headline">headline</a>')
    if figs:
        nav.append('<a href="#figures">figures</a>')
    if tabs:
        nav.append('<a href="#tables">tables</a>')
    if run.notebook is not None:
        nav.append('<a href="#notebook">notebook</a>')
    sections.append("<nav>" + "".join(nav) + "</nav>")
    sections.append('<h2 id="summary">Summary</h2>')
    sections.append(_status_block(run, notebook_anchor))
    info = {"date": run.date, "profile": run.profile, **kp, "run folder": str(run.path)}
    sections.append('<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in info.items()) + "</dl>")
    links = []
    for a in run.attempts:
        links.append(f'<a href="{_href(a.with_suffix(".html").name)}">{_e(a.name)}</a> (an earlier, interrupted attempt)')
    for c in comparisons_here:
        links.append(f'<a href="{_href(_rel(c.href, page))}">comparison: {_e(c.doc.get("metric", ""))}</a>')
    if (run.path / KERNEL_LOG).exists() and (run.path / KERNEL_LOG).stat().st_size:
        links.append(f'<a href="{_href(KERNEL_LOG)}">{KERNEL_LOG}</a> (the kernel process\'s own messages)')
    if links:
        sections.append("<ul>" + "".join(f"<li>{x}</li>" for x in links) + "</ul>")
    if run.headline is not None:
        partial = " (written before the failure)" if run.status.state == "failed" else ""
        sections.append(f'<h2 id="headline">Headline: {_e(run.headline_name)}{partial}</h2>')
        if run.headline_about:
            sections.append(f'<p class="muted">{_e(run.headline_about)}</p>')
        sections.append(table_html(run.headline))
    sections.append('<h2 id="parameters">Parameters</h2>')
    sections.append(f'<p class="muted">{PARAMS_NAME}</p>' + (_kv(run.params) if run.params else "<p>no parameters recorded</p>"))
    sections.append('<h2 id="environment">Environment</h2>')
    if run.environment:
        sections.append("<details><summary>environment.json: python "
                        f"{_e(run.environment.get('python', '?'))}, device {_e(run.environment.get('device', '?'))}, "
                        f"{_e(run.environment.get('platform', ''))}</summary>{_environment_html(run.environment)}</details>")
    else:
        sections.append("<p>no environment.json (the notebook did not reach its setup cell)</p>")
    if figs:
        sections.append('<h2 id="figures">Figures</h2>')
        sections += [_figure(f"figures/{p.relative_to(run.path / 'figures').as_posix()}", p.name) for p in figs]
    if tabs:
        sections.append('<h2 id="tables">Tables</h2>')
        for p in tabs:
            rel = f"tables/{p.relative_to(run.path / 'tables').as_posix()}"
            sections.append(f"<details{' open' if p.stat().st_size < 20_000 else ''}><summary>{_e(p.stem)}</summary>"
                            f"{_csv_section(p, rel)}</details>")
    if run.notebook is None:
        why = ("this run was made by a notebook in JupyterLab, which keeps the notebook there"
               if run.run_id.endswith("-interactive") else "papermill never wrote it here")
        sections.append(f'<h2 id="notebook">Notebook</h2><p>No executed {NOTEBOOK_NAME} in the run folder: {_e(why)}.</p>')
    return "".join(sections)


def _run_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


class _NotebookRenderer:
    """nbconvert's HTML exporter (lab template) with nothing fetched from the network."""

    def __init__(self):
        self._exporter = None

    def render(self, nb_path: Path, header: str, title: str) -> str:
        import nbformat

        if self._exporter is None:
            import jinja2
            from nbconvert import HTMLExporter

            self._exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"lfakit_site.html.j2": _NOTEBOOK_TEMPLATE})],
                                          template_file="lfakit_site.html.j2", embed_images=True)
        nb = nbformat.read(str(nb_path), as_version=4)
        nb.metadata.pop("widgets", None)  # widget state needs the CDN renderer: shown as text instead
        for cell in nb.cells:  # papermill's error markers are HTML; as markdown their link loses its text
            if cell.cell_type == "markdown" and _PAPERMILL_ERROR_TAG in (cell.metadata.get("tags") or []):
                cell.cell_type = "raw"
                cell.metadata["raw_mimetype"] = "text/html"
                cell.source = f'<div class="lfk-pm-error">{cell.source}</div>'
                cell.pop("attachments", None)
        nb.metadata["title"] = title
        body, _ = self._exporter.from_notebook_node(
            nb, resources={"lfakit_css": CSS, "lfakit_header": f'<div class="lfk">{header}</div>'
                           '<h2 class="lfk-notebook-title" id="notebook">Executed notebook</h2>'})
        return body


def _write_run_page(run: Run, site: Path, renderer: _NotebookRenderer, comparisons_here: list[Comparison], notes: list[str]) -> None:
    page_dir = site / run.href.rsplit("/", 1)[0]
    page_dir.mkdir(parents=True, exist_ok=True)
    for sub, suffixes in (("figures", _IMAGE_SUFFIXES), ("tables", (".csv",))):
        for p in _run_files(run.path / sub, suffixes):
            _copy(p, page_dir / sub / p.relative_to(run.path / sub))
    if (run.path / KERNEL_LOG).exists() and (run.path / KERNEL_LOG).stat().st_size:
        _copy(run.path / KERNEL_LOG, page_dir / KERNEL_LOG)
    title = f"{run.experiment} {run.run_id}"
    anchor = False
    if run.notebook is not None:
        nb = _read_json(run.notebook) or {}
        anchor = any(_PAPERMILL_ERROR_TAG in (c.get("metadata", {}).get("tags") or []) and
                     'id="papermill-error-cell"' in "".join(c.get("source") or "") for c in nb.get("cells", []))
    header = _run_summary(run, comparisons_here, anchor)
    text = None
    if run.notebook is not None:
        try:
            text = renderer.render(run.notebook, header, title)
        except Exception as e:  # noqa: BLE001 - one unreadable notebook must not stop the report
            notes.append(f"{run.notebook}: cannot be rendered ({e.__class__.__name__}: {_short(e, 160)})")
            header += f'<h2 id="notebook">Notebook</h2><p class="note">{NOTEBOOK_NAME} cannot be rendered: {_e(e)}</p>'
    if text is None:
        text = _page(title, header)
    (site / run.href).write_text(text, encoding="utf-8")
    for a in run.attempts:
        back = (f'<p><a href="index.html">← the run</a></p><h1>{_e(run.experiment)} · {_e(run.run_id)} · {_e(a.name)}</h1>'
                '<p class="muted">An earlier attempt of this run, kept by <code>--resume</code>.</p>')
        try:
            (page_dir / a.with_suffix(".html").name).write_text(renderer.render(a, back, f"{title} {a.name}"), encoding="utf-8")
        except Exception as e:  # noqa: BLE001
            notes.append(f"{a}: cannot be rendered ({e.__class__.__name__})")
            (page_dir / a.with_suffix(".html").name).write_text(_page(title, back + f"<p>cannot be rendered: {_e(e)}</p>"),
                                                                 encoding="utf-8")


def _write_comparison_page(c: Comparison, site: Path, results: Path) -> None:
    page_dir = site / "comparisons" / c.slug
    page_dir.mkdir(parents=True, exist_ok=True)
    d = c.doc
    title = f"{d.get('experiment', '?')}: {d.get('metric', '?')} against {d.get('baseline', '?')}"
    parts = ['<p><a href="../../index.html">← all runs</a></p>', f"<h1>Comparison · {_e(title)}</h1>"]
    info = {"experiment": d.get("experiment"), "metric": d.get("metric"), "baseline": d.get("baseline"),
            "source": d.get("source"), "folder": c.path.relative_to(results).as_posix()}
    parts.append('<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(_fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v))}</dd>"
                                             for k, v in info.items() if v is not None) + "</dl>")
    if d.get("evidence"):
        parts.append(f'<p class="note"><strong>Evidence:</strong> {_e(d["evidence"])}</p>')
    files = d.get("files") if isinstance(d.get("files"), dict) else {}
    tables, figures, others = [], [], []
    root = c.path.resolve()
    for name, rel in files.items():
        src = (c.path / str(rel)).resolve()
        if root not in src.parents:
            others.append(f"<li>{_e(name)}: {_e(rel)} is outside the comparison folder, left out</li>")
            continue
        if not src.is_file():
            others.append(f"<li>{_e(name)}: {_e(rel)} is missing</li>")
            continue
        target = src.relative_to(root).as_posix()
        _copy(src, page_dir / target)
        if src.suffix.lower() == ".csv":
            tables.append(_csv_section(src, target, f"{name} ({src.name})"))
        elif src.suffix.lower() in _IMAGE_SUFFIXES:
            figures.append(_figure(target, f"{name} ({src.name})"))
        elif src.suffix.lower() in (".md", ".txt"):
            others.append(f'<li><a href="{_href(target)}">{_e(name)} ({_e(src.name)})</a>'
                          f"<details><summary>show</summary><pre>{_e(src.read_text(errors='replace'))}</pre></details></li>")
        else:
            others.append(f'<li><a href="{_href(target)}">{_e(name)} ({_e(src.name)})</a></li>')
    if tables:
        parts.append("<h2>Tables</h2>" + "".join(tables))
    if figures:
        parts.append("<h2>Figures</h2>" + "".join(figures))
    if others:
        parts.append("<h2>Files</h2><ul>" + "".join(others) + "</ul>")
    (page_dir / "index.html").write_text(_page(f"comparison {title}", "".join(parts)), encoding="utf-8")


def _index(results: Path, runs: list[Run], sweeps: list[Sweep], comparisons: list[Comparison], notes: list[str],
           run_pages: dict[Path, str], by_id: dict[tuple[str, str], str]) -> str:
    counts = {s: sum(r.status.state == s for r in runs) for s in STATES}
    built = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    exps = sorted({r.experiment for r in runs} | {str(s.doc.get("experiment", "")) for s in sweeps if s.doc.get("experiment")})
    parts = ["<h1>lfakit report</h1>",
             f'<p class="muted">results folder <code>{_e(results)}</code> · built {_e(built)}</p>',
             "<p>" + f"{len(runs)} run{'s' if len(runs) != 1 else ''}: " +
             " ".join(f"{_badge(s, f'{n} {s}')}" for s, n in counts.items() if n) + "</p>"]
    nav = [f'<a href="#exp-{_e(x)}">{_e(x)}</a>' for x in exps]
    if sweeps:
        nav.append('<a href="#sweeps">sweeps</a>')
    if comparisons:
        nav.append('<a href="#comparisons">comparisons</a>')
    if nav:
        parts.append("<nav>" + "".join(nav) + "</nav>")
    if comparisons:
        parts.append('<h2 id="comparisons">Comparisons</h2><div class="scroll"><table><thead><tr><th>experiment</th>'
                     "<th>metric</th><th>baseline</th><th>evidence</th><th>folder</th></tr></thead><tbody>")
        for c in comparisons:
            d = c.doc
            parts.append(f'<tr><td><a href="{_href(c.href)}">{_e(d.get("experiment", "?"))}</a></td><td>{_e(d.get("metric", ""))}</td>'
                         f'<td>{_e(d.get("baseline", ""))}</td><td>{_e(_short(d.get("evidence", ""), 300))}</td>'
                         f"<td><code>{_e(c.path.relative_to(results).as_posix())}</code></td></tr>")
        parts.append("</tbody></table></div>")
    for exp in exps:
        these = sorted((r for r in runs if r.experiment == exp), key=lambda r: (r.sort_key, r.run_id), reverse=True)
        parts.append(f'<h2 id="exp-{_e(exp)}">{_e(exp)}</h2>')
        if not these:
            parts.append("<p>no run folders (sweeps only)</p>")
            continue
        newest_complete = next((r for r in these if r.status.state == "complete" and r.headline is not None), None)
        parts.append('<div class="scroll"><table class="runs"><thead><tr><th>run</th><th>date</th><th>profile</th>'
                     "<th>status</th><th>losses</th><th>seed</th><th>epochs</th><th>data</th><th>headline</th></tr></thead><tbody>")
        for r in these:
            kp = key_params(r.params)
            st = r.status
            why = f'<div class="why">{_e(_short(f"{st.ename}: {st.evalue}" if st.ename else st.detail))}</div>' \
                if st.state != "complete" else ""
            head = "—"
            if r.headline is not None:
                head = (f"<details><summary>{_e(r.headline_name)} ({len(r.headline)} rows)</summary>"
                        f"{table_html(r.headline, 40)}</details>")
            parts.append(f'<tr class="{_e(st.state)}"><td class="nowrap"><a href="{_href(r.href)}">{_e(r.run_id)}</a></td>'
                         f'<td class="nowrap">{_e(r.date)}</td><td>{_e(r.profile)}</td>'
                         f'<td>{_badge(st.state, st.label)}{why}</td><td>{_e(kp["losses"])}</td><td>{_e(kp["seed"])}</td>'
                         f'<td class="num">{_e(kp["epochs"])}</td><td>{_e(kp["data"])}</td><td>{head}</td></tr>')
        parts.append("</tbody></table></div>")
        if newest_complete is not None:
            r = newest_complete
            parts.append(f'<h3>Headline of the newest complete run, <a href="{_href(r.href)}">{_e(r.run_id)}</a>: '
                         f"{_e(r.headline_name)}</h3>")
            if r.headline_about:
                parts.append(f'<p class="muted">{_e(_short(r.headline_about, 400))}</p>')
            parts.append(table_html(r.headline, _INDEX_ROWS))
            if len(r.headline) > _INDEX_ROWS:
                parts.append(f'<p class="muted">the first {_INDEX_ROWS} of {len(r.headline)} rows; '
                             f'<a href="{_href(r.href)}#headline">the run page</a> has them all</p>')
    if sweeps:
        parts.append('<h2 id="sweeps">Sweeps</h2>')
        for s in sweeps:
            d = s.doc
            points = d.get("points") if isinstance(d.get("points"), list) else []
            tally: dict[str, int] = {}
            for p in points:
                tally[str(p.get("status"))] = tally.get(str(p.get("status")), 0) + 1
            parts.append(f'<h3>{_e(d.get("experiment", "?"))} · {_e(s.path.name)}</h3>')
            parts.append(f'<p class="muted"><code>{_e(s.path.relative_to(results).as_posix())}</code> · profile {_e(d.get("profile"))}'
                         f' · grid <code>{_e(json.dumps(d.get("grid", {}), default=str))}</code> · seeds {_e(_list(d.get("seeds")) if d.get("seeds") else "—")}'
                         f' · executor {_e(d.get("executor"))} · updated {_e(d.get("updated"))}</p>')
            parts.append("<p>" + " ".join(_badge(k, f"{n} {k}") for k, n in tally.items()) + "</p>")
            parts.append('<div class="scroll"><table><thead><tr><th class="num">#</th><th>overrides</th><th>status</th><th>run</th>'
                         '<th class="num">seconds</th><th>error</th></tr></thead><tbody>')
            for p in points:
                status = str(p.get("status", "?"))
                rd = p.get("run_dir")
                link = "—"
                if rd:
                    href = run_pages.get(Path(str(rd)).resolve()) or by_id.get((Path(str(rd)).parent.name, Path(str(rd)).name))
                    link = (f'<a class="nowrap" href="{_href(href)}">{_e(Path(str(rd)).name)}</a>' if href
                            else f"<code>{_e(rd)}</code>")
                err = _short((p.get("error") or "").strip().splitlines()[0], 200) if p.get("error") else ""
                secs = p.get("seconds")
                parts.append(f'<tr class="{_e(status)}"><td class="num">{_e(p.get("index"))}</td>'
                             f'<td><code>{_e(_overrides(p.get("overrides")))}</code></td>'
                             f"<td>{_badge(status)}</td><td>{link}</td>"
                             f'<td class="num">{_e(f"{secs:.0f}" if isinstance(secs, (int, float)) else "")}</td><td>{_e(err)}</td></tr>')
            parts.append("</tbody></table></div>")
    if not runs and not sweeps and not comparisons:
        parts.append("<p>Nothing to show yet: no run folders under this results folder. "
                     "<code>lfakit run &lt;experiment&gt;</code> makes one.</p>")
    if notes:
        parts.append("<h2>Left out</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    return _page("lfakit report", "".join(parts))


def build_site(results: Path, out: Path | None = None) -> Path:
    """Write the static report of ``results`` into ``out`` (default ``<results>/site``) and
    return the path of its ``index.html``. A folder ``out`` that exists must be an earlier
    report (it holds the marker file ``.lfakit-site``) or empty; it is rebuilt from scratch."""
    results = Path(results).expanduser()
    if not results.is_dir():
        raise LfakitError(f"no results folder at {results}; run an experiment first (`lfakit run <experiment>`) "
                          "or point `lfakit report` at the folder holding the run folders")
    results = results.resolve()
    out = (Path(out).expanduser() if out else results / "site").resolve()
    if out.exists():
        if not out.is_dir():
            raise LfakitError(f"{out} is a file; give `lfakit report -o` a folder")
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise LfakitError(f"{out} is not empty and holds no earlier report ({MARKER}); "
                              "choose another folder with `lfakit report -o` (nothing was written)")
        shutil.rmtree(out)
    runs, sweeps, comparisons, notes = scan(results, out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("built by lfakit report; this folder is rebuilt (deleted first) on every report\n")
    used: set[str] = set()
    for r in runs:
        href = f"runs/{r.experiment}/{r.run_id}/index.html"
        while href in used:  # pragma: no cover - experiment and run id are one folder's path
            href = href.replace("/index.html", "_/index.html")
        used.add(href)
        r.href = href
    for c in comparisons:
        c.href = f"comparisons/{c.slug}/index.html"
    run_pages = {r.path.resolve(): r.href for r in runs}
    by_id = {(r.experiment, r.run_id): r.href for r in runs}
    renderer = _NotebookRenderer()
    for r in runs:
        here = [c for c in comparisons if r.path.resolve() in c.path.resolve().parents]
        _write_run_page(r, out, renderer, here, notes)
    for c in comparisons:
        _write_comparison_page(c, out, results)
    index = out / "index.html"
    index.write_text(_index(results, runs, sweeps, comparisons, notes, run_pages, by_id), encoding="utf-8")
    return index
