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
        kernel.log.txt                  the kernel's log (as .txt: a browser shows it as text)
        notebook.attempt-<n>.html       an interrupted attempt kept by ``--resume``
      comparisons/<slug>/index.html     one page per ``comparison.json`` (``lfakit compare``)

**Nothing in the site runs.** A results folder may come from someone else, so opening its report
must be as safe as opening a PDF (docs/security.md):

* every page carries the Content-Security-Policy :data:`CSP` as the first element of its
  ``<head>``: no script of any kind (the site needs none), no plug-in, no frame, no form, no
  ``<base>``, and nothing loaded but the site's own files and ``data:`` images;
* the site's own pages are rendered from the Jinja2 templates in ``lfakit/templates/`` with
  autoescape on, so a parameter value, a method name, a file name or a CSV cell is text;
* a notebook is cleaned before nbconvert renders it (:func:`clean_notebook`): only text, HTML,
  Markdown, LaTeX and PNG/JPEG/SVG outputs are kept (JavaScript, widget and any other output
  becomes a line of text saying what was left out), and HTML from outputs, Markdown cells and raw
  cells goes through :func:`clean_html`, an allow-list sanitiser built on **bleach**, the library
  nbconvert itself uses for ``--sanitize-html`` (so the kit needs no other dependency; bleach is
  in maintenance mode upstream, and should nbconvert move to ``nh3``, :func:`clean_html` is the
  one place to change). Its
  allow-list is wider than nbconvert's ``clean_html`` (which escapes the tables, headings and
  images a notebook's Markdown renders to) but admits no script, event handler, ``<style>``,
  ``<iframe>``, ``<object>``, ``<form>``, ``<meta>`` or ``<svg>`` element, links only to
  ``http(s)``/``mailto`` and the page's own anchors, and images only as ``data:`` images;
  SVG outputs are shown as ``<img src="data:image/svg+xml;...">``, in which a browser runs no
  script. nbconvert's ``embed_images`` is off: it would read image files off the disk named by
  the notebook's Markdown;
* only regular files that lie inside the run folder are read or copied: a symbolic link, or a
  file reached through one, is listed on the run page as skipped, with the reason.

A run's status comes from its folder alone (:func:`run_status`):

``complete``
    ``metrics.json`` and ``manifest.json`` (written last) are there, every file the manifest lists
    has its size and SHA-256 (:func:`lfakit.record.verify_run`), and the executed notebook, if any,
    is not marked as failed.
``damaged``
    there is a ``manifest.json``, but the folder does not hold what it promises: a file missing,
    truncated or changed, ``metrics.json`` not valid JSON. The page names each file and the
    reason and shows the parameters only: no headline, figures, tables or notebook.
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

import base64
import datetime as _dt
import io
import json
import math
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from lfakit.compare import REHEARSAL_FILE
from lfakit.errors import LfakitError
from lfakit.record import MANIFEST, METRICS, Damage, table_from_json, verify_run
from lfakit.runner import KERNEL_LOG, NOTEBOOK_NAME, PARAMS_NAME

COMPARE_SCHEMA = "lfakit.compare/1"
SWEEP_SCHEMA = "lfakit.sweep/1"
COMPARISON_FILE = "comparison.json"
SWEEP_FILE = "sweep.json"
MARKER = ".lfakit-site"
STATES = ("complete", "damaged", "failed", "interrupted", "incomplete")
MAX_TABLE_ROWS = 60  # rows of a CSV shown on a page; the whole file is linked
TEMPLATES = Path(__file__).resolve().parent / "templates"
_INDEX_ROWS = 15  # rows of an experiment's newest headline shown on the index
_PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_RUN_ID = re.compile(r"^(\d{8})-(\d{6})(?:-(.*))?$")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".gif", ".webp")
#: Files of a comparison the site copies and links: tables, text and raster images. An HTML or
#: SVG file opened on its own runs its scripts (no CSP there), so it is listed, not copied; an SVG
#: figure is shown inline as a ``data:`` image, in which a browser runs no script.
_COPIED_SUFFIXES = (".csv", ".md", ".txt", ".tex", ".json", ".png", ".jpg", ".jpeg", ".gif", ".webp")
#: Text a browser may not know by its suffix (``.md``, ``.tex``, ``.log``; on a system without a
#: MIME type for it, a file opened from disk is sniffed, and one that starts like HTML would be
#: run as HTML): copied with ``.txt`` added, which every browser shows as plain text.
_AS_TEXT = (".md", ".tex", ".log")
_KERNEL_LOG_COPY = KERNEL_LOG + ".txt"

