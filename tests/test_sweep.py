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

    # a run damaged since (a table cut short, its manifest no longer holds): its point runs again
    monkeypatch.setenv("LFAKIT_RESULTS", str(results))
    table = sorted(Path(r.points[0]["run_dir"]).glob("tables/*.csv"))[0]
    table.write_text(table.read_text()[:10])
    third = sweep.run_sweep(EXP, "smoke", grid=GRID, seeds=[0], workers=2, progress=False)
    assert [p["status"] for p in third.points] == ["complete", "skipped"]
    assert third.points[0]["run_dir"] != r.points[0]["run_dir"] and third.points[1]["run_dir"] == r.points[1]["run_dir"]

    # another sweep in the same folder is refused
    with pytest.raises(Exception, match="belongs to another sweep"):
        sweep.run_sweep(EXP, "smoke", grid={"grid_size": [7]}, out=r.sweep_dir, progress=False)


@pytest.mark.slow
def test_failed_points_are_recorded_and_the_others_go_on(results, monkeypatch):
    monkeypatch.setenv(sweep.TEST_KILL_ENV, "2")  # point 2's process is killed right after it starts
    real = sweep.point_command
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('lfakit: error: no gama here\\n'); sys.exit(2)"]
    # point 1's process fails as `lfakit run` does on an error it finds itself (exit status 2, one line)
    monkeypatch.setattr(sweep, "point_command",
                        lambda exp, prof, ov, python=None: failing if ov["grid_size"] == 6 else real(exp, prof, ov))
    grid = {"grid_size": [5, 6, 7]}
    r = sweep.run_sweep(EXP, "smoke", grid=grid, seeds=[0], workers=2, progress=False)
    assert r.exit_code == 1
    by = {p["index"]: p for p in _manifest(r)["points"]}
    assert by[0]["status"] == "complete" and Path(by[0]["run_dir"]).is_dir()
    assert by[1]["status"] == "failed" and by[1]["run_dir"] is None
    assert "exit status 2" in by[1]["error"] and "no gama here" in by[1]["error"]
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
    head = [c.strip() for c in next(line for line in lines if line.startswith("| Method")).strip("|").split("|")]
    zlpr = dict(zip(head, (c.strip() for c in next(line for line in lines if line.startswith("| zlpr")).strip("|").split("|"))))
    assert zlpr["Seeds"] == "2" and zlpr["95% CI"].startswith("[")
    assert zlpr["Test"].startswith("seeds (t, df ") and zlpr["Winner"] in ("zlpr", "focal", "tie (n.s.)")
    assert "95% CI" in cmp.stdout and "p (Holm)" in cmp.stdout
    assert "2 seed(s) per method (seeds 0, 1)" in cmp.stdout
    doc = json.loads((sweep_dir / "comparison" / "auroc-vs-focal" / "comparison.json").read_text())
    assert len(doc["runs"]) == 4 and doc["baseline"] == "focal"


# --------------------------------------------------------------------------- executors fail loudly, before anything


