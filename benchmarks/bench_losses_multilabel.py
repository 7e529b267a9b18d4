"""Forward+backward time of the multi-label losses against a reference measured in the same run.

    python benchmarks/bench_losses_multilabel.py [--batch 256] [--classes 14] [--rounds 41]

References (each checked to give the same value as the kit's loss before timing):

* ``bce``: PyTorch's ``nn.BCEWithLogitsLoss`` module (no input checks): the built-in that the
  kit's loss module replaces in a training loop (module against module);
* ``focal``: ``torchvision.ops.sigmoid_focal_loss`` (alpha=-1, gamma=2, as the kit's default);
* every other loss: the formula written the obvious way, one torch op per term of the
  formula sheet, element-wise over the (B, C) batch (``naive_*`` below): no input checks, no
  stability measures (no masking with -inf, no log-sum-exp, no cast-up, ``1 - sigmoid``
  differences; ZLPR's sums of ``exp(+-z)`` overflow for |z| > 88 in float32, where the kit
  switches to its stable form). ``soft_zlpr`` is timed on soft targets, the others on 0/1
  targets with about 20% positives.

The kit's losses additionally validate every call (shapes, dtype, target values: one fused
reduction and one device-to-host transfer), which the references do not. For the single-op
reference (``bce``) the table adds a row ``bce (ref + check)`` whose reference is
``nn.BCEWithLogitsLoss`` preceded by the same target-range check written plainly
(``torch.aminmax`` of the targets, then ``.item()``), so that the cost of the computation and
the cost of the check can be told apart. Every raw row is also timed with the kit's value
checks off (``lfakit.losses.value_checks(False)``; columns ``off``), against the same reference.

Timing: one CPU thread, float32; ours and the reference timed in interleaved blocks of CPU
time, median over ``--rounds`` rounds, ``verdict`` against the bound 1.10 on the median ratio
ours/reference (the method: ``_timing.py``).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from torchvision.ops import sigmoid_focal_loss

import lfakit.losses as L
from lfakit.losses._base import check_multilabel
from lfakit.losses.multilabel import EXP_CE_CLAMP

from _timing import (
    LIMIT,
    add_timing_args,
    cpu_seconds_per_call,
    Tally,
    off_ms_cell,
    ratio_cells,
    setup_line,
    time_pair,
)


# ------------------------------------------------------------------------------------------
# naive references (same formulas, written the obvious way)
# ------------------------------------------------------------------------------------------
def naive_asl(z, y, gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8):
    p = torch.sigmoid(z)
    q = (1 - p + clip).clamp(max=1)
    w_pos = ((1 - p) ** gamma_pos).detach()
    w_neg = ((1 - q) ** gamma_neg).detach()
    loss = y * w_pos * torch.log(p.clamp(min=eps)) + (1 - y) * w_neg * torch.log(q.clamp(min=eps))
    return -loss.mean()


def naive_zlpr(z, y):
    neg = torch.log(1 + ((1 - y) * torch.exp(z)).sum(1))
    pos = torch.log(1 + (y * torch.exp(-z)).sum(1))
    return (neg + pos).mean()


def naive_fzlpr(z, y, tau=0.2):
    return naive_zlpr(z / tau, y)


def naive_exp_ce(z, y, c=EXP_CE_CLAMP):
    z = z.clamp(-c, c)
    return (y * torch.exp(-z) + (1 - y) * torch.exp(z)).mean()


def naive_f_ece(z, y, gamma=2.0, c=EXP_CE_CLAMP):
    z = z.clamp(-c, c)
    p = torch.sigmoid(z)
    return (y * torch.exp(-z) + (1 - y) * p**gamma * torch.log(1 + torch.exp(z))).mean()


def torchvision_focal(z, y):
    return sigmoid_focal_loss(z, y, alpha=-1, gamma=2.0, reduction="mean")


# PyTorch's loss module, called as it is (a Python function around it would slow it)
bce_reference = nn.BCEWithLogitsLoss()


def bce_reference_checked(z, y):
    """The reference preceded by a plain target-range check (what the kit's bce validates)."""
    lo, hi = torch.aminmax(y)
    if not (lo.item() >= 0 and hi.item() <= 1):
        raise ValueError("targets must lie in [0, 1]")
    return bce_reference(z, y)


# row label -> (kit loss name, reference label, reference fn, soft targets?)
REFERENCES = {
    "bce": ("bce", "nn.BCEWithLogitsLoss", bce_reference, False),
    "bce (ref + check)": ("bce", "the same + aminmax target check", bce_reference_checked, False),
    "focal": ("focal", "torchvision sigmoid_focal_loss", torchvision_focal, False),
    "asl": ("asl", "naive element-wise", naive_asl, False),
    "zlpr": ("zlpr", "naive element-wise", naive_zlpr, False),
    "soft_zlpr": ("soft_zlpr", "naive element-wise", naive_zlpr, True),
    "fzlpr": ("fzlpr", "naive element-wise", naive_fzlpr, False),
    "exp_ce": ("exp_ce", "naive element-wise", naive_exp_ce, False),
    "f_ece": ("f_ece", "naive element-wise", naive_f_ece, False),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--classes", type=int, default=14)
    add_timing_args(ap)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    z = (torch.randn(args.batch, args.classes) * 3).requires_grad_(True)
    y_hard = (torch.rand(args.batch, args.classes) < 0.2).float()
    y_soft = torch.rand(args.batch, args.classes)

    print(
        f"multi-label losses, forward+backward, B={args.batch} x C={args.classes}, float32, "
        + setup_line(args.rounds)
    )
    header = (
        f"{'loss':<18} {'ours ms':>9} {'ref ms':>9} {'ratio':>6} {'ratio IQR':>11} "
        f"{'off ms':>8} {'off':>6} {'off IQR':>11} {'verdict':<10} reference"
    )
    print(header)
    print("-" * (len(header) + 22))
    tally = Tally()
    for row, (name, label, ref_fn, soft) in REFERENCES.items():
        if args.only and row not in args.only:
            continue
        y = y_soft if soft else y_hard
        ours_fn = L.build(name)
        with torch.no_grad():  # sanity: both compute the same value on these inputs
            a, b = ours_fn(z, y).item(), ref_fn(z, y).item()
        if abs(a - b) > 1e-4 * max(1.0, abs(b)):
            raise SystemExit(f"{name}: value {a} differs from the reference {b}")
        raw = "check" not in row  # the (ref + check) rows compare like with like already
        res = time_pair(ours_fn, ref_fn, z, y, args.rounds, args.block,
                        ours_off=ours_fn if raw else None)
        print(
            f"{row:<18} {res['ours'] * 1e3:>9.4f} {res['ref'] * 1e3:>9.4f} {ratio_cells(res)} "
            f"{off_ms_cell(res)} {ratio_cells(res.get('off'))} {tally.judge(row, res):<10} {label}"
        )
    # the kit validates every call (shape, dtype, target range); the references do not
    t_check = cpu_seconds_per_call(lambda: check_multilabel(z.detach(), y_hard), 2000)
    print(f"(input validation alone, check_multilabel on 0/1 targets: {t_check * 1e3:.4f} ms "
          "per call, measured in a tight loop)")
    print(f"median ratio above {LIMIT}, {tally.summary()}")


if __name__ == "__main__":
    main()