#: The Content-Security-Policy of every page (a ``<meta http-equiv>``, first in ``<head>``). The
#: site has no script of its own; its CSS is inline (``<style>``, and nbconvert's lab template
#: inlines its own), its figures are files beside the page, and notebook images are ``data:``
#: URIs. ``default-src 'none'`` also forbids frames, fonts, fetches and media; ``frame-ancestors``
#: and ``sandbox`` would need an HTTP header, which a file has not.
CSP = ("default-src 'none'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; "
       "img-src 'self' data:; style-src 'self' 'unsafe-inline'")

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
.lfk tr.failed>td,.lfk tr.damaged>td{background:#fde8e8}
.lfk tr.interrupted>td,.lfk tr.incomplete>td{background:#fff6db}
.lfk .badge{display:inline-block;padding:0 8px;border-radius:9px;font-size:12.5px;font-weight:600;white-space:nowrap}
.lfk .badge.complete,.lfk .badge.skipped{background:#d7f5dd;color:#14532d}
.lfk .badge.failed{background:#ffd6d1;color:#9b1c1c}
.lfk .badge.damaged{background:#5c1a1a;color:#fff}
.lfk .badge.interrupted,.lfk .badge.incomplete,.lfk .badge.pending,.lfk .badge.running{background:#fff0bf;color:#6b4a00}
.lfk .why{font-size:12.5px;color:#6e2020;margin-top:2px;min-width:16em;max-width:34em;overflow-wrap:anywhere}
.lfk .why ul{margin:0;padding-left:1.2em}
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
.lfk-left-out{color:#59636e;font-style:italic}
"""


# --------------------------------------------------------------------------- reading a run folder safely


def regular_file(path: Path, root: Path) -> str | None:
    """Why ``path`` is not read from the run folder ``root`` (a symbolic link, not a regular
    file, outside the folder), or None when it may be. ``lstat`` is used: a link is never followed."""
    try:
        st = path.lstat()
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link (the report copies and reads only the run folder's own files)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    try:
        inside = Path(root).resolve() in path.resolve().parents
    except OSError:
        inside = False
    if not inside:
        return "lies outside the run folder (reached through a symbolic link)"
    return None


def _read_text(path: Path, root: Path | None = None) -> str | None:
    """A file's text, or None when it is missing, unreadable, or not a regular file inside
    ``root`` (by default its own folder)."""
    if regular_file(path, root or path.parent) is not None:
        return None
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


MAX_PARAM_VALUES = 100_000  # a run's parameters, every list item and mapping entry counted once per use


def _expanded_size(obj: Any, limit: int = MAX_PARAM_VALUES) -> int:
    """How many values ``obj`` holds once every shared reference (a YAML alias) is expanded, as
    the page would render it; the count stops just past ``limit``. A few hundred bytes of nested
    aliases expand to billions of values: counting first keeps the report from hanging on them."""
    n, stack = 0, [obj]
    while stack and n <= limit:
        o = stack.pop()
        n += 1
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
    return n


def _read_json(path: Path, root: Path | None = None) -> Any:
    return _json_or_none(_read_text(path, root))


def _exists(path: Path) -> bool:
    """There, as a file or a link (a dangling link too): ``Path.exists`` follows links."""
    return os.path.lexists(path)


def run_damage(run_dir: str | Path) -> list[Damage]:
    """What is wrong with a run folder that has a ``manifest.json``: :func:`lfakit.record.verify_run`,
    plus a ``metrics.json`` that is not valid JSON. A folder without a manifest has no record to
    check (it is failed, interrupted or incomplete): an empty list."""
    run_dir = Path(run_dir)
    if not _exists(run_dir / MANIFEST):
        return []
    problems = list(verify_run(run_dir))
    if not any(p.file == METRICS for p in problems) and _exists(run_dir / METRICS):
        why = regular_file(run_dir / METRICS, run_dir)
        if why is None:
            try:
                doc = json.loads((run_dir / METRICS).read_bytes())
                if not isinstance(doc, dict):
                    problems.append(Damage(METRICS, f"holds a JSON {type(doc).__name__}, not the record's object"))
            except (ValueError, UnicodeDecodeError, RecursionError) as e:
                problems.append(Damage(METRICS, f"not valid JSON ({e.__class__.__name__}: {e})"))
            except OSError as e:
                problems.append(Damage(METRICS, f"cannot be read ({e.strerror})"))
        else:
            problems.append(Damage(METRICS, why))
    return problems


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
    damage: list[Damage] = field(default_factory=list)  # a damaged run's files and reasons

    @property
    def text(self) -> str:
        """The label with the error: ``failed at cell 27: FileExistsError: ...``, ``damaged:
        predictions.npz: 1,204 bytes, the manifest says 9,876 (truncated)``."""
        if self.state == "damaged" and self.damage:
            return f"{self.label}: " + "; ".join(map(str, self.damage))
        if self.state == "failed" and self.ename:
            return f"{self.label}: {self.ename}: {self.evalue}" if self.evalue else f"{self.label}: {self.ename}"
        return self.label


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


def run_status(run_dir: str | Path, verify: bool = True) -> RunStatus:
    """The run's state from its folder: see the module docstring. With ``verify`` (the default) a
    folder with a ``manifest.json`` is checked against it (:func:`run_damage`), and a damaged one
    is ``damaged``, whatever its notebook says."""
    run_dir = Path(run_dir)
    if verify:
        damage = run_damage(run_dir)
        if damage:
            n = len(damage)
            return RunStatus("damaged", "damaged",
                             f"{n} file{'s' if n != 1 else ''} of the record {'do' if n != 1 else 'does'} not match "
                             f"{MANIFEST}", damage=damage)
    nb_path = run_dir / NOTEBOOK_NAME
    nb = _read_json(nb_path, run_dir) if _exists(nb_path) else None
    record = _exists(run_dir / METRICS) and _exists(run_dir / MANIFEST)
    if _exists(nb_path) and not isinstance(nb, dict):
        if record:
            return RunStatus("complete", "complete", f"the record is complete, but {NOTEBOOK_NAME} cannot be read")
        return RunStatus("interrupted", "interrupted", f"{NOTEBOOK_NAME} cannot be read (cut off while it was written?)")
    nbs = notebook_status(nb) if nb is not None else None
    if nbs is not None and nbs.state == "failed":
        return nbs
    if record:
        how = "" if nb is not None else "; no executed notebook in the folder (run interactively, it stays in JupyterLab)"
        checked = f", and every file {MANIFEST} lists has its size and SHA-256" if verify else ""
        return RunStatus("complete", "complete", f"{METRICS} and {MANIFEST} are written{checked}{how}")
    if nbs is not None:
        return nbs
    missing = [f for f in (METRICS, MANIFEST) if not _exists(run_dir / f)]
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
    figures: list[Path] = field(default_factory=list)  # regular files inside the run folder only
    tables: list[Path] = field(default_factory=list)
    kernel_log: Path | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) left out of the report


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
        try:
            t = _dt.datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")
            return t.strftime("%Y-%m-%d %H:%M:%S"), t.strftime("%Y%m%d%H%M%S")
        except ValueError:  # the shape of a run id, not a date (20261399-...)
            pass
    t = _dt.datetime.fromtimestamp(path.stat().st_mtime)
    return t.strftime("%Y-%m-%d %H:%M:%S"), t.strftime("%Y%m%d%H%M%S")


def _load_run(experiment: str, d: Path, notes: list[str]) -> Run:
    status = run_status(d)
    damaged = status.state == "damaged"
    skipped: list[tuple[str, str]] = []

    def read(name: str) -> str | None:
        p = d / name
        if not _exists(p):
            return None
        why = regular_file(p, d)
        if why is not None:
            skipped.append((name, why))
            return None
        return _read_text(p, d)

    params: dict[str, Any] = {}
    text = read(PARAMS_NAME)
    if text is not None:
        try:
            loaded = yaml.safe_load(text)
            params = loaded if isinstance(loaded, dict) else {}
            if _expanded_size(params) > MAX_PARAM_VALUES:  # YAML aliases nested into a "billion laughs"
                notes.append(f"{d}: {PARAMS_NAME} expands to more than {MAX_PARAM_VALUES:,} values (nested YAML "
                             "aliases); its parameters are not shown")
                params = {}
        except (yaml.YAMLError, RecursionError, ValueError) as e:
            notes.append(f"{d}: {PARAMS_NAME} cannot be read ({e.__class__.__name__})")
    metrics = _json_or_none(read(METRICS)) if not damaged else None  # a damaged record is not read
    nb = _json_or_none(read(NOTEBOOK_NAME))
    if not params and isinstance(metrics, dict) and isinstance(metrics.get("params"), dict):
        params = metrics["params"]
    if not params and isinstance(nb, dict) and isinstance(nb.get("metadata", {}).get("papermill", {}).get("parameters"), dict):
        params = nb["metadata"]["papermill"]["parameters"]
    env = _json_or_none(read("environment.json"))
    shown, key = _date(d.name, env, nb, d)
    attempts = []
    for a in sorted(d.glob("notebook.attempt-*.ipynb"), key=lambda p: _attempt_number(p)):
        why = regular_file(a, d)
        if why is None:
            attempts.append(a)
        else:
            skipped.append((a.name, why))
    run = Run(experiment, d.name, d, status, params, _profile(d.name), shown, key,
              env if isinstance(env, dict) else None,
              notebook=d / NOTEBOOK_NAME if isinstance(nb, dict) and not damaged else None,
              attempts=[] if damaged else attempts)
    if damaged:  # its parameters and the damage only
        run.skipped = skipped
        return run
    run.figures = _run_files(d, "figures", _IMAGE_SUFFIXES, skipped)
    run.tables = _run_files(d, "tables", (".csv",), skipped)
    log = d / KERNEL_LOG
    if _exists(log):
        why = regular_file(log, d)
        if why is not None:
            skipped.append((KERNEL_LOG, why))
        elif log.stat().st_size:
            run.kernel_log = log
    run.skipped = skipped
    if isinstance(metrics, dict) and isinstance(metrics.get("headline"), dict):
        h = metrics["headline"]
        try:
            run.headline = table_from_json(h["table"])
            run.headline_name = str(h.get("name") or "headline")
            run.headline_about = str(h.get("about") or "")
        except (KeyError, TypeError, ValueError) as e:
            notes.append(f"{d}: the headline table in {METRICS} cannot be read ({e.__class__.__name__})")
    elif metrics is None and _exists(d / METRICS):
        notes.append(f"{d}: {METRICS} cannot be read")
    return run


def _json_or_none(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _run_files(run_dir: Path, sub: str, suffixes: tuple[str, ...], skipped: list[tuple[str, str]]) -> list[Path]:
    """The files of ``run_dir/sub`` with one of ``suffixes`` that are regular files inside the run
    folder, sorted; every other one (a symbolic link, a file in a linked folder, a FIFO) goes to
    ``skipped`` with the reason. Symbolic links to folders are not descended into."""
    folder = run_dir / sub
    if not _exists(folder):
        return []
    if folder.is_symlink():
        skipped.append((f"{sub}/", "a symbolic link to a folder (the report copies only the run folder's own files)"))
        return []
    if not folder.is_dir():
        return []
    found = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in sorted(dirs):
            if (Path(top) / name).is_symlink():
                skipped.append(((Path(top) / name).relative_to(run_dir).as_posix() + "/",
                                "a symbolic link to a folder (the report copies only the run folder's own files)"))
        for name in files:
            p = Path(top) / name
            if p.suffix.lower() not in suffixes:
                continue
            why = regular_file(p, run_dir)
            if why is None:
                found.append(p)
            else:
                skipped.append((p.relative_to(run_dir).as_posix(), why))
    return sorted(found)


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
    def linked(p: Path) -> bool:
        """A symbolic link in place of an experiment or run folder: its files lie elsewhere, so it is
        not read (a shared folder's link could point at any folder of the reader's machine)."""
        if not p.is_symlink():
            return False
        notes.append(f"{p}: a symbolic link (to {os.path.realpath(p)}), not a folder of this results folder; "
                     "left out. Copy the run folder here to report it")
        return True

    exp_dirs = [p for p in sorted(results.iterdir()) if p.is_dir() and not p.name.startswith(".")
                and not _inside(p, skip) and _is_experiment_folder(p) and not linked(p)]
    if not exp_dirs and _is_experiment_folder(results):  # `lfakit report results/<experiment>`
        exp_dirs = [results]
    for exp_dir in exp_dirs:
        for d in sorted(p for p in exp_dir.iterdir() if p.is_dir()):
            if d.name == "sweeps" or d.name.startswith(".") or _inside(d, skip) or not _is_run_folder(d):
                continue
            if linked(d):
                continue
            if (d / REHEARSAL_FILE).exists():  # lfakit run --rehearse: not a result
                notes.append(f"{d}: a rehearsal (lfakit run --rehearse: a few batches, one epoch), left out; its plan "
                             f"is in {REHEARSAL_FILE}")
                continue
            try:
                runs.append(_load_run(exp_dir.name, d, notes))
            except (ValueError, RecursionError, UnicodeError) as e:  # one unreadable folder must not stop the report
                notes.append(f"{d}: cannot be read ({e.__class__.__name__}: {_short(str(e), 160)}), left out")
    sweeps, comparisons = [], []
    for path in sorted(results.rglob(SWEEP_FILE)):
        if _inside(path, skip):
            continue
        doc = _read_json(path, results)
        if isinstance(doc, dict) and doc.get("schema") == SWEEP_SCHEMA:
            sweeps.append(Sweep(path.parent, doc))
        else:
            notes.append(f"{path}: not a readable {SWEEP_SCHEMA} file, left out")
    slugs: set[str] = set()
    for path in sorted(results.rglob(COMPARISON_FILE)):
        if _inside(path, skip):
            continue
        doc = _read_json(path, results)
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

_ENV = None


def _env():
    """The Jinja2 environment of the site's own pages: ``lfakit/templates/``, autoescape on."""
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                                  undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        _ENV.filters["url"] = _url
    return _ENV


def _render(template: str, **context: Any) -> str:
    from markupsafe import Markup

    # the style sheet is the module's own constant, inside <style>, where an entity is not decoded
    return _env().get_template(template).render(csp=CSP, css=Markup(CSS), **context)


def _url(rel: Any) -> str:
    """A relative link, URL-escaped (the template escapes it again as an attribute value); a
    ``data:`` image made by :func:`_svg_data` as it is."""
    rel = str(rel)
    if rel.startswith("data:image/svg+xml;base64,"):
        return rel
    return quote(rel, safe="/")  # a "#" in a file or run name is a character of the name, not a fragment


def _svg_data(path: Path) -> str:
    """An SVG figure as a ``data:`` URI for ``<img src>``: shown as an image, its scripts never run,
    and no SVG file that would run them when opened on its own is put into the site."""
    f = _open_regular(path)
    if isinstance(f, str):
        return ""
    with f:
        return "data:image/svg+xml;base64," + base64.b64encode(f.read()).decode("ascii")


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


def _table(df, max_rows: int | None = None, caption: str = "") -> dict[str, Any]:
    """A DataFrame as the ``table`` macro takes it: the header cells and the rows' cells, numbers
    marked for right alignment, the index shown unless it is a plain range, at most ``max_rows`` rows."""
    import pandas as pd

    show_index = not (isinstance(df.index, pd.RangeIndex) or
                      (df.index.name is None and list(df.index) == list(range(len(df)))))
    body = df if max_rows is None else df.head(max_rows)
    cols = [("" if str(c).startswith("Unnamed: ") else c) for c in df.columns]
    numeric = [len(body) > 0 and all(_is_number(v) or _is_missing(v) for v in body.iloc[:, j]) and
               any(_is_number(v) for v in body.iloc[:, j]) for j in range(len(cols))]
    head = ([(str(df.index.name or ""), False)] if show_index else []) + [(str(c), numeric[j]) for j, c in enumerate(cols)]
    rows = []
    for idx, row in zip(body.index, body.itertuples(index=False, name=None)):
        cells = [("th", _fmt(idx), False)] if show_index else []
        cells += [("td", _fmt(v), _is_number(v) or (numeric[j] and _is_missing(v))) for j, v in enumerate(row)]
        rows.append(cells)
    return {"caption": caption, "head": head, "rows": rows}


def table_html(df, max_rows: int | None = None, caption: str = "") -> str:
    """A DataFrame as a bordered HTML table: numbers right-aligned, the index shown unless it is
    a plain range, at most ``max_rows`` rows (rendered by the ``table`` macro, autoescaped)."""
    macro = _env().get_template("macros.html.j2").module.table
    return str(macro(_table(df, max_rows, caption)))


def _overrides(overrides: Any) -> str:
    if isinstance(overrides, dict):
        return " ".join(f"{k}={json.dumps(v, default=str) if not isinstance(v, str) else v}" for k, v in overrides.items()) \
            or "(the profile as it is)"
    return "" if overrides is None else str(overrides)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _kv(items: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), json.dumps(v, default=str) if isinstance(v, (dict, list)) else _fmt(v)) for k, v in items.items()]


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


# --------------------------------------------------------------------------- what a notebook may show

#: Tags :func:`clean_html` keeps (others are shown escaped, as text): the markup of Markdown
#: (headings, lists, tables, code, quotes, images, links) and of HTML tables, and nothing that
#: runs, loads, submits, embeds or restyles the page (no script, style, iframe, object, embed,
#: form, input, meta, link, base, svg, math, template).
SAFE_TAGS = frozenset({
    "a", "abbr", "acronym", "b", "bdi", "bdo", "blockquote", "br", "caption", "cite", "code", "col", "colgroup",
    "dd", "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp",
    "small", "span", "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
    "time", "tr", "tt", "u", "ul", "var", "wbr"})
_GLOBAL_ATTRIBUTES = frozenset({"class", "id", "title", "style", "align", "lang", "dir"})
_DATA_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/=\s]*\Z", re.I)
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*\Z")
#: Output MIME types a rendered notebook keeps; every other (application/javascript, widget
#: views, text/vnd.mermaid, application/pdf, ...) is dropped before nbconvert sees it.
SAFE_OUTPUT_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex", "image/png", "image/jpeg", "image/svg+xml")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
_CLEANER = None
_BLANK_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name in _GLOBAL_ATTRIBUTES:
        return True
    if tag == "a":
        if name == "href":  # the web, mail, or an anchor of the page: no javascript:, data:, file or relative path
            return value.strip().lower().startswith(("http://", "https://", "mailto:", "#"))
        return name == "name"
    if tag == "img":
        if name == "src":  # an image the page holds: nothing is loaded from anywhere
            return bool(_DATA_IMAGE.match(value.strip()))
        return name in ("alt", "width", "height")
    if tag in ("td", "th"):
        return name in ("colspan", "rowspan", "scope")
    if tag == "ol":
        return name in ("start", "type", "reversed")
    if tag in ("col", "colgroup"):
        return name == "span"
    if tag == "details":
        return name == "open"
    return False


def clean_html(text: Any) -> str:
    """HTML from a notebook made inert: bleach's allow-list sanitiser with :data:`SAFE_TAGS`,
    attributes by :func:`_allowed_attribute`, inline styles through bleach's CSS sanitiser, and
    comments removed. A disallowed tag is escaped, so ``<script>`` shows as text. It replaces
    nbconvert's ``clean_html`` filter, which the lab template applies (with ``sanitize_html``) to
    HTML and Markdown outputs, Markdown cells, raw HTML cells and highlighted code."""
    global _CLEANER
    if _CLEANER is None:
        import bleach
        from bleach.css_sanitizer import CSSSanitizer

        class _NoUrlCSS(CSSSanitizer):
            """bleach's CSS allow-list without ``cursor`` and without any declaration that names a
            resource (``url(``, ``image-set(``, a backslash escape that could spell one): an inline
            style may colour and lay out, never load."""

            def sanitize_css(self, style: str) -> str:
                kept = [d for d in super().sanitize_css(style).split(";")
                        if not re.search(r"url\s*\(|image-set|image\s*\(|\\", d, re.I)]
                return ";".join(d for d in kept if d.strip())

        from bleach.css_sanitizer import ALLOWED_CSS_PROPERTIES

        _CLEANER = bleach.Cleaner(tags=SAFE_TAGS, attributes=_allowed_attribute,
                                  protocols={"http", "https", "mailto", "data"}, strip=False, strip_comments=True,
                                  css_sanitizer=_NoUrlCSS(allowed_css_properties=ALLOWED_CSS_PROPERTIES - {"cursor"}))
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return _CLEANER.clean(text)


def _number(v: Any) -> int | float | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _clean_output(o: dict) -> dict | None:
    import nbformat

    kind = o.get("output_type")
    if kind == "stream":
        text = o.get("text")
        return nbformat.from_dict({"output_type": "stream", "name": "stderr" if o.get("name") == "stderr" else "stdout",
                                   "text": "".join(text) if isinstance(text, list) else str(text or "")})
    if kind == "error":
        tb = o.get("traceback")
        return nbformat.from_dict({"output_type": "error", "ename": str(o.get("ename") or ""), "evalue": str(o.get("evalue") or ""),
                                   "traceback": [str(x) for x in tb] if isinstance(tb, list) else []})
    if kind not in ("display_data", "execute_result"):
        return None
    data, dropped = {}, []
    for mime, value in (o.get("data") or {}).items():
        if isinstance(value, list) and all(isinstance(x, str) for x in value):
            value = "".join(value)
        if mime not in SAFE_OUTPUT_TYPES or not isinstance(value, str):
            dropped.append(mime)
        elif mime in ("image/png", "image/jpeg") and not _BASE64.match(value):
            dropped.append(mime)
        else:
            data[mime] = value
    if not data:
        data["text/plain"] = f"[{', '.join(dropped) or 'an empty'} output: not shown in the report, which renders nothing executable]"
    meta = {}
    for mime, m in (o.get("metadata") or {}).items():
        if mime in ("image/png", "image/jpeg") and isinstance(m, dict):
            keep = {k: _number(m.get(k)) for k in ("width", "height") if _number(m.get(k)) is not None}
            if m.get("needs_background") in ("light", "dark"):
                keep["needs_background"] = m["needs_background"]
            if m.get("unconfined") is True:
                keep["unconfined"] = True
            meta[mime] = keep
    out = {"output_type": kind, "data": data, "metadata": meta}
    if kind == "execute_result":
        out["execution_count"] = o.get("execution_count") if isinstance(o.get("execution_count"), int) else None
    return nbformat.from_dict(out)


def clean_notebook(nb) -> Any:
    """The notebook (an ``nbformat`` v4 node, changed in place) as the report renders it: cells of
    the three known types only, outputs of :data:`SAFE_OUTPUT_TYPES` only (an output whose every
    type is dropped says so in a line of text), image metadata reduced to numbers (no
    ``filenames`` pointing at files on disk), attachments reduced to base64 images, execution
    counts to integers, cell metadata to tags, papermill's status and the raw cell's type, the
    notebook's metadata to the language name (widget state, title, kernel spec and papermill's
    record go), so that what remains is a valid notebook nbconvert renders. The HTML that remains
    is sanitised by :func:`clean_html` as nbconvert renders it."""
    import nbformat

    lang = nb.metadata.get("language_info") if isinstance(nb.metadata.get("language_info"), dict) else {}
    nb.metadata = nbformat.from_dict({"language_info": {k: lang[k] for k in ("name", "pygments_lexer")
                                                        if isinstance(lang.get(k), str) and lang[k].isidentifier()}})
    nb.metadata["language_info"].setdefault("name", "python")
    cells, ids = [], set()
    for cell in nb.cells:
        kind = cell.get("cell_type")
        if kind not in ("code", "markdown", "raw"):
            continue
        old_meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        meta = {"tags": [t for t in old_meta.get("tags") or [] if isinstance(t, str) and t and "," not in t]}
        pm = old_meta.get("papermill")
        if isinstance(pm, dict) and isinstance(pm.get("status"), str):
            meta["papermill"] = {"status": pm["status"]}
        if kind == "raw" and isinstance(old_meta.get("raw_mimetype"), str):
            meta["raw_mimetype"] = old_meta["raw_mimetype"]
        cell["metadata"] = nbformat.from_dict(meta)
        cid = cell.get("id")
        if not (isinstance(cid, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cid)) or cid in ids:
            cid = f"lfakit-cell-{len(cells)}"
        ids.add(cid)
        cell["id"] = cid
        for key in [k for k in cell if k not in ("cell_type", "id", "metadata", "source", "attachments", "outputs",
                                                 "execution_count")]:
            del cell[key]
        if "attachments" in cell:
            atts = cell.get("attachments") if isinstance(cell.get("attachments"), dict) else {}
            kept = {str(name): {m: v for m, v in bundle.items() if m in _IMAGE_TYPES and isinstance(v, str) and _BASE64.match(v)}
                    for name, bundle in atts.items() if isinstance(bundle, dict)}
            # an attachment of another type is replaced by a blank pixel: a Markdown reference to it stays valid
            cell["attachments"] = nbformat.from_dict({k: v or {"image/png": _BLANK_PNG} for k, v in kept.items()})
        if not isinstance(cell.get("source"), str):
            src = cell.get("source")
            cell["source"] = "".join(x for x in src if isinstance(x, str)) if isinstance(src, list) else ""
        if kind == "code":
            cell["execution_count"] = cell.get("execution_count") if isinstance(cell.get("execution_count"), int) else None
            cell["outputs"] = [c for c in (_clean_output(o) for o in cell.get("outputs") or [] if isinstance(o, dict)) if c]
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
        cells.append(cell)
    nb.cells = cells
    return nb


class _NotebookRenderer:
    """nbconvert's HTML exporter (lab template, ``notebook.html.j2``) over :func:`clean_notebook`,
    with ``sanitize_html`` on and :func:`clean_html` as its sanitiser, nothing fetched from the
    network and no image read from disk (``embed_images`` off)."""

    def __init__(self):
        self._exporter = None

    def render(self, nb_path: Path, header: str, title: str) -> str:
        import nbformat

        if self._exporter is None:
            import jinja2
            from nbconvert import HTMLExporter

            template = (TEMPLATES / "notebook.html.j2").read_text()
            self._exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"lfakit_notebook.html.j2": template})],
                                          template_file="lfakit_notebook.html.j2", sanitize_html=True,
                                          embed_images=False, skip_svg_encoding=False,
                                          filters={"clean_html": clean_html})
        f = _open_regular(nb_path)  # checked by the scan already: a regular file in the run folder
        if isinstance(f, str):
            raise OSError(f"{nb_path.name}: {f}")
        with io.TextIOWrapper(f, encoding="utf-8", errors="replace") as text:
            nb = nbformat.read(text, as_version=4)
        clean_notebook(nb)
        for cell in nb.cells:  # papermill's error markers are HTML; as markdown their link loses its text
            if cell.cell_type == "markdown" and _PAPERMILL_ERROR_TAG in (cell.metadata.get("tags") or []):
                cell.cell_type = "raw"
                cell.metadata["raw_mimetype"] = "text/html"
                cell.source = f'<div class="lfk-pm-error">{cell.source}</div>'
                cell.pop("attachments", None)
        nb.metadata["title"] = title
        body, _ = self._exporter.from_notebook_node(
            nb, resources={"lfakit_css": CSS, "lfakit_csp": CSP, "lfakit_header": f'<div class="lfk">{header}</div>'
                           '<h2 class="lfk-notebook-title" id="notebook">Executed notebook</h2>'})
        return body


# --------------------------------------------------------------------------- pages


def _open_regular(path: Path):
    """``path`` opened for reading without following a link (``O_NOFOLLOW``) or blocking on a
    FIFO, and checked to be a regular file once open: a binary file object, or the reason why not."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        return "not a regular file"
    return f


def _copy(src: Path, dst: Path, root: Path) -> str | None:
    """Copy ``src``, a regular file inside ``root``, to ``dst``; the reason it was not copied,
    or None. The file is checked (:func:`regular_file`), then opened without following a link
    and checked again (:func:`_open_regular`)."""
    why = regular_file(src, root)
    if why is not None:
        return why
    f = _open_regular(src)
    if isinstance(f, str):
        return f
    dst.parent.mkdir(parents=True, exist_ok=True)
    with f, open(dst, "wb") as g:
        shutil.copyfileobj(f, g)
    return None


def _csv_section(csv: Path, copied_rel: str, title: str | None = None) -> dict[str, Any]:
    import pandas as pd

    s = {"title": title or csv.name, "name": csv.name, "href": copied_rel, "error": None, "rows": 0, "shown": 0, "table": None}
    try:
        df = pd.read_csv(csv)
    except Exception as e:  # noqa: BLE001 - an unreadable table is reported, not fatal
        s["error"] = str(e)
        return s
    s.update(rows=len(df), shown=MAX_TABLE_ROWS, table=_table(df, MAX_TABLE_ROWS))
    return s


def _environment(env: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in env.items() if k not in ("packages", "git")}
    git = env.get("git") if isinstance(env.get("git"), dict) else None
    if git:
        flat["git commit"] = str(git.get("commit") or "unknown") + (" (uncommitted changes)" if git.get("dirty") else "")
    packages = env.get("packages")
    return {"python": env.get("python", "?"), "device": env.get("device", "?"), "platform": env.get("platform", ""),
            "flat": _kv(flat),
            "packages": _kv({k: v if v is not None else "not installed" for k, v in packages.items()})
            if isinstance(packages, dict) else None}


def _run_summary(run: Run, comparisons_here: list[Comparison], notebook_anchor: bool, notebook_error: str | None = None) -> str:
    """The top of a run page (figures and tables are copied beside the page first)."""
    page = run.href.rsplit("/", 1)[0]
    kp = key_params(run.params)
    damaged = run.status.state == "damaged"
    nav = [("summary", "summary"), ("parameters", "parameters"), ("environment", "environment")]
    if run.headline is not None:
        nav.insert(1, ("headline", "headline"))
    if run.figures:
        nav.append(("figures", "figures"))
    if run.tables:
        nav.append(("tables", "tables"))
    if run.notebook is not None:
        nav.append(("notebook", "notebook"))
    links = [(a.with_suffix(".html").name, a.name, " (an earlier, interrupted attempt)") for a in run.attempts]
    links += [(_rel(c.href, page), f"comparison: {c.doc.get('metric', '')}", "") for c in comparisons_here]
    if run.kernel_log is not None:
        links.append((_KERNEL_LOG_COPY, KERNEL_LOG, " (the kernel process's own messages)"))
    tables = []
    for p in run.tables:
        rel = f"tables/{p.relative_to(run.path / 'tables').as_posix()}"
        tables.append({"stem": p.stem, "open": p.stat().st_size < 20_000, "section": _csv_section(p, rel)})
    missing = None
    if run.notebook is None and not damaged and notebook_error is None:
        why = ("this run was made by a notebook in JupyterLab, which keeps the notebook there"
               if run.run_id.endswith("-interactive") else "papermill never wrote it here")
        missing = f"No executed {NOTEBOOK_NAME} in the run folder: {why}."
    resume = run.status.state in ("interrupted", "incomplete") and (run.path / "checkpoints").exists() and run.profile != "—"
    return _render("run_summary.html.j2", back=_rel("index.html", page), run=run, nav=nav, anchor=notebook_anchor,
                   resume=resume, info=[(k, v) for k, v in {"date": run.date, "profile": run.profile, **kp,
                                                            "run folder": str(run.path)}.items()],
                   links=links, skipped=run.skipped,
                   headline=_table(run.headline) if run.headline is not None and not damaged else None,
                   params_name=PARAMS_NAME, params=_kv(run.params) if run.params else None,
                   env=_environment(run.environment) if run.environment else None,
                   figures=[(src, name) for src, name in
                            ((_svg_data(p) if p.suffix.lower() == ".svg" else
                              f"figures/{p.relative_to(run.path / 'figures').as_posix()}", p.name) for p in run.figures)
                            if src],
                   tables=tables, notebook_missing=missing,
                   notebook_error=notebook_error)


def _page(title: str, body: str) -> str:
    """A page of the site around ``body``, HTML rendered by the site's own (autoescaping) templates."""
    from markupsafe import Markup

    return _render("page.html.j2", title=title, body=Markup(body))


def _write_run_page(run: Run, site: Path, renderer: _NotebookRenderer, comparisons_here: list[Comparison], notes: list[str]) -> None:
    page_dir = site / run.href.rsplit("/", 1)[0]
    page_dir.mkdir(parents=True, exist_ok=True)
    for sub, files in (("figures", run.figures), ("tables", run.tables)):
        kept = []
        for p in files:
            why = regular_file(p, run.path) if p.suffix.lower() == ".svg" else \
                _copy(p, page_dir / sub / p.relative_to(run.path / sub), run.path)
            if why is None:
                kept.append(p)
            else:
                run.skipped.append((p.relative_to(run.path).as_posix(), why))
        setattr(run, sub, kept)
    if run.kernel_log is not None and _copy(run.kernel_log, page_dir / _KERNEL_LOG_COPY, run.path) is not None:
        run.kernel_log = None
    title = f"{run.experiment} {run.run_id}"
    anchor = False
    if run.notebook is not None:
        nb = _read_json(run.notebook, run.path) or {}
        anchor = any(_PAPERMILL_ERROR_TAG in (c.get("metadata", {}).get("tags") or []) and
                     'id="papermill-error-cell"' in "".join(c.get("source") or "") for c in nb.get("cells", [])
                     if isinstance(c, dict))
    text = None
    if run.notebook is not None:
        try:
            text = renderer.render(run.notebook, _run_summary(run, comparisons_here, anchor), title)
        except Exception as e:  # noqa: BLE001 - one unreadable notebook must not stop the report
            notes.append(f"{run.notebook}: cannot be rendered ({e.__class__.__name__}: {_short(e, 160)})")
            text = _page(title, _run_summary(run, comparisons_here, False, f"{NOTEBOOK_NAME} cannot be rendered: {e}"))
    if text is None:
        text = _page(title, _run_summary(run, comparisons_here, False))
    (site / run.href).write_text(text, encoding="utf-8")
    for a in run.attempts:
        head = dict(experiment=run.experiment, run_id=run.run_id, name=a.name)
        target = page_dir / a.with_suffix(".html").name
        try:
            target.write_text(renderer.render(a, _render("attempt_header.html.j2", error=None, **head), f"{title} {a.name}"),
                              encoding="utf-8")
        except Exception as e:  # noqa: BLE001
            notes.append(f"{a}: cannot be rendered ({e.__class__.__name__})")
            target.write_text(_page(title, _render("attempt_header.html.j2", error=str(e), **head)), encoding="utf-8")


def _write_comparison_page(c: Comparison, site: Path, results: Path) -> None:
    page_dir = site / "comparisons" / c.slug
    page_dir.mkdir(parents=True, exist_ok=True)
    d = c.doc
    heading = f"{d.get('experiment', '?')}: {d.get('metric', '?')} against {d.get('baseline', '?')}"
    info = {"experiment": d.get("experiment"), "metric": d.get("metric"), "baseline": d.get("baseline"),
            "source": d.get("source"), "folder": c.path.relative_to(results).as_posix()}
    files = d.get("files") if isinstance(d.get("files"), dict) else {}
    tables, figures, others = [], [], []
    root = c.path.resolve()
    for name, rel in files.items():
        src = c.path / str(rel)
        try:
            inside = root in src.resolve().parents
        except OSError:
            inside = False
        if not inside:
            others.append({"name": name, "href": None, "why": f"{rel} is outside the comparison folder, left out"})
            continue
        if not _exists(src):
            others.append({"name": name, "href": None, "why": f"{rel} is missing"})
            continue
        target = src.resolve().relative_to(root).as_posix()
        label = f"{name} ({src.name})"
        if src.suffix.lower() == ".svg" and regular_file(src, c.path) is None and _svg_data(src):
            figures.append((_svg_data(src), label))
            continue
        if src.suffix.lower() not in _COPIED_SUFFIXES:
            others.append({"name": name, "href": None, "why": f"{rel} is not copied: the report copies tables, text "
                                                              "and images only (an HTML or SVG file would run its scripts)"})
            continue
        if src.suffix.lower() in _AS_TEXT:
            target += ".txt"
        why = _copy(src, page_dir / target, c.path)
        if why is not None:
            others.append({"name": name, "href": None, "why": f"{rel} is {why}, left out"})
            continue
        if src.suffix.lower() == ".csv":
            tables.append(_csv_section(src, target, label))
        elif src.suffix.lower() in _IMAGE_SUFFIXES:
            figures.append((target, label))
        else:
            text = src.read_text(errors="replace") if src.suffix.lower() in (".md", ".txt") else None
            others.append({"name": name, "file": src.name, "href": target, "text": text})
    (page_dir / "index.html").write_text(
        _render("comparison.html.j2", title=f"comparison {heading}", heading=heading,
                info=[(k, _fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v)) for k, v in info.items() if v is not None],
                evidence=d.get("evidence"), tables=tables, figures=figures, others=others), encoding="utf-8")


