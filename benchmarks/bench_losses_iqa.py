"""Forward+backward time of the IQA losses against a reference measured in the same run.

    python benchmarks/bench_losses_iqa.py [--n 64] [--min-run-time 1] [--rounds 3]

References: for ``l1`` / ``l2``, ``F.l1_loss`` / ``F.mse_loss``; for the set-wise ``plcc`` and
``norm_in_norm`` a plain torch expression of the formula (``torch.corrcoef``,
``torch.linalg.vector_norm``); for the O(N^2) losses (``srcc``'s soft ranks, ``rank``,
``fidelity``) a straightforward Python loop over the pairs building the loss from scalar torch
ops, i.e. what the seed's pairwise formulas look like written naively. The kit computes all
pairs at once on N x N tensors. Before timing, each pair is checked to give the same value.

One CPU thread, float32, batch N of predictions and MOS; after a warm-up, ours and the
reference are timed in alternating rounds with ``torch.utils.benchmark.Timer.blocked_autorange``
and the minimum of the round medians is kept (robust to other processes sharing the CPU).
"""

from __future__ import annotations

import argparse
import math
import platform

import torch
import torch.nn.functional as F
from torch.utils import benchmark

import lfakit.losses as L

TEMPERATURE = 0.1


# ------------------------------------------------------------------------------------------
# references
# ------------------------------------------------------------------------------------------
def ref_l1(p, q):
    return F.l1_loss(p, q)


def ref_l2(p, q):
    return F.mse_loss(p, q)


def ref_plcc(p, q):
    return 1 - torch.corrcoef(torch.stack([p, q]))[0, 1]


def ref_norm_in_norm(p, q, pp=1.0, qq=2.0, eps=1e-8):
    n = p.shape[0]
    a = p - p.mean()
    a = a / (torch.linalg.vector_norm(a, ord=qq) + eps)
    b = q - q.mean()
    b = b / torch.linalg.vector_norm(b, ord=qq)
    s = 2 ** max(1, 1 / qq) * n ** max(0, 1 / pp - 1 / qq)
    return (torch.linalg.vector_norm(a - b, ord=pp) / s) ** pp


def _pearson(x, y):
    xc, yc = x - x.mean(), y - y.mean()
    return (xc * yc).sum() / torch.sqrt((xc * xc).sum() * (yc * yc).sum())


def loop_srcc(p, q, T=TEMPERATURE):
    n = p.shape[0]
    soft = []
    for i in range(n):
        r = 0.5
        for j in range(n):
            r = r + torch.sigmoid((p[i] - p[j]) / T)
        soft.append(r)
    qs = q.tolist()
    ranks = [sum(1.0 for b in qs if b < a) + (sum(1.0 for b in qs if b == a) + 1) / 2 for a in qs]
    return 1 - _pearson(torch.stack(soft), torch.tensor(ranks, dtype=p.dtype))


def loop_rank(p, q):
    n = p.shape[0]
    terms = []
    for i in range(n):
        for j in range(i + 1, n):
            e = 1.0 if p[i] >= p[j] else -1.0
            terms.append(torch.relu(torch.abs(p[i] - p[j]) - e * (q[i] - q[j])))
    return torch.stack(terms).mean()


def loop_fidelity(p, q, eps=1e-8):
    n = p.shape[0]
    terms = []
    for i in range(n):
        for j in range(i + 1, n):
            ph = torch.special.ndtr((p[i] - p[j]) / math.sqrt(2.0))
            pt = 1.0 if q[i] > q[j] else (0.5 if q[i] == q[j] else 0.0)
            terms.append(1 - torch.sqrt(pt * ph + eps) - torch.sqrt((1 - pt) * (1 - ph) + eps))
    return torch.stack(terms).mean()


# name -> (reference label, reference fn, kind)
REFERENCES = {
    "l1": ("F.l1_loss", ref_l1, "point-wise"),
    "l2": ("F.mse_loss", ref_l2, "point-wise"),
    "plcc": ("plain torch.corrcoef", ref_plcc, "set-wise"),
    "norm_in_norm": ("plain vector_norm formula", ref_norm_in_norm, "set-wise"),
    "srcc": ("per-pair Python loop", loop_srcc, "pairwise"),
    "rank": ("per-pair Python loop", loop_rank, "pairwise"),
    "fidelity": ("per-pair Python loop", loop_fidelity, "pairwise"),
}


def _fwd_bwd(fn, p, q):
    def step():
        p.grad = None
        fn(p, q).backward()

    return step


def time_pair(ours, ref, p, q, min_run_time: float, rounds: int) -> tuple[float, float]:
    """Seconds per forward+backward of ``ours`` and ``ref`` (min over alternating rounds of
    each round's median)."""
    steps = [_fwd_bwd(ours, p, q), _fwd_bwd(ref, p, q)]
    for step in steps:  # warm-up
        for _ in range(3):
            step()
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for k, step in enumerate(steps):
            timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=1)
            run = timer.blocked_autorange(min_run_time=min_run_time / rounds)
            best[k] = min(best[k], run.median)
    return best[0], best[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="batch size N")
    ap.add_argument("--min-run-time", type=float, default=1.0, help="seconds per loss and side")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (min is kept)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    q = torch.rand(args.n) * 4 + 1  # MOS on a 1-5 scale
    p = (q + 0.5 * torch.randn(args.n)).requires_grad_(True)

    print(
        f"IQA losses, forward+backward, N={args.n}, float32, CPU 1 thread, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    header = f"{'loss':<13} {'kind':<10} {'ours ms':>9} {'ref ms':>10} {'speed-up':>9}  reference"
    print(header)
    print("-" * (len(header) + 16))
    for name, (label, ref_fn, kind) in REFERENCES.items():
        kw = {"temperature": TEMPERATURE} if name == "srcc" else {}
        ours_fn = L.build(name, **kw)
        with torch.no_grad():  # sanity: both compute the same value on these inputs
            a, b = ours_fn(p, q).item(), ref_fn(p, q).item()
        if abs(a - b) > 1e-4 * max(1.0, abs(b)):
            raise SystemExit(f"{name}: value {a} differs from the reference {b}")
        t_ours, t_ref = time_pair(ours_fn, ref_fn, p, q, args.min_run_time, args.rounds)
        t_ours, t_ref = t_ours * 1e3, t_ref * 1e3
        print(f"{name:<13} {kind:<10} {t_ours:>9.4f} {t_ref:>10.4f} {t_ref / t_ours:>8.1f}x  "
              f"{label}")


if __name__ == "__main__":
    main()