def _tree(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root`` with its size, mtime and content: what a failed
    sweep must leave as it was."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_mtime_ns, None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def earlier(results) -> dict[str, tuple]:
    """A results root that already holds a run folder and another sweep: their snapshot."""
    run = results / EXP / "20260101-000000-smoke"
    run.mkdir(parents=True)
    (run / record.METRICS).write_text(json.dumps({"params_hash": "0" * 16}))
    (run / "manifest.json").write_text("{}")
    other = results / EXP / "sweeps" / "smoke-000000000000"
    other.mkdir(parents=True)
    (other / sweep.MANIFEST).write_text(json.dumps({"schema": sweep.SCHEMA, "points": []}))
    return _tree(results)


def _sweep_folders(root: Path) -> list[str]:
    d = root / EXP / "sweeps"
    return sorted(p.name for p in d.iterdir() if p.name != sweep.LOCKS) if d.exists() else []


def _closed_port() -> int:
    """A local TCP port nobody listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_checks(cases: list[list[str]], root: Path, path_env: str | None = None) -> list[dict]:
    """Run ``cli.main(["sweep", EXP, *args])`` for each case in one fresh interpreter (no torch
    loaded by anyone else): its exit status, stderr, seconds inside main, and whether torch
    was imported by then."""
    import os
    import subprocess

    script = (
        "import contextlib, io, json, sys, time\n"
        "from lfakit import cli\n"
        "out = []\n"
        f"for args in {cases!r}:\n"
        "    err = io.StringIO()\n"
        "    t0 = time.perf_counter()\n"
        "    with contextlib.redirect_stderr(err):\n"
        f"        rc = cli.main(['sweep', {EXP!r}, *args, '-q'])\n"
        "    out.append({'rc': rc, 'stderr': err.getvalue(), 'seconds': time.perf_counter() - t0,\n"
        "                'torch': 'torch' in sys.modules})\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "LFAKIT_RESULTS": str(root)}
    if path_env is not None:
        env["PATH"] = path_env
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bad_executor_settings_fail_fast_with_the_fix_and_leave_nothing(results, earlier, tmp_path):
    """Each misconfigured executor or --out through the CLI: exit status 2, one `lfakit: error:`
    line naming the problem and the way on, within 2 s, before torch is imported, and no sweep
    folder made; what the results folder held is untouched."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    no_sbatch = tmp_path / "empty-bin"
    no_sbatch.mkdir()
    cases = [
        (["--executor", "dask", "--scheduler-address", "foo"],
         ["'foo' is not a Dask scheduler address", "missing port", "tcp://host:port", "drop --scheduler-address"]),
        (["--executor", "dask", "--scheduler-address", "http://x:8786"],
         ["unknown scheme 'http://'", "tcp://", "drop --scheduler-address"]),
        (["--executor", "dask", "--scheduler-address", "tcp://:8786"], ["'' is not a host name"]),
        (["--executor", "dask", "--scheduler-address", "tcp://h:99999"], ["port 99999 is not in 1-65535"]),
        (["--executor", "slurm", "--cluster", "foo"], ["unknown --cluster 'foo'", "slurm, local, debug"]),
        (["--executor", "slurm", "--cluster", "locl"], ["Did you mean: 'local'"]),
        (["--executor", "slurm"], ["`sbatch` is not on PATH", "--cluster local", "--executor local"]),
        (["--cluster", "local"], ["for --executor slurm", "drop --cluster"]),
        (["--executor", "local", "--scheduler-address", "tcp://h:1"], ["for the dask executor"]),
        (["--out", str(a_file)], [f"--out {a_file} is a file, not a folder", "leave --out out"]),
        (["--out", str(a_file / "sweep")], [f"{a_file} is a file, so no folder can be made there"]),
        (["--executor", "dask", "--connect-timeout", "0"], ["connect timeout must be a positive number"]),
    ]
    got = _cli_checks([["-g", "grid_size=5", *args] for args, _ in cases], results, path_env=str(no_sbatch))
    for (args, wants), out in zip(cases, got):
        assert out["rc"] == 2, (args, out)
        lines = out["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lfakit: error: "), (args, out["stderr"])
        for want in wants:
            assert want in lines[0], (args, want, lines[0])
        assert out["seconds"] < 2.0, (args, out["seconds"])
        assert not out["torch"], args
    assert _sweep_folders(results) == ["smoke-000000000000"]
    assert _tree(results) == earlier
    assert a_file.read_text() == "mine" and not (a_file.parent / "sweep").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-bin", "notes.txt", "results"]  # no probe left


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no folder can be made")
def test_an_out_where_no_folder_can_be_made_is_refused(results, no_processes):
    with pytest.raises(ParameterError, match="--out /proc/lfakit-sweep: cannot make a folder in /proc"):
        sweep.run_sweep(EXP, grid=GRID, out="/proc/lfakit-sweep", progress=False)
    assert not results.exists() and no_processes == []


def test_an_unreachable_dask_scheduler_fails_in_seconds_without_a_sweep_folder(results, earlier):
    """`lfakit sweep --executor dask --scheduler-address` at a closed port: the CLI names the
    address and how to start a scheduler or use a LocalCluster, within the connect timeout (not
    distributed's 30 s), and makes no sweep folder."""
    import os
    import subprocess

    address = f"tcp://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "lfakit.cli", "sweep", EXP, "-g", "grid_size=5", "--executor", "dask",
                          "--scheduler-address", address, "--connect-timeout", "1", "-q"],
                         capture_output=True, text=True, env={**os.environ, "LFAKIT_RESULTS": str(results)}, timeout=60)
    assert time.monotonic() - t0 < 20
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith(f"lfakit: error: cannot reach a Dask scheduler at {address} (Timed out"), out.stderr
    assert "after 1 s" in out.stderr
    assert "`dask scheduler`" in out.stderr and "drop --scheduler-address" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert _sweep_folders(results) == ["smoke-000000000000"]
    assert _tree(results) == earlier


