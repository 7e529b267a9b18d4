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

The kit's losses additionally validate every call (shapes, dtype, target values: one
reduction and one device-to-host transfer), which the references do not. So each loss is timed
with the kit's value checks off (``lfakit.losses.value_checks(False)``) -- the computation,
like for like, bound 1.10 on the ratio to the reference -- and with them on; the difference
(the checks' cost per call) is reported as a share of one training step of the ChestX-ray
smoke profile's model, ``build_model("tiny_cnn", 14, precision="float64")`` on a batch of
32 x 1 x 64 x 64 float64 images (forward, ``nn.BCEWithLogitsLoss``, backward, AdamW step;
same thread count), bound 1%. The check is timed on the table's batch (default 256 x 14, more
targets than the smoke batch's 32 x 14, so if anything the share is overstated).

Timing: one CPU thread, float32 logits; the three sides timed in interleaved blocks of CPU
time, median over ``--rounds`` rounds (the method: ``_timing.py``).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from torchvision.ops import sigmoid_focal_loss

import lfakit.losses as L
from lfakit.losses.multilabel import EXP_CE_CLAMP
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


# row label -> (kit loss name, reference label, reference fn, soft targets?)
REFERENCES = {
    "bce": ("bce", "nn.BCEWithLogitsLoss", bce_reference, False),
    "focal": ("focal", "torchvision sigmoid_focal_loss", torchvision_focal, False),
    "asl": ("asl", "naive element-wise", naive_asl, False),
    "zlpr": ("zlpr", "naive element-wise", naive_zlpr, False),
    "soft_zlpr": ("soft_zlpr", "naive element-wise", naive_zlpr, True),
    "fzlpr": ("fzlpr", "naive element-wise", naive_fzlpr, False),
    "exp_ce": ("exp_ce", "naive element-wise", naive_exp_ce, False),
    "f_ece": ("f_ece", "naive element-wise", naive_f_ece, False),
}

#: the ChestX-ray smoke profile: model, batch, loss of the training step
SMOKE = "tiny_cnn, 14 labels, 32 x 1 x 64 x 64 float64, BCEWithLogitsLoss + AdamW"


def smoke_step():
    torch.manual_seed(0)
    model = build_model("tiny_cnn", 14, precision="float64")
    x = torch.randn(32, 1, 64, 64, dtype=torch.float64)
    y = (torch.rand(32, 14) < 0.2).to(torch.float64)
    return training_step(model, nn.BCEWithLogitsLoss(), x, y)


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

    step = step_seconds(smoke_step(), args.step_rounds, args.block)
    print(
        f"multi-label losses, forward+backward, B={args.batch} x C={args.classes}, float32, "
        + setup_line(args.rounds)
    )
    print(step_line(SMOKE, step))
    header = (
        f"{'loss':<10} {'ref ms':>8} {'off ms':>8} {'off/ref':>7} {'IQR':>11} {'on ms':>8} "
        f"{'on/ref':>6} {'IQR':>11} {'check us':>8} {'share':>7} {'share IQR':>13} "
        f"{'verdict':<8} reference"
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
        res = time_pair(ours_fn, ref_fn, z, y, args.rounds, args.block, ours_off=ours_fn)
        share = check_share(res, step)
        print(
            f"{row:<10} {res['ref'] * 1e3:>8.4f} {res['off']['ours'] * 1e3:>8.4f} "
            f"{ratio_cells(res['off']):>19} {res['ours'] * 1e3:>8.4f} {ratio_cells(res)} "
            f"{check_cells(res, share)} {tally.judge(row, res['off'], share=share):<8} {label}"
        )
    print(f"bounds: off/ref <= {LIMIT}, share <= 1%; {tally.summary()}")


if __name__ == "__main__":
    main()
