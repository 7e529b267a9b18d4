"""Sweeps: one experiment run many times, over a grid of parameter values and seeds.

A sweep is a set of *points*. Each point is one ordinary run, ``lfakit run <experiment>
--profile P -p name=value ...``, executed as its own process, which leaves an ordinary run
folder ``results/<experiment>/<run-id>/``. The points are the cartesian product of the grid's
values (the first parameter varies slowest) times the seeds (innermost)::

    run_sweep("loss_atlas", grid={"grid_size": [5, 7]}, seeds=[0, 1], workers=2)
    # 4 points: (5, seed 0), (5, seed 1), (7, seed 0), (7, seed 1)

On the command line a grid item is ``name=v1,v2,...`` (:func:`parse_grid`); every value is
read as YAML, as a ``-p`` value is, and the item is split only at top-level commas, so a list
value needs brackets: ``losses=[focal],[zlpr]`` is two points (``[focal]`` and ``[zlpr]``) and
``'losses=[focal, zlpr],[bce]'`` is two points too. Quote such items in the shell.

Checks before anything runs
    Every point is resolved (schema defaults, the profile, the point's overrides) and validated
    with the experiment's own schema first (:func:`lfakit.runner.resolve_params`): an unknown
    name or a bad value stops the sweep with a ParameterError before any process starts. Two
    points that resolve to the same parameters, a grid over ``seed`` together with seeds, and
    the runner's own ``run_dir``/``resume`` are refused too. What an experiment's *preflight*
    checks (its data on disk, pretrained weights, a CUDA device, loss arguments) is checked by
    each point's own process: such an error fails every point, each with the message.

    The executor is checked before the sweep folder is made, too, and a failure says what is
    missing and the way on (``lfakit: error: ...``, exit status 2): a ``scheduler_address``
    that distributed's own address parser does not read as ``<scheme>://host:port``, a Dask
    scheduler that does not answer (or has no worker) within ``connect_timeout`` seconds
    (``--connect-timeout``, default 10: not distributed's 30 s), ``--executor slurm`` where
    ``sbatch`` is not on PATH, a ``cluster`` submitit does not know, a ``cluster`` without the
    slurm executor, an ``out`` that is a file or where no folder can be made. A bad address,
    cluster name or ``out`` is a ParameterError; an executor that cannot be reached (no answer,
    no worker, no ``sbatch``) is :class:`ExecutorUnavailable`. None of these checks imports
    torch.

The sweep folder
    ``results/<experiment>/sweeps/<sweep-id>/`` (or ``out``), where the sweep id is
    ``<profile>-<12 hex digits>`` made from the experiment, profile, grid and seeds: the same
    sweep always lands in the same folder. It holds ``sweep.json`` (schema ``lfakit.sweep/1``):
    ``experiment``, ``profile``, ``grid``, ``seeds``, ``executor``, ``workers``, ``updated`` and
    ``points``, one entry per point with ``index``, ``overrides``, ``params_hash`` (the
    :func:`lfakit.record.params_hash` of the point's resolved parameters, the same hash the
    run's ``metrics.json`` carries), ``status`` (``pending``, ``running``, ``complete``,
    ``failed`` or ``skipped``), ``run_dir`` (for a failed point, the folder its run left, if
    it got that far: the partly executed notebook is there), ``error`` (for a failed point, why,
    and the tail of its process's stderr) and ``seconds``. It is rewritten atomically (a temporary file, then a rename) as points start and
    after each point finishes, so it can be read while the sweep runs. ``logs/point-<i>.log``
    holds each point's command, exit status, stdout and stderr.

What is done is skipped
    Before running, each point looks for a complete run of the same experiment with the same
    parameters: a run folder under ``results/<experiment>/`` (or a run folder named in the
    sweep folder's earlier ``sweep.json``) whose ``metrics.json`` has the point's
    ``params_hash``, that has its ``manifest.json`` (written last) and whose executed notebook
    is not marked as failed. Such a point is ``skipped`` and reuses that run folder, whoever
    made it (an earlier sweep or a plain ``lfakit run``). Re-running a sweep therefore runs
    only what failed or never ran; a run that failed leaves its folder for inspection, and the
    re-run makes a new one.

    A point never runs twice at once: before starting, it takes an exclusive lock,
    ``results/<experiment>/sweeps/.locks/<params_hash>.lock`` (``flock``), and hands it to its
    ``lfakit run`` process, which holds it for as long as it lives, even if the sweep that
    started it has died. A point whose lock is held (an earlier attempt still running, or
    another sweep with the same point) waits up to 10 s, then fails without starting,
    naming the lock; once it gets the lock it looks again for a complete run, and is
    ``skipped`` if the earlier attempt finished meanwhile. Together with the watchdog below,
    this keeps one complete run per point: a killed attempt leaves an incomplete run folder (no
    ``manifest.json``), which neither the sweep nor ``lfakit compare`` counts as a run, and the
    re-run makes the one complete run.

Failures
    A point whose process exits non-zero (a failing cell, a preflight error, a process killed by
    a signal or by ``timeout``) is ``failed`` with the end of its stderr; the other points go
    on. :attr:`SweepResult.exit_code` is 1 when any point failed, else 0.

Executors (``executor=``), all running the same :func:`run_point` per point:

``local`` (default)
    ``workers`` points at a time on this machine: a thread pool whose threads each launch one
    point's process and wait for it (the work is in the child processes), with a progress bar.
``dask``
    One task per point on a Dask cluster: the scheduler at ``scheduler_address`` (its workers
    need this lfakit installed and the results folder on a shared file system), else a
    ``distributed.LocalCluster`` of ``workers`` single-threaded worker processes.
``slurm``
    One Slurm job per point through submitit (a job array of at most ``workers`` running at
    once), with its files in ``<sweep>/submitit``. ``slurm`` options: ``partition``,
    ``time_min`` (the job's time limit in minutes; default 60, or the point ``timeout`` plus 5
    minutes), ``gpus`` (GPUs per node), ``cpus`` (CPUs per task), ``mem_gb``, and any of
    submitit's own ``slurm_*`` parameters (e.g. ``slurm_account``) verbatim. ``cluster=`` is
    submitit's cluster: None (default) is Slurm, and needs ``sbatch`` on PATH (submitit would
    silently run the jobs on this machine where it finds no Slurm; a sweep does that only when
    asked), ``"local"`` runs the jobs as local processes (for trying a sweep or testing it),
    ``"debug"`` in this process; any other name submitit's plugins know is passed on.

``timeout`` is each point's wall-clock limit in seconds (None: none): on expiry the point's
process is interrupted (as Ctrl-C does, so its run folder can be continued with ``lfakit run
--resume``), killed together with every process it started (its kernel) if it has not stopped
30 s later, and the point is failed. Whatever a point started and left running when its
process ended (a kernel) is killed then. A point whose process ended (a crash, the OOM killer)
while a process it started still holds its output does not keep the sweep waiting: that process
is killed about 30 s later, with or without ``timeout``, and the point's exit status decides.

Ctrl-C during a local sweep stops the running points (each as ``lfakit run`` stops on Ctrl-C),
writes ``sweep.json`` and raises :class:`SweepInterrupted`; re-running the same sweep goes on.

Killing a sweep
    A sweep killed outright (SIGKILL, SIGTERM, the OOM killer, a closed ssh session) takes its
    points' processes with it: the chain is the sweep (or the Dask worker, or submitit's job,
    that runs :func:`run_point`), then the point's ``lfakit run``, then its Jupyter kernel,
    then whatever the kernel started. :func:`run_point` puts its own pid in the point's
    environment as ``LFAKIT_SWEEP_PARENT``; in ``lfakit run`` a watchdog thread
    (:func:`lfakit.runner._die_with_sweep`) polls its parent pid every 0.2 s and, once that
    parent is gone, SIGKILLs its descendants (found by parent pid through psutil) and then
    itself. Measured, the whole chain is gone a fraction of a second after the sweep is killed.
    Why a watchdog in the point rather than:

    * a process group (``killpg``): after a SIGKILL nobody is left to send the group a signal,
      and the kernel is not in the group anyway: jupyter_client starts it in a session of its
      own (so that interrupting it does not reach the client);
    * a parent-death signal (``prctl(PR_SET_PDEATHSIG)``): it fires for the direct parent only,
      so every level (run, kernel, the kernel's children) would need it set in its own start
      code (jupyter_client's and the libraries'); it is tied to the *thread* that started the
      child (the sweep starts points from pool threads, Dask from executor threads, which come
      and go), needs ``preexec_fn`` (unsafe in a threaded parent), and exists on Linux only.

    The watchdog needs nothing from the kernel, only ``getppid`` and psutil (POSIX, not just
    Linux), and catches every level at once. What it does not catch is a process that left the tree (a double-forked
    daemon) before the kill. With a Dask LocalCluster the chain holds as well: the worker
    processes exit when the sweep dies (distributed's own parent watch), and each point's run
    follows its worker. Points on a remote Dask cluster, or Slurm jobs (and submitit's
    ``local`` jobs, which imitate them), are not children of the sweep and go on after it is
    killed, as batch jobs do: cancel them with the cluster's tools (``scancel``). Their locks
    still keep a re-run from starting such a point a second time while it runs (the results
    folder is shared; on a file system without ``flock`` there is no lock).

Test hook: ``LFAKIT_SWEEP_TEST_KILL=<i>[,<j>...]`` makes :func:`run_point` send SIGKILL to
the process of the points with those indices right after starting it (a point killed by a
signal, for the tests). Nothing else reads it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from lfakit.errors import LfakitError, ParameterError, close_matches

SCHEMA = "lfakit.sweep/1"
MANIFEST = "sweep.json"
EXECUTORS = ("local", "dask", "slurm")
STATUSES = ("pending", "running", "complete", "failed", "skipped")
TEST_KILL_ENV = "LFAKIT_SWEEP_TEST_KILL"
_INTERNAL = ("run_dir", "resume")
_TAIL_LINES = 30
_TAIL_CHARS = 4000
_KILL_GRACE_S = 30
PARENT_ENV = "LFAKIT_SWEEP_PARENT"  # read by lfakit.runner._die_with_sweep in the point's `lfakit run`
LOCKS = ".locks"  # results/<experiment>/sweeps/.locks/<params_hash>.lock: one process per point at a time
_LOCK_WAIT_S = 10.0  # how long a point waits for an earlier attempt of it to end (its watchdog: < 1 s)
CONNECT_TIMEOUT_S = 10.0


class ExecutorUnavailable(LfakitError):
    """The executor cannot be reached (no ``sbatch``, no Dask scheduler at the address); raised
    before any point starts and before the sweep folder is made."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; ``sweep.json`` was written, and re-running the sweep goes on."""

    def __init__(self, sweep_dir: Path):
        super().__init__(f"sweep interrupted: {sweep_dir}")
        self.sweep_dir = sweep_dir


