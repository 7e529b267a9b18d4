"""`lfakit.sweep`: grid parsing, validation before any process starts, and sweeps end to end
(local pool, Dask LocalCluster, submitit's local executor) on the fast loss_atlas experiment."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil
import pytest

from lfakit import record, sweep
from lfakit.errors import ParameterError

EXP = "loss_atlas"
GRID = {"grid_size": [5, 6]}  # the smallest p_t grids loss_atlas allows: a point runs in seconds


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "results"
    monkeypatch.setenv("LFAKIT_RESULTS", str(root))
    monkeypatch.delenv(sweep.TEST_KILL_ENV, raising=False)
    return root


def _run_dirs(root: Path) -> list[str]:
    d = root / EXP
    return sorted(p.name for p in d.iterdir() if p.is_dir() and p.name != "sweeps") if d.exists() else []


def _manifest(result) -> dict:
    return json.loads((result.sweep_dir / sweep.MANIFEST).read_text())


def _check_complete(result, root: Path, n: int = 2) -> None:
    assert result.exit_code == 0, sweep.summary(result)
    m = _manifest(result)
    _check_points(m, root, EXP, n)
    assert m["points"] == result.points


def _check_points(m: dict, root: Path, exp: str, n: int) -> None:
    """A sweep manifest of ``n`` complete points, each with its own run folder under ``root``
    whose record carries the point's parameters and hash."""
    assert m["schema"] == sweep.SCHEMA and m["experiment"] == exp and m["profile"] == "smoke"
    assert [p["status"] for p in m["points"]] == ["complete"] * n, m["points"]
    dirs = [Path(p["run_dir"]) for p in m["points"]]
    assert len(set(dirs)) == n
    for p, d in zip(m["points"], dirs):
        assert d.is_dir() and d.parent == root / exp
        rec = record.load_run(d)
        assert rec.params_hash == p["params_hash"]
        assert all(rec.params[k] == v for k, v in p["overrides"].items()), (rec.params, p["overrides"])
        assert p["seconds"] > 0 and p["error"] is None


# --------------------------------------------------------------------------- grid


def test_parse_grid_splits_only_top_level_commas():
    g = sweep.parse_grid(["losses=[focal],[zlpr]", "tasks=[multilabel, multiclass],[iqa]", "grid_size=5,7",
                          "loss_kwargs={focal: {gamma: 1.0}, bce: {}},{}", 'name="a,b",c'])
    assert g == {
        "losses": [["focal"], ["zlpr"]],
        "tasks": [["multilabel", "multiclass"], ["iqa"]],
        "grid_size": [5, 7],
        "loss_kwargs": [{"focal": {"gamma": 1.0}, "bce": {}}, {}],
        "name": ["a,b", "c"],
    }
    assert list(g) == ["losses", "tasks", "grid_size", "loss_kwargs", "name"]


@pytest.mark.parametrize("item, message", [
    ("grid_size", "must look like name=value"),
    ("grid_size=5,,7", "empty value"),
    ("losses=[focal,[zlpr]", "unclosed"),
    ("losses=[focal]]", "unbalanced"),
    ("=5", "names no parameter"),
])
def test_parse_grid_rejects_malformed_items(item, message):
    with pytest.raises(ParameterError, match=message):
        sweep.parse_grid([item])


def test_parse_grid_rejects_a_name_given_twice():
    with pytest.raises(ParameterError, match="given twice"):
        sweep.parse_grid(["grid_size=5", "grid_size=7"])


def test_expand_grid_count_and_order():
    pts = sweep.expand_grid({"a": [1, 2], "b": ["x", "y", "z"]}, seeds=[0, 1])
    assert len(pts) == 2 * 3 * 2
    assert pts[:3] == [{"a": 1, "b": "x", "seed": 0}, {"a": 1, "b": "x", "seed": 1}, {"a": 1, "b": "y", "seed": 0}]
    assert pts[-1] == {"a": 2, "b": "z", "seed": 1}
    assert pts == sweep.expand_grid({"a": [1, 2], "b": ["x", "y", "z"]}, seeds=[0, 1])  # deterministic
    assert sweep.expand_grid({}, seeds=[3, 4]) == [{"seed": 3}, {"seed": 4}]
    assert sweep.expand_grid({"a": [1]}, seeds=None) == [{"a": 1}]
    with pytest.raises(ParameterError, match="both a grid parameter"):
        sweep.expand_grid({"seed": [1, 2]}, seeds=[0])


