"""Shared test setup: results and caches go to temporary folders, never into the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory):
    """LFAKIT_RESULTS / LFAKIT_CACHE point at session temp folders (nbval kernels inherit them).

    The embedded data cache is shared across sessions in ~/.cache/lfakit-test so repeated runs
    do not regenerate it; it is keyed on the generator's arguments, so it is never stale.
    """
    results = tmp_path_factory.mktemp("results")
    old = {k: os.environ.get(k) for k in ("LFAKIT_RESULTS", "LFAKIT_CACHE")}
    os.environ["LFAKIT_RESULTS"] = str(results)
    os.environ.setdefault("LFAKIT_CACHE", str(Path.home() / ".cache" / "lfakit-test"))
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def results_dir() -> Path:
    return Path(os.environ["LFAKIT_RESULTS"])