# --------------------------------------------------------------------------- the grid


def _split_top_level(text: str) -> list[str]:
    """``text`` split at commas outside brackets, braces and quotes."""
    parts, buf, quote = [], [], None
    closing = {"]": "[", "}": "{"}
    stack: list[str] = []
    for ch in text:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"" and (not "".join(buf).strip() or "".join(buf).rstrip()[-1] in "[{,:"):
            quote = ch  # a quote opens a scalar only where YAML would (not the ' of "it's")
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}":
            if not stack or stack[-1] != closing[ch]:
                raise ParameterError(f"grid value {text!r}: unbalanced {ch!r}")
            stack.pop()
        elif ch == "," and not stack:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    if quote or stack:
        raise ParameterError(f"grid value {text!r}: unclosed {quote or stack[-1]!r}")
    parts.append("".join(buf))
    return parts


def parse_grid(items: Iterable[str]) -> dict[str, list]:
    """Parse command-line grid items ``name=v1,v2,...`` into ``{name: [v1, v2, ...]}``.

    Each value is read as YAML (as :func:`lfakit.params.parse_override` reads a ``-p`` value);
    the item is split only at commas outside brackets, braces and quotes, so
    ``losses=[focal],[zlpr]`` gives ``{"losses": [["focal"], ["zlpr"]]}``. The values are not
    checked against an experiment here; :func:`run_sweep` does that for every point."""
    from lfakit.params import parse_override

    grid: dict[str, list] = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(f"grid item {item!r} must look like name=value1,value2 (e.g. -g grid_size=99,199)")
        name, raw = item.split("=", 1)
        name = name.strip()
        if not name:
            raise ParameterError(f"grid item {item!r} names no parameter")
        if name in grid:
            raise ParameterError(f"grid parameter {name!r} is given twice; list all its values in one item")
        values = []
        for piece in _split_top_level(raw):
            if not piece.strip():
                raise ParameterError(f"grid item {item!r} has an empty value")
            values.append(parse_override(f"{name}={piece.strip()}")[1])
        grid[name] = values
    return grid


