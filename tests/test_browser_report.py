"""`lfakit report` in a real browser: real runs (two complete, one failing in a late cell) plus
a run folder without a notebook, a sweep and a comparison; the site opened over file:// in
Chromium with no network: no console errors, every image loaded, every link resolving, the
failed run shown with its cell and error. Screenshots go to tests/artifacts/ (browser.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml
from PIL import Image

from browser import artifacts, broken_images, browser, page  # noqa: F401 - fixtures
from lfakit import site

pytestmark = pytest.mark.slow

# A failed run: the real loss_atlas notebook, run by the runner, whose last cell (save) finds a
# file where it makes tables/ -> FileExistsError in the last cell, after every figure was drawn.
FAIL = r"""
import sys
from pathlib import Path
from lfakit import runner
d = Path(sys.argv[1])
d.mkdir(parents=True)
p = runner.resolve_params("loss_atlas", "smoke", {"grid_size": 21})
p["run_dir"], p["resume"] = str(d), False
runner.write_params(d, p)
(d / "tables").write_text("a file where the notebook makes a folder")
try:
    runner.execute("loss_atlas", p, d, log_output=False)
except runner.RunFailed as e:
    print(str(e).splitlines()[0])
    sys.exit(0)
sys.exit("the notebook did not fail")
"""


def _lfakit(env, *args):
    return subprocess.Popen([sys.executable, "-m", "lfakit.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("report") / "results"
    env = {**os.environ, "LFAKIT_RESULTS": str(root)}
    procs = {
        "atlas": _lfakit(env, "run", "loss_atlas", "-q", "-p", "grid_size=21"),
        "cifar": _lfakit(env, "run", "cifar_fece", "-q", "-p", "epochs=1", "-p", "losses=[bce, focal]",
                         "-p", "imbalance_ratios=[1]", "-p", "digits_test_per_class=20"),
        "failed": subprocess.Popen([sys.executable, "-c", FAIL, str(root / "loss_atlas" / "20261201-090000-smoke")],
                                   env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE),
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {stderr[-3000:]}"
        out[name] = stdout.strip().splitlines()[-1]
    runs = {k: Path(v.split("-> ")[-1]) for k, v in out.items() if k != "failed"}
    runs["failed"] = root / "loss_atlas" / "20261201-090000-smoke"
    failure = re.match(r"cell (\d+) \(execution count \d+\) failed: (\w+): ", out["failed"])
    assert failure, out["failed"]
    # a notebook run in JupyterLab that has not saved its record: params and environment only
    nonb = root / "cifar_fece" / "20261201-080000-interactive"
    nonb.mkdir(parents=True)
    (nonb / "params.yaml").write_text(yaml.safe_dump({**yaml.safe_load((runs["cifar"] / "params.yaml").read_text()),
                                                      "run_dir": str(nonb)}))
    (nonb / "environment.json").write_text((runs["cifar"] / "environment.json").read_text())
    # a sweep over the two loss_atlas runs, and its comparison as `lfakit compare` writes it
    sw = root / "loss_atlas" / "sweeps" / "smoke-0123456789ab"
    sw.mkdir(parents=True)
    points = [{"index": 0, "overrides": {"grid_size": 21}, "status": "complete", "params_hash": "a", "seconds": 11.0,
               "run_dir": str(runs["atlas"]), "error": None},
              {"index": 1, "overrides": {"grid_size": 21}, "status": "failed", "params_hash": "b", "seconds": 12.0,
               "run_dir": str(runs["failed"]), "error": f"lfakit: loss_atlas failed: {out['failed']}"}]
    (sw / "sweep.json").write_text(json.dumps({"schema": "lfakit.sweep/1", "experiment": "loss_atlas", "profile": "smoke",
                                               "grid": {"grid_size": [21]}, "seeds": None, "executor": "local",
                                               "workers": 1, "updated": "2026-12-01T09:05:00+00:00", "points": points}))
    cmp_dir = root / "cifar_fece" / "comparison"
    cmp_dir.mkdir()
    (cmp_dir / "summary.csv").write_text("method,AUC mean,ci low,ci high,p (Holm),winner\n"
                                         "bce,0.9912,0.9870,0.9950,,\nfocal,0.9931,0.9890,0.9968,0.41,\n")
    img = Image.new("RGB", (640, 240), "white")
    img.paste((40, 90, 200), (100, 100, 540, 140))
    img.save(cmp_dir / "forest.png")
    (cmp_dir / "comparison.json").write_text(json.dumps({
        "schema": "lfakit.compare/1", "experiment": "cifar_fece", "metric": "AUC", "baseline": "bce",
        "source": str(root / "cifar_fece"), "evidence": "one run per loss: DeLong per class, Holm over classes",
        "files": {"summary_csv": "summary.csv", "forest_png": "forest.png"}}))
    index = site.build_site(root)
    return {"root": root, "index": index, "runs": runs, "cell": int(failure.group(1)), "ename": failure.group(2)}


def _local_links(page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")


def test_the_report_in_chromium(results, page, artifacts):
    index = results["index"]
    site_root = index.parent
    start = index.as_uri()
    seen, queue, checked_files = set(), [start], set()
    while queue:  # every page of the site, reached by its links from the index
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        page.problems.clear()
        response = page.goto(url)
        assert response is None or response.ok, url
        page.wait_for_load_state("load")
        assert page.title(), url
        assert broken_images(page) == [], url
        assert not page.problems, f"{url}:\n{page.problems.report()}"
        for link in _local_links(page):
            u = urlparse(link)
            if u.scheme in ("http", "https"):  # a link in a notebook's own text: not followed offline
                assert not page.locator(f".lfk a[href='{link}']").count(), f"{url}: the site links to {link}"
                continue
            assert u.scheme == "file", f"{url}: {link}"
            target = Path(unquote(u.path))
            assert target.is_file(), f"{url}: {link} -> {target} does not exist"
            assert site_root in target.parents or target == index, f"{url}: {link} leaves the site"
            if u.fragment and target == Path(unquote(urlparse(url).path)):
                # as a browser finds a fragment: the id as written, else percent-decoded
                assert page.evaluate("f => !!(document.getElementById(f) || document.getElementById(decodeURIComponent(f)))",
                                     u.fragment), f"{url}: no #{u.fragment}"
            if target.suffix == ".html":
                queue.append(link.split("#")[0])
            else:
                checked_files.add(target)
    run_pages = {u for u in seen if "/runs/" in u}
    assert len(run_pages) == 4, sorted(seen)  # atlas, failed atlas, cifar, the folder without a notebook
    assert any("/comparisons/" in u for u in seen)
    assert any(p.suffix == ".csv" for p in checked_files)

    # the index: the failed run highlighted with its cell and error
    page.goto(start)
    row = page.locator("table.runs tr.failed", has_text="20261201-090000-smoke")
    assert row.count() == 1
    text = row.inner_text()
    assert f"failed at cell {results['cell']}" in text and results["ename"] in text, text
    bg = row.locator("td").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert bg not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), bg
    assert page.locator("table.runs tr.incomplete", has_text="20261201-080000-interactive").count() == 1
    assert page.locator("table.runs tr.complete").count() == 2
    assert page.locator("#sweeps").count() == 1 and page.locator("#comparisons").count() == 1
    page.screenshot(path=str(artifacts / "index.png"), full_page=True)

    # a complete run's page: the summary, its figures loaded, the notebook rendered
    cifar = results["runs"]["cifar"]
    page.goto((site_root / "runs" / "cifar_fece" / cifar.name / "index.html").as_uri())
    assert page.locator(".badge.complete").count() >= 1
    figures = page.locator("#figures ~ figure img")
    assert figures.count() == len(list((cifar / "figures").glob("*.png"))) > 0
    assert page.locator(".jp-Notebook .jp-Cell").count() > 5  # nbconvert's notebook below the summary
    assert page.locator(".jp-OutputArea-output img").count() > 0
    page.screenshot(path=str(artifacts / "run_complete.png"))
    page.locator("#figures").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "run_complete_figures.png"))

    # the failed run's page: the error on top, a link to the failed cell of the notebook
    page.goto((site_root / "runs" / "loss_atlas" / "20261201-090000-smoke" / "index.html").as_uri())
    box = page.locator(".error").first
    assert f"failed at cell {results['cell']}" in box.inner_text() and results["ename"] in box.inner_text()
    page.screenshot(path=str(artifacts / "run_failed.png"))
    page.locator(".error a[href='#papermill-error-cell']").click()
    page.wait_for_timeout(200)
    page.screenshot(path=str(artifacts / "run_failed_cell.png"))
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                        has_text=results["ename"]).count() >= 1

    page.goto((site_root / "comparisons" / "cifar_fece__comparison" / "index.html").as_uri())
    assert page.locator("table td.num", has_text="0.9931").count() == 1
    page.screenshot(path=str(artifacts / "comparison.png"), full_page=True)
    assert not page.problems, page.problems.report()


# --------------------------------------------------------------------------- planted scripts


def test_planted_scripts_do_not_run_in_chromium(page, tmp_path, artifacts):
    """A shared results folder with executable content planted in every place the report shows
    (tests/test_site.py's make_hostile): every page of its site opened in Chromium, and no dialog
    opens, no planted script runs (window.__pwned stays undefined), nothing navigates away, nothing
    is fetched, and not even the CSP has anything to block (the sanitiser left nothing). Then the
    CSP alone: a script written into a built page is refused."""
    from test_site import EXP, MARK, make_hostile

    secret = tmp_path / "secret.csv"
    secret.write_text("name,value\nSECRET-TOKEN-4711,1\n")
    root = tmp_path / "results"
    runs = make_hostile(root, secret)
    index = site.build_site(root)
    dialogs, console = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    pages = sorted(index.parent.rglob("*.html"))
    assert len(pages) >= 5
    for p in pages:
        url = p.as_uri()
        page.problems.clear()
        console.clear()
        page.goto(url)
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)  # a meta refresh or a timer would have fired
        assert page.url == url, f"navigated away from {url} to {page.url}"
        assert page.evaluate("typeof window.__pwned") == "undefined", url
        found = page.evaluate("""() => {
            const bad = [...document.querySelectorAll('script,iframe,frame,object,embed,form,base,svg,math,link')]
                .map(e => e.tagName);
            for (const e of document.querySelectorAll('*'))
                for (const a of e.attributes)
                    if (a.name.startsWith('on') || /^\\s*javascript:/i.test(a.value)) bad.push(e.tagName + ' ' + a.name);
            return bad;
        }""")
        assert found == [], f"{url}: {found}"
        for link in page.locator("a#jslink").all():  # the planted javascript: link, its href removed
            link.click()
        page.wait_for_timeout(100)
        assert not dialogs, f"{url}: {dialogs}"
        assert not page.problems, f"{url}:\n{page.problems.report()}"  # CSP refusals are console errors
        assert not [m for m in console if "Content Security Policy" in m], f"{url}: {console}"
        assert page.title(), url
    run_page = index.parent / "runs" / EXP / runs["complete"].name / "index.html"
    page.goto(run_page.as_uri())
    assert page.locator(".jp-Notebook .jp-Cell").count() >= 2 and page.get_by_text(MARK).count() >= 1  # markdown, code
    assert "SECRET-TOKEN-4711" not in page.content()
    page.screenshot(path=str(artifacts / "planted_run_page.png"), full_page=True)

    # the CSP by itself: a script added to a built page (the sanitiser bypassed) is refused
    for built in (index, run_page):
        forced = built.with_name("forced.html")
        forced.write_text(built.read_text().replace("</body>", "<script>window.__pwned=99;alert(99)</script>"
                                                                "<img src=x onerror=\"window.__pwned=98\"></body>"))
        console.clear()
        page.problems.clear()
        page.goto(forced.as_uri())
        page.wait_for_load_state("load")
        page.wait_for_timeout(200)
        assert page.evaluate("typeof window.__pwned") == "undefined" and not dialogs, built
        assert any("Content Security Policy" in m for m in console), console
        forced.unlink()