def test_point_command_round_trips_values_through_the_cli():
    ov = {"table_pt": [0.05, 1e-06], "loss_kwargs": {"focal": {"gamma": 1.0}}, "losses": ["focal"], "seed": 3,
          "interactive": False}
    cmd = sweep.point_command(EXP, "smoke", ov)
    assert cmd[1:6] == ["-m", "lfakit.cli", "run", EXP, "--profile"] and cmd[-1] == "-q"
    from lfakit import cli

    ns = cli.build_parser().parse_args(cmd[3:])
    assert ns.experiment == EXP and ns.profile == "smoke" and ns.quiet
    assert cli._overrides(ns.param) == ov


def test_run_dir_is_read_from_the_last_line():
    out = "something\nloss_atlas: done in 3 s -> /r/loss_atlas/20260101-000000-smoke\n"
    assert sweep._run_dir_from(out) == "/r/loss_atlas/20260101-000000-smoke"
    assert sweep._run_dir_from("loss_atlas: done in 3 s -> /x\nthen more\n") is None
    assert sweep._run_dir_from("") is None


def test_a_failed_runs_folder_is_read_from_stderr(tmp_path):
    run = tmp_path / "20260101-000000-smoke"
    run.mkdir()
    err = f"lfakit: x failed: cell 3 failed: E: boom\nThe partly executed notebook is kept at {run}/notebook.ipynb\n"
    assert sweep._failed_run_dir(err) == str(run)
    assert sweep._failed_run_dir(f"lfakit: x interrupted; its run folder is {run}\n") == str(run)
    assert sweep._failed_run_dir(f"lfakit: x interrupted; its run folder is {tmp_path / 'gone'}\n") is None
    assert sweep._failed_run_dir("lfakit: error: bad\n") is None


# --------------------------------------------------------------------------- validation first


@pytest.fixture
def no_processes(monkeypatch):
    started = []

    def popen(*a, **kw):
        started.append(a)
        raise AssertionError("a process was started")

    monkeypatch.setattr(sweep.subprocess, "Popen", popen)
    return started


@pytest.mark.parametrize("grid, seeds, message", [
    ({"grid_size": [5, 3]}, [0], r"point 1 \(grid_size=3 seed=0\).*'grid_size' must be >= 5"),
    ({"grid_sise": [5]}, [0], "unknown parameter 'grid_sise'.*Did you mean: 'grid_size'"),
    ({"losses": [["focal"], ["focl"]]}, [0], r"point 1.*'focl' is not allowed.*'focal'"),
    ({"setwise_positives": [1, 20]}, [0], r"point 1.*setwise_positives \(20\) must be at most"),
    ({"grid_size": [5]}, [0, -1], r"point 1.*'seed' must be >= 0"),
    ({"grid_size": [5, 5.0]}, [0], "points 0 and 1.*resolve to the same parameters"),
    ({"run_dir": ["/x"]}, [0], "set by the runner"),
    ({"grid_size": [5]}, [0, 0], "seed twice"),
])
def test_bad_points_fail_before_any_process_starts(grid, seeds, message, results, no_processes):
    with pytest.raises(ParameterError, match=message):
        sweep.run_sweep(EXP, grid=grid, seeds=seeds, workers=2, progress=False)
    assert no_processes == []
    assert not results.exists()  # no results root, no sweep folder


def test_bad_executor_options_fail_early(results, no_processes):
    with pytest.raises(ParameterError, match="unknown executor"):
        sweep.run_sweep(EXP, grid=GRID, executor="ray", progress=False)
    with pytest.raises(ParameterError, match="workers"):
        sweep.run_sweep(EXP, grid=GRID, workers=0, progress=False)
    with pytest.raises(ParameterError, match="no profile 'smok'"):
        sweep.run_sweep(EXP, profile="smok", grid=GRID, progress=False)
    with pytest.raises(ParameterError, match="unknown slurm option"):
        sweep._slurm_parameters(EXP, {"partiton": "gpu"}, None, 1)
    assert no_processes == []


