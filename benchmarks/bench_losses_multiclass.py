"""Forward+backward time of every multi-class loss against a plain reference, same run.

References: ``F.cross_entropy`` for ``ce`` (and its label-smoothed form); for the others the
formula written plainly with ``softmax`` (no log-space tricks), vectorised over the batch.
Each reference is also checked to give the same value as the kit's loss on the benchmark
input. Single thread, CPU, float32, B=256, K=10; the time is the median over rounds of the
mean of ``--number`` forward+backward calls, with ours and the reference interleaved.

    python benchmarks/bench_losses_multiclass.py [--batch 256] [--classes 10] [--rounds 15]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

import lfakit.losses as L


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


# name -> (kwargs, reference per-sample loss, or a full-batch scalar reference for flooding)
REFERENCES = {
    "ce": ({}, lambda z, y: F.cross_entropy(z, y)),
    "ce (ls=0.1)": ({"label_smoothing": 0.1},
                    lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1)),
    "focal_ce": ({}, lambda z, y: (-(1 - _py(z, y)) ** 2 * torch.log(_py(z, y))).mean()),
    "mae": ({}, lambda z, y: (torch.softmax(z, 1) - F.one_hot(y, z.shape[1])).abs().sum(1).mean()),
    "gce": ({}, lambda z, y: ((1 - _py(z, y).clamp(min=1e-7) ** 0.7) / 0.7).mean()),
    "rce": ({}, lambda z, y: _rce_plain(z, y).mean()),
    "sce": ({}, lambda z, y: (0.1 * _ce_plain(z, y) + _rce_plain(z, y)).mean()),
    "nce": ({}, lambda z, y: _nce_plain(z, y).mean()),
    "nce_rce": ({}, lambda z, y: (_nce_plain(z, y) + _rce_plain(z, y)).mean()),
    "phuber_ce": ({}, lambda z, y: _phuber_plain(z, y).mean()),
    "logit_clip": ({}, lambda z, y: _ce_plain(_clip_plain(z), y).mean()),
    "logit_norm": ({}, lambda z, y: _ce_plain(z / (0.04 * (z.norm(dim=1, keepdim=True) + 1e-7)),
                                              y).mean()),
    "flooding": ({}, lambda z, y: (F.cross_entropy(z, y) - 0.1).abs() + 0.1),
}


def _time(fn, z, y, number):
    t0 = time.perf_counter()
    for _ in range(number):
        z.grad = None
        fn(z, y).backward()
    return (time.perf_counter() - t0) / number * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--number", type=int, default=200)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    z = (torch.randn(args.batch, args.classes) * 3).requires_grad_(True)
    y = torch.randint(0, args.classes, (args.batch,))

    print(f"torch {torch.__version__}, 1 thread, float32, B={args.batch}, K={args.classes}; "
          f"forward+backward, median of {args.rounds} rounds x {args.number} calls")
    print(f"{'loss':<13}{'ours ms':>9}{'ref ms':>9}{'ratio':>8}{'max |diff|':>12}")
    for label, (kw, ref) in REFERENCES.items():
        name = label.split()[0]
        ours = L.build(name, **kw)
        diff = (ours(z, y) - ref(z, y)).abs().item()
        for fn in (ours, ref):  # warm up
            _time(fn, z, y, 20)
        t_ours, t_ref = [], []
        for _ in range(args.rounds):
            t_ours.append(_time(ours, z, y, args.number))
            t_ref.append(_time(ref, z, y, args.number))
        a, b = statistics.median(t_ours), statistics.median(t_ref)
        print(f"{label:<13}{a:>9.4f}{b:>9.4f}{a / b:>8.2f}{diff:>12.1e}")


if __name__ == "__main__":
    main()
