"""`lfakit report` (lfakit.site): run status from hand-made run folders, the index, relative
links only, sweeps and comparison pages, and nothing fetched from the network."""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest
import yaml
from PIL import Image

from lfakit import cli, record, site
from lfakit.errors import LfakitError

EXP = "demo_exp"


# --------------------------------------------------------------------------- hand-made run folders


def _png(path: Path, color=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 20), color).save(path)


def _cell(source: str, status: str, count: int | None = None, outputs=None, tags=None, kind: str = "code"):
    meta = {"papermill": {"status": status}, "tags": tags or []}
    if kind == "markdown":
        return nbformat.v4.new_markdown_cell(source, metadata=meta)
    c = nbformat.v4.new_code_cell(source, metadata=meta, execution_count=count)
    c.outputs = [nbformat.from_dict(o) for o in (outputs or [])]
    return c


def _notebook(cells, exception: bool | None = False, papermill: bool = True):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    if papermill:
        nb.metadata["papermill"] = {"exception": exception, "start_time": "2026-11-30T10:00:00+00:00",
                                    "parameters": {"epochs": 1}}
    return nb


def _write_nb(d: Path, nb) -> None:
    nbformat.write(nb, str(d / "notebook.ipynb"))


def _params(d: Path, **over) -> None:
    p = {"losses": ["focal", "zlpr"], "seed": 7, "epochs": 3, "data_dir": "", "run_dir": str(d), "resume": False, **over}
    (d / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def _record(d: Path, manifest: bool = True) -> None:
    head = {"index": ["Avg AUROC", "Avg F1"], "columns": ["focal", "zlpr"], "data": [[0.8123, 0.8456], [0.41, None]],
            "index_name": "Metric"}
    m = {"schema": "lfakit.run/1", "experiment": EXP, "params": {}, "params_hash": "x", "score_kind": "logit",
         "methods": {}, "headline": {"name": "overall", "about": "test split, averaged over classes", "table": head},
         "extra": {}}
    (d / "metrics.json").write_text(json.dumps(m))
    if manifest:  # the manifest of every file, as save_run writes it last
        record.write_manifest(d)


def _env(d: Path) -> None:
    (d / "environment.json").write_text(json.dumps({"python": "3.11.7", "platform": "Linux", "device": "cpu", "seed": 7,
                                                    "time": "2026-11-30T11:00:00+01:00", "packages": {"torch": "2.14.1"},
                                                    "git": {"commit": "abc123", "dirty": True}}))


def _ok_cells():
    return [_cell("# title", "completed", kind="markdown"), _cell("x = 1", "completed", 1),
            _cell("print(x)", "completed", 2, [{"output_type": "stream", "name": "stdout", "text": "1\n"}])]


def _run_folder(root: Path, run_id: str) -> Path:
    """A run folder as ``runner.open_run`` starts it: parameters and environment."""
    d = root / EXP / run_id
    d.mkdir(parents=True)
    _params(d)
    _env(d)
    return d


def make_complete(root: Path, run_id: str = "20261130-100000-smoke") -> Path:
    d = _run_folder(root, run_id)
    _record(d, manifest=False)
    _png(d / "figures" / "roc curves.png")  # a space: links must be URL-escaped
    (d / "tables").mkdir()
    (d / "tables" / "overall.csv").write_text("Metric,focal,zlpr\nAvg AUROC,0.8123,0.8456\nAvg F1,0.41,\n")
    (d / "tables" / "curves.csv").write_text("p_t,weight\n" + "".join(f"{i / 200},{1 - i / 200}\n" for i in range(1, 200)))
    record.write_manifest(d)
    _write_nb(d, _notebook(_ok_cells()))
    return d


def make_failed(root: Path, run_id: str = "20261130-110000-smoke") -> Path:
    """As papermill leaves a failed run: a red marker cell on top and one above the failed cell."""
    d = _run_folder(root, run_id)
    _record(d, manifest=False)  # save() had begun: metrics.json but no manifest
    err = {"output_type": "error", "ename": "ValueError", "evalue": "the loss became NaN at epoch 2",
           "traceback": ["\x1b[0;31m---------\x1b[0m", "\x1b[0;31mValueError\x1b[0m: the loss became NaN at epoch 2"]}
    marker = '<span style="color:red">An Exception was encountered at <a href="#papermill-error-cell">In [3]</a>.</span>'
    anchor = '<span id="papermill-error-cell" style="color:red">Execution using papermill encountered an exception here</span>'
    cells = [_cell(marker, None, tags=["papermill-error-cell-tag"], kind="markdown"),
             *_ok_cells(),
             _cell(anchor, None, tags=["papermill-error-cell-tag"], kind="markdown"),
             _cell("train()", "failed", 3, [err]),
             _cell("save()", "pending")]
    _write_nb(d, _notebook(cells, exception=True))
    return d


def make_interrupted(root: Path, run_id: str = "20261130-120000-paper") -> Path:
    d = _run_folder(root, run_id)
    (d / "checkpoints" / "focal").mkdir(parents=True)
    cells = [*_ok_cells(), _cell("train()", "running", None), _cell("save()", "pending")]
    _write_nb(d, _notebook(cells, exception=None))
    return d


def make_no_notebook(root: Path, run_id: str = "20261130-130000-interactive") -> Path:
    """What ``runner.open_run`` leaves for a notebook run in JupyterLab: no notebook.ipynb."""
    return _run_folder(root, run_id)


# --------------------------------------------------------------------------- status


def test_status_complete(tmp_path):
    st = site.run_status(make_complete(tmp_path))
    assert st.state == "complete" and st.label == "complete"


def test_status_failed_names_the_cell_as_lfakit_run_does(tmp_path):
    st = site.run_status(make_failed(tmp_path))
    # cells: 3 ok cells (0-2), then the failed one; papermill's two marker cells are not counted
    assert st.state == "failed" and st.cell == 3 and st.label == "failed at cell 3"
    assert st.execution_count == 3 and st.ename == "ValueError" and st.evalue == "the loss became NaN at epoch 2"
    assert st.text == "failed at cell 3: ValueError: the loss became NaN at epoch 2"
    assert "\x1b" not in st.traceback and "ValueError: the loss became NaN" in st.traceback


def test_status_failed_wins_over_a_complete_record(tmp_path):
    d = make_failed(tmp_path)
    _record(d, manifest=True)
    assert site.run_status(d).state == "failed"


def test_status_interrupted(tmp_path):
    st = site.run_status(make_interrupted(tmp_path))
    assert st.state == "interrupted" and st.cell == 3 and "cell 3 was running" in st.detail


def test_status_without_a_notebook(tmp_path):
    d = make_no_notebook(tmp_path)
    st = site.run_status(d)
    assert st.state == "incomplete" and "no notebook.ipynb" in st.detail
    _record(d)  # an interactive run that saved its record: complete, though there is no notebook
    st = site.run_status(d)
    assert st.state == "complete" and "no executed notebook" in st.detail


def test_status_of_a_notebook_papermill_did_not_run(tmp_path):
    d = tmp_path / EXP / "nbconvert-run"
    d.mkdir(parents=True)
    err = {"output_type": "error", "ename": "KeyError", "evalue": "'x'", "traceback": []}
    c0 = nbformat.v4.new_code_cell("a = 1", execution_count=1)
    c1 = nbformat.v4.new_code_cell("d['x']", execution_count=2)
    c1.outputs = [nbformat.from_dict(err)]
    _write_nb(d, _notebook([c0, c1], papermill=False))
    st = site.run_status(d)
    assert st.state == "failed" and st.cell == 1 and st.ename == "KeyError"


def test_status_of_an_unreadable_notebook(tmp_path):
    d = tmp_path / EXP / "cut"
    d.mkdir(parents=True)
    (d / "notebook.ipynb").write_text('{"cells": [')
    assert site.run_status(d).state == "interrupted"


# --------------------------------------------------------------------------- the site


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key) is not None and tag in ("a", "img", "link", "script"):
                self.links.append((tag, a[key]))


