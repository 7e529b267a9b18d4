"""The notebooks in JupyterLab, driven in Chromium: Run All on an experiment notebook ends with
its tables and no error; the loss atlas with ``interactive=True`` redraws its plot when a
slider moves. A private JupyterLab (tests/browser.py's ``jupyterlab``: free localhost port,
random token, its own config, settings, workspace and runtime folders) serves a copy of
notebooks/ with LFAKIT_RESULTS in a temporary folder; it is shut down, kernels included, when the
module ends. Screenshots go to tests/artifacts/ (browser.py)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from browser import Lab, artifacts, browser, jupyterlab, page  # noqa: F401 - fixtures
from lfakit import site

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# The fastest experiment notebook: loss_atlas trains nothing (about 10 s of kernel time on the
# smoke profile; cifar_fece, the next fastest, takes about 45 s).
NOTEBOOK = "loss_atlas"
RUN_TIMEOUT_MS = 300_000


def _clean_copy(src: Path, dst: Path, edit=None) -> None:
    """The notebook as a user opens it after "Clear All Outputs", optionally edited."""
    nb = nbformat.read(str(src), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if edit:
        edit(nb)
    nbformat.write(nb, str(dst))


def _interactive(nb) -> None:
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    new = re.sub(r"^interactive\b(.*?)=\s*False", r"interactive\1= True", cell.source, flags=re.M)
    assert new != cell.source, "the parameters cell has no `interactive = False` line"
    cell.source = new


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server (tests/browser.py) serving a copy of notebooks/, the atlas notebook
    cleared as after "Clear All Outputs" and once more with ``interactive=True``; its kernels
    write their runs into a temporary results folder (``lab.results``)."""
    base = tmp_path_factory.mktemp("jupyterlab")
    work, results = base / "work", base / "results"
    (work / "notebooks").mkdir(parents=True)
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(nb, work / "notebooks" / nb.name)
    _clean_copy(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", work / "notebooks" / f"{NOTEBOOK}.ipynb")
    _clean_copy(ROOT / "notebooks" / "loss_atlas.ipynb", work / "notebooks" / "loss_atlas_interactive.ipynb", _interactive)
    with jupyterlab(base, work, _artifacts_dir() / "jupyterlab-server.log", env={"LFAKIT_RESULTS": str(results)}) as server:
        yield server


def _artifacts_dir() -> Path:
    from browser import ARTIFACTS

    d = ARTIFACTS / "test_browser_jupyterlab"
    d.mkdir(parents=True, exist_ok=True)
    return d


# --------------------------------------------------------------------------- driving JupyterLab

_PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
_PROMPTS = f"[...document.querySelectorAll('{_PANEL} .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim())"
_INDICATOR = f"document.querySelector('{_PANEL} .jp-Notebook-ExecutionIndicator')?.dataset.status"


def _open(lab: Lab, page, notebook: str) -> None:
    for s in lab.api("GET", "/api/sessions"):  # one kernel at a time
        lab.api("DELETE", f"/api/sessions/{s['id']}")
    page.goto(lab.url(f"notebooks/{notebook}"))
    page.wait_for_selector(f"{_PANEL} .jp-CodeCell", timeout=120_000)
    deadline = time.monotonic() + 120
    while not any(s["path"].endswith(notebook) and s["kernel"]["execution_state"] == "idle"
                  for s in lab.api("GET", "/api/sessions")):
        accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")  # "Select Kernel", if asked
        if accept.count():
            accept.first.click()
        assert time.monotonic() < deadline, f"no idle kernel for {notebook}"
        time.sleep(0.3)
    page.wait_for_function(f"() => {_INDICATOR} === 'idle'", timeout=60_000)


def _run_all(page) -> list[str]:
    """Run → Run All Cells, then wait until the kernel has run them (or stopped at an error);
    returns the input prompts."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    page.wait_for_function(f"() => {_PROMPTS}.some(p => p.includes('*') || /\\[\\d+\\]/.test(p))", timeout=60_000)
    page.wait_for_function(f"() => {_INDICATOR} === 'idle' && !{_PROMPTS}.some(p => p.includes('*'))",
                           timeout=RUN_TIMEOUT_MS, polling=500)
    return page.evaluate(f"() => {_PROMPTS}")


def _errors(page) -> list[str]:
    """Error outputs and tracebacks on stderr, as JupyterLab renders them."""
    found = page.evaluate(f"""() => [...document.querySelectorAll(
        '{_PANEL} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
        .map(o => o.innerText).filter(t => /Traceback|Error:/.test(t))""")
    return [t[:1500] for t in found]


def _save_problems(page, artifacts: Path, name: str) -> None:
    (artifacts / f"{name}-console.txt").write_text(page.problems.report() + "\n")
    outgoing = [p for p in page.problems if p.startswith("network request")]
    assert not outgoing, "JupyterLab reached out of the machine:\n" + "\n".join(outgoing)


def test_run_all_cells_of_an_experiment_notebook(lab, page, artifacts):
    t0 = time.monotonic()
    _open(lab, page, f"{NOTEBOOK}.ipynb")
    prompts = _run_all(page)
    errors = _errors(page)
    page.screenshot(path=str(artifacts / f"{NOTEBOOK}-run-all-end.png"))
    assert not errors, "\n---\n".join(errors)
    assert prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), prompts  # every code cell ran
    # the run folder it wrote (LFAKIT_RESULTS points into the temporary folder), read back
    runs = sorted((lab.results / NOTEBOOK).glob("*-interactive"))
    assert len(runs) == 1 and site.run_status(runs[0]).state == "complete", runs
    last = page.locator(f"{_PANEL} .jp-CodeCell").last.locator(".jp-OutputArea")
    assert runs[0].name in last.inner_text()  # the last cell names what it wrote
    # the atlas's metrics table (its headline) is shown
    table = page.locator(f"{_PANEL} .jp-OutputArea-output", has_text="multilabel y=1").last
    assert table.count() == 1
    table.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / f"{NOTEBOOK}-table.png"))
    _save_problems(page, artifacts, NOTEBOOK)
    print(f"{NOTEBOOK}: opened and ran in {time.monotonic() - t0:.0f} s")


def test_atlas_sliders_redraw_the_plot(lab, page, artifacts):
    _open(lab, page, "loss_atlas_interactive.ipynb")
    _run_all(page)
    errors = _errors(page)
    assert not errors, "\n---\n".join(errors)
    panel = page.locator(f"{_PANEL} .widget-interact").first
    panel.wait_for(timeout=60_000)
    img = panel.locator("img").first
    img.wait_for(timeout=60_000)
    before = img.get_attribute("src")
    readout = panel.locator(".widget-readout").first
    value = readout.inner_text()
    handle = panel.locator(".widget-slider .noUi-handle").first
    handle.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "loss_atlas-slider-before.png"))
    handle.focus()
    page.keyboard.press("ArrowRight")  # one step of the first slider (gamma)
    page.wait_for_function("([el, b]) => { const i = el.querySelector('img'); return i && i.src !== b; }",
                           arg=[panel.element_handle(), before], timeout=120_000)
    assert readout.inner_text() != value, (value, readout.inner_text())
    assert img.evaluate("i => i.naturalWidth") > 0
    panel.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "loss_atlas-slider-after.png"))
    _save_problems(page, artifacts, "loss_atlas-interactive")