def expand_grid(grid: dict[str, list] | None, seeds: Iterable[int] | None = (0,)) -> list[dict]:
    """The points of a sweep: every combination of the grid's values (in the grid's order, the
    first name varying slowest) times every seed (innermost), each as an overrides dict with
    ``seed``. Empty or None ``seeds``: the points set no seed (the profile's seed is used)."""
    grid = dict(grid or {})
    seeds = list(seeds) if seeds is not None else []
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
            raise ParameterError(f"grid parameter {name!r}: give a list of values, got {values!r}")
        if not values:
            raise ParameterError(f"grid parameter {name!r} has no values")
    if "seed" in grid and seeds:
        raise ParameterError("seed is both a grid parameter and given as seeds; use one of them")
    names = list(grid)
    points = []
    for combo in itertools.product(*(grid[n] for n in names)):
        base = dict(zip(names, combo))
        if seeds:
            points.extend({**base, "seed": s} for s in seeds)
        else:
            points.append(base)
    return points


# --------------------------------------------------------------------------- one point


def _yaml_value(value: Any) -> str:
    """``value`` as one line of YAML that ``-p name=<text>`` reads back as ``value``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31 - 1, allow_unicode=True).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    elif text.endswith("..."):
        text = text[:-3].strip()
    return text


def point_command(experiment: str, profile: str | None, overrides: dict[str, Any], python: str | None = None) -> list[str]:
    """The command that runs one point: ``python -m lfakit.cli run <experiment> --profile P
    -p name=value ... -q``."""
    cmd = [python or sys.executable, "-m", "lfakit.cli", "run", experiment]
    if profile:
        cmd += ["--profile", profile]
    for name, value in overrides.items():
        cmd += ["-p", f"{name}={_yaml_value(value)}"]
    return cmd + ["-q"]


def _tail(text: str) -> str:
    lines = text.strip().splitlines()[-_TAIL_LINES:]
    return "\n".join(lines)[-_TAIL_CHARS:]


def _run_dir_from(stdout: str) -> str | None:
    """The run folder from the CLI's last line, ``<experiment>: done in N s -> <run_dir>``."""
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    if not lines or ": done in " not in lines[-1] or " -> " not in lines[-1]:
        return None
    return lines[-1].rsplit(" -> ", 1)[1].strip()


def _failed_run_dir(stderr: str) -> str | None:
    """The run folder a failed or interrupted run names on stderr (its partly executed notebook)."""
    import re

    for pattern in (r"its run folder is (\S.*)$", r"partly executed notebook is kept at (\S.*)/[^/]+\.ipynb$"):
        hits = re.findall(pattern, stderr, flags=re.M)
        if hits and Path(hits[-1].strip()).is_dir():
            return hits[-1].strip()
    return None


def _kill_indices() -> set[int]:
    raw = os.environ.get(TEST_KILL_ENV, "")
    return {int(x) for x in raw.split(",") if x.strip().lstrip("-").isdigit()}


