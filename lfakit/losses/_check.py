"""Hold a loss -- a user's, or one of the library's -- to what the library's own tests demand of
every loss (``tests/test_losses_*.py``, ``tests/test_loss_value_checks.py``), one verdict per check.

=====================  =====================================================================
check                  passes when
=====================  =====================================================================
shapes and dtypes      the default build returns a 0-dim tensor in the inputs' float dtype
                       (float32 and float64); ``reduction="none"`` one value per sample,
                       element or pair (IQA set-wise: a 0-dim value); targets of another
                       batch size (one row) are refused, not broadcast; IQA ``(N, 1)`` predictions give
                       the ``(N,)`` value
float64 gradcheck      ``torch.autograd.gradcheck`` at random float64 logits, and the gradient
                       is not zero everywhere (a step function's is)
extreme logits         value and gradient finite at |z| = 1e4 in float32, and under bf16
                       autocast with logits above 1e3 (evaluated in float32)
degenerate batches     finite value and gradient -- or a clear ``ValueError`` -- for a batch
                       whose targets are all positive, all negative (multi-class: one class;
                       IQA: constant predictions), and for a batch of one sample
reductions             ``mean`` / ``sum`` equal the mean / sum of ``none``; the default is
                       ``mean``; ``reduction="avg"`` is refused
determinism            the same inputs give bit-identical values and gradients twice, with and
                       without autograd, and the inputs are not modified
CPU cost               forward + backward time against the task's reference loss (``bce``,
                       ``ce``, ``l1``) on a batch of 256 (IQA: 64); a warning above 10x, a
                       failure above ``max_cost`` (100x)
=====================  =====================================================================

``check_loss`` returns a :class:`CheckReport`; ``lfakit check-loss NAME`` prints it and exits
with status 1 if a check failed.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from lfakit.errors import ParameterError
from lfakit.losses._registry import TASKS, build, get, task_of

REFERENCE = {"multilabel": "bce", "multiclass": "ce", "iqa": "l1"}
CHECKS = ("shapes and dtypes", "float64 gradcheck", "extreme logits", "degenerate batches", "reductions",
          "determinism", "CPU cost")
HUGE = 1e4
# Arguments under which a loss's backward is the derivative of its value, for the gradcheck of
# a loss whose default backward is by design not (a user's class: a ``gradcheck_kwargs`` attribute).
GRADCHECK_KWARGS = {"asl": {"detach_focusing": False}}  # the authors' detached focusing weights


@dataclass
class Verdict:
    check: str
    status: str  # "pass" | "warn" | "fail" | "skip"
    detail: str

    def line(self) -> str:
        return f"  {self.status.upper():4}  {self.check:<19} {self.detail}"


@dataclass
class CheckReport:
    name: str
    task: str
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[str]:
        return [v.check for v in self.verdicts if v.status == "fail"]

    def __getitem__(self, check: str) -> Verdict:
        return next(v for v in self.verdicts if v.check == check)

    def __str__(self) -> str:
        head = f"check-loss {self.name} ({self.task})"
        tail = (f"verdict: PASS ({len(self.verdicts)} checks)" if self.ok else
                f"verdict: FAIL ({len(self.failed)} of {len(self.verdicts)} checks: {', '.join(self.failed)})")
        return "\n".join([head, *(v.line() for v in self.verdicts), tail])


class _Fail(Exception):
    pass


# --------------------------------------------------------------------------------------------- inputs


def _inputs(task: str, n: int, dtype=torch.float64, seed: int = 0, kind: str = "mixed", scale: float = 1.5):
    """(logits, targets) of ``task`` for a batch of ``n``: multi-label (n, 5) with 0/1 targets
    (``kind`` all_pos / all_neg), multi-class (n, 4) with labels (``one_class``), IQA (n,)
    predictions and MOS (``constant``: constant predictions)."""
    g = torch.Generator().manual_seed(seed)
    if task == "multilabel":
        z = torch.randn(n, 5, generator=g, dtype=torch.float64) * scale
        y = (torch.rand(n, 5, generator=g) < 0.4).to(torch.float64)
        y[0, 0], y[-1, -1] = 1.0, 0.0  # both kinds present
        if kind == "all_pos":
            y = torch.ones_like(y)
        elif kind == "all_neg":
            y = torch.zeros_like(y)
        return z.to(dtype), y.to(dtype)
    if task == "multiclass":
        z = torch.randn(n, 4, generator=g, dtype=torch.float64) * scale
        y = torch.randint(0, 4, (n,), generator=g)
        if kind == "one_class":
            y = torch.full((n,), 2, dtype=torch.long)
        return z.to(dtype), y
    z = torch.randn(n, generator=g, dtype=torch.float64) * scale
    y = 1.0 + 4.0 * torch.rand(n, generator=g, dtype=torch.float64)
    if kind == "constant":
        z = torch.full((n,), 0.5, dtype=torch.float64)
    return z.to(dtype), y.to(dtype)


def _huge(task: str, n: int = 6):
    z, y = _inputs(task, n, torch.float32, seed=1)
    signs = torch.where(torch.arange(z.numel()).reshape(z.shape) % 2 == 0, 1.0, -1.0)
    z = (signs * HUGE).to(torch.float32)
    if z.ndim == 2:
        z[1] = -z[1]
        z[-1, 0] = 0.0
    return z, y


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def _value_and_grad(loss: nn.Module, z: torch.Tensor, y: torch.Tensor):
    z = z.detach().clone().requires_grad_(True)
    v = loss(z, y)
    if not isinstance(v, torch.Tensor):
        raise _Fail(f"returned {type(v).__name__}, not a tensor")
    if not v.requires_grad:
        raise _Fail("the value does not depend differentiably on the logits (no gradient flows)")
    (g,) = torch.autograd.grad(v.sum(), z, allow_unused=True)
    if g is None:
        raise _Fail("no gradient reaches the logits")
    return v.detach(), g


# --------------------------------------------------------------------------------------------- checks


def _shapes(make: Callable, task: str, takes_reduction: bool) -> str:
    loss = make()
    notes = []
    for dtype in (torch.float32, torch.float64):
        z, y = _inputs(task, 6, dtype)
        v = loss(z, y)
        if not isinstance(v, torch.Tensor) or v.ndim != 0:
            raise _Fail(f"the default reduction gives {getattr(v, 'shape', type(v).__name__)}, not a 0-dim tensor")
        if v.dtype != dtype:
            raise _Fail(f"{dtype} logits give a {v.dtype} value")
    notes.append("0-dim value in the logits' dtype (float32, float64)")
    if takes_reduction:
        try:
            none = make(reduction="none")
        except (ParameterError, ValueError):
            none = None
        if none is not None:
            z, y = _inputs(task, 6)
            v = none(z, y)
            n = z.shape[0]
            ok = {"multilabel": v.shape in ((n, 5), (n,)), "multiclass": v.shape == (n,),
                  "iqa": v.ndim == 0 or (v.ndim == 1 and v.shape[0] in (n, n * (n - 1) // 2))}[task]
            if not ok:
                raise _Fail(f"reduction='none' gives shape {tuple(v.shape)} for a batch of {n}")
            notes.append(f"none -> {tuple(v.shape)}")
    z, y = _inputs(task, 6)
    try:
        bad = loss(z, y[:1])
    except Exception:  # noqa: BLE001 -- any refusal will do
        bad = None
    if bad is not None:
        raise _Fail("targets of one sample for a batch of 6 logits are accepted (broadcast), not refused")
    notes.append("mismatched targets refused")
    if task == "iqa":
        a, b = loss(z, y), loss(z[:, None], y)
        if b.shape != a.shape or not torch.equal(a, b):
            raise _Fail("(N, 1) predictions give another value than (N,) ones (broadcast to N x N?)")
    return "; ".join(notes)


def _gradcheck(make: Callable, task: str, extra: dict) -> str:
    loss = make(**extra)
    z, y = _inputs(task, 5, seed=3)
    v, g = _value_and_grad(loss, z, y)
    if not g.abs().max() > 0:
        raise _Fail("the gradient is zero everywhere (a step or a detached value: nothing to learn from)")
    try:
        torch.autograd.gradcheck(lambda x: loss(x, y), (z.clone().requires_grad_(True),), eps=1e-6, atol=1e-5,
                                 rtol=1e-3)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise _Fail(f"analytical and numerical gradients differ: {first}") from None
    with_ = f" with {', '.join(f'{k}={v!r}' for k, v in extra.items())} (its backward by design)" if extra else ""
    return f"at {tuple(z.shape)} float64 logits{with_}"


def _extreme(make: Callable, task: str) -> str:
    loss = make()
    z, y = _huge(task)
    v, g = _value_and_grad(loss, z, y)
    if not _finite(v) or not _finite(g):
        raise _Fail(f"at |z| = {HUGE:g} (float32) the value is {v.tolist() if v.ndim == 0 else 'not finite'}"
                    f"{'' if _finite(g) else ' and the gradient has NaN/inf'}")
    torch.manual_seed(0)
    layer = nn.Linear(8, z.shape[1] if z.ndim == 2 else 1)
    with torch.no_grad():
        layer.weight.mul_(3e3)
    x = torch.randn(6, 8)
    _, y6 = _inputs(task, 6, torch.float32, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        if task == "iqa":
            out = out[:, 0]
        v = loss(out, y6)
    v.backward()
    if not _finite(v) or not _finite(layer.weight.grad):
        raise _Fail(f"under bf16 autocast (logits up to {out.abs().max().item():.0f}) the value is {v.item()}"
                    f"{'' if _finite(layer.weight.grad) else ' and the gradient has NaN/inf'}")
    note = "" if v.dtype == torch.float32 else f" (the bf16 value is {v.dtype}, not float32)"
    return f"finite value and gradient at |z| = {HUGE:g} (float32) and under bf16 autocast{note}"


def _degenerate(make: Callable, task: str) -> str:
    loss = make()
    cases = {"multilabel": [("all positive", "all_pos", 6), ("all negative", "all_neg", 6), ("one sample", "mixed", 1)],
             "multiclass": [("one class", "one_class", 6), ("one sample", "mixed", 1)],
             "iqa": [("constant predictions", "constant", 6), ("one sample", "mixed", 1)]}[task]
    notes = []
    for what, kind, n in cases:
        z, y = _inputs(task, n, kind=kind, seed=5)
        try:
            v, g = _value_and_grad(loss, z, y)
        except ValueError as e:  # a clear refusal is what the library's set-wise losses do
            notes.append(f"{what}: refused ({str(e).splitlines()[0][:60]})")
            continue
        if not _finite(v) or not _finite(g):
            raise _Fail(f"{what}: the value is {v.item() if v.ndim == 0 else v.tolist()}"
                        f"{'' if _finite(g) else ', the gradient has NaN/inf'}")
        notes.append(f"{what}: finite")
    return "; ".join(notes)


def _reductions(make: Callable, task: str, takes_reduction: bool) -> tuple[str, str]:
    if not takes_reduction:
        return "warn", ("no reduction argument: per-sample losses (predict's sample_losses, the membership "
                        "attacks) cannot be computed")
    z, y = _inputs(task, 6, seed=7)
    default = make()(z, y)
    mean = make(reduction="mean")(z, y)
    if not torch.allclose(default, mean, rtol=1e-12, atol=0):
        raise _Fail(f"the default reduction gives {default.item():.6g}, reduction='mean' {mean.item():.6g}")
    try:
        make(reduction="avg")
    except (ParameterError, ValueError):
        pass
    else:
        raise _Fail("reduction='avg' is accepted; a loss should refuse an unknown reduction")
    try:
        none = make(reduction="none")(z, y)
    except (ParameterError, ValueError) as e:
        return "pass", f"defined on the batch mean only (reduction='none' refused: {str(e).splitlines()[0][:60]})"
    total = make(reduction="sum")(z, y)
    if not torch.allclose(mean, none.mean(), rtol=1e-10, atol=1e-12):
        raise _Fail(f"reduction='mean' gives {mean.item():.6g} but the mean of reduction='none' is {none.mean().item():.6g}")
    if none.ndim > 0 and not torch.allclose(total, none.sum(), rtol=1e-10, atol=1e-12):
        raise _Fail(f"reduction='sum' gives {total.item():.6g} but the sum of reduction='none' is {none.sum().item():.6g}")
    if none.ndim == 0 and not (none.item() == mean.item() == total.item()):
        raise _Fail("a set-wise value (0-dim for reduction='none') differs between reductions")
    return "pass", "default = mean; mean and sum of 'none' agree; 'avg' refused"


def _determinism(make: Callable, task: str) -> str:
    loss = make()
    z, y = _inputs(task, 6, seed=9)
    z0, y0 = z.clone(), y.clone()
    v1, g1 = _value_and_grad(loss, z, y)
    v2, g2 = _value_and_grad(loss, z, y)
    with torch.no_grad():
        v3 = loss(z, y)
    if not torch.equal(v1, v2) or not torch.equal(g1, g2):
        raise _Fail("two calls on the same inputs give different values or gradients")
    if not torch.equal(v1, v3):
        raise _Fail(f"the value under torch.no_grad() ({v3.item():.17g}) differs from the one with autograd ({v1.item():.17g})")
    if not torch.equal(z, z0) or not torch.equal(y, y0):
        raise _Fail("the loss modifies its inputs in place")
    return "bit-identical values and gradients; inputs untouched"


def _cost(make: Callable, task: str, repeats: int) -> float:
    loss = make()
    n = 64 if task == "iqa" else 256
    z, y = _inputs(task, n, torch.float32, seed=11)
    if task == "multiclass":
        z = torch.randn(n, 10, generator=torch.Generator().manual_seed(11))
        y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(12))
    elif task == "multilabel":
        z = torch.randn(n, 14, generator=torch.Generator().manual_seed(11))
        y = (torch.rand(n, 14, generator=torch.Generator().manual_seed(12)) < 0.3).float()
    z.requires_grad_(True)
    for _ in range(3):
        loss(z, y).backward()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss(z, y).backward()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


# --------------------------------------------------------------------------------------------- entry


def check_loss(loss, *, kwargs: dict | None = None, task: str | None = None, verbose: bool = True,
               timing: bool = True, repeats: int = 30, max_cost: float = 100.0) -> CheckReport:
    """Run every check on ``loss`` (a registered name, or an ``nn.Module`` class whose ``task``
    is given or a class attribute) built with ``kwargs``; print one verdict per check
    (``verbose``) and return the :class:`CheckReport` (``report.ok``, ``report.failed``).
    ``timing=False`` skips the CPU cost (it then reads ``skip``)."""
    kwargs = dict(kwargs or {})
    if isinstance(loss, str):
        name, cls, task = loss, get(loss), task_of(loss)

        def make(**extra):
            return build(name, **{**kwargs, **extra})
    elif isinstance(loss, type) and issubclass(loss, nn.Module):
        cls, name = loss, getattr(loss, "registry_name", None) or loss.__name__
        task = task or getattr(loss, "task", None)

        def make(**extra):
            return cls(**{**kwargs, **extra})
    else:
        raise ParameterError(f"check a registered loss name or an nn.Module class, got {loss!r}")
    if task not in TASKS:
        raise ParameterError(f"loss {name!r}: task must be one of {', '.join(TASKS)} (pass task=...), got {task!r}")
    params = inspect.signature(cls.__init__).parameters
    takes_reduction = "reduction" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
    report = CheckReport(name, task)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is fastest and the CPU cost is comparable
    try:
        _run_checks(report, make, cls, name, task, kwargs, takes_reduction, timing, repeats, max_cost)
    finally:
        torch.set_num_threads(threads)
    if verbose:
        print(report)
    return report


def _run_checks(report, make, cls, name, task, kwargs, takes_reduction, timing, repeats, max_cost) -> None:
    def run(check: str, fn: Callable) -> None:
        try:
            out = fn()
            status, detail = out if isinstance(out, tuple) else ("pass", out)
        except _Fail as e:
            status, detail = "fail", str(e)
        except Exception as e:  # noqa: BLE001 -- the check reports what the loss raised
            status, detail = "fail", f"raised {type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}"
        report.verdicts.append(Verdict(check, status, detail))

    run("shapes and dtypes", lambda: _shapes(make, task, takes_reduction))
    grad_kw = getattr(cls, "gradcheck_kwargs", None) or GRADCHECK_KWARGS.get(name, {})
    run("float64 gradcheck", lambda: _gradcheck(make, task, {k: v for k, v in grad_kw.items() if k not in kwargs}))
    run("extreme logits", lambda: _extreme(make, task))
    run("degenerate batches", lambda: _degenerate(make, task))
    run("reductions", lambda: _reductions(make, task, takes_reduction))
    run("determinism", lambda: _determinism(make, task))
    if timing:
        ref = REFERENCE[task]

        def cost():
            with torch.random.fork_rng():
                mine = _cost(make, task, repeats)
                base = _cost(lambda **e: build(ref, **e), task, repeats)
            ratio = mine / base
            detail = f"{ratio:.1f}x {ref} ({mine * 1e6:.0f} us vs {base * 1e6:.0f} us forward + backward, one CPU thread)"
            if ratio > max_cost:
                raise _Fail(detail + f"; above {max_cost:g}x")
            return ("warn" if ratio > 10 else "pass"), detail

        run("CPU cost", cost)
    else:
        report.verdicts.append(Verdict("CPU cost", "skip", "timing=False"))


__all__ = ["CHECKS", "CheckReport", "REFERENCE", "Verdict", "check_loss"]
