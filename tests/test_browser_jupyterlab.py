"""The notebooks in JupyterLab, driven in Chromium: Run All on an experiment notebook ends with
its tables and no error; the loss atlas with ``interactive=True`` redraws its plot when a
slider moves. A private JupyterLab (free localhost port, random token, its own config,
settings, workspace and runtime folders) serves a copy of notebooks/ with LFAKIT_RESULTS in a
temporary folder; it is shut down, kernels included, when the module ends. Screenshots go to
tests/artifacts/ (browser.py)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from browser import artifacts, browser, page  # noqa: F401 - fixtures
from lfakit import site

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# The fastest experiment notebook: loss_atlas trains nothing (about 10 s of kernel time on the
# smoke profile; cifar_fece, the next fastest, takes about 45 s).
NOTEBOOK = "loss_atlas"
RUN_TIMEOUT_MS = 300_000


@dataclass
class Lab:
    base: str
    token: str
    work: Path
    results: Path
    proc: subprocess.Popen

    def api(self, method: str, path: str):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def url(self, notebook: str) -> str:
        # ?reset: a fresh workspace, only this notebook open
        return f"{self.base}/lab/tree/notebooks/{notebook}?reset&token={self.token}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def _write_settings(folder: Path) -> None:
    settings = {
        # every cell in the DOM (no virtualised rendering), and start the notebook's kernel
        ("@jupyterlab", "notebook-extension", "tracker"): {"windowingMode": "none", "autoStartDefaultKernel": True},
        ("@jupyterlab", "apputils-extension", "notification"): {"fetchNews": "false", "checkForUpdates": False},
    }
    for (scope, ext, name), value in settings.items():
        d = folder / scope / ext
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.jupyterlab-settings").write_text(json.dumps(value))


def _stop(lab: Lab, log) -> list[str]:
    """Shut the server down (it stops its kernels), then end whatever of it is left; returns
    what had to be killed."""
    import psutil

    try:
        children = psutil.Process(lab.proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    try:
        lab.api("POST", "/api/shutdown")
    except OSError:
        pass
    killed = []
    try:
        lab.proc.wait(30)
    except subprocess.TimeoutExpired:
        lab.proc.terminate()
        try:
            lab.proc.wait(10)
        except subprocess.TimeoutExpired:
            lab.proc.kill()
            lab.proc.wait(10)
        killed.append(f"jupyter lab (pid {lab.proc.pid})")
    _, alive = psutil.wait_procs(children, timeout=15)
    for p in alive:
        try:
            killed.append(f"{p.name()} (pid {p.pid})")
            p.kill()
        except psutil.NoSuchProcess:
            pass
    log.close()
    return killed


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("jupyterlab")
    work, results = root / "work", root / "results"
    (work / "notebooks").mkdir(parents=True)
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(nb, work / "notebooks" / nb.name)
    _clean_copy(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", work / "notebooks" / f"{NOTEBOOK}.ipynb")
    _clean_copy(ROOT / "notebooks" / "loss_atlas.ipynb", work / "notebooks" / "loss_atlas_interactive.ipynb", _interactive)
    port, token = _free_port(), secrets.token_hex(16)
    config = root / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps({
        "ServerApp": {"ip": "127.0.0.1", "port": port, "port_retries": 0, "open_browser": False,
                      "root_dir": str(work), "allow_root": os.geteuid() == 0},
        "IdentityProvider": {"token": token},
        "LabApp": {"news_url": None, "extension_manager": "readonly",
                   "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate"},
    }))
    _write_settings(root / "settings")
    env = {**os.environ, "LFAKIT_RESULTS": str(results), "JUPYTER_CONFIG_DIR": str(config),
           "JUPYTER_DATA_DIR": str(root / "data"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces")}
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed by _stop
    exe = Path(sys.executable).with_name("jupyter-lab")
    proc = subprocess.Popen([str(exe), "--no-browser"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, work, results, proc)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{(root / 'server.log').read_text()[-3000:]}")
            try:
                lab.api("GET", "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer:\n{(root / 'server.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield lab
    finally:
        killed = _stop(lab, log)
        shutil.copy(root / "server.log", _artifacts_dir() / "jupyterlab-server.log")
        assert not killed, f"left running after the server's shutdown, killed: {killed}"


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
    page.goto(lab.url(notebook))
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
