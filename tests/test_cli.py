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
    """Damage inside a PNG's image data passes the preflight's check of the file's two ends; the
    cache build, which decodes every image, names the file, and the run folder is marked failed
    with it (a cut file is stopped before any run folder: test_a_truncated_png_...)."""
    import subprocess
    import sys

    from lfakit.site import run_status

    root = _nih(tmp_path)
    png = sorted((root / "images_001" / "images").glob("*.png"))[3]
    data = bytearray(png.read_bytes())
    data[data.find(b"IDAT") + 10] ^= 0xFF  # a flipped byte: the IDAT chunk fails its CRC
    png.write_bytes(bytes(data))
    before = set(_runs(results_dir))
    r = subprocess.run([sys.executable, "-m", "lfakit.cli", "run", EXP, "-q", "-p", f"data_dir={root}",
                        "-p", "epochs=1", "-p", "losses=[focal]"], capture_output=True, text=True)
    assert r.returncode == 1
    assert png.name in r.stderr and "DataError" in r.stderr
    assert "libpng" not in r.stderr and "imread" not in r.stderr and "WARN" not in r.stderr  # -q means quiet
    new = set(_runs(results_dir)) - before
    assert len(new) == 1
    st = run_status(results_dir / EXP / new.pop())
    assert st.state == "failed" and st.ename == "DataError" and png.name in st.evalue


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


# ------------------------------------------------------------------ --resume addresses runs, not paths


def _fake_run(fresh_results, experiment=EXP, run_id="20261201-093000-smoke", complete=False, failed=False):
    """A run folder as `lfakit run` leaves it: params.yaml (and, complete, the record)."""
    import json

    import yaml

    d = fresh_results / experiment / run_id
    d.mkdir(parents=True)
    p = runner.resolve_params(experiment, "smoke")
    (d / runner.PARAMS_NAME).write_text(yaml.safe_dump({**p, "run_dir": str(d), "resume": False}))
    nb = {"cells": [{"cell_type": "code", "metadata": {"papermill": {"status": "failed" if failed else "completed"}},
                     "outputs": [], "source": ""}], "metadata": {"papermill": {"exception": failed}}}
    (d / runner.NOTEBOOK_NAME).write_text(json.dumps(nb))
    if complete:
        from lfakit import record

        (d / "metrics.json").write_text("{}")
        record.write_manifest(d)  # sizes and SHA-256s, as save_run leaves them
    return d


def _snapshot(root):
    """Every file and folder under ``root`` with its mtime and size: what 'nothing changed' means."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def fresh_results(monkeypatch, tmp_path):
    """A results root of this test's own, so that its run folders are the only ones there."""
    root = tmp_path / "results"
    root.mkdir()
    monkeypatch.setenv("LFAKIT_RESULTS", str(root))
    return root


@pytest.fixture
def no_execution(monkeypatch):
    """Fails the test if a notebook would be executed or a preflight run."""
    calls = []

    def refuse(*a, **kw):
        calls.append(a)
        raise AssertionError("nothing should run")

    monkeypatch.setattr(runner, "execute", refuse)
    monkeypatch.setattr(runner, "preflight", refuse)
    return calls


@pytest.mark.parametrize("bad", ["", "..", ".", "../iqa_losses/20261201-093000-smoke", "20261201-093000-smoke/",
                                 "/tmp/20261201-093000-smoke", "sub\\dir"])
def test_resume_takes_a_run_id_not_a_path(bad, capsys, fresh_results, no_execution):
    mine = _fake_run(fresh_results, run_id="20261201-093000-smoke")
    other = _fake_run(fresh_results, "iqa_losses", "20261201-093000-smoke")  # what ../iqa_losses/<id> would reach
    before = _snapshot(fresh_results)
    assert cli.main(["run", EXP, "--resume", bad]) == 2
    err = capsys.readouterr().err
    assert "run id" in err and "YYYYMMDD-HHMMSS[-label]" in err, err  # what a run id looks like
    assert mine.name in err  # the runs there are to resume
    if bad.startswith("../iqa_losses/"):
        assert f"lfakit run iqa_losses --resume {other.name}" in err  # the command that continues that run
    assert "Traceback" not in err
    assert _snapshot(fresh_results) == before and other.exists()  # no new run folder, nothing touched
    assert not no_execution