def _index(results: Path, runs: list[Run], sweeps: list[Sweep], comparisons: list[Comparison], notes: list[str],
           run_pages: dict[Path, str], by_id: dict[tuple[str, str], str]) -> str:
    counts = [(s, sum(r.status.state == s for r in runs)) for s in STATES]
    exps = sorted({r.experiment for r in runs} | {str(s.doc.get("experiment", "")) for s in sweeps if s.doc.get("experiment")})
    nav = [(f"#exp-{x}", x) for x in exps]
    if sweeps:
        nav.append(("#sweeps", "sweeps"))
    if comparisons:
        nav.append(("#comparisons", "comparisons"))
    comps = [{"href": c.href, "experiment": c.doc.get("experiment", "?"), "metric": c.doc.get("metric", ""),
              "baseline": c.doc.get("baseline", ""), "evidence": _short(c.doc.get("evidence", ""), 300),
              "folder": c.path.relative_to(results).as_posix()} for c in comparisons]
    experiments = []
    for exp in exps:
        these = sorted((r for r in runs if r.experiment == exp), key=lambda r: (r.sort_key, r.run_id), reverse=True)
        rows = []
        for r in these:
            st = r.status
            why = _short(f"{st.ename}: {st.evalue}" if st.ename else st.detail) if st.state not in ("complete", "damaged") else ""
            rows.append({"href": r.href, "run_id": r.run_id, "date": r.date, "profile": r.profile, "state": st.state,
                         "label": st.label, "why": why, "damage": st.damage, "kp": key_params(r.params),
                         "headline": _table(r.headline, 40) if r.headline is not None else None,
                         "headline_name": r.headline_name, "headline_rows": len(r.headline) if r.headline is not None else 0})
        newest = next((r for r in these if r.status.state == "complete" and r.headline is not None), None)
        experiments.append({"name": exp, "runs": rows, "newest": None if newest is None else {
            "href": newest.href, "run_id": newest.run_id, "headline_name": newest.headline_name,
            "about": _short(newest.headline_about, 400), "headline": _table(newest.headline, _INDEX_ROWS),
            "more": len(newest.headline) > _INDEX_ROWS, "shown": _INDEX_ROWS, "rows": len(newest.headline)}})
    sweep_views = []
    for s in sweeps:
        d = s.doc
        points = d.get("points") if isinstance(d.get("points"), list) else []
        tally: dict[str, int] = {}
        rows = []
        for p in points:
            if not isinstance(p, dict):
                continue
            status = str(p.get("status", "?"))
            tally[status] = tally.get(status, 0) + 1
            rd = p.get("run_dir")
            href = None
            if rd:
                href = run_pages.get(Path(str(rd)).resolve()) or by_id.get((Path(str(rd)).parent.name, Path(str(rd)).name))
            err = _short(str(p.get("error")).strip().splitlines()[0], 200) if p.get("error") and str(p.get("error")).strip() else ""
            secs = p.get("seconds")
            rows.append({"index": p.get("index"), "overrides": _overrides(p.get("overrides")), "status": status,
                         "href": href, "run_name": Path(str(rd)).name if rd else "", "run_dir": rd,
                         "seconds": f"{secs:.0f}" if isinstance(secs, (int, float)) and not isinstance(secs, bool) else "",
                         "error": err})
        sweep_views.append({"experiment": d.get("experiment", "?"), "name": s.path.name,
                            "folder": s.path.relative_to(results).as_posix(), "profile": d.get("profile"),
                            "grid": json.dumps(d.get("grid", {}), default=str),
                            "seeds": _list(d.get("seeds")) if d.get("seeds") else "—", "executor": d.get("executor"),
                            "updated": d.get("updated"), "tally": list(tally.items()), "points": rows})
    return _render("index.html.j2", title="lfakit report", results=str(results),
                   built=_dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"), runs=runs,
                   counts=[(s, n) for s, n in counts if n], nav=nav, comparisons=comps, experiments=experiments,
                   sweeps=sweep_views, notes=notes)


