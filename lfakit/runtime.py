"""Process-wide run settings below the engine: seeding, CPU threads, float precision, progress.

Every layer that trains or samples (data generators, the engine, the CF-Ensemble trainers) uses
these, so they import nothing of the kit's but its errors.

Precision and portability. In float32, CPU training runs vectorised kernels whose rounding
depends on the instruction set (AVX2 vs AVX-512: different kernels, different reduction
widths), and training amplifies a difference in the 7th digit into one in the 3rd within a
few hundred steps. In float64 the AVX2 and AVX-512 kernels give identical results, and the
remaining last-bit differences of the non-vectorised kernels (``ATEN_CPU_CAPABILITY=default``,
which are compiled without fused multiply-add) start ~10^-16 and stay far below the printed
precision over a smoke run. For that to hold, the *initial weights* must also be drawn in
float64: a float32 draw differs by one float32 ulp (~10^-8) between FMA and non-FMA builds,
which grows into visible differences. :func:`default_dtype` makes a model's constructor draw
its initial weights directly in the training precision.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time

import numpy as np
import torch

PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; make CPU (and, best effort, CUDA) kernels deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def set_threads(num_threads: int) -> None:
    """Fix the intra-op thread count (0 leaves torch's default); fixed counts keep CPU runs repeatable."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)


def dtype_of(precision: str | torch.dtype | None) -> torch.dtype:
    """``"float32"`` / ``"float64"`` (or a dtype, or None for float32) as a torch dtype."""
    if precision is None:
        return torch.float32
    if isinstance(precision, torch.dtype):
        return precision
    try:
        return PRECISIONS[precision]
    except KeyError:
        from lfakit.errors import ParameterError

        raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}") from None


@contextlib.contextmanager
def default_dtype(precision: str | torch.dtype | None):
    """Within the block, new floating tensors (a model's parameters as it is built) default to
    ``precision``; the previous default is restored afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype_of(precision))
    try:
        yield
    finally:
        torch.set_default_dtype(old)


#: Under ``LFAKIT_PROGRESS=text``, a loop that runs longer than this many seconds also reports
#: every this many seconds (``LFAKIT_PROGRESS_INTERVAL`` overrides it); a shorter one reports once.
TEXT_INTERVAL = 60.0


def _in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (its stdout is a notebook cell's output)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class TextProgress:
    """Progress as whole lines of plain text, for an executed notebook and papermill's log: one
    line when the loop ends (``focal: 10/10 in 4.6 s (train_loss=0.036, val_auroc=0.86)``) and,
    while a loop runs longer than ``interval`` seconds, one line every ``interval`` seconds; never
    a carriage-return redraw, so a cell's output holds one line per loop, not one per step.

    In a Jupyter kernel the lines go to stdout (a notebook's plain output, not the red stderr
    block); elsewhere to stderr, as tqdm does. Takes tqdm's ``desc``, ``total``, ``initial``,
    ``unit`` and ``set_postfix``; other tqdm arguments are accepted and ignored."""

    def __init__(self, iterable=None, desc: str | None = None, total: int | None = None, initial: int = 0,
                 unit: str = "it", file=None, interval: float | None = None, **_tqdm_options):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable) + initial
        self.iterable, self.desc, self.total, self.unit = iterable, desc, total, unit
        self.n = self.initial = int(initial)
        self.postfix = ""
        self.file = file
        env = os.environ.get("LFAKIT_PROGRESS_INTERVAL")
        self.interval = float(env) if interval is None and env else (TEXT_INTERVAL if interval is None else interval)
        self.start = self.last = time.monotonic()
        self.closed = False

    def __len__(self):
        return self.total if self.total is not None else len(self.iterable)

    def __iter__(self):
        try:
            for item in self.iterable:
                try:
                    yield item
                except GeneratorExit:  # the loop stopped after this item (a break, early stopping)
                    self.n += 1
                    raise
                self.update()
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval and (self.total is None or self.n < self.total):
            self.last = now
            self._write(f"{_duration(now - self.start)} so far")

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._write(f"in {_duration(time.monotonic() - self.start)}")

    def _write(self, when: str) -> None:
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        unit = "" if self.unit == "it" else f" {self.unit}"
        resumed = f" (from {self.initial})" if self.initial else ""
        line = f"{self.desc + ': ' if self.desc else ''}{count}{unit}{resumed} {when}"
        if self.postfix:
            line += f" ({self.postfix})"
        out = self.file or (sys.stdout if _in_kernel() else sys.stderr)
        print(line, file=out, flush=True)


def progress(iterable, enabled: bool = True, **kw):
    """``iterable`` wrapped in a progress bar, or returned as it is when ``enabled`` is False.

    Interactively, a tqdm bar (``tqdm.auto``): in JupyterLab one widget bar per loop, in a
    terminal a bar on stderr. Under ``lfakit run`` and ``make notebooks``
    (``LFAKIT_PROGRESS=text``), a :class:`TextProgress`: whole lines of plain text, one per loop
    (more only for a loop longer than a minute), on stdout in a notebook, so the executed
    notebook and papermill's log read one line per loss. ``kw`` goes to tqdm (``desc``,
    ``total``, ``initial``, ...); the bar has ``set_postfix``."""
    if not enabled:
        return iterable
    if os.environ.get("LFAKIT_PROGRESS") == "text":  # set by `lfakit run`: plain text through papermill's log
        return TextProgress(iterable, **kw)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kw)
