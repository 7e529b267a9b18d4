"""End to end through papermill: the run folder, exact resume after a kill, and nbval's sensitivity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from lfakit import record, runner
from lfakit.data.chestxray import CLASSES

pytestmark = pytest.mark.slow
EXP = "chestxray_zlpr"
ROOT = Path(__file__).resolve().parents[1]
# small and quick, but the same parameters for the uninterrupted and the killed run
QUICK = ["-p", "epochs=3", "-p", "losses=[focal, zlpr]", "-p", "synthetic_patients=160"]


def _lfakit(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lfakit.cli", *args], capture_output=True, text=True, **kw)


def _run_dir(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1].split("-> ")[-1])


@pytest.fixture(scope="module")
def quick_run():
    r = _lfakit("run", EXP, *QUICK, "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    return _run_dir(r.stdout)


def test_run_folder_holds_everything(quick_run):
    d = quick_run
    for f in ("notebook.ipynb", "params.yaml", "environment.json", "metrics.json", "predictions.npz",
              "figures/per_class_auroc.png", "figures/roc_curves.png", "tables/overall.csv", "tables/comparison.csv",
              "history/focal.csv", "checkpoints/zlpr/last.pt"):
        assert (d / f).exists(), f
    r = record.load_run(d)
    assert set(r.methods) == {"focal", "zlpr"} and r.extra["baseline"] == "focal"
    for name, lm in r.methods.items():
        assert set(lm["per_class"]) == set(CLASSES)
        for c, v in lm["per_class"].items():
            assert 0.0 <= v["auroc"] <= 1.0 and 0.0 <= v["f1"] <= 1.0 and 0.0 <= v["threshold"] <= 1.0
        assert lm["avg_auroc"] == pytest.approx(np.mean([v["auroc"] for v in lm["per_class"].values()]))
        assert lm["avg_auroc"] > 0.6, f"{name} did not learn the embedded data's signal"
    for split in ("train", "val", "test"):
        p = r.predictions.select(method="focal", split=split)
        assert p.targets.shape == (len(p), 14) and p.scores.shape == (len(p), 14) and len(set(p.sample_id)) == len(p)
        assert np.isfinite(p.sample_loss).all()
    env = json.loads((d / "environment.json").read_text())
    assert env["packages"]["torch"] == "2.14.1" and env["seed"] == 42


def test_metrics_recomputable_from_predictions(quick_run):
    """predictions.npz alone reproduces metrics.json (the run folder is the unit of record)."""
    from lfakit.metrics.classification import multilabel_report

    from scipy.special import expit

    r = record.load_run(quick_run)
    val, test = r.predictions.select(method="zlpr", split="val"), r.predictions.select(method="zlpr", split="test")
    rep = multilabel_report(val.targets, expit(val.scores), test.targets, expit(test.scores), CLASSES)
    for c in CLASSES:
        assert rep.loc[c, "AUROC"] == pytest.approx(r.methods["zlpr"]["per_class"][c]["auroc"])
        assert rep.loc[c, "Threshold"] == pytest.approx(r.methods["zlpr"]["per_class"][c]["threshold"])


def test_killed_run_resumes_to_the_same_metrics(quick_run, results_dir):
    proc = subprocess.Popen([sys.executable, "-m", "lfakit.cli", "run", EXP, *QUICK, "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = results_dir / EXP
    before = set(base.iterdir())
    deadline = time.time() + 300
    run = None
    while time.time() < deadline and proc.poll() is None:
        new = [p for p in base.iterdir() if p not in before]
        if new and (new[0] / "checkpoints" / "zlpr" / "last.pt").exists():
            run = new[0]
            break
        time.sleep(0.02)
    assert run is not None, "the run ended before zlpr's first checkpoint; cannot interrupt it"
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI, papermill and the kernel, mid-training
    proc.wait()
    assert not (run / "metrics.json").exists() and (run / "predictions" / "focal.npz").exists()

    r = _lfakit("run", EXP, "--resume", run.name, "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "notebook.attempt-1.ipynb").exists()
    got, want = record.load_run(run), record.load_run(quick_run)
    assert got.methods == want.methods and got.params_hash == want.params_hash
    a, b = got.predictions.select(method="zlpr", split="test"), want.predictions.select(method="zlpr", split="test")
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.sample_loss, b.sample_loss)


def _final_tables(nb) -> dict[str, str]:
    """The checked result tables (per-class, overall, comparison) by title: the plain text of every
    table the notebook displays with report.show_table (what nbval compares, with its Markdown)."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "show_table" in cell.source and "split_summary" not in cell.source:
            for o in cell.outputs:
                text = o.get("data", {}).get("text/plain", "") if o.get("output_type") == "display_data" else ""
                if text:
                    title, _, body = text.partition("\n")
                    out[title if body else f"table {len(out)}"] = text
    return out


def test_changed_loss_default_changes_the_checked_tables(tmp_path):
    """What nbval compares: a changed focal gamma alters focal's per-class table, and a loss
    trained beside it repeats its committed table exactly. Two of the smoke profile's losses
    (each loss trains from its own seed, so the others need not be trained again)."""
    committed = nbformat.read(ROOT / "notebooks" / f"{EXP}.ipynb", as_version=4)
    params = runner.resolve_params(EXP, "smoke", {"losses": ["focal", "zlpr"], "loss_kwargs": {"focal": {"gamma": 1.0}}})
    params["run_dir"] = str(tmp_path)
    out = runner.execute(EXP, params, tmp_path, log_output=False)
    fresh = nbformat.read(out, as_version=4)
    old, new = _final_tables(committed), _final_tables(fresh)
    assert {"focal", "zlpr"} <= set(old) and {"focal", "zlpr"} <= set(new)  # per-class tables, titled by loss
    assert old["focal"] != new["focal"]
    assert old["zlpr"] == new["zlpr"]  # the other loss repeats exactly
