"""Forward+backward time of every multi-class loss against a plain reference, same run.

    python benchmarks/bench_losses_multiclass.py [--batch 256] [--classes 10] [--rounds 41]

References: PyTorch's ``nn.CrossEntropyLoss`` module for ``ce`` (and its label-smoothed form)
and inside the flooding reference (the built-in that the kit's loss module replaces in a
training loop: module against module); for the others the formula written plainly with
``softmax`` (no log-space tricks, no input checks), vectorised over the batch. Each reference
is also checked to give the same value as the kit's loss on the benchmark input (column
``max |diff|``).

The kit's losses validate every call: shapes and dtypes in Python, and (with the value checks
on, the default) the label range, one ``torch.aminmax`` and one device-to-host transfer. So
each loss is timed with the kit's value checks off (``lfakit.losses.value_checks(False)``) --
the computation, like for like, bound 1.10 on the ratio to the reference -- and with them on;
the difference (the checks' cost per call) is reported as a share of one training step of the
CIFAR/digits smoke profile's model, ``build_model("tiny_cnn", 10, in_chans=1,
precision="float64")`` on a batch of 64 x 1 x 8 x 8 float64 images (forward,
``nn.CrossEntropyLoss``, backward, AdamW step; same thread count), bound 1%. The check is
timed on the table's batch (default 256 labels, more than the smoke batch's 64, so if anything
the share is overstated).

Timing: single thread, CPU, float32 logits, B=256, K=10; the three sides timed in interleaved
blocks of CPU time, median over ``--rounds`` rounds (the method: ``_timing.py``).
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn

import lfakit.losses as L
from lfakit.models import build_model

from _timing import (
    LIMIT,
    Tally,
    add_timing_args,
    check_cells,
    check_share,
    ratio_cells,
    setup_line,
    step_line,
    step_seconds,
    time_pair,
    training_step,
)


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


#: the CIFAR/digits smoke profile: model, batch, loss of the training step
SMOKE = "tiny_cnn, 10 classes, 64 x 1 x 8 x 8 float64, CrossEntropyLoss + AdamW"


def smoke_step():
    torch.manual_seed(0)
    model = build_model("tiny_cnn", 10, in_chans=1, precision="float64")
    x = torch.randn(64, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (64,))
    return training_step(model, nn.CrossEntropyLoss(), x, y)


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

    step = step_seconds(smoke_step(), args.step_rounds, args.block)
    print(f"multi-class losses, forward+backward, B={args.batch} x K={args.classes}, float32, "
          + setup_line(args.rounds))
    print(step_line(SMOKE, step))
    header = (f"{'loss':<12} {'ref ms':>8} {'off ms':>8} {'off/ref':>7} {'IQR':>11} "
              f"{'on ms':>8} {'on/ref':>6} {'IQR':>11} {'check us':>8} {'share':>7} "
              f"{'share IQR':>13} {'verdict':<8} {'max |diff|':>10}")
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
        share = check_share(res, step)
        print(f"{label:<12} {res['ref'] * 1e3:>8.4f} {res['off']['ours'] * 1e3:>8.4f} "
              f"{ratio_cells(res['off'])} {res['ours'] * 1e3:>8.4f} {ratio_cells(res)} "
              f"{check_cells(res, share)} {tally.judge(label, res['off'], share=share):<8} "
              f"{diff:>10.1e}")
    print(f"bounds: off/ref <= {LIMIT}, share <= 1%; {tally.summary()}")


if __name__ == "__main__":
    main()