class ReportError(LfakitError):
    """``lfakit report`` cannot be built: nothing to report, or the site folder cannot be written."""


@dataclass
class Report:
    """What :func:`build` made: the index page and the runs, with their states, it shows."""

    index: Path
    runs: list[Run]
    notes: list[str]

    @property
    def damaged(self) -> list[Run]:
        return [r for r in self.runs if r.status.state == "damaged"]


def build(results: Path, out: Path | None = None) -> Report:
    """:func:`build_site`, returning the :class:`Report` (``lfakit report`` names the damaged runs)."""
    results = Path(results).expanduser()
    if not results.is_dir():
        raise ReportError(f"no results folder at {results}; run an experiment first (`lfakit run <experiment>`) "
                          "or point `lfakit report` at the folder holding the run folders")
    results = results.resolve()
    out = Path(out).expanduser() if out else results / "site"
    if out.is_symlink():  # rebuilding deletes the folder: never through a link to somewhere else
        raise ReportError(f"{out} is a symbolic link (to {os.path.realpath(out)}); the report folder is deleted and "
                          "rebuilt, so it must be a real folder: give `lfakit report -o` another folder "
                          "(nothing was written)")
    out = out.resolve()
    if out.exists():
        if not out.is_dir():
            raise ReportError(f"{out} is a file; give `lfakit report -o` a folder")
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise ReportError(f"{out} is not empty and holds no earlier report ({MARKER}); "
                              "choose another folder with `lfakit report -o` (nothing was written)")
    try:
        runs, sweeps, comparisons, notes = scan(results, out)
    except OSError as e:
        raise ReportError(f"cannot read the results folder {results}: {e.strerror or e} ({e.filename}); "
                          "nothing was written") from None
    if not runs and not sweeps and not comparisons:
        raise ReportError(f"no run folders under {results}: `lfakit report` expects results/<experiment>/<run-id>/ "
                          "folders, which `lfakit run <experiment>` makes (or the results folder of an experiment, "
                          "results/<experiment>/); nothing was written")
    try:
        if out.exists():
            shutil.rmtree(out)
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
    except OSError as e:
        where = e.filename or out
        raise ReportError(f"cannot write the report to {out}: {e.strerror or e} ({where}); "
                          "give `lfakit report -o` a folder you can write") from None
    return Report(index, runs, notes)


def build_site(results: Path, out: Path | None = None) -> Path:
    """Write the static report of ``results`` into ``out`` (default ``<results>/site``) and
    return the path of its ``index.html``. A folder ``out`` that exists must be an earlier
    report (it holds the marker file ``.lfakit-site``) or empty; it is rebuilt from scratch.
    A results folder without a run folder, sweep or comparison is refused (:class:`ReportError`)
    and nothing is written; so is a site folder that cannot be written."""
    return build(results, out).index