_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def run_point(
    experiment: str,
    profile: str | None,
    overrides: dict[str, Any],
    results_root: str | Path,
    timeout: float | None = None,
    *,
    index: int | None = None,
    log_file: str | Path | None = None,
    params_hash: str | None = None,
) -> dict[str, Any]:
    """Run one point as its own process (:func:`point_command`) with ``LFAKIT_RESULTS`` set to
    ``results_root``; wait for it (at most ``timeout`` seconds) and return ``{"status":
    "complete"|"failed"|"skipped", "run_dir", "error", "seconds", "returncode"}``. Never raises
    for a failing point. ``index`` is the point's number in its sweep (for the test hook,
    ``LFAKIT_SWEEP_TEST_KILL``); ``log_file`` receives the command, exit status and output.

    The point's ``lfakit run`` gets ``LFAKIT_SWEEP_PARENT=<this process's pid>``: it ends, with
    everything it started, when this process is gone (see "Killing a sweep" in the module
    docstring). With ``params_hash`` the point first takes the point's lock
    (:func:`_lock_point`), waiting up to ``_LOCK_WAIT_S`` for an earlier attempt of the same
    point to end, and is ``skipped`` if that attempt left a complete run; its ``lfakit run``
    holds the lock for as long as it lives.

    Importable at module level, so Dask and submitit can pickle it."""
    cmd = point_command(experiment, profile, overrides)
    env = dict(os.environ)
    env["LFAKIT_RESULTS"] = str(Path(results_root).expanduser().resolve())
    pkg_parent = str(Path(__file__).resolve().parents[1])  # the child imports this lfakit
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, *filter(None, [env.get("PYTHONPATH")])])
    env.pop(TEST_KILL_ENV, None)
    env[PARENT_ENV] = str(os.getpid())
    t0 = time.perf_counter()
    lock_fd = None
    if params_hash is not None:
        lock_fd, busy = _lock_point(Path(env["LFAKIT_RESULTS"]), experiment, params_hash)
        if busy:
            return {"status": "failed", "run_dir": None, "error": busy, "seconds": None, "returncode": None}
        done = find_complete_runs(experiment, env["LFAKIT_RESULTS"]).get(params_hash)
        if done is not None:  # an earlier attempt finished after the sweep looked
            if lock_fd is not None:
                os.close(lock_fd)
            return {"status": "skipped", "run_dir": str(done), "error": None, "seconds": None, "returncode": None}
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env, text=True, errors="replace", pass_fds=() if lock_fd is None else (lock_fd,))
    except BaseException:
        if lock_fd is not None:
            os.close(lock_fd)
        raise
    with _LIVE_LOCK:
        _LIVE.add(proc)
    try:
        if index is not None and index in _kill_indices():  # test hook (see the module docstring)
            proc.send_signal(signal.SIGKILL)
        stdout, stderr, timed_out = _wait_point(proc, timeout)
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
        if lock_fd is not None:
            os.close(lock_fd)  # the point's processes are gone: the lock is free
    seconds = round(time.perf_counter() - t0, 3)
    rc = proc.returncode
    run_dir = _run_dir_from(stdout) if rc == 0 else _failed_run_dir(stderr)
    error = None
    if timed_out:
        error = f"timed out after {timeout} s (exit status {rc})"
    elif rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        error = f"killed by {name}"
    elif rc == 130:
        error = "interrupted (exit status 130)"
    elif rc != 0:
        error = f"exit status {rc}"
    elif run_dir is None:
        error = "the run reported no run folder (its last line of output is not '<experiment>: done in N s -> <run_dir>')"
    elif not Path(run_dir).is_dir():
        error = f"the run reported the run folder {run_dir}, which does not exist"
    if error and stderr.strip():
        error += "\n" + _tail(stderr)
    if log_file is not None:
        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            Path(log_file).write_text(
                f"$ {' '.join(cmd)}\nLFAKIT_RESULTS={env['LFAKIT_RESULTS']}\nexit status: {rc}  ({seconds} s)\n"
                f"\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
            )
        except OSError:
            pass
    return {"status": "failed" if error else "complete", "run_dir": run_dir, "error": error,
            "seconds": seconds, "returncode": rc}


def _lock_point(results_root: Path, experiment: str, params_hash: str) -> tuple[int | None, str | None]:
    """Take the point's lock, ``<results_root>/<experiment>/sweeps/.locks/<params_hash>.lock``
    (an exclusive ``flock``), waiting up to ``_LOCK_WAIT_S`` seconds: ``(fd, None)``, or
    ``(None, why)`` when another process still holds it.

    The lock is handed to the point's ``lfakit run`` (an inherited descriptor), so it is held
    while that process lives, even after the sweep that started it was killed: a re-run of the
    sweep, or another sweep with the same point, cannot start the point a second time while an
    earlier attempt still runs. The lock file names the pid that took it. Where the file system
    has no locks (``flock`` fails), ``(fd, None)`` is returned without one."""
    import errno
    import socket

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return None, None
    folder = results_root / experiment / "sweeps" / LOCKS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{params_hash}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return fd, None  # no locks on this file system
            if time.monotonic() >= deadline:
                try:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                except OSError:
                    holder = "unknown"
                os.close(fd)
                return None, (f"another process still runs this point (lock {path} is held; taken by {holder}): an "
                              "earlier attempt of this sweep or another sweep with the same point; this attempt did "
                              "not start, so that no second run of the point is made. Re-run the sweep when it has "
                              "ended (a finished run is then skipped)")
            time.sleep(0.1)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return fd, None


_POLL_S = 0.5  # how often a waiting sweep notes the processes a point started (a psutil scan: ~1 ms)


def _process(pid: int):
    """A psutil handle of ``pid`` (it checks the process's start time, so a reused pid is not
    mistaken for it), or None when it has ended."""
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _descendants(handle) -> list:
    """The processes the point's process started (its kernel, ...), as psutil handles."""
    import psutil

    if handle is None:
        return []
    try:
        return handle.children(recursive=True)
    except psutil.Error:  # it ended
        return []


def _decoded(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def _kill_all(tree) -> None:
    import psutil

    for p in tree:
        try:
            p.kill()
        except psutil.Error:  # it ended (psutil also refuses a pid that another process reused)
            pass


def _kill_tree(proc: subprocess.Popen, tree) -> tuple[str, str]:
    """SIGKILL to the point's process and the processes it started (``tree``), then what it
    wrote. If something still holds its pipes after the grace period (a process started and
    orphaned between two notes), they are closed, and what was read until then is returned."""
    _kill_all(tree)
    proc.kill()  # nothing if it has ended
    try:
        return proc.communicate(timeout=_KILL_GRACE_S)
    except subprocess.TimeoutExpired as e:
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
        proc.wait()
        return _decoded(e.stdout), (_decoded(e.stderr) + "\n(the rest of its output was lost: a process it started "
                                    "and that was not found to be killed kept the pipes open)")


def _wait_point(proc: subprocess.Popen, timeout: float | None) -> tuple[str, str, bool]:
    """Wait for the point's process and read its output: ``(stdout, stderr, timed_out)``.

    Every ``_POLL_S`` seconds the processes it started (its kernel) are noted, so that they can
    still be found once the point's process is gone. Past ``timeout`` the point gets SIGINT (as
    Ctrl-C: the runner stops its kernel, and the run can be resumed); if it has not stopped
    ``_KILL_GRACE_S`` later, it and everything it started get SIGKILL. A point whose process
    ended (a crash, the OOM killer) while a process it started still holds the pipes is treated
    the same way after the grace period, instead of waiting for that process for ever; its exit
    status, not a timeout, is then what failed it. Whatever the point started and left running
    when its process ended is killed.
    """
    handle = _process(proc.pid)  # now, before the pid can be reaped and reused
    tree: dict[int, Any] = {}
    start = time.monotonic()
    timed_out, deadline = False, None  # deadline: when SIGKILL follows
    while True:
        now = time.monotonic()
        waits = [_POLL_S]
        if timeout is not None and not timed_out:
            waits.append(start + timeout - now)
        if deadline is not None:
            waits.append(deadline - now)
        try:
            stdout, stderr = proc.communicate(timeout=max(0.01, min(waits)))
            break
        except subprocess.TimeoutExpired:
            pass
        tree.update((p.pid, p) for p in _descendants(handle))
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            stdout, stderr = _kill_tree(proc, tree.values())
            return stdout, stderr, timed_out
        if proc.poll() is not None:  # it ended, but something it started holds the pipes
            if deadline is None:
                deadline = now + _KILL_GRACE_S
        elif timeout is not None and not timed_out and now >= start + timeout:
            timed_out = True
            proc.send_signal(signal.SIGINT)
            deadline = now + _KILL_GRACE_S
    _kill_all(tree.values())  # the point has ended: a kernel it left behind does not go on
    return stdout, stderr, timed_out


def _interrupt_live() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGINT)
            except OSError:  # pragma: no cover - it just ended
                pass