def _parse(page: Path) -> _Links:
    p = _Links()
    p.feed(page.read_text())
    return p


@pytest.fixture
def results(tmp_path) -> Path:
    root = tmp_path / "results"
    make_complete(root)
    make_failed(root)
    make_interrupted(root)
    make_no_notebook(root)
    other = root / "other_exp" / "20261129-090000-smoke"
    other.mkdir(parents=True)
    _params(other, losses=["bce"], seeds=[0, 1], data_dir="/data/x")
    _record(other)
    # a sweep of EXP: listed as a sweep, its folder is not a run
    sw = root / EXP / "sweeps" / "smoke-0123456789ab"
    (sw / "logs").mkdir(parents=True)
    points = [{"index": 0, "overrides": {"seed": 0}, "status": "complete", "params_hash": "h0", "seconds": 12.3,
               "run_dir": str(root / EXP / "20261130-100000-smoke"), "error": None},
              {"index": 1, "overrides": {"seed": 1}, "status": "failed", "params_hash": "h1", "seconds": 3.0,
               "run_dir": str(root / EXP / "20261130-110000-smoke"),
               "error": "lfakit: demo_exp failed: cell 3 (execution count 3) failed: ValueError: NaN\nmore"}]
    (sw / "sweep.json").write_text(json.dumps({"schema": "lfakit.sweep/1", "experiment": EXP, "profile": "smoke",
                                               "grid": {}, "seeds": [0, 1], "executor": "local", "workers": 1,
                                               "updated": "2026-11-30T12:00:00+00:00", "points": points}))
    # a comparison of that sweep, as `lfakit compare` writes it
    cmp_dir = sw / "comparison"
    cmp_dir.mkdir()
    (cmp_dir / "summary.csv").write_text("method,auroc mean,ci low,ci high,p (Holm)\nfocal,0.81,0.79,0.83,\nzlpr,0.84,0.82,0.86,0.012\n")
    (cmp_dir / "per_class.csv").write_text("class,focal,zlpr\nAtelectasis,0.8,0.82\n")
    (cmp_dir / "summary.md").write_text("| method | auroc |\n|---|---|\n| zlpr | 0.84 |\n")
    _png(cmp_dir / "forest.png", (30, 30, 200))
    (cmp_dir / "comparison.json").write_text(json.dumps({
        "schema": "lfakit.compare/1", "experiment": EXP, "metric": "auroc", "baseline": "focal", "source": str(sw),
        "evidence": "2 seeds per loss; paired t-test over seeds, Holm-adjusted",
        "files": {"summary_csv": "summary.csv", "summary_md": "summary.md", "per_class_csv": "per_class.csv",
                  "forest_png": "forest.png", "missing_png": "nope.png", "escape": "../../../../etc/passwd"}}))
    (root / "README.md").write_text("results\n")
    return root


