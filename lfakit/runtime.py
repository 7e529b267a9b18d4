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


def progress(iterable, enabled: bool = True, **kw):
    """``iterable`` wrapped in a tqdm progress bar (``tqdm.auto``: a widget in JupyterLab), or
    returned as it is when ``enabled`` is False. Under ``lfakit run`` (``LFAKIT_PROGRESS=text``)
    the bar is plain text, so it reads well in the executed notebook and papermill's log.
    ``kw`` goes to tqdm (``desc``, ``total``, ...)."""
    if not enabled:
        return iterable
    if os.environ.get("LFAKIT_PROGRESS") == "text":  # set by `lfakit run`: plain text through papermill's log
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, **kw)