# --------------------------------------------------------------------------- what is done


def complete_run(run_dir: str | Path, params_hash: str) -> bool:
    """Whether ``run_dir`` is a finished run with parameters of hash ``params_hash``: its
    ``metrics.json`` has the hash, its ``manifest.json`` exists (written last) and what it lists
    is intact (:func:`lfakit.record.verify_run`), and its executed notebook is not marked as
    failed by papermill. A damaged run is not complete: its point runs again."""
    from lfakit.record import MANIFEST as RUN_MANIFEST
    from lfakit.record import METRICS, verify_run
    from lfakit.runner import NOTEBOOK_NAME

    run_dir = Path(run_dir)
    mpath = run_dir / METRICS
    if run_dir.is_symlink() or mpath.is_symlink() or not mpath.is_file():
        return False
    try:
        m = json.loads(mpath.read_text())
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(m, dict) or m.get("params_hash") != params_hash or not (run_dir / RUN_MANIFEST).is_file():
        return False
    nb = run_dir / NOTEBOOK_NAME
    if nb.exists():
        if nb.is_symlink() or not nb.is_file():
            return False
        try:
            meta = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {})
        except (OSError, ValueError, RecursionError, AttributeError):
            return False
        if isinstance(meta, dict) and meta.get("exception"):
            return False
    return not verify_run(run_dir)


def find_complete_runs(experiment: str, results_root: str | Path) -> dict[str, Path]:
    """``params_hash -> run folder`` for the complete runs under ``results_root/experiment``
    (the newest run where several share a hash)."""
    from lfakit.compare import REHEARSAL_FILE
    from lfakit.record import METRICS

    found: dict[str, Path] = {}
    base = Path(results_root) / experiment
    for mpath in sorted(base.glob(f"*/{METRICS}")):  # run ids start with a timestamp: newest last
        if mpath.is_symlink() or not mpath.is_file():
            continue
        try:
            h = json.loads(mpath.read_text()).get("params_hash")
        except (OSError, ValueError, AttributeError, RecursionError):
            continue
        if (mpath.parent / REHEARSAL_FILE).exists():  # a rehearsal is never a point's result
            continue
        if isinstance(h, str) and complete_run(mpath.parent, h):
            found[h] = mpath.parent
    return found


