"""`lfakit list|run`: listing, and errors that stop before any work starts."""

from __future__ import annotations

import re

import pytest

from lfakit import cli, runner

EXP = "chestxray_zlpr"


def _runs(results_dir):
    d = results_dir / EXP
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_list_shows_experiments_profiles_and_parameters(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert EXP in out and "paper" in out and "smoke" in out
    assert cli.main(["list", EXP]) == 0
    out = capsys.readouterr().out
    for needle in ("losses", "list", "['focal', 'zlpr', 'fzlpr', 'bce', 'asl']", "losses to train, by registry name", "epochs", "int"):
        assert needle in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "losses=[zlp]"], "Did you mean: 'zlpr'"),
        (["-p", "epoch=1"], "unknown parameter 'epoch'.*Did you mean: 'epochs'"),
        (["-p", "epochs=two"], "'epochs' must be a int"),
        (["-p", "lr=-1"], "'lr' must be >="),
        (["--profile", "papr"], "no profile 'papr'.*'paper'"),
        (["-p", "baseline=bce", "-p", "losses=[focal, zlpr]"], "baseline 'bce' is not among the trained losses"),
        # values inside loss_kwargs and an absent device: checked by the preflight, still before any work
        (["-p", "loss_kwargs={focal: {gamma: -1}}"], "loss_kwargs.*gamma"),
        (["-p", "loss_kwargs={focal: {gama: 1}}"], "no argument 'gama'.*'gamma'"),
        (["-p", "device=cuda"], "no CUDA GPU"),
        (["-p", "model=resnet18", "-p", "image_size=16"], "at least 32 px; set image_size >= 32"),
    ],
)
def test_bad_parameters_fail_before_any_work(args, message, capsys, results_dir):
    before = _runs(results_dir)
    assert cli.main(["run", EXP, *args]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert _runs(results_dir) == before  # no run folder was made


def test_unknown_experiment_suggests(capsys):
    assert cli.main(["run", "chestxray_zlp"]) == 2
    assert "'chestxray_zlpr'" in capsys.readouterr().err


def test_resume_unknown_run_id(capsys):
    assert cli.main(["run", EXP, "--resume", "no-such-run"]) == 2
    assert "cannot resume 'no-such-run'" in capsys.readouterr().err


def test_paper_profile_without_data_stops_at_once_saying_where_data_goes(capsys, results_dir, tmp_path):
    """Checked by the CLI before a run folder is made or a kernel started (runner.preflight)."""
    missing = tmp_path / "ChestX-ray14"
    before = _runs(results_dir)
    assert cli.main(["run", EXP, "--profile", "paper", "-q", "-p", f"data_dir={missing}"]) == 2
    err = capsys.readouterr().err
    assert "Data_Entry_2017.csv" in err and "train_val_list.txt" in err
    assert "--profile smoke" in err  # how to run without the data
    assert _runs(results_dir) == before  # no run folder, no notebook


def test_notebook_setup_runs_the_same_data_check(tmp_path):
    """In JupyterLab (no CLI) the notebook's first cell stops with the same message."""
    from lfakit.errors import DataError
    from lfakit.experiments import chestxray_zlpr

    P = runner.resolve_params(EXP, "paper", {"data_dir": str(tmp_path / "missing")})
    with pytest.raises(DataError, match="Data_Entry_2017.csv"):
        chestxray_zlpr.setup(P)


def test_run_all_goes_on_after_an_experiment_whose_data_are_missing(capsys, results_dir, monkeypatch):
    from lfakit.errors import DataError

    ran = []

    def fake_run(experiment, **kw):
        if experiment == EXP:
            raise DataError(f"{experiment}: no data here")
        ran.append(experiment)
        return runner.RunOutcome(experiment, results_dir, results_dir / "nb.ipynb", False)

    monkeypatch.setattr(runner, "run", fake_run)
    assert cli.main(["run-all", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"{EXP}: error: {EXP}: no data here" in err and f"failed: {EXP}" in err
    assert sorted(ran) == sorted(e for e in runner.experiments() if e != EXP)


@pytest.mark.parametrize("args, message", [
    (["-p", "image_size=2"], "at least 8 px"),
    (["-p", "model=resnet18"], "at least 32 px"),
    (["-p", "imbalance_ratios=[1, 5000]"], "at most 1000"),
])
def test_cifar_fece_numeric_ranges_are_checked(args, message, capsys, results_dir):
    assert cli.main(["run", "cifar_fece", *args]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (results_dir / "cifar_fece").exists() or not any((results_dir / "cifar_fece").iterdir())


def test_results_root_that_is_a_file_or_unwritable_stops_clearly(capsys, monkeypatch, tmp_path):
    afile = tmp_path / "results"
    afile.write_text("not a folder")
    monkeypatch.setenv("LFAKIT_RESULTS", str(afile))
    assert cli.main(["run", EXP]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "LFAKIT_RESULTS" in err and "Traceback" not in err
    monkeypatch.setenv("LFAKIT_RESULTS", str(afile / "below"))  # a path under a file cannot be made
    assert cli.main(["run", EXP]) == 2
    err = capsys.readouterr().err
    assert "cannot write run folders under" in err and "LFAKIT_RESULTS" in err
    assert afile.read_text() == "not a folder"  # nothing already there is touched


def test_list_experiment_shows_user_parameters_with_ranges_and_profile_values(capsys):
    assert cli.main(["list", EXP]) == 0
    out = capsys.readouterr().out
    names = {line.split()[0] for line in out.splitlines()[1:] if line.startswith("  ") and not line.startswith("   ")}
    assert "run_dir" not in names and "resume" not in names  # set by the runner, not the user's
    assert {"epochs", "lr", "losses", "precision"} <= names
    assert "[1e-12, 10]" in out  # lr's range
    assert "paper: 'densenet121'" in out and "paper: 224" in out  # what the paper profile sets


def _nih(tmp_path, **gen):
    from lfakit.data.chestxray_embedded import write_synthetic_nih

    return write_synthetic_nih(tmp_path / "nih", n_patients=30, image_size=64, **gen)


def test_empty_test_list_stops_before_any_work(capsys, results_dir, tmp_path):
    root = _nih(tmp_path)
    (root / "test_list.txt").write_text("")
    before = _runs(results_dir)
    assert cli.main(["run", EXP, "-q", "-p", f"data_dir={root}"]) == 2
    err = capsys.readouterr().err
    assert "test_list.txt" in err and "empty" in err and "--resume" not in err
    assert _runs(results_dir) == before


@pytest.mark.slow
def test_corrupt_image_is_named_and_opencv_stays_quiet(tmp_path, results_dir):
    import subprocess
    import sys

    root = _nih(tmp_path)
    png = sorted((root / "images_001" / "images").glob("*.png"))[3]
    png.write_bytes(png.read_bytes()[:200])  # truncated
    r = subprocess.run([sys.executable, "-m", "lfakit.cli", "run", EXP, "-q", "-p", f"data_dir={root}",
                        "-p", "epochs=1", "-p", "losses=[focal]"], capture_output=True, text=True)
    assert r.returncode == 1
    assert png.name in r.stderr and "DataError" in r.stderr
    assert "libpng" not in r.stderr and "imread" not in r.stderr and "WARN" not in r.stderr  # -q means quiet


@pytest.mark.slow
def test_ctrl_c_names_the_run_to_resume_without_a_traceback(results_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    before = set(_runs(results_dir))
    p = subprocess.Popen([sys.executable, "-m", "lfakit.cli", "run", EXP, "-q", "-p", "epochs=3", "-p", "losses=[focal, zlpr]"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline, run = time.time() + 300, None
    while time.time() < deadline and p.poll() is None:
        new = set(_runs(results_dir)) - before
        if new and (results_dir / EXP / next(iter(new)) / "checkpoints" / "focal" / "last.pt").exists():
            run = next(iter(new))
            break
        time.sleep(0.05)
    assert run is not None, "the run ended before its first checkpoint"
    os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert "Traceback" not in err and "ZMQError" not in err, err
    assert f"lfakit run {EXP} --resume {run}" in err


@pytest.mark.slow
def test_ctrl_c_in_run_all_stops_the_whole_job(results_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    p = subprocess.Popen([sys.executable, "-m", "lfakit.cli", "run-all", "-q"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:  # cf_ensemble runs first; stop it mid-run
        if (results_dir / "cf_ensemble").exists() and any((results_dir / "cf_ensemble").iterdir()):
            time.sleep(3)
            break
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "run-all stopped" in err and "Traceback" not in err
    assert not (results_dir / "loss_atlas").exists()  # nothing ran after the interrupt