def test_resume_refuses_a_link_out_of_the_experiments_folder(capsys, fresh_results, tmp_path, no_execution):
    outside = _fake_run(tmp_path / "elsewhere")
    (fresh_results / EXP).mkdir(parents=True, exist_ok=True)
    (fresh_results / EXP / "20261202-000000-smoke").symlink_to(outside, target_is_directory=True)
    before = _snapshot(tmp_path)
    assert cli.main(["run", EXP, "--resume", "20261202-000000-smoke"]) == 2
    err = capsys.readouterr().err
    assert "is a link to" in err and str(outside) in err and "its own folder" in err, err
    assert "Move the run folder there" in err and "LFAKIT_RESULTS" in err  # the fix
    assert _snapshot(tmp_path) == before


def test_resume_of_an_unknown_id_lists_close_and_existing_runs(capsys, fresh_results, no_execution):
    _fake_run(fresh_results, run_id="20261201-093000-smoke")
    _fake_run(fresh_results, run_id="20261203-120000-paper")
    assert cli.main(["run", EXP, "--resume", "20261201-093001-smoke"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume '20261201-093001-smoke'" in err
    assert "Did you mean: '20261201-093000-smoke'" in err
    assert "newest first): 20261203-120000-paper, 20261201-093000-smoke" in err
    assert "form" not in err  # it looks like a run id; there is just no such run
    assert cli.main(["run", EXP, "--resume", "latest"]) == 2
    assert "'latest' does not even have a run id's form" in capsys.readouterr().err


def test_resuming_a_finished_run_says_so_and_changes_nothing(capsys, fresh_results, no_execution):
    d = _fake_run(fresh_results, complete=True)
    before = _snapshot(fresh_results)
    assert cli.main(["run", EXP, "--resume", d.name]) == 0
    out = capsys.readouterr().out
    assert f"run {d.name} is already complete" in out and str(d) in out and "nothing was run or changed" in out
    assert _snapshot(fresh_results) == before
    assert not list(d.glob("notebook.attempt-*"))


def test_resuming_a_finished_but_damaged_run_names_the_damage_and_changes_nothing(capsys, fresh_results,
                                                                                    no_execution):
    d = _fake_run(fresh_results, complete=True)
    (d / "metrics.json").write_text("{}\n")  # changed after the manifest was written
    before = _snapshot(fresh_results)
    assert cli.main(["run", EXP, "--resume", d.name]) == 2
    err = capsys.readouterr().err
    assert "finished, but its record is damaged: metrics.json: 3 bytes, the manifest says 2" in err, err
    assert "cannot repair a finished run" in err and str(d / runner.PARAMS_NAME) in err
    assert _snapshot(fresh_results) == before and not no_execution


def test_a_failed_run_with_a_record_is_not_complete_and_resumes(fresh_results, monkeypatch):
    d = _fake_run(fresh_results, complete=True, failed=True)
    assert not runner.run_complete(d)
    ran = []
    monkeypatch.setattr(runner, "preflight", lambda e, p: None)
    monkeypatch.setattr(runner, "execute", lambda e, p, rd, *a, **k: ran.append((rd, p["resume"])) or rd / "nb.ipynb")
    outcome = runner.run(EXP, resume=d.name)
    assert ran == [(d, True)] and outcome.resumed and not outcome.already_complete
    assert (d / "notebook.attempt-1.ipynb").exists()  # the failed attempt is kept


@pytest.mark.parametrize("extra, named", [
    (["--profile", "paper"], "--profile paper"),
    (["--profile", "smoke"], "--profile smoke"),  # given, even if it is the default: refused alike
    (["-p", "epochs=2"], "-p epochs=2"),
    (["-p", "epochs=2", "--profile", "paper"], "-p epochs=2 and --profile paper"),
])
def test_options_that_cannot_change_on_resume_are_refused_alike(extra, named, capsys, fresh_results, no_execution):
    d = _fake_run(fresh_results)
    before = _snapshot(fresh_results)
    assert cli.main(["run", EXP, "--resume", d.name, *extra]) == 2
    err = capsys.readouterr().err
    assert f"--resume continues run {d.name!r} with the parameters it was started with" in err
    assert f"{named} cannot change on resume: drop" in err and str(d / runner.PARAMS_NAME) in err, err
    assert _snapshot(fresh_results) == before


def test_a_new_run_without_profile_still_uses_smoke(monkeypatch, fresh_results):
    seen = {}

    def fake_run(experiment, **kw):
        seen.update(kw)
        return runner.RunOutcome(experiment, fresh_results, fresh_results / "nb.ipynb", False)

    monkeypatch.setattr(runner, "run", fake_run)
    assert cli.main(["run", EXP, "-q"]) == 0
    assert seen["profile"] == "smoke" and seen["given"] == [] and seen["resume"] is None


def test_a_failed_cell_is_named_by_papermills_log_number_too(tmp_path, monkeypatch, capsys):
    """papermill logs "Executing Cell N" counting from 1 (markdown and injected cells included);
    the failure message gives that number beside papermill's index (what `lfakit report` shows)."""
    import logging
    import re

    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# demo"), nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("y = 2"), nbformat.v4.new_markdown_cell("then"),
                nbformat.v4.new_code_cell("raise ValueError('boom')"), nbformat.v4.new_code_cell("z = 3")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, tmp_path / "nbs" / "demo.ipynb")
    monkeypatch.setattr(runner, "notebooks_dir", lambda: tmp_path / "nbs")
    logged = []

    class Keep(logging.Handler):
        def emit(self, record):
            logged.append(record.getMessage())

    keep, log = Keep(), logging.getLogger("papermill")
    level = log.level
    log.addHandler(keep)
    log.setLevel(logging.INFO)
    try:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        with pytest.raises(runner.RunFailed) as info:
            runner.execute("demo", {"x": 5}, run_dir)
    finally:
        log.removeHandler(keep)
        log.setLevel(level)
    started = [int(m.group(1)) for line in logged for m in [re.match(r"Executing Cell (\d+)", line)] if m]
    msg = str(info.value)
    index = int(re.match(r"cell (\d+) \(execution count \d+\) failed: ValueError: boom", msg).group(1))
    assert f'"Executing Cell {started[-1]}"' in msg, (msg, logged)  # the last cell papermill started: the failing one
    assert index == started[-1] - 1


# ------------------------------------------------------------------ parameter and data errors: at once, without torch


def _cli_in_fresh_interpreter(args, results):
    """Run ``lfakit`` in a new interpreter; report its exit status, whether torch had been
    imported when the command returned, its stderr and the seconds it took (printed only)."""
    import os
    import subprocess
    import sys

    code = ("import sys, time; t = time.perf_counter(); from lfakit import cli; "
            f"rc = cli.main({list(args)!r}); "
            "print('RC', rc, 'TORCH', 'torch' in sys.modules, 'SECONDS', round(time.perf_counter() - t, 2))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "LFAKIT_RESULTS": str(results)}, timeout=300)
    return r.stdout, r.stderr


def _has_gpu_driver() -> bool:
    import os

    return any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd"))


@pytest.mark.parametrize("experiment, args, message", [
    (EXP, ["-p", "loss_kwargs={focal: {gama: 1}}"], r"loss 'focal' has no argument 'gama'\. Did you mean: 'gamma'\?"),
    (EXP, ["-p", "loss_kwargs={focal: {gamma: -1}}"], r"gamma must be >= 0, got -1; fix loss_kwargs\['focal'\]\['gamma'\]"),
    (EXP, ["-p", "losses=[focal, zlpr]", "-p", "loss_kwargs={asl: {}}"],
     r"loss_kwargs gives arguments for 'asl', which this run does not train .*add it to losses or remove it"),
    ("iqa_losses", ["-p", "losses=[l1, l2]", "-p", "baseline=plcc"], r"baseline 'plcc' is not among the trained losses"),
    ("membership_inference", ["-p", "loss_kwargs={flooding: {b: -0.1}}"], r"loss 'flooding': b must be >= 0"),
    ("loss_atlas", ["-p", "loss_kwargs={focal: {reduction: sum}}"], r"sets 'reduction'.*remove it"),
    ("loss_atlas", ["-p", "loss_kwargs={flooding: {base: bce}}"], r"base 'bce' is a multilabel loss.*such as 'ce'"),
    (EXP, ["-p", "device=mps"], r"device='mps' was asked for but MPS is not available.*use device='auto' or 'cpu'"),
    (EXP, ["-p", "device=cuda"], r"device='cuda' was asked for but no CUDA GPU is visible.*use device='auto' or 'cpu'"),
    (EXP, ["-p", "data_dir=/nonexistent/nih"], r"Data folder '/nonexistent/nih' does not exist.*--profile smoke"),
    ("iqa_losses", ["-p", "data_dir=/nonexistent/koniq"], r"KonIQ-10k folder /nonexistent/koniq does not exist"),
    ("cifar_fece", ["-p", "dataset=cifar10", "-p", "data_dir=/nonexistent/cifar"], r"does not exist.*--profile smoke"),
])
def test_parameter_and_data_folder_errors_come_before_torch_is_imported(experiment, args, message, tmp_path):
    import sys

    if "device=cuda" in args and _has_gpu_driver():
        pytest.skip("a GPU driver is loaded: only torch can tell whether CUDA works")
    if "device=mps" in args and sys.platform == "darwin":
        pytest.skip("on macOS only torch can tell whether MPS works")
    results = tmp_path / "results"
    out, err = _cli_in_fresh_interpreter(["run", experiment, "-q", *args], results)
    assert "RC 2 TORCH False" in out, out + err  # refused, and torch was never imported
    assert re.search(message, err, re.S), err
    assert "Traceback" not in err
    assert not results.exists() or not any(results.rglob("params.yaml"))  # no run folder
    print(out.strip())  # the measured time, for the record


def test_a_truncated_png_stops_lfakit_run_before_a_run_folder(capsys, tmp_path, monkeypatch):
    """A cut image file is named by the preflight's check of every file's two ends (no torch);
    the data are left as they were."""
    results = tmp_path / "results"
    monkeypatch.setenv("LFAKIT_RESULTS", str(results))
    root = _nih(tmp_path)
    pngs = sorted((root / "images_001" / "images").glob("*.png"))
    pngs[3].write_bytes(pngs[3].read_bytes()[:200])
    pngs[7].write_bytes(b"")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    assert cli.main(["run", EXP, "-q", "-p", f"data_dir={root}"]) == 2
    err = capsys.readouterr().err
    assert "2 of" in err and "ChestX-ray14 image files are damaged" in err
    assert f"{pngs[3].name}' is a truncated PNG" in err and f"{pngs[7].name}' is empty (0 bytes)" in err
    assert "Replace it with an intact copy" in err and "--profile smoke" in err
    assert not results.exists() or not any(results.rglob("params.yaml"))
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()} == before


def test_a_truncated_jpeg_stops_iqa_losses_before_a_run_folder(capsys, tmp_path, monkeypatch):
    from tests.test_data_koniq import write_koniq

    results = tmp_path / "results"
    monkeypatch.setenv("LFAKIT_RESULTS", str(results))
    root = write_koniq(tmp_path / "koniq", "sets")
    bad = sorted((root / "512x384").glob("*.jpg"))[5]  # a name as the release writes them (digits.jpg)
    bad.write_bytes(bad.read_bytes()[:1000])
    assert cli.main(["run", "iqa_losses", "-q", "-p", f"data_dir={root}", "-p", "image_size=[64, 64]",
                     "-p", "patch_size=32"]) == 2
    err = capsys.readouterr().err
    assert "1 of 20 KonIQ-10k images in" in err and f"{bad.name}' is a truncated JPEG" in err and "intact copy" in err
    assert not results.exists() or not any(results.rglob("params.yaml"))


def test_a_single_loss_run_with_another_baseline_says_so(capsys, fresh_results, monkeypatch):
    """Allowed (a sweep point over losses), but not without a word: the run compares nothing itself."""
    monkeypatch.setattr(runner, "preflight", lambda e, p: None)
    monkeypatch.setattr(runner, "execute", lambda e, p, rd, *a, **k: rd / "nb.ipynb")
    assert cli.main(["run", EXP, "-q", "-p", "losses=[zlpr]", "-p", "baseline=focal"]) == 0
    err = capsys.readouterr().err
    assert "baseline 'focal' is not trained in this run (losses: ['zlpr'])" in err and "lfakit compare" in err
    assert cli.main(["run", EXP, "-q", "-p", "losses=[zlpr, focal]"]) == 0
    assert "not trained" not in capsys.readouterr().err


@pytest.mark.slow
def test_resuming_a_real_finished_run_changes_nothing(capsys, fresh_results):
    """End to end with the quickest experiment (about 15 s): the record the notebook writes is
    what `--resume` reads as complete, and the folder stays exactly as it was."""
    assert cli.main(["run", "loss_atlas", "-q"]) == 0
    (run_dir,) = list((fresh_results / "loss_atlas").iterdir())
    capsys.readouterr()
    before = _snapshot(fresh_results)
    assert cli.main(["run", "loss_atlas", "--resume", run_dir.name]) == 0
    assert f"run {run_dir.name} is already complete" in capsys.readouterr().out
    assert _snapshot(fresh_results) == before