# --------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns: the sweep folder and its points (as in ``sweep.json``)."""

    sweep_dir: Path
    points: list[dict[str, Any]] = field(default_factory=list)
    experiment: str = ""
    profile: str | None = None
    executor: str = "local"

    @property
    def manifest(self) -> Path:
        return self.sweep_dir / MANIFEST

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [p for p in self.points if p["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when every point is complete or skipped, else 1."""
        return 0 if all(p["status"] in ("complete", "skipped") for p in self.points) else 1


def sweep_id(experiment: str, profile: str | None, grid: dict[str, list], seeds: list[int] | None) -> str:
    """``<profile>-<12 hex digits>``: the same experiment, profile, grid and seeds, the same id."""
    body = json.dumps({"experiment": experiment, "profile": profile, "grid": grid, "seeds": seeds},
                      sort_keys=True, default=str)
    return f"{profile or 'defaults'}-{hashlib.sha256(body.encode()).hexdigest()[:12]}"


def _format_overrides(overrides: dict[str, Any]) -> str:
    return " ".join(f"{k}={_yaml_value(v)}" for k, v in overrides.items()) or "(profile as it is)"


def summary(result: SweepResult) -> str:
    """A short human summary: one line per point (status, overrides, run folder or the first
    line of its error) and a totals line."""
    lines = []
    for p in result.points:
        where = p.get("run_dir") or ""
        if p["status"] == "failed":
            where = (p.get("error") or "failed").strip().splitlines()[0]
        secs = f" ({p['seconds']:.0f} s)" if p.get("seconds") is not None and p["status"] == "complete" else ""
        lines.append(f"{p['status']:<8}  {_format_overrides(p['overrides'])}  {where}{secs}")
    counts = {s: sum(p["status"] == s for p in result.points) for s in STATUSES}
    total = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing"
    lines.append(f"{result.experiment or 'sweep'}: {len(result.points)} points: {total}; sweep folder {result.sweep_dir}")
    return "\n".join(lines)


class _Manifest:
    """``sweep.json``, written atomically under a lock (worker threads finish points at once)."""

    def __init__(self, path: Path, head: dict[str, Any], points: list[dict[str, Any]]):
        self.path, self.head, self.points = path, head, points
        self.lock = threading.Lock()

    def write(self) -> None:
        with self.lock:
            body = {"schema": SCHEMA, **self.head,
                    "updated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "points": self.points}
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(body, indent=2, default=str))
            os.replace(tmp, self.path)

    def update(self, index: int, **values) -> None:
        with self.lock:
            self.points[index].update(values)
        self.write()


def _previous_points(path: Path, head: dict[str, Any]) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    same = {k: old.get(k) for k in ("experiment", "profile", "grid", "seeds")}
    want = json.loads(json.dumps({k: head[k] for k in same}, default=str))
    if same != want:
        raise LfakitError(
            f"{path} belongs to another sweep ({old.get('experiment')}, profile {old.get('profile')!r}, grid "
            f"{old.get('grid')}, seeds {old.get('seeds')}); choose another --out folder"
        )
    return [p for p in old.get("points", []) if isinstance(p, dict)]


def _slurm_parameters(experiment: str, slurm: dict[str, Any], timeout: float | None, workers: int) -> dict[str, Any]:
    opts = dict(slurm)
    opts.pop("cluster", None)
    time_min = opts.pop("time_min", None)
    if time_min is None:
        time_min = 60 if timeout is None else int(-(-float(timeout) // 60)) + 5
    params: dict[str, Any] = {
        "name": f"lfakit-{experiment}",
        "timeout_min": int(time_min),
        "nodes": 1,
        "tasks_per_node": 1,
        "slurm_partition": opts.pop("partition", None),
        "gpus_per_node": opts.pop("gpus", None),
        "cpus_per_task": opts.pop("cpus", None),
        "mem_gb": opts.pop("mem_gb", None),
        "slurm_array_parallelism": int(workers),
    }
    unknown = [k for k in opts if not k.startswith("slurm_")]
    if unknown:
        raise ParameterError(
            f"unknown slurm option(s) {', '.join(unknown)}; known: partition, time_min, gpus, cpus, mem_gb, "
            "cluster, or submitit's slurm_* parameters"
        )
    params.update(opts)
    return {k: v for k, v in params.items() if v is not None}


# --------------------------------------------------------------------------- checks before anything


_DASK_FIX = ("start a scheduler there (`dask scheduler`, then `dask worker <address>` on each machine that runs "
             "points, with this lfakit installed and the results folder shared), or drop --scheduler-address to run "
             "the points on a LocalCluster of --workers processes on this machine")


def check_scheduler_address(address: str) -> str:
    """``address`` as a Dask scheduler address, ``<scheme>://<host>:<port>`` (``host:port`` means
    ``tcp://host:port``), checked with distributed's own parsing (:func:`distributed.comm.parse_address`,
    :func:`distributed.comm.parse_host_port`) and its list of transports; a ParameterError
    naming the address and the expected form otherwise. Nothing is contacted."""
    from distributed.comm import parse_address, parse_host_port
    from distributed.comm.registry import backends

    text = str(address).strip()

    def bad(why: str) -> ParameterError:
        return ParameterError(
            f"--scheduler-address {address!r} is not a Dask scheduler address: {why}. Give it as tcp://host:port "
            "(e.g. tcp://10.0.0.5:8786, the address `dask scheduler` prints), or drop --scheduler-address to run the "
            "points on a LocalCluster on this machine"
        )

    if not text:
        raise bad("it is empty")
    try:
        scheme, loc = parse_address(text, strict=False)
    except ValueError as e:
        raise bad(str(e)) from None
    if scheme not in backends:
        raise bad(f"unknown scheme {scheme + '://'!r} (Dask knows {', '.join(s + '://' for s in sorted(backends))})")
    if scheme == "inproc":
        raise bad("inproc:// addresses live inside one process; give the address of a running scheduler")
    try:
        host, port = parse_host_port(loc)
    except ValueError as e:
        raise bad(str(e)) from None
    if not host or any(c.isspace() for c in host):
        raise bad(f"{host!r} is not a host name")
    if not 0 < int(port) < 65536:
        raise bad(f"port {port} is not in 1-65535")
    return f"{scheme}://{loc}"


def _connect_dask(address: str, timeout: float):
    """A :class:`distributed.Client` of the scheduler at ``address`` with at least one worker,
    waiting at most ``timeout`` seconds for each; ExecutorUnavailable naming the address and
    how to start a scheduler otherwise.

    The address is first probed with :func:`distributed.comm.connect` (with the TLS settings of
    the Dask configuration, as the client would use them), in a thread of its own so that a
    caller's running event loop (a notebook) is not in the way: a failed probe is one clean
    error, where a failed ``Client`` would also complain while it is garbage-collected."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed import Client
    from distributed.comm import connect
    from distributed.security import Security

    async def probe() -> None:
        comm = await connect(address, timeout=timeout, **Security().get_connection_args("client"))
        await comm.close()

    try:
        with ThreadPoolExecutor(1, thread_name_prefix="lfakit-dask-probe") as pool:
            pool.submit(asyncio.run, probe()).result()
        client = Client(address, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - refused, timed out, no such host, a transport not set up
        why = str(e).strip() or type(e).__name__
        raise ExecutorUnavailable(f"cannot reach a Dask scheduler at {address} ({why}); {_DASK_FIX}") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        client.close()
        raise ExecutorUnavailable(
            f"the Dask scheduler at {address} has no workers (none joined within {timeout:g} s), so no point could "
            f"run; start workers with `dask worker {address}` on the machines that run points (with this lfakit "
            "installed and the results folder shared), or drop --scheduler-address to use a LocalCluster"
        ) from None
    except BaseException:
        client.close()
        raise
    return client


def check_cluster(cluster: str | None) -> str:
    """submitit's cluster for the slurm executor: ``cluster`` if submitit knows it (its
    executor plugins: ``slurm``, ``local``, ``debug``, ...), else a ParameterError listing
    them; None is ``slurm``. ``slurm`` needs ``sbatch`` on PATH (ExecutorUnavailable
    otherwise): submitit's own automatic choice would fall back to running the jobs locally
    where there is no Slurm, which a sweep does only when asked (``cluster="local"``)."""
    from submitit.core.plugins import get_executors

    known = list(get_executors())
    if cluster is not None and cluster not in known:
        raise ParameterError(
            f"unknown --cluster {cluster!r}.{close_matches(cluster, known)} submitit knows: {', '.join(known)} "
            "(slurm submits a job per point with sbatch; local runs them as processes on this machine; debug runs "
            "them one by one inside the sweep's own process)"
        )
    cluster = cluster or "slurm"
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise ExecutorUnavailable(
            "--executor slurm needs Slurm, but `sbatch` is not on PATH here. Run the sweep on a machine that submits "
            "Slurm jobs (a login node), or run the points on this machine: --executor slurm --cluster local "
            "(submitit's local processes), or --executor local / --executor dask"
        )
    return cluster


def check_out(out: str | Path) -> Path:
    """The sweep folder ``out``, resolved, once it is known that it is (or can be made as) a
    folder this process can write: an existing file, a path through a file, or a place where
    no folder can be made is a ParameterError naming it. Nothing is left behind by the check."""
    import tempfile

    path = Path(out).expanduser().resolve()
    fix = "give --out a folder you can write (it is made if missing), or leave --out out for the default " \
          "results/<experiment>/sweeps/<sweep-id>"
    if path.exists() and not path.is_dir():
        raise ParameterError(f"--out {path} is a file, not a folder; {fix}")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ParameterError(f"--out {path}: {probe} is a file, so no folder can be made there; {fix}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".lfakit-probe-", dir=probe))
    except OSError as e:
        raise ParameterError(f"--out {path}: cannot make a folder in {probe} ({e.strerror or e}); {fix}") from None
    return path


def run_sweep(
    experiment: str,
    profile: str | None = "smoke",
    grid: dict[str, list] | None = None,
    seeds: Iterable[int] | None = (0,),
    executor: str = "local",
    workers: int = 1,
    out: str | Path | None = None,
    scheduler_address: str | None = None,
    slurm: dict[str, Any] | None = None,
    timeout: float | None = None,
    progress: bool = True,
    *,
    cluster: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> SweepResult:
    """Run ``experiment`` at every point of ``grid`` x ``seeds`` (see the module docstring).

    Validates every point and the executor first (a ParameterError, or ExecutorUnavailable when
    the executor cannot be reached, before any process starts and before the sweep folder is
    made), skips points with a complete run of the same parameters, runs the rest with
    ``executor`` (``local``, ``dask`` or ``slurm``), ``workers`` at a time, and records each in
    ``sweep.json``. ``cluster`` is submitit's cluster for the slurm executor (None: Slurm, which
    needs ``sbatch``; ``"local"``: local processes; ``"debug"``: this process).
    ``connect_timeout`` bounds the wait for a Dask scheduler at ``scheduler_address`` (and for
    its first worker)."""
    from lfakit import record, runner
    from lfakit.params import parse_override

    if executor not in EXECUTORS:
        raise ParameterError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers must be a positive integer, got {workers!r}")
    if timeout is not None and not timeout > 0:
        raise ParameterError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float)) or not connect_timeout > 0:
        raise ParameterError(f"the connect timeout must be a positive number of seconds, got {connect_timeout!r}")
    slurm = dict(slurm or {})
    cluster = slurm.pop("cluster", cluster)
    if slurm and executor != "slurm":
        raise ParameterError(f"slurm options are for the slurm executor, not {executor!r}")
    if cluster is not None and executor != "slurm":
        raise ParameterError(f"--cluster {cluster!r} picks submitit's cluster for --executor slurm, not for "
                             f"{executor!r}; drop --cluster, or use --executor slurm --cluster local to run the points "
                             "through submitit on this machine")
    if scheduler_address is not None and executor != "dask":
        raise ParameterError(f"a scheduler address is for the dask executor, not {executor!r}")
    if executor == "dask" and scheduler_address is not None:
        scheduler_address = check_scheduler_address(scheduler_address)
    if executor == "slurm":
        cluster = check_cluster(cluster)
        _slurm_parameters(experiment, slurm, timeout, workers)  # unknown options, before anything
    out_dir = check_out(out) if out is not None else None
    grid = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(grid or {}).items()}
    seeds_list = None if seeds is None else list(seeds)
    for s in seeds_list or []:
        if isinstance(s, bool) or not isinstance(s, int):
            raise ParameterError(f"every seed must be an integer, got {s!r}")
    if len(set(seeds_list or [])) != len(seeds_list or []):
        raise ParameterError(f"seeds lists a seed twice: {seeds_list}")
    internal = [k for k in grid if k in _INTERNAL]
    if internal:
        raise ParameterError(f"{internal[0]!r} is set by the runner for each run; it cannot be swept")

    # ---- validate every point before anything runs
    raw_points = expand_grid(grid, seeds_list)
    points: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, ov in enumerate(raw_points):
        try:
            # the values exactly as the child reads them back from its command line
            sent = dict(parse_override(f"{k}={_yaml_value(v)}") for k, v in ov.items())
            resolved = runner.resolve_params(experiment, profile, sent)
        except ParameterError as e:
            raise ParameterError(f"sweep point {i} ({_format_overrides(ov)}): {e}") from None
        h = record.params_hash(resolved)
        if h in seen:
            raise ParameterError(
                f"sweep points {seen[h]} and {i} ({_format_overrides(ov)}) resolve to the same parameters; "
                "drop the duplicate value"
            )
        seen[h] = i
        points.append({"index": i, "overrides": ov, "params_hash": h, "status": "pending",
                       "run_dir": None, "error": None, "seconds": None})

    # ---- the executor is there: nothing has been written yet
    client = _connect_dask(scheduler_address, connect_timeout) if executor == "dask" and scheduler_address else None
    try:
        return _sweep(experiment, profile, grid, seeds_list, points, executor, workers, out_dir, client, slurm,
                      cluster, timeout, progress)
    finally:
        if client is not None:
            client.close()


def _sweep(experiment, profile, grid, seeds_list, points, executor, workers, out_dir, client, slurm, cluster, timeout,
           progress) -> SweepResult:
    """:func:`run_sweep` once every check has passed: the sweep folder, what is done, the rest."""
    from lfakit import runner

    root = runner.check_results_root()
    sid = sweep_id(experiment, profile, grid, seeds_list)
    sweep_dir = out_dir or root / experiment / "sweeps" / sid
    sweep_dir.mkdir(parents=True, exist_ok=True)
    head = {"experiment": experiment, "profile": profile, "grid": grid, "seeds": seeds_list,
            "executor": executor, "workers": workers, "sweep_id": sid, "results_root": str(root)}
    manifest = _Manifest(sweep_dir / MANIFEST, head, points)

    # ---- skip what is done
    done = find_complete_runs(experiment, root)
    for old in _previous_points(manifest.path, head):
        h, rd = old.get("params_hash"), old.get("run_dir")
        if isinstance(h, str) and rd and h not in done and complete_run(rd, h):
            done[h] = Path(rd)
    todo = []
    for p in points:
        if p["params_hash"] in done:
            p.update(status="skipped", run_dir=str(done[p["params_hash"]]))
        else:
            todo.append(p["index"])
    manifest.write()
    result = SweepResult(sweep_dir, points, experiment, profile, executor)
    if not todo:
        return result

    logs = sweep_dir / "logs"

    def args_of(i: int) -> tuple[tuple, dict]:
        return ((experiment, profile, points[i]["overrides"], str(root), timeout),
                {"index": i, "log_file": str(logs / f"point-{i}.log"), "params_hash": points[i]["params_hash"]})

    def finish(i: int, outcome: dict[str, Any] | BaseException) -> None:
        if isinstance(outcome, BaseException):
            outcome = {"status": "failed", "run_dir": None, "seconds": None,
                       "error": f"the {executor} executor lost the point: {type(outcome).__name__}: {outcome}"}
        manifest.update(i, status=outcome["status"], run_dir=outcome.get("run_dir"), error=outcome.get("error"),
                        seconds=outcome.get("seconds"))

    def bar(iterable):
        if not progress:
            return iterable
        from lfakit.runtime import progress as _progress

        return _progress(iterable, total=len(todo), desc=f"{experiment} sweep", unit="point")

    if executor == "local":
        _run_local(todo, args_of, finish, manifest, workers, bar, sweep_dir)
    elif executor == "dask":
        _run_dask(todo, args_of, finish, workers, client, bar, progress)
    else:
        _run_slurm(todo, args_of, finish, experiment, slurm, timeout, workers, cluster, sweep_dir, bar)
    return result


def _run_local(todo, args_of, finish, manifest, workers, bar, sweep_dir) -> None:
    from concurrent.futures import ThreadPoolExecutor, as_completed

    def task(i: int) -> dict[str, Any]:
        manifest.update(i, status="running")
        args, kw = args_of(i)
        return run_point(*args, **kw)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lfakit-sweep")
    futures = {pool.submit(task, i): i for i in todo}
    try:
        for fut in bar(as_completed(futures)):
            finish(futures[fut], fut.exception() or fut.result())
    except KeyboardInterrupt:
        for fut in futures:
            fut.cancel()
        _interrupt_live()  # the terminal's Ctrl-C reached them too; a signal sent to this process alone did not
        for fut, i in futures.items():  # the running points stop as `lfakit run` stops on Ctrl-C
            if not fut.cancelled():
                try:
                    finish(i, fut.result())
                except BaseException as e:  # noqa: BLE001
                    finish(i, e)
        pool.shutdown(wait=True)
        manifest.write()
        raise SweepInterrupted(sweep_dir) from None
    pool.shutdown(wait=True)


def _run_dask(todo, args_of, finish, workers, client, bar, progress) -> None:
    """The points as Dask tasks: on ``client`` (connected by :func:`_connect_dask`), else on a
    LocalCluster of ``workers`` single-threaded worker processes."""
    import contextlib

    from distributed import Client, LocalCluster, as_completed

    with contextlib.ExitStack() as stack:
        if client is None:
            cluster = stack.enter_context(
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
            )
            client = stack.enter_context(Client(cluster))
        if progress:
            print(f"lfakit sweep: Dask dashboard {client.dashboard_link}", file=sys.stderr)
        futures = {}
        for i in todo:
            args, kw = args_of(i)
            futures[client.submit(run_point, *args, **kw, pure=False)] = i
        for fut in bar(as_completed(list(futures))):
            i = futures[fut]
            try:
                finish(i, fut.result())
            except Exception as e:  # noqa: BLE001 - the worker died, the task was cancelled, ...
                finish(i, e)


def _run_slurm(todo, args_of, finish, experiment, slurm, timeout, workers, cluster, sweep_dir, bar) -> None:
    import submitit
    from submitit.helpers import as_completed

    ex = submitit.AutoExecutor(folder=str(sweep_dir / "submitit"), cluster=cluster)  # checked: check_cluster
    ex.update_parameters(**_slurm_parameters(experiment, slurm, timeout, workers))
    submitted = []
    with ex.batch():
        for i in todo:
            args, kw = args_of(i)
            submitted.append((i, ex.submit(run_point, *args, **kw)))
    index = {id(job): i for i, job in submitted}
    poll = 1.0 if ex.cluster in ("local", "debug") else 15.0
    for job in bar(as_completed([job for _, job in submitted], poll_frequency=poll)):
        i = index[id(job)]
        try:
            finish(i, job.result())
        except Exception as e:  # noqa: BLE001 - the job failed outside run_point (time limit, node failure)
            finish(i, e)