def test_build_site_writes_an_index_and_one_page_per_run(results):
    index = site.build_site(results)
    assert index == (results / "site" / "index.html").resolve() and index.exists()
    pages = sorted(p.relative_to(index.parent).as_posix() for p in index.parent.rglob("index.html"))
    assert pages == ["comparisons/demo_exp__sweeps__smoke-0123456789ab__comparison/index.html", "index.html",
                     "runs/demo_exp/20261130-100000-smoke/index.html", "runs/demo_exp/20261130-110000-smoke/index.html",
                     "runs/demo_exp/20261130-120000-paper/index.html", "runs/demo_exp/20261130-130000-interactive/index.html",
                     "runs/other_exp/20261129-090000-smoke/index.html"]
    html = index.read_text()
    for needle in ("demo_exp", "other_exp", "failed at cell 3", "ValueError: the loss became NaN at epoch 2",
                   "interrupted at cell 3", "incomplete", "focal, zlpr", "7 (seeds 0, 1)", "/data/x", "embedded",
                   "0.8456", "Avg AUROC", "2026-11-30 11:00:00", "smoke-0123456789ab", "auroc"):
        assert needle in html, needle
    # the failed run's row is marked (and highlighted by the CSS)
    row = re.search(r'<tr class="failed">.*?</tr>', html, re.S).group(0)
    assert "20261130-110000-smoke" in row and "ValueError" in row
    assert "tr.failed>td" in html and "max-width:100%" in html and '"Segoe UI"' in html  # the CSS as written
    # profiles from the run id; the interactive run has no notebook
    assert ">paper<" in html and ">interactive<" in html


def test_every_link_is_relative_and_resolves(results):
    index = site.build_site(results)
    root = index.parent
    for page in root.rglob("*.html"):
        parsed = _parse(page)
        for tag, link in parsed.links:
            u = urlparse(link)
            assert not u.scheme and not u.netloc and not link.startswith("/"), f"{page}: {tag} {link}"
            if not u.path:  # a fragment on the same page
                assert u.fragment in parsed.ids, f"{page}: #{u.fragment}"
                continue
            target = (page.parent / unquote(u.path)).resolve()
            assert target.is_file(), f"{page}: {link} -> {target}"
            assert root in target.parents, f"{page}: {link} leaves the site"


def test_nothing_is_fetched_from_the_network(results):
    index = site.build_site(results)
    for page in index.parent.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?(https?:)?//""", text, re.I), page
        assert "require.js" not in text and "mathjax" not in text.lower() and "mermaid" not in text.lower(), page


def test_run_pages_show_notebook_params_environment_tables_figures(results):
    root = site.build_site(results).parent
    ok = (root / "runs/demo_exp/20261130-100000-smoke/index.html").read_text()
    for needle in ("Executed notebook", "jp-Notebook", "print", "losses", "epochs", "abc123 (uncommitted changes)",
                   "2.14.1", "overall", "0.8456", "Headline: overall", "the first 60 of 199 rows", 'src="figures/roc%20curves.png"'):
        assert needle in ok, needle
    assert (root / "runs/demo_exp/20261130-100000-smoke/figures/roc curves.png").is_file()
    assert (root / "runs/demo_exp/20261130-100000-smoke/tables/curves.csv").is_file()
    failed = (root / "runs/demo_exp/20261130-110000-smoke/index.html").read_text()
    assert "failed at cell 3" in failed and 'id="papermill-error-cell"' in failed
    assert re.search(r'class="error".*?<a href="#papermill-error-cell">jump to the failed cell</a>', failed, re.S)
    assert "written before the failure" in failed
    interrupted = (root / "runs/demo_exp/20261130-120000-paper/index.html").read_text()
    assert "lfakit run demo_exp --resume 20261130-120000-paper" in interrupted
    nonb = (root / "runs/demo_exp/20261130-130000-interactive/index.html").read_text()
    assert "No executed notebook.ipynb" in nonb and "JupyterLab" in nonb


def test_numbers_are_right_aligned_in_bordered_tables(results):
    root = site.build_site(results).parent
    ok = (root / "runs/demo_exp/20261130-100000-smoke/index.html").read_text()
    assert re.search(r'<td class="num">0\.8123</td>', ok)
    assert re.search(r"\.lfk th,\.lfk td\{border:1px solid", ok)
    html = site.table_html(__import__("pandas").DataFrame({"name": ["a", "b"], "v": [1.5, float("nan")]}))
    assert '<th>name</th><th class="num">v</th>' in html and '<td>a</td><td class="num">1.5</td>' in html


def test_sweeps_are_listed_not_taken_for_runs(results):
    index = site.build_site(results)
    html = index.read_text()
    assert "sweeps/" not in [r.run_id for r in site.scan(results)[0]]
    assert {r.run_id for r in site.scan(results)[0]} == {
        "20261130-100000-smoke", "20261130-110000-smoke", "20261130-120000-paper", "20261130-130000-interactive",
        "20261129-090000-smoke"}
    sweeps = html[html.index('id="sweeps"'):]
    assert "1 complete" in sweeps and "1 failed" in sweeps
    assert 'href="runs/demo_exp/20261130-100000-smoke/index.html"' in sweeps  # a point links to its run page
    assert "cell 3 (execution count 3) failed: ValueError: NaN" in sweeps and "more" not in sweeps


def test_comparison_page(results):
    index = site.build_site(results)
    html = index.read_text()
    href = "comparisons/demo_exp__sweeps__smoke-0123456789ab__comparison/index.html"
    assert f'href="{href}"' in html and "2 seeds per loss" in html
    page = index.parent / href
    text = page.read_text()
    for needle in ("auroc", "focal", "2 seeds per loss; paired t-test over seeds, Holm-adjusted", "Atelectasis",
                   '<td class="num">0.012</td>', 'src="forest.png"', "nope.png is missing", "outside the comparison folder",
                   "summary.md"):
        assert needle in text, needle
    assert (page.parent / "forest.png").is_file() and (page.parent / "summary.csv").is_file()
    assert (page.parent / "summary.md.txt").is_file() and 'href="summary.md.txt"' in text  # shown as plain text
    assert not (page.parent / "passwd").exists()


