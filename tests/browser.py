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
"""

from __future__ import annotations

import os
import re
import shutil
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