def test_a_dask_scheduler_without_workers_is_refused(results):
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        with pytest.raises(sweep.ExecutorUnavailable, match=f"scheduler at {cluster.scheduler_address} has no workers"
                                                            r".*dask worker"):
            sweep.run_sweep(EXP, grid=GRID, executor="dask", scheduler_address=cluster.scheduler_address,
                            connect_timeout=0.5, progress=False)
    assert not results.exists()  # no point ran, no sweep folder


@pytest.mark.slow
def test_a_sweep_on_a_running_scheduler_uses_it(results):
    """--scheduler-address of a live scheduler with a worker: the address is checked, the
    scheduler probed, and the point runs on that worker."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        r = sweep.run_sweep(EXP, grid={"grid_size": [5]}, seeds=[0], executor="dask",
                            scheduler_address=address.removeprefix("tcp://"), connect_timeout=5, progress=False)
    assert r.exit_code == 0, sweep.summary(r)
    _check_points(_manifest(r), results, EXP, 1)


def test_slurm_needs_sbatch_unless_another_cluster_is_asked_for(results, tmp_path, monkeypatch, no_processes):
    """No `sbatch`: the slurm executor refuses (submitit alone would run the points locally);
    with `sbatch` on PATH Slurm is chosen explicitly; `local` and `debug` need no Slurm."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(sweep.ExecutorUnavailable, match="`sbatch` is not on PATH"):
        sweep.run_sweep(EXP, grid=GRID, executor="slurm", progress=False)
    with pytest.raises(sweep.ExecutorUnavailable, match="`sbatch` is not on PATH"):
        sweep.check_cluster("slurm")
    assert sweep.check_cluster("local") == "local" and sweep.check_cluster("debug") == "debug"
    fake = tmp_path / "slurm-bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (fake / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    assert sweep.check_cluster(None) == "slurm"
    assert not results.exists() and no_processes == []


# --------------------------------------------------------------------------- killing a sweep, re-running it


def _lock_path(root: Path, h: str) -> Path:
    return root / EXP / "sweeps" / sweep.LOCKS / f"{h}.lock"


def _fake_complete_run(root: Path, h: str) -> Path:
    run = root / EXP / "20260102-000000-smoke"
    run.mkdir(parents=True)
    (run / record.METRICS).write_text(json.dumps({"params_hash": h}))
    record.write_manifest(run)
    return run