def test_rebuild_and_refuse_a_foreign_folder(results, tmp_path):
    first = site.build_site(results)
    (results / "site" / "stale.html").write_text("old")
    again = site.build_site(results)
    assert again == first and not (results / "site" / "stale.html").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(LfakitError, match="not empty"):
        site.build_site(results, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(LfakitError, match="no results folder"):
        site.build_site(tmp_path / "nothing")


def test_a_site_outside_the_results_folder(tmp_path):
    make_complete(tmp_path / "results")
    index = site.build_site(tmp_path / "results", tmp_path / "out")
    assert index == (tmp_path / "out" / "index.html").resolve() and "20261130-100000-smoke" in index.read_text()
    assert not (tmp_path / "results" / "site").exists()


def test_an_empty_results_folder_is_refused_and_nothing_is_written(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)  # a folder, but no run folder in it
    with pytest.raises(LfakitError, match=r"no run folders under .*empty.*results/<experiment>/<run-id>/.*lfakit run"):
        site.build_site(empty, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (empty / "site").exists()
    assert cli.main(["report", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lfakit: error: no run folders under ") and str(empty.resolve()) in err
    assert "Traceback" not in err and not (empty / "site").exists()


def test_a_site_folder_that_cannot_be_written_is_a_clear_error(results, tmp_path, capsys):
    assert cli.main(["report", str(results), "-o", "/proc/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lfakit: error: cannot write the report to /proc/x") and "Traceback" not in err, err
    ro = tmp_path / "ro"
    ro.write_text("a file where the site's parent folder would be")
    assert cli.main(["report", str(results), "-o", str(ro / "site")]) == 2
    assert "lfakit: error: cannot write the report" in capsys.readouterr().err


def test_report_command_prints_the_index(results, capsys):
    assert cli.main(["report", str(results), "-o", str(results / "public")]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"report: {(results / 'public' / 'index.html').resolve()}"
    # that site is not read as an experiment (or its copies as runs) by the next report
    assert {r.experiment for r in site.scan(results)[0]} == {"demo_exp", "other_exp"}
    assert "public" not in site.build_site(results).read_text()


# --------------------------------------------------------------------------- damaged records


def _with_predictions(root: Path, run_id: str) -> Path:
    """A complete run whose record holds a predictions.npz (written before the manifest)."""
    d = make_complete(root, run_id)
    import numpy as np

    record.write_npz(d / "predictions.npz", scores=np.linspace(0, 1, 20_000), method=np.array(["focal"] * 20_000))
    record.write_manifest(d)
    return d


def test_damaged_runs_are_named_and_left_out_the_others_reported(tmp_path, capsys):
    root = tmp_path / "results"
    ok = _with_predictions(root, "20261130-090000-smoke")
    truncated = _with_predictions(root, "20261130-091000-smoke")
    npz = truncated / "predictions.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    corrupt = _with_predictions(root, "20261130-092000-smoke")
    (corrupt / "metrics.json").write_text('{"schema": "lfakit.run/1", "headline": ')
    deleted = _with_predictions(root, "20261130-093000-smoke")
    (deleted / "tables" / "overall.csv").unlink()
    changed = _with_predictions(root, "20261130-094000-smoke")
    png = changed / "figures" / "roc curves.png"
    data = bytearray(png.read_bytes())
    data[-20] ^= 0xFF  # same size, other bytes
    png.write_bytes(bytes(data))
    # a metrics.json written corrupt before its manifest: the sizes and hashes agree, the JSON does not
    bad_json = _with_predictions(root, "20261130-095000-smoke")
    (bad_json / "metrics.json").write_text("{not json")
    record.write_manifest(bad_json)

    expect = {truncated: ("predictions.npz", "truncated"), corrupt: ("metrics.json", "the manifest says"),
              deleted: ("tables/overall.csv", "missing"), changed: ("figures/roc curves.png", "SHA-256 differs"),
              bad_json: ("metrics.json", "not valid JSON")}
    for d, (file, why) in expect.items():
        st = site.run_status(d)
        assert st.state == "damaged" and st.label == "damaged", (d.name, st)
        assert any(p.file == file and why in p.reason for p in st.damage), (d.name, st.damage)
        assert file in st.text and why in st.text
    assert site.run_status(ok).state == "complete"
    assert site.run_status(truncated, verify=False).state == "complete"  # the folder alone, unchecked

    assert cli.main(["report", str(root)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    for d, (file, why) in expect.items():
        line = next(x for x in captured.err.splitlines() if str(d) in x)
        assert "damaged" in line and file in line and why in line, line
    assert str(ok) not in captured.err
    site_root = root / "site"
    html = (site_root / "index.html").read_text()
    assert "5 damaged" in html and "1 complete" in html
    for d, (file, why) in expect.items():
        row = re.search(rf'<tr class="(\w+)">(?:(?!</tr>).)*?{d.name}.*?</tr>', html, re.S)
        assert row and row.group(1) == "damaged", d.name
        assert '<span class="badge damaged">damaged</span>' in row.group(0) and file in row.group(0) and why in row.group(0)
        page = (site_root / "runs" / EXP / d.name / "index.html").read_text()
        assert file in page and why in page and 'class="badge damaged"' in page
        assert "losses" in page and "focal, zlpr" in page  # its parameters are shown
        assert "Executed notebook" not in page and "jp-Notebook" not in page and "Headline:" not in page
        assert not (site_root / "runs" / EXP / d.name / "figures").exists()
        assert not (site_root / "runs" / EXP / d.name / "tables").exists()
    ok_row = re.search(r'<tr class="(\w+)">(?:(?!</tr>).)*?20261130-090000-smoke.*?</tr>', html, re.S)
    assert ok_row.group(1) == "complete"
    ok_page = (site_root / "runs" / EXP / ok.name / "index.html").read_text()
    assert "Executed notebook" in ok_page and (site_root / "runs" / EXP / ok.name / "figures" / "roc curves.png").is_file()
    # the newest complete run's headline on the index is the intact run's, never a damaged one's
    assert re.search(r"Headline of the newest complete run, <a [^>]*>20261130-090000-smoke</a>", html)


# --------------------------------------------------------------------------- symbolic links and outside files


def test_only_the_run_folders_own_regular_files_are_copied(tmp_path):
    root = tmp_path / "results"
    d = make_complete(root)
    secret = tmp_path / "secret.csv"
    secret.write_text("name,value\nAPI_KEY,hunter2-SECRET-TOKEN\n")
    outside_png = tmp_path / "outside.png"
    _png(outside_png, (0, 200, 0))
    (d / "tables" / "leak.csv").symlink_to(secret)
    (d / "figures" / "leak.png").symlink_to(outside_png)
    linked_dir = tmp_path / "elsewhere"
    linked_dir.mkdir()
    (linked_dir / "more.csv").write_text("a\nSECRET-IN-A-LINKED-FOLDER\n")
    (d / "tables" / "linked").symlink_to(linked_dir, target_is_directory=True)
    (d / "kernel.log").symlink_to(secret)
    os.mkfifo(d / "tables" / "pipe.csv")  # reading it would block the report forever
    index = site.build_site(root)
    page_dir = index.parent / "runs" / EXP / d.name
    text = (page_dir / "index.html").read_text()
    everything = "".join(p.read_text(errors="replace") for p in index.parent.rglob("*") if p.is_file())
    assert "hunter2-SECRET-TOKEN" not in everything and "SECRET-IN-A-LINKED-FOLDER" not in everything
    assert not (page_dir / "tables" / "leak.csv").exists() and not (page_dir / "figures" / "leak.png").exists()
    assert not (page_dir / "tables" / "linked").exists() and not (page_dir / "kernel.log.txt").exists()
    assert not any(p.is_symlink() for p in index.parent.rglob("*"))
    for name in ("tables/leak.csv", "figures/leak.png", "tables/linked/", "kernel.log"):
        assert re.search(rf"<li><code>{re.escape(name)}</code>: a symbolic link", text), name
    assert "<li><code>tables/pipe.csv</code>: not a regular file</li>" in text
    assert (page_dir / "tables" / "overall.csv").is_file() and (page_dir / "figures" / "roc curves.png").is_file()
    # a whole figures/ folder that is a link
    d2 = make_complete(root, "20261130-140000-smoke")
    shutil.rmtree(d2 / "figures")
    (d2 / "figures").symlink_to(linked_dir, target_is_directory=True)
    record.write_manifest(d2)  # a record written with the link in place: complete, the link not followed
    assert site.run_status(d2).state == "complete"
    text = (site.build_site(root).parent / "runs" / EXP / d2.name / "index.html").read_text()
    assert "<code>figures/</code>: a symbolic link to a folder" in text


def test_a_symlinked_notebook_is_not_rendered(tmp_path):
    root = tmp_path / "results"
    d = make_complete(root)
    other = tmp_path / "private.ipynb"
    nb = _notebook([_cell("print('PRIVATE-NOTEBOOK-CONTENT')", "completed", 1)])
    nbformat.write(nb, str(other))
    (d / "notebook.ipynb").unlink()
    (d / "notebook.ipynb").symlink_to(other)
    index = site.build_site(root)
    text = (index.parent / "runs" / EXP / d.name / "index.html").read_text()
    assert "PRIVATE-NOTEBOOK-CONTENT" not in text
    assert re.search(r"<li><code>notebook.ipynb</code>: a symbolic link", text)


# --------------------------------------------------------------------------- hostile content

#: Planted everywhere a results folder can put text into the site. Each script would set
#: window.__pwned and open a dialog; the browser test checks that none does.
PAYLOADS = [
    "<script>window.__pwned=1;alert(1)</script>",
    '<img src=x onerror="window.__pwned=2;alert(2)">',
    '<svg onload="window.__pwned=3;alert(3)"><circle r="5"/></svg>',
    '<a href="javascript:window.__pwned=5;alert(5)" id="jslink">click</a>',
    '<iframe srcdoc="<script>parent.__pwned=6;alert(6)</script>"></iframe>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(7)">',
    '<object data="data:text/html,<script>alert(8)</script>"></object>',
    '<form action="javascript:alert(9)"><button>go</button></form>',
    '<base href="javascript:alert(10)//">',
    '<details open ontoggle="window.__pwned=11;alert(11)">x</details>',
    '<img src="https://example.invalid/beacon.png">',
    '<math><mi xlink:href="javascript:alert(13)">x</mi></math>',
    '<div style="background:url(https://example.invalid/css.png)">styled</div>',
    '<div style="cursor:url(https://example.invalid/c.png),auto;color:red">cursor</div>',
    '<p style="color:blue;background-image:image-set(\'https://example.invalid/i.png\' 1x)">set</p>',
]
PAYLOAD = "".join(PAYLOADS)
SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20" onload="window.__pwned=15;alert(15)">'
       '<script>window.__pwned=16;alert(16)</script><rect width="20" height="20" fill="red"/></svg>')
PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
MARK = "RENDERED-MARKER"  # text next to the payloads: proof the planted notebook was rendered, not refused


def _hostile_notebook(failed: bool = False) -> dict:
    def out(data, kind="display_data", **meta):
        o = {"output_type": kind, "data": data, "metadata": meta}
        if kind == "execute_result":
            o["execution_count"] = 1
        return o

    outputs = [
        out({"text/html": MARK + PAYLOAD, "text/plain": "html"}),
        out({"text/markdown": MARK + PAYLOAD + "\n\n[md link](javascript:alert(14))\n\n![md img](javascript:alert(19))"}),
        out({"image/svg+xml": SVG}),
        out({"application/javascript": "window.__pwned=17;alert(17)"}),
        out({"application/javascript": "window.__pwned=18;alert(18)", "text/plain": "js fallback"}),
        out({"text/latex": PAYLOAD}),
        out({"application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
             "text/plain": "a widget"}),
        out({"text/vnd.mermaid": "</pre>" + PAYLOAD}),
        out({"application/json": {"x": PAYLOAD}}),
        out({"image/png": PNG_1PX}, **{"image/png": {"width": '1 onerror="alert(20)"', "height": 3}},
            filenames={"image/png": "../../../../etc/passwd"}),
        out({"text/html": PAYLOAD}, kind="execute_result"),
        {"output_type": "stream", "name": "stdout", "text": PAYLOAD},
        {"output_type": "error", "ename": PAYLOAD, "evalue": PAYLOAD, "traceback": [PAYLOAD]},
    ]
    cells = [
        {"cell_type": "markdown", "metadata": {"tags": ['"><script>alert(21)</script>']}, "id": "md-1",
         "source": "# " + MARK + "\n\n" + PAYLOAD + "\n\n![att](attachment:evil.svg) ![att2](attachment:page.html)"
                   " ![disk](/etc/hostname.png) [rel](../../../secret.txt)",
         "attachments": {"evil.svg": {"image/svg+xml": base64_text(SVG)}, "page.html": {"text/html": base64_text(PAYLOAD)}}},
        {"cell_type": "raw", "metadata": {"raw_mimetype": "text/html"}, "id": "raw-1", "source": PAYLOAD},
        {"cell_type": "code", "metadata": {"tags": [PAYLOAD]}, "id": "code-1", "execution_count": 1,
         "source": "print('" + PAYLOAD.replace("'", "") + "')", "outputs": outputs},
        {"cell_type": "weird", "metadata": {}, "id": "weird-1", "type": PAYLOAD, "source": PAYLOAD},
    ]
    meta = {"title": PAYLOAD, "kernelspec": {"name": "python3", "display_name": PAYLOAD, "language": "python"},
            "language_info": {"name": "python"},
            "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2, "version_minor": 0}},
            "papermill": {"exception": failed, "start_time": "2026-11-30T10:00:00+00:00", "parameters": {"x": PAYLOAD}}}
    if failed:
        cells.append({"cell_type": "code", "metadata": {"papermill": {"status": "failed"}}, "id": "fail-1",
                      "execution_count": 2, "source": "boom()",
                      "outputs": [{"output_type": "error", "ename": "Err" + PAYLOAD, "evalue": PAYLOAD, "traceback": [PAYLOAD]}]})
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def base64_text(s: str) -> str:
    import base64

    return base64.b64encode(s.encode()).decode()


def make_hostile(root: Path, secret: Path) -> dict[str, Path]:
    """A results folder with executable content planted in every place the report shows: notebook
    outputs of every MIME type nbconvert renders, Markdown and raw cells, attachments, cell tags,
    parameter values and names, method names, headline text, CSV cells and headers, file names,
    the environment, a failed cell's error, a sweep and a comparison; and a table that is a
    symbolic link to ``secret``, a file outside the run folder."""
    d = root / EXP / "20261130-100000-smoke"
    d.mkdir(parents=True)
    (d / "params.yaml").write_text(yaml.safe_dump({"losses": [PAYLOAD, "focal"], "seed": PAYLOAD, "epochs": PAYLOAD,
                                                   "data_dir": PAYLOAD, PAYLOAD: PAYLOAD}))
    (d / "environment.json").write_text(json.dumps({"python": PAYLOAD, "device": PAYLOAD, "platform": PAYLOAD,
                                                    "time": "2026-11-30T11:00:00+01:00", "packages": {PAYLOAD: PAYLOAD},
                                                    "git": {"commit": PAYLOAD, "dirty": True}}))
    head = {"index": [PAYLOAD, "Avg F1"], "columns": [PAYLOAD, "zlpr"], "data": [[PAYLOAD, 0.8], [0.4, None]],
            "index_name": PAYLOAD}
    (d / "metrics.json").write_text(json.dumps({
        "schema": "lfakit.run/1", "experiment": EXP, "params": {}, "params_hash": "x", "score_kind": "logit",
        "methods": {PAYLOAD: {}}, "headline": {"name": PAYLOAD, "about": PAYLOAD, "table": head}, "extra": {}}))
    (d / "tables").mkdir()
    (d / "tables" / "overall.csv").write_text(f'"{PAYLOAD.replace(chr(34), chr(39))}",zlpr\n'
                                              f'"{PAYLOAD.replace(chr(34), chr(39))}",0.5\n')
    (d / "tables" / "<img src=x onerror=alert(4)>.csv").write_text("a,b\n1,2\n")
    (d / "tables" / "leak.csv").symlink_to(secret)
    _png(d / "figures" / "<svg onload=alert(22)>.png")
    (d / "figures" / "evil.svg").write_text(SVG)
    (d / "kernel.log").write_text(PAYLOAD)
    record.write_manifest(d)
    (d / "notebook.ipynb").write_text(json.dumps(_hostile_notebook()))
    f = root / EXP / "20261130-110000-smoke"
    f.mkdir()
    (f / "params.yaml").write_text(yaml.safe_dump({"losses": [PAYLOAD]}))
    (f / "notebook.ipynb").write_text(json.dumps(_hostile_notebook(failed=True)))
    (f / "notebook.attempt-1.ipynb").write_text(json.dumps(_hostile_notebook()))
    named = root / EXP / "20261130-120000-<img src=x onerror=alert(24)>"  # a run id (and profile) that is HTML
    named.mkdir()
    (named / "params.yaml").write_text(yaml.safe_dump({"losses": ["focal"]}))
    (named / "notebook.ipynb").write_text(json.dumps(_hostile_notebook()))
    sw = root / EXP / "sweeps" / "smoke-0123456789ab"
    sw.mkdir(parents=True)
    (sw / "sweep.json").write_text(json.dumps({
        "schema": "lfakit.sweep/1", "experiment": PAYLOAD, "profile": PAYLOAD, "grid": {PAYLOAD: [PAYLOAD]},
        "seeds": [PAYLOAD], "executor": PAYLOAD, "updated": PAYLOAD,
        "points": [{"index": PAYLOAD, "overrides": {PAYLOAD: PAYLOAD}, "status": PAYLOAD, "run_dir": PAYLOAD,
                    "seconds": 1.0, "error": PAYLOAD}]}))
    c = sw / "comparison"
    c.mkdir()
    (c / "summary.csv").write_text(f"method,{PAYLOAD.replace(',', ';')}\nfocal,0.5\n")
    (c / "summary.md").write_text(PAYLOAD)
    (c / "leak.csv").symlink_to(secret)
    (c / "page.html").write_text(PAYLOAD)
    (c / "fig.svg").write_text(SVG)
    (c / "comparison.json").write_text(json.dumps({
        "schema": "lfakit.compare/1", "experiment": PAYLOAD, "metric": PAYLOAD, "baseline": PAYLOAD, "source": PAYLOAD,
        "evidence": PAYLOAD, "files": {PAYLOAD: "summary.csv", "md": "summary.md", "leak": "leak.csv",
                                       "js": "javascript:alert(23)", "html": "page.html", "svg": "fig.svg"}}))
    return {"complete": d, "failed": f, "named": named}


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


#: Elements a page of the site may not hold: each can run a script, load a page or a plug-in, or
#: submit or redirect (meta is checked on its own: the CSP, charset and viewport only).
FORBIDDEN_TAGS = {"script", "iframe", "frame", "object", "embed", "form", "base", "svg", "math", "link", "applet",
                  "audio", "video", "source", "template", "portal", "input", "button"}


def check_inert(page: Path) -> list[str]:
    """What in one HTML page of the site could run or load something: [] when nothing."""
    p = _Tags()
    p.feed(page.read_text())
    bad = []
    tags = p.tags
    head = [t for t in tags if t[0] not in ("html",)]
    if not head or head[0][0] != "head" or tags[tags.index(head[0]) + 1][0] != "meta" or \
            tags[tags.index(head[0]) + 1][1].get("http-equiv", "").lower() != "content-security-policy":
        bad.append("the first element of <head> is not the Content-Security-Policy")
    csp = [a.get("content") for t, a in tags if t == "meta" and a.get("http-equiv", "").lower() == "content-security-policy"]
    if csp != [site.CSP]:
        bad.append(f"CSP {csp}")
    for tag, attrs in tags:
        if tag in FORBIDDEN_TAGS:
            bad.append(f"<{tag} {attrs}>")
        if tag == "meta" and not (set(attrs) <= {"charset", "name", "content", "http-equiv"}
                                  and attrs.get("http-equiv", "content-security-policy").lower() == "content-security-policy"):
            bad.append(f"<meta {attrs}>")
        for name, value in attrs.items():
            if name.startswith("on") or name in ("srcdoc", "formaction", "xlink:href"):
                bad.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action", "data") and value and \
                    re.match(r"\s*(javascript|vbscript|file|https?):|\s*//", value, re.I) and not \
                    (tag == "a" and re.match(r"https?://", value)):
                bad.append(f"<{tag} {name}={value[:80]!r}>")
            if name == "src" and tag == "img" and value.startswith("data:") and not \
                    re.match(r"data:image/(png|jpeg|gif|webp|svg\+xml);base64,", value):
                bad.append(f"<img src={value[:60]!r}>")
            if name == "style" and "url(" in value.lower():
                bad.append(f"<{tag} style={value!r}>")
    return bad


def test_planted_executable_content_is_rendered_inert(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("name,value\nSECRET-TOKEN-4711,1\n")
    root = tmp_path / "results"
    runs = make_hostile(root, secret)
    index = site.build_site(root)
    pages = sorted(index.parent.rglob("*.html"))
    assert len(pages) >= 5  # index, two run pages, an attempt, the comparison
    for page in pages:
        assert check_inert(page) == [], page
    everything = "".join(p.read_text(errors="replace") for p in index.parent.rglob("*") if p.is_file())
    assert "SECRET-TOKEN-4711" not in everything
    # no file that would run a script when opened on its own: the site's own pages only, no SVG
    assert {p.name for p in pages} <= {"index.html", "notebook.attempt-1.html"}
    assert not list(index.parent.rglob("*.svg")) and not list(index.parent.rglob("*.htm*[!l]"))
    # and only files every browser opens as what they are (a .md or .log could be sniffed as HTML)
    suffixes = {p.suffix for p in index.parent.rglob("*") if p.is_file() and p.name != site.MARKER}
    assert suffixes <= {".html", ".png", ".csv", ".txt"}, suffixes
    assert (index.parent / "runs" / EXP / runs["complete"].name / "kernel.log.txt").is_file()
    cmp_page = next(p for p in pages if "comparisons" in p.parts).read_text()
    assert "page.html is not copied" in cmp_page and 'src="data:image/svg+xml;base64,' in cmp_page
    run_page = (index.parent / "runs" / EXP / runs["complete"].name / "index.html").read_text()
    assert "jp-Notebook" in run_page and run_page.count(MARK) >= 3  # rendered, not refused: markdown, html, markdown output
    # what was planted is shown as text, escaped, not dropped silently
    assert "&lt;script&gt;window.__pwned=1;alert(1)&lt;/script&gt;" in run_page
    assert "application/javascript output: not shown in the report" in run_page
    assert "js fallback" in run_page and "a widget" in run_page
    assert 'src="data:image/svg+xml;base64,' in run_page  # the SVG output as an image, where no script runs
    assert "<code>tables/leak.csv</code>: a symbolic link" in run_page
    assert (index.parent / "runs" / EXP / runs["complete"].name / "tables" / "<img src=x onerror=alert(4)>.csv").is_file()
    named_page = (index.parent / "runs" / EXP / runs["named"].name / "index.html").read_text()
    assert "<title>demo_exp 20261130-120000-&lt;img src=x onerror=alert(24)&gt;</title>" in named_page
    assert 'href="runs/demo_exp/20261130-120000-%3Cimg%20src%3Dx%20onerror%3Dalert%2824%29%3E/index.html"' in \
        index.read_text()
    failed_page = (index.parent / "runs" / EXP / runs["failed"].name / "index.html").read_text()
    assert "failed at cell" in failed_page and "jp-Notebook" in failed_page


def test_odd_run_folders_do_not_stop_the_report(tmp_path):
    root = tmp_path / "results"
    make_complete(root)
    odd = root / EXP / "20261399-999999-smoke"  # the shape of a run id, not a date
    odd.mkdir()
    (odd / "params.yaml").write_text("[" * 50_000 + "]" * 50_000)  # nested past the recursion limit
    (odd / "notebook.ipynb").write_text("[" * 200_000 + "]" * 200_000)
    (odd / "environment.json").write_text('{"time": "not a time"}')
    (odd / "metrics.json").write_text("null")
    index = site.build_site(root)
    html = index.read_text()
    assert "20261130-100000-smoke" in html and '<tr class="complete">' in html
    row = re.search(r'<tr class="(\w+)">(?:(?!</tr>).)*?20261399-999999-smoke.*?</tr>', html, re.S)
    assert row.group(1) == "interrupted" and "notebook.ipynb cannot be read" in row.group(0)
    assert "20261399-999999-smoke: params.yaml cannot be read (RecursionError)" in html


def test_nested_yaml_aliases_in_params_are_not_expanded(tmp_path):
    """A "billion laughs" params.yaml: a few hundred bytes of nested aliases that would expand to
    10^9 values on the page. The report counts before it renders and leaves them out."""
    root = tmp_path / "results"
    make_complete(root)
    bomb = root / EXP / "20261201-000000-smoke"
    bomb.mkdir()
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (bomb / "params.yaml").write_text("\n".join(lines) + "\n")
    assert len((bomb / "params.yaml").read_bytes()) < 1000
    assert site._expanded_size({"x": [1, 2]}) == 5 and site._expanded_size(list(range(10)), limit=3) == 4
    index = site.build_site(root)  # returns at once instead of rendering 10^9 strings
    html = index.read_text()
    assert "params.yaml expands to more than 100,000 values (nested YAML aliases)" in html
    assert "20261130-100000-smoke" in html
    assert not [q for q in index.parent.rglob("*.html") if "lol" in q.read_text()]


def test_a_run_or_experiment_folder_that_is_a_link_is_not_read(tmp_path):
    """A shared results folder whose run (or experiment) folder is a symbolic link to another place
    on the reader's machine: nothing there is read or copied; the index names the link."""
    root = tmp_path / "results"
    make_complete(root)
    elsewhere = make_complete(tmp_path / "private", "20261130-150000-smoke")
    (elsewhere / "tables" / "creds.csv").write_text("k,v\nTOKEN,PRIVATE-RUN-SECRET\n")
    record.write_manifest(elsewhere)
    (root / EXP / "20261130-150000-smoke").symlink_to(elsewhere, target_is_directory=True)
    other_exp = make_complete(tmp_path / "other", "20261130-160000-smoke").parent
    (other_exp.parent / EXP).rename(other_exp.parent / "iqa_losses")
    (root / "iqa_losses").symlink_to(other_exp.parent / "iqa_losses", target_is_directory=True)
    index = site.build_site(root)
    everything = "".join(p.read_text(errors="replace") for p in index.parent.rglob("*") if p.is_file())
    assert "PRIVATE-RUN-SECRET" not in everything and "20261130-160000-smoke" not in everything
    html = index.read_text()
    assert "20261130-150000-smoke: a symbolic link (to " in html and "iqa_losses: a symbolic link (to " in html
    assert not (index.parent / "runs" / EXP / "20261130-150000-smoke").exists()


def test_a_site_folder_that_is_a_link_is_refused_and_nothing_is_deleted(tmp_path):
    root = tmp_path / "results"
    make_complete(root)
    other_report = tmp_path / "someone-elses-report"
    other_report.mkdir()
    (other_report / site.MARKER).write_text("x")
    (other_report / "keep.html").write_text("keep me")
    (root / "site").symlink_to(other_report, target_is_directory=True)
    with pytest.raises(site.ReportError, match="site is a symbolic link .*must be a real folder"):
        site.build_site(root)
    assert (other_report / "keep.html").read_text() == "keep me"


def test_a_hash_in_a_run_id_stays_part_of_the_link(tmp_path):
    root = tmp_path / "results"
    make_complete(root, "20261130-100000-a#b")
    html = site.build_site(root).read_text()
    assert 'href="runs/' + EXP + '/20261130-100000-a%23b/index.html"' in html