def test_slurm_parameters():
    p = sweep._slurm_parameters(EXP, {"partition": "gpu", "gpus": 1, "slurm_account": "lab"}, 600, 4)
    assert p["slurm_partition"] == "gpu" and p["gpus_per_node"] == 1 and p["slurm_account"] == "lab"
    assert p["timeout_min"] == 15 and p["slurm_array_parallelism"] == 4
    assert sweep._slurm_parameters(EXP, {"time_min": 90}, None, 1)["timeout_min"] == 90
    assert sweep._slurm_parameters(EXP, {}, None, 1)["timeout_min"] == 60


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_local_sweep_completes_then_skips(results, tmp_path, monkeypatch):
    r = sweep.run_sweep(EXP, "smoke", grid=GRID, seeds=[0], workers=2, progress=False)
    assert r.sweep_dir.parent == results / EXP / "sweeps"
    _check_complete(r, results)
    made = _run_dirs(results)
    assert len(made) == 2
    log = (r.sweep_dir / "logs" / "point-0.log").read_text()
    assert "lfakit.cli run loss_atlas --profile smoke -p grid_size=5 -p seed=0 -q" in log
    text = sweep.summary(r)
    assert text.count("complete") >= 2 and "2 points: 2 complete" in text

    again = sweep.run_sweep(EXP, "smoke", grid=GRID, seeds=[0], workers=2, progress=False)
    assert again.sweep_dir == r.sweep_dir  # the same sweep, the same folder
    assert [p["status"] for p in again.points] == ["skipped", "skipped"]
    assert [p["run_dir"] for p in again.points] == [p["run_dir"] for p in r.points]
    assert _run_dirs(results) == made  # nothing new ran
    assert again.exit_code == 0 and "2 skipped" in sweep.summary(again)
    assert [p["status"] for p in _manifest(again)["points"]] == ["skipped", "skipped"]

    # the sweep's own manifest is searched too: runs outside the (new) results root are reused
    other = tmp_path / "other-results"
    monkeypatch.setenv("LFAKIT_RESULTS", str(other))
    moved = sweep.run_sweep(EXP, "smoke", grid=GRID, seeds=[0], out=r.sweep_dir, progress=False)
    assert [p["status"] for p in moved.points] == ["skipped", "skipped"]
    assert [p["run_dir"] for p in moved.points] == [p["run_dir"] for p in r.points]
    assert not (other / EXP).exists() or _run_dirs(other) == []

    # another sweep in the same folder is refused
    with pytest.raises(Exception, match="belongs to another sweep"):
        sweep.run_sweep(EXP, "smoke", grid={"grid_size": [7]}, out=r.sweep_dir, progress=False)


@pytest.mark.slow
def test_failed_points_are_recorded_and_the_others_go_on(results, monkeypatch):
    monkeypatch.setenv(sweep.TEST_KILL_ENV, "2")  # point 2's process is killed right after it starts
    grid = {"grid_size": [5], "loss_kwargs": [{}, {"focal": {"gama": 1.0}}, {"focal": {"gamma": 2.0}}]}
    r = sweep.run_sweep(EXP, "smoke", grid=grid, seeds=[0], workers=2, progress=False)
    assert r.exit_code == 1
    by = {p["index"]: p for p in _manifest(r)["points"]}
    assert by[0]["status"] == "complete" and Path(by[0]["run_dir"]).is_dir()
    # passes the schema, fails in the run's preflight (building the loss): exit status 2 and its message
    assert by[1]["status"] == "failed" and by[1]["run_dir"] is None
    assert "exit status 2" in by[1]["error"] and "gama" in by[1]["error"]
    assert by[2]["status"] == "failed" and "killed by SIGKILL" in by[2]["error"]
    assert [p["index"] for p in r.failed] == [1, 2]
    text = sweep.summary(r)
    assert "1 complete, 2 failed" in text and "killed by SIGKILL" in text


def test_a_point_past_its_timeout_is_failed(results):
    out = sweep.run_point(EXP, "smoke", {"grid_size": 5}, results, timeout=0.5)
    assert out["status"] == "failed" and "timed out after 0.5 s" in out["error"]
    assert out["returncode"] != 0 and out["run_dir"] is None


