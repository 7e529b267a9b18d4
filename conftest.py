"""Shared test setup: results go to a temporary folder, never into the checkout.

Set in ``pytest_configure`` (not a fixture) because nbval starts its kernel, which inherits the
environment, before any fixture runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_MADE: list[str] = []


def pytest_configure(config):
    # one folder per process: xdist workers must not see each other's runs
    path = tempfile.mkdtemp(prefix="lfakit-results-")
    _MADE.append(path)
    os.environ["LFAKIT_RESULTS"] = path
    # The embedded data set and image caches are keyed on their settings, so sharing one cache
    # folder across test sessions is safe and saves regenerating them.
    os.environ.setdefault("LFAKIT_CACHE", str(Path.home() / ".cache" / "lfakit-test"))


def pytest_unconfigure(config):
    for path in _MADE:
        shutil.rmtree(path, ignore_errors=True)
        os.environ.pop("LFAKIT_RESULTS", None)


@pytest.fixture
def results_dir() -> Path:
    return Path(os.environ["LFAKIT_RESULTS"])
