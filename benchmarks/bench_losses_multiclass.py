"""Forward+backward time of every multi-class loss against a plain reference, same run.

    python benchmarks/bench_losses_multiclass.py [--batch 256] [--classes 10] [--rounds 41]

References: PyTorch's ``nn.CrossEntropyLoss`` module for ``ce`` (and its label-smoothed form)
and inside the flooding reference (the built-in that the kit's loss module replaces in a
training loop: module against module); for the others the formula written plainly with
``softmax`` (no log-space tricks, no input checks), vectorised over the batch. Each reference
is also checked to give the same value as the kit's loss on the benchmark input (column
``max |diff|``).

The kit's losses validate every call: shapes and dtypes in Python, and the label range,
which on the CPU is the index check of PyTorch's own kernels (``nll_loss``, ``gather``; the
kit turns their error into its own message), so no extra reduction. The columns ``off`` time
the same losses with the kit's value checks off (``lfakit.losses.value_checks(False)``), which
on the CPU changes nothing for these losses; on a GPU the checks read the labels first.

Timing: single thread, CPU, float32, B=256, K=10; ours and the reference timed in interleaved
blocks of CPU time, median over ``--rounds`` rounds, ``verdict`` against the bound 1.10 on the
median ratio ours/reference (the method: ``_timing.py``).
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn

import lfakit.losses as L

from _timing import LIMIT, Tally, add_timing_args, off_ms_cell, ratio_cells, setup_line, time_pair


def _py(z, y):
    return torch.softmax(z, dim=1).gather(1, y[:, None]).squeeze(1)


def _ce_plain(z, y):
    return -torch.log(_py(z, y))


def _rce_plain(z, y, a=-4.0):
    p = torch.softmax(z, dim=1)
    onehot = F.one_hot(y, z.shape[1]).to(z.dtype)
    log_q = torch.where(onehot > 0, torch.zeros_like(p), torch.full_like(p, a))
    return -(p * log_q).sum(1)


def _nce_plain(z, y):
    p = torch.softmax(z, dim=1)
    return -torch.log(_py(z, y)) / -torch.log(p).sum(1)


def _phuber_plain(z, y, tau=10.0):
    p = _py(z, y)
    return torch.where(p <= 1 / tau, -tau * p + math.log(tau) + 1, -torch.log(p))


def _clip_plain(z, delta=1.0):
    n = z.norm(dim=1, keepdim=True)
    return torch.where(n > delta, delta * z / n, z)


# PyTorch's loss modules, called as they are (a Python function around them would slow them)
_ce = nn.CrossEntropyLoss()
_ce_ls = nn.CrossEntropyLoss(label_smoothing=0.1)


def _flood(z, y):
    return (_ce(z, y) - 0.1).abs() + 0.1


# row label -> (kit loss name, kwargs, reference)
REFERENCES = {
    "ce": ("ce", {}, _ce),
    "ce (ls=0.1)": ("ce", {"label_smoothing": 0.1}, _ce_ls),
    "focal_ce": ("focal_ce", {},
                 lambda z, y: (-(1 - _py(z, y)) ** 2 * torch.log(_py(z, y))).mean()),
    "mae": ("mae", {},
            lambda z, y: (torch.softmax(z, 1) - F.one_hot(y, z.shape[1])).abs().sum(1).mean()),
    "gce": ("gce", {}, lambda z, y: ((1 - _py(z, y).clamp(min=1e-7) ** 0.7) / 0.7).mean()),
    "rce": ("rce", {}, lambda z, y: _rce_plain(z, y).mean()),
    "sce": ("sce", {}, lambda z, y: (0.1 * _ce_plain(z, y) + _rce_plain(z, y)).mean()),
    "nce": ("nce", {}, lambda z, y: _nce_plain(z, y).mean()),
    "nce_rce": ("nce_rce", {}, lambda z, y: (_nce_plain(z, y) + _rce_plain(z, y)).mean()),
    "phuber_ce": ("phuber_ce", {}, lambda z, y: _phuber_plain(z, y).mean()),
    "logit_clip": ("logit_clip", {}, lambda z, y: _ce_plain(_clip_plain(z), y).mean()),
    "logit_norm": ("logit_norm", {}, lambda z, y: _ce_plain(
        z / (0.04 * (z.norm(dim=1, keepdim=True) + 1e-7)), y).mean()),
    "flooding": ("flooding", {}, _flood),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--classes", type=int, default=10)
    add_timing_args(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    z = (torch.randn(args.batch, args.classes) * 3).requires_grad_(True)
    y = torch.randint(0, args.classes, (args.batch,))

    print(f"multi-class losses, forward+backward, B={args.batch} x K={args.classes}, float32, "
          + setup_line(args.rounds))
    header = (f"{'loss':<19}{'ours ms':>9}{'ref ms':>9}{'ratio':>7} {'ratio IQR':>11} "
              f"{'off ms':>8} {'off':>6} {'off IQR':>11} {'verdict':<10}{'max |diff|':>10}")
    print(header)
    print("-" * len(header))
    tally = Tally()
    for label, (name, kw, ref) in REFERENCES.items():
        if args.only and label not in args.only:
            continue
        ours = L.build(name, **kw)
        with torch.no_grad():
            diff = (ours(z, y) - ref(z, y)).abs().item()
        if diff > 1e-4:
            raise SystemExit(f"{label}: differs from the reference by {diff}")
        res = time_pair(ours, ref, z, y, args.rounds, args.block, ours_off=ours)
        print(f"{label:<19}{res['ours'] * 1e3:>9.4f}{res['ref'] * 1e3:>9.4f} {ratio_cells(res)} "
              f"{off_ms_cell(res)} {ratio_cells(res['off'])} {tally.judge(label, res):<10}"
              f"{diff:>10.1e}")
    print(f"median ratio above {LIMIT}, {tally.summary()}")


if __name__ == "__main__":
    main()