def _gone(pid: int, wait_s: float = 10.0) -> bool:
    """Whether process ``pid`` has ended (a zombie not yet reaped by its new parent counts)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def _fake_point(monkeypatch, tmp_path, *, parent_on_sigint: str, child_pipes: str, parent_end: str,
                daemon: bool = False):
    """Make run_point start a fake point: a parent process that starts a child which ignores
    SIGINT and sleeps 120 s (``child_pipes``: "inherit" keeps the point's pipes, "devnull" not;
    ``daemon``: started by a double fork, so it is not among the parent's children), writes the
    child's pid, prints ``started`` and then runs ``parent_end``. Returns the pid file."""
    pid_file = tmp_path / "child.pid"
    child = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(120)"
    pipes = "" if child_pipes == "inherit" else ", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL"
    if daemon:
        start = (f"pid = os.fork()\nif pid == 0:\n    c = subprocess.Popen([sys.executable, '-c', {child!r}]{pipes})\n"
                 f"    open({str(pid_file)!r}, 'w').write(str(c.pid))\n    os._exit(0)\nos.waitpid(pid, 0)\n"
                 f"while not os.path.exists({str(pid_file)!r}): time.sleep(0.01)\n")
    else:
        start = (f"c = subprocess.Popen([sys.executable, '-c', {child!r}]{pipes})\n"
                 f"open({str(pid_file)!r}, 'w').write(str(c.pid))\n")
    parent = (f"import os, signal, subprocess, sys, time\nsignal.signal(signal.SIGINT, signal.{parent_on_sigint})\n"
              f"{start}print('started', flush=True)\n{parent_end}\n")
    monkeypatch.setattr(sweep, "point_command", lambda *a, **k: [sys.executable, "-c", parent])
    monkeypatch.setattr(sweep, "_KILL_GRACE_S", 1)
    monkeypatch.setattr(sweep, "_POLL_S", 0.2)
    return pid_file


def test_a_timed_out_point_that_ignores_ctrl_c_is_killed_with_what_it_started(results, tmp_path, monkeypatch):
    """A point whose process ignores SIGINT and whose child (a kernel, say) holds its output
    pipes: after the grace period both are killed and the point is failed, instead of waiting
    on the pipes for as long as the child lives."""
    pid_file = _fake_point(monkeypatch, tmp_path, parent_on_sigint="SIG_IGN", child_pipes="inherit",
                           parent_end="time.sleep(120)")
    t0 = time.monotonic()
    out = sweep.run_point(EXP, "smoke", {}, results, timeout=2)
    assert time.monotonic() - t0 < 60  # not the 120 s the child would have held the pipes
    assert out["status"] == "failed" and out["error"].startswith("timed out after 2 s")
    assert _gone(int(pid_file.read_text()))


def test_a_point_that_stops_on_ctrl_c_does_not_leave_its_kernel_running(results, tmp_path, monkeypatch):
    pid_file = _fake_point(monkeypatch, tmp_path, parent_on_sigint="default_int_handler", child_pipes="devnull",
                           parent_end="time.sleep(120)")
    out = sweep.run_point(EXP, "smoke", {}, results, timeout=2)
    assert out["status"] == "failed" and out["error"].startswith("timed out after 2 s")
    assert out["returncode"] != 0 and "KeyboardInterrupt" in out["error"]  # it stopped on SIGINT, its stderr kept
    assert _gone(int(pid_file.read_text()))


def test_a_point_that_dies_while_its_child_holds_the_pipes_is_failed_without_a_timeout(results, tmp_path,
                                                                                        monkeypatch):
    """The point's process crashes (exit 3) one second in; its child keeps the pipes open. With
    no timeout the sweep still notices, kills the child after the grace period and keeps the
    output."""
    pid_file = _fake_point(monkeypatch, tmp_path, parent_on_sigint="SIG_IGN", child_pipes="inherit",
                           parent_end="time.sleep(1); sys.stderr.write('boom\\n'); sys.stderr.flush(); os._exit(3)")
    t0 = time.monotonic()
    out = sweep.run_point(EXP, "smoke", {}, results, timeout=None)
    assert time.monotonic() - t0 < 60
    assert out["status"] == "failed" and out["error"].startswith("exit status 3") and "boom" in out["error"]
    assert _gone(int(pid_file.read_text()))


def test_output_read_before_a_stray_process_keeps_the_pipes_is_not_lost(results, tmp_path, monkeypatch):
    """A process outside the point's tree (a double-forked daemon) holds the pipes after SIGKILL:
    they are closed after the grace period, and what was read until then is kept."""
    pid_file = _fake_point(monkeypatch, tmp_path, parent_on_sigint="SIG_IGN", child_pipes="inherit",
                           parent_end="time.sleep(120)", daemon=True)
    try:
        t0 = time.monotonic()
        log = tmp_path / "point.log"
        out = sweep.run_point(EXP, "smoke", {}, results, timeout=1, log_file=log)
        assert time.monotonic() - t0 < 60
        assert out["status"] == "failed" and out["error"].startswith("timed out after 1 s")
        assert "the rest of its output was lost" in out["error"]
        assert "--- stdout\nstarted" in log.read_text()  # read before the pipes were closed
    finally:
        try:
            psutil.Process(int(pid_file.read_text())).kill()
        except (psutil.Error, OSError, ValueError):
            pass


@pytest.mark.slow
def test_lfakit_sweep_command_on_dask_then_skips_what_is_done(tmp_path):
    """`lfakit sweep` through the CLI: a Dask LocalCluster with 2 workers, then the same sweep
    again, which runs nothing new."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LFAKIT_RESULTS": str(tmp_path)}
    cmd = [sys.executable, "-m", "lfakit.cli", "sweep", "loss_atlas", "--grid", "grid_size=5,7", "--seeds", "0",
           "--executor", "dask", "--workers", "2", "-q"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "loss_atlas").iterdir() if p.name != "sweeps")
    assert len(runs) == 2 and "complete" in first.stdout
    sweep_dir = Path(first.stdout.strip().splitlines()[-1].split("sweep folder ")[-1])
    m = json.loads((sweep_dir / sweep.MANIFEST).read_text())
    assert m["executor"] == "dask"
    _check_points(m, tmp_path, "loss_atlas", 2)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "loss_atlas").iterdir() if p.name != "sweeps") == runs
    assert "skipped" in again.stdout


@pytest.mark.slow
def test_the_chestxray_sweep_through_submitit_then_compare(tmp_path):
    """The issue's sweep (chestxray_zlpr, losses [focal] and [zlpr], seeds 0 and 1), shortened to
    2 epochs, through submitit's local executor; then `lfakit compare` on its folder prints the
    table with intervals and Holm-corrected p-values over the 2 seeds."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LFAKIT_RESULTS": str(tmp_path)}
    cmd = [sys.executable, "-m", "lfakit.cli", "sweep", "chestxray_zlpr", "--grid", "losses=[focal],[zlpr]",
           "--grid", "epochs=2", "--seeds", "0,1", "--executor", "slurm", "--cluster", "local", "--workers", "2", "-q"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "4 points: 4 complete" in out.stdout
    sweep_dir = Path(out.stdout.strip().splitlines()[-1].split("sweep folder ")[-1])
    assert (sweep_dir / "submitit").is_dir()
    m = json.loads((sweep_dir / sweep.MANIFEST).read_text())
    assert m["executor"] == "slurm"
    _check_points(m, tmp_path, "chestxray_zlpr", 4)
    cmp = subprocess.run([sys.executable, "-m", "lfakit.cli", "compare", str(sweep_dir), "--n-boot", "300"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert cmp.returncode == 0, cmp.stderr[-3000:]
    lines = cmp.stdout.splitlines()
    zlpr = next(line for line in lines if line.startswith("| zlpr"))
    cells = [c.strip() for c in zlpr.strip("|").split("|")]
    assert cells[1] == "2" and cells[4].startswith("[") and cells[7] in ("zlpr", "focal", "tie (n.s.)")  # seeds, CI
    assert "95% CI" in cmp.stdout and "p (Holm)" in cmp.stdout
    assert "2 seed(s) per method (seeds 0, 1)" in cmp.stdout
    doc = json.loads((sweep_dir / "comparison" / "auroc-vs-focal" / "comparison.json").read_text())
    assert len(doc["runs"]) == 4 and doc["baseline"] == "focal"
