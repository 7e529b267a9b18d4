"""The browser harness of the browser tests: Playwright driving the system's Chromium.

Never a browser Playwright downloads (``playwright install`` is not used): the tests drive
Debian's ``chromium`` (``apt-get install chromium``), found at ``$LFAKIT_CHROMIUM``, else
``/usr/bin/chromium``, else ``chromium`` / ``chromium-browser`` on the PATH. Without it the
tests are skipped with that reason, except under ``CI=true``, where a missing browser (or a
missing ``playwright`` package) fails them: CI must run them.

Fixtures (import them into a test module: ``from browser import browser, page, artifacts``):

``browser``
    one headless Chromium per test module, with a fresh profile (Playwright's own temporary
    user-data-dir) and nothing that reaches the network on its own.
``page``
    a new page (1280 x 900) in a fresh context; ``page.problems`` collects console errors,
    uncaught page errors, failed requests and any request that left the machine (not
    ``file:``, ``data:``, ``blob:``, ``about:`` or localhost).
``artifacts``
    the folder screenshots go to: ``$LFAKIT_TEST_ARTIFACTS`` or ``tests/artifacts/``
    (git-ignored), one subfolder per test module; kept after the run.

:func:`jupyterlab` starts the private JupyterLab server the JupyterLab tests open in Chromium.
"""

from __future__ import annotations

import contextlib
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
from urllib.parse import urlparse

import pytest

ARTIFACTS = Path(os.environ.get("LFAKIT_TEST_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"]
_LOCAL_SCHEMES = ("file", "data", "blob", "about", "chrome-error", "devtools")


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str):
    """Skip with ``reason``; under CI=true fail instead (the browser tests must run there)."""
    if on_ci():
        pytest.fail(f"{reason} (CI=true: the browser tests must run; .ci/run installs chromium)", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    candidates = [os.environ.get("LFAKIT_CHROMIUM"), "/usr/bin/chromium",
                  shutil.which("chromium"), shutil.which("chromium-browser")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def _is_local(url: str) -> bool:
    u = urlparse(url)
    if u.scheme in _LOCAL_SCHEMES or not u.scheme:
        return True
    return u.scheme in ("http", "https", "ws", "wss") and u.hostname in ("127.0.0.1", "localhost", "::1")


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        unavailable("no Chromium found (apt-get install chromium, or set LFAKIT_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=LAUNCH_ARGS, chromium_sandbox=False)
        try:
            yield b
        finally:
            b.close()


class Problems(list):
    """Console errors, page errors, failed and outgoing requests seen by one page."""

    def report(self) -> str:
        return "\n".join(self)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    pg = context.new_page()
    problems = Problems()

    def on_console(msg):
        if msg.type == "error":
            problems.append(f"console error: {msg.text} ({msg.location.get('url', '')})")

    def on_request(req):
        if not _is_local(req.url):
            problems.append(f"network request: {req.url}")

    pg.on("console", on_console)
    pg.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    pg.on("requestfailed", lambda req: problems.append(f"request failed: {req.url} ({req.failure})"))
    pg.on("request", on_request)
    pg.problems = problems
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture(scope="module")
def artifacts(request) -> Path:
    d = ARTIFACTS / re.sub(r"\W+", "_", request.module.__name__.rsplit(".", 1)[-1])
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
    return d


def broken_images(page) -> list[str]:
    """The ``<img>`` elements of the page that did not load (naturalWidth 0), after scrolling
    every lazy image into view."""
    page.evaluate("""async () => {
        for (const img of document.images) { img.loading = 'eager'; }
        await Promise.all([...document.images].map(img => img.complete ? null :
            new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r); })));
    }""")
    return page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 200))")


# --------------------------------------------------------------------------- a private JupyterLab

#: JupyterLab settings every test server gets: every cell attached to the page (no windowed
#: rendering, so every output is laid out), a notebook's kernel started when it opens, and no
#: news or update checks (nothing leaves the machine).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token, the folder it serves, its process, and the
    results folder its kernels write runs into (when one was given)."""

    base: str
    token: str
    root: Path
    proc: subprocess.Popen
    results: Path | None = None

    def api(self, method: str, path: str):
        """Call the server's REST API; the decoded JSON answer (None for an empty one)."""
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def url(self, path: str = "") -> str:
        """The page of ``path`` (relative to the served folder) in a fresh workspace, or the
        bare application for ``""``."""
        return f"{self.base}/lab/tree/{path}?reset&token={self.token}" if path else f"{self.base}/lab?token={self.token}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(lab: Lab) -> list[str]:
    """Shut the server down through its API (which stops its kernels), then end whatever of it
    is left; returns what had to be killed."""
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
        lab.proc.kill()
        lab.proc.wait(10)
        killed.append(f"jupyter lab (pid {lab.proc.pid})")
    for p in psutil.wait_procs(children, timeout=15)[1]:
        with contextlib.suppress(psutil.NoSuchProcess):
            killed.append(f"{p.name()} (pid {p.pid})")
            p.kill()
    return killed


@contextlib.contextmanager
def jupyterlab(folder: Path, root: Path, log_copy: Path, env: dict | None = None, settings: dict | None = None):
    """Run ``jupyter lab`` serving ``root`` on a free localhost port with a random token; yields
    a :class:`Lab` once the server answers.

    Its config, settings (:data:`LAB_SETTINGS`), workspaces, data and runtime folders live in
    ``folder``, so neither the user's JupyterLab set-up nor an earlier test changes what it
    shows; ``settings`` are merged over :data:`LAB_SETTINGS` per settings file. Terminals are off and the debugger's front end is disabled (it logs errors when a
    notebook closes while its kernel starts, which no test looks at). ``env`` is added to the
    server's (and so its kernels') environment; its ``LFAKIT_RESULTS`` becomes ``Lab.results``. At the end the server is shut down, its log is
    copied to ``log_copy``, and anything of it still running is killed and fails the test."""
    port, token = _free_port(), secrets.token_hex(16)
    config = folder / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "jupyter_server_config.json").write_text(json.dumps({
        "ServerApp": {"ip": "127.0.0.1", "port": port, "port_retries": 0, "open_browser": False,
                      "root_dir": str(root), "terminals_enabled": False, "allow_root": os.geteuid() == 0},
        "IdentityProvider": {"token": token},
        "LabApp": {"news_url": None, "extension_manager": "readonly", "expose_app_in_browser": True,
                   "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate"},
    }))
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/debugger-extension": True}}))
    for name in {**LAB_SETTINGS, **(settings or {})}:
        value = {**LAB_SETTINGS.get(name, {}), **(settings or {}).get(name, {})}
        f = folder / "settings" / f"{name}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    full_env = {**os.environ, **(env or {}), "JUPYTER_CONFIG_DIR": str(config),
                "JUPYTER_DATA_DIR": str(folder / "data"), "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
                "JUPYTERLAB_SETTINGS_DIR": str(folder / "settings"),
                "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces")}
    log_path = folder / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser"], cwd=root, env=full_env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    results = full_env.get("LFAKIT_RESULTS")
    lab = Lab(f"http://127.0.0.1:{port}", token, root, proc, Path(results) if results else None)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                lab.api("GET", "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer within 120 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.3)
        yield lab
    finally:
        killed = _stop(lab)
        log.close()
        log_copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(log_path, log_copy)
        assert not killed, f"left running after the server's shutdown, killed: {killed}"
