"""Run folders and papermill execution.

A run folder ``results/<experiment>/<run-id>/`` is the unit of record: the executed notebook,
the resolved parameters (``params.yaml``), ``environment.json``, and whatever the experiment
writes (``metrics.json``, ``predictions.npz``, figures, tables, checkpoints). Runs are never
overwritten; ``--resume`` continues one in place and keeps the earlier notebook beside it.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank runs the notebook, whose trainings are
collective (:mod:`lfakit.distributed`); rank 0 makes the run folder and the record, the others
run into a scratch folder that is deleted afterwards (:func:`run`).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lfakit.errors import DataError, LfakitError, ParameterError, close_matches
from lfakit.params import defaults, literal_default, load_yaml, validate

NOTEBOOK_NAME = "notebook.ipynb"
PARAMS_NAME = "params.yaml"
KERNEL = "python3"


class RunFailed(LfakitError):
    """A notebook cell raised; the partly executed notebook is kept in the run folder."""

    def __init__(self, message: str, run_dir: Path):
        super().__init__(message)
        self.run_dir = run_dir


def project_root() -> Path:
    """The checkout holding ``notebooks/`` and ``params/`` (the package's parent folder)."""
    here = Path(__file__).resolve().parents[1]
    if (here / "notebooks").is_dir():
        return here
    cwd = Path.cwd()
    for p in (cwd, *cwd.parents):
        if (p / "notebooks").is_dir() and (p / "params").is_dir():
            return p
    raise LfakitError("cannot find the lfakit project folder (with notebooks/ and params/); run from inside it")


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def results_root() -> Path:
    """``$LFAKIT_RESULTS`` if set, else ``<project>/results``."""
    env = os.environ.get("LFAKIT_RESULTS")
    return Path(env).expanduser().resolve() if env else project_root() / "results"


def experiments() -> list[str]:
    """Experiments that have both a notebook and a parameter schema (``lfakit.catalog.EXPERIMENTS``)."""
    from lfakit.catalog import EXPERIMENTS

    have = {p.stem for p in notebooks_dir().glob("*.ipynb")}
    return sorted(n for n in EXPERIMENTS if n in have)


def experiment_module(experiment: str):
    """The experiment's code, ``lfakit.experiments.<experiment>`` (imports torch)."""
    from lfakit.catalog import EXPERIMENTS

    _check_experiment(experiment)
    return EXPERIMENTS.get(experiment)


def _check_experiment(experiment: str) -> None:
    exps = experiments()
    if experiment not in exps:
        raise ParameterError(
            f"unknown experiment {experiment!r}.{close_matches(experiment, exps)} Experiments: {', '.join(exps)}."
        )


def profiles(experiment: str) -> list[str]:
    return sorted(p.stem for p in (project_root() / "params" / experiment).glob("*.yaml"))


def notebook_parameters(experiment: str) -> dict[str, dict[str, Any]]:
    """The notebook's parameters as papermill reads them from its ``parameters`` cell: name ->
    {type, default (Python value), help}. The cell is generated from the schema; a test keeps
    the two equal."""
    import papermill

    _check_experiment(experiment)
    info = papermill.inspect_notebook(str(notebooks_dir() / f"{experiment}.ipynb"))
    return {
        name: {
            "type": p["inferred_type_name"],
            "default": literal_default(p["default"]),
            "help": p["help"],
        }
        for name, p in info.items()
    }


def resolve_params(experiment: str, profile: str | None = "smoke", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Schema defaults (the notebook's parameters cell), then the profile file, then overrides;
    validated before any work starts."""
    _check_experiment(experiment)
    merged = defaults(experiment)
    if profile:
        path = project_root() / "params" / experiment / f"{profile}.yaml"
        if not path.exists():
            raise ParameterError(
                f"no profile {profile!r} for {experiment}.{close_matches(profile, profiles(experiment))} "
                f"Profiles: {', '.join(profiles(experiment))}."
            )
        merged.update(validate(experiment, load_yaml(path), partial=True))
    if overrides:
        merged.update(validate(experiment, overrides, partial=True))
    return validate(experiment, merged)


def check_results_root() -> Path:
    """The results root, made if needed and checked writable, before any work: a root that is a
    file or cannot be written stops with the path and the fix instead of a traceback."""
    import tempfile

    root = results_root()
    fix = "set LFAKIT_RESULTS to a folder you can write (e.g. LFAKIT_RESULTS=~/lfakit-results)"
    if root.exists() and not root.is_dir():
        raise LfakitError(f"the results root {root} is a file, not a folder; remove it or {fix}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as e:
        raise LfakitError(f"cannot write run folders under {root} ({e.strerror or e}); {fix}") from None
    return root


def new_run_dir(experiment: str, label: str = "") -> Path:
    """A fresh ``results/<experiment>/<timestamp>[-label]`` folder; never an existing one."""
    base = results_root() / experiment
    base.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = f"{stamp}-{label}" if label else stamp
    for i in range(1000):
        path = base / (stem if i == 0 else f"{stem}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise LfakitError(f"could not create a new run folder under {base}")  # pragma: no cover


def _git_commit(root: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip() or None, "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment_record(seed: int | None = None, device: str | None = None) -> dict[str, Any]:
    """Package versions, git commit, device, threads and seed: what a run depended on."""
    from importlib import metadata

    import torch

    versions = {}
    for pkg in ("lfakit", "torch", "torchvision", "numpy", "pandas", "scipy", "scikit-learn", "opencv-python-headless", "papermill", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "gpu": gpu,
        "device": device,
        "seed": seed,
        "packages": versions,
        "git": _git_commit(project_root()),
        "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def write_params(run_dir: Path, params: dict[str, Any]) -> Path:
    path = Path(run_dir) / PARAMS_NAME
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def open_run(experiment: str, params: dict[str, Any]) -> Path:
    """The run folder a notebook writes into (called from the notebook).

    Under ``lfakit run`` it is ``params['run_dir']``; run interactively (``run_dir=""``) it is a
    new ``results/<experiment>/<timestamp>-interactive`` folder. Writes ``params.yaml`` (when the
    runner has not) and ``environment.json``.
    """
    run_dir = Path(params["run_dir"]) if params.get("run_dir") else new_run_dir(experiment, "interactive")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / PARAMS_NAME).exists():
        write_params(run_dir, {**params, "run_dir": str(run_dir)})
    env = environment_record(params.get("seed"), params.get("device"))
    (run_dir / "environment.json").write_text(json.dumps(env, indent=2))
    return run_dir


@dataclass
class RunOutcome:
    experiment: str
    run_dir: Path
    notebook: Path
    resumed: bool
    already_complete: bool = False  # --resume of a finished run: nothing was run or changed


def _setup_logging() -> None:
    logger = logging.getLogger("papermill")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


KERNEL_LOG = "kernel.log"


def _kernel_manager_class(log_path: Path | None = None, opened: list | None = None):
    """A kernel manager talking to the kernel over IPC sockets in the temp folder (not TCP),
    with the kernel process's own stdout/stderr going to ``log_path``.

    Local kernels need no network; ipykernel warns on every start that TCP is unencrypted, and
    socket files under /tmp leave nothing behind in notebooks/ when a run is killed. What a cell
    prints reaches the notebook (and papermill's log) through the kernel's messages either way;
    the process-level streams carry only the kernel's own logging and C libraries' messages
    (libpng, OpenCV), which belong in the run folder's ``kernel.log``, not on the terminal,
    where they broke ``-q`` and turned a Ctrl-C into a ZMQ traceback.
    """
    import tempfile
    import uuid

    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            kw.setdefault("transport", "ipc")
            kw.setdefault("ip", os.path.join(tempfile.gettempdir(), f"lfakit-kernel-{uuid.uuid4().hex[:12]}"))
            super().__init__(**kw)

        async def _async_start_kernel(self, **kw):
            if log_path is not None:
                log = open(log_path, "ab")  # noqa: SIM115 - the kernel process writes to it; closed by execute
                if opened is not None:
                    opened.append(log)
                kw.setdefault("stdout", log)
                kw.setdefault("stderr", log)
            return await super()._async_start_kernel(**kw)

        start_kernel = _async_start_kernel

    return IPCKernelManager


class RunInterrupted(LfakitError):
    """The user stopped a run (Ctrl-C); it can be continued with ``--resume``."""

    def __init__(self, run_dir: Path):
        super().__init__(f"interrupted: {run_dir}")
        self.run_dir = run_dir


def execute(experiment: str, params: dict[str, Any], run_dir: Path, timeout: int | None = None, log_output: bool = True) -> Path:
    """Execute the experiment notebook with papermill into ``run_dir/notebook.ipynb``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = run_dir / NOTEBOOK_NAME
    if log_output:
        _setup_logging()
    env_before = os.environ.get("LFAKIT_PROGRESS")
    os.environ["LFAKIT_PROGRESS"] = "text"  # the kernel inherits it: plain-text progress in the log
    interrupted, logs = [], []
    levels = {name: logging.getLogger(name).level for name in ("asyncio", "nbclient", "papermill", "traitlets")}

    def quiet():
        # the kernel and the client's pending tasks die with the interrupt; their last words
        # (a dead-kernel error, "Task exception was never retrieved") are not the user's news
        for name in ("asyncio", "nbclient", "papermill", "traitlets"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)

    def on_sigint(signum, frame):  # Ctrl-C: note it, then let papermill unwind
        interrupted.append(True)
        quiet()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    try:
        papermill.execute_notebook(
            str(notebooks_dir() / f"{experiment}.ipynb"),
            str(out),
            parameters=params,
            kernel_name=KERNEL,
            cwd=str(notebooks_dir()),
            execution_timeout=timeout,
            log_output=log_output,
            progress_bar=False,
            request_save_on_cell_execute=True,
            kernel_manager_class=_kernel_manager_class(run_dir / KERNEL_LOG, logs),
        )
    except BaseException as e:
        if interrupted or isinstance(e, KeyboardInterrupt):
            quiet()
            raise RunInterrupted(run_dir) from None
        if not isinstance(e, PapermillExecutionError):
            raise
        # papermill's own index, as `lfakit report` numbers it ("failed at cell N"); its log counts from 1
        msg = f"cell {e.cell_index} (execution count {e.exec_count}) failed: {e.ename}: {e.evalue}"
        raise RunFailed(f"{msg}\nIn papermill's log (shown without -q) this cell is \"Executing Cell {e.cell_index + 1}\" (the log "
                        f"counts cells from 1). The partly executed notebook is kept at {out}", run_dir) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if not interrupted:  # the next run (run-all) logs as before; after a Ctrl-C there is none, and the
            # dying kernel's pending tasks may still log their errors as the process exits
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
        for f in logs:
            f.close()
        if env_before is None:
            os.environ.pop("LFAKIT_PROGRESS", None)
        else:
            os.environ["LFAKIT_PROGRESS"] = env_before
    return out


def preflight(experiment: str, params: dict[str, Any]) -> None:
    """The experiment's checks of what a run needs beyond its parameters (data on disk,
    pretrained weights), run before a run folder is made or a kernel is started. Experiments
    define them as ``preflight(P)`` in their module; the notebook's ``setup`` runs the same.
    A schema's torch-free ``check_inputs(P)`` runs first (then ``preflight(P, inputs_checked=True)``)."""
    from lfakit.params import schema_module

    # first what needs no torch (the device, data folders and their files): its errors come
    # at once, before the experiment's code (torch, torchvision) is imported
    fast = getattr(schema_module(experiment), "check_inputs", None)
    if fast is not None:
        fast(params)
    check = getattr(experiment_module(experiment), "preflight", None)
    if check is not None:
        if fast is not None:
            check(params, inputs_checked=True)
        else:
            check(params)
    from lfakit import distributed

    if distributed.world_size() > 1 and params.get("workers", 1) > 1:
        raise ParameterError(f"workers={params['workers']} trains models in a process pool, which cannot join a torchrun "
                             "training (each pool process would claim this rank); under torchrun use workers=1")


RUN_ID_PATTERN = re.compile(r"^\d{8}-\d{6}(?:-[A-Za-z0-9._-]+)?$")
RUN_ID_HELP = ("a run id is the name of one run folder under results/<experiment>/, as `lfakit run` prints it, "
               "e.g. 20261201-093000-smoke (YYYYMMDD-HHMMSS[-label])")


def _run_ids(experiment: str) -> list[str]:
    """The ids of the experiment's run folders (those holding ``params.yaml``), oldest first."""
    base = results_root() / experiment
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and (p / PARAMS_NAME).is_file())


def _known_runs(experiment: str, resume: str) -> str:
    have = _run_ids(experiment)
    if not have:
        return f" {experiment} has no runs under {results_root() / experiment} yet."
    latest = ", ".join(have[-5:][::-1])
    return f"{close_matches(resume, have)} Runs of {experiment} (newest first): {latest}{', ...' if len(have) > 5 else ''}."


def _other_experiment_hint(path: str) -> str:
    """How to continue a run given as a path like ``../iqa_losses/<id>``: under its own experiment."""
    parts = Path(path.replace("\\", "/")).parts
    if len(parts) >= 2 and parts[-2] in experiments():
        return f"To continue that run of {parts[-2]}: lfakit run {parts[-2]} --resume {parts[-1]}."
    return "To continue a run of another experiment, name that experiment: lfakit run <experiment> --resume <run-id>."


def resume_dir(experiment: str, resume: str) -> Path:
    """The folder of run ``resume`` of ``experiment``: a run id, never a path. Refused: an empty
    id, one with a path separator, ``.`` or ``..``, an absolute path, and a folder that resolves
    outside ``results/<experiment>/`` (a symlink) or holds no ``params.yaml``."""
    fix = f"{RUN_ID_HELP}."
    if not isinstance(resume, str) or not resume.strip():
        raise ParameterError(f"--resume needs a run id, got an empty one; {fix}{_known_runs(experiment, '')}")
    seps = {"/", "\\", os.sep, os.altsep} - {None}
    if resume in (".", "..") or any(c in resume for c in seps) or "\0" in resume or Path(resume).is_absolute():
        raise ParameterError(
            f"--resume takes a run id of {experiment}, not a path: {resume!r}; {fix} "
            f"{_other_experiment_hint(resume)}{_known_runs(experiment, Path(resume).name)}")
    base = results_root() / experiment
    run_dir = base / resume
    if not (run_dir / PARAMS_NAME).is_file():
        form = "" if RUN_ID_PATTERN.match(resume) else f" ({resume!r} does not even have a run id's form)"
        raise ParameterError(f"cannot resume {resume!r}: {experiment} has no run folder {run_dir} with {PARAMS_NAME}"
                             f"{form}; {fix}{_known_runs(experiment, resume)}")
    from lfakit.compare import REHEARSAL_FILE

    if (run_dir / REHEARSAL_FILE).exists():
        raise ParameterError(f"{resume!r} is a rehearsal (lfakit run --rehearse), not a run to continue; rehearse "
                             f"again, or start the real run: lfakit run {experiment} --profile <profile>")
    real = run_dir.resolve()
    if real.parent != base.resolve():
        raise ParameterError(f"cannot resume {resume!r}: {run_dir} is a link to {real}, outside {base.resolve()}; "
                             "a run is resumed only in its own folder under results/<experiment>/. Move the run folder "
                             "there in place of the link, or set LFAKIT_RESULTS to the results folder that holds it")
    return run_dir


def fixed_on_resume(experiment: str, resume: str, given: list[str]) -> ParameterError:
    """The error for options that cannot change on ``--resume`` (``-p``, ``--profile``): the run
    continues with the parameters it was started with."""
    what = " and ".join(given)
    return ParameterError(
        f"--resume continues run {resume!r} with the parameters it was started with "
        f"({results_root() / experiment / resume / PARAMS_NAME}); {what} cannot change on resume: drop "
        f"{'it' if len(given) == 1 else 'them'}, or start a new run without --resume")


def run_complete(run_dir: Path) -> bool:
    """Whether a run's record is complete: ``metrics.json`` and ``manifest.json`` (written last)
    are there and its notebook, if any, is not marked failed (as ``lfakit report`` reads it)."""
    from lfakit.record import MANIFEST, METRICS

    if not ((run_dir / METRICS).is_file() and (run_dir / MANIFEST).is_file()):
        return False
    nb_path = run_dir / NOTEBOOK_NAME
    if not nb_path.exists():
        return True
    try:
        nb = json.loads(nb_path.read_text())
    except (OSError, ValueError):
        return True  # the record is complete; only the notebook cannot be read
    if (nb.get("metadata", {}).get("papermill") or {}).get("exception"):
        return False
    return not any(c.get("metadata", {}).get("papermill", {}).get("status") == "failed" for c in nb.get("cells", []))


def _resume_params(experiment: str, resume: str, overrides: dict[str, Any] | None,
                   given: list[str] | None = None) -> tuple[Path, dict[str, Any]]:
    """The folder of run ``resume`` and its saved, validated parameters."""
    run_dir = resume_dir(experiment, resume)
    fixed = [f"-p {k}={v}" for k, v in (overrides or {}).items()] + list(given or [])
    if fixed:
        raise fixed_on_resume(experiment, resume, fixed)
    return run_dir, validate(experiment, load_yaml(run_dir / PARAMS_NAME))


def _run_other_rank(experiment: str, profile: str | None, overrides: dict[str, Any] | None, resume: str | None,
                    timeout: int | None, given: list[str] | None = None) -> RunOutcome:
    """:func:`run` on a torchrun rank other than 0: the same notebook with the same parameters, whose
    trainings are collective with rank 0's, executed into a scratch folder that is deleted
    afterwards, without streaming its output; the engine shows no progress there. Only rank 0
    makes a run folder and writes the record. Resuming, the scratch folder starts as a copy of
    rank 0's run folder without its checkpoints (which rank 0 alone reads), so that this rank
    skips exactly the trainings rank 0 skips."""
    import shutil
    import tempfile

    from lfakit import distributed

    if resume is not None:
        source, params = _resume_params(experiment, resume, overrides, given)
        if run_complete(source):  # rank 0 reports it and runs nothing; neither does this rank
            return RunOutcome(experiment, source, source / NOTEBOOK_NAME, True, already_complete=True)
    else:
        params = resolve_params(experiment, profile, overrides)
    preflight(experiment, params)
    me = distributed.rank()
    scratch = Path(tempfile.mkdtemp(prefix=f"lfakit-rank{me}-{experiment}-"))
    try:
        if resume is not None:
            shutil.copytree(source, scratch, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.pt", "*.ipynb", KERNEL_LOG))
        params["run_dir"] = str(scratch)
        params["resume"] = resume is not None
        write_params(scratch, params)
        try:
            notebook = execute(experiment, params, scratch, timeout, log_output=False)
        except RunFailed as e:
            raise RunFailed(f"rank {me} (its scratch copy is deleted; rank 0's run folder holds the record): {e}",
                            scratch) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return RunOutcome(experiment, scratch, notebook, resume is not None)


def _die_with_sweep() -> None:
    """Under ``lfakit sweep``: end this run, and every process it started, when the process
    that started it (the sweep, or the Dask or submitit worker running the point) is gone.

    The sweep sets ``LFAKIT_SWEEP_PARENT`` to its own pid in each point's environment. If that is
    this process's parent, a daemon thread polls ``os.getppid()`` every 0.2 s; once the parent
    has died (a SIGKILL included: this process is then re-parented, so the pid changes; a reused
    pid cannot fool it), the thread SIGKILLs this process's descendants, found through psutil by
    parent pid (the kernel, which jupyter_client starts in a session of its own, and what the
    kernel started), then this process. If the named process has died before this function runs
    (the sweep was killed while this process started), this process ends at once. Without the
    variable (a plain ``lfakit run``), or when it names a live process that is not the parent,
    nothing happens. Why a watchdog and not a process group or a parent-death signal: see
    "Killing a sweep" in :mod:`lfakit.sweep`."""
    raw = os.environ.pop("LFAKIT_SWEEP_PARENT", "")  # popped: the kernel and its children do not watch
    if not raw.isdigit():
        return
    parent = int(raw)
    if parent != os.getppid():
        import psutil

        if psutil.pid_exists(parent):  # not started by that process: nothing to watch
            return
        os.kill(os.getpid(), signal.SIGKILL)  # the sweep is already gone

    def watch() -> None:
        import time

        import psutil

        while os.getppid() == parent:
            time.sleep(0.2)
        try:
            tree = psutil.Process().children(recursive=True)
        except psutil.Error:
            tree = []
        for proc in tree:
            try:
                proc.kill()
            except psutil.Error:
                pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="lfakit-sweep-watchdog", daemon=True).start()


def _note_untrained_baseline(experiment: str, params: dict[str, Any]) -> None:
    """A one-loss run (a sweep point over losses) may name a baseline it does not train; say so,
    since its own comparison is then empty."""
    base, trained = params.get("baseline"), params.get("losses")
    if base and isinstance(trained, list) and base not in trained:
        print(f"lfakit: note: baseline {base!r} is not trained in this run (losses: {trained}), so the run compares "
              f"nothing itself; compare it with a run of {base!r} (lfakit compare <folder>), or add {base!r} to losses",
              file=sys.stderr)


def run(
    experiment: str,
    profile: str | None = "smoke",
    overrides: dict[str, Any] | None = None,
    resume: str | None = None,
    timeout: int | None = None,
    log_output: bool = True,
    given: list[str] | None = None,
) -> RunOutcome:
    """Validate parameters, check the data and weights (:func:`preflight`), make (or reopen)
    the run folder and execute the notebook.

    Under torchrun (``WORLD_SIZE`` > 1) rank 0 does all this; every other rank executes the
    same notebook into a scratch folder deleted afterwards (:func:`_run_other_rank`).

    ``resume`` is a run id of ``experiment`` (:func:`resume_dir`); the run continues with its
    saved parameters, so ``overrides`` and the command-line options in ``given`` (e.g.
    ``["--profile paper"]``) are refused with it. A run whose record is complete is not run
    again: the outcome says ``already_complete`` and nothing in its folder changes."""
    _die_with_sweep()
    _check_experiment(experiment)
    from lfakit import distributed

    if distributed.world_size() > 1 and not distributed.is_main():
        return _run_other_rank(experiment, profile, overrides, resume, timeout, given)
    if resume is not None:
        run_dir, params = _resume_params(experiment, resume, overrides, given)
        if run_complete(run_dir):
            from lfakit.record import verify_run

            damage = verify_run(run_dir)
            if damage:  # finished once, damaged since: resuming would run nothing and repair nothing
                raise DataError(f"run {resume!r} of {experiment} finished, but its record is damaged: "
                                f"{'; '.join(map(str, damage))}. --resume cannot repair a finished run; copy the "
                                f"folder again from where it came from, or start a new run with its parameters "
                                f"({run_dir / PARAMS_NAME})")
            return RunOutcome(experiment, run_dir, run_dir / NOTEBOOK_NAME, True, already_complete=True)
        preflight(experiment, params)
        params["resume"] = True
        old = run_dir / NOTEBOOK_NAME
        if old.exists():  # keep the interrupted attempt's notebook
            n = 1
            while (run_dir / f"notebook.attempt-{n}.ipynb").exists():
                n += 1
            old.rename(run_dir / f"notebook.attempt-{n}.ipynb")
    else:
        params = resolve_params(experiment, profile, overrides)
        check_results_root()
        preflight(experiment, params)
        _note_untrained_baseline(experiment, params)
        run_dir = new_run_dir(experiment, profile or "")
        params["run_dir"] = str(run_dir)
        params["resume"] = False
        write_params(run_dir, params)
    try:
        notebook = execute(experiment, params, run_dir, timeout, log_output)
    except KeyboardInterrupt:  # before execute's own handler was in place
        raise RunInterrupted(run_dir) from None
    return RunOutcome(experiment, run_dir, notebook, resume is not None)
