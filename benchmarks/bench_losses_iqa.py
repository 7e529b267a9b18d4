"""Forward+backward time of the IQA losses against a reference measured in the same run.

    python benchmarks/bench_losses_iqa.py [--n 64] [--rounds 41]

References (each checked to give the same value as the kit's loss before timing):

* ``l1`` / ``l2``: PyTorch's loss modules ``nn.L1Loss`` / ``nn.MSELoss`` (no input checks): the
  built-ins that the kit's loss modules replace in a training loop (module against module);
* ``plcc``, ``norm_in_norm``: a plain torch expression of the formula (``torch.corrcoef``,
  ``torch.linalg.vector_norm``), no input checks;
* the O(N^2) losses (``srcc``'s soft ranks, ``rank``, ``rank_mos``, ``fidelity``): a
  straightforward Python loop over the pairs building the loss from scalar torch ops, i.e. what
  the KonIQ-10k IQA study's pairwise formulas (and the field's MOS-signed rank loss) look like
  written naively. The kit computes all pairs at once on N x N tensors.
  The issue asks these to be at least 10x faster than the loop (column ``speed-up``); the
  others within 10% of their reference (column ``off/ref`` = ours, checks off / reference
  <= 1.10).

The kit's losses additionally validate every call (shapes, dtypes, MOS finite -- and not all
equal for the correlation losses: one ``torch.aminmax`` and one device-to-host transfer), which
the references do not. So each loss is timed with the kit's value checks off
(``lfakit.losses.value_checks(False)``) -- the computation, like for like, against the bounds
above -- and with them on; the difference (column ``check us``) is what the checks cost per
call. The kit has no IQA experiment and so no IQA smoke model: that cost is not expressed as a
share of a training step here (the multi-label and multi-class benchmarks do that).

Timing: one CPU thread, float32, batch N of predictions and MOS; the three sides timed in
interleaved blocks of CPU time (the method: ``_timing.py``), median over ``--rounds`` rounds.
The pairwise rows use a fifth of the rounds (their loop references take milliseconds per call
and the margin is large). ``verdict``: ``ok`` when the median ratio (checks off) is <= 1.10
(pairwise: speed-up >= 10), ``SLOW`` otherwise, with ``?`` appended when the interquartile
range of the per-round ratios straddles the bound (inconclusive at this noise level).
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

import lfakit.losses as L

from _timing import LIMIT, Tally, add_timing_args, check_cells, ratio_cells, setup_line, time_pair

TEMPERATURE = 0.1


# ------------------------------------------------------------------------------------------
# references
# ------------------------------------------------------------------------------------------
# PyTorch's loss modules, called as they are (a Python function around them would slow them)
ref_l1 = nn.L1Loss()
ref_l2 = nn.MSELoss()


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


def loop_rank_mos(p, q):
    n = p.shape[0]
    terms = []
    for i in range(n):
        for j in range(i + 1, n):
            s = 1.0 if q[i] > q[j] else (-1.0 if q[i] < q[j] else 0.0)
            terms.append(torch.relu(-s * (p[i] - p[j])))
    t = torch.stack(terms)
    return t.mean() / (1 + t.max())


def loop_fidelity(p, q, eps=1e-8):
    n = p.shape[0]
    terms = []
    for i in range(n):
        for j in range(i + 1, n):
            ph = torch.special.ndtr((p[i] - p[j]) / math.sqrt(2.0))
            pt = 1.0 if q[i] > q[j] else (0.5 if q[i] == q[j] else 0.0)
            terms.append(1 - torch.sqrt(pt * ph + eps) - torch.sqrt((1 - pt) * (1 - ph) + eps))
    return torch.stack(terms).mean()


# row label -> (kit loss name, reference label, reference fn, kind)
REFERENCES = {
    "l1": ("l1", "nn.L1Loss", ref_l1, "point-wise"),
    "l2": ("l2", "nn.MSELoss", ref_l2, "point-wise"),
    "plcc": ("plcc", "plain torch.corrcoef", ref_plcc, "set-wise"),
    "norm_in_norm": ("norm_in_norm", "plain vector_norm formula", ref_norm_in_norm, "set-wise"),
    "srcc": ("srcc", "per-pair Python loop", loop_srcc, "pairwise"),
    "rank": ("rank", "per-pair Python loop", loop_rank, "pairwise"),
    "rank_mos": ("rank_mos", "per-pair Python loop", loop_rank_mos, "pairwise"),
    "fidelity": ("fidelity", "per-pair Python loop", loop_fidelity, "pairwise"),
}

MIN_SPEEDUP = 10.0  # the bound on loop / ours for the pairwise losses (LIMIT for the others)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="batch size N")
    add_timing_args(ap)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    q = torch.rand(args.n) * 4 + 1  # MOS on a 1-5 scale
    p = (q + 0.5 * torch.randn(args.n)).requires_grad_(True)

    print(
        f"IQA losses, forward+backward, N={args.n}, float32, " + setup_line(args.rounds)
        + f" ({max(5, args.rounds // 5)} for pairwise)"
    )
    header = (
        f"{'loss':<13} {'kind':<10} {'ref ms':>10} {'off ms':>8} {'off/ref':>7} {'IQR':>11} "
        f"{'on/ref':>6} {'IQR':>11} {'check us':>8} {'speed-up':>8} {'verdict':<8} reference"
    )
    print(header)
    print("-" * (len(header) + 20))
    tally = Tally()
    for row, (name, label, ref_fn, kind) in REFERENCES.items():
        if args.only and row not in args.only:
            continue
        kw = {"temperature": TEMPERATURE} if name == "srcc" else {}
        ours_fn = L.build(name, **kw)
        with torch.no_grad():  # sanity: both compute the same value on these inputs
            a, b = ours_fn(p, q).item(), ref_fn(p, q).item()
        if abs(a - b) > 1e-4 * max(1.0, abs(b)):
            raise SystemExit(f"{name}: value {a} differs from the reference {b}")
        pairwise = kind == "pairwise"
        rounds = max(5, args.rounds // 5) if pairwise else args.rounds
        res = time_pair(ours_fn, ref_fn, p, q, rounds, args.block, warmup=3, ours_off=ours_fn)
        # pairwise: speed-up = 1 / ratio must be >= MIN_SPEEDUP
        v = tally.judge(row, res["off"], 1.0 / MIN_SPEEDUP if pairwise else LIMIT)
        print(
            f"{row:<13} {kind:<10} {res['ref'] * 1e3:>10.4f} {res['off']['ours'] * 1e3:>8.4f} "
            f"{ratio_cells(res['off'])} {ratio_cells(res)} {check_cells(res, None)[:8]} "
            f"{1 / res['off']['ratio']:>7.1f}x {v:<8} {label}"
        )
    print(f"bounds: off/ref <= {LIMIT}, pairwise speed-up (checks off) >= {MIN_SPEEDUP:g}x; "
          f"{tally.summary().split(';')[0]}")


if __name__ == "__main__":
    main()