def test_a_point_whose_earlier_attempt_still_runs_is_not_started_again(results, monkeypatch, no_processes):
    """While another process holds the point's lock (an earlier attempt's `lfakit run`), the
    point waits, then fails without starting a process; once the lock is free and that attempt
    left a complete run, the point is skipped with that run."""
    import fcntl

    monkeypatch.setattr(sweep, "_LOCK_WAIT_S", 0.3)
    h = "ab" * 8
    lock = _lock_path(results, h)
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        held.write("pid 4242 on elsewhere\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        out = sweep.run_point(EXP, "smoke", {"grid_size": 5}, results, params_hash=h)
        assert out["status"] == "failed" and "another process still runs this point" in out["error"]
        assert "pid 4242 on elsewhere" in out["error"] and no_processes == []
        run = _fake_complete_run(results, h)  # that attempt finishes
    out = sweep.run_point(EXP, "smoke", {"grid_size": 5}, results, params_hash=h)
    assert out["status"] == "skipped" and out["run_dir"] == str(run) and no_processes == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads the point's open files from /proc")
def test_the_points_process_holds_its_lock_and_knows_its_parent(results, monkeypatch):
    """The lock is handed to the point's process (so it stays held if the sweep dies), and the
    process is told the pid of the process that started it (for its watchdog)."""
    import os

    h = "cd" * 8
    lock = _lock_path(results, h)
    check = ("import os, sys\nfds = []\nfor f in os.listdir('/proc/self/fd'):\n    try:\n"
             "        fds.append(os.readlink('/proc/self/fd/' + f))\n    except OSError:\n        pass\n"
             f"sys.exit((0 if {str(lock)!r} in fds else 7) + (0 if os.environ.get({sweep.PARENT_ENV!r}) == "
             f"str(os.getppid()) == {str(os.getpid())!r} else 9))\n")
    monkeypatch.setattr(sweep, "point_command", lambda *a, **k: [sys.executable, "-c", check])
    out = sweep.run_point(EXP, "smoke", {}, results, params_hash=h)
    assert out["returncode"] == 0, out
    import fcntl

    with open(lock) as f:  # released once the point has ended
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _watched_chain(tmp_path: Path, *, with_env: bool) -> tuple[Path, object]:
    """A stand-in sweep process that starts a stand-in `lfakit run` (which calls
    runner._die_with_sweep, with LFAKIT_SWEEP_PARENT set when ``with_env``), which starts a
    stand-in kernel in a session of its own (as jupyter_client does). Returns the file the pids
    are written to, and the stand-in sweep's Popen."""
    import os
    import subprocess

    pids = tmp_path / "pids.json"
    kernel = "import time; time.sleep(120)"
    run = (
        "import json, subprocess, sys, time\n"
        "from lfakit import runner\n"
        "runner._die_with_sweep()\n"
        f"k = subprocess.Popen([sys.executable, '-c', {kernel!r}], start_new_session=True)\n"
        f"open({str(pids)!r} + '.tmp', 'w').write(json.dumps([__import__('os').getpid(), k.pid]))\n"
        f"__import__('os').replace({str(pids)!r} + '.tmp', {str(pids)!r})\n"
        "time.sleep(120)\n"
    )
    env_line = f"env[{sweep.PARENT_ENV!r}] = str(os.getpid())\n" if with_env else ""
    parent = (
        "import os, subprocess, sys, time\n"
        f"env = dict(os.environ)\n{env_line}"
        f"subprocess.Popen([sys.executable, '-c', {run!r}], env=env)\n"
        "time.sleep(120)\n"
    )
    root = str(Path(sweep.__file__).resolve().parents[1])
    proc = subprocess.Popen([sys.executable, "-c", parent], env={**os.environ, "PYTHONPATH": root})
    deadline = time.monotonic() + 60
    while not pids.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids, proc


def _kill_pids(pids) -> None:
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


@pytest.mark.parametrize("with_env", [True, False])
def test_a_points_run_dies_with_its_parent_and_takes_its_kernel(tmp_path, with_env):
    """SIGKILL of the process that started a point's `lfakit run` ends that run and its kernel
    (in a session of its own) within a second or so; without LFAKIT_SWEEP_PARENT (a plain
    `lfakit run`) the run outlives its parent, as before."""
    pids_file, parent = _watched_chain(tmp_path, with_env=with_env)
    pids = []
    try:
        pids = json.loads(pids_file.read_text())
        assert all(_alive(p) for p in pids)
        parent.kill()
        parent.wait()
        if with_env:
            assert all(_gone(p, wait_s=5) for p in pids)
        else:
            time.sleep(1.0)  # several watchdog periods: nothing may happen
            assert all(_alive(p) for p in pids)
    finally:
        parent.kill()
        parent.wait()
        _kill_pids(pids)


def test_a_points_run_whose_parent_died_before_it_started_watching_ends_at_once(tmp_path):
    """The sweep killed while its point's `lfakit run` was still starting: once the run finds
    that LFAKIT_SWEEP_PARENT names a process that is gone, it ends (SIGKILL) instead of running
    the point as an orphan; a variable naming a live process that is not its parent is ignored."""
    import os
    import subprocess

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        code = "from lfakit import runner; runner._die_with_sweep(); print('went on')"
        root = str(Path(sweep.__file__).resolve().parents[1])
        for pid, rc, said in ((dead.pid, -9, ""), (other.pid, 0, "went on\n")):
            env = {**os.environ, "PYTHONPATH": root, sweep.PARENT_ENV: str(pid)}
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
            assert (out.returncode, out.stdout) == (rc, said), (pid, out)
    finally:
        other.kill()
        other.wait()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _complete_runs_of(root: Path, h: str) -> list[Path]:
    """Every complete run folder of hash ``h`` under ``root/EXP`` (all of them, not the newest)."""
    return [m.parent for m in sorted((root / EXP).glob(f"*/{record.METRICS}"))
            if sweep.complete_run(m.parent, h)]


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "dask"])
def test_sigkill_of_a_sweep_ends_its_point_and_a_rerun_makes_one_complete_run(results, executor):
    """`lfakit sweep` SIGKILLed while its point's notebook runs: within seconds neither the
    point's `lfakit run` nor its kernel (nor, on a Dask LocalCluster, its worker) is alive, and
    the killed run is not complete. Re-running the sweep then gives exactly one complete run of
    the point, and `compare` over the experiment folder counts one."""
    import os
    import subprocess

    from lfakit import compare

    env = {**os.environ, "LFAKIT_RESULTS": str(results)}
    cmd = [sys.executable, "-m", "lfakit.cli", "sweep", EXP, "-g", "grid_size=5", "--seeds", "0", "--executor",
           executor, "-q"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tree: list = []
    try:
        me = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("ipykernel" in " ".join(_cmdline(p)) for p in tree):
            time.sleep(0.1)
            tree = me.children(recursive=True) if proc.poll() is None else []
            assert proc.poll() is None, "the sweep ended before its kernel was seen"
        kinds = [" ".join(_cmdline(p)) for p in tree]
        assert any("lfakit.cli run" in c for c in kinds) and any("ipykernel" in c for c in kinds), kinds
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        assert all(_gone(p.pid, wait_s=5) for p in tree), [(p.pid, _cmdline(p)) for p in tree if _alive(p.pid)]
        assert time.monotonic() - t0 < 5
    finally:
        proc.kill()
        proc.wait()
        _kill_pids([p.pid for p in tree])
    m = json.loads(next((results / EXP / "sweeps").glob(f"*/{sweep.MANIFEST}")).read_text())
    h = m["points"][0]["params_hash"]
    assert m["points"][0]["status"] == ("running" if executor == "local" else "pending")  # dask notes no start
    killed = [d for d in (results / EXP).iterdir() if (d / "params.yaml").exists()]
    assert len(killed) == 1 and _complete_runs_of(results, h) == []

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 points: 1 complete" in again.stdout
    runs = _complete_runs_of(results, h)
    assert len(runs) == 1 and runs[0] != killed[0]
    assert compare.find_runs(results / EXP).run_dirs == runs


def _cmdline(p) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []
